"""Trust and bad input (issue 15): safe checkpoint loading, inputs never overwritten, run directories without races,
checks before the work, interrupts, file modes.

Every case asserts what the user sees (exit status, one line naming the problem) and what is left on disk (no file
at the output path, inputs byte-identical, no stray temporaries).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from yoloslim.checkpoint import load_checkpoint
from yoloslim.errors import ModelError, StorageError
from yoloslim_test_support import (
    assert_one_line_error,
    file_digests,
    run_cli,
    run_main,
    stray_temp_files,
    subprocess_env,
)


class _Payload:
    """Pickles as a call to ``os.system``: what a malicious checkpoint hides."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture()
def evil_ckpt(tmp_path: Path, tiny_ckpt: Path) -> tuple[Path, Path]:
    """A working checkpoint with a hidden payload that creates a marker file when unpickled."""
    marker = tmp_path / "PAYLOAD_RAN"
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=False)
    ckpt["payload"] = _Payload(marker)
    path = tmp_path / "evil.pt"
    torch.save(ckpt, path)
    assert not marker.exists()
    return path, marker


# --------------------------------------------------------------------------------------------- safe loading


def test_checkpoint_with_a_pickle_payload_is_refused_and_the_payload_never_runs(evil_ckpt, tiny_data, monkeypatch):
    path, marker = evil_ckpt
    monkeypatch.delenv("YOLOSLIM_TRUST_CHECKPOINTS", raising=False)
    with pytest.raises(ModelError, match=r"refused to unpickle 'posix\.system'.*--trust-checkpoint"):
        load_checkpoint(path)
    line = assert_one_line_error(
        run_main("measure", str(path), "--data", str(tiny_data), "--runs", "1"),
        "posix.system",
        "--trust-checkpoint",
        str(path),
    )
    assert "YOLOSLIM_TRUST_CHECKPOINTS" in line
    assert not marker.exists()


def test_detector_refuses_the_payload_too(evil_ckpt):
    from yoloslim_deploy import Detector

    path, marker = evil_ckpt
    with pytest.raises(ModelError, match="posix.system"):
        Detector(path)
    assert not marker.exists()


def test_trust_opt_in_loads_the_checkpoint_as_before(evil_ckpt, tiny_data, monkeypatch):
    path, marker = evil_ckpt
    model, _ = load_checkpoint(path, trust=True)
    assert model.task == "detect" and marker.exists()
    marker.unlink()
    monkeypatch.setenv("YOLOSLIM_TRUST_CHECKPOINTS", "1")
    load_checkpoint(path)
    assert marker.exists()
    marker.unlink()
    r = run_main("measure", str(path), "--data", str(tiny_data), "--runs", "1", "--trust-checkpoint")
    assert r.returncode == 0, r.stderr[-2000:]
    assert marker.exists()


