"""The stage registry: each stage of a study declared once.

The runner (what runs, what is reused, what is copied), the notebooks' ``require``, the
index links and the summary's links are all derived from ``STAGES``. A test runs every
stage and checks that it reads and writes exactly the files declared here.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cvlib import io

#: parameter sections every stage's report depends on (names, currency, table sizes, id display)
COMMON_SECTIONS: tuple[str, ...] = ("study", "client", "currency", "report", "privacy")


@dataclass(frozen=True)
class Stage:
    """One stage: its notebook, the files it reads (required / optional) and writes, the input tables it
    reads directly, the parameter sections it depends on, and the cvlib function that computes it."""

    name: str
    notebook: str
    title: str
    function: str  # "module:function", called as function(study, run_dir)
    reads: tuple[str, ...] = ()  # run-folder files it needs
    optional: tuple[str, ...] = ()  # run-folder files it reads when an earlier stage wrote them
    writes: tuple[str, ...] = ()  # files it always writes
    may_write: tuple[str, ...] = ()  # files it writes when the study asks for them
    tables: tuple[str, ...] = ()  # input tables (inputs.<table>) it reads itself
    sections: tuple[str, ...] = ()  # parameter sections besides COMMON_SECTIONS (or a part: 'journey.cycles')
    needs_table: str | None = None  # the stage runs only when the study maps this input table

    def applies(self, study) -> bool:
        """Whether the study has what the stage evaluates (a stage needing a table the study lacks is skipped)."""
        return self.needs_table is None or getattr(study.inputs, self.needs_table) is not None

    @property
    def html(self) -> str:
        return self.notebook.replace(".ipynb", ".html")

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.writes + self.may_write

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.reads + self.optional

    @property
    def all_sections(self) -> tuple[str, ...]:
        return COMMON_SECTIONS + self.sections

    def build(self) -> Callable:
        """The cvlib function that computes the stage's outputs."""
        module, func = self.function.split(":")
        return getattr(importlib.import_module(module), func)


STAGES: tuple[Stage, ...] = (
    Stage("cleaning", "01_cleaning.ipynb", "Data cleaning", "cvlib.analysis.cleaning:run_cleaning",
          writes=("transactions_clean.parquet", "quarantine.csv", "cleaning.json"),
          tables=("transactions",), sections=("inputs", "cleaning")),
    Stage("rfm", "02_rfm.ipynb", "RFM and segmentation", "cvlib.analysis.rfm:run_rfm",
          reads=("transactions_clean.parquet",),
          writes=("rfm.parquet", "clv_summary.parquet", "rfm.json"), may_write=("clv_calibration.parquet",),
          sections=("occasion", "rfm")),
    Stage("clv", "03_clv.ipynb", "Customer lifetime value", "cvlib.analysis.clv:run_clv",
          reads=("transactions_clean.parquet", "rfm.parquet", "clv_summary.parquet"),
          optional=("clv_calibration.parquet",), writes=("clv.parquet", "clv_model.json"),
          tables=("customers",), sections=("inputs", "occasion", "rfm", "clv",
                                            "value.profitability",  # profit of the variants
                                            "drivers.churn", "drivers.churn_days")),  # who has left (cvlib.status)
    Stage("value", "04_value.ipynb", "Customer value assessment", "cvlib.analysis.value:run_value",
          reads=("transactions_clean.parquet", "rfm.parquet", "clv.parquet", "clv_model.json"),
          writes=("value.parquet", "value.json"), tables=("customers", "feedback"),
          sections=("inputs", "occasion", "rfm", "clv", "drivers", "value")),  # rfm: the validation's calibration
    Stage("drivers", "05_loyalty_drivers.ipynb", "Loyalty and retention drivers", "cvlib.analysis.drivers:run_drivers",
          reads=("transactions_clean.parquet", "rfm.parquet"), optional=("rfm.json", "clv.parquet"),
          writes=("drivers.parquet", "churn_risk.parquet", "drivers.json"), tables=("customers", "feedback"),
          sections=("inputs", "occasion", "rfm", "clv", "drivers", "journey.cycles")),  # the customers' cycle
    Stage("journey", "06_journey.ipynb", "Customer journey", "cvlib.analysis.journey:run_journey",
          reads=("transactions_clean.parquet", "rfm.parquet"), optional=("clv.parquet", "churn_risk.parquet"),
          writes=("journey.parquet", "journey.json"), tables=("customers",),
          sections=("inputs", "occasion", "clv", "drivers.churn_days", "journey")),  # who is lost, without churn flags
    Stage("campaign", "07_campaign.ipynb", "Campaign evaluation", "cvlib.analysis.campaign:run_campaign",
          reads=("transactions_clean.parquet",), writes=("campaign.json",), tables=("campaigns",),
          sections=("inputs", "clv", "campaign"), needs_table="campaigns"),  # before strategy: measured uplifts
    Stage("strategy", "08_strategy.ipynb", "Strategy recommendations", "cvlib.analysis.strategy:run_strategy",
          reads=("rfm.parquet", "clv.parquet"),
          optional=("value.parquet", "value.json", "churn_risk.parquet", "drivers.parquet", "drivers.json",
                    "transactions_clean.parquet", "journey.parquet", "campaign.json"),
          writes=("strategy_groups.parquet", "playbook.csv", "targets.csv", "targets.xlsx", "strategy.json"),
          sections=("rfm", "clv", "value", "strategy")),
)

