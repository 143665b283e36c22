"""The ``yoloslim`` command line: compress, measure, bench, export, plugins, and one command per stage type.

Every stage type a plugin declares is also a subcommand (``yoloslim finetune MODEL --data D
--epochs 3 --out ft.pt``) whose flags come from the stage's declared options, so plugins add
commands without touching the core.

Bad input ends with one line on stderr (``yoloslim: error: ...``) and exit status 1; a traceback
means a bug. SIGINT and SIGTERM end any command with "yoloslim: interrupted" and status 130 / 143, and no
output is written after one. Checkpoints are unpickled safely unless ``--trust-checkpoint`` is given
(:mod:`yoloslim.trust`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _offline_defaults() -> None:
    # Before Ultralytics is imported: never download, never pip-install at run time.
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_VERBOSE", "True")


_REFERENCE_HELP = (
    "the FP32 original: every model also gets its agreement with it (mAP50-95, F1@0.5 against its "
    "detections); default on a split without labels: the first model"
)


_TRUST_HELP = (
    "unpickle checkpoints without the safe-load allowlist: only for files whose origin you trust, as "
    "loading them can run code they contain (also YOLOSLIM_TRUST_CHECKPOINTS=1)"
)


_DATA_HELP = (
    "dataset YAML the model was trained on, or footage for label-free compression: a video or a folder of images "
    "whose sampled frames the original model labels itself (see --frames)"
)


def _footage_flags(p: argparse.ArgumentParser) -> None:
    """Flags of label-free data (``--data`` a video or an image folder)."""
    g = p.add_argument_group("label-free data (--data is a video or a folder of images)")
    g.add_argument("--frames", type=int, default=200, help="frames sampled evenly over the range (default 200)")
    g.add_argument(
        "--frame-range",
        metavar="START:END",
        help="frames (or sorted images) START..END-1 only (default: all); hold later frames out to evaluate on",
    )
    g.add_argument(
        "--pseudo-conf",
        type=float,
        default=0.25,
        help="confidence a detection of the original needs to become a pseudo-label (default 0.25)",
    )


def _footage(a: argparse.Namespace) -> Any:
    """The FootageOptions of the footage flags."""
    from yoloslim.errors import DataError
    from yoloslim.footage import FootageOptions

    first, last = 0, None
    if a.frame_range:
        start, sep, end = a.frame_range.partition(":")
        try:
            if not sep:
                raise ValueError("no ':'")
            first, last = int(start or 0), (int(end) if end else None)
        except ValueError:
            raise DataError(f"--frame-range {a.frame_range!r}: expected START:END frame indices, e.g. 0:900") from None
    return FootageOptions(frames=a.frames, first=first, last=last, pseudo_conf=a.pseudo_conf)


def _common() -> argparse.ArgumentParser:
    """Flags every subcommand takes."""
    c = argparse.ArgumentParser(add_help=False)
    c.add_argument("--trust-checkpoint", action="store_true", help=_TRUST_HELP)
    return c


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="yoloslim", description="Make trained Ultralytics YOLO detectors small and fast.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common()]

    c = sub.add_parser(
        "compress",
        parents=common,
        help="run a recipe on a checkpoint and report original vs compressed",
        description="Run the recipe's stages in order, write each stage's checkpoint or artifact, "
        "then measure the original and every artifact and write report.md/report.json.",
    )
    c.add_argument("model", help="Ultralytics detection checkpoint (.pt)")
    c.add_argument("--data", required=True, help=_DATA_HELP)
    c.add_argument("--recipe", required=True, help="recipe YAML (see recipes/)")
    c.add_argument(
        "--out",
        help="run directory (default runs/slim/<recipe name>, numbered if taken; an earlier "
        "run's directory is cleaned before reuse)",
    )
    c.add_argument("--imgsz", type=int, help="image size (default: the checkpoint's training size)")
    c.add_argument("--device", default="cpu", help="training device, as in Ultralytics (cpu, 0, 0,1)")
    c.add_argument("--split", help="split for mAP (default test if present, else val)")
    c.add_argument("--threads", type=int, default=2, help="CPU threads for latency (default 2)")
    c.add_argument("--runs", type=int, default=50, help="timed runs per artifact (default 50)")
    _footage_flags(c)

    m = sub.add_parser(
        "measure",
        parents=common,
        help="measure mAP, params, GFLOPs, size and latency of models",
        description="Measure .pt and .onnx models with the same harness, latency interleaved.",
    )
    m.add_argument("models", nargs="+", help="checkpoints or exported models")
    m.add_argument("--data", required=True, help="dataset YAML")
    m.add_argument("--imgsz", type=int, help="image size (default: the first checkpoint's training size)")
    m.add_argument("--split", help="split for mAP (default test if present, else val)")
    m.add_argument("--threads", type=int, default=2, help="CPU threads for latency (default 2)")
    m.add_argument("--runs", type=int, default=50, help="timed runs per model (default 50)")
    m.add_argument("--json", help="also write the results to this JSON file")
    m.add_argument("--reference", help=_REFERENCE_HELP)

    b = sub.add_parser(
        "bench",
        parents=common,
        help="one table and a Pareto plot of accuracy vs latency for several models",
        description="Measure every model with the same harness in one process (latency interleaved) "
        "and write bench.md, bench.json and pareto.png (mAP50-95 vs latency p50).",
    )
    b.add_argument("models", nargs="+", help="checkpoints or exported models (any format a runtime plugin opens)")
    b.add_argument("--data", required=True, help="dataset YAML")
    b.add_argument("--out", default="runs/bench", help="output folder (default runs/bench)")
    b.add_argument("--imgsz", type=int, help="image size (default: the first model's)")
    b.add_argument("--split", help="split for mAP (default test if present, else val)")
    b.add_argument("--threads", type=int, default=2, help="CPU threads for latency (default 2)")
    b.add_argument("--runs", type=int, default=50, help="timed runs per model (default 50)")
    b.add_argument("--reference", help=_REFERENCE_HELP)

    e = sub.add_parser(
        "export",
        parents=common,
        help="export a checkpoint through the export plugins",
        description="Export a checkpoint to a deployment format via the yoloslim_export hook.",
    )
    e.add_argument("model", help="Ultralytics detection checkpoint (.pt)")
    e.add_argument("--format", default="onnx", help="format name (see 'yoloslim plugins'), default onnx")
    e.add_argument("--out", required=True, help="output file")
    e.add_argument("--imgsz", type=int, help="image size (default: the checkpoint's training size)")
    e.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="format option for the export plugin, repeatable (e.g. dynamic=true, batch=4, opset=17)",
    )

    pr = sub.add_parser(
        "profile",
        parents=common,
        help="where a model's time goes: time per block in ONNX Runtime beside its MACs",
        description="Export checkpoints (or take .onnx files) and profile them with ONNX Runtime's profiler: "
        "time per block, share of the pass and MACs per block, one column group per model.",
    )
    pr.add_argument(
        "models", nargs="+", help="checkpoints (.pt, exported first) or .onnx files; the first is the reference"
    )
    pr.add_argument("--imgsz", type=int, default=640, help="image size (default 640, the deployment size)")
    pr.add_argument(
        "--format",
        default="onnx",
        help="export format of checkpoints: onnx (FP32, default) or onnx-int8 (the quantize stage's PTQ; needs --data)",
    )
    pr.add_argument("--data", help="dataset YAML (calibration images for --format onnx-int8)")
    pr.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    pr.add_argument("--runs", type=int, default=20, help="profiled passes per model (default 20)")
    pr.add_argument("--out", help="also write the report here (.md), with its JSON beside it (.json)")

    pl = sub.add_parser(
        "plugins",
        help="list loaded plugins, their package, version, hooks and stage types",
        description="List loaded plugins and those that failed to load.",
    )
    pl.add_argument(
        "--verbose",
        action="store_true",
        dest="list_options",
        help="also every stage type's options: type, default, range or choices, help",
    )
    pl.add_argument(
        "--markdown", action="store_true", help="print the stage types' options as markdown (docs/stage-options.md)"
    )
    _add_stage_commands(sub)
    return p


def _add_stage_commands(sub: Any) -> None:
    """Add one subcommand per plugin stage type (``yoloslim prune ...``), its flags from the stage's options."""
    from yoloslim.errors import YoloslimError
    from yoloslim.plugins import get_plugin_manager

    try:
        stage_types = get_plugin_manager().stage_types()
    except YoloslimError as e:  # reported again, as one line, if the user runs a command that needs plugins
        logging.getLogger("yoloslim.cli").warning("stage commands unavailable: %s", e)
        return
    for st in stage_types.values():
        if st.name in _BUILTIN_COMMANDS:
            continue
        trains = (
            "; Ultralytics training arguments follow as key=value words (lr0=0.0005 batch=16)"
            if st.accepts_training
            else ""
        )
        p = sub.add_parser(
            st.name,
            parents=[_common()],
            help=st.help or f"run the '{st.name}' stage alone",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            description=f"{st.help or st.name}. Runs a one-stage recipe, writes the result to --out "
            f"and a report comparing it with the original into the run directory{trains}.",
            epilog=_train_epilog(st) if st.accepts_training else None,
        )
        p.add_argument("model", help="Ultralytics detection checkpoint (.pt)")
        p.add_argument("--data", required=True, help=_DATA_HELP)
        p.add_argument("--out", required=True, help="output file")
        p.add_argument("--imgsz", type=int, help="image size (default: the checkpoint's training size)")
        p.add_argument("--device", default="cpu", help="training device, as in Ultralytics (cpu, 0, 0,1)")
        p.add_argument(
            "--run-dir", help="where stage outputs and the report go (default runs/slim/<stage>, numbered if taken)"
        )
        p.add_argument("--threads", type=int, default=2, help="CPU threads for latency (default 2)")
        p.add_argument("--runs", type=int, default=50, help="timed runs per artifact (default 50)")
        _footage_flags(p)
        if st.accepts_training:
            p.add_argument(
                f"--{st.epochs_flag}",
                dest="stage_epochs",
                type=int,
                default=st.default_epochs,
                metavar="N",
                help=f"{st.epochs_help} (default {st.default_epochs})",
            )
        for name, spec in st.specs.items():
            p.add_argument(f"--{name.replace('_', '-')}", **_flag(name, spec))
        p.set_defaults(stage_type=st.name, accepts_training=st.accepts_training)


