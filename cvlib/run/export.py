"""A complete run as the deliverables a consultant hands over: the client's rendering printed to PDF by headless
Chromium (A4, the reports' print style), and a slide deck (python-pptx) whose numbers come from the run's files and
whose figures are the reports' own images, in the study's language."""
from __future__ import annotations

import base64
import io as _io
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from bs4 import BeautifulSoup

from cvlib import i18n, io
from cvlib.analysis import rfm
from cvlib.errors import ParamError
from cvlib.run import summary
from cvlib.run.executive import next_steps, plan_sentence, plan_table, target_table
from cvlib.stages import html_of, report_pages

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
EXPORT_FOLDER = "export"
# (stage, section anchor, title key): the slides that show a report's figure, in the deck's order
FIGURE_SLIDES = (("rfm", "value_concentration", "deck.concentration"), ("clv", "probabilistic_models", "deck.clv"),
                 ("value", "profitability", "deck.value"), ("drivers", "what_drives_churn", "deck.drivers"))


def browser() -> str:
    """The headless browser that prints the PDF (Debian's chromium), or a message saying how to install one."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise ParamError("cvlib export --pdf prints the reports with headless Chromium, which is not installed: "
                     "apt-get install chromium (Debian/Ubuntu), or install Google Chrome, then export again.")


def print_pdf(html: Path, out: Path, exe: str | None = None) -> Path:
    """One HTML page printed to PDF by headless Chromium (the page's print style: A4, tables fitted)."""
    exe = exe or browser()
    with tempfile.TemporaryDirectory(prefix="cvlib-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer", "--no-first-run",
               f"--user-data-dir={profile}", f"--print-to-pdf={out}", html.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if done.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
        raise ParamError(f"Chromium could not print {html} to PDF (exit {done.returncode}): "
                         f"{done.stderr.strip()[-300:]}")
    return out


def export_pdf(pages_dir: Path, out_dir: Path) -> list[Path]:
    """Every page of a rendering (the index, the executive summary, the stage reports in run order) as a PDF in
    out_dir."""
    exe = browser()
    out_dir.mkdir(parents=True, exist_ok=True)
    return [print_pdf(pages_dir / n, out_dir / f"{Path(n).stem}.pdf", exe) for n in report_pages(pages_dir)]


# --------------------------------------------------------------------------- the deck's content
def run_facts(run_dir: Path) -> dict[str, Any]:
    """What the deck says about the run: study, client, currency, language (from the run's own parameters)."""
    params = summary.run_params(run_dir)
    rec = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    return {"study": rec.get("study", params.get("study", "")), "client": params.get("client") or rec.get("client", ""),
            "currency": params.get("currency", ""), "language": summary.run_language(run_dir), "run": run_dir.name}


def section_image(page: Path, anchor: str) -> bytes | None:
    """The first figure (PNG) of a report's section, found by the section's stable anchor; None when absent."""
    if not page.is_file():
        return None
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    start = soup.find(id=anchor)
    if start is None:
        return None
    for el in start.find_all_next(["img", "a"]):
        if el.name == "a" and "cvlib-anchor" in (el.get("class") or []):
            return None  # the next section began before any figure
        src = el.get("src", "") if el.name == "img" else ""
        if src.startswith("data:image/png;base64,"):
            return base64.b64decode(src.split(",", 1)[1])
    return None


def segment_table(run_dir: Path, currency: str) -> pd.DataFrame | None:
    """Customers, revenue and their shares per named segment, largest revenue first."""
    scores = io.read_stage(run_dir, "rfm.parquet", optional=True)
    if scores is None or "segment" not in scores.columns:
        return None
    g = rfm.segment_table(scores).sort_values("revenue", ascending=False)  # the RFM report's own table
    return pd.DataFrame({i18n.label("segment"): [i18n.name(str(s)) for s in g["segment"]],
                         i18n.label("customers"): [f"{n:,}" for n in g["customers"]],
                         i18n.label("share_of_customers"): [i18n.pct(v, 0) for v in g["share_of_customers"]],
                         i18n.label("share_of_revenue"): [i18n.pct(v, 0) for v in g["share_of_revenue"]]})


def deck_slides(run_dir: Path, pages_dir: Path, facts: dict[str, Any]) -> list[dict[str, Any]]:
    """The deck as data: a title and a body (bullets, a table or an image) per slide, in the study's language."""
    cur = facts["currency"]
    head = summary.headline(run_dir, cur)
    slides: list[dict[str, Any]] = [
        {"title": i18n.t("deck.title", client=facts["client"]),
         "bullets": [i18n.t("deck.pair", label=label, value=value) for label, value in head[:3] + head[-1:]]
         + [i18n.t("deck.subtitle", study=facts["study"], run=facts["run"])]},
        {"title": i18n.t("deck.headline"),
         "table": pd.DataFrame(head,
                               columns=[i18n.t("deck.figure"), i18n.t("deck.value_col")])},
        {"title": i18n.t("deck.findings"), "bullets": [s for s, _ in summary.findings(run_dir, cur)][:7]},
    ]
    for stage, anchor, key in FIGURE_SLIDES:
        png = section_image(pages_dir / html_of(stage), anchor)
        if png is not None:
            slides.append({"title": i18n.t(key), "image": png})
        if stage == "rfm" and (seg := segment_table(run_dir, cur)) is not None:
            slides.append({"title": i18n.t("deck.segments"), "table": seg})
    if (plan := plan_table(run_dir, cur)) is not None:
        slides.append({"title": i18n.t("deck.plan"), "table": plan, "note": plan_sentence(run_dir, cur)})
    png = section_image(pages_dir / html_of("strategy"), "budget_allocation")
    if png is not None:
        slides.append({"title": i18n.t("deck.plan_figure"), "image": png})
    if (targets := target_table(run_dir)) is not None:
        slides.append({"title": i18n.t("deck.targets"), "table": targets, "note": i18n.t("deck.targets_note")})
    slides.append({"title": i18n.t("deck.next_steps"), "bullets": next_steps()})
    return slides


# --------------------------------------------------------------------------- the deck as a file
def _add_table(slide: Any, table: pd.DataFrame, top: float) -> None:
    from pptx.util import Inches, Pt

    rows = min(len(table), 14) + 1  # a slide shows the first rows; the full tables are in the xlsx and reports
    shape = slide.shapes.add_table(rows, len(table.columns), Inches(0.6), Inches(top), Inches(12.1),
                                   Inches(0.4 * rows)).table
    for j, col in enumerate(table.columns):
        shape.cell(0, j).text = str(col)
    for i, values in enumerate(table.head(rows - 1).itertuples(index=False), start=1):
        for j, v in enumerate(values):
            shape.cell(i, j).text = str(v)
    for cell in (shape.cell(i, j) for i in range(rows) for j in range(len(table.columns))):
        for par in cell.text_frame.paragraphs:
            par.font.size = Pt(14 if rows < 9 else 12)


def _add_picture(slide: Any, png: bytes, box: tuple[float, float] = (12.1, 5.5)) -> None:
    """A figure as large as fits the slide's body (inches), its proportions kept, centred."""
    from PIL import Image
    from pptx.util import Inches

    w, h = Image.open(_io.BytesIO(png)).size
    scale = min(box[0] / w, box[1] / h)
    left = (13.333 - w * scale) / 2
    slide.shapes.add_picture(_io.BytesIO(png), Inches(left), Inches(1.55), Inches(w * scale), Inches(h * scale))


def _add_slide(prs: Any, spec: dict[str, Any]) -> None:
    from pptx.enum.text import PP_ALIGN
    from pptx.util import Inches, Pt

    slide = prs.slides.add_slide(prs.slide_layouts[5])  # title only
    title = slide.shapes.title  # the layout is drawn for 4:3: stretched over the 16:9 slide
    title.left, title.top, title.width, title.height = Inches(0.6), Inches(0.35), Inches(12.1), Inches(1.0)
    title.text = spec["title"]
    title.text_frame.paragraphs[0].font.size = Pt(30)
    title.text_frame.paragraphs[0].alignment = PP_ALIGN.LEFT
    if "bullets" in spec:
        box = slide.shapes.add_textbox(Inches(0.7), Inches(1.6), Inches(11.9), Inches(5.4)).text_frame
        box.word_wrap = True
        for i, text in enumerate(spec["bullets"]):
            par = box.paragraphs[0] if i == 0 else box.add_paragraph()
            par.text, par.font.size = f"• {text}", Pt(18)
            par.space_after = Pt(10)
    if "table" in spec:
        _add_table(slide, spec["table"], 1.6)
    if "image" in spec:
        _add_picture(slide, spec["image"])
    if spec.get("note"):
        box = slide.shapes.add_textbox(Inches(0.7), Inches(6.6), Inches(11.9), Inches(0.7)).text_frame
        box.word_wrap = True
        box.paragraphs[0].text, box.paragraphs[0].font.size = spec["note"], Pt(14)


def export_pptx(run_dir: Path, pages_dir: Path, out: Path) -> Path:
    """The run as a 16:9 slide deck in the study's language (`deck_slides`), written atomically."""
    from pptx import Presentation
    from pptx.util import Inches

    facts = run_facts(run_dir)
    with i18n.speaking(facts["language"]):
        slides = deck_slides(run_dir, pages_dir, facts)
    prs = Presentation()
    prs.slide_width, prs.slide_height = Inches(13.333), Inches(7.5)
    for spec in slides:
        _add_slide(prs, spec)
    return io._atomic(out, lambda tmp: prs.save(str(tmp)))


def export(run_dir: Path, pages_dir: Path, pdf: bool, pptx: bool) -> list[Path]:
    """The run's PDFs and/or deck under `<run>/export/` (files named after the study and the run)."""
    out_dir = run_dir / EXPORT_FOLDER
    written: list[Path] = []
    if pptx:
        out_dir.mkdir(parents=True, exist_ok=True)
        written.append(export_pptx(run_dir, pages_dir, out_dir / f"{run_facts(run_dir)['study']}-{run_dir.name}.pptx"))
    if pdf:
        written += export_pdf(pages_dir, out_dir / "pdf")
    return written
