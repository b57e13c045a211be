"""Whether a stage can be reused from an earlier run: digests of everything its outputs and report depend on
(notebook, cvlib code, library versions, parameter sections, files read, input tables), and the copy of a
reused stage into the new run."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
from html import escape
from pathlib import Path
from typing import Any

from cvlib import fonts, i18n, io
from cvlib.run.history import Source
from cvlib.run.record import StageRun
from cvlib.stages import Stage, section


def sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def digest(obj: Any) -> str:
    return sha(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str))


@functools.cache
def codedigest() -> str:
    """sha256 over cvlib's own source and templates: a changed cvlib reruns every stage."""
    root = Path(__file__).resolve().parents[1]  # the cvlib package
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in {".py", ".j2", ".tpl", ".css", ".json", ".yaml", ".html"}:
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def stage_depends(stage: Stage, params: dict, run_dir: Path, notebook: Path, tables: dict[str, str],
                  context: dict) -> dict:
    """Digests of everything the stage's outputs and report depend on; equal digests mean the stage
    would produce the same result, so an earlier run's can be reused."""
    return {
        "notebook": sha(notebook.read_bytes()),
        "cvlib": codedigest(),
        "context": digest(context),  # library versions, rendering options, pseudonym key id
        "params": {sec: digest(section(params, sec)) for sec in stage.all_sections},
        "files": {f: io.sha256_file(run_dir / f) for f in stage.inputs},
        "tables": {t: tables.get(t) for t in stage.tables},
    }


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


REUSED_MARK = re.compile(r"<!-- cvlib:reused -->.*?<!-- /cvlib:reused -->", re.S)


def reused_banner(run_id: str, when: str, language: str = "en") -> str:
    """The note at the top of a reused stage report (the client's rendering leaves it out)."""

    return (f"<!-- cvlib:reused --><div class='cvlib-reused' style='border-left:4px solid #2e86c1;"
            f"background:#eef6fb;padding:6px 12px;margin:8px 0;font-family:system-ui,sans-serif'>"
            f"{escape(i18n.t('runner.reused', language, run=run_id, when=when))}</div><!-- /cvlib:reused -->")


def _copy(src: Path, dst: Path) -> None:
    """A copy of its own (never a hard link: editing an old run must not change this one), made writable."""
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)


def reuse(sr: StageRun, source: Source, run_dir: Path, language: str = "en") -> None:
    """Bring a stage's outputs, notebook and report from an earlier run into run_dir (copies, checked against
    their recorded sha256 when the source was chosen)."""
    s = sr.stage
    for f in source.entry["outputs"]:
        _copy(source.run_dir / f, run_dir / f)
    _copy(source.run_dir / s.notebook, run_dir / s.notebook)
    page = REUSED_MARK.sub("", (source.run_dir / s.html).read_text(encoding="utf-8"))
    page = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + reused_banner(source.origin, source.when, language),
                  page, count=1)
    fonts.write_page(page, run_dir / s.html)
    sr.status, sr.html, sr.reused_from = "reused", s.html, source.origin
    sr.outputs = dict(source.entry["outputs"])
    sr.reason = f"reused from run {source.origin}"