def _flag(name: str, spec: Any) -> dict[str, Any]:
    """argparse keywords of one option's flag, from its declaration (type, choices, range, default in the help)."""
    extra = [f"default {spec.default_text()}"] if not spec.required else []
    if spec.range_text():
        extra.append(spec.range_text())
    kwargs: dict[str, Any] = {
        "dest": f"opt_{name}",
        "default": None,
        "required": spec.required,
        "help": f"{spec.help} ({'; '.join(extra)})" if extra else spec.help,
    }
    if bool in spec.types:
        kwargs["action"] = argparse.BooleanOptionalAction
        return kwargs
    scalar = next((t for t in (int, float, str) if t in spec.types), None)
    kwargs["type"] = scalar or _yaml_value  # a list/dict-only option is written as YAML ('[1, 5]')
    kwargs["metavar"] = name.upper()
    if spec.choices:
        kwargs["choices"] = list(spec.choices)
        kwargs.pop("metavar")
    return kwargs


def _yaml_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _train_epilog(st: Any) -> str:
    lines = ["training: batch, optimizer and augmentation are inherited from the checkpoint's own training; "]
    if st.train_defaults:
        lines.append(
            "this stage trains with "
            + ", ".join(f"{k}={v}" for k, v in st.train_defaults.items())
            + " unless you set them; "
        )
    else:
        from yoloslim.options import schedule_text

        lines.append(f"its learning rate {schedule_text(st)} unless you set lr0 or optimizer; ")
    lines.append("any Ultralytics training argument may follow as key=value (see 'yolo cfg').")
    return "".join(lines)


