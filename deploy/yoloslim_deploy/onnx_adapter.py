"""ONNX export adapter: answers ``yoloslim_export`` for ``fmt="onnx"`` with Ultralytics' exporter.

Ultralytics traces the fused model, simplifies the graph with onnxslim and embeds its metadata (class
names, image size, stride, batch, export arguments). The adapter adds what a deployment needs on top:

- a ``yoloslim`` metadata entry (JSON): precision, dynamic batch, opset, output layout (``end2end``), the source
  checkpoint's resolved absolute path (``source``), the recipe and stage that made it, and the parity result below;
- ``onnx.checker.check_model(full_check=True)``;
- a parity check: the exported graph and the PyTorch model run the same letterboxed real images (the
  run's dataset, else a fixed synthetic image) and their raw outputs must agree within the tolerance of
  the precision (:data:`yoloslim_deploy.parity.TOLERANCES`), else the export fails.

The output layout follows Ultralytics' ``nms`` argument: unset, the head's one-to-many output
``(batch, 4 + classes, anchors)`` with NMS left to the runtime (YOLOv8, YOLO11, and YOLO26 by default);
``nms=False``, YOLO26's NMS-free one-to-one head, ``(batch, k, 6)`` detections (``k = min(max_det, anchors)``;
other heads keep their usual layout). ``nms=True`` (NMS embedded in the graph) is refused: its output cannot be
checked against the PyTorch model's.

Ultralytics writes the ONNX beside its source checkpoint; the adapter exports from a private copy in a
temporary folder (``.export-<pid>-xxxx`` beside ``out``; one left by a killed export is removed by the next export
into that folder) and renames the checked file into place, so a failure leaves no file at ``out``.

Ultralytics' ``check_requirements``, which its ONNX exporter calls, is wrapped in its ``TryExcept``, whose
``__exit__`` swallows every exception, ``KeyboardInterrupt`` included; the adapter notices an interrupt that was
swallowed there and raises it again once Ultralytics' exporter returns (:func:`yoloslim.handled_signals`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from yoloslim import ExportError, handled_signals, hookimpl
from yoloslim_deploy.metadata import YOLOSLIM_KEY
from yoloslim_deploy.parity import compare_outputs, letterboxed_batch, onnx_output, parity_images, torch_reference
from yoloslim_deploy.tempdirs import export_workdir

LOGGER = logging.getLogger("yoloslim.deploy.onnx")

# Options passed on to Ultralytics' exporter as they are.
_ULTRALYTICS_OPTIONS = ("imgsz", "opset", "dynamic", "batch", "half", "simplify", "nms", "max_det")
# Options the adapter itself reads.
_OWN_OPTIONS = ("parity", "parity_tolerance", "parity_images")
_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "QLinearMatMul"}


def _check_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(_ULTRALYTICS_OPTIONS) - set(_OWN_OPTIONS))
    if unknown:
        raise ExportError(
            f"unknown ONNX export option(s) {unknown}; use {', '.join(_ULTRALYTICS_OPTIONS + _OWN_OPTIONS)}"
        )
    imgsz = options.get("imgsz")
    if imgsz is not None and (not isinstance(imgsz, int) or imgsz < 32):
        raise ExportError(f"ONNX export option imgsz={imgsz!r}; pass one integer >= 32 (square input)")
    batch = options.get("batch")
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise ExportError(f"ONNX export option batch={batch!r}; pass a positive integer (static batch size)")
    check_nms_option(options.get("nms"), "ONNX")
    max_det = options.get("max_det")
    if max_det is not None and (not isinstance(max_det, int) or max_det < 1):
        raise ExportError(f"ONNX export option max_det={max_det!r}; pass a positive integer (detections per image)")
    tol = options.get("parity_tolerance")
    if tol is not None and (len(tol) != 2 or any(float(t) < 0 for t in tol)):
        raise ExportError(
            f"ONNX export option parity_tolerance={tol!r}; pass (box pixels, class probability), e.g. (0.01, 1e-4)"
        )


def check_nms_option(nms: Any, fmt: str) -> None:
    """Accept ``nms`` unset or False (YOLO26's NMS-free end-to-end output); refuse embedded NMS with one line."""
    if nms is True:
        raise ExportError(
            f"{fmt} export option nms=True embeds NMS in the graph, whose output yoloslim cannot check "
            "against the PyTorch model; pass nms=false for YOLO26's NMS-free end-to-end output, or leave "
            "nms unset for NMS after the model"
        )
    if nms is not None and nms is not False:
        raise ExportError(
            f"{fmt} export option nms={nms!r}; pass nms=false (YOLO26's NMS-free end-to-end output) or leave it unset"
        )


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def _precision(model: Any, half: bool) -> str:
    if any(node.op_type in _QUANT_OPS for node in model.graph.node):
        return "int8"
    return "fp16" if half else "fp32"


def _toposort(model: Any) -> None:
    """Order the graph's nodes so every input is produced before it is used (in place).

    Ultralytics' CPU FP16 conversion appends its input casts at the end of the graph; ONNX Runtime accepts that,
    ``onnx.checker`` (rightly) does not.
    """
    graph = model.graph
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:  # a cycle or a dangling input: leave the order for the checker to report
            return
        for node in ready:
            known.update(node.output)
        ordered += ready
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    nodes = [type(n)() for n in ordered]
    for copy, node in zip(nodes, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _provenance(checkpoint: Path, ctx: Any) -> dict[str, Any]:
    """What made the checkpoint: its path, the recipe and stage of this run, and what the checkpoint itself records.

    ``source`` is the checkpoint's resolved absolute path, so the export names its origin wherever it is copied.
    """
    from yoloslim import load_checkpoint

    _, ckpt = load_checkpoint(checkpoint)
    info: dict[str, Any] = {"source": str(Path(checkpoint).resolve()), "checkpoint": ckpt.get("yoloslim") or {}}
    if ctx is not None:
        info["recipe"] = ctx.recipe_path
        info["stage"] = ctx.stage.name if ctx.stage is not None else None
    return info


def onnx_props(model: Any) -> dict[str, str]:
    """An in-memory ONNX model's ``metadata_props`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def _set_metadata(model: Any, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    prop = model.metadata_props.add()
    prop.key, prop.value = key, value


@hookimpl
def yoloslim_export_formats() -> list[str]:
    """The ONNX adapter writes ``onnx`` (its dependencies are yoloslim's own)."""
    return ["onnx"]


@hookimpl
def yoloslim_export(checkpoint: Path, fmt: str, out: Path, options: dict[str, Any], ctx: Any) -> Path | None:
    """Export ``checkpoint`` to a checked, parity-tested ONNX file at ``out``.

    Options: ``imgsz``; ``batch`` (static batch size, default 1); ``dynamic`` (dynamic batch and image axes);
    ``opset``; ``simplify`` (onnxslim, default True); ``half`` (FP16); ``nms`` (False: YOLO26's NMS-free end-to-end
    output ``(batch, k, 6)``; True is refused); ``max_det`` (``k`` of an end-to-end output, default 300);
    ``parity`` (default True); ``parity_tolerance`` (``(box pixels, class probability)``, default by precision);
    ``parity_images`` (default 4).
    """
    if fmt != "onnx":
        return None
    import onnx
    from ultralytics import YOLO

    options = {k: v for k, v in options.items() if v is not None}
    _check_options(options)
    checkpoint, out = Path(checkpoint), Path(out)
    provenance = _provenance(checkpoint, ctx)  # also fails early, with one line, on a bad checkpoint
    out.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {
        "format": "onnx",
        "device": "cpu",
        "simplify": True,
        "verbose": False,
        **{k: options[k] for k in _ULTRALYTICS_OPTIONS if k in options},
    }
    dynamic = bool(kwargs.get("dynamic", False))
    with export_workdir(out.parent, ".export-") as tmp:
        src = Path(tmp) / checkpoint.name
        shutil.copyfile(checkpoint, src)
        try:
            with handled_signals():
                written = YOLO(str(src), task="detect").export(**kwargs)
        except Exception as e:
            raise ExportError(f"ONNX export of '{checkpoint}' failed: {type(e).__name__}: {_first_line(e)}") from e
        if not written or not Path(written).is_file():
            raise ExportError(f"ONNX export of '{checkpoint}' produced no file")

        model = onnx.load(str(written))
        _toposort(model)
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as e:
            raise ExportError(f"ONNX export of '{checkpoint}' failed onnx.checker: {_first_line(e)}") from e
        precision = _precision(model, bool(kwargs.get("half")))
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        # Ultralytics records the head it exported; nms=False on a head without a one-to-one branch exports the usual
        # layout, so the option alone does not say.
        end2end = str(onnx_props(model).get("end2end")) == "True"
        meta: dict[str, Any] = {
            "precision": precision,
            "dynamic": dynamic,
            "opset": opset,
            "end2end": end2end,
            **provenance,
        }

        if options.get("parity", True):
            imgsz = int(kwargs.get("imgsz") or 640)
            batch = 2 if dynamic else int(kwargs.get("batch", 1))
            images = parity_images(getattr(ctx, "data", None), count=int(options.get("parity_images", 4)))
            x = letterboxed_batch(images, imgsz, batch)
            tol = options.get("parity_tolerance")
            candidate = onnx_output(model.SerializeToString(), x, batch)  # the graph that will be written
            reference = torch_reference(checkpoint, x, end2end=end2end, max_det=int(kwargs.get("max_det") or 300))
            result = compare_outputs(
                reference,
                candidate,
                precision,
                tuple(float(t) for t in tol) if tol is not None else None,
                end2end=end2end,
            )
            if not result.ok:
                raise ExportError(
                    f"ONNX export of '{checkpoint}' differs from the PyTorch model: max box diff "
                    f"{result.max_box_diff:.4g} px (tolerance {result.box_tol}), max class-probability diff "
                    f"{result.max_score_diff:.4g} (tolerance {result.score_tol}); check the model, or pass "
                    "parity_tolerance=(box, score) to accept it"
                )
            meta["parity"] = result.to_dict()
            LOGGER.info(
                "%s: parity with PyTorch on %d images: box %.2g px, class %.2g",
                out.name,
                result.images,
                result.max_box_diff,
                result.max_score_diff,
            )

        _set_metadata(model, YOLOSLIM_KEY, json.dumps(meta, default=str))
        staged = Path(tmp) / "checked.onnx"
        onnx.save(model, str(staged))
        os.replace(staged, out)
    LOGGER.info(
        "exported %s -> %s (%s, %s batch, %s)",
        checkpoint,
        out,
        precision,
        "dynamic" if dynamic else f"static {kwargs.get('batch', 1)}",
        "NMS-free end-to-end output" if end2end else "NMS after the model",
    )
    return out
