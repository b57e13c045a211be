"""A study's runs: their records, which earlier result a stage can reuse, comparing two runs, and the
package of a run that goes to the client."""
from __future__ import annotations

import copy
import datetime as dt
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvlib import engines, io
from cvlib.errors import ParamError
from cvlib.params import Study, load_study
from cvlib.run.summary import figures, format_figure
from cvlib.stages import CLIENT_FILES, STAGES, TABLES_SUFFIX, Stage, by_name, report_pages


def changed_files(run_dir: Path, files: dict[str, str]) -> list[str]:
    """The files (name -> recorded sha256) that are missing from run_dir or no longer have their sha256."""
    return [f for f, sha in files.items() if not (run_dir / f).is_file() or io.sha256_file(run_dir / f) != sha]


def tampered(run_dir: Path, rec: dict) -> list[str]:
    """The files of a sealed run that are missing or differ from their recorded sha256 (empty: intact)."""
    files = {"index.html": rec.get("index_sha256")} if rec.get("index_sha256") else {}
    for e in rec.get("stages", []):
        files |= {**(e.get("outputs") or {}), **(e.get("reports") or {})}
    return changed_files(run_dir, files)


def check_notebooks(rec: dict, nb_dir: Path, run_dir: Path) -> None:
    """A rerun from a run's params.yaml: the project's notebooks must be the ones that made that run (their
    sha256 in the record), or the rerun is refused (exit 2). Nothing in the run folder chooses the code."""
    changed = []
    for e in rec.get("stages", []):
        want = (e.get("depends") or {}).get("notebook")
        nb = nb_dir / by_name(e["name"]).notebook if e.get("name") in {s.name for s in STAGES} else None
        if want and nb is not None and nb.is_file() and io.sha256_file(nb) != want:
            changed.append(nb.name)
    if changed:
        raise ParamError(f"{run_dir / 'params.yaml'}: the notebooks in {nb_dir} are not the ones that made run "
                         f"{run_dir.name} ({', '.join(changed)} changed). Run the study's own params file, or name "
                         "the notebooks folder to use with --notebooks-dir.")


def fingerprints(study: Study) -> list[dict[str, Any]]:
    """sha256 and size of each input table's file. A table on an engine (a database may change between two runs
    without a trace) gets a fingerprint of the moment it was read, so a stage that reads it is never reused."""
    out = []
    for name, t in study.input_tables().items():
        if t.is_file:
            fp = io.fingerprint(study.resolve(t.path or ""))
        else:
            fp = {"path": engines.describe(study, t), "bytes": None,
                  "sha256": f"read at {dt.datetime.now(dt.timezone.utc).isoformat()}"}
        fp["table"] = name
        out.append(fp)
    return out


def record(run_dir: Path) -> dict | None:
    """The run.json of a run folder, or None when it has none (or it cannot be read)."""
    try:
        return io.read_json(Path(run_dir) / "run.json")
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Source:
    """An earlier stage result that can be reused: where it is and the run that computed it."""
    run_dir: Path
    entry: dict
    origin: str  # the run that actually computed it (a reused entry points back to it)
    when: str


class Runs:
    """The earlier runs of one study (newest first), read once."""

    def __init__(self, study_dir: Path, exclude: Path | None = None) -> None:
        dirs = sorted((d for d in study_dir.iterdir() if d.is_dir() and not d.is_symlink() and d != exclude),
                      key=lambda d: d.name, reverse=True) if study_dir.is_dir() else []
        self.records = [(d, r) for d in dirs if (r := record(d)) is not None]
        self.refused: dict[str, str] = {}  # stage -> why its earlier result could not be reused

    def complete(self) -> list[tuple[Path, dict]]:
        """Complete runs (run.json written last, so 'complete' means sealed) that still have their index page."""
        return [(d, r) for d, r in self.records if r.get("status") == "complete" and (d / "index.html").is_file()]

    def verified(self) -> list[tuple[Path, dict]]:
        """Complete runs whose every recorded file still has its recorded sha256 (what package and compare use)."""
        return [(d, r) for d, r in self.complete() if not tampered(d, r)]

    def reusable(self, stage: Stage, key: str) -> Source | None:
        """The newest earlier result of `stage` with the same dependency key whose outputs, executed notebook and
        report all still have their recorded sha256. Runs still marked 'running' (killed, or running now) are
        never used; a stage that finished in a run that failed later is. A candidate whose files changed since
        they were recorded is passed over and named in `refused` (the stage then runs again, saying why)."""
        for d, rec in self.records:
            if rec.get("status") not in {"complete", "failed"}:
                continue
            for e in rec.get("stages", []):
                if e.get("name") != stage.name or e.get("status") not in {"ok", "reused"} or e.get("key") != key:
                    continue
                outputs, reports = e.get("outputs") or {}, e.get("reports") or {}
                if not set(stage.writes) <= set(outputs) or set(reports) != {stage.notebook, stage.html}:
                    continue  # an unfinished record (the run stopped before it was sealed) is not a source
                changed = changed_files(d, {**outputs, **reports})
                if changed:
                    self.refused.setdefault(stage.name, f"the files of run {d.name} changed since they were "
                                                        f"recorded ({', '.join(changed)})")  # the newest says why
                    continue
                return Source(d, e, e.get("reused_from") or d.name, (rec.get("started") or "").replace("T", " ")[:16])
        return None

    def last_depends(self, stage: str) -> dict | None:
        """What the stage depended on in its newest earlier run (to say why it runs again)."""
        for _, rec in self.records:
            for e in rec.get("stages", []):
                if e.get("name") == stage and e.get("depends"):
                    return e["depends"]
        return None


