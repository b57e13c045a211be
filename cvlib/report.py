"""What the notebooks show: escaped tables with units, plain sentences, pseudonymised ids.

Every table and sentence built from client data goes through this module, so
text such as ``<script>`` is shown as text in every rendered report.
"""
from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import HTML

from cvlib import privacy
from cvlib.params import Study

ID_COLUMNS = ("customer_id",)


def setup(study: Study | None = None) -> None:
    """Apply the shared figure theme and table display options (call once per notebook)."""
    from cvlib import plots

    plots.use_theme()
    pd.set_option("display.max_columns", 50)
    pd.set_option("display.width", 200)


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


def _fmt(v: Any, kind: str, currency: str) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
        return "–"
    if isinstance(v, (float, np.floating)) and np.isinf(v):
        return "∞" if v > 0 else "−∞"
    if kind == "money":
        return f"{v:,.2f}"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    if kind == "int":
        return f"{int(round(v)):,}"
    if kind == "num":
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, pd.Timestamp):
        return str(v.date()) if v == v.normalize() else str(v)
    if isinstance(v, (float, np.floating)):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


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
    share columns a '%' and any column a unit from `units`."""
    df = for_display(df, study)
    currency = study.currency if study else ""
    money, pct, ints = set(money), set(pct), set(ints)
    units = dict(units or {})
    shown = df.head(max_rows)
    kinds = {c: "money" if c in money else "pct" if c in pct else "int" if c in ints else "auto" for c in df.columns}
    header = []
    for c in shown.columns:
        unit = currency if c in money else "%" if c in pct else units.get(c, "")
        header.append(html.escape(str(c)) + (f" <span class='unit'>({html.escape(unit)})</span>" if unit else ""))
    rows = []
    for _, r in shown.iterrows():
        cells = "".join(
            f"<td style='text-align:{'right' if kinds[c] != 'auto' or pd.api.types.is_number(v) else 'left'}'>"
            f"{html.escape(_fmt(v, kinds[c], currency))}</td>"
            for c, v in r.items()
        )
        rows.append(f"<tr>{cells}</tr>")
    cap = f"<caption style='caption-side:top;text-align:left'>{html.escape(caption)}</caption>" if caption else ""
    more = f"<p><em>{len(df) - max_rows:,} more rows not shown.</em></p>" if len(df) > max_rows else ""
    head = "".join(f"<th>{h}</th>" for h in header)
    return HTML(f"<table class='cvlib'>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}")


def say(template: str, **values: Any) -> HTML:
    """A paragraph from a template; values are escaped (client text is never read as HTML).

    `**bold**` in the template (not in the values) is shown bold."""
    text = html.escape(template)
    import re

    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    escaped = {k: html.escape(v if isinstance(v, str) else _fmt(v, "auto", "")) for k, v in values.items()}
    return HTML(f"<p>{text.format(**escaped)}</p>")


def bullet_list(items: Iterable[str]) -> HTML:
    """A bulleted list of plain (escaped) sentences."""
    lis = "".join(f"<li>{html.escape(str(i))}</li>" for i in items)
    return HTML(f"<ul>{lis}</ul>")


def warn(text: str) -> HTML:
    """A highlighted note: what could not be computed and why."""
    return HTML(f"<div style='border-left:4px solid #c0392b;padding:4px 10px;background:#fdf2f2'>"
                f"<strong>Note:</strong> {html.escape(text)}</div>")


def money(v: float, study: Study) -> str:
    """'12,345.67 USD'."""
    return f"{v:,.2f} {study.currency}"


def pre(text: str) -> HTML:
    """Preformatted text (e.g. decision-tree rules), escaped."""
    return HTML(f"<pre>{html.escape(text)}</pre>")


def notes(items: Iterable[str]) -> HTML:
    """Each note highlighted (what could not be computed and why); nothing when there are none."""
    items = list(items)
    return HTML("".join(warn(i).data for i in items)) if items else HTML("")
