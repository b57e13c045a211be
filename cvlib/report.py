"""What the notebooks show: escaped tables with units, plain sentences, pseudonymised ids.

Every table and sentence built from client data goes through this module, so
text such as ``<script>`` is shown as text in every rendered report.
"""
from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import HTML

from cvlib import i18n, numbering, privacy, theme, threads
from cvlib.params import Study

ID_COLUMNS = ("customer_id",)


WARNINGS_LOG = "warnings.log"


def setup(study: Study | None = None, run_dir: str | Path | None = None) -> None:
    """Apply the study's report language, the shared figure theme, table display options and the numerical
    libraries' thread cap, and send Python warnings to `warnings.log` in the run folder instead of the report
    (call once per notebook)."""
    i18n.use(study.report.language if study is not None else "en")
    threads.limit_threads()  # the notebook's numerical libraries: one thread each unless CVLIB_THREADS says
    theme.use_theme()
    numbering.restart()
    capture_warnings(Path(run_dir) / WARNINGS_LOG if run_dir is not None else None)
    pd.set_option("display.max_columns", 50)
    pd.set_option("display.width", 200)


def capture_warnings(log: Path | None) -> None:
    """Route every Python warning and every library log message of level WARNING or above (e.g. matplotlib's
    font messages) to `log` (appended; nowhere when None): no warning text reaches a report."""
    logging.captureWarnings(False)  # (re)install logging's warning hook, whatever replaced it since
    logging.captureWarnings(True)
    handler: logging.Handler = logging.NullHandler()
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.set_name(WARNINGS_LOG)
    for logger in (logging.getLogger(), logging.getLogger("py.warnings")):
        for h in [h for h in logger.handlers if h.get_name() == WARNINGS_LOG]:
            logger.removeHandler(h)
            h.close()
    py = logging.getLogger("py.warnings")
    py.propagate = True
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.WARNING, logging.WARNING))


def for_display(df: pd.DataFrame, study: Study | None) -> pd.DataFrame:
    """Copy of df with customer ids pseudonymised when the study asks for it (keyed HMAC, see
    `cvlib.privacy`; the runner also scrubs ids from every other text of the rendered report)."""
    if study is None or not study.privacy.pseudonymize_ids:
        return df
    key = privacy.load_key(study)
    out = df.copy()
    for col in ID_COLUMNS:
        if col in out.columns:
            out[col] = privacy.pseudonyms(out[col], key)
    if out.index.name in ID_COLUMNS:
        out.index = privacy.pseudonyms(out.index.to_series(), key).to_numpy()
    return out


MAX_CELL = 200  # characters of a text cell shown in a report table


def plain(v: float, digits: int = 4) -> str:
    """A number with `digits` significant digits in plain notation, never scientific (0.0000529, not 5.289e-05;
    1,234 for large values; ≈0 below a millionth)."""
    a = abs(float(v))
    if a == 0:
        return "0"
    if a < 5e-7:
        return "≈0"
    if a >= 1000:
        return f"{v:,.0f}"
    decimals = min(9, max(0, digits - 1 - int(np.floor(np.log10(a)))))
    text = f"{v:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _fmt(v: Any, kind: str, currency: str) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return i18n.word(v)
    if isinstance(v, (float, np.floating)) and np.isinf(v):
        return "∞" if v > 0 else "−∞"
    if kind == "money":
        return f"{v:,.2f}"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    if kind == "int":
        return f"{int(round(v)):,}"
    if kind == "num":
        return plain(v, 3) if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, pd.Timestamp):
        return i18n.date(v) if v == v.normalize() else str(v)
    if isinstance(v, (float, np.floating)):
        return plain(v)
    if isinstance(v, (int, np.integer)):
        return f"{v:,}"
    if str(v) in {"nan", "NaN", "None", "NaT", "<NA>"}:  # a missing value that became text on the way
        return "–"
    text = str(v)
    if len(text) > MAX_CELL:  # a 200 MB line in a client file is shown by its start, not whole
        return text[:MAX_CELL] + f"… ({len(text):,} characters)"
    return i18n.name(text)


text = i18n.text


def table(
    df: pd.DataFrame,
    study: Study | None = None,
    *,
    money: Iterable[str] = (),
    pct: Iterable[str] = (),
    ints: Iterable[str] = (),
    units: Mapping[str, str] | None = None,
    caption: str | None = None,
    max_rows: int = 50,
) -> HTML:
    """An HTML table with every cell escaped; money columns get the currency in the header,
    share columns a '%' and any column a unit from `units` (a column in days shows whole days)."""
    df = for_display(df, study)
    currency = i18n.currency_unit(study.currency) if study else ""
    money, pct, ints = set(money), set(pct), set(ints)
    units = dict(units or {})
    shown = df.head(max_rows)
    kinds = {c: "money" if c in money else "pct" if c in pct else "int" if c in ints or units.get(c) == "days"
             else "auto" for c in df.columns}  # days are read as whole days
    header = []
    for c in shown.columns:
        unit = currency if c in money else "%" if c in pct else i18n.unit(units[c]) if c in units else ""
        header.append(html.escape(i18n.label(str(c)))
                      + (f" <span class='unit'>({html.escape(unit)})</span>" if unit else ""))
    rows = []
    for _, r in shown.iterrows():
        cells = "".join(
            f"<td style='text-align:{'right' if kinds[c] != 'auto' or pd.api.types.is_number(v) else 'left'}'>"
            f"{html.escape(_fmt(v, kinds[c], currency))}</td>"
            for c, v in r.items()
        )
        rows.append(f"<tr>{cells}</tr>")
    cap = ""
    if caption:
        numbered = i18n.t("common.table_caption", n=numbering.next_number("table"), caption=text(caption))
        cap = f"<caption style='caption-side:top;text-align:left'>{html.escape(numbered)}</caption>"
    more = ""
    if len(df) > max_rows:
        words = html.escape(i18n.t("common.more_rows", n=f"{len(df) - max_rows:,}"))
        more = f"<p class='cvlib-more'><em>{words}</em></p>"
    head = "".join(f"<th>{h}</th>" for h in header)
    full = _full_table(df, kinds, currency, [re.sub(r"<[^>]+>", "", h) for h in header]) \
        if len(df) > CUT_ABOVE else ""
    return HTML(f"<table class='cvlib'>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
                f"{more}{full}")


