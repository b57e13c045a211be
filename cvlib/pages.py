"""The run's own pages (index, run comparison), rendered from Jinja2 templates with autoescaping, so
client text in them is always shown as text."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from cvlib import io, runs

if TYPE_CHECKING:
    from jinja2 import Environment

    from cvlib.runner import RunResult, _Context

TEMPLATES = Path(__file__).parent / "templates" / "pages"
STATUS_TEXT = {"ok": "ran", "reused": "reused", "failed": "failed", "skipped": "not run (an earlier stage failed)",
               "pending": "not run", "running": "running"}


@functools.cache
def environment() -> "Environment":
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True,
                       default_for_string=True), undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def comparison_view(c: runs.Comparison) -> dict:
    """A comparison with its values formatted for a page."""
    from cvlib.summary import format_figure

    figs = []
    for f in c.figures:
        d = f["difference"]
        figs.append({"label": f["label"], "a": format_figure(f["a"], f["kind"], c.currency),
                     "b": format_figure(f["b"], f["kind"], c.currency),
                     "difference": format_figure(d, f["kind"], c.currency, signed=True),
                     "direction": "" if not d else "up" if d > 0 else "down"})
    stages = [(name, STATUS_TEXT.get(a, a), STATUS_TEXT.get(b, b)) for name, a, b in c.stages]
    return {"study": c.study, "run_a": c.run_a, "run_b": c.run_b, "figures": figs, "stages": stages,
            "params": [(k, runs._short(a), runs._short(b)) for k, a, b in c.params]}


def write_compare(c: runs.Comparison, out: Path) -> Path:
    return io.write_text(render("compare.html.j2", comparison=comparison_view(c)), out)


def _count(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def write_index(ctx: "_Context", result: "RunResult", history: runs.Runs, scrub: Callable[[str], str]) -> Path:
    """The run's index.html (and its final run.json): findings and headline figures first, then the stage
    reports (ran or reused, and why), the changes since the previous complete run, and, collapsed, the
    parameters (file names only), the data fingerprint and the package versions."""
    from cvlib import summary
    from cvlib.runner import write_record

    run_dir = result.run_dir
    manifest = write_record(ctx, result, "complete" if result.ok else "failed")
    currency = ctx.study.currency
    headline, findings, error = [], [], ""
    try:
        headline = summary.headline(run_dir, currency)
        rendered = {s.html for s in result.stages if s.html}
        findings = [{"text": t, "link": link if link in rendered else ""} for t, link in summary.findings(run_dir, currency)]
    except Exception as exc:  # the summary must never hide the stage links
        error = str(exc)
    comparison = None
    previous = history.complete()
    if previous:
        comparison = comparison_view(runs.compare(previous[0][0], run_dir))
    stages = [{"title": s.stage.title, "html": s.html, "status": s.status, "status_text": STATUS_TEXT[s.status],
               "reason": s.reason, "error": s.error,
               "seconds": "" if s.status in {"reused", "skipped", "pending"} else f"{s.seconds:.1f} s"}
              for s in result.stages]
    params_yaml = yaml.safe_dump(runs.strip_paths(ctx.study.resolved()), sort_keys=False, allow_unicode=True)
    page = render(
        "index.html.j2", study=ctx.study.study, client=ctx.study.client, run=run_dir.name,
        status=manifest["status"], status_text="complete" if result.ok else "FAILED: not a complete study",
        started=manifest["started"].replace("T", " "), finished=(manifest["finished"] or "").replace("T", " "),
        headline=headline, findings=findings, summary_error=error, stages=stages, comparison=comparison,
        overrides=ctx.overrides, params_yaml=params_yaml,
        inputs=[{"table": f["table"], "file": Path(f["path"]).name, "bytes": f"{f['bytes']:,}", "sha": f["sha256"][:16]}
                for f in ctx.fps],
        counts=[(k.replace("_", " "), _count(v)) for k, v in manifest["row_counts"].items() if k != "notes"],
        versions=list(manifest["versions"].items()))
    return io.write_text(scrub(page), run_dir / "index.html")
