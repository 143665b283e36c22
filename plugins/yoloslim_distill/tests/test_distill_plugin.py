"""Tests of the distillation plugin: each method's loss, gradients, adapters, checkpoints, the stage and its CLI."""

from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from yoloslim.context import SlimContext
from yoloslim.errors import DataError, ModelError, RecipeError
from yoloslim.recipe import Stage
from yoloslim_distill import METHODS, Distiller, Teacher, fit_methods, losses, parse_options, plugin, term_name
from yoloslim_distill.adapters import HeadInfo
from yoloslim_distill.options import STAGE_TYPE
from yoloslim_test_support import run_cli, subprocess_env

IMGSZ = 64


def _model(cfg: str = "yolov8n.yaml", seed: int = 0, nc: int = 3):
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    model = DetectionModel(cfg, nc=nc, verbose=False)
    model.names = {i: f"class{i}" for i in range(nc)}
    return model


def _opts(methods: str, **kw):
    return parse_options({"teacher": "teacher.pt", "method": methods, "teacher_precision": "fp32", **kw})


def _images(n: int = 2) -> torch.Tensor:
    torch.manual_seed(123)
    return torch.rand(n, 3, IMGSZ, IMGSZ)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_is_finite_and_positive_for_another_student_and_zero_for_a_copy(method):
    teacher_net = _model(seed=0)
    x = _images()
    opts = _opts(method, mgd_mask_ratio=0.0)

    other = _model(seed=1).train()
    terms = Distiller(Teacher(copy.deepcopy(teacher_net), "t.pt", "fp32"), other, opts, IMGSZ).losses(x, other(x))
    assert list(terms) == [term_name(method)]
    value = terms[term_name(method)]
    assert torch.isfinite(value) and value.item() > 1e-4

    # The copy is compared with BatchNorm in eval mode, as the (fused) teacher runs.
    twin = copy.deepcopy(teacher_net).eval()
    distiller = Distiller(Teacher(copy.deepcopy(teacher_net), "t.pt", "fp32"), twin, opts, IMGSZ)
    with torch.no_grad():
        same = distiller.losses(x, twin(x))[term_name(method)]
    assert abs(same.item()) < 1e-4 * max(1.0, value.item())


def test_mgd_masks_positions_so_even_a_copy_must_learn_to_generate_them():
    net = _model().eval()
    x = _images()
    with torch.no_grad():
        out = net(x)
        energy = sum(f.square().mean() for f in out[1]["feats"]).item()  # what masking every position would cost
        for ratio, low, high in ((0.0, 0.0, 1e-6), (0.5, 0.3, 0.7)):
            opts = _opts("mgd", mgd_mask_ratio=ratio)
            distiller = Distiller(Teacher(copy.deepcopy(net), "t.pt", "fp32"), net, opts, IMGSZ)
            loss = distiller.losses(x, out)["kd_mgd"].item()
            assert low * energy <= loss <= high * energy, (ratio, loss, energy)


def test_gradients_reach_student_and_adapters_never_the_teacher():
    teacher = Teacher(_model("yolov8s.yaml", seed=0), "t.pt", "fp32")
    student = _model(seed=1).train()
    distiller = Distiller(teacher, student, _opts(",".join(METHODS)), IMGSZ)
    x = _images()
    terms = distiller.losses(x, student(x))
    assert set(terms) == {term_name(m) for m in METHODS}
    sum(terms.values()).backward()

    assert sum(p.grad.abs().sum().item() for p in student.parameters() if p.grad is not None) > 0
    assert all(p.grad is not None for p in distiller.parameters())
    assert all(not p.requires_grad and p.grad is None for p in teacher.model.parameters())
    assert not teacher.model.training
    head = student.model[-1]  # both the class and the box branch learn from the head terms
    assert head.cv3[0][-1].weight.grad.abs().sum() > 0 and head.cv2[0][-1].weight.grad.abs().sum() > 0