EXIT_TARGET_MISSED = 3  # the run finished and wrote its outputs, but a target it was given (e.g. a budget) was missed
_BUILTIN_COMMANDS = {"compress", "measure", "bench", "export", "plugins", "profile"}


def _cmd_stage(a: argparse.Namespace) -> int:
    from yoloslim.errors import RecipeError
    from yoloslim.files import atomic_copy
    from yoloslim.outputs import check_output_file
    from yoloslim.pipeline import compress, input_files
    from yoloslim.plugins import get_plugin_manager
    from yoloslim.recipe import parse_recipe, parse_train_words

    pm = get_plugin_manager()
    stage: dict[str, Any] = {"type": a.stage_type}
    stage.update({k[4:]: v for k, v in vars(a).items() if k.startswith("opt_") and v is not None})
    if getattr(a, "stage_epochs", None) is not None:
        stage["epochs"] = a.stage_epochs
    if a.train_words:
        if not a.accepts_training:
            raise RecipeError(
                f"{a.stage_type}: does not train, so it takes no training arguments "
                f"({' '.join(a.train_words)[:200]}); remove them"
            )
        stage["train"] = parse_train_words(a.train_words, a.stage_type)
    try:
        recipe = parse_recipe({"name": a.stage_type, "stages": [stage]}, pm.stage_types(), None, pm.failed)
    except RecipeError as e:  # name the subcommand, not the one-stage recipe built from its flags
        raise RecipeError(str(e).replace(f"<recipe>: stage 1 ({a.stage_type}): ", f"{a.stage_type}: ", 1)) from None
    check_output_file(a.out, [a.model, a.data, *input_files(recipe)])
    r = compress(
        a.model,
        a.data,
        recipe,
        out=a.run_dir,
        imgsz=a.imgsz,
        device=a.device,
        threads=a.threads,
        runs=a.runs,
        plugins=pm,
        footage=_footage(a),
    )
    out = atomic_copy(r.artifacts[-1][1], a.out)
    print(r.report_md.read_text(encoding="utf-8"))
    print(f"{a.stage_type}: {out}  (report: {r.report_md})")
    return _missed(r.missed)


