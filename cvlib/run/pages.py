"""The run's own pages (index, run comparison), rendered from Jinja2 templates with autoescaping, so
client text in them is always shown as text."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd
import yaml

from cvlib import fonts, i18n, io, xlsx
from cvlib.report import CLIENT_ROWS, CONSULTANT_CLASS
from cvlib.run import history as runs
from cvlib.run import portfolio, summary
from cvlib.run.monitoring import monitoring_view
from cvlib.run.record import RunContext, RunResult, write_record
from cvlib.run.summary import format_figure
from cvlib.stages import SUMMARY_PAGE, TABLES_SUFFIX, report_pages

if TYPE_CHECKING:
    from jinja2 import Environment


TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "pages"
STATUS = ("ok", "reused", "failed", "skipped", "pending", "running", "not_applicable")


def status_text(status: str) -> str:
    """A stage's status in the report language ('ran', 'reused', ...)."""
    return i18n.t(f"status.{status}") if status in STATUS else status


def reason_text(reason: str) -> str:
    """Why a stage ran or was reused (recorded in English in run.json), in the report language: each part of a
    compound reason ('notebook changed; parameters changed: clv') worded by the catalogue's patterns."""
    return i18n.t("common.list_sep").join(i18n.name(part) for part in (reason or "").split("; ") if part) \
        if i18n.current() != "en" else reason


@functools.cache
def environment() -> "Environment":
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True,
                      default_for_string=True), undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(t=i18n.t, lang=i18n.current)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def comparison_view(c: runs.Comparison) -> dict:
    """A comparison with its values formatted for a page."""

    figs = []
    for f in c.figures:
        d = f["difference"]
        figs.append({"label": f["label"], "a": format_figure(f["a"], f["kind"], c.currency),
                     "b": format_figure(f["b"], f["kind"], c.currency),
                     "difference": format_figure(d, f["kind"], c.currency, signed=True),
                     "direction": "" if not d else "up" if d > 0 else "down"})
    stages = [(i18n.t(f"stages.{name}") if i18n.has(f"stages.{name}") else name, status_text(a), status_text(b))
              for name, a, b in c.stages]
    return {"study": c.study, "run_a": c.run_a, "run_b": c.run_b, "figures": figs, "stages": stages,
            "params": [(k, runs._short(a), runs._short(b)) for k, a, b in c.params]}


def write_compare(c: runs.Comparison, out: Path, scrub: Callable[[str], str] = lambda t: t) -> Path:
    """The comparison page of two runs, pseudonymised by `scrub` like every page."""
    return fonts.write_page(scrub(render("compare.html.j2", comparison=comparison_view(c))), out)


def _count(v: Any) -> str:
    if isinstance(v, bool):
        return i18n.word(v)
    if isinstance(v, float):
        return f"{v:,.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def write_index(ctx: RunContext, result: RunResult, history: runs.Runs, scrub: Callable[[str], str]) -> Path:
    """The run's index.html (and its final run.json): findings and headline figures first, then the stage
    reports (ran or reused, and why), the changes since the previous complete run, and, collapsed, the
    parameters (file names only), the data fingerprint and the package versions; in the study's language."""
    with i18n.speaking(ctx.study.report.language):
        return _write_index(ctx, result, history, scrub)


def _write_index(ctx: RunContext, result: RunResult, history: runs.Runs, scrub: Callable[[str], str]) -> Path:
    run_dir = result.run_dir
    manifest = write_record(ctx, result, "running" if result.ok else "failed")  # 'complete' only once sealed
    finish_stage_pages(ctx, result)
    currency = ctx.study.currency
    headline, findings, error = [], [], ""
    try:
        headline = summary.headline(run_dir, currency)
        rendered = {s.html for s in result.stages if s.html}
        findings = [{"text": t, "link": link if link.split("#")[0] in rendered else ""}
                    for t, link in summary.findings(run_dir, currency)]
    except Exception as exc:  # the summary must never hide the stage links
        error = str(exc)
    monitoring = None
    try:
        m = ctx.study.monitoring
        kpis, source = portfolio.kpi_benchmarks(run_dir, m.kpis) if m.benchmarks == "portfolio" and m.kpis \
            else (m.kpis, "")
        monitoring = monitoring_view(run_dir, history.verified(), kpis, currency, m.history)
        if monitoring is not None:
            monitoring["source"] = source
            io.write_json({"kpis": monitoring["table"].to_dict("records"), "benchmark_source": source or None,
                           "trend": monitoring["trend"].to_dict("records")}, run_dir / "monitoring.json")
    except Exception as exc:  # noqa: BLE001  # monitoring must never hide the stage links
        error = error or str(exc)
    comparison = None
    previous = history.verified()  # a run whose files changed since it was sealed is not compared with
    if previous:
        try:
            comparison = comparison_view(runs.compare(previous[0][0], run_dir))
        except Exception as exc:  # noqa: BLE001  # an unreadable earlier run must never stop this one's index
            error = error or f"run {previous[0][0].name}: {exc}"
    stages = [{"title": i18n.t(f"stages.{s.stage.name}"), "html": s.html, "status": s.status,
               "status_text": status_text(s.status),
               "reason": reason_text(s.reason), "error": s.error,
               "seconds": "" if s.status in {"reused", "skipped", "pending", "not_applicable"}
                   else f"{s.seconds:.1f} s"}
              for s in result.stages]
    params_yaml = yaml.safe_dump(runs.strip_paths(ctx.study.resolved()), sort_keys=False, allow_unicode=True)
    page = render(
        "index.html.j2", study=ctx.study.study, client=ctx.study.client, run=run_dir.name,
        status="complete" if result.ok else "failed",
        status_text=i18n.t("index.complete" if result.ok else "index.failed"),
        started=manifest["started"].replace("T", " "), finished=(manifest["finished"] or "").replace("T", " "),
        headline=headline, findings=findings, summary_page=(run_dir / SUMMARY_PAGE).is_file(), summary_error=error,
        stages=stages, comparison=comparison,
        monitoring=monitoring,
        overrides=ctx.overrides, params_yaml=params_yaml,
        inputs=[{"table": f["table"], "file": Path(f["path"]).name if f["bytes"] is not None else f["path"],
                 "bytes": f"{f['bytes']:,}" if f["bytes"] is not None else "", "sha": f["sha256"][:16]}
                for f in ctx.fps],
        counts=[(i18n.label(k), _count(v)) for k, v in manifest["row_counts"].items() if k != "notes"],
        versions=list(manifest["versions"].items()))
    return fonts.write_page(scrub(page), run_dir / "index.html")


