"""The CDNOW reports, in English and in Chinese, opened in a real browser (headless Chromium from Debian's
`chromium` package, driven by Playwright without downloading a browser). Screenshots of every page are saved
into the test's temporary folder for a person to look at (the path is printed)."""
from __future__ import annotations

import base64
import io as bytes_io
import os
import re
import shutil
import warnings
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from cvlib.run import pages
from cvlib.stages import report_pages
from tests.printing import a4_problems

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# skipped without Chromium, except under CI, where .ci/run installs it and a missing browser fails the tests
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                 reason="needs Debian's chromium package (apt-get install chromium)")]

BAD_TEXT = re.compile(r"Traceback \(most recent call last\)|\b\w*Warning\b|\b[A-Z]\w*Error: |findfont|"
                      r"Glyph \d+|site-packages|/tmp/|Exception\b")
CJK = re.compile(r"[\u4e00-\u9fff]")

CHECK_PAGE = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > width + 1 && !el.closest('.jp-OutputArea-output, pre, details')) {
      wide.push(el.tagName + '.' + el.className + ' ' + Math.round(r.right));
    }
  }
  const images = [...document.images].map(i => ({src: i.src.slice(0, 30), ok: i.complete && i.naturalWidth > 0}));
  const links = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'));
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  return {wide, images, links, ids, scroll: document.documentElement.scrollWidth, width,
          text: document.body.innerText,
          headings: [...document.querySelectorAll('h1, h2')].map(h => h.innerText),
          tables: [...document.querySelectorAll('table')].map(t => t.innerText.slice(0, 400))};
}"""


def open_pages(run: Path, shots: Path) -> dict[str, dict]:
    """Every HTML page of the run as the browser shows it, with the requests it tried and its console errors."""
    from playwright.sync_api import sync_playwright

    pages = ["index.html"] + sorted(p.name for p in run.glob("0*.html"))
    seen: dict[str, dict] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for name in pages:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            requests, errors = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def route(r):
                if not r.request.url.startswith(("file:", "data:", "about:")):
                    requests.append(r.request.url)
                    return r.abort()
                return r.continue_()

            page.route("**/*", route)
            page.goto((run / name).as_uri(), wait_until="load")
            info = page.evaluate(CHECK_PAGE)
            page.screenshot(path=str(shots / f"{run.parent.name}-{name}.png"), full_page=True)
            page.close()
            seen[name] = {**info, "requests": requests, "errors": errors}
        browser.close()
    return seen


def check_pages(run: Path, seen: dict[str, dict]) -> None:
    ids = {name: set(info["ids"]) for name, info in seen.items()}
    for name, info in seen.items():
        assert info["requests"] == [], (name, info["requests"])
        assert info["errors"] == [], (name, info["errors"])
        assert info["scroll"] <= info["width"] + 1 and info["wide"] == [], (name, info["wide"][:5])
        assert info["images"] and all(i["ok"] for i in info["images"]) or name == "index.html", name
        bad = BAD_TEXT.findall(info["text"])
        assert not bad, (name, bad[:5])
        for href in info["links"]:
            u = urlparse(href)
            assert u.scheme in ("", "file"), (name, href)
            target = unquote(u.path) or name
            assert (run / target).exists(), (name, href)
            if u.fragment:
                # as browsers do: the fragment as written, else percent-decoded (nbconvert's heading ids are encoded)
                assert {u.fragment, unquote(u.fragment)} & ids.get(target, set()), (name, href)


def figure_title_band(html: str) -> np.ndarray:
    """The top band (the title) of the first figure of a report, as grey levels."""
    from bs4 import BeautifulSoup
    from PIL import Image

    src = BeautifulSoup(html, "html.parser").select_one(".jp-OutputArea-output img")["src"]
    data = src.split("base64,", 1)[1]
    img = np.asarray(Image.open(bytes_io.BytesIO(base64.b64decode(data))).convert("L"), dtype=float)
    return img[:40]


def test_english_reports_in_a_browser(example_run, tmp_path):
    run = example_run("cdnow").run_dir
    seen = open_pages(run, tmp_path)
    print(f"screenshots: {tmp_path}")
    check_pages(run, seen)
    assert "Headline figures" in seen["index.html"]["text"]
    for name, info in seen.items():
        if name != "index.html":
            assert "Study index" in info["text"] and "Contents" in info["text"], name  # header and contents


def test_chinese_reports_in_a_browser_without_box_glyphs(example_run, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from cvlib import i18n, io, numbering, plots, theme
    from cvlib.analysis import cleaning

    res = example_run("cdnow_zh")
    assert res.ok
    run = res.run_dir
    seen = open_pages(run, tmp_path)
    print(f"screenshots: {tmp_path}")
    check_pages(run, seen)
    for name, info in seen.items():
        for h in info["headings"]:
            assert CJK.search(h), (name, h)
        for t in info["tables"]:
            assert CJK.search(t) or not t.strip(), (name, t[:80])  # (tables in closed <details> show no text)
    assert "核心数据" in seen["index.html"]["text"] and "研究总览" in seen["02_rfm.html"]["text"]
    # pixel test: the first figure of the cleaning report (monthly activity, its title in Chinese) drawn again
    # here from the run's data, once with the theme (CJK fallback) and once with DejaVu Sans alone (which
    # draws every Chinese character as a box): the report's title must be the first, not the second
    report_band = figure_title_band((run / "01_cleaning.html").read_text(encoding="utf-8"))
    monthly = cleaning.monthly_activity(io.read_stage(run, "transactions_clean.parquet"))
    i18n.use("zh")
    bands = {}
    for font in ("theme", "boxes"):
        theme.use_theme()
        if font == "boxes":
            plt.rcParams["font.family"] = ["DejaVu Sans"]
        numbering.restart()
        fig = plots.monthly_activity(monthly, "CNY")
        buf = bytes_io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DejaVu Sans warns about every missing glyph
            fig.savefig(buf, format="png", bbox_inches="tight")  # as the notebook's inline backend saves
        bands[font] = np.asarray(Image.open(buf).convert("L"), dtype=float)[:40]
    i18n.use("en")
    theme.use_theme()
    assert bands["theme"].shape == report_band.shape
    to_theme = np.abs(report_band - bands["theme"]).mean()
    to_boxes = np.abs(report_band - bands["boxes"]).mean()
    assert np.abs(bands["theme"] - bands["boxes"]).mean() > 1.0  # the two renderings differ visibly
    assert to_theme < 0.2 * to_boxes, (to_theme, to_boxes)


MARK_CJK = """() => {
  let n = 0;
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].filter(c => c.nodeType === 3).map(c => c.textContent).join('');
    const cjk = (own.match(/[\\u2e80-\\u9fff\\uff00-\\uffef]/g) || []).length;
    if (cjk && el.checkVisibility()) { el.setAttribute('data-cjk', cjk); n++; }
  }
  return n;
}"""


def cjk_fonts_used(browser, page_html: Path, limit: int = 150) -> list[tuple[int, list[dict]]]:
    """For the (first `limit`) visible elements whose own text holds CJK characters: how many it holds and the
    fonts Chromium drew the element's text with (DevTools `CSS.getPlatformFontsForNode`)."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(page_html.as_uri(), wait_until="load")
    page.evaluate("document.fonts.ready")
    assert page.evaluate(MARK_CJK) > 0, page_html
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    found = []
    for node in cdp.send("DOM.querySelectorAll", {"nodeId": root, "selector": "[data-cjk]"})["nodeIds"][:limit]:
        n = int(dict(zip(*[iter(cdp.send("DOM.getAttributes", {"nodeId": node})["attributes"])] * 2))["data-cjk"])
        found.append((n, cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]))
    page.close()
    return found


