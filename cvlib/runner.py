"""Run a study: stage notebooks through papermill into a run folder, rendered to HTML.

A run folder ``reports/<study>/<run-id>/`` holds every stage's outputs (exchanged only
through files there), its executed notebook and HTML, ``params.yaml`` (the resolved study
the kernels read: re-runnable with ``cvlib run``), ``run.json`` and ``index.html``.

A stage is *reused* (its outputs, notebook and report copied from an earlier run) when
nothing it depends on changed: its notebook, the cvlib code and library versions, its
parameter sections (`cvlib.stages`), the files it reads and the input tables it reads.
So every run folder is a complete study, and ``reports/<study>/latest`` (moved only
when a run completes) is always a complete package to review and send.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from cvlib import io, runs, threads
from cvlib.errors import CvlibError, ParamError, RunError, StageError, StageInputError
from cvlib.params import Study, load_study
from cvlib.stages import STAGES, Stage, by_name, producer

PACKAGES = ("cvlib", "pandas", "numpy", "scipy", "pyarrow", "scikit-learn", "seaborn", "matplotlib", "lifelines",
            "pydantic", "papermill", "nbconvert", "ipykernel", "jinja2")


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


# --------------------------------------------------------------------------- where things are
def project_root(params_file: Path) -> Path:
    """The nearest folder above the params file holding notebooks/ (so params/x.yaml and
    reports/<study>/<run>/params.yaml both find it), else the working folder."""
    for cand in params_file.resolve().parents:
        if (cand / "notebooks").is_dir():
            return cand
    return Path.cwd()


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


# --------------------------------------------------------------------------- notebooks opened by hand
def require(study: Study, run_dir: str | Path, stage: str, build_missing: bool = False) -> None:
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
        _progress(f"building missing {name} with {src.function}")
        src.build()(study, run_dir)


# --------------------------------------------------------------------------- what a stage depends on
def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def _digest(obj: Any) -> str:
    return _sha(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str))


@functools.cache
def code_digest() -> str:
    """sha256 over cvlib's own source and templates: a changed cvlib reruns every stage."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in {".py", ".j2", ".tpl", ".css", ".json", ".yaml", ".html"}:
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def stage_depends(stage: Stage, params: dict, run_dir: Path, notebook: Path, tables: dict[str, str],
                  context: dict) -> dict:
    """Digests of everything the stage's outputs and report depend on; equal digests mean the stage
    would produce the same result, so an earlier run's can be reused."""
    return {
        "notebook": _sha(notebook.read_bytes()),
        "cvlib": code_digest(),
        "context": _digest(context),  # library versions, rendering options, pseudonym key id
        "params": {sec: _digest(section(params, sec)) for sec in stage.all_sections},
        "files": {f: io.sha256_file(run_dir / f) for f in stage.inputs},
        "tables": {t: tables.get(t) for t in stage.tables},
    }


def section(params: dict, key: str) -> Any:
    """A parameter section of the resolved parameters, or a part of one ('journey.cycles')."""
    out: Any = params
    for part in key.split("."):
        out = out.get(part) if isinstance(out, dict) else None
    return out


def explain_change(new: dict, old: dict | None) -> str:
    """What differs between two stage dependency records, in words."""
    if not old:
        return "no earlier run"
    out = []
    if new.get("notebook") != old.get("notebook"):
        out.append("notebook changed")
    if new.get("cvlib") != old.get("cvlib"):
        out.append("cvlib changed")
    if new.get("context") != old.get("context"):
        out.append("libraries or rendering options changed")
    secs = [k for k, v in new.get("params", {}).items() if (old.get("params") or {}).get(k) != v]
    if secs:
        out.append("parameters changed: " + ", ".join(secs))
    files = [k for k, v in new.get("files", {}).items() if (old.get("files") or {}).get(k) != v]
    if files:
        out.append("inputs changed: " + ", ".join(files))
    tabs = [k for k, v in new.get("tables", {}).items() if (old.get("tables") or {}).get(k) != v]
    if tabs:
        out.append("input tables changed: " + ", ".join(tabs))
    return "; ".join(out) or "same inputs"


