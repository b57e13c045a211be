"""Run a study: its stage notebooks, one after the other in one kernel, into a run folder, rendered to HTML.

A run folder ``reports/<study>/<run-id>/`` holds every stage's outputs (exchanged only through files there), its
executed notebook and HTML, ``params.yaml`` (the resolved study the kernel reads: re-runnable with ``cvlib run``),
``run.json`` (`record`) and ``index.html`` (`pages`).

A stage is *reused* (its outputs, notebook and report copied from an earlier run, `reuse`) when nothing it depends
on changed: its notebook, the cvlib code and library versions, its parameter sections (`cvlib.stages`), the files
it reads and the input tables it reads. So every run folder is a complete study, and ``reports/<study>/latest``
(moved only when a run completes) is always a complete package to review and send.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from cvlib import io, privacy, reading
from cvlib.errors import CvlibError, ParamError, RunError, StageError, StageInputError
from cvlib.params import load_study
from cvlib.run import executive, history, metrics, pages, reuse
from cvlib.run.kernel import StageKernel, execute_stage
from cvlib.run.record import (
    RunContext,
    RunResult,
    StageRun,
    fail,
    new_run_dir,
    package_versions,
    point_latest,
    write_record,
)
from cvlib.run.render import Renders
from cvlib.stages import STAGES, Stage, by_name


def _progress(msg: str) -> None:
    print(f"cvlib: {msg}", file=sys.stderr, flush=True)


def available_stages(notebooks_dir: Path) -> list[Stage]:
    return [s for s in STAGES if (notebooks_dir / s.notebook).is_file()]


def check_stage_names(names: list[str] | None, notebooks_dir: Path) -> list[str]:
    """--stages names, checked against the registry and the notebooks there are."""
    avail = {s.name for s in available_stages(notebooks_dir)}
    for n in names or []:
        try:
            by_name(n)
        except KeyError:
            raise ParamError(f"--stages: unknown stage {n!r}. Stages: {', '.join(s.name for s in STAGES)}.") from None
        if n not in avail:
            raise ParamError(f"--stages: stage {n!r} has no notebook {notebooks_dir / by_name(n).notebook}.")
    return list(names or [])


def open_run(params_file: Path, stages: list[str] | None, overrides: list[str] | None, with_code: bool,
             reports_dir: str | Path | None, notebooks_dir: str | Path | None, force: bool,
             client: bool) -> tuple[RunContext, RunResult, history.Runs]:
    """Validate the study once, check its inputs and the stage names, create the run folder with the resolved
    parameters and a 'running' record."""
    study = load_study(params_file, overrides)
    reading.check_inputs(study)  # mapped columns present, data rows there: before anything runs
    scrubber = privacy.scrubber_for(study)  # refuses a pseudonymised study without a key
    earlier_rec = history.record(params_file.parent) if params_file.name == "params.yaml" else None
    root = history.project_root(params_file)
    # notebooks come from the project (or the folder named on the command line), never from a run folder's record
    nb_dir = Path(notebooks_dir).resolve() if notebooks_dir else root / "notebooks"
    if earlier_rec is not None and not notebooks_dir:
        history.check_notebooks(earlier_rec, nb_dir, params_file.parent)
    names = check_stage_names(stages, nb_dir)
    selected = available_stages(nb_dir)
    if not selected:
        raise ParamError(f"No stage notebooks found in {nb_dir}.")
    reports = (Path(reports_dir) if reports_dir else (
        params_file.parent.parent.parent if earlier_rec else root / "reports")).resolve()
    fps = history.fingerprints(study)
    run_dir = new_run_dir(reports, study.study)
    io.write_text(f"# Resolved parameters of run {run_dir.name} of study {study.study} (input paths absolute, "
                  f"overrides applied).\n# Rerun: cvlib run {run_dir / 'params.yaml'}\n" + study.to_yaml(resolved=True),
                  run_dir / "params.yaml")
    ctx = RunContext(study, run_dir, nb_dir, dt.datetime.now(), list(overrides or []), fps,
                     {s.name for s in selected} if force else set(names), with_code, package_versions(), client,
                     force=force, scrubber=scrubber)
    result = RunResult(run_dir=run_dir, stages=[StageRun(s) for s in selected])
    write_record(ctx, result, "running")  # a killed run stays 'running' and is never used again
    return ctx, result, history.Runs(reports / study.study, exclude=run_dir)


def decide(sr: StageRun, ctx: RunContext, earlier: history.Runs) -> history.Source | str:
    """Stage `sr`'s decision: 'n/a' (it does not apply), an earlier run to reuse, or 'run' (with the reason)."""
    s, study = sr.stage, ctx.study
    context = {"versions": ctx.versions, "with_code": ctx.with_code,
               "key": privacy.key_fingerprint(ctx.scrubber.key) if ctx.scrubber.key else None}
    sr.depends = reuse.stage_depends(s, study.resolved(), ctx.run_dir, ctx.nb_dir / s.notebook,
                                     {f["table"]: f["sha256"] for f in ctx.fps}, context)
    sr.key = reuse.digest(sr.depends)
    if not s.applies(study):
        sr.reason = f"no {s.needs_table} table (inputs.{s.needs_table})"
        return "n/a"
    source = None if s.name in ctx.forced else earlier.reusable(s, sr.key)
    if source is not None:
        return source
    if s.name in ctx.forced:
        sr.reason = "forced (--force)" if ctx.force else "named in --stages"
    else:
        sr.reason = earlier.refused.get(s.name) or reuse.explain_change(sr.depends, earlier.last_depends(s.name))
    return "run"