def test_epochs_whose_weights_decayed_to_zero_skip_the_teacher_and_log_zero_terms():
    teacher = Teacher(_model("yolov8s.yaml", seed=0), "t.pt", "fp32")
    student = _model(seed=1).train()
    opts = _opts("logit,ld,cwd", final_weight=0, decay_end=0.5)
    distiller = Distiller(teacher, student, opts, IMGSZ)
    calls = []
    forward = distiller.teacher.__call__
    distiller.teacher = lambda img: calls.append(1) or forward(img)
    x = _images()
    live = distiller.losses(x, student(x), epoch=0, epochs=4)
    assert len(calls) == 1 and all(v.item() > 0 for v in live.values())
    done = distiller.losses(x, student(x), epoch=2, epochs=4)  # past decay_end: every weight is 0
    assert len(calls) == 1, "the teacher ran for an epoch where no term uses it"
    assert set(done) == set(live) and all(v.item() == 0 for v in done.values())


def test_adapters_map_irregular_pruned_widths_to_the_teacher():
    from yoloslim_prune import prune_channels

    student = _model(seed=1)
    prune_channels(student, ratio=0.3, imgsz=IMGSZ)  # no rounding: widths like 45, 90, 179
    teacher = Teacher(_model("yolov8s.yaml"), "t.pt", "fp32")
    distiller = Distiller(teacher, student, _opts("cwd,mgd,sl2"), IMGSZ)
    widths = distiller.widths
    assert widths["teacher"] == [128, 256, 512]
    assert widths["student"] != [64, 128, 256] and all(w < t for w, t in zip(widths["student"], widths["teacher"]))
    assert [a.in_channels for a in distiller.adapters["cwd"]] == widths["student"]
    assert [g.align.out_channels for g in distiller.adapters["mgd"]] == widths["teacher"]
    student.train()
    terms = distiller.losses(_images(), student(_images()))
    assert all(torch.isfinite(v) and v > 0 for v in terms.values())


def test_equal_widths_need_no_adapter_and_stage_options_are_validated():
    net = _model()
    distiller = Distiller(Teacher(copy.deepcopy(net), "t.pt", "fp32"), net, _opts("cwd,sl2,logit"), IMGSZ)
    assert distiller.parameters() == []
    with pytest.raises(RecipeError, match="unknown distillation method 'kd'"):
        _opts("logit,kd")
    with pytest.raises(RecipeError, match="'weights' names 'cwd', which is not in 'method'"):
        _opts("logit", weights="cwd=2")
    opts = _opts("logit,cwd", weights={"cwd": 4}, final_weight=0.25)
    assert opts.loss_weights == {"logit": 0.5, "cwd": 4.0}
    assert [opts.weight_at("cwd", e, 4) for e in range(4)] == [4.0, 3.0, 2.0, 1.0]
    early = _opts("logit", final_weight=0, decay_end=0.5)  # 0 by epoch 2 of 0-4, then kept at 0
    assert [early.weight_at("logit", e, 5) for e in range(5)] == [0.5, 0.25, 0.0, 0.0, 0.0]
    assert early.weight_at("logit", 0, 1) == 0.5  # one epoch: no decay
    with pytest.raises(RecipeError, match="decay_end"):
        _opts("logit", decay_end=0)