# --------------------------------------------------------------------------- reuse
REUSED_MARK = re.compile(r"<!-- cvlib:reused -->.*?<!-- /cvlib:reused -->", re.S)


def reused_banner(run_id: str, when: str, language: str = "en") -> str:
    """The note at the top of a reused stage report (the client's rendering leaves it out)."""
    from html import escape

    from cvlib import i18n

    return (f"<!-- cvlib:reused --><div class='cvlib-reused' style='border-left:4px solid #2e86c1;"
            f"background:#eef6fb;padding:6px 12px;margin:8px 0;font-family:system-ui,sans-serif'>"
            f"{escape(i18n.t('runner.reused', language, run=run_id, when=when))}</div><!-- /cvlib:reused -->")


def _copy(src: Path, dst: Path) -> None:
    """A copy of its own (never a hard link: editing an old run must not change this one), made writable."""
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)


def reuse(sr: StageRun, source: runs.Source, run_dir: Path, language: str = "en") -> None:
    """Bring a stage's outputs, notebook and report from an earlier run into run_dir (copies, checked against
    their recorded sha256 when the source was chosen)."""
    s = sr.stage
    for f in source.entry["outputs"]:
        _copy(source.run_dir / f, run_dir / f)
    _copy(source.run_dir / s.notebook, run_dir / s.notebook)
    page = REUSED_MARK.sub("", (source.run_dir / s.html).read_text(encoding="utf-8"))
    page = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + reused_banner(source.origin, source.when, language),
                  page, count=1)
    io.write_text(page, run_dir / s.html)
    sr.status, sr.html, sr.reused_from = "reused", s.html, source.origin
    sr.outputs = dict(source.entry["outputs"])
    sr.reason = f"reused from run {source.origin}"


# --------------------------------------------------------------------------- executing
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


def _progress(msg: str) -> None:
    print(f"cvlib: {msg}", file=sys.stderr, flush=True)


RESET_TAG = "cvlib-reset"
RESET_SOURCE = ("get_ipython().run_line_magic('reset', '-f')\n"
                "import gc as _gc, matplotlib.pyplot as _plt\n_plt.close('all')\n_gc.collect()\n_gc.freeze()\n"
                "del _gc, _plt\n"
                "from cvlib.runner import release_memory as _release\n_release()\ndel _release")


def release_memory() -> None:
    """Give memory freed by the previous stage back to the system (glibc's and Arrow's allocators keep it
    otherwise), so one kernel's peak is the largest stage's, not the sum of what the stages left behind."""
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except Exception:  # an allocator without the call
        pass
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass


class StageKernel:
    """One kernel for every stage of a run. It starts once, so its start and the imports of pandas, scipy,
    scikit-learn and matplotlib are paid once (about 3 s a stage). Before each notebook its namespace is reset
    (`%reset -f`, figures closed, memory collected), so a notebook sees nothing an earlier one defined;
    the reset cell is removed from the executed notebook. What survives the reset (modules, the kernel's
    own objects) is then frozen out of the cycle collector (`gc.freeze`): every later collection, the two of
    each reset included, skips those 200,000 objects instead of walking them (0.13 s a collection)."""

    def __init__(self, runtime: Path) -> None:
        self.runtime = runtime
        self.km: Any = None

    def execute(self, nb_in: Path, out_nb: Path, parameters: dict, cwd: Path, tty: bool, language: str = "en") -> None:
        """Run one notebook with papermill into out_nb (written even when a cell fails), its narrative in the
        report language."""
        import nbformat
        import papermill as pm

        from cvlib import i18n

        nb = i18n.localise_notebook(nbformat.read(nb_in, as_version=4), nb_in.stem, language)
        nb.cells.insert(0, nbformat.v4.new_code_cell(RESET_SOURCE, metadata={"tags": [RESET_TAG]}))
        staged = self.runtime / f"in-{nb_in.name}"
        nbformat.write(nb, staged)
        if self.km is None:
            from jupyter_core.utils import run_sync

            self.km = kernel_manager_class(self.runtime)(kernel_name="python3")
            # started here in `cwd`, not by papermill's `cwd`, which changes this whole process's folder while a
            # notebook runs (two kernels run from two threads would leave it changed); no history file, as nbclient
            run_sync(self.km.start_kernel)(cwd=str(cwd), extra_arguments=["--HistoryManager.hist_file=:memory:"])
        try:
            pm.execute_notebook(str(staged), str(out_nb), parameters=parameters, kernel_name="python3",
                                progress_bar=tty, log_output=False, request_save_on_cell_execute=False, km=self.km)
        finally:
            staged.unlink(missing_ok=True)

    def close(self) -> None:
        if self.km is not None and self.km.has_kernel:
            from jupyter_core.utils import run_sync

            try:
                run_sync(self.km.shutdown_kernel)(now=True)
            except Exception:  # a kernel that died with its stage: nothing left to stop
                pass


