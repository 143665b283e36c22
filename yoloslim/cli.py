"""The ``yoloslim`` command line: compress, measure, export, plugins.

Bad input ends with one line on stderr (``yoloslim: error: ...``) and exit status 1; a traceback
means a bug.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence


def _offline_defaults() -> None:
    # Before Ultralytics is imported: never download, never pip-install at run time.
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_VERBOSE", "True")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="yoloslim", description="Make trained Ultralytics YOLO detectors small and fast.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compress", help="run a recipe on a checkpoint and report original vs compressed",
                       description="Run the recipe's stages in order, write each stage's checkpoint or artifact, "
                                   "then measure the original and every artifact and write report.md/report.json.")
    c.add_argument("model", help="Ultralytics detection checkpoint (.pt)")
    c.add_argument("--data", required=True, help="dataset YAML the model was trained on")
    c.add_argument("--recipe", required=True, help="recipe YAML (see recipes/)")
    c.add_argument("--out", help="run directory (default runs/slim/<recipe name>)")
    c.add_argument("--imgsz", type=int, help="image size (default: the checkpoint's training size)")
    c.add_argument("--device", default="cpu", help="training device, as in Ultralytics (cpu, 0, 0,1)")
    c.add_argument("--split", help="split for mAP (default test if present, else val)")
    c.add_argument("--threads", type=int, default=2, help="CPU threads for latency (default 2)")
    c.add_argument("--runs", type=int, default=50, help="timed runs per artifact (default 50)")

    m = sub.add_parser("measure", help="measure mAP, params, GFLOPs, size and latency of models",
                       description="Measure .pt and .onnx models with the same harness, latency interleaved.")
    m.add_argument("models", nargs="+", help="checkpoints or exported models")
    m.add_argument("--data", required=True, help="dataset YAML")
    m.add_argument("--imgsz", type=int, help="image size (default: the first checkpoint's training size)")
    m.add_argument("--split", help="split for mAP (default test if present, else val)")
    m.add_argument("--threads", type=int, default=2, help="CPU threads for latency (default 2)")
    m.add_argument("--runs", type=int, default=50, help="timed runs per model (default 50)")
    m.add_argument("--json", help="also write the results to this JSON file")

    e = sub.add_parser("export", help="export a checkpoint through the export plugins",
                       description="Export a checkpoint to a deployment format via the yoloslim_export hook.")
    e.add_argument("model", help="Ultralytics detection checkpoint (.pt)")
    e.add_argument("--format", default="onnx", help="format name (see 'yoloslim plugins'), default onnx")
    e.add_argument("--out", required=True, help="output file")
    e.add_argument("--imgsz", type=int, help="image size (default: the checkpoint's training size)")

    sub.add_parser("plugins", help="list loaded plugins, their package, version, hooks and stage types",
                   description="List loaded plugins and those that failed to load.")
    return p


def _cmd_compress(a: argparse.Namespace) -> int:
    from yoloslim.pipeline import compress

    r = compress(a.model, a.data, a.recipe, out=a.out, imgsz=a.imgsz, device=a.device, split=a.split,
                 threads=a.threads, runs=a.runs)
    print(r.report_md.read_text(encoding="utf-8"))
    print(f"report: {r.report_md}  {r.report_json}")
    return 0


def _cmd_measure(a: argparse.Namespace) -> int:
    from yoloslim.measure import format_table
    from yoloslim.pipeline import measure_models

    results = measure_models(a.models, a.data, imgsz=a.imgsz, split=a.split, threads=a.threads, runs=a.runs,
                             json_path=a.json)
    print(format_table(results))
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from yoloslim.context import SlimContext
    from yoloslim.pipeline import model_imgsz

    imgsz = a.imgsz or model_imgsz(a.model)
    path = SlimContext(imgsz=imgsz).export(a.model, a.format, a.out)
    print(path)
    return 0


def _cmd_plugins(a: argparse.Namespace) -> int:
    from yoloslim.plugins import get_plugin_manager

    pm = get_plugin_manager()
    for info in pm.info():
        print(f"{info.name}  ({info.package} {info.version})")
        print(f"    hooks: {', '.join(info.hooks) or '-'}")
        if info.stage_types:
            print(f"    stage types: {', '.join(info.stage_types)}")
    for name, err in pm.failed.items():
        print(f"{name}  FAILED TO LOAD: {err}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``yoloslim`` command; returns the exit status."""
    _offline_defaults()
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(name)s: %(message)s")
    from yoloslim.errors import YoloslimError

    handler = {"compress": _cmd_compress, "measure": _cmd_measure, "export": _cmd_export,
               "plugins": _cmd_plugins}[args.command]
    try:
        return handler(args)
    except YoloslimError as e:
        print(f"yoloslim: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("yoloslim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
