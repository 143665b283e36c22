"""Report how far the baseline training runs are from a plateau, from their Ultralytics ``results.csv``.

A model's training is the chain of its runs (``runs/baselines/<role>``, ``<role>_ft``, ``<role>_ft2``, ...), each
continuing from the previous one's ``best.pt``. The plateau rule of the bundled baselines is: less than 1 point of
val mAP50-95 gained over the last 10 epochs, i.e. ``last - value 10 epochs earlier`` (the stricter ``best of the
last 10 - value 10 epochs earlier`` is printed too). It is judged inside the final run only: across a stage
boundary the learning rate jumps back up and the first epochs of the new stage dip, which would flatter the rule.

Usage::

    .venv/bin/python research/plateau.py           # markdown tables of every run and of each chain
    .venv/bin/python research/plateau.py --json    # the same numbers as JSON
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP_COLUMN = "metrics/mAP50-95(B)"


def read_run(run_dir: Path) -> dict[str, object]:
    """Epoch-wise val mAP50-95, wall time and first learning rate of one run."""
    with (run_dir / "results.csv").open(newline="") as f:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    if not rows:
        raise SystemExit(f"{run_dir / 'results.csv'} has no epochs yet")
    return {
        "run": run_dir.name,
        "epochs": len(rows),
        "finished": (run_dir / "DONE").is_file(),
        "map50_95": [float(r[MAP_COLUMN]) for r in rows],
        "lr_first": float(rows[0]["lr/pg0"]),
        "lr_last": float(rows[-1]["lr/pg0"]),
    }


def chain(project: Path, role: str) -> list[Path]:
    """The runs of one model in training order: role, role_ft, role_ft2, role_ft3, ..."""
    runs = [project / role] if (project / role / "results.csv").is_file() else []
    if (project / f"{role}_ft" / "results.csv").is_file():
        runs.append(project / f"{role}_ft")
    polish = [p for p in project.glob(f"{role}_ft*") if re.fullmatch(rf"{role}_ft\d+", p.name)]
    runs += sorted((p for p in polish if (p / "results.csv").is_file()), key=lambda p: int(p.name[len(role) + 3 :]))
    return runs


def gains(series: list[float], window: int) -> dict[str, float | None]:
    """Points of mAP50-95 gained over the last ``window`` epochs of a series."""
    if len(series) <= window:
        return {"before": None, "last": series[-1], "gain": None, "gain_best": None}
    before = series[-1 - window]
    return {
        "before": before,
        "last": series[-1],
        "gain": 100 * (series[-1] - before),
        "gain_best": 100 * (max(series[-window:]) - before),
    }


def report(project: Path, roles: list[str], window: int) -> dict[str, object]:
    """Per-run and per-chain plateau numbers."""
    out: dict[str, object] = {}
    for role in roles:
        runs = [read_run(p) for p in chain(project, role)]
        if not runs:
            raise SystemExit(f"no runs of {role!r} under {project}; train with research/train_baselines.py first")
        series = [m for r in runs for m in r["map50_95"]]
        final = gains(runs[-1]["map50_95"], window)
        out[role] = {
            "runs": [{**r, **gains(r["map50_95"], window)} for r in runs],
            "epochs": len(series),
            "best": max(series),
            "final_run": runs[-1]["run"],
            "final_finished": runs[-1]["finished"],
            **final,
            # None: the final run has not had window + 1 epochs yet
            "plateau": None if final["gain"] is None else final["gain"] < 1.0,
        }
    return out


def _f(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, default=ROOT / "runs" / "baselines")
    ap.add_argument("--roles", nargs="+", default=["student", "teacher"])
    ap.add_argument("--window", type=int, default=10, help="epochs the plateau rule looks back")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = report(a.project, a.roles, a.window)
    if a.json:
        print(json.dumps(res, indent=1))
        return 0
    w = a.window
    print(
        f"| run | epochs | lr first -> last epoch | val mAP50-95 {w} epochs before the end | last | best "
        f"| gain over last {w} (points) | best of last {w} - before |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in res.values():
        for run in r["runs"]:
            state = "" if run["finished"] else " (running)"
            print(
                f"| {run['run']}{state} | {run['epochs']} | {run['lr_first']:.0e} -> {run['lr_last']:.0e} "
                f"| {_f(run['before'], '.4f')} | {run['last']:.4f} "
                f"| {max(run['map50_95']):.4f} | {_f(run['gain'], '+.2f')} | {_f(run['gain_best'], '+.2f')} |"
            )
    print()
    print(
        f"| model | epochs in all | final run | gain over its last {w} (points) | best of last {w} - before "
        f"| plateau (< 1 point) |"
    )
    print("|---|---:|---|---:|---:|---|")
    verdict = {True: "yes", False: "no", None: f"not yet ({w + 1} epochs needed)"}
    for role, r in res.items():
        state = "" if r["final_finished"] else " (running)"
        print(
            f"| {role} | {r['epochs']} | {r['final_run']}{state} | {_f(r['gain'], '+.2f')} "
            f"| {_f(r['gain_best'], '+.2f')} | {verdict[r['plateau']]} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