def _execute(kernel: StageKernel, nb_in: Path, out_nb: Path, parameters: dict, cwd: Path, tty: bool,
             scrubber: Any, language: str = "en") -> None:
    """Run one stage notebook into the kernel's private folder, drop the reset cell, scrub its outputs, move it
    into place. The unscrubbed notebook never enters the run folder; the scrubbed one is written even when the
    stage failed (it shows the error)."""
    import nbformat

    tmp_nb = kernel.runtime / out_nb.name
    error: Exception | None = None
    try:
        kernel.execute(nb_in, tmp_nb, parameters, cwd, tty, language)
    except Exception as exc:  # papermill's PapermillExecutionError, or a kernel that died
        error = exc
    if tmp_nb.exists():
        nb = nbformat.read(tmp_nb, as_version=4)
        nb.cells = [c for c in nb.cells if RESET_TAG not in c.get("metadata", {}).get("tags", [])]
        if scrubber.ids:
            scrubber.scrub_notebook(nb)
        io.write_text(nbformat.writes(nb), out_nb)
        tmp_nb.unlink(missing_ok=True)
    if error is not None:
        raise error


@dataclass
class _Context:
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


def _run_stage(sr: StageRun, i: int, n: int, ctx: _Context, kernel: StageKernel, scrubber: Any,
               renders: "Renders | None", result: RunResult, lane: "SideLane | None" = None) -> Callable[[], None]:
    """Execute one stage notebook in the run folder and render it (in the background with `renders`, while the
    next stage runs, its header and links added there); check it wrote what it declares. With `lane` the
    notebook runs in the lane's kernel and this returns at once: call the returned function to wait for it
    and finish the stage (before anything reads its outputs). Without, the stage is finished on return."""
    s, run_dir = sr.stage, ctx.run_dir
    where = " in a second kernel, beside the next stage" if lane is not None else ""
    _progress(f"[{i}/{n}] {s.name}: running {s.notebook}{where} ({sr.reason})")
    t0 = time.perf_counter()
    args = (ctx.nb_dir / s.notebook, run_dir / s.notebook,
            {"params_file": str(run_dir / "params.yaml"), "overrides": {}, "run_dir": str(run_dir),
             "build_missing": False}, ctx.nb_dir, sys.stderr.isatty(), scrubber, ctx.study.report.language)

    def execute(k: StageKernel) -> tuple[Exception | None, float]:
        try:
            _execute(k, *args)
            return None, time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001  # the stage's failure, recorded by _finish_stage
            return exc, time.perf_counter() - t0

    if lane is None:
        _finish_stage(sr, *execute(kernel), i, ctx, scrubber, renders, result)
        return lambda: None
    sr.status = "running"
    future = lane.submit(execute)

    def finish() -> None:  # called once, by the run loop's settle
        _finish_stage(sr, *future.result(), i, ctx, scrubber, renders, result)
        if sr.status == "ok":
            _progress(f"[{i}/{n}] {s.name}: done in {sr.seconds:.1f} s -> {s.html}")

    return finish