def test_chinese_pages_need_no_system_cjk_font(example_run, tmp_path):
    """With a font configuration holding only DejaVu (no CJK font at all), Chromium draws every Chinese
    character of every page of the CDNOW-zh run (consultant's and client's) with the font embedded in the page;
    the same page with the embedded font taken out has nothing to draw them with."""
    import matplotlib
    from playwright.sync_api import sync_playwright

    from cvlib import fonts

    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    conf = tmp_path / "fonts.conf"
    conf.write_text(f'<?xml version="1.0"?><fontconfig><dir>{dejavu}</dir><cachedir>{tmp_path / "fc"}</cachedir>'
                    "</fontconfig>", encoding="utf-8")
    env = {**os.environ, "FONTCONFIG_FILE": str(conf)}
    if shutil.which("fc-list"):
        import subprocess

        listed = subprocess.run(["fc-list", ":lang=zh"], env=env, capture_output=True, text=True).stdout
        assert listed.strip() == "", listed[:200]
    run = example_run("cdnow_zh").run_dir
    pages.write_client_rendering(run)
    names = report_pages(run)
    assert "summary.html" in names and len(names) >= 9
    stripped = tmp_path / "stripped.html"
    stripped.write_text(fonts.EMBEDDED.sub("", (run / "03_clv.html").read_text(encoding="utf-8")), encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], env=env)
        for page_html in [run / n for n in names] + [run / "client" / n for n in names]:
            for n, used in cjk_fonts_used(browser, page_html):
                embedded = sum(f["glyphCount"] for f in used if f["isCustomFont"] and "CJK" in f["postScriptName"])
                assert embedded >= n, (page_html.name, n, used)
        control = cjk_fonts_used(browser, stripped)
        browser.close()
    assert all(not any(f["isCustomFont"] for f in used) for _, used in control)
    assert {f["familyName"] for _, used in control for f in used} <= {"DejaVu Sans", "DejaVu Sans Mono",
                                                                      "DejaVu Serif"}, control[:3]


def test_client_renderings_fit_a4_and_never_show_scientific_notation(example_run, tmp_path):
    """Every page of the CDNOW and CDNOW-zh client renderings, printed at A4: no table, figure or output wider
    than the page, and no number written as 1.2e-05 (the agency's pages: test_runner's end-to-end run). A planted
    40-column table is caught."""
    wide = tmp_path / "client" / "wide.html"
    wide.parent.mkdir()
    cells = "".join(f"<td>column_{i}_1,234,567.89</td>" for i in range(40))
    wide.write_text(f"<html><body><table><tr>{cells}</tr></table><p>5.289e-05</p></body></html>", encoding="utf-8")
    planted = a4_problems([wide.parent])
    assert len(planted) == 1 and len(next(iter(planted.values()))[1]) == 2, planted  # too wide, and 5.289e-05
    renderings = [pages.write_client_rendering(example_run(n).run_dir).parent for n in ("cdnow", "cdnow_zh")]
    assert all(len(list(c.glob("*.html"))) >= 9 for c in renderings)
    assert a4_problems(renderings) == {}