@pytest.fixture(scope="module")
def own_checkpoints(tmp_path_factory, tiny_data, tiny_ckpt) -> list[Path]:
    """Every checkpoint a prune -> distill -> QAT run writes (pruned blocks, distilled student, QAT model)."""
    root = tmp_path_factory.mktemp("own")
    recipe = root / "r.yaml"
    recipe.write_text(f"""name: own
stages:
  - {{type: prune, method: channel, ratio: 0.25, epochs: 0}}
  - {{type: distill, teacher: {tiny_ckpt}, epochs: 1, train: {{batch: 8, workers: 0}}}}
  - {{type: quantize, mode: qat, epochs: 1, calib_images: 8, train: {{batch: 8, workers: 0}}}}
""")
    r = run_cli(
        "compress",
        str(tiny_ckpt),
        "--data",
        str(tiny_data),
        "--recipe",
        str(recipe),
        "--out",
        str(root / "run"),
        "--runs",
        "1",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    found = sorted((root / "run").rglob("*.pt"))
    assert any("prune" in str(p) for p in found) and any("distill" in str(p) for p in found)
    return found


def test_yoloslims_own_checkpoints_load_safely_without_the_opt_in(own_checkpoints, monkeypatch):
    monkeypatch.delenv("YOLOSLIM_TRUST_CHECKPOINTS", raising=False)
    classes = set()
    for path in own_checkpoints:
        model, _ = load_checkpoint(path)
        classes |= {type(m).__name__ for m in model.modules()}
    assert "SplitC2f" in classes  # the pruned blocks came through the allowlist


def test_own_checkpoints_load_with_ultralytics_safe_load_on(own_checkpoints, tiny_data):
    pruned = next(p for p in own_checkpoints if "prune" in str(p))
    env = subprocess_env(ULTRALYTICS_SAFE_LOAD="1")
    env.pop("YOLOSLIM_TRUST_CHECKPOINTS", None)
    r = run_cli("measure", str(pruned), "--data", str(tiny_data), "--runs", "1", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "mAP" in r.stdout


# --------------------------------------------------------------------------------------------- inputs never modified


def test_an_output_that_is_an_input_is_refused_and_the_input_is_untouched(tmp_path, tiny_ckpt, tiny_data):
    mine = tmp_path / "mine.pt"
    shutil.copyfile(tiny_ckpt, mine)
    before = file_digests(mine, Path(tiny_data).parent)
    cases = [
        ("export", str(mine), "--out", str(mine)),
        (
            "prune",
            str(mine),
            "--data",
            str(tiny_data),
            "--out",
            str(mine),
            "--ratio",
            "0.25",
            "--finetune-epochs",
            "0",
            "--run-dir",
            str(tmp_path / "r1"),
        ),
        (
            "quantize",
            str(mine),
            "--data",
            str(tiny_data),
            "--out",
            str(tmp_path / "." / "mine.pt"),
            "--run-dir",
            str(tmp_path / "r2"),
        ),
        ("measure", str(mine), "--data", str(tiny_data), "--json", str(mine)),
        ("measure", str(mine), "--data", str(tiny_data), "--json", str(tiny_data)),
        ("compress", str(mine), "--data", str(tiny_data), "--recipe", str(tmp_path / "r.yaml"), "--out", str(tmp_path)),
    ]
    (tmp_path / "r.yaml").write_text("stages:\n  - {type: export}\n")
    for args in cases:
        assert_one_line_error(run_main(*args), "input")
    assert file_digests(mine, Path(tiny_data).parent) == before
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()
    assert stray_temp_files(tmp_path) == []


def test_a_folder_of_foreign_files_is_not_used_as_a_run_directory(tmp_path, tiny_ckpt, tiny_data):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (tmp_path / "r.yaml").write_text("stages:\n  - {type: export}\n")
    r = run_main(
        "compress", str(tiny_ckpt), "--data", str(tiny_data), "--recipe", str(tmp_path / "r.yaml"), "--out", str(out)
    )
    assert_one_line_error(r, str(out), "new or empty folder")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# --------------------------------------------------------------------------------------------- run directories


def test_two_runs_started_together_get_two_directories_each_naming_its_own_model(tmp_path, tiny_ckpt, tiny_data):
    import json

    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    shutil.copyfile(tiny_ckpt, a)
    shutil.copyfile(tiny_ckpt, b)
    recipe = tmp_path / "same.yaml"
    recipe.write_text("name: same\nstages:\n  - {type: prune, method: magnitude, ratio: 0.3, epochs: 0}\n")
    work = tmp_path / "work"
    work.mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "yoloslim.cli",
                "compress",
                str(m),
                "--data",
                str(tiny_data),
                "--recipe",
                str(recipe),
                "--runs",
                "1",
            ],
            cwd=work,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for m in (a, b)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    runs = sorted((work / "runs" / "slim").iterdir())
    assert [r.name for r in runs] == ["same", "same2"]
    models = {json.loads((r / "report.json").read_text())["model"] for r in runs}
    assert models == {str(a), str(b)}
    for r in runs:
        report = json.loads((r / "report.json").read_text())
        source = load_checkpoint(r / "01_prune" / "prune.pt")[1]["yoloslim"]["source"]
        assert source == report["model"]


def test_a_shorter_rerun_into_the_same_directory_leaves_no_old_stage_folders(tmp_path, tiny_ckpt, tiny_data):
    long, short = tmp_path / "long.yaml", tmp_path / "short.yaml"
    long.write_text(
        "stages:\n  - {type: prune, method: magnitude, ratio: 0.3, epochs: 0}\n"
        "  - {type: prune, name: more, method: magnitude, ratio: 0.5, epochs: 0}\n"
    )
    short.write_text("stages:\n  - {type: prune, method: magnitude, ratio: 0.3, epochs: 0}\n")
    out = tmp_path / "run"
    for recipe in (long, short):
        r = run_main(
            "compress",
            str(tiny_ckpt),
            "--data",
            str(tiny_data),
            "--recipe",
            str(recipe),
            "--out",
            str(out),
            "--runs",
            "1",
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert not (out / ".yoloslim-run.lock").exists()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "01_prune",
        "pareto.png",
        "report.json",
        "report.md",
    ]


def test_stale_temporaries_of_a_killed_process_are_removed_by_the_next_write(tmp_path):
    from yoloslim.files import atomic_write_bytes

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".model.pt.{dead.pid}.abc123.tmp"
    live = tmp_path / f".model.pt.{os.getppid()}.abc123.tmp"
    stale.write_bytes(b"half")
    live.write_bytes(b"someone else's write in progress")
    atomic_write_bytes(tmp_path / "model.pt", b"whole")
    assert not stale.exists() and live.exists()
    assert (tmp_path / "model.pt").read_bytes() == b"whole"


# --------------------------------------------------------------------------------------------- checks before work


@pytest.mark.parametrize(
    "flags, words",
    [
        (("--threads", "0"), ("--threads",)),
        (("--imgsz", "33"), ("--imgsz", "stride")),
        (("--imgsz", "0"), ("--imgsz",)),
        (("--split", "nosuch"), ("nosuch",)),
        (("--runs", "0"), ("--runs",)),
    ],
)
def test_bad_run_options_stop_before_any_work(tmp_path, tiny_ckpt, tiny_data, flags, words):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {type: finetune, epochs: 1}\n  - {type: export}\n")
    out = tmp_path / "run"
    r = run_main(
        "compress", str(tiny_ckpt), "--data", str(tiny_data), "--recipe", str(recipe), "--out", str(out), *flags
    )
    assert_one_line_error(r, *words)
    assert not out.exists()


def test_an_out_under_a_file_is_refused_before_the_stage(tmp_path, tiny_ckpt, tiny_data):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_main(
        "prune",
        str(tiny_ckpt),
        "--data",
        str(tiny_data),
        "--out",
        str(blocker / "p.pt"),
        "--ratio",
        "0.2",
        "--finetune-epochs",
        "0",
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert_one_line_error(r, str(blocker))
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_out_is_refused_before_the_stage(tmp_path, tiny_ckpt, tiny_data):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = run_cli("export", str(tiny_ckpt), "--out", str(ro / "m.onnx"))
        assert_one_line_error(r, "not writable", str(ro))
    finally:
        ro.chmod(0o755)


def test_too_little_free_disk_is_refused_before_the_stage(tmp_path, tiny_ckpt, tiny_data, monkeypatch):
    from yoloslim.pipeline import compress

    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {type: export}\n")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(StorageError, match="MiB free"):
        compress(tiny_ckpt, tiny_data, recipe, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_relative_run_dir_keeps_the_training_folder_inside_it(tmp_path, tiny_ckpt, tiny_data):
    r = run_cli(
        "finetune",
        str(tiny_ckpt),
        "--data",
        str(tiny_data),
        "--out",
        "ft.pt",
        "--epochs",
        "1",
        "--run-dir",
        "rel",
        "--runs",
        "1",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "rel" / "01_finetune" / "train" / "results.csv").is_file()
    assert not (tmp_path / "runs" / "detect").exists()
    assert (tmp_path / "ft.pt").is_file()


# --------------------------------------------------------------------------------------------- interrupts, files


def _run_and_signal(args: list[str], when: Path, sig: int, cwd: Path) -> subprocess.CompletedProcess:
    """Start ``yoloslim ARGS``, send ``sig`` as soon as ``when`` exists (a phase has begun), wait for the end."""
    p = subprocess.Popen(
        [sys.executable, "-m", "yoloslim.cli", *args],
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and p.poll() is None:
        if list(when.parent.glob(when.name)):
            p.send_signal(sig)
            break
        time.sleep(0.02)
    out, err = p.communicate(timeout=300)
    return subprocess.CompletedProcess(args, p.returncode, out, err)


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_export_ends_the_run_interrupted_with_no_output(tmp_path, tiny_ckpt, sig, status):
    out = tmp_path / "m.onnx"
    r = _run_and_signal(["export", str(tiny_ckpt), "--out", str(out)], tmp_path / ".export-*", sig, tmp_path)
    assert r.returncode == status, (r.returncode, r.stderr[-3000:])
    assert r.stderr.strip().splitlines()[-1] == "yoloslim: interrupted"
    assert "Traceback" not in r.stderr
    assert not out.exists()
    assert stray_temp_files(tmp_path) == []


def test_a_signal_during_training_ends_the_run_interrupted_with_no_output(tmp_path, tiny_ckpt, tiny_data):
    out, run = tmp_path / "ft.pt", tmp_path / "run"
    r = _run_and_signal(
        [
            "finetune",
            str(tiny_ckpt),
            "--data",
            str(tiny_data),
            "--out",
            str(out),
            "--epochs",
            "3",
            "--run-dir",
            str(run),
        ],
        run / "01_finetune" / "train",
        signal.SIGTERM,
        tmp_path,
    )
    assert r.returncode == 143, (r.returncode, r.stderr[-3000:])
    assert r.stderr.strip().splitlines()[-1] == "yoloslim: interrupted"
    assert not out.exists() and not (run / "report.md").exists()
    assert stray_temp_files(tmp_path) == []
    assert not (run / ".yoloslim-run.lock").exists()


def test_outputs_get_the_users_umask(tmp_path):
    from yoloslim.files import atomic_write_bytes

    code = (
        f"import os; os.umask(0o027); from yoloslim.files import atomic_write_bytes; "
        f"atomic_write_bytes({str(tmp_path / 'b.bin')!r}, b'x')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=subprocess_env())
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o640


def test_a_failed_checkpoint_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    import errno

    from yoloslim.trainer import _AtomicPath

    last = _AtomicPath(tmp_path / "last.pt")
    last.write_bytes(b"epoch 1")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        last.write_bytes(b"epoch 2" * 1000)
    assert (tmp_path / "last.pt").read_bytes() == b"epoch 1"
    assert stray_temp_files(tmp_path) == []


def test_a_huge_error_message_is_cut_to_one_short_line(tmp_path, tiny_ckpt, tiny_data):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nstages: [*e]\n"
    )
    r = run_main(
        "compress", str(tiny_ckpt), "--data", str(tiny_data), "--recipe", str(bomb), "--out", str(tmp_path / "run")
    )
    assert_one_line_error(r, "bomb.yaml")
    assert len(r.stderr) < 5000


def test_a_run_directory_from_before_the_marker_is_recognised_by_its_report_and_cleaned(tmp_path):
    from yoloslim.outputs import run_directory

    old = tmp_path / "demo"
    (old / "05_quantize").mkdir(parents=True)
    (old / "report.json").write_text("{}")
    (old / "notes.txt").write_text("the user's")
    with run_directory(old, tmp_path / "unused") as folder:
        assert folder == old and (old / ".yoloslim-run.lock").is_file()
        assert sorted(p.name for p in old.iterdir() if not p.name.startswith(".")) == ["notes.txt"]
    assert not (old / ".yoloslim-run.lock").exists() and (old / ".yoloslim-run").is_file()


def test_a_trust_scope_reaches_subprocesses_and_is_restored(monkeypatch):
    from ultralytics.nn import tasks

    from yoloslim.trust import ENV_VAR, trust_scope

    monkeypatch.delenv(ENV_VAR, raising=False)
    before = tasks.SAFE_LOAD
    with trust_scope(True):
        assert os.environ[ENV_VAR] == "1" and tasks.SAFE_LOAD is False
    with trust_scope(None):
        assert ENV_VAR not in os.environ and tasks.SAFE_LOAD is True
    assert ENV_VAR not in os.environ and tasks.SAFE_LOAD is before