def _missed(lines: list[str]) -> int:
    """Print every missed target as one line on stderr; the exit status: 3 when a target was missed, else 0."""
    for line in lines:
        print(f"yoloslim: target missed: {line}", file=sys.stderr)
    return EXIT_TARGET_MISSED if lines else 0


def _cmd_compress(a: argparse.Namespace) -> int:
    from yoloslim.pipeline import compress

    r = compress(
        a.model,
        a.data,
        a.recipe,
        out=a.out,
        imgsz=a.imgsz,
        device=a.device,
        split=a.split,
        threads=a.threads,
        runs=a.runs,
        footage=_footage(a),
    )
    print(r.report_md.read_text(encoding="utf-8"))
    print(f"report: {r.report_md}  {r.report_json}")
    return _missed(r.missed)


def _cmd_measure(a: argparse.Namespace) -> int:
    from yoloslim.measurement import format_table
    from yoloslim.outputs import check_output_file
    from yoloslim.pipeline import measure_models

    if a.json:
        check_output_file(a.json, [*a.models, a.data, *([a.reference] if a.reference else [])], "--json")
    results = measure_models(
        a.models,
        a.data,
        imgsz=a.imgsz,
        split=a.split,
        threads=a.threads,
        runs=a.runs,
        json_path=a.json,
        reference=a.reference,
    )
    print(format_table(results))
    return 0


def _cmd_bench(a: argparse.Namespace) -> int:
    from yoloslim.measurement import format_table
    from yoloslim.outputs import check_output_dir
    from yoloslim.pipeline import measure_models
    from yoloslim.report import write_bench

    check_output_dir(a.out, [*a.models, a.data, *([a.reference] if a.reference else [])])
    results = measure_models(
        a.models, a.data, imgsz=a.imgsz, split=a.split, threads=a.threads, runs=a.runs, reference=a.reference
    )
    md, js, plot = write_bench(a.out, results, {"models": [str(m) for m in a.models], "data": str(a.data)})
    print(format_table(results))
    print(f"bench: {md}  {js}" + (f"  {plot}" if plot else ""))
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    import yaml

    from yoloslim.checkpoint import load_checkpoint
    from yoloslim.context import SlimContext
    from yoloslim.errors import ExportError
    from yoloslim.measurement import check_imgsz, model_stride
    from yoloslim.outputs import check_output_file
    from yoloslim.pipeline import default_imgsz

    options: dict[str, Any] = {}
    for item in a.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ExportError(f"--option '{item}': expected KEY=VALUE, e.g. --option dynamic=true")
        options[key] = yaml.safe_load(value)
    model, ckpt = load_checkpoint(a.model)
    check_output_file(a.out, [a.model])
    imgsz = check_imgsz(a.imgsz if a.imgsz is not None else default_imgsz(ckpt), model_stride(model))
    path = SlimContext(imgsz=imgsz).export(a.model, a.format, a.out, **options)
    print(path)
    return 0