def test_train_start_adds_an_adapter_group_that_warmup_and_the_scheduler_drive(wide_teacher):
    student = _model(nc=3).train()
    student.names = Teacher.load(wide_teacher).model.names
    opt = torch.optim.AdamW([{"params": list(student.parameters()), "param_group": "weight"}], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 - 0.1 * e)
    stage = Stage(0, "distill", "distill", STAGE_TYPE.parse({"teacher": str(wide_teacher), "method": "cwd,mgd"}), 2)
    ctx = SlimContext(stage=stage)
    trainer = SimpleNamespace(model=student, optimizer=opt, scheduler=sched, epoch=0, epochs=2)
    ctx.trainer = trainer
    plugin.yoloslim_train_start(trainer=trainer, ctx=ctx)

    distiller = ctx.state["distill"]["distiller"]
    group = opt.param_groups[-1]
    assert group["param_group"] == "distill" and group["initial_lr"] == pytest.approx(1e-3)
    assert {id(p) for p in group["params"]} == {id(p) for p in distiller.parameters()}
    opt.step()
    sched.step()
    assert group["lr"] == pytest.approx(opt.param_groups[0]["lr"]) == pytest.approx(0.9e-3)
    assert not any(p is q for p in student.parameters() for q in group["params"])  # adapters stay off the model
    assert not any("teacher" in n or "align" in n or "block" in n for n, _ in student.named_parameters())

    x = _images()
    terms = plugin.yoloslim_extra_loss(batch={"img": x}, preds=student(x), model=student, ctx=ctx)
    assert set(terms) == {"kd_cwd", "kd_mgd"}
    plugin.yoloslim_train_end(trainer=trainer, ctx=ctx)
    assert "distiller" not in ctx.state["distill"]


def test_class_name_mismatch_fails_before_training_naming_both_lists(tiny_data, tiny_ckpt, tmp_path):
    from yoloslim.checkpoint import load_checkpoint, save_checkpoint
    from yoloslim.pipeline import compress
    from yoloslim.plugins import get_plugin_manager
    from yoloslim.recipe import parse_recipe

    model, _ = load_checkpoint(tiny_ckpt)
    names = list(model.names.values())
    model.names = {i: f"other{i}" for i in range(len(names))}
    bad = save_checkpoint(model, tmp_path / "bad_teacher.pt")
    pm = get_plugin_manager()
    recipe = parse_recipe({"stages": [{"type": "distill", "teacher": str(bad), "epochs": 1}]}, pm.stage_types())
    with pytest.raises(DataError) as err:
        compress(tiny_ckpt, tiny_data, recipe, out=tmp_path / "run", imgsz=IMGSZ, runs=2, plugins=pm)
    msg = str(err.value)
    assert str(bad) in msg and str([f"other{i}" for i in range(len(names))]) in msg and str(names) in msg
    assert not list((tmp_path / "run").rglob("*.csv")) and not list((tmp_path / "run").rglob("*.pt"))