def _finish_stage(sr: StageRun, error: Exception | None, seconds: float, i: int, ctx: _Context, scrubber: Any,
                  renders: "Renders | None", result: RunResult) -> None:
    """A stage's status, outputs and report once its notebook has run (`error`: how it failed, if it did)."""
    s, run_dir = sr.stage, ctx.run_dir
    out_nb, out_html = run_dir / s.notebook, run_dir / s.html
    try:
        if error is not None:
            raise error
        missing = [f for f in s.writes if not (run_dir / f).exists()]
        if missing:
            raise StageError(f"the notebook did not write {', '.join(missing)}, which stage {s.name!r} declares "
                             "(cvlib.stages)")
        sr.status = "ok"
        sr.outputs = {f: io.sha256_file(run_dir / f) for f in s.outputs if (run_dir / f).exists()}
    except Exception as exc:
        sr.status = "failed"
        sr.ename = str(getattr(exc, "ename", type(exc).__name__))
        sr.error = scrubber.scrub(f"{sr.ename}: {getattr(exc, 'evalue', exc)}")
    sr.seconds = seconds
    if out_nb.exists():
        args = (out_nb, out_html, f"{s.title} - {ctx.study.study}", ctx.with_code)
        if renders is not None:
            from cvlib import pages

            sr.nav = pages.nav_spec(ctx, result, i - 1, predicted=True)
            renders.submit(*args, nav=sr.nav)
        else:
            render_html(*args)
        sr.html = out_html.name


#: studies with at most this many clean transactions may run two independent stages side by side (two
#: kernels hold their data at once; larger studies run one stage at a time so memory stays bounded)
SIDE_BY_SIDE_MAX_ROWS = threads.SIDE_BY_SIDE_MAX_ROWS  # kept in cvlib.threads, read by the stages too


class SideLane:
    """A second kernel, driven from one thread, for a stage the next stage does not depend on (the value stage
    beside the drivers stage): on two cores the two run at the same time. The threads only wait on their
    kernels' messages, so they do not compete for the GIL. Used when the machine has a core for each thread of
    both kernels (two kernels of one-thread libraries, the default, need two; with `CVLIB_THREADS=auto` each
    library takes every core, and two kernels would fight over them: the drivers stage took 10-11 s instead of
    6-7 s), the study is small (`SIDE_BY_SIDE_MAX_ROWS`) and `CVLIB_SIDE_BY_SIDE` is not 0."""

    def __init__(self, runtime: Path) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(1, thread_name_prefix="cvlib-side")
        (runtime / "side").mkdir(exist_ok=True)  # its own connection file and sockets
        self.kernel = StageKernel(runtime / "side")  # its kernel starts, and is used, in the lane's thread only

    @staticmethod
    def allowed(run_dir: Path) -> bool:
        """Whether this run may use a second kernel (see the class)."""
        clean, cores = run_dir / "transactions_clean.parquet", os.cpu_count() or 1
        two_fit = 2 * (threads.thread_cap() or cores) <= cores  # every library thread of both kernels has a core
        if os.environ.get("CVLIB_SIDE_BY_SIDE") == "0" or not two_fit or not clean.exists():
            return False
        import pyarrow.parquet as pq

        return pq.ParquetFile(clean).metadata.num_rows <= SIDE_BY_SIDE_MAX_ROWS

    def submit(self, execute: Callable[[StageKernel], Any]) -> Any:
        return self.pool.submit(execute, self.kernel)

    def close(self) -> None:
        self.pool.submit(self.kernel.close).result()
        self.pool.shutdown()


