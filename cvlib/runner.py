"""Run a study: stage notebooks through papermill into a run folder, rendered to HTML.

A run folder ``reports/<study>/<run-id>/`` holds the stage outputs (exchanged
only through files there), each executed notebook, its HTML, ``params.yaml``
(what was used), ``run.json`` and ``index.html``. ``reports/<study>/latest``
points to the newest run.
"""
from __future__ import annotations

import datetime as dt
import html
import importlib.metadata
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvlib import io
from cvlib.errors import ParamError, StageError, StageInputError
from cvlib.params import Study, load_study, parse_override

log = logging.getLogger("cvlib")


def kernel_manager_class(runtime_dir: str | Path | None = None) -> type:
    """The kernel manager for stage notebooks: over local IPC sockets where the system has them (POSIX), so
    code and client data do not travel over unencrypted TCP (and ipykernel does not warn that they do).

    With `runtime_dir` the kernel's sockets and connection file live there (one private folder per run), so
    concurrent runs never share or collide on them."""
    from jupyter_client.manager import AsyncKernelManager

    if os.name != "posix" and runtime_dir is None:
        return AsyncKernelManager
    where = str(runtime_dir) if runtime_dir is not None else None

    class PrivateKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            if os.name == "posix":
                kwargs.setdefault("transport", "ipc")
            if where is not None:
                kwargs.setdefault("connection_file", os.path.join(where, "kernel.json"))
                if os.name == "posix":
                    kwargs.setdefault("ip", os.path.join(where, "k"))  # socket files k-<port>
            super().__init__(**kwargs)

    return PrivateKernelManager


@dataclass(frozen=True)
class Stage:
    name: str
    notebook: str
    title: str
    needs: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()  # read when an earlier stage wrote them
    sections: tuple[str, ...] = ()  # parameter sections its outputs depend on (besides those of its inputs)


STAGES: tuple[Stage, ...] = (
    Stage("cleaning", "01_cleaning.ipynb", "Data cleaning", (),
          ("transactions_clean.parquet", "quarantine.csv", "cleaning.json"), sections=("inputs", "cleaning")),
    Stage("rfm", "02_rfm.ipynb", "RFM and segmentation", ("transactions_clean.parquet",),
          ("rfm.parquet", "clv_summary.parquet", "rfm.json"), sections=("rfm",)),
    Stage("clv", "03_clv.ipynb", "Customer lifetime value",
          ("transactions_clean.parquet", "rfm.parquet", "clv_summary.parquet"),
          ("clv.parquet", "clv_model.json"), sections=("inputs", "clv")),
    Stage("value", "03b_value.ipynb", "Customer value assessment",
          ("transactions_clean.parquet", "rfm.parquet", "clv.parquet", "clv_model.json"), ("value.parquet", "value.json"),
          sections=("inputs", "value")),
    Stage("drivers", "04_loyalty_drivers.ipynb", "Loyalty and retention drivers",
          ("transactions_clean.parquet", "rfm.parquet", "clv.parquet"),
          ("drivers.parquet", "churn_risk.parquet", "drivers.json"), sections=("inputs", "drivers")),
    Stage("strategy", "05_strategy.ipynb", "Strategy recommendations",
          ("transactions_clean.parquet", "rfm.parquet", "clv.parquet", "clv_model.json"),
          ("strategy_groups.parquet", "playbook.csv", "targets.csv", "targets.xlsx", "strategy.json"),
          ("value.parquet", "churn_risk.parquet", "drivers.parquet", "cleaning.json", "rfm.json", "value.json",
           "drivers.json"), sections=("strategy", "currency")),
)

PACKAGES = ("cvlib", "pandas", "numpy", "scipy", "pyarrow", "scikit-learn", "seaborn", "matplotlib", "lifelines",
            "pydantic", "papermill", "nbconvert", "ipykernel")


@dataclass
class StageRun:
    stage: Stage
    status: str = "pending"  # pending | ok | failed | skipped
    seconds: float = 0.0
    error: str = ""
    html: str = ""
    ename: str = ""


