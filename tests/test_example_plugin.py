"""The example plugins under examples/: the README's 20-line plugin and docs/writing-a-plugin.md quote the shipped
sources, every example installs and passes its own tests with nothing but installed yoloslim (its pytest plugin's
fixtures, no conftest.py of this repository), and no example reaches past the public surface (``yoloslim``,
``yoloslim.testing``)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import yoloslim
import yoloslim.testing
from yoloslim_test_support import ROOT, pip_install_target, subprocess_env

EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if (p / "pyproject.toml").is_file())
PUBLIC = {"yoloslim": set(yoloslim.__all__), "yoloslim.testing": set(yoloslim.testing.__all__)}


def test_readme_example_plugin_is_the_shipped_example():
    readme = (ROOT / "README.md").read_text()
    source = (ROOT / "examples" / "yoloslim-l2sp" / "yoloslim_l2sp" / "__init__.py").read_text()
    assert source.strip() in readme


def test_plugin_walkthrough_quotes_the_slim_example_verbatim():
    doc = (ROOT / "docs" / "writing-a-plugin.md").read_text()
    example = ROOT / "examples" / "yoloslim-slim"
    source = "\n".join(p.read_text() for p in sorted(example.rglob("*.py")))
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert len(blocks) >= 8
    for block in blocks:
        assert block.strip() in source, block[:300]
    assert (example / "pyproject.toml").read_text() in re.findall(r"```toml\n(.*?)```", doc, re.S)


def test_examples_are_found():
    assert {p.name for p in EXAMPLES} >= {"yoloslim-l2sp", "yoloslim-slim"}
    assert all(list((p / "tests").glob("test_*.py")) for p in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_installs_and_passes_its_own_tests(example: Path, tmp_path: Path):
    # A copy outside the repository: pip builds in the source folder, and pytest must find no conftest.py of ours.
    src = tmp_path / example.name
    shutil.copytree(example, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    site = tmp_path / "site"
    pip_install_target(src, site)
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=src,
        capture_output=True,
        text=True,
        env=subprocess_env(PYTHONPATH=str(site)),
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    assert " passed" in r.stdout and "skipped" not in r.stdout, r.stdout[-2000:]


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import in ``path``; ``import a.b`` gives ``("a.b", [])``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
    return found


def _yoloslim_attributes(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every ``yoloslim.<name>`` attribute read in ``path``."""
    return [
        (n.lineno, n.attr)
        for n in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "yoloslim"
    ]


@pytest.mark.parametrize(
    "path", sorted((ROOT / "examples").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT / "examples"))
)
def test_examples_use_only_the_public_surface(path: Path):
    where = path.relative_to(ROOT)
    for line, module, names in _imports(path):
        if module.split(".")[0] != "yoloslim":
            continue
        assert module in PUBLIC, f"{where}:{line}: imports {module}; import from yoloslim (tests: yoloslim.testing)"
        missing = sorted(set(names) - PUBLIC[module])
        assert not missing, f"{where}:{line}: {missing} are not in {module}.__all__"
    private = sorted({name for _, name in _yoloslim_attributes(path)} - PUBLIC["yoloslim"] - {"testing"})
    assert not private, f"{where}: reads yoloslim.{private}, which yoloslim.__all__ does not list"