def nav_spec(ctx: RunContext, result: RunResult, i: int, predicted: bool = False) -> dict:
    """What stage `i`'s report header shows besides its own sections: study, client, run, the links to the
    previous and next stage reports, the language and whether it is the client's view. A plain dict, kept in
    the record to tell whether a report already has its header. `predicted`: while the run goes on, every later stage
    that applies counts as
    having a report (a run that stops early has the headers that this got wrong redone at the end)."""
    language = ctx.study.report.language
    shown = [j for j, s in enumerate(result.stages)
             if s.html or j == i or (predicted and j > i and s.status == "pending" and s.stage.applies(ctx.study))]
    pos = shown.index(i) if i in shown else -1
    link = lambda j: {"html": result.stages[j].stage.html,  # noqa: E731
                      "title": i18n.t(f"stages.{result.stages[j].stage.name}", language)}
    return {"language": language, "study": ctx.study.study, "client": ctx.study.client,
            "run": result.run_dir.name, "client_view": False, "stage": result.stages[i].stage.name,
            "prev": link(shown[pos - 1]) if pos > 0 else None,
            "next": link(shown[pos + 1]) if 0 <= pos < len(shown) - 1 else None}


def stage_navigation(html_text: str, nav: dict) -> str:
    """A stage report with the run's header (study, client, run; links to the index and the previous and next
    stage reports, from `nav_spec`), a table of contents of its sections, and, for the client (`--client`),
    without the consultant's notes and without sections left with nothing to show."""
    with i18n.speaking(nav["language"]):
        return _stage_navigation(html_text, nav)


def _stage_navigation(html_text: str, nav: dict) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html_text, "html.parser")
    for old in soup.select(".cvlib-nav, .cvlib-toc"):
        old.decompose()
    if nav["client_view"]:
        _drop_consultant(soup, CONSULTANT_CLASS)
        for banner in soup.select(".cvlib-reused"):  # how the run was made is the consultant's business
            banner.decompose()
    for n, img in enumerate(soup.select(".jp-OutputArea-output img"), 1):  # figures are numbered in order
        img["alt"] = i18n.t("common.figure_number", n=n)
    toc = []
    for cell in soup.select(".jp-MarkdownCell"):
        anchor, head = cell.select_one("a.cvlib-anchor[id]"), cell.find("h2")
        if anchor is not None and head is not None:
            toc.append({"id": anchor["id"], "text": head.get_text().replace("¶", "").strip()})
    snippet = render("stage_nav.html.j2", study=nav["study"], client=nav["client"], run=nav["run"],
                     prev=nav["prev"], next=nav["next"], toc=toc)
    frag = BeautifulSoup(snippet, "html.parser")
    main = soup.find("main") or soup.body
    toc_div = frag.select_one(".cvlib-toc")
    intro = soup.select_one(".jp-MarkdownCell")
    if toc_div is not None:
        toc_div.extract()
        (intro.insert_after(toc_div) if intro is not None else main.insert(0, toc_div))
    main.insert(0, frag)
    if soup.html is not None:
        soup.html["lang"] = "zh-CN" if nav["language"] == "zh" else "en"
    if soup.title is not None:
        soup.title.string = i18n.t(f"stages.{nav['stage']}") + f" - {nav['study']}"
    return str(soup)


