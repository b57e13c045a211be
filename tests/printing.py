"""Pages as printed on A4 in headless Chromium (Debian's `chromium`): what sticks out of the page and which numbers
are written in scientific notation (tests/test_browser.py, and the agency's end-to-end run in test_runner.py)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
A4_CHECK = """() => {
  const width = document.documentElement.clientWidth, wide = [];
  for (const el of document.querySelectorAll('table, img, pre, svg, .jp-OutputArea-output')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > width + 1) wide.push(el.tagName + ' ' + Math.round(r.right) + 'px');
  }
  return {width, scroll: document.documentElement.scrollWidth, wide, text: document.body.innerText};
}"""
A4_CONTENT_PX = 703  # A4's 210 mm less the print style's 2 x 12 mm margins, at 96 px per inch
SCIENTIFIC = re.compile(r"\b\d+(?:\.\d+)?[eE][+-]?\d+\b")


def print_layout(browser, page_html: Path) -> dict:
    """The page as printed on A4 (print media, the A4 content width): what sticks out and the visible text."""
    page = browser.new_page(viewport={"width": A4_CONTENT_PX, "height": 1000})
    page.emulate_media(media="print")
    page.goto(page_html.as_uri(), wait_until="load")
    info = page.evaluate(A4_CHECK)
    page.close()
    return info


def a4_problems(folders: list[Path]) -> dict[str, tuple[int, list[str]]]:
    """For every page of the folders that does not fit A4 or shows a number like 1.2e-05: its scroll width and
    what is wrong (empty when every page is clean)."""
    from playwright.sync_api import sync_playwright

    problems = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for folder in folders:
            for page_html in sorted(folder.glob("*.html")):
                info = print_layout(browser, page_html)
                found = info["wide"] + SCIENTIFIC.findall(info["text"])
                if info["scroll"] > info["width"] + 1 or found:
                    problems[f"{folder.parent.name}/{folder.name}/{page_html.name}"] = (info["scroll"], found[:5])
        browser.close()
    return problems
