"""Model metadata a runtime needs: class names, input size, stride, batch, precision, output layout and provenance.

Ultralytics already embeds its metadata in every export (``metadata_props`` of an ONNX graph, a
length-prefixed JSON header ahead of a TensorRT engine); yoloslim adds one key, ``yoloslim``, a JSON
object with the precision, the recipe and stage that made the model and the export's parity check.
:func:`read_metadata` turns any of the three formats into one :class:`ModelMeta`.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yoloslim import ModelError

YOLOSLIM_KEY = "yoloslim"


@dataclass
class ModelMeta:
    """What a runtime needs to know about a model file.

    Attributes:
        names: Class index -> name.
        imgsz: Input (height, width) the model was exported for.
        stride: Largest stride of the network (pixels).
        batch: Fixed batch size, or None when the batch axis is dynamic.
        dynamic: The input's batch (and, for Ultralytics exports, spatial) axes are dynamic.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        end2end: The output is the end-to-end layout ``(batch, k, 6)`` (YOLO26's NMS-free head exported with
            ``nms=False``, or an Ultralytics export with NMS embedded) rather than ``(batch, 4 + classes, anchors)``;
            None when the file does not say (older exports): the runtime then infers it from the output's shape.
        yoloslim: The ``yoloslim`` metadata object (recipe, stage, source, parity), empty if absent.
    """

    names: dict[int, str]
    imgsz: tuple[int, int]
    stride: int = 32
    batch: int | None = 1
    dynamic: bool = False
    precision: str = "fp32"
    end2end: bool | None = None
    yoloslim: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> Path | None:
        """The checkpoint the file was exported from, as the ``yoloslim`` entry records it.

        An absolute path for files exported by this version; a bare file name (a relative path) for files exported
        before the full path was recorded; None when the file does not say (e.g. a plain Ultralytics export).
        """
        source = self.yoloslim.get("source")
        return Path(source) if isinstance(source, str) and source else None


def _literal(value: Any) -> Any:
    """Ultralytics stores dicts and lists in ONNX metadata as ``str(value)``; parse them back."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def from_ultralytics(raw: dict[str, Any], path: Path) -> ModelMeta:
    """Build a :class:`ModelMeta` from Ultralytics' export metadata (values possibly stringified).

    Raises:
        ModelError: If the metadata lacks class names or the image size (a foreign export).
    """
    if "names" not in raw or "imgsz" not in raw:
        raise ModelError(
            f"{path}: carries no Ultralytics metadata (class names, image size); export it with "
            "'yoloslim export' or Ultralytics' exporter"
        )
    names = {int(k): str(v) for k, v in _literal(raw["names"]).items()}
    imgsz = _literal(raw["imgsz"])
    imgsz = (int(imgsz), int(imgsz)) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    args = _literal(raw.get("args", {})) or {}
    extra = raw.get(YOLOSLIM_KEY) or {}
    extra = json.loads(extra) if isinstance(extra, str) else dict(extra)
    dynamic = bool(extra.get("dynamic", args.get("dynamic", False)))
    batch = None if dynamic else int(raw.get("batch", 1))
    quantize = args.get("quantize")
    precision = extra.get("precision") or {16: "fp16", 8: "int8"}.get(quantize, "fp32")
    end2end = _literal(raw["end2end"]) if "end2end" in raw else extra.get("end2end")
    if args.get("nms"):  # Ultralytics' embedded NMS: (batch, max_det, 6) like the NMS-free head, decoded the same way
        end2end = True
    return ModelMeta(
        names=names,
        imgsz=imgsz,
        stride=int(raw.get("stride", 32)),
        batch=batch,
        dynamic=dynamic,
        precision=precision,
        end2end=None if end2end is None else bool(end2end),
        yoloslim=extra,
    )


def onnx_metadata(path: str | Path) -> dict[str, Any]:
    """Return an ONNX file's ``metadata_props`` as a dict of strings (the graph's weights are not loaded)."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelError(f"{path}: not a readable ONNX file ({type(e).__name__}); export it again") from e
    return {p.key: p.value for p in model.metadata_props}


def engine_header(path: str | Path) -> tuple[int, dict[str, Any]]:
    """Return ``(offset of the engine bytes, metadata)`` of a TensorRT engine file written by Ultralytics or yoloslim.

    The layout is Ultralytics': a 4-byte little-endian length, that many bytes of JSON, then the serialized engine.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        n = int.from_bytes(f.read(4), byteorder="little", signed=True)
        if 0 < n <= size - 4:
            try:
                return 4 + n, json.loads(f.read(n))
            except ValueError:
                pass
    return 0, {}


def engine_bytes_with_header(engine: bytes, metadata: dict[str, Any]) -> bytes:
    """Prefix a serialized engine with its metadata header (the layout :func:`engine_header` reads)."""
    meta = json.dumps(metadata, default=str).encode()
    return len(meta).to_bytes(4, byteorder="little", signed=True) + meta + bytes(engine)


def read_metadata(path: str | Path) -> ModelMeta:
    """Read the metadata of a ``.onnx`` or ``.engine`` file.

    Raises:
        ModelError: If the file is missing, unreadable, or has no Ultralytics metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found; pass an existing .pt, .onnx or .engine file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return from_ultralytics(onnx_metadata(path), path)
    if suffix == ".engine":
        return from_ultralytics(engine_header(path)[1], path)
    raise ModelError(f"{path}: no metadata reader for '{suffix}'; pass a .pt, .onnx or .engine file")