CLIENT_ROWS = 15  # the client's rendering shows a long table's first rows, and every row in a workbook beside it
CUT_ABOVE = 25  # ... a table of more rows than this: a few rows more are shown, not sent to a workbook
EMBED_ROWS = 10_000  # rows of a long table carried in the page for that workbook


def _full_table(df: pd.DataFrame, kinds: dict[str, str], currency: str, header: list[str]) -> str:
    """A long table's rows as shown (formatted text, at most `EMBED_ROWS`) carried in the page as JSON, for the
    client's rendering to cut the table and write every row into a workbook (`cvlib.run.pages.cut_long_tables`),
    with the sentence saying so in the study's language; `<`, `>` and `&` escaped, so no text of the client's
    data can close the element."""
    rows = [[_fmt(v, kinds[c], currency) for c, v in r.items()] for _, r in df.head(EMBED_ROWS).iterrows()]
    note = i18n.t("common.cut_rows", k=CLIENT_ROWS, n=f"{len(df):,}", file="{file}", sheet="{sheet}")
    payload = json.dumps({"columns": [html.unescape(h) for h in header], "rows": rows, "total": len(df),
                          "note": note, "sheet": i18n.t("common.table_sheet")}, ensure_ascii=False)
    payload = payload.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return f"<script type='application/json' class='cvlib-full-table'>{payload}</script>"


def say(key: str, **values: Any) -> HTML:
    """A paragraph: the catalogue message `key` (or, for text that is not a key, the text itself) with its
    fields filled; values are escaped (client text is never read as HTML) and `**bold**` in the message (not
    in the values) is shown bold."""
    template = html.escape(i18n.t(key) if i18n.is_key(key) else key)
    template = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", template)
    escaped = {k: html.escape(v if isinstance(v, str) else _fmt(v, "auto", "")) for k, v in values.items()}
    return HTML(f"<p>{template.format(**escaped)}</p>")


def says(items: Iterable[tuple[str, dict]]) -> HTML:
    """Several `say` paragraphs (catalogue key, fields) as one output."""
    return HTML("".join(say(key, **fields).data for key, fields in items))


def bullet_list(items: Iterable[str]) -> HTML:
    """A bulleted list of plain (escaped) sentences."""
    lis = "".join(f"<li>{html.escape(text(str(i)))}</li>" for i in items)
    return HTML(f"<ul>{lis}</ul>")


def warn(note: str) -> HTML:
    """A highlighted note: what could not be computed and why."""
    return HTML(f"<div style='border-left:4px solid #c0392b;padding:4px 10px;background:#fdf2f2'>"
                f"<strong>{html.escape(i18n.t('common.note'))}</strong> {html.escape(text(note))}</div>")


def money(v: float, study: Study) -> str:
    """An amount in the study currency, formatted for the report language ('12,345.67 USD', '¥1.23万')."""
    return i18n.money(v, study.currency, decimals=None if i18n.current() == "zh" else 2)


def pre(text: str) -> HTML:
    """Preformatted text (e.g. decision-tree rules), escaped."""
    return HTML(f"<pre>{html.escape(text)}</pre>")


def notes(items: Iterable[str]) -> HTML:
    """Each note highlighted (what could not be computed and why); notes for the consultant (`i18n.for_consultant`)
    as consultant notes; nothing when there are none."""
    items = list(items)
    return HTML("".join((consultant(i) if isinstance(i, i18n.ConsultantNote) else warn(i)).data for i in items))


CONSULTANT_CLASS = "cvlib-consultant"


def consultant(note: str, **values: Any) -> HTML:
    """A note for the consultant (a parameter to set, a section with nothing to show and why): shown in the
    consultant's reports, left out of the client's (`cvlib run --client`)."""
    return HTML(f"<div class='{CONSULTANT_CLASS}' style='color:#555;font-size:0.9em;border-left:3px solid #bbb;"
                f"padding:2px 8px'><em>{html.escape(i18n.t('common.consultant_note'))}</em> "
                f"{html.escape(text(note, **values))}</div>")


# formats of the report language, for the values put into messages
label = i18n.label
name = i18n.name
pct = i18n.pct
date = i18n.date
currency_unit = i18n.currency_unit
