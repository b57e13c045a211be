"""The stage registry: each stage of a study declared once.

The runner (what runs, what is reused, what is copied), the notebooks' ``require``, the
index links and the summary's links are all derived from ``STAGES``. A test runs every
stage and checks that it reads and writes exactly the files declared here.
"""
from __future__ import annotations

import importlib
import sys
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


def by_name(name: str) -> Stage:
    """The stage called `name` (a clear error listing the stages otherwise)."""
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"unknown stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")


def producer(file: str) -> Stage | None:
    """The stage that writes `file` (None for a file no stage writes)."""
    return next((s for s in STAGES if file in s.outputs), None)


def html_of(name: str) -> str:
    """The rendered report of stage `name` (for links)."""
    return by_name(name).html


def require(study: Any, run_dir: str | Path, stage: str, build_missing: bool = False) -> None:
    """Make sure the files stage `stage` reads (as declared in `cvlib.stages`) are in run_dir.

    With build_missing (a notebook opened by hand) missing ones are built by the earlier stages'
    functions, optional ones too, so the report is the one the runner gives; otherwise a missing
    required file is a clear error."""
    s = by_name(stage)
    for name in s.inputs:
        if (Path(run_dir) / name).exists():
            continue
        src = producer(name)
        if not build_missing or src is None:
            if name in s.reads:
                io.stage_file(run_dir, name)  # raises with a clear message
            continue
        if name not in src.writes:  # a file its producer writes only when the study asks for it
            continue
        require(study, run_dir, src.name, build_missing=True)
        print(f"cvlib: building missing {name} with {src.function}", file=sys.stderr, flush=True)
        src.build()(study, run_dir)
