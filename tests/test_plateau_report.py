"""research/plateau.py: the plateau rule of the bundled baselines, judged on Ultralytics results.csv files."""

from __future__ import annotations

from pathlib import Path

from yoloslim_test_support import ROOT, load_script

HEADER = "epoch,time,train/box_loss,metrics/mAP50-95(B),lr/pg0\n"


def _plateau():
    return load_script(ROOT / "research" / "plateau.py")


def _run(project: Path, name: str, maps: list[float], done: bool = True) -> None:
    d = project / name
    d.mkdir(parents=True)
    rows = "".join(f"{i + 1},{10.0 * (i + 1)},1.0,{m},0.0001\n" for i, m in enumerate(maps))
    (d / "results.csv").write_text(HEADER + rows)
    if done:
        (d / "DONE").write_text("")


def test_rule_is_judged_on_the_final_run_not_across_a_restart(tmp_path):
    mod = _plateau()
    # stage 1 climbs; stage 2 (polish) restarts with a dip, then climbs 2 points: not a plateau, although the
    # chain's last value is below the value 10 epochs before (the end of stage 1).
    _run(tmp_path, "student", [0.30 + 0.01 * i for i in range(15)])
    _run(tmp_path, "student_ft", [0.40, 0.39] + [0.40 + 0.002 * i for i in range(10)])
    _run(tmp_path, "student_ft2", [0.41 + 0.002 * i for i in range(12)])
    # teacher: final run flat within half a point over its last 10 epochs
    _run(tmp_path, "teacher", [0.50 + 0.01 * i for i in range(12)])
    _run(tmp_path, "teacher_ft", [0.60 + 0.0005 * i for i in range(13)], done=False)
    res = mod.report(tmp_path, ["student", "teacher"], window=10)

    s = res["student"]
    assert [r["run"] for r in s["runs"]] == ["student", "student_ft", "student_ft2"]  # numeric order, ft before ft2
    assert s["epochs"] == 15 + 12 + 12 and s["final_run"] == "student_ft2"
    assert abs(s["gain"] - 2.0) < 1e-6 and s["plateau"] is False

    t = res["teacher"]
    assert abs(t["gain"] - 0.5) < 1e-6 and t["plateau"] is True and t["final_finished"] is False


def test_too_short_final_run_is_undetermined(tmp_path, capsys):
    mod = _plateau()
    _run(tmp_path, "student", [0.1 * i for i in range(20)])
    _run(tmp_path, "student_ft", [0.5] * 4)
    res = mod.report(tmp_path, ["student"], window=10)
    assert res["student"]["plateau"] is None and res["student"]["gain"] is None
    assert mod.main(["--project", str(tmp_path), "--roles", "student"]) == 0
    assert "not yet (11 epochs needed)" in capsys.readouterr().out
