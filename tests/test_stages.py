"""The stage registry (cvlib.stages) is the one stage contract: every stage reads and writes exactly the files
it declares, runs on its required inputs alone, and the notebooks, the runner and the links follow it."""
from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from cvlib import io
from cvlib.run import summary
from cvlib.stages import STAGES, by_name, producer
from tests.conftest import ROOT, run_notebook_inprocess, small_book

NB = ROOT / "notebooks"


def _names(access: list[tuple[str, str]], action: str, run_dir: Path) -> set[str]:
    root = str(run_dir.resolve())
    return {Path(p).name for a, p in access if a == action and str(Path(p).parent) == root}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path, dict]:
    """Every stage notebook run in order into one folder, with the files each one read and wrote."""
    tmp = tmp_path_factory.mktemp("registry")
    params = small_book(tmp, extra={"rfm": {"calibration_end": "2023-06-30"}})
    run_dir = tmp / "run"
    seen = {}
    for s in STAGES:
        with io.track_files() as access:
            run_notebook_inprocess(NB / s.notebook, params_file=str(params), run_dir=str(run_dir),
                                   build_missing=False, overrides={})
        seen[s.name] = (_names(access, "read", run_dir), _names(access, "write", run_dir))
    return params, run_dir, seen


def _contract_breaches(s, reads: set[str], writes: set[str]) -> list[str]:
    """How a stage's observed file reads and writes differ from what the registry declares for it."""
    out = []
    if reads != set(s.inputs):
        out.append(f"{s.name} read {sorted(reads)}, declares {sorted(s.inputs)}")
    if not set(s.writes) <= writes <= set(s.outputs):
        out.append(f"{s.name} wrote {sorted(writes)}, declares {sorted(s.outputs)}")
    for f in s.inputs:  # every file a stage reads is written by an earlier stage
        src = producer(f)
        if src is None or STAGES.index(src) >= STAGES.index(by_name(s.name)):
            out.append(f"{s.name} reads {f}, which no earlier stage writes")
    return out


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_each_stage_reads_and_writes_exactly_what_it_declares(reference, stage):
    _, _, seen = reference
    assert _contract_breaches(by_name(stage), *seen[stage]) == []


def test_the_contract_check_catches_a_wrong_declaration(reference):
    """Mutations of the registry: a declared file the stage does not write, a file it reads undeclared, a written
    file left out: each is reported."""
    _, _, seen = reference
    rfm, clv = by_name("rfm"), by_name("clv")
    assert _contract_breaches(dataclasses.replace(rfm, writes=(*rfm.writes, "extra.parquet")), *seen["rfm"])
    assert _contract_breaches(dataclasses.replace(clv, reads=clv.reads[1:]), *seen["clv"])
    assert _contract_breaches(dataclasses.replace(rfm, writes=rfm.writes[1:]), *seen["rfm"])


@pytest.mark.parametrize("stage", [s.name for s in STAGES if s.reads])
def test_each_stage_runs_on_its_required_inputs_alone(reference, tmp_path, stage):
    params, ref_dir, _ = reference
    s = by_name(stage)
    alone = tmp_path / "alone"
    alone.mkdir()
    for f in s.reads:
        shutil.copy2(ref_dir / f, alone / f)
    run_notebook_inprocess(NB / s.notebook, params_file=str(params), run_dir=str(alone), build_missing=False,
                           overrides={})
    assert all((alone / f).exists() for f in s.writes)


def test_notebooks_require_their_own_stage_and_the_links_are_the_registry_reports(reference):
    for s in STAGES:
        source = "\n".join(c.source for c in nbformat.read(NB / s.notebook, as_version=4).cells
                           if c.cell_type == "code")
        calls = re.findall(r"require\(study, run_dir, \"(\w+)\"", source)
        assert calls == [s.name], s.notebook  # every notebook: a stage opened by hand records what it is made of
        assert "read_stage(" not in source or all(
            f in s.inputs for f in re.findall(r"read_stage\(run_dir, \"([\w.]+)\"", source)), s.notebook
    _, run_dir, _ = reference
    links = {link for _, link in summary.findings(run_dir, "EUR")}
    assert links and {link.split("#")[0] for link in links} <= {s.html for s in STAGES}


