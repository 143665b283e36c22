"""Tables: measurement rows as a markdown table and as a JSON list.

A value that was not measured prints as ``-``; the mAP, agreement, stage and source columns appear only when a row
has them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from yoloslim.measurement.harness import Measurement


def _cell(value: float | int | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def text_cell(value: object) -> str:
    """A table cell for any value: ``-`` for None (a value not measured or not known), else ``str(value)``.

    A column value of None and a missing key print alike, so use it as ``text_cell(row.get(key))``.
    """
    return "-" if value is None else str(value)


def format_table(measurements: Sequence[Measurement]) -> str:
    """Return the measurements as a markdown table, one row per model.

    Args:
        measurements: Rows from :func:`~yoloslim.measurement.measure`.

    Returns:
        The table text (header, separator, rows), ``-`` where a value was not measured or is not known. Agreement
        columns appear when a row has agreement; the mAP columns are left out when no row has accuracy (unlabelled
        images); ``stage`` and ``source`` (the file name of what the row was built from) appear when a row has one.
    """
    agree = any(m.agreement for m in measurements)
    accuracy = any(m.map50_95 is not None for m in measurements) or not agree
    stage = any(m.stage is not None for m in measurements)
    source = any(m.source is not None for m in measurements)
    header = ["name", "format"]
    header += ["stage"] if stage else []
    header += ["source"] if source else []
    header += ["params (M)", "GFLOPs", "size MB"]
    header += ["mAP50", "mAP50-95"] if accuracy else []
    header += ["agreement mAP50-95", "agreement F1@0.5"] if agree else []
    header += ["p50 ms", "p90 ms", "FPS", "threads"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for m in measurements:
        cells = [text_cell(m.name), text_cell(m.format)]
        cells += [text_cell(m.stage)] if stage else []
        cells += [text_cell(None if m.source is None else Path(m.source).name)] if source else []
        cells += [_cell(None if m.params is None else m.params / 1e6, 3), _cell(m.gflops, 2), _cell(m.size_mb, 2)]
        cells += [_cell(m.map50, 4), _cell(m.map50_95, 4)] if accuracy else []
        if agree:
            a = m.agreement or {}
            cells += [_cell(a.get("map50_95"), 4), _cell(a.get("f1"), 4)]
        cells += [_cell(m.latency_p50_ms, 2), _cell(m.latency_p90_ms, 2), _cell(m.throughput_fps, 1), str(m.threads)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_json(measurements: Sequence[Measurement], path: str | Path) -> Path:
    """Write the measurements as a JSON list, atomically (temporary file, then rename).

    Args:
        measurements: Rows from :func:`~yoloslim.measurement.measure`.
        path: Destination file; its folder is created.

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump([m.to_dict() for m in measurements], f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