def _drop_consultant(soup: Any, css_class: str) -> None:
    """Remove the consultant's notes (and any element marked for the consultant only), then every section (a
    level-2 heading and the cells up to the next one) with no output left."""
    for note in soup.select(f".{css_class}, .{DIAGNOSTIC_CELL}"):
        if note.decomposed:
            continue
        holder = note.find_parent(class_="jp-OutputArea-child") or note
        holder.decompose()
    cells = soup.select("main > .jp-Cell, body > .jp-Cell")
    sections: list[list[Any]] = []
    for cell in cells:
        if "jp-MarkdownCell" in cell.get("class", []) and cell.find("h2") is not None:
            sections.append([cell])
        elif sections:
            sections[-1].append(cell)
    for sec in sections:
        if not any(c.select(".jp-OutputArea-child") for c in sec[1:]):
            for c in sec:
                c.decompose()


#: what marks a page as the consultant's (a note, a run's diagnostics, the parameter dump, a reuse banner)
DIAGNOSTIC_CELL = "celltag_consultant"  # a notebook cell tagged `consultant` (diagnostics: elbow, silhouette, fits)
CONSULTANT_MARKS = (f".{CONSULTANT_CLASS}", ".cvlib-reused", f".{DIAGNOSTIC_CELL}")
CLIENT_FOLDER = "client"


def client_page(html_text: str, workbook: str = "tables.xlsx", tables: dict | None = None) -> str:
    """A report or index as the client reads it: the consultant's notes and marked parts (run ids, stage times
    and reasons, the parameters, fingerprints and versions, reuse banners) left out, sections left empty dropped,
    the table of contents without their entries, and each long table cut to its first rows (`cut_long_tables`:
    every row goes into `tables`, sheet name -> frame, for the page's `workbook`)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html_text, "html.parser")
    _drop_consultant(soup, CONSULTANT_CLASS)
    for banner in soup.select(".cvlib-reused"):
        banner.decompose()
    for link in soup.select('.cvlib-toc a[href^="#"]'):
        if soup.find(id=link["href"][1:]) is None:
            (link.find_parent("li") or link).decompose()
    found = cut_long_tables(soup, workbook)
    if tables is not None:
        tables.update(found)
    return str(soup)


def cut_long_tables(soup: Any, workbook: str) -> dict[str, pd.DataFrame]:
    """Cut every long table of a page (one `cvlib.report.table` gave its rows to) to its first `CLIENT_ROWS` rows,
    with the sentence saying where every row is: sheet 'table 1', 'table 2', ... of `workbook`. Returns those
    sheets (sheet name -> the rows as shown)."""
    out = {}
    for k, carried in enumerate(soup.select("script.cvlib-full-table"), start=1):
        data = json.loads(carried.string or "{}")
        table = carried.find_previous_sibling("table")
        for tr in (table.select("tbody tr")[CLIENT_ROWS:] if table is not None else []):
            tr.decompose()
        more = carried.find_previous_sibling("p", class_="cvlib-more")
        if more is not None:
            more.decompose()
        sheet = f"{data['sheet']} {k}"
        out[sheet] = pd.DataFrame(data["rows"], columns=data["columns"])
        note = soup.new_tag("p", attrs={"class": "cvlib-cut"})
        note.string = data["note"].replace("{file}", workbook).replace("{sheet}", sheet)
        carried.replace_with(note)
    return out


def consultant_content(html_text: str) -> list[str]:
    """What in a page is for the consultant only (empty for a client page)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html_text, "html.parser")
    return [f"{len(found)} x {mark}" for mark in CONSULTANT_MARKS if (found := soup.select(mark))]


def write_client_rendering(run_dir: Path) -> Path:
    """The client's rendering of a run, beside the consultant's: `client/` with the index and every stage report
    made from the consultant's pages (`client_page`), without running anything again, and beside a page whose long
    tables were cut, its workbook of every row (`<page>-tables.xlsx`)."""
    out = run_dir / CLIENT_FOLDER
    out.mkdir(exist_ok=True)
    for old in out.glob(f"*{TABLES_SUFFIX}"):
        old.unlink()
    for page in report_pages(run_dir):
        tables: dict[str, pd.DataFrame] = {}
        workbook = Path(page).stem + TABLES_SUFFIX
        fonts.write_page(client_page((run_dir / page).read_text(encoding="utf-8"), workbook, tables), out / page)
        if tables:
            xlsx.write_xlsx(tables, out / workbook)
    return out / "index.html"


def finish_stage_pages(ctx: RunContext, result: RunResult) -> None:
    """Give every stage report of the run its header, contents and links (reused reports included: they get
    this run's header). Reports the render worker already gave this header are left as they are."""
    for i, sr in enumerate(result.stages):
        if sr.html and (result.run_dir / sr.html).exists():
            nav = nav_spec(ctx, result, i)
            if nav != sr.nav:
                path = result.run_dir / sr.html
                fonts.write_page(stage_navigation(path.read_text(encoding="utf-8"), nav), path)
                sr.nav = nav
