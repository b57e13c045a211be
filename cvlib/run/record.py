"""A run's folder and its record (run.json): which stages ran or were reused, on which inputs (sha256), with
which parameters, and the run's status ('running', then 'complete' or 'failed')."""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvlib import io
from cvlib.errors import StageError
from cvlib.params import Study
from cvlib.stages import Stage

PACKAGES = ("cvlib", "pandas", "numpy", "scipy", "pyarrow", "scikit-learn", "seaborn", "matplotlib", "lifelines",
            "pydantic", "papermill", "nbconvert", "ipykernel", "jinja2")


@dataclass
class StageRun:
    stage: Stage
    status: str = "pending"  # pending | ok | reused | failed | skipped
    seconds: float = 0.0
    error: str = ""
    html: str = ""
    ename: str = ""
    key: str = ""
    depends: dict = field(default_factory=dict)
    reason: str = ""  # why it ran (or where it was reused from)
    reused_from: str = ""
    outputs: dict = field(default_factory=dict)  # file -> sha256
    nav: dict = field(default_factory=dict)  # the header its report was given (pages.nav_spec)
    reports: dict = field(default_factory=dict)  # its executed notebook and HTML report -> sha256 (when sealed)

    def record(self) -> dict:
        return {"name": self.stage.name, "status": self.status, "seconds": round(self.seconds, 1),
                "html": self.html, "error": self.error, "key": self.key, "reason": self.reason,
                "reused_from": self.reused_from, "outputs": self.outputs, "reports": self.reports,
                "depends": self.depends}


@dataclass
class RunResult:
    run_dir: Path
    stages: list[StageRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.stages) and all(s.status in {"ok", "reused", "not_applicable"} for s in self.stages)

    def stage(self, name: str) -> StageRun:
        return next(s for s in self.stages if s.stage.name == name)


@dataclass
class RunContext:
    """What one run needs to know besides the stage: written into run.json as it goes."""
    study: Study
    run_dir: Path
    nb_dir: Path
    started: dt.datetime
    overrides: list[str]
    fps: list[dict]
    forced: set[str]
    with_code: bool
    versions: dict[str, str]
    client: bool = False  # render for the client: no consultant notes, no parameter dump
    force: bool = False  # every stage reruns (--force)
    scrubber: Any = None  # the study's pseudonym scrubber (cvlib.privacy)


def new_run_dir(reports_dir: Path, study: str) -> Path:
    """A new, exclusively created run folder <study>/<YYYYmmdd-HHMMSS>[-N] (safe under concurrent runs)."""
    base = reports_dir / study
    base.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1, 10_000):
        run_dir = base / (stamp if i == 1 else f"{stamp}-{i}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise StageError(f"Cannot create a run folder in {base}: too many runs in one second.")


def point_latest(run_dir: Path) -> None:
    """Make <study>/latest a symlink to run_dir (replaced atomically)."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:  # file systems without symlinks: a text file naming the run
        tmp.unlink(missing_ok=True)
        io.write_text(run_dir.name + "\n", run_dir.parent / "LATEST")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def fail(ctx: RunContext, result: RunResult, reason: str) -> None:
    """Record the run as failed with the reason, as far as the disk lets us (never raises)."""
    try:
        write_record(ctx, result, "failed", reason)
    except OSError:
        pass


def write_record(ctx: RunContext, result: RunResult, status: str, reason: str = "") -> dict:
    """run.json: what ran or was reused, on which inputs (sha256), with which parameters, and the run's status:
    'running' while it runs (so a killed run is never taken for a finished one), then 'complete' or 'failed'."""
    run_dir = result.run_dir
    cleaning = run_dir / "cleaning.json"
    counts = io.read_json(cleaning)["summary"] if cleaning.exists() else {}
    manifest = {
        "study": ctx.study.study, "client": ctx.study.client, "status": status, "run": run_dir.name,
        "started": ctx.started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now().isoformat(timespec="seconds") if status != "running" else None,
        "overrides": ctx.overrides, "inputs": ctx.fps, "params": ctx.study.resolved(), "row_counts": counts,
        "versions": ctx.versions, "notebooks_dir": str(ctx.nb_dir), "forced": sorted(ctx.forced),
        "stages": [s.record() for s in result.stages], "reason": reason,
    }
    if status == "complete":
        manifest["index_sha256"] = io.sha256_file(run_dir / "index.html")
    io.write_json(manifest, run_dir / "run.json")
    return manifest
