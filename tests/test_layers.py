"""The layering of the package (tests/layers.py) holds, and the check catches a planted breach."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.layers import violations

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
    ("params.py", "from cvlib.run import runner", "upward import of cvlib.run.runner"),
    ("params.py", "from cvlib.analysis import value", "upward import of cvlib.analysis.value"),
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