def run_stage(sr: StageRun, i: int, ctx: RunContext, result: RunResult, kernel: StageKernel, renders: Renders) -> None:
    """Execute one stage notebook in the run folder, check it wrote what it declares, and hand its report to the
    background renderer (with the run's header)."""
    s, run_dir = sr.stage, ctx.run_dir
    _progress(f"[{i}/{len(result.stages)}] {s.name}: running {s.notebook} ({sr.reason})")
    t0 = time.perf_counter()
    try:
        execute_stage(kernel, ctx.nb_dir / s.notebook, run_dir / s.notebook,
                      {"params_file": str(run_dir / "params.yaml"), "overrides": {}, "run_dir": str(run_dir),
                       "build_missing": False}, ctx.nb_dir, sys.stderr.isatty(), ctx.scrubber,
                      ctx.study.report.language)
        missing = [f for f in s.writes if not (run_dir / f).exists()]
        if missing:
            raise StageError(f"the notebook did not write {', '.join(missing)}, which stage {s.name!r} declares "
                             "(cvlib.stages)")
        sr.status = "ok"
        sr.outputs = {f: io.sha256_file(run_dir / f) for f in s.outputs if (run_dir / f).exists()}
    except Exception as exc:  # noqa: BLE001  # the stage's failure: recorded, then the run stops
        sr.status = "failed"
        sr.ename = str(getattr(exc, "ename", type(exc).__name__))
        sr.error = ctx.scrubber.scrub(f"{sr.ename}: {getattr(exc, 'evalue', exc)}")
    sr.seconds = time.perf_counter() - t0
    if (run_dir / s.notebook).exists():
        sr.nav = pages.nav_spec(ctx, result, i - 1, predicted=True)
        renders.submit(run_dir / s.notebook, run_dir / s.html, f"{s.title} - {ctx.study.study}", ctx.with_code,
                       nav=sr.nav)
        sr.html = s.html


def stop(failed: StageRun, ctx: RunContext, result: RunResult, earlier: history.Runs, renders: Renders) -> None:
    """After a failed stage: the rest are skipped, the index written, and the error raised with the report that
    shows it."""
    renders.wait()  # the error message points to the rendered notebook: it is there
    for rest in result.stages:
        if rest.status == "pending":
            rest.status = "skipped"
    pages.write_index(ctx, result, earlier, ctx.scrubber.scrub)
    s, run_dir = failed.stage, ctx.run_dir
    out_html, out_nb = run_dir / s.html, run_dir / s.notebook
    where = (f"The rendered notebook shows the error: {out_html}" if out_html.exists() else
             f"The executed notebook shows the error: {out_nb}" if out_nb.exists() else
             "The notebook did not start, so no notebook was written.")
    err = StageInputError if failed.ename in {"InputDataError", "ParamError"} else StageError
    raise err(f"Stage '{s.name}' failed: {failed.error}\n{where}\n"
              f"Outputs of the earlier stages are kept in {run_dir}; 'latest' still points to the last "
              "complete run.")


