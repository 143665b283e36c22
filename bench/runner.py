"""Shared benchmark runner: export, measure baseline and candidates in one process, write results.

Every benchmark under ``bench/`` measures its baseline and its candidates with the one harness
(:func:`yoloslim.measurement.measure`, latency interleaved across the models of a call) and writes
``bench/results/<name>.json`` and ``bench/results/<name>.md``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "runs" / "bench"

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")

from yoloslim.context import SlimContext  # noqa: E402
from yoloslim.files import atomic_write_json, atomic_write_text  # noqa: E402
from yoloslim.measurement import Measurement, format_table, measure  # noqa: E402
from yoloslim.pipeline import runtime_opener  # noqa: E402
from yoloslim.plugins import get_plugin_manager  # noqa: E402
from yoloslim.report import environment  # noqa: E402

LOGGER = logging.getLogger("yoloslim.bench")
TEACHER = ROOT / "weights" / "teacher_yolov8s.pt"
STUDENT = ROOT / "weights" / "student_yolov8n.pt"


def bundled_data(variant: str = "full") -> Path:
    """Return the bundled dataset's data.yaml, generating it first if needed."""
    from yoloslim.testing.synth_shapes import generate

    return generate(ROOT / "datasets" / "generated" / variant, variant=variant)


def export_onnx(checkpoint: Path, imgsz: int, workdir: Path) -> Path:
    """Export ``checkpoint`` to a static batch-1 ONNX at ``imgsz`` through the export plugins.

    An earlier export is reused only if it came from the same checkpoint bytes: the file name carries a hash of
    the checkpoint (a retrained ``weights/*.pt`` keeps its name, and a stale export would be measured otherwise).
    """
    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()[:12]
    out = workdir / f"{checkpoint.stem}_{digest}_{imgsz}.onnx"
    if not out.exists():
        SlimContext(imgsz=imgsz).export(checkpoint, "onnx", out, imgsz=imgsz)
    return out


def slim_context(data: Path, imgsz: int, run_dir: Path) -> SlimContext:
    """The context a stage gets in a run: dataset, image size, run folder, the installed plugins."""
    return SlimContext(
        run_dir=run_dir.resolve(), data=str(Path(data).resolve()), imgsz=imgsz, plugins=get_plugin_manager()
    )


def run_stage_job(
    run_dir: Path,
    folder: str,
    stage: dict[str, Any],
    model: Path,
    data: Path,
    imgsz: int,
    train: dict[str, Any],
    original: Path | None = None,
) -> Path:
    """Run one recipe stage as a run would (checked first) in ``run_dir/folder``; returns its output.

    ``run_dir/job.json`` records the seconds it took and, for a prune stage with a latency budget, the search.
    ``original`` is the run's input checkpoint (what ``teacher: original`` names; default ``model``).
    """
    import json

    from yoloslim.pipeline import run_stage
    from yoloslim.recipe import parse_recipe

    ctx = slim_context(data, imgsz, run_dir)
    ctx.model = str(original or model)
    pm = ctx.plugins
    st = parse_recipe({"name": run_dir.name, "train": train, "stages": [stage]}, pm.stage_types()).stages[0]
    ctx.stage, ctx.stage_dir = st, ctx.run_dir / folder
    pm.call("yoloslim_check_stage", stage=st, ctx=ctx)
    t0 = time.time()
    out = run_stage(st, model, ctx)
    info = {"seconds": round(time.time() - t0, 1), "latency": (ctx.state.get("prune") or {}).get("latency")}
    (ctx.run_dir / "job.json").write_text(json.dumps(info, indent=1, default=str))
    return out