@dataclass
class RunResult:
    run_dir: Path
    stages: list[StageRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.status in {"ok", "skipped"} for s in self.stages)


def project_root(params_file: Path) -> Path:
    """The folder holding notebooks/: the params file's grandparent, else the working folder."""
    cand = params_file.resolve().parent.parent
    return cand if (cand / "notebooks").is_dir() else Path.cwd()


def available_stages(notebooks_dir: Path) -> list[Stage]:
    return [s for s in STAGES if (notebooks_dir / s.notebook).is_file()]


def select_stages(names: list[str] | None, notebooks_dir: Path) -> list[Stage]:
    avail = available_stages(notebooks_dir)
    if not names:
        return avail
    known = {s.name: s for s in STAGES}
    for n in names:
        if n not in known:
            raise ParamError(f"--stages: unknown stage {n!r}. Stages: {', '.join(known)}.")
        if known[n] not in avail:
            raise ParamError(f"--stages: stage {n!r} has no notebook {notebooks_dir / known[n].notebook}.")
    return [s for s in avail if s.name in names]


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


def stage_sections(stage: Stage) -> set[str]:
    """The parameter sections a stage's outputs depend on: its own and those of every stage it reads from."""
    out = set(stage.sections)
    for f in stage.needs + stage.uses:
        src = next((s for s in STAGES if f in s.writes), None)
        if src is not None and src is not stage:
            out |= stage_sections(src)
    return out


def run_record(run_dir: Path) -> dict | None:
    """The run.json of a run folder, or None when it has none (or it cannot be read)."""
    try:
        return io.read_json(run_dir / "run.json")
    except (OSError, ValueError):
        return None


def _mismatch(record: dict, study: Study, fps: list[dict], producer: Stage) -> str:
    """Why an earlier run's output of `producer` cannot be used for this study ('' when it can)."""
    if record.get("status") != "complete":
        return f"that run is {record.get('status') or 'incomplete'}"
    if not any(s.get("name") == producer.name and s.get("status") in {"ok", "reused"}
               for s in record.get("stages", [])):
        return f"stage {producer.name} did not run there"
    theirs = {f.get("table"): f.get("sha256") for f in record.get("inputs", [])}
    ours = {f["table"]: f["sha256"] for f in fps}
    if theirs != ours:
        return "its input files differ from this study's (sha256)"
    params = study.model_dump(mode="json")
    old = record.get("params") or {}
    changed = sorted(k for k in stage_sections(producer) if old.get(k) != params.get(k))
    if changed:
        return f"its parameters differ in {', '.join(changed)}"
    return ""


def bring_upstream(stages: list[Stage], run_dir: Path, study: Study | None = None,
                   fps: list[dict] | None = None) -> list[str]:
    """Copy files the selected stages need (or use) but will not write, each from the newest earlier completed
    run of the study whose input files and relevant parameters match. Returns 'file (from run)' lines."""
    will_write = {f for s in stages for f in s.writes}
    needed = {f for s in stages for f in s.needs} - will_write
    optional = {f for s in stages for f in s.uses} - will_write - needed
    earlier = sorted((d for d in run_dir.parent.iterdir() if d.is_dir() and not d.is_symlink() and d != run_dir),
                     key=lambda d: d.name, reverse=True)
    records = {d: run_record(d) for d in earlier}
    copied = []
    for f in sorted(needed | optional):
        producer = next(s for s in STAGES if f in s.writes)
        src, why_not = None, []
        for d in earlier:
            if not (d / f).exists():
                continue
            rec = records[d]
            why = "it has no run record" if rec is None else (
                _mismatch(rec, study, fps or [], producer) if study is not None else "")
            if not why:
                src = d / f
                break
            why_not.append(f"{d.name}: {why}")
        if src is None:
            if f in needed:
                detail = ("; ".join(why_not[:3]) + ("; ..." if len(why_not) > 3 else "")) if why_not else \
                    "no earlier run of this study has it"
                raise ParamError(
                    f"Stage(s) {', '.join(s.name for s in stages)} need {f}, and no earlier run can provide it "
                    f"({detail}). Run the earlier stages too (leave out --stages).")
            continue
        shutil.copy2(src, run_dir / f)
        copied.append(f"{f} (from {src.parent.name})")
    return copied