# --------------------------------------------------------------------------- comparing runs
def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are kept as values."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(flatten(v, key) if isinstance(v, dict) and v else {key: v})
    return out


def param_changes(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every parameter that differs."""
    a, b = flatten(old), flatten(new)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


@dataclass
class Comparison:
    study: str
    currency: str
    run_a: str
    run_b: str
    params: list[tuple[str, Any, Any]]
    figures: list[dict]  # key, label, kind, a, b, difference
    stages: list[tuple[str, str, str]]  # stage, status in A, status in B

    def table(self) -> str:
        """The comparison as plain text for the terminal."""

        lines = [f"Study {self.study}: run {self.run_a} (A) against run {self.run_b} (B)", "",
                 "Parameters changed:" if self.params else "Parameters changed: none"]
        w = max((len(k) for k, _, _ in self.params), default=0)
        lines += [f"  {k:<{w}}  {_short(a)}  ->  {_short(b)}" for k, a, b in self.params]
        lines += ["", "Headline figures:"]
        rows = [(f["label"], format_figure(f["a"], f["kind"], self.currency),
                 format_figure(f["b"], f["kind"], self.currency),
                 format_figure(f["difference"], f["kind"], self.currency, signed=True)) for f in self.figures]
        header = ("figure", "A", "B", "B - A")
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
        for r in [header] + rows:
            lines.append("  " + r[0].ljust(widths[0]) + "  " + "  ".join(x.rjust(widths[i + 1])
                                                                       for i, x in enumerate(r[1:])))
        return "\n".join(lines)


def _short(v: Any) -> str:
    text = "(not set)" if v is None else str(v)
    return text if len(text) <= 60 else text[:57] + "..."


def compare(run_a: Path, run_b: Path) -> Comparison:
    """Parameters changed and headline figures side by side between two runs of a study."""

    rec_a, rec_b = record(run_a), record(run_b)
    if rec_a is None or rec_b is None:
        raise ParamError(f"{run_a if rec_a is None else run_b} has no run record (run.json): not a run folder.")
    fa = {f.key: f for f in figures(run_a)}
    fb = {f.key: f for f in figures(run_b)}
    rows = []
    for key in list(fa) + [k for k in fb if k not in fa]:
        f = fa.get(key) or fb[key]
        a = fa[key].value if key in fa else None
        b = fb[key].value if key in fb else None
        rows.append({"key": key, "label": (fb.get(key) or f).label, "kind": f.kind, "a": a, "b": b,
                     "difference": None if a is None or b is None else b - a})
    sa = {e["name"]: e.get("status", "") for e in rec_a.get("stages", [])}
    sb = {e["name"]: e.get("status", "") for e in rec_b.get("stages", [])}
    stages = [(s.name, sa.get(s.name, "–"), sb.get(s.name, "–")) for s in STAGES if s.name in sa or s.name in sb]
    return Comparison(rec_b.get("study", ""), (rec_b.get("params") or {}).get("currency", ""), run_a.name, run_b.name,
                      param_changes(strip_paths(rec_a.get("params") or {}), strip_paths(rec_b.get("params") or {})),
                      rows, stages)


def strip_paths(params: dict) -> dict:
    """A copy of the parameters with every input and key file path reduced to its file name."""

    out = copy.deepcopy(params)
    for spec in (out.get("inputs") or {}).values():
        if isinstance(spec, dict) and isinstance(spec.get("path"), str):
            spec["path"] = _file_name(spec["path"])
    priv = out.get("privacy") or {}
    if isinstance(priv.get("key_file"), str):
        priv["key_file"] = _file_name(priv["key_file"])
    return out


def _file_name(path: str) -> str:
    return path if path.startswith("example://") else Path(path).name


# --------------------------------------------------------------------------- locating runs
def study_folder(study: str, reports_dir: Path) -> Path:
    """reports/<study>, or the study named in a params file given instead of a name."""
    p = Path(study)
    candidates = []
    if p.suffix in {".yaml", ".yml"} and p.is_file():
        study = load_study(p, check_files=False).study
        candidates.append(project_root(p) / "reports" / study)
    folder = reports_dir / study
    if not folder.is_dir():
        folder = next((c for c in candidates if c.is_dir()), folder)
    if not folder.is_dir():
        raise ParamError(f"No runs of study {study!r} in {reports_dir} (looked for {folder}). Run it first with "
                         "`cvlib run params/<study>.yaml`, or give --reports-dir.")
    return folder


def find_run(folder: Path, run: str | None) -> Path:
    """A run folder by id (or 'latest'); without one, the latest complete run."""
    if run in (None, "latest"):
        complete = Runs(folder).verified()
        if not complete:
            raise ParamError(f"Study folder {folder} has no complete run whose files are intact.")
        return complete[0][0]
    if Path(run).name != run or run in {".", ".."} or "\\" in run or "\x00" in run:
        raise ParamError(f"{run!r} is not a run of {folder.name}: name a run by its id (a folder name such as "
                         "20240101-120000), never a path.")
    d = folder / run
    if not d.is_dir() or record(d) is None:
        names = ", ".join(d.name for d, _ in Runs(folder).records[:8])
        raise ParamError(f"No run {run!r} in {folder}. Runs (newest first): {names or 'none'}.")
    return d


def two_newest(folder: Path) -> tuple[Path, Path]:
    """The two newest complete runs, older first."""
    complete = Runs(folder).verified()
    if len(complete) < 2:
        raise ParamError(f"Study folder {folder} has {len(complete)} complete run(s); comparing needs two "
                         "(or name the runs: cvlib compare STUDY RUN_A RUN_B).")
    return complete[1][0], complete[0][0]


# --------------------------------------------------------------------------- the client package
def package(run_dir: Path, out: Path | None = None, pages_dir: Path | None = None) -> Path:
    """One zip of what the client gets from a complete run: the HTML reports (index and every stage, from
    `pages_dir`: the client's rendering), the target lists, the playbook and the quarantine file. No parquet,
    notebooks, run record or parameters with local paths."""
    rec = record(run_dir)
    if rec is None or rec.get("status") != "complete" or not (run_dir / "index.html").is_file():
        status = "no run record" if rec is None else f"status {rec.get('status')!r}" + (
            "" if (run_dir / "index.html").is_file() else ", no index.html")
        raise ParamError(f"{run_dir} is not a complete run ({status}): only complete runs are packaged. "
                         "Rerun the study, or name a complete run.")
    changed = tampered(run_dir, rec)
    if changed:
        raise ParamError(f"{run_dir}: {', '.join(changed)} changed since the run was completed (sha256 differs from "
                         "run.json), so it is not packaged. Rerun the study for a clean copy.")
    pages_dir = pages_dir or run_dir
    source = {f: pages_dir / f for f in report_pages(pages_dir)}
    source |= {p.name: p for p in sorted(pages_dir.glob(f"*{TABLES_SUFFIX}"))}  # every row of the cut long tables
    source |= {f: run_dir / f for f in CLIENT_FILES if (run_dir / f).exists()}
    files = list(source)
    out = out or run_dir.parent / f"{rec['study']}-{run_dir.name}.zip"
    prefix = f"{rec['study']}-{run_dir.name}/"
    manifest = [f"Customer value study {rec['study']} for {rec.get('client', '')}, run {run_dir.name}.",
                "Open index.html first.", "", "file  bytes  sha256"]
    manifest += [f"{f}  {source[f].stat().st_size}  {io.sha256_file(source[f])}" for f in files]

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(source[f], prefix + f)
            z.writestr(prefix + "MANIFEST.txt", "\n".join(manifest) + "\n")

    return io._atomic(Path(out), write)


def project_root(params_file: Path) -> Path:
    """The nearest folder above the params file holding notebooks/ (so params/x.yaml and
    reports/<study>/<run>/params.yaml both find it), else the working folder."""
    for cand in params_file.resolve().parents:
        if (cand / "notebooks").is_dir():
            return cand
    return Path.cwd()
