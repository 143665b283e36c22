"""Knowledge distillation for yoloslim: a frozen Ultralytics teacher trains a smaller (or pruned) student.

The recipe stage ``distill`` and the command ``yoloslim distill`` come from :mod:`yoloslim_distill.plugin`.
The pieces work on their own as well::

    from yoloslim import load_checkpoint
    from yoloslim_distill import Distiller, Teacher, parse_options

    student, _ = load_checkpoint("student.pt")
    opts = parse_options({"teacher": "teacher.pt", "method": "logit,ld,cwd"})
    distiller = Distiller(Teacher.load(opts.teacher), student, opts)
    terms = distiller.losses(images, student.train()(images))   # {"kd_logit": ..., "kd_ld": ..., "kd_cwd": ...}
"""

from yoloslim_distill.distiller import Distiller, term_name
from yoloslim_distill.options import DEFAULT_WEIGHTS, METHODS, DistillOptions, parse_options
from yoloslim_distill.pairing import fit_methods
from yoloslim_distill.teacher import Teacher, check_same_classes

__all__ = [
    "DEFAULT_WEIGHTS",
    "METHODS",
    "DistillOptions",
    "Distiller",
    "Teacher",
    "check_same_classes",
    "fit_methods",
    "parse_options",
    "term_name",
]