class Renders:
    """Renders stage notebooks to HTML in a worker process while the kernel runs the next stage: on two cores the
    rendering then costs no wall time (a thread would hold the GIL that papermill's message loop, which paces the
    kernel, needs). The worker also gives each report its header and links (`pages.stage_navigation`), and draws
    the index page's figures (`call`): it imports the plotting libraries while the kernel starts, so the runner
    never does. A plain subprocess fed one job a line, not multiprocessing, so the caller's script is never
    imported again. `wait` returns when every render is written and raises on the first one that failed."""

    def __init__(self) -> None:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, "-c", "from cvlib.runner import render_worker; render_worker()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, encoding="utf-8")
        self.sent = 0

    def _send(self, job: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()

    def _answer(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise StageError(f"the report renderer stopped (exit code {self.proc.poll()}) with "
                             f"{self.sent} job(s) unanswered")
        return json.loads(line)

    def submit(self, ipynb: Path, out: Path, title: str, with_code: bool = False, nav: dict | None = None) -> None:
        """Render `ipynb` to `out` (and give it the header `nav`, from pages.nav_spec), in the background."""
        self._send({"job": "render", "args": [str(ipynb), str(out), title, with_code], "nav": nav})
        self.sent += 1

    def wait(self) -> None:
        errors = []
        while self.sent:
            answer = self._answer()
            self.sent -= 1
            if answer["error"] is not None:
                errors.append(answer["error"])
        if errors:
            raise StageError(f"rendering a report failed: {errors[0]}")

    def call(self, function: str, *args: Any, language: str = "en") -> Any:
        """`function` ('module:name') called with `args` in the worker, in the report language; its result.
        Waits for the renders submitted before."""
        import base64
        import pickle

        self.wait()
        self._send({"job": "call", "function": function, "language": language,
                    "args": base64.b64encode(pickle.dumps(args)).decode("ascii")})
        answer = self._answer()
        if answer["error"] is not None:
            raise StageError(f"{function} failed in the report renderer: {answer['error']}")
        return pickle.loads(base64.b64decode(answer["value"]))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=120)
        except Exception:  # noqa: BLE001  # a renderer that hangs is stopped
            self.proc.kill()


def render_worker() -> None:
    """The render process: one job a line on stdin (JSON: a render with its header, or a call), one answer a
    line on stdout ({"error": null or the error, "value": a call's pickled result})."""
    import base64
    import pickle

    skip_slow_optional_imports()
    answers, sys.stdout = sys.stdout, sys.stderr  # nothing a library prints can garble the answers
    import nbconvert  # noqa: F401  # imported while the kernel starts, not at the first render

    from cvlib import i18n, pages, plots  # noqa: F401  # the headers' and the index figures' libraries, likewise

    for line in sys.stdin:
        job = json.loads(line)
        answer: dict = {"error": None, "value": None}
        try:
            if job["job"] == "render":
                ipynb, out, title, with_code = job["args"]
                render_html(Path(ipynb), Path(out), title, with_code)
                if job["nav"] is not None:
                    io.write_text(pages.stage_navigation(Path(out).read_text(encoding="utf-8"), job["nav"]), Path(out))
            else:
                module, name = job["function"].split(":")
                i18n.use(job["language"])
                func = getattr(importlib.import_module(module), name)
                value = func(*pickle.loads(base64.b64decode(job["args"])))
                answer["value"] = base64.b64encode(pickle.dumps(value)).decode("ascii")
        except Exception as exc:  # noqa: BLE001  # reported to the runner, which fails the run
            answer["error"] = f"{type(exc).__name__}: {exc}"
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    os._exit(0)  # every file is written and closed: skip the interpreter's teardown (0.6 s the runner waits for)


def skip_slow_optional_imports() -> None:
    """Go without `rfc3987_syntax` in the process that runs a study: jsonschema (under nbformat and nbconvert)
    imports it when it is installed, and it compiles 38 grammars at import, 1.5 s of every run (0.1 s without).
    It only checks IRI formats, which notebook validation never uses. Only the running process is affected."""
    if "rfc3987_syntax" not in sys.modules and "jsonschema" not in sys.modules:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # an import of it raises ImportError


def run_study(
    params_file: str | Path,
    stages: list[str] | None = None,
    overrides: list[str] | None = None,
    with_code: bool = False,
    reports_dir: str | Path | None = None,
    notebooks_dir: str | Path | None = None,
    force: bool = False,
    client: bool = False,
) -> RunResult:
    """Validate the study once, write the resolved parameters, then for each stage in order reuse an earlier
    run's result when nothing it depends on changed, or run it (always for `stages` named, and for all with
    `force`). Render the reports and write the index; `latest` moves only when every stage succeeded."""
    import tempfile

    skip_slow_optional_imports()
    from cvlib import pages, privacy

    params_file = Path(params_file).resolve()
    study = load_study(params_file, overrides)
    io.check_inputs(study)  # mapped columns present, data rows there: before anything runs
    scrubber = privacy.scrubber_for(study)  # refuses a pseudonymised study without a key
    earlier_rec = runs.record(params_file.parent) if params_file.name == "params.yaml" else None
    root = project_root(params_file)
    # notebooks come from the project (or the folder named on the command line), never from a run folder's record
    nb_dir = Path(notebooks_dir).resolve() if notebooks_dir else root / "notebooks"
    if earlier_rec is not None and not notebooks_dir:
        runs.check_notebooks(earlier_rec, nb_dir, params_file.parent)
    names = check_stage_names(stages, nb_dir)
    selected = available_stages(nb_dir)
    if not selected:
        raise ParamError(f"No stage notebooks found in {nb_dir}.")
    reports = (Path(reports_dir) if reports_dir else (
        params_file.parent.parent.parent if earlier_rec else root / "reports")).resolve()
    fps = runs.fingerprints(study)
    tables = {f["table"]: f["sha256"] for f in fps}
    versions = package_versions()
    params = study.resolved()
    context = {"versions": versions, "with_code": with_code, "client": client,
               "key": privacy.key_fingerprint(scrubber.key) if scrubber.key else None}
    run_dir = new_run_dir(reports, study.study)
    io.write_text(f"# Resolved parameters of run {run_dir.name} of study {study.study} (input paths absolute, "
                  f"overrides applied).\n# Rerun: cvlib run {run_dir / 'params.yaml'}\n" + study.to_yaml(resolved=True),
                  run_dir / "params.yaml")
    ctx = _Context(study, run_dir, nb_dir, dt.datetime.now(), list(overrides or []), fps,
                   {s.name for s in selected} if force else set(names), with_code, versions, client)
    result = RunResult(run_dir=run_dir, stages=[StageRun(s) for s in selected])
    history = runs.Runs(reports / study.study, exclude=run_dir)
    write_record(ctx, result, "running")  # a killed run stays 'running' and is never used again
    _progress(f"study {study.study!r}: {len(selected)} stage(s) into {run_dir}")
    runtime = Path(tempfile.mkdtemp(prefix="cvlib-kernel-"))  # sockets, connection files: private to this run
    kernel = StageKernel(runtime)
    renders = Renders() if os.environ.get("CVLIB_RENDER_INLINE") != "1" else None
    lane: SideLane | None = None
    side: tuple[int, Callable[[], None]] | None = None  # the stage running in the lane, and how to finish it
    plans: dict[int, Any] = {}

    def plan(j: int) -> Any:
        """Stage j's decision, made once: 'n/a' (does not apply), an earlier run to reuse, or 'run'. Its
        digest covers only the files it reads, so it can be made while a stage it does not read runs."""
        if j not in plans:
            sj = result.stages[j]
            sj.depends = stage_depends(sj.stage, params, run_dir, nb_dir / sj.stage.notebook, tables, context)
            sj.key = _digest(sj.depends)
            plans[j] = ("n/a" if not sj.stage.applies(study) else "run" if sj.stage.name in ctx.forced
                        else history.reusable(sj.stage, sj.key) or "run")
        return plans[j]

    def beside_next(j: int) -> bool:
        """Whether stage j can run in the second kernel while stage j + 1 runs in the first. Stage j + 1 is
        planned early only when it reads nothing stage j writes (else its digest would miss those files)."""
        if j + 1 >= len(result.stages) or set(result.stages[j + 1].stage.inputs) & set(result.stages[j].stage.outputs):
            return False
        return plan(j + 1) == "run" and (lane is not None or SideLane.allowed(run_dir))

    def settle() -> None:
        """Wait for the stage in the lane; stop the run if it failed."""
        nonlocal side
        if side is not None:
            k, finish = side
            side = None
            finish()
            write_record(ctx, result, "running")
            if result.stages[k - 1].status == "failed":
                stop(result.stages[k - 1])

    def stop(failed: StageRun) -> None:
        settle()  # a stage still running beside the failed one finishes first
        if renders is not None:
            renders.wait()  # the error message points to the rendered notebook: it is there
        for rest in result.stages:
            if rest.status == "pending":
                rest.status = "skipped"
        pages.write_index(ctx, result, history, scrubber.scrub, _drawer(renders, study))
        s = failed.stage
        out_html, out_nb = run_dir / s.html, run_dir / s.notebook
        where = (f"The rendered notebook shows the error: {out_html}" if out_html.exists() else
                 f"The executed notebook shows the error: {out_nb}" if out_nb.exists() else
                 "The notebook did not start, so no notebook was written.")
        err = StageInputError if failed.ename in {"InputDataError", "ParamError"} else StageError
        raise err(f"Stage '{s.name}' failed: {failed.error}\n{where}\n"
                  f"Outputs of the earlier stages are kept in {run_dir}; 'latest' still points to the last "
                  "complete run.")

    try:
        with failures_recorded(ctx, result):
            for i, sr in enumerate(result.stages, 1):
                if side is not None and i > side[0] + 1:  # the stage after the one beside it: may read its outputs
                    settle()
                s = sr.stage
                decision = plan(i - 1)
                if decision == "n/a":
                    sr.status, sr.reason = "not_applicable", f"no {s.needs_table} table (inputs.{s.needs_table})"
                    _progress(f"[{i}/{len(selected)}] {s.name}: not applicable ({sr.reason})")
                elif decision != "run":
                    reuse(sr, decision, run_dir, study.report.language)
                    _progress(f"[{i}/{len(selected)}] {s.name}: {sr.reason}")
                else:
                    sr.reason = ("forced (--force)" if force else "named in --stages") if s.name in ctx.forced else \
                        getattr(history, "refused", {}).get(s.name) or explain_change(sr.depends,
                                                                                     history.last_depends(s.name))
                    if side is None and beside_next(i - 1):
                        lane = lane or SideLane(runtime)
                        side = (i, _run_stage(sr, i, len(selected), ctx, kernel, scrubber, renders, result, lane))
                    else:
                        _run_stage(sr, i, len(selected), ctx, kernel, scrubber, renders, result)
                write_record(ctx, result, "running")
                if sr.status == "failed":
                    stop(sr)
                if sr.status == "ok":
                    _progress(f"[{i}/{len(selected)}] {s.name}: done in {sr.seconds:.1f} s -> {s.html}")
            settle()
            if renders is not None:
                renders.wait()  # every report written before the index gives them their headers
            pages.write_index(ctx, result, history, scrubber.scrub, _drawer(renders, study))
            seal(ctx, result)
    finally:
        kernel.close()
        if lane is not None:
            lane.close()
        if renders is not None:
            renders.close()
        shutil.rmtree(runtime, ignore_errors=True)
    point_latest(run_dir)
    ran = [s.stage.name for s in result.stages if s.status == "ok"]
    kept = [s.stage.name for s in result.stages if s.status == "reused"]
    _progress(f"done: ran {', '.join(ran) or 'no stage'}" + (f"; reused {', '.join(kept)}" if kept else "")
              + f" -> {run_dir / 'index.html'}")
    return result


def _drawer(renders: Renders | None, study: Study) -> Any:
    """How the index page draws its figures: in the render worker, where the plotting libraries are loaded
    (importing them here would cost the run about 2 s), or in this process when reports render inline."""
    if renders is None:
        return None
    return lambda function, *args: renders.call(function, *args, language=study.report.language)


@contextlib.contextmanager
def failures_recorded(ctx: _Context, result: RunResult) -> Iterator[None]:
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


def seal(ctx: _Context, result: RunResult) -> None:
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
        problems += [f"{f} does not match its recorded sha256" for f in runs.changed_files(run_dir, sr.outputs)]
        problems += [f"{f} is missing" for f in s.writes if f not in sr.outputs]
    if problems:
        fail(ctx, result, "; ".join(problems))
        raise RunError(f"Run {run_dir.name} could not be completed: {'; '.join(problems)}. It is recorded as "
                       "failed; 'latest' is unchanged.")
    write_record(ctx, result, "complete")
    for f in run_dir.iterdir():
        if f.is_file():
            f.chmod(0o444)


def fail(ctx: _Context, result: RunResult, reason: str) -> None:
    """Record the run as failed with the reason, as far as the disk lets us (never raises)."""
    try:
        write_record(ctx, result, "failed", reason)
    except OSError:
        pass


def write_record(ctx: _Context, result: RunResult, status: str, reason: str = "") -> dict:
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