def run_study(params_file: str | Path, stages: list[str] | None = None, overrides: list[str] | None = None,
              with_code: bool = False, reports_dir: str | Path | None = None,
              notebooks_dir: str | Path | None = None, force: bool = False, client: bool = False) -> RunResult:
    """Validate the study once, write the resolved parameters, then for each stage in order reuse an earlier
    run's result when nothing it depends on changed, or run it (always for `stages` named, and for all with
    `force`). Render the reports and write the index; `latest` moves only when every stage succeeded."""
    ctx, result, earlier = open_run(Path(params_file).resolve(), stages, overrides, with_code, reports_dir,
                                    notebooks_dir, force, client)
    n = len(result.stages)
    _progress(f"study {ctx.study.study!r}: {n} stage(s) into {ctx.run_dir}")
    runtime = Path(tempfile.mkdtemp(prefix="cvlib-kernel-"))  # sockets, connection files: private to this run
    kernel, renders = StageKernel(runtime), Renders()
    try:
        with failures_recorded(ctx, result):
            for i, sr in enumerate(result.stages, 1):
                decision = decide(sr, ctx, earlier)
                if decision == "n/a":
                    sr.status = "not_applicable"
                    _progress(f"[{i}/{n}] {sr.stage.name}: not applicable ({sr.reason})")
                elif decision != "run":
                    reuse.reuse(sr, decision, ctx.run_dir, ctx.study.report.language)
                    _progress(f"[{i}/{n}] {sr.stage.name}: {sr.reason}")
                else:
                    run_stage(sr, i, ctx, result, kernel, renders)
                write_record(ctx, result, "running")
                if sr.status == "failed":
                    stop(sr, ctx, result, earlier, renders)
                if sr.status == "ok":
                    _progress(f"[{i}/{n}] {sr.stage.name}: done in {sr.seconds:.1f} s -> {sr.stage.html}")
            renders.wait()  # every report written before the index gives them their headers
            if result.ok and (ctx.run_dir / "transactions_clean.parquet").is_file():
                metrics.write_metrics(ctx.run_dir, ctx.study.resolved())  # the study's standard metrics
            if result.ok:
                try:  # like the index's summary, the executive summary never stops a complete run
                    executive.write_summary(ctx.run_dir, ctx.study.study, ctx.study.client, ctx.study.currency,
                                            ctx.scrubber.scrub)
                except Exception as exc:  # noqa: BLE001
                    _progress(f"executive summary not written ({type(exc).__name__}: {exc}); the index has no link")
            pages.write_index(ctx, result, earlier, ctx.scrubber.scrub)
            seal(ctx, result)
            if ctx.client and result.ok:  # the client's rendering of this very run, beside the consultant's
                pages.write_client_rendering(ctx.run_dir)
    finally:
        kernel.close()
        renders.close()
        shutil.rmtree(runtime, ignore_errors=True)
    point_latest(ctx.run_dir)
    ran = [s.stage.name for s in result.stages if s.status == "ok"]
    kept = [s.stage.name for s in result.stages if s.status == "reused"]
    _progress(f"done: ran {', '.join(ran) or 'no stage'}" + (f"; reused {', '.join(kept)}" if kept else "")
              + f" -> {ctx.run_dir / 'index.html'}")
    return result


@contextlib.contextmanager
def failures_recorded(ctx: RunContext, result: RunResult) -> Iterator[None]:
    """A run that stops for any reason is recorded 'failed' with the reason, never left 'running': a full or
    read-only disk and any unexpected error become a RunError with a message (exit 1), a stage's error is passed
    on as it is (already said), an interrupt too."""
    run_dir = result.run_dir
    try:
        yield
    except OSError as exc:  # a full or read-only disk, a file that vanished
        fail(ctx, result, f"{type(exc).__name__}: {exc}")
        raise RunError(f"Run {run_dir.name} of study {ctx.study.study!r} failed: {exc}. Earlier runs and 'latest' are "
                       f"unchanged; free disk space or make {run_dir.parent} writable and run again.") from None
    except CvlibError as exc:  # a stage, or a report that could not be rendered
        fail(ctx, result, str(exc).splitlines()[0])
        raise
    except Exception as exc:  # noqa: BLE001  # e.g. the index page
        fail(ctx, result, f"{type(exc).__name__}: {exc}")
        raise RunError(f"Run {run_dir.name} failed ({type(exc).__name__}: {exc}); it is recorded as failed and "
                       "'latest' is unchanged.") from None
    except BaseException:  # an interrupt
        fail(ctx, result, "interrupted")
        raise


def seal(ctx: RunContext, result: RunResult) -> None:
    """Finish a run: record the sha256 of every stage's notebook and report, check that every declared file and
    index.html exist and match what was recorded, then write run.json as 'complete' (the last thing written)
    and make the run's files read-only. A check that fails records the run as 'failed' with the reason."""
    run_dir = result.run_dir
    if not result.ok:
        return  # already recorded 'failed' by the index
    problems = [] if (run_dir / "index.html").is_file() else ["index.html is missing"]
    for sr in result.stages:
        if sr.status not in {"ok", "reused"}:
            continue
        s = sr.stage
        for f in (s.notebook, s.html):
            if not (run_dir / f).is_file():
                problems.append(f"{f} is missing")
        sr.reports = {f: io.sha256_file(run_dir / f) for f in (s.notebook, s.html) if (run_dir / f).is_file()}
        problems += [f"{f} does not match its recorded sha256" for f in history.changed_files(run_dir, sr.outputs)]
        problems += [f"{f} is missing" for f in s.writes if f not in sr.outputs]
    if problems:
        fail(ctx, result, "; ".join(problems))
        raise RunError(f"Run {run_dir.name} could not be completed: {'; '.join(problems)}. It is recorded as "
                       "failed; 'latest' is unchanged.")
    write_record(ctx, result, "complete")
    for f in run_dir.iterdir():
        if f.is_file():
            f.chmod(0o444)