STAGE_FUNCTIONS = {  # stage -> the cvlib function that computes and writes its outputs
    "cleaning": ("cvlib.cleaning", "run_cleaning"),
    "rfm": ("cvlib.rfm", "run_rfm"),
    "clv": ("cvlib.clv", "run_clv"),
    "value": ("cvlib.value", "run_value"),
    "drivers": ("cvlib.drivers", "run_drivers"),
    "strategy": ("cvlib.strategy", "run_strategy"),
}


def require(study: Study, run_dir: str | Path, *names: str, build_missing: bool = False) -> None:
    """Make sure stage outputs exist in run_dir. With build_missing (a notebook opened by hand),
    missing ones are built by the earlier stages' functions; otherwise a clear error."""
    import importlib

    for name in names:
        if (Path(run_dir) / name).exists():
            continue
        stage = next((s for s in STAGES if name in s.writes), None)
        if not build_missing or stage is None or stage.name not in STAGE_FUNCTIONS:
            io.stage_file(run_dir, name)  # raises with a clear message
        require(study, run_dir, *stage.needs, build_missing=True)
        module, func = STAGE_FUNCTIONS[stage.name]
        _progress(f"building missing {name} with {module}.{func}")
        getattr(importlib.import_module(module), func)(study, run_dir)


def render_html(ipynb: Path, out: Path, title: str, with_code: bool = False) -> Path:
    """Render an executed notebook to one self-contained HTML file (figures embedded)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(ipynb, as_version=4)
    exporter = HTMLExporter(template_name="cvlib", extra_template_basedirs=[str(Path(__file__).parent / "templates")])
    exporter.exclude_input = not with_code
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    exporter.embed_images = True
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return io.write_text(body, out)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def _progress(msg: str) -> None:
    print(f"cvlib: {msg}", file=sys.stderr, flush=True)


def _execute(nb_in: Path, out_nb: Path, parameters: dict, cwd: Path, runtime: Path, tty: bool,
             scrubber: Any) -> None:
    """Run one stage notebook with papermill into a private folder, scrub its outputs, move it into place.

    The unscrubbed notebook never enters the run folder; the scrubbed one is written even when the stage
    failed (it shows the error)."""
    import nbformat
    import papermill as pm

    tmp_nb = runtime / out_nb.name
    error: Exception | None = None
    try:
        pm.execute_notebook(str(nb_in), str(tmp_nb), parameters=parameters, cwd=str(cwd), kernel_name="python3",
                            progress_bar=tty, log_output=False, kernel_manager_class=kernel_manager_class(runtime))
    except Exception as exc:  # papermill's PapermillExecutionError, or a kernel that died
        error = exc
    if tmp_nb.exists():
        nb = nbformat.read(tmp_nb, as_version=4)
        if scrubber.ids:
            scrubber.scrub_notebook(nb)
        io.write_text(nbformat.writes(nb), out_nb)
        tmp_nb.unlink(missing_ok=True)
    if error is not None:
        raise error


def run_study(
    params_file: str | Path,
    stages: list[str] | None = None,
    overrides: list[str] | None = None,
    with_code: bool = False,
    reports_dir: str | Path | None = None,
    notebooks_dir: str | Path | None = None,
) -> RunResult:
    """Validate the study, run the selected stages in order, render them and write the index."""
    import tempfile

    from cvlib import privacy

    params_file = Path(params_file).resolve()
    study = load_study(params_file, overrides)
    io.check_inputs(study)  # mapped columns present, data rows there: before anything runs
    scrubber = privacy.scrubber_for(study)  # refuses a pseudonymised study without a key
    scrub = scrubber.scrub
    root = project_root(params_file)
    nb_dir = Path(notebooks_dir) if notebooks_dir else root / "notebooks"
    selected = select_stages(stages, nb_dir)
    if not selected:
        raise ParamError(f"No stage notebooks found in {nb_dir}.")
    reports = Path(reports_dir) if reports_dir else root / "reports"
    fps = _fingerprints(study)
    run_dir = new_run_dir(reports, study.study)
    try:
        copied = bring_upstream(selected, run_dir, study, fps) if stages else []
    except ParamError:
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing ran: leave no half-filled run behind
        raise
    io.write_text(study.to_yaml(), run_dir / "params.yaml")
    result = RunResult(run_dir=run_dir, stages=[StageRun(s) for s in selected])
    started = dt.datetime.now()
    tty = sys.stderr.isatty()
    override_dict = dict(parse_override(o) for o in overrides or [])
    write_record(study, result, started, overrides or [], copied, fps, "running")  # a killed run stays 'running'
    _progress(f"study {study.study!r}: {len(selected)} stage(s) into {run_dir}")
    if copied:
        _progress(f"using {', '.join(copied)}")
    runtime = Path(tempfile.mkdtemp(prefix="cvlib-kernel-"))  # sockets, connection files: private to this run
    try:
        for i, sr in enumerate(result.stages, 1):
            s = sr.stage
            out_nb = run_dir / s.notebook
            out_html = run_dir / s.notebook.replace(".ipynb", ".html")
            _progress(f"[{i}/{len(selected)}] {s.name}: running {s.notebook}")
            t0 = time.perf_counter()
            try:
                _execute(nb_dir / s.notebook, out_nb,
                         {"params_file": str(params_file), "overrides": _jsonable(override_dict),
                          "run_dir": str(run_dir), "build_missing": False}, nb_dir, runtime, tty, scrubber)
                sr.status = "ok"
            except Exception as exc:
                sr.status = "failed"
                sr.ename = str(getattr(exc, "ename", type(exc).__name__))
                sr.error = scrub(f"{sr.ename}: {getattr(exc, 'evalue', exc)}")
            sr.seconds = time.perf_counter() - t0
            if out_nb.exists():
                render_html(out_nb, out_html, f"{s.title} - {study.study}", with_code)
                sr.html = out_html.name
            if sr.status == "failed":
                for rest in result.stages[i:]:
                    rest.status = "skipped"
                write_index(study, result, started, overrides or [], copied, fps, scrub)
                where = out_html if out_html.exists() else out_nb
                err = StageInputError if sr.ename in {"InputDataError", "ParamError"} else StageError
                raise err(f"Stage '{s.name}' failed: {sr.error}\nThe rendered notebook shows the error: {where}\n"
                          f"Outputs of the earlier stages are kept in {run_dir}.")
            _progress(f"[{i}/{len(selected)}] {s.name}: done in {sr.seconds:.1f} s -> {out_html.name}")
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    write_index(study, result, started, overrides or [], copied, fps, scrub)
    point_latest(run_dir)
    _progress(f"done: {run_dir / 'index.html'}")
    return result


def _jsonable(v: Any) -> Any:
    """Override values as papermill can inject them (dates as ISO text)."""
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return v


def _fingerprints(study: Study) -> list[dict[str, Any]]:
    out = []
    for name, t in study.input_tables().items():
        fp = io.fingerprint(study.resolve(t.path))
        fp["table"] = name
        out.append(fp)
    return out


def summary_section(run_dir: Path, currency: str, rendered: set[str]) -> str:
    """Headline figures and key findings (escaped), each finding linked to its stage report."""
    from cvlib import summary

    e = html.escape
    try:
        heads = summary.headline(run_dir, currency)
        finds = summary.findings(run_dir, currency)
    except Exception as exc:  # the summary must never hide the stage links
        return f"<p><em>Summary not available: {e(str(exc))}</em></p>"
    if not heads and not finds:
        return ""
    rows = "".join(f"<tr><td>{e(k)}</td><td><b>{e(v)}</b></td></tr>" for k, v in heads)
    items = "".join(f"<li>{e(t)} " + (f"<a href='{e(link)}'>(report)</a>" if link in rendered else "") + "</li>"
                    for t, link in finds)
    return f"<h2>Headline figures</h2><table>{rows}</table><h2>Key findings</h2><ul>{items}</ul>"


def write_record(study: Study, result: RunResult, started: dt.datetime, overrides: list[str], copied: list[str],
                 fps: list[dict], status: str) -> dict:
    """run.json: what ran, on which inputs (sha256), with which parameters, and the run's status: 'running'
    while it runs (so a killed run is never taken for a finished one), then 'complete' or 'failed'."""
    run_dir = result.run_dir
    cleaning = run_dir / "cleaning.json"
    counts = io.read_json(cleaning)["summary"] if cleaning.exists() else {}
    manifest = {
        "study": study.study, "client": study.client, "status": status,
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now().isoformat(timespec="seconds") if status != "running" else None,
        "overrides": overrides, "inputs": fps, "params": study.model_dump(mode="json"), "row_counts": counts,
        "versions": package_versions(), "copied_from_latest": copied,
        "stages": [{"name": s.stage.name, "status": s.status, "seconds": round(s.seconds, 1), "html": s.html,
                    "error": s.error} for s in result.stages],
    }
    io.write_json(manifest, run_dir / "run.json")
    return manifest


def write_index(study: Study, result: RunResult, started: dt.datetime, overrides: list[str], copied: list[str],
                fps: list[dict] | None = None, scrub: Any = None) -> Path:
    """The run's index.html (and run.json): study, when, parameters, data fingerprint, versions, stage links."""
    run_dir = result.run_dir
    e = html.escape
    fps = fps if fps is not None else _fingerprints(study)
    manifest = write_record(study, result, started, overrides, copied, fps, "complete" if result.ok else "failed")
    counts, versions = manifest["row_counts"], manifest["versions"]
    status_colour = {"ok": "#1e8449", "failed": "#c0392b", "skipped": "#7f8c8d", "pending": "#7f8c8d"}
    def links(s: StageRun) -> str:
        if not s.html:
            return ""
        return f"<a href='{e(s.html)}'>report</a> · <a href='{e(s.stage.notebook)}'>notebook</a>"

    stage_rows = "".join(
        f"<tr><td>{e(s.stage.title)}</td><td style='color:{status_colour[s.status]}'><b>{e(s.status)}</b></td>"
        f"<td>{s.seconds:.1f} s</td><td>{links(s)}</td><td>{e(s.error)}</td></tr>" for s in result.stages)
    fp_rows = "".join(f"<tr><td>{e(f['table'])}</td><td>{e(f['path'])}</td><td>{f['bytes']:,}</td>"
                      f"<td><code>{e(f['sha256'][:16])}…</code></td></tr>" for f in fps)
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "yes" if v else "NO"
        return f"{v:,}" if isinstance(v, (int, float)) else str(v)

    count_rows = "".join(f"<tr><td>{e(k.replace('_', ' '))}</td><td>{e(fmt(v))}</td></tr>"
                         for k, v in counts.items() if k != "notes")
    ver_rows = "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in versions.items())
    summary_html = summary_section(run_dir, study.currency, {s.html for s in result.stages if s.html})
    over = "".join(f"<li><code>{e(o)}</code></li>" for o in overrides) or "<li>none</li>"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(study.study)} - customer value study</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:0.5em 0 1.5em}}td,th{{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}}
pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>
<h1>Customer value study: {e(study.client)}</h1>
<p>Study <b>{e(study.study)}</b> · run {e(run_dir.name)} · started {e(manifest['started'])} · finished {e(manifest['finished'])}</p>
{summary_html}
<h2>Stage reports</h2><table><tr><th>stage</th><th>status</th><th>time</th><th>links</th><th>error</th></tr>{stage_rows}</table>
<h2>Data fingerprint</h2><table><tr><th>table</th><th>file</th><th>bytes</th><th>sha256</th></tr>{fp_rows}</table>
{f'<table><tr><th>count</th><th>value</th></tr>{count_rows}</table>' if count_rows else ''}
<h2>Parameters used</h2><p>Overrides from the command line:</p><ul>{over}</ul>
<pre>{e(study.to_yaml())}</pre>
<h2>Package versions</h2><table>{ver_rows}</table>
</body></html>"""
    return io.write_text(scrub(page) if scrub is not None else page, run_dir / "index.html")
