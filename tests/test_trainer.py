"""SlimTrainer: keeps its model, adds plugin loss terms to the gradient, fires hooks, rebuilds in DDP ranks."""

import copy
import subprocess
import sys
import textwrap

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from yoloslim import hookimpl
from yoloslim.checkpoint import load_checkpoint, save_checkpoint
from yoloslim.context import SlimContext
from yoloslim.plugins import PluginManager
from yoloslim.trainer import SlimTrainer, cpu_threads
from yoloslim_test_support import subprocess_env

W = 0.05


class L2OnFirstParam:
    @hookimpl
    def yoloslim_extra_loss(self, batch, preds, model, ctx):
        first = next(model.parameters())
        return {"l2first": W * first.pow(2).sum()}


def overrides(data, tmp_path, **kw):
    return {
        "data": str(data),
        "imgsz": 64,
        "epochs": 1,
        "batch": 8,
        "device": "cpu",
        "plots": False,
        "amp": False,
        "project": str(tmp_path),
        "name": "t",
        "exist_ok": True,
        "model": "x.pt",
        **kw,
    }


def grads(model):
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


def test_extra_loss_term_is_added_to_the_loss_and_changes_the_gradient_by_its_own(tiny_data, tiny_ckpt, tmp_path):
    model, _ = load_checkpoint(tiny_ckpt)
    pm = PluginManager(load_entrypoints=False)
    pm.register(L2OnFirstParam(), "l2")
    trainer = SlimTrainer(overrides=overrides(tiny_data, tmp_path), model=model, ctx=SlimContext(plugins=pm))
    trainer.set_model_attributes()
    loader = trainer.get_dataloader(trainer.data["train"], batch_size=8, rank=-1, mode="train")
    batch = trainer.preprocess_batch(next(iter(loader)))
    model.train()

    model.criterion = model.init_criterion()
    loss0, items0 = model(batch)
    loss0.sum().backward()
    g0 = grads(model)
    model.zero_grad()

    trainer.run_callbacks("on_train_start")  # installs the criterion, as in a real run
    loss1, items1 = model(batch)
    loss1.sum().backward()
    g1 = grads(model)

    first = next(model.parameters()).detach()
    bs = batch["img"].shape[0]
    assert list(items1) == [*items0, "l2first"]
    assert items1["l2first"].item() == pytest.approx(W * first.pow(2).sum().item(), rel=1e-5)
    assert loss1.sum().item() == pytest.approx(loss0.sum().item() + bs * items1["l2first"].item(), rel=1e-5)
    torch.testing.assert_close(g1[0] - g0[0], 2 * W * bs * first, rtol=1e-3, atol=1e-6)
    assert (g1[0] - g0[0]).abs().max() > 1e-4
    for a, b in zip(g0[1:], g1[1:]):
        if a is not None:
            torch.testing.assert_close(a, b)


def narrow_model_with_full_yaml(nc, names):
    full = yaml_model_load("yolov8n.yaml")
    narrow_cfg = copy.deepcopy(full)
    narrow_cfg["scales"] = {"n": [0.33, 0.125, 1024]}  # half of yolov8n's width everywhere
    model = DetectionModel(narrow_cfg, nc=nc, verbose=False)
    model.yaml = full  # what Ultralytics would rebuild from
    model.names = names
    return model


def test_model_whose_widths_differ_from_its_yaml_is_trained_as_is_and_reloads(tiny_data, tmp_path):
    from ultralytics import YOLO

    from yoloslim.dataset import check_dataset

    data = check_dataset(tiny_data)
    narrow = narrow_model_with_full_yaml(data["nc"], data["names"])
    n_narrow = sum(p.numel() for p in narrow.parameters())
    n_full = sum(p.numel() for p in DetectionModel(narrow.yaml, nc=data["nc"], verbose=False).parameters())
    assert n_narrow < 0.5 * n_full
    src = save_checkpoint(narrow, tmp_path / "narrow.pt")

    model = YOLO(str(src))
    model.train(trainer=SlimTrainer, **{k: v for k, v in overrides(tiny_data, tmp_path).items() if k != "model"})
    best = tmp_path / "t" / "weights" / "last.pt"
    assert sum(p.numel() for p in model.trainer.model.parameters()) == n_narrow

    code = (
        "import sys; from ultralytics import YOLO; m = YOLO(sys.argv[1]); "
        "print(sum(p.numel() for p in m.model.parameters()))"
    )
    r = subprocess.run([sys.executable, "-c", code, str(best)], capture_output=True, text=True, env=subprocess_env())
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip().splitlines()[-1]) == n_narrow


def test_cpu_training_uses_every_core_not_ultralytics_cpu_count_minus_one(tiny_data, tmp_path, monkeypatch):
    SlimTrainer(overrides=overrides(tiny_data, tmp_path))
    assert torch.get_num_threads() == cpu_threads()
    monkeypatch.setenv("YOLOSLIM_THREADS", "1")
    SlimTrainer(overrides=overrides(tiny_data, tmp_path))
    assert torch.get_num_threads() == 1
    torch.set_num_threads(cpu_threads())


def test_ddp_rank_rebuilds_context_and_plugins_from_what_ultralytics_passes(
    tiny_data, tiny_ckpt, plugin_site, tmp_path
):
    """Run the exact file Ultralytics' DDP launcher writes; on CPU the 'rank' trains in one process."""
    log = tmp_path / "events.log"
    script = textwrap.dedent(f"""
        import subprocess, sys
        from ultralytics.utils.dist import generate_ddp_file
        from yoloslim.context import SlimContext
        from yoloslim.checkpoint import load_checkpoint
        from yoloslim.recipe import Stage
        from yoloslim.trainer import SlimTrainer

        model, _ = load_checkpoint({str(tiny_ckpt)!r})
        stage = Stage(0, "finetune", "finetune", {{}}, epochs=1)
        ctx = SlimContext(data={str(tiny_data)!r}, imgsz=64, stage=stage)
        overrides = {overrides(tiny_data, tmp_path, model=str(tiny_ckpt), val=False)!r}
        trainer = SlimTrainer(overrides=overrides, model=model, ctx=ctx)
        with ctx.exported():  # what SlimTrainer.train() does before Ultralytics launches the ranks
            file = generate_ddp_file(trainer)
            sys.exit(subprocess.run([sys.executable, file]).returncode)
    """)
    env = subprocess_env(PYTHONPATH=str(plugin_site), TESTPLUG_LOG=str(log))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    events = log.read_text().splitlines()
    assert events[0] == "train_start finetune"  # the rank knows the stage it runs
    assert "extra_loss finetune" in events and events[-1] == "train_end finetune"
    assert (tmp_path / "t" / "results.csv").read_text().splitlines()[0].count("train/testplug_l2") == 1