def test_prune_then_distill_recipe_saves_a_plain_student_that_yolo_loads(tiny_data, tiny_ckpt, wide_teacher, tmp_path):
    from yoloslim.checkpoint import load_checkpoint
    from yoloslim.pipeline import compress
    from yoloslim.plugins import get_plugin_manager
    from yoloslim.recipe import parse_recipe

    pm = get_plugin_manager()
    recipe = parse_recipe(
        {
            "name": "pd",
            "train": {"batch": 8, "warmup_epochs": 1, "val": False},
            "stages": [
                {"type": "prune", "method": "channel", "ratio": 0.3, "epochs": 0},
                {
                    "type": "distill",
                    "teacher": str(wide_teacher),
                    "method": "logit,ld,cwd,mgd,sl2",
                    "weights": "cwd=2",
                    "final_weight": 0.5,
                    "epochs": 1,
                },
            ],
        },
        pm.stage_types(),
    )
    result = compress(tiny_ckpt, tiny_data, recipe, out=tmp_path / "run", imgsz=IMGSZ, runs=2, plugins=pm)

    rows = list(csv.DictReader((tmp_path / "run" / "02_distill" / "train" / "results.csv").open()))
    rows = [{k.strip(): v for k, v in r.items()} for r in rows]
    for m in METHODS:
        assert all(float(r[f"train/kd_{m}"]) > 0 for r in rows), m
    assert "val/kd_cwd" not in rows[0]
    assert float(rows[-1]["lr/pg3"]) == pytest.approx(float(rows[-1]["lr/pg0"]))  # the adapter group follows the LR

    pruned, _ = load_checkpoint(result.artifacts[1][1])
    out = result.artifacts[2][1]
    student, ckpt = load_checkpoint(out)  # yoloslim's loader, as every command loads it
    assert ckpt["optimizer"] is None  # stripped: no adapter state either
    keys = set(student.state_dict())
    assert keys == set(pruned.state_dict())  # the pruned student's tensors, nothing else
    assert {k: v.shape for k, v in student.state_dict().items()} == {k: v.shape for k, v in pruned.state_dict().items()}
    assert not any("teacher" in k or "adapter" in k for k in keys)
    assert b"yoloslim_distill" not in out.read_bytes()  # no Teacher, Distiller or adapter object pickled

    script = (
        "import sys\nfrom ultralytics import YOLO\nm = YOLO(sys.argv[1])\n"
        "assert any(type(x).__name__ == 'SplitC2f' for x in m.model.modules())\n"
        "r = m.predict(sys.argv[2], imgsz=64, verbose=False)\nprint('LOADED', m.task, len(m.names), len(r))\n"
    )
    image = next((Path(tiny_data).parent / "images" / "test").glob("*.png"))
    r = subprocess.run(
        [sys.executable, "-c", script, str(out), str(image)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "LOADED detect" in r.stdout
    report = {m["name"]: m for m in json.loads(result.report_json.read_text())["measurements"]}
    assert report["distill"]["params"] == report["prune"]["params"] < report["original"]["params"]


def test_cli_distill_trains_and_writes_the_student(tiny_data, tiny_ckpt, wide_teacher, tmp_path):
    out = tmp_path / "distilled.pt"
    r = run_cli(
        "distill",
        str(tiny_ckpt),
        "--teacher",
        str(wide_teacher),
        "--data",
        str(tiny_data),
        "--method",
        "logit,ld,sl2",
        "--weights",
        "ld=2",
        "--epochs",
        "1",
        "--imgsz",
        str(IMGSZ),
        "--out",
        str(out),
        "--run-dir",
        str(tmp_path / "run"),
        "--runs",
        "2",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert out.is_file() and "distill" in r.stdout
    header = (tmp_path / "run" / "01_distill" / "train" / "results.csv").read_text().splitlines()[0]
    assert [h.strip() for h in header.split(",") if "kd_" in h] == ["train/kd_logit", "train/kd_ld", "train/kd_sl2"]


def test_cli_rejects_an_unknown_method_in_one_line_before_any_work(
    tiny_data, tiny_ckpt, wide_teacher, tmp_path, capsys
):
    from yoloslim.cli import main

    code = main(
        [
            "distill",
            str(tiny_ckpt),
            "--teacher",
            str(wide_teacher),
            "--data",
            str(tiny_data),
            "--method",
            "logit,fitnet",
            "--out",
            str(tmp_path / "x.pt"),
            "--run-dir",
            str(tmp_path / "run"),
        ]
    )
    assert code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("yoloslim: error: ") and "unknown distillation method 'fitnet'; choose from logit" in last
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "run").exists()


STUDENTS = ["yolo11n.yaml", "yolo26n.yaml"]
TEACHERS = ["yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml"]


@pytest.mark.parametrize("teacher_cfg", TEACHERS)
@pytest.mark.parametrize("student_cfg", STUDENTS)
def test_every_method_trains_a_yolo11_or_yolo26_student_or_is_refused_before_training(student_cfg, teacher_cfg):
    teacher_net = _model(teacher_cfg, seed=0)
    student = _model(student_cfg, seed=1)
    x = _images()
    no_common_bins = "yolo26" in student_cfg or "yolo26" in teacher_cfg  # YOLO26: reg_max 1, no DFL bins
    for method in METHODS:
        teacher = Teacher(copy.deepcopy(teacher_net), "t.pt", "fp32")
        if method == "ld" and no_common_bins:
            with pytest.raises(RecipeError, match="method 'ld' distils the box bins of the DFL, but"):
                Distiller(teacher, student, _opts(method), IMGSZ)
            continue
        distiller = Distiller(teacher, student, _opts(method), IMGSZ)
        student.train().zero_grad()
        value = distiller.losses(x, student(x))[term_name(method)]
        assert torch.isfinite(value) and value.item() > 1e-4, method
        value.backward()
        assert sum(p.grad.abs().sum().item() for p in student.parameters() if p.grad is not None) > 0, method


def test_default_methods_leave_ld_out_without_common_dfl_bins_and_requested_ld_is_refused():
    v8 = HeadInfo([64, 128, 256], 84, 16, False)
    y26 = HeadInfo([64, 128, 256], 84, 1, True)
    default = parse_options({"teacher": "t.pt"})
    assert default.methods == ("logit", "ld") and default.final_weight == 0.0
    assert [default.weight_at("ld", e, 3) for e in range(3)] == [1.0, 0.5, 0.0]  # decays to 0 by the last epoch
    assert fit_methods(default, v8, v8) == (default, [])
    for student, teacher, why in (
        (y26, v8, "the teacher has 16 DFL bins per box side and the student no DFL bins"),
        (v8, y26, "the teacher has no DFL bins (reg_max 1, as in YOLO26) and the student 16"),
        (y26, y26, "neither model has any"),
    ):
        fitted, notes = fit_methods(default, student, teacher)  # cwd distils in ld's place, at its default weight
        assert fitted.methods == ("logit", "cwd") and fitted.loss_weights == {"logit": 0.5, "cwd": 3.0}
        assert len(notes) == 1 and notes[0].startswith("'ld' left out of the default methods") and why in notes[0]
        assert notes[0].endswith("'cwd' (neck features) distils in its place")
        assert fitted.final_weight == 0.0
    reweighted = parse_options({"teacher": "t.pt", "weights": "logit=1"})  # a weight keeps the other defaults
    assert fit_methods(reweighted, y26, y26)[0].loss_weights == {"logit": 1.0, "cwd": 3.0}
    for asked in ({"method": "logit,ld"}, {"weights": "ld=2"}):  # named in 'method', or asked for by a weight
        with pytest.raises(RecipeError, match=r"stage 'kd': method 'ld' .* remove 'ld' from 'method'"):
            fit_methods(parse_options({"teacher": "t.pt", **asked}), y26, v8, "stage 'kd'")
    with pytest.raises(ModelError, match="different strides"):
        fit_methods(default, HeadInfo([64, 128, 256], 21, 16, False), v8)


def test_yolo26_teacher_also_distils_the_one_to_one_branch_of_a_yolo26_student():
    teacher_net = _model("yolo26n.yaml", seed=0)
    student = _model("yolo26n.yaml", seed=1).train()
    x = _images()
    distiller = Distiller(Teacher(copy.deepcopy(teacher_net), "t.pt", "fp32"), student, _opts("logit"), IMGSZ)
    assert distiller.one2one
    preds = student(x)
    t = distiller.teacher(x)
    value = distiller.losses(x, preds)["kd_logit"]
    branches = [
        losses.logit_kd(preds[b]["scores"], t_b["scores"], 2.0)
        for b, t_b in (("one2many", t), ("one2one", t["one2one"]))
    ]
    assert value.item() == pytest.approx(0.5 * (branches[0] + branches[1]).item() / 2, rel=1e-5)  # weight 0.5
    value.backward()
    head = student.model[-1]
    assert head.one2one_cv3[0][-1].weight.grad.abs().sum() > 0 and head.cv3[0][-1].weight.grad.abs().sum() > 0

    twin = copy.deepcopy(teacher_net).eval()  # a copy matches the teacher on both branches
    same = Distiller(Teacher(copy.deepcopy(teacher_net), "t.pt", "fp32"), twin, _opts("logit"), IMGSZ)
    with torch.no_grad():
        assert abs(same.losses(x, twin(x))["kd_logit"].item()) < 1e-5

    student.zero_grad()  # a teacher without a one-to-one branch teaches the one-to-many branch only
    other = Distiller(Teacher(_model("yolo11n.yaml"), "t.pt", "fp32"), student, _opts("logit"), IMGSZ)
    assert not other.one2one
    other.losses(x, student(x))["kd_logit"].backward()
    assert head.one2one_cv3[0][-1].weight.grad is None and head.cv3[0][-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "student_fixture,teacher_fixture,method,terms",
    [
        ("tiny_ckpt_yolo26", "tiny_ckpt", None, ["kd_logit", "kd_cwd"]),  # the default adapts: no 'ld' for YOLO26
        ("tiny_ckpt_yolo11", "tiny_ckpt_yolo26", "logit,mgd,sl2", ["kd_logit", "kd_mgd", "kd_sl2"]),
        ("tiny_ckpt_yolo26", "tiny_ckpt_yolo26", "logit,cwd", ["kd_logit", "kd_cwd"]),
    ],
)
def test_distill_stage_trains_yolo11_and_yolo26_students_one_epoch(
    student_fixture, teacher_fixture, method, terms, request, tiny_data, tmp_path, caplog
):
    import logging

    from yoloslim.checkpoint import load_checkpoint
    from yoloslim.pipeline import run_stage
    from yoloslim.plugins import get_plugin_manager

    student, teacher = request.getfixturevalue(student_fixture), request.getfixturevalue(teacher_fixture)
    options = STAGE_TYPE.parse({"teacher": str(teacher), **({"method": method} if method else {})})
    stage = Stage(0, "distill", "distill", options, epochs=1, train={"batch": 8, "warmup_epochs": 0, "val": False})
    ctx = SlimContext(
        run_dir=tmp_path,
        data=str(tiny_data),
        imgsz=IMGSZ,
        stage=stage,
        stage_dir=tmp_path / "kd",
        plugins=get_plugin_manager(),
    )
    with caplog.at_level(logging.INFO, logger="yoloslim.plugin.distill"):
        out = run_stage(stage, student, ctx)

    rows = [
        {k.strip(): v for k, v in r.items()} for r in csv.DictReader((tmp_path / "kd" / "train" / "results.csv").open())
    ]
    assert [k for k in rows[0] if k.startswith("train/kd_")] == [f"train/{t}" for t in terms]
    assert all(float(rows[0][f"train/{t}"]) > 0 for t in terms)
    left_out = [r.getMessage() for r in caplog.records if "left out of the default methods" in r.getMessage()]
    assert len(left_out) == (1 if method is None else 0)
    trained, _ = load_checkpoint(out)
    original, _ = load_checkpoint(student)
    shapes = {k: v.shape for k, v in original.state_dict().items()}
    assert {k: v.shape for k, v in trained.state_dict().items()} == shapes
    assert b"yoloslim_distill" not in out.read_bytes()


def test_cli_refuses_ld_for_a_yolo26_student_in_one_line_before_training(
    tiny_data, tiny_ckpt, tiny_ckpt_yolo26, tmp_path, capsys
):
    from yoloslim.cli import main

    code = main(
        [
            "distill",
            str(tiny_ckpt_yolo26),
            "--teacher",
            str(tiny_ckpt),
            "--data",
            str(tiny_data),
            "--method",
            "logit,ld",
            "--epochs",
            "1",
            "--imgsz",
            str(IMGSZ),
            "--out",
            str(tmp_path / "x.pt"),
            "--run-dir",
            str(tmp_path / "run"),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "error" in line] == [err[-1]]
    assert err[-1].startswith(
        "yoloslim: error: stage 'distill': method 'ld' distils the box bins of the DFL, but the "
        "teacher has 16 DFL bins per box side and the student no DFL bins"
    )
    assert "remove 'ld' from 'method'" in err[-1]
    assert not (tmp_path / "x.pt").exists()
    assert not list((tmp_path / "run").rglob("*.pt")) and not list((tmp_path / "run").rglob("train"))


def test_teacher_scale_resamples_the_teachers_maps_onto_the_students_cells_and_rebins_its_distances():
    from yoloslim_distill.resample import rebin, teacher_input, to_student_grid

    assert torch.equal(rebin(16, 1.0), torch.eye(16))
    half = rebin(16, 0.5)  # bin 6 -> 3; bin 5 -> half 2, half 3; every row still a distribution
    assert half[6, 3] == 1 and half[5, 2] == half[5, 3] == 0.5 and torch.allclose(half.sum(1), torch.ones(16))
    assert tuple(teacher_input(torch.zeros(1, 3, 256, 192), 1.25, 32).shape[-2:]) == (320, 256)

    t_shapes, s_shapes, nc, reg_max, temp = [(8, 8), (4, 4)], [(4, 4), (2, 2)], 3, 16, 2.0
    a_t = sum(h * w for h, w in t_shapes)
    bins = torch.full((1, 4, reg_max, a_t), -30.0)
    bins[:, 0, 6], bins[:, 1, 6], bins[:, 2, 5], bins[:, 3, 10] = 30.0, 30.0, 30.0, 30.0  # sharp distances
    teacher = {
        "scores": torch.full((1, nc, a_t), 1.5),
        "boxes": bins.reshape(1, 4 * reg_max, a_t) * temp,
        "feats": [torch.ones(1, 5, h, w) for h, w in t_shapes],
        "one2one": None,
    }
    out = to_student_grid(teacher, s_shapes, reg_max, temp)
    a_s = sum(h * w for h, w in s_shapes)
    assert out["scores"].shape == (1, nc, a_s) and torch.allclose(out["scores"], torch.tensor(1.5))
    assert [tuple(f.shape[-2:]) for f in out["feats"]] == s_shapes
    p = torch.softmax(out["boxes"].reshape(1, 4, reg_max, a_s) / temp, dim=2)
    assert torch.allclose(p.sum(2), torch.ones(1, 4, a_s), atol=1e-5)
    assert torch.allclose(p[:, 0, 3], torch.ones(a_s), atol=1e-4)  # 6 teacher strides = 3 student strides
    assert torch.allclose(p[:, 2, 2], torch.full((a_s,), 0.5), atol=1e-4)  # 5 -> 2.5: split between 2 and 3
    assert torch.allclose(p[:, 3, 5], torch.ones(a_s), atol=1e-4)
    assert to_student_grid(teacher, t_shapes, reg_max, temp) is teacher  # same cells: untouched


def test_distiller_with_a_teacher_at_twice_the_input_trains_every_method():
    teacher = Teacher(_model("yolov8s.yaml", seed=0), "t.pt", "fp32")
    student = _model(seed=1).train()
    seen = []
    forward = teacher.__call__
    distiller = Distiller(teacher, student, _opts("logit,ld,cwd,sl2", teacher_scale=2.0), IMGSZ)
    distiller.teacher = lambda img: seen.append(tuple(img.shape[-2:])) or forward(img)
    x = _images()
    terms = distiller.losses(x, student(x))
    assert seen == [(2 * IMGSZ, 2 * IMGSZ)]
    assert set(terms) == {"kd_logit", "kd_ld", "kd_cwd", "kd_sl2"}
    assert all(torch.isfinite(v) and v.item() > 0 for v in terms.values())
    sum(terms.values()).backward()
    assert student.model[-1].cv2[0][-1].weight.grad.abs().sum() > 0
    with pytest.raises(RecipeError, match="teacher_scale"):
        _opts("logit", teacher_scale=0)
