"""The CJK font every report carries with it, so Chinese text never needs a font on the reader's machine.

Figures draw Chinese with the Noto Sans CJK SC font shipped by the `mplfonts` package (`theme.cjk_font`). The
HTML pages embed a subset of the same font holding only the characters the page shows (`embed`): a WOFF face
inside the page, limited by `unicode-range` to CJK code points so Latin text keeps the page's own fonts. A page
without CJK characters is left as it is.
"""
from __future__ import annotations

import base64
import functools
import io as bytes_io
import re
from importlib.resources import files
from pathlib import Path

from cvlib import io

FAMILY = "cvlib CJK"
MARK = "cvlib-cjk-font"  # the id of the embedded style: a page is never given two
# ideographs, kana, hangul, CJK symbols and punctuation, full-width forms: the code points Latin fonts lack
CJK_RANGES = ((0x2E80, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0xFE30, 0xFE4F), (0xFF00, 0xFFEF))
UNICODE_RANGE = ",".join(f"U+{a:X}-{b:X}" for a, b in CJK_RANGES)
_CJK = re.compile("[" + "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in CJK_RANGES) + "]")
SANS = 'system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif'
MONO = 'ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace'


def cjk_path() -> str:
    """The Noto Sans CJK SC font file of the `mplfonts` package (a dependency: no system font needed)."""
    return str(files("mplfonts") / "fonts" / "NotoSansCJKsc-Regular.otf")


def cjk_characters(text: str) -> str:
    """The distinct CJK characters of `text`, sorted (what a subset of the font must hold)."""
    return "".join(sorted(set(_CJK.findall(text))))


@functools.lru_cache(maxsize=32)
def subset_woff(characters: str) -> bytes:
    """The CJK font cut down to `characters` (and the glyphs their layout needs), as WOFF (zlib)."""
    from fontTools import subset

    opts = subset.Options()
    opts.flavor, opts.hinting, opts.desubroutinize = "woff", False, True
    opts.layout_features, opts.name_IDs, opts.notdef_outline = ["*"], ["*"], True
    font = subset.load_font(cjk_path(), opts)
    cutter = subset.Subsetter(opts)
    cutter.populate(text=characters)
    cutter.subset(font)
    out = bytes_io.BytesIO()
    subset.save_font(font, out, opts)
    return out.getvalue()


def font_style(characters: str) -> str:
    """The <style> element that embeds the subset (its characters in `data-chars`) and puts it first in every font
    stack of the page (the `unicode-range` keeps it to CJK code points)."""
    data = base64.b64encode(subset_woff(characters)).decode("ascii")
    return (f'<style id="{MARK}" data-chars="{characters}">@font-face{{font-family:"{FAMILY}";'
            f'src:url(data:font/woff;base64,{data}) format("woff");unicode-range:{UNICODE_RANGE};font-display:block}}'
            f'body,body :not(pre):not(code):not(kbd):not(samp){{font-family:"{FAMILY}",{SANS}!important}}'
            f'pre,code,kbd,samp,pre *{{font-family:"{FAMILY}",{MONO}!important}}</style>')


EMBEDDED = re.compile(f'<style id="{MARK}" data-chars="([^"]*)">.*?</style>', re.S)


def embed(html: str) -> str:
    """The page with its CJK characters' font embedded (unchanged when it has none). A page that already carries
    a face keeps it when it covers the page's characters (a client rendering only drops content), else gets a
    new one."""
    old = EMBEDDED.search(html)
    html = EMBEDDED.sub("", html)
    characters = cjk_characters(html)
    if not characters:
        return html
    style = old.group(0) if old and set(characters) <= set(old.group(1)) else font_style(characters)
    head_end = html.find("</head>")
    return html[:head_end] + style + html[head_end:] if head_end >= 0 else style + html


def write_page(html: str, path: Path) -> Path:
    """Write an HTML page with its CJK font embedded (`embed`): every report page is written through here."""
    return io.write_text(embed(html), path)
