"""The layering of the package (tests/layers.py) holds, and the check catches a planted breach."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.layers import oversized, violations

PACKAGE = Path(__file__).resolve().parents[1] / "cvlib"


def test_the_package_is_layered():
    assert violations(PACKAGE) == []


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    dest = tmp_path / "cvlib"
    shutil.copytree(PACKAGE, dest, ignore=shutil.ignore_patterns("data", "__pycache__", "templates", "locales"))
    return dest


def _plant(path: Path, line: str, where: str = "top") -> None:
    text = path.read_text(encoding="utf-8")
    if where == "top":
        head, sep, rest = text.partition("from __future__ import annotations\n")
        path.write_text(head + sep + line + "\n" + rest, encoding="utf-8")
    else:
        path.write_text(text + f"\n\ndef _planted():\n    {line}\n", encoding="utf-8")


@pytest.mark.parametrize("module, line, expected", [
    ("params/base.py", "from cvlib.run import runner", "upward import of cvlib.run.runner"),
    ("params/study.py", "from cvlib.analysis import value", "upward import of cvlib.analysis.value"),
    ("models/__init__.py", "from cvlib.analysis import clv", "upward import of cvlib.analysis.clv"),
    ("analysis/rfm.py", "import cvlib.run.pages", "upward import of cvlib.run.pages"),
    ("errors.py", "from cvlib import stages", "import cycle"),
])
def test_a_planted_breach_is_caught(copy: Path, module: str, line: str, expected: str):
    assert violations(copy) == []
    _plant(copy / module, line)
    found = violations(copy)
    assert any(expected in p for p in found), found


def test_an_import_hidden_in_a_function_is_caught(copy: Path):
    _plant(copy / "analysis/rfm.py", "from cvlib.analysis import clv", where="function")
    assert any("inside a function" in p for p in violations(copy))
    _plant(copy / "io.py", "import json", where="function")
    assert any("standard-library json" in p for p in violations(copy))


def test_no_function_over_60_lines_and_no_module_over_500():
    assert oversized(PACKAGE) == []


def test_an_oversized_function_or_module_is_caught(copy: Path):
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (copy / "planted.py").write_text(f"def long():\n{body}\n", encoding="utf-8")
    assert any("long has 61 lines" in p for p in oversized(copy))
    (copy / "planted.py").write_text("\n".join(f"x{i} = {i}" for i in range(501)) + "\n", encoding="utf-8")
    assert any("planted.py: 501 lines" in p for p in oversized(copy))


def test_ruff_passes_with_the_complexity_and_line_limits():
    """ruff (pyproject.toml: complexity at most 15, lines at most 120) finds nothing in the package."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "ruff", "check", str(PACKAGE)], capture_output=True, text=True,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stdout + out.stderr