#: files a client receives in a package (besides the HTML reports)
CLIENT_FILES: tuple[str, ...] = ("targets.csv", "targets.xlsx", "playbook.csv", "quarantine.csv")
TABLES_SUFFIX = "-tables.xlsx"  # beside a client page whose long tables were cut: the workbook of every row


def by_name(name: str) -> Stage:
    """The stage called `name` (a clear error listing the stages otherwise)."""
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"unknown stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")


def producer(file: str) -> Stage | None:
    """The stage that writes `file` (None for a file no stage writes)."""
    return next((s for s in STAGES if file in s.outputs), None)


SUMMARY_PAGE = "summary.html"  # the executive summary of a complete run (cvlib.run.executive)


def report_pages(folder: Path) -> list[str]:
    """The pages of a rendering in reading order: the index, the executive summary, then each stage's report
    (those that exist in `folder`)."""
    return ["index.html"] + [n for n in (SUMMARY_PAGE, *(s.html for s in STAGES)) if (folder / n).is_file()]


def html_of(name: str) -> str:
    """The rendered report of stage `name` (for links)."""
    return by_name(name).html


def section(params: dict, key: str) -> Any:
    """A parameter section of the resolved parameters, or a part of one ('journey.cycles')."""
    out: Any = params
    for part in key.split("."):
        out = out.get(part) if isinstance(out, dict) else None
    return out


#: in a folder of notebooks opened by hand: the key each stage's outputs were made with (`require`)
BUILT_WITH = ".cvlib-built-with.json"


def _table_print(study: Any, name: str) -> str | None:
    """A client table's fingerprint: a file's sha256; a table on an engine may change without a trace, so it is
    the moment it is asked for (never equal to an earlier one: its stage is always rebuilt, as the runner does)."""
    spec = getattr(study.inputs, name, None)
    if spec is None:
        return None
    if spec.is_file:
        return io.sha256_file(study.resolve(spec.path or ""))
    return f"read at {time.time_ns()}"


def stage_key(study: Any, run_dir: Path, s: Stage) -> str:
    """What a stage's outputs depend on, as one digest: its parameter sections, the run-folder files it reads
    and the client tables it reads (the runner's reuse digests, without the notebook and library versions)."""
    params = study.resolved()
    parts = {"params": {sec: section(params, sec) for sec in s.all_sections},
             "files": {f: io.sha256_file(run_dir / f) for f in s.inputs if (run_dir / f).exists()},
             "tables": {t: _table_print(study, t) for t in s.tables}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _built_with(run_dir: Path) -> dict[str, str]:
    p = run_dir / BUILT_WITH
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


def _note_built(run_dir: Path, name: str, key: str) -> None:
    io.write_text(json.dumps({**_built_with(run_dir), name: key}, indent=1), run_dir / BUILT_WITH)


def _ensure_inputs(study: Any, run_dir: Path, s: Stage) -> None:
    """Build, earliest first, the stages whose outputs `s` reads and that are missing or were made with other
    parameters or inputs than the study's now (a notebook opened by hand)."""
    for src in dict.fromkeys(p for name in s.inputs if (p := producer(name)) is not None and name in p.writes):
        _ensure_inputs(study, run_dir, src)
        key, had = stage_key(study, run_dir, src), _built_with(run_dir).get(src.name)
        present = all((run_dir / f).exists() for f in src.writes)
        if present and (had is None or had == key):  # made here with these inputs, or by a run (trusted)
            continue
        why = "missing" if not present else "stale: made with other parameters or inputs"
        print(f"cvlib: building {src.name} ({why}) with {src.function}", file=sys.stderr, flush=True)
        src.build()(study, run_dir)
        _note_built(run_dir, src.name, key)


def require(study: Any, run_dir: str | Path, stage: str, build_missing: bool = False) -> None:
    """Make sure the files stage `stage` reads (as declared in `cvlib.stages`) are in run_dir.

    With build_missing (a notebook opened by hand) missing ones are built by the earlier stages'
    functions, optional ones too, so the report is the one the runner gives, and outputs an earlier stage
    made with other parameters or inputs (recorded in `BUILT_WITH`) are rebuilt, never reused stale;
    otherwise (the runner, which checks its own digests) a missing required file is a clear error."""
    s, run_dir = by_name(stage), Path(run_dir)
    if build_missing:
        _ensure_inputs(study, run_dir, s)
    for name in s.reads:
        if not (run_dir / name).exists():
            io.stage_file(run_dir, name)  # raises with a clear message
    if build_missing:  # this notebook computes its stage now, with these inputs: its old outputs go first, so a
        for f in s.outputs:  # notebook stopped half way leaves them missing (rebuilt later), never stale
            (run_dir / f).unlink(missing_ok=True)
        _note_built(run_dir, s.name, stage_key(study, run_dir, s))
