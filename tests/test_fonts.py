"""The CJK font embedded in report pages (`cvlib.fonts`): only on pages with CJK text, holding exactly the
characters the page shows, kept when a page only loses text, replaced when it gains some."""
from __future__ import annotations

import base64
import io
import re

from fontTools.ttLib import TTFont

from cvlib import fonts

PAGE = "<html><head><title>t</title></head><body><h1>{}</h1><p>Revenue 1,234 USD</p></body></html>"


def embedded_font(html: str) -> TTFont:
    data = re.search(r"base64,([A-Za-z0-9+/=]+)\) format\(\"woff\"\)", html).group(1)
    return TTFont(io.BytesIO(base64.b64decode(data)))


def test_a_page_without_cjk_text_is_left_as_it_is():
    page = PAGE.format("Customer value")
    assert fonts.embed(page) == page


def test_the_subset_holds_the_page_characters_and_sits_in_the_head():
    page = fonts.embed(PAGE.format("客户生命周期价值（CLV）"))
    assert page.count(f'id="{fonts.MARK}"') == 1 and page.index(fonts.MARK) < page.index("</head>")
    font = embedded_font(page)
    cmap = font.getBestCmap()
    assert {chr(c) for c in cmap if c > 0x2E80} == set("客户生命周期价值（）")
    assert font.flavor == "woff" and font["head"].unitsPerEm > 0
    assert f"unicode-range:{fonts.UNICODE_RANGE}" in page  # Latin text keeps the page's own fonts
    assert fonts.embed(page) == page  # written again: the same page


def test_a_face_is_kept_when_the_page_loses_text_and_replaced_when_it_gains():
    full = fonts.embed(PAGE.format("冠军客户 忠诚客户"))
    shorter = fonts.embed(full.replace("忠诚客户", ""))  # a client rendering drops a part
    assert embedded_font(shorter).getBestCmap() == embedded_font(full).getBestCmap()
    longer = fonts.embed(full.replace("冠军客户", "冠军客户 流失风险"))
    assert longer.count(fonts.MARK) == 1
    assert {"流", "失", "风", "险"} <= {chr(c) for c in embedded_font(longer).getBestCmap()}


def test_full_width_punctuation_and_kana_are_cjk_but_latin_is_not():
    assert fonts.cjk_characters("a（b）、c。カ 한 é ü") == "".join(sorted("（）、。カ한"))