def agreement_by_scene(
    rows: Sequence[tuple[str, Path]], reference: Path, data: Path, imgsz: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Agreement of each row with ``reference`` on each held-out scene of a real dataset YAML (``data``).

    Every folder under ``<data's folder>/heldout`` is one scene (a later stretch of the street film, another clip,
    photos). Returns ``{row: {scene: {"map50_95", "f1", "images"}}}``.
    """
    import tempfile

    import yaml

    names = yaml.safe_load(Path(data).read_text())["names"]
    root = Path(data).parent
    out: dict[str, dict[str, dict[str, float]]] = {n: {} for n, _ in rows}
    with tempfile.TemporaryDirectory(prefix="scene-") as tmp:
        for scene in sorted(p.name for p in (root / "heldout").iterdir() if p.is_dir()):
            scene_yaml = Path(tmp) / f"{scene}.yaml"
            scene_yaml.write_text(
                yaml.safe_dump({"path": str(root), "train": "pool", "val": f"heldout/{scene}", "names": names})
            )
            measured = measure_rows(
                rows, scene_yaml, imgsz=imgsz, split="val", accuracy=False, latency=False, reference=reference
            )
            for m in measured:
                a = m.agreement
                out[m.name][scene] = {
                    "map50_95": round(a["map50_95"], 4),
                    "f1": round(a["f1"], 4),
                    "images": a["images"],
                }
    return out


def quant_options(**options: Any) -> Any:
    """Validated ``quantize`` stage options: the stage's defaults with ``options`` (``epochs`` for mode qat)."""
    from yoloslim_quant.options import STAGE_TYPE

    epochs = options.pop("epochs", 0)
    return STAGE_TYPE.parse(options, epochs)


def ultralytics_int8(checkpoint: Path, data: Path, imgsz: int, out: Path, split: str | None = None) -> Path:
    """Ultralytics' own ``export(format="onnx", quantize=8)`` of ``checkpoint`` at ``imgsz``, written to ``out``.

    Calibrated on ``split`` of ``data`` (Ultralytics' default: val). Ultralytics writes beside its source, so the
    export runs from a private copy in a temporary folder.
    """
    import shutil
    import tempfile

    from ultralytics import YOLO

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ultralytics-int8-", dir=out.parent) as tmp:
        src = Path(tmp) / checkpoint.name
        shutil.copyfile(checkpoint, src)
        written = YOLO(str(src), task="detect").export(
            format="onnx",
            quantize=8,
            data=str(data),
            imgsz=imgsz,
            batch=1,
            device="cpu",
            simplify=True,
            **({"split": split} if split else {}),
        )
        if not written or not Path(written).is_file():
            raise RuntimeError("Ultralytics' exporter returned no file")
        os.replace(written, out)
    return out


def measure_rows(rows: Sequence[tuple[str, Path]], data: Path | None, **kwargs: Any) -> list[Measurement]:
    """Measure named files together (latency interleaved), plugin runtimes included."""
    return measure(
        [p for _, p in rows],
        data,
        names=[n for n, _ in rows],
        runtime_opener=runtime_opener(get_plugin_manager()),
        **kwargs,
    )


def write_results(
    name: str, sections: dict[str, list[Measurement]], meta: dict[str, Any], notes: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write ``bench/results/<name>.json`` and ``.md``: one table per section, plus settings and notes."""
    payload = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        **meta,
        "environment": {**environment(), "machine": platform.machine(), "cores": os.cpu_count()},
        "sections": {k: [m.to_dict() for m in v] for k, v in sections.items()},
        "notes": list(notes),
    }
    js = atomic_write_json(RESULTS / f"{name}.json", payload)
    lines = [
        f"# Benchmark: {name}",
        "",
        f"Measured {payload['date']} on {payload['environment']['cpu']} "
        f"({payload['environment']['cores']} cores); torch {payload['environment']['torch']}, "
        f"onnxruntime {payload['environment']['onnxruntime']}.",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in meta.items()] + [""]
    for section, rows in sections.items():
        lines += [f"## {section}", "", format_table(rows), ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    md = atomic_write_text(RESULTS / f"{name}.md", "\n".join(lines))
    return js, md


def load_average() -> str:
    """The 1/5/15-minute load averages, to record how quiet the machine was around a latency measurement."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def setup_logging() -> None:
    """Log benchmark progress to stderr."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