def test_a_notebook_opened_by_hand_builds_what_it_misses(reference, tmp_path):
    params, _, _ = reference
    run_dir = tmp_path / "by-hand"
    run_notebook_inprocess(NB / "08_strategy.ipynb", params_file=str(params), run_dir=str(run_dir),
                           build_missing=True, overrides={})
    for s in STAGES:  # optional inputs too: the report is the one the runner gives
        assert all((run_dir / f).exists() for f in s.writes), s.name


class _Tripwire:
    """A parameter section a stage did not declare: reading anything of it fails the test, except the parts the
    stage declares ('journey.cycles' lets `cycles` of the real section through)."""

    def __init__(self, section: str, real=None, parts: set[str] = frozenset()) -> None:
        self._section, self._real, self._parts = section, real, parts

    def __getattr__(self, attr: str):
        if attr in self._parts:
            return getattr(self._real, attr)
        raise AssertionError(f"reads {self._section}.{attr}, but the registry does not list it: a change to it "
                             "would not rerun the stage")


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_each_stage_reads_only_the_parameter_sections_it_declares(reference, tmp_path, stage):
    """The runner reruns a stage when a section it declares changes and reuses it otherwise, so a section the
    stage reads but does not declare would give a stale result: every undeclared section is a tripwire."""

    params, ref_dir, _ = reference
    _run_with_tripwires(by_name(stage), params, ref_dir, tmp_path / "run")


def _run_with_tripwires(s, params: Path, ref_dir: Path, run_dir: Path) -> None:
    """Run stage `s` on a copy of the reference run with every parameter section it does not declare a tripwire."""
    from cvlib.params import load_study

    study = load_study(params)
    for section in type(study).model_fields:
        if section not in s.all_sections and section != "base_dir":
            parts = {d.split(".", 1)[1] for d in s.all_sections if d.startswith(section + ".")}
            object.__setattr__(study, section, _Tripwire(section, getattr(study, section), parts))
    shutil.copytree(ref_dir, run_dir)
    s.build()(study, run_dir)


@pytest.mark.parametrize("stage, section", [("rfm", "rfm"), ("strategy", "clv"), ("clv", "drivers.churn_days")])
def test_the_tripwire_catches_a_section_left_out_of_the_registry(reference, tmp_path, stage, section):
    """Mutations of the registry: the stage with one section it reads left undeclared must trip the wire."""
    params, ref_dir, _ = reference
    s = by_name(stage)
    mutated = dataclasses.replace(s, sections=tuple(x for x in s.sections if x != section))
    assert mutated.sections != s.sections
    with pytest.raises(AssertionError, match=r"reads .* but the registry does not list it"):
        _run_with_tripwires(mutated, params, ref_dir, tmp_path / "run")


def test_a_notebook_opened_by_hand_rebuilds_outputs_made_with_other_parameters(tmp_path, capsys):
    """Opened by hand after a parameter change, a notebook rebuilds the earlier stages whose inputs changed
    (stage_key: their parameter sections, files and tables) and reuses those that did not."""
    from cvlib.analysis import rfm
    from cvlib.params import load_study
    from cvlib.stages import BUILT_WITH, require

    params = small_book(tmp_path, extra={"rfm": {"calibration_end": "2023-06-30"}})
    run_dir = tmp_path / "by-hand"
    study = load_study(params)
    require(study, run_dir, "rfm", build_missing=True)  # builds cleaning, then the rfm notebook computes rfm:
    rfm.run_rfm(study, run_dir)
    clean = run_dir / "transactions_clean.parquet"
    rows, made = len(pd.read_parquet(clean)), clean.stat().st_mtime_ns
    assert "building cleaning (missing)" in capsys.readouterr().err

    require(study, run_dir, "clv", build_missing=True)  # nothing changed: nothing rebuilt
    assert clean.stat().st_mtime_ns == made and "building" not in capsys.readouterr().err

    narrower = load_study(params, ["cleaning.window.enabled=true", "cleaning.window.end=2023-09-30"])  # fewer rows
    require(narrower, run_dir, "clv", build_missing=True)
    err = capsys.readouterr().err
    assert "building cleaning (stale" in err and "building rfm (stale" in err  # rfm read the old rows
    assert len(pd.read_parquet(clean)) < rows
    assert set(io.read_json(run_dir / BUILT_WITH)) >= {"cleaning", "rfm", "clv"}

    require(narrower, run_dir, "clv", build_missing=False)  # the runner's way: what is there is used as is
    assert "building" not in capsys.readouterr().err
