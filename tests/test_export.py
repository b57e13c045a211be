"""`cvlib export`: the client rendering printed to PDF by headless Chromium and the slide deck, opened and read
back (page counts and size, slide count, the text on each slide against the run's own files)."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil

import pytest

from cvlib import cli, i18n
from cvlib.errors import ParamError
from cvlib.run import export

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJ"
                       "RU5ErkJggg==")
CHROMIUM = shutil.which("chromium")


def page(*parts: str) -> str:
    return "<html><body>" + "".join(parts) + "</body></html>"


def anchor(name: str) -> str:
    return f'<a class="cvlib-anchor" id="{name}"></a><h2>{name}</h2>'


def img() -> str:
    return f'<img alt="Figure" src="data:image/png;base64,{base64.b64encode(PNG).decode()}">'


def test_a_sections_figure_is_found_by_its_anchor_and_never_taken_from_the_next_section(tmp_path):
    p = tmp_path / "r.html"
    p.write_text(page(anchor("first"), "<p>no figure here</p>", anchor("second"), "<div>", img(), "</div>"))
    assert export.section_image(p, "second") == PNG
    assert export.section_image(p, "first") is None  # the figure belongs to the next section
    assert export.section_image(p, "absent") is None
    assert export.section_image(tmp_path / "missing.html", "second") is None


def test_pdf_without_a_browser_says_how_to_install_one(monkeypatch):
    monkeypatch.setattr(export.shutil, "which", lambda name: None)
    with pytest.raises(ParamError, match="apt-get install chromium"):
        export.browser()


def test_only_complete_runs_are_exported(tmp_path):
    run = tmp_path / "reports" / "s" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"study": "s", "status": "failed"}))
    assert cli.main(["export", "s", run.name, "--pptx", "--reports-dir", str(tmp_path / "reports")]) == 2


def slides_text(path) -> list[list[str]]:
    from pptx import Presentation

    out = []
    for s in Presentation(str(path)).slides:
        texts = [s.shapes.title.text]
        for sh in s.shapes:
            if sh.has_text_frame and sh != s.shapes.title:
                texts.append(sh.text_frame.text)
            if sh.has_table:
                texts += [c.text for row in sh.table.rows for c in row.cells]
            if sh.shape_type == 13:  # a picture
                texts.append("<picture>")
        out.append(texts)
    return out


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="Debian's chromium is not installed (apt-get install chromium); CI installs it")
@pytest.mark.parametrize("name", ["cdnow", "cdnow_zh"])
def test_a_complete_run_exports_a_deck_and_pdfs_that_read_back(example_run, name):
    from pypdf import PdfReader

    run = example_run(name).run_dir
    assert cli.main(["export", name, run.name, "--reports-dir", str(run.parent.parent)]) == 0
    deck = run / "export" / f"{name}-{run.name}.pptx"
    slides = slides_text(deck)
    assert 10 <= len(slides) <= 15
    assert all(s[0].strip() and len(s) > 1 for s in slides), "every slide has a title and a body"
    assert sum("<picture>" in s for s in slides) >= 4  # concentration, CLV, profitability, drivers, budget
    facts = export.run_facts(run)
    assert facts["client"] in slides[0][0]
    summary = json.loads((run / "cleaning.json").read_text())["summary"]
    body = "\n".join(t for s in slides for t in s)
    assert f"{summary['customers']:,}" in body  # the headline's customers, from the run's own file
    plan = json.loads((run / "strategy.json").read_text())
    with i18n.speaking(facts["language"]):  # money as the study's language writes it (¥1.48万 in Chinese)
        assert i18n.money(plan["net_value"], facts["currency"], decimals=0) in body
    if name == "cdnow_zh":  # the deck speaks the study's language
        assert all(re.search(r"[\u4e00-\u9fff]", s[0]) for s in slides), [s[0] for s in slides]
    pdfs = sorted((run / "export" / "pdf").glob("*.pdf"))
    assert [p.stem for p in pdfs][:1] == ["01_cleaning"] and (run / "export" / "pdf" / "index.pdf").is_file()
    assert (run / "export" / "pdf" / "summary.pdf").is_file()  # the executive summary, as its own PDF
    for p in pdfs:
        reader = PdfReader(str(p))
        assert len(reader.pages) >= 1
        box = reader.pages[0].mediabox
        assert (round(float(box.width)), round(float(box.height))) == (595, 842), f"{p.name} is not A4"
    index_text = PdfReader(str(run / "export" / "pdf" / "index.pdf")).pages[0].extract_text()
    assert f"{summary['customers']:,}" in index_text


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cdnow", "cdnow_zh"])
def test_the_executive_summary_states_the_runs_own_numbers(example_run, name):
    """summary.html (in both renderings and the client package): the headline figures, the findings, the one
    CLV the study uses with its mean and total from clv.parquet, the plan's net value from strategy.json with
    the target list's customers, and the next steps; linked from the index."""
    import zipfile

    import pandas as pd
    from bs4 import BeautifulSoup

    from cvlib.run import pages

    run = example_run(name).run_dir
    facts = export.run_facts(run)
    html = (run / "summary.html").read_text(encoding="utf-8")
    text = BeautifulSoup(html, "html.parser").get_text(" ")
    assert 'href="summary.html"' in (run / "index.html").read_text(encoding="utf-8")
    clv = pd.read_parquet(run / "clv.parquet")["clv"]
    plan = json.loads((run / "strategy.json").read_text())
    targets = pd.read_csv(run / "targets.csv", dtype=str, encoding="utf-8-sig")
    with i18n.speaking(facts["language"]):
        cur = facts["currency"]
        for figure in (i18n.money(clv.mean(), cur), i18n.money(clv.sum(), cur),
                       i18n.money(plan["net_value"], cur, decimals=0), f"{len(targets):,}"):
            assert figure in text, figure
        assert all(step in text for step in export.next_steps())
        assert i18n.t("exec.clv") in text and i18n.t("exec.plan") in text
    assert sum(a["customers_targeted"] for a in plan["allocation"]) == len(targets)
    client = pages.write_client_rendering(run).parent
    assert pages.consultant_content((client / "summary.html").read_text(encoding="utf-8")) == []
    assert cli.main(["package", name, run.name, "--reports-dir", str(run.parent.parent)]) == 0
    with zipfile.ZipFile(next(run.parent.glob(f"{name}-{run.name}.zip"))) as z:
        assert f"{name}-{run.name}/summary.html" in z.namelist()
