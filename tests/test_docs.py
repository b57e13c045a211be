"""The documentation that is generated or bounded: the parameter reference equals `cvlib params --markdown`, every
parameter has a description, and the README stays the front door (under 15 kB) with its two commands."""
from __future__ import annotations

from pathlib import Path

import pytest

from cvlib import paramdoc
from cvlib.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_parameter_reference_is_the_generated_one(capsys):
    assert main(["params", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out == paramdoc.markdown()
    assert (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8") == out, (
        "docs/parameters.md is stale: run `cvlib params --markdown > docs/parameters.md`")


def test_every_parameter_has_a_description():
    missing = [key for key, kind, _, meaning in paramdoc.rows(paramdoc.Study) if not meaning and kind != "section"
               and key != "base_dir"]
    assert missing == []


def test_a_new_field_without_a_description_is_caught(monkeypatch):
    from pydantic import create_model

    from cvlib import params

    Extra = create_model("Extra", __base__=params.Drivers, undocumented=(int, 3))
    rows = paramdoc.rows(Extra, "drivers.")
    assert ("drivers.undocumented", "int", "3", "") in rows


def test_readme_is_the_front_door():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) < 15_000
    assert 'pip install -e ".[dev]" && cvlib run params/cdnow.yaml' in text
    assert ". .venv/bin/activate && python -m pytest && python -m pytest -m slow" in text
    for link in ("docs/guide.md", "docs/parameters.md", "benchmarks/README.md"):
        assert link in text and (ROOT / link).is_file()


@pytest.mark.parametrize("doc", ["README.md", "docs/guide.md", "benchmarks/README.md"])
def test_no_dated_diary(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert "session 2" not in text.lower(), f"{doc}: measurements are the latest figures, not a diary by session"
