"""The one look of every figure: the seaborn theme, the CJK fallback font, a fixed colour per group name, figure
numbers, and the check that no two labels overlap."""
from __future__ import annotations

import functools
import logging
import zlib
from typing import Any

import matplotlib.pyplot as plt
import seaborn as sns

from cvlib import fonts, numbering
from cvlib.i18n import text as T
from cvlib.params import DEFAULT_SEGMENTS, Clv, Strategy
from cvlib.rules import CELL_NAMES_2

PALETTE = "deep"


# names whose colour is fixed, in palette order: the default segments, value cells, CLV tiers and strategic groups
# (cvlib.params); any other name gets a colour from a stable hash of its text, so one group has one colour in every
# figure of every study
FIXED_COLOURS = (*(s["name"] for s in DEFAULT_SEGMENTS), *CELL_NAMES_2.values(), *Clv().tiers.names,
                 *(g.name for g in Strategy().groups), Strategy().default_group)


def group_colours(names) -> dict[str, tuple]:
    """A colour per group name, the same in every study and figure (not the order a figure meets them in)."""

    pal = sns.color_palette("tab20", 20)
    out = {}
    for n in names:
        n = str(n)
        i = FIXED_COLOURS.index(n) if n in FIXED_COLOURS else zlib.crc32(n.encode("utf-8"))
        out[n] = pal[(2 * i + i // 10) % 20]  # dark shades first, then the light ones
    return out


def number(fig: plt.Figure) -> None:
    """Put the report's next figure number before the figure's title ('Figure 3. ...', '图 3 ...')."""

    titled = [a for a in fig.axes if a.get_title()]
    if titled:
        a = titled[0] if len(titled) == 1 else None
        n = numbering.next_number("figure")
        if a is not None:
            a.set_title(T("common.figure_title", n=n, title=a.get_title()))
        else:  # several panels: the number goes above them all
            fig.suptitle(T("common.figure_number", n=n), fontweight="bold", x=0.02, ha="left")


def label_overlaps(fig: plt.Figure) -> list[tuple[str, str]]:
    """Pairs of texts of a figure that overlap once drawn (titles, axis and tick labels, annotations, legends):
    a figure is legible when this is empty."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # a closed figure has lost its canvas
    canvas.draw()
    renderer = canvas.get_renderer()
    items: list[tuple[str, Any]] = []
    texts = list(fig.texts) + ([fig._suptitle] if fig._suptitle is not None else [])
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        for axis in (ax.xaxis, ax.yaxis):  # a twin's hidden axis draws nothing
            if axis.get_visible():
                lo, hi = sorted(axis.get_view_interval())
                texts += [axis.label] + [lab for loc, lab in zip(axis.get_majorticklocs(), axis.get_majorticklabels())
                                         if lo - 1e-9 * abs(hi - lo) <= loc <= hi + 1e-9 * abs(hi - lo)]  # drawn ones
        if ax.get_legend() is not None:
            items.append(("legend", ax.get_legend().get_window_extent(renderer)))
    texts = list({id(t): t for t in texts}.values())
    for leg in fig.legends:
        items.append(("legend", leg.get_window_extent(renderer)))
    for t in texts:
        if t.get_visible() and t.get_text().strip():
            items.append((t.get_text(), t.get_window_extent(renderer).padded(-1)))  # touching is not overlapping
    return [(a, b) for i, (a, box_a) in enumerate(items) for b, box_b in items[i + 1:]
            if box_a.width > 0 and box_b.width > 0 and box_a.overlaps(box_b)]


@functools.cache
def cjk_font() -> str:
    """Register the Noto Sans CJK SC font shipped by the `mplfonts` package with matplotlib (once) and return
    its family name: the fallback for every glyph the theme's Latin font lacks (Chinese names and text)."""

    from matplotlib import font_manager

    path = fonts.cjk_path()
    font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name()


def use_theme() -> None:
    """The one theme every cvlib figure uses: seaborn's whitegrid, DejaVu Sans with Noto Sans CJK as the
    fallback font (so Chinese text never turns into boxes), plain numbers on the axes."""

    # Noto Sans CJK ships one weight: bold titles use it at 400, which matplotlib would log on every figure
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    sns.set_theme(style="whitegrid", context="notebook", palette=PALETTE)
    plt.rcParams.update({
        "font.family": ["DejaVu Sans", cjk_font()], "axes.formatter.useoffset": False,
        "axes.unicode_minus": True,
        "figure.figsize": (8, 4.2), "figure.dpi": 100, "savefig.dpi": 100, "axes.titleweight": "bold",
        "axes.titlesize": 12, "text.parse_math": False, "figure.autolayout": True,
    })