def _cmd_profile(a: argparse.Namespace) -> int:
    from yoloslim.files import atomic_write_json, atomic_write_text
    from yoloslim.outputs import check_output_file
    from yoloslim.profiling import profile_models, profile_report

    inputs = [*a.models, *([a.data] if a.data else [])]
    if a.out:
        check_output_file(a.out, inputs)
        check_output_file(Path(a.out).with_suffix(".json"), inputs)
    profiles = profile_models(a.models, imgsz=a.imgsz, fmt=a.format, data=a.data, threads=a.threads, runs=a.runs)
    md, js = profile_report(profiles, a.format)
    print(md, end="")
    if a.out:
        atomic_write_text(a.out, md)
        atomic_write_json(Path(a.out).with_suffix(".json"), js)
        print(f"profile: {a.out}  {Path(a.out).with_suffix('.json')}")
    return 0


def _cmd_plugins(a: argparse.Namespace) -> int:
    from yoloslim.options import describe_stage_type, markdown_reference
    from yoloslim.plugins import get_plugin_manager

    pm = get_plugin_manager()
    if a.markdown:
        print(markdown_reference(pm.stage_types()), end="")
        return 0
    if pm.unmatched:
        print(pm.allowlist_message())
    for info in pm.info():
        print(f"{info.name}  ({info.package} {info.version})")
        print(f"    hooks: {', '.join(info.hooks) or '-'}")
        if info.stage_types:
            print(f"    stage types: {', '.join(info.stage_types)}")
            if a.list_options:
                for name in info.stage_types:
                    for line in describe_stage_type(pm.stage_types()[name]):
                        print(f"      {line}")
    for name, err in pm.failed.items():
        print(f"{name}  FAILED TO LOAD: {err}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``yoloslim`` command; returns the exit status."""
    _offline_defaults()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((i for i, word in enumerate(argv) if not word.startswith("-")), len(argv))
    verbose = bool({"-v", "--verbose"} & set(argv[:command]))  # the global flag; 'plugins --verbose' is its own
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(name)s: %(message)s")
    from yoloslim import signals

    with signals.handled(reraise=False):  # _run reports an interrupt itself
        return _run(argv)


def _run(argv: list[str]) -> int:
    """Parse ``argv`` and run its command, turning bad input and interrupts into one line and a status."""
    from yoloslim import signals

    try:
        args = _parse(argv)
        from yoloslim.errors import YoloslimError, storage_error
        from yoloslim.trust import trust_scope

        handlers = {
            "compress": _cmd_compress,
            "measure": _cmd_measure,
            "bench": _cmd_bench,
            "export": _cmd_export,
            "plugins": _cmd_plugins,
            "profile": _cmd_profile,
        }
        handler = handlers.get(args.command, _cmd_stage)
        try:
            with trust_scope(True if getattr(args, "trust_checkpoint", False) else None):
                status = handler(args)
        except YoloslimError as e:
            if signals.received():  # a plugin's error on the way out of an interrupt
                raise signals.Interrupted(signals.received()) from None
            print(f"yoloslim: error: {_one_line(str(e))}", file=sys.stderr)
            return 1
        except Exception as e:
            storage = storage_error(e)  # disk full, read-only, permission: the user's to fix, not a bug
            if storage is None or signals.received():
                raise
            print(f"yoloslim: error: {_one_line(str(storage))}", file=sys.stderr)
            return 1
        signals.check()  # an interrupt some library swallowed still ends the run as interrupted
        return status
    except KeyboardInterrupt as e:
        print("yoloslim: interrupted", file=sys.stderr)
        return signals.exit_status(signals.signum_of(e))


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; a stage command keeps its ``key=value`` words (training arguments) in ``train_words``."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    stage_command = getattr(args, "stage_type", None) is not None
    unknown = [w for w in extra if not stage_command or w.startswith("-") or "=" not in w]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.train_words = extra if stage_command else []
    return args


_MAX_MESSAGE = 600


def _one_line(message: str) -> str:
    """A message on one line, cut to a length a terminal shows (a YAML bomb must not print megabytes)."""
    text = " ".join(message.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
