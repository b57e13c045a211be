"""The cleaning rules pushed down to an engine (DuckDB by default): the rules of `cleaning_rules`, in the same
order, with the same audit and reconciliation, computed where the rows are.

Values are read by the same Python parsers once per distinct text: the engine sends its distinct amounts and dates
(with their first row and count) and joins the parsed values back. Order statistics (the plausible-date bulk, the
outlier bounds) are taken from the engine's histogram of values and interpolated by numpy, as the pandas path
does. Each row ends with an outcome (`_out`), the rule that moved it and the reason; one aggregate at the end gives
the audit. The state is materialised twice (after reading, before the outliers) so no step runs twice."""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import numpy as np
import pandas as pd

from cvlib import i18n, io
from cvlib.analysis.cleaning_rules import (
    DUPLICATE,
    KEPT,
    NETTED,
    QUARANTINED,
    RULES,
    _shown,
    outlier_bounds,
    outlier_limits,
)
from cvlib.engines.connect import upload
from cvlib.io import ROW
from cvlib.params import Cleaning
from cvlib.parsing import parse_amounts_explained, parse_date_values

# Unicode White_Space, what the pandas path's strip removes: the characters themselves (not escapes), which every
# engine's regular expressions read the same (RE2, PostgreSQL's and Java's escapes differ)
WHITE = "[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_names = count()
NUMERIC_COLUMNS, TEXT_COLUMNS = ("quantity", "cost", "margin"), ("order_id", "product", "channel")


def strip(col: Any) -> Any:
    return col.re_replace(f"^{WHITE}+|{WHITE}+$", "")


@dataclass
class Pushed:
    """The rows with their outcome, and what the rules learnt (see `push_cleaning`)."""

    t: Any  # the rows: raw text, _amount_raw, _amount, _date, _cust, _out, _rule, _reason, ...
    con: Any
    rules: Cleaning
    raw_columns: list[str]
    audit: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bounds: tuple[float, float] | None = None
    today: Any = None
    spans: dict[str, str] = field(default_factory=dict)

    def materialise(self) -> None:
        """Compute the rows so far once, kept by the engine for the session (a temporary table; on Spark a
        persisted frame)."""
        self.t = self.t.cache()

    def send(self, mask: Any, rule: str, reason: Any, outcome: int = QUARANTINED) -> None:
        """Move the live rows in mask to an outcome (the engine's `_Book.send`)."""
        import ibis

        t = self.t
        hit = (t._out == KEPT) & mask.fill_null(False)
        self.t = t.mutate(_out=ibis.ifelse(hit, outcome, t._out).cast("int8"),
                          _rule=ibis.ifelse(hit, rule, t._rule),
                          _reason=ibis.ifelse(hit, ibis.literal(reason) if isinstance(reason, str) else reason,
                                              t._reason))

    @property
    def alive(self) -> Any:
        return self.t._out == KEPT


def _distinct(t: Any, col: str) -> pd.DataFrame:
    """The distinct values of a text column with their first row and count, in order of first appearance."""
    d = t.group_by(col).agg(_first=t[ROW].min(), _n=t.count()).to_pandas()
    return d.sort_values("_first", kind="stable").reset_index(drop=True)


def amount_map(t: Any, col: str, decimal: str, thousands: str | None, allow_exponent: bool) -> pd.DataFrame:
    """Each distinct text of `col` read strictly (`parse_amounts_explained`), with the quarantine reason."""
    d = _distinct(t, col)
    text = d[col].astype(io.STRING)
    val, why = parse_amounts_explained(text, decimal, thousands, allow_exponent)
    reason = "amount cannot be read exactly: " + _shown(text).to_numpy().astype(object) + " (" + why.astype(str) + ")"
    return pd.DataFrame({col: text, "_value": val.to_numpy(),
                         "_why": pd.array(np.where(val.isna().to_numpy(), reason, ""), dtype=io.STRING)})


def date_map(t: Any, formats: str | list[str] | None) -> tuple[pd.DataFrame, list[str]]:
    """Each distinct date text read by `parse_date_values` (formats chosen as the pandas path chooses them)."""
    d = _distinct(t, "date")
    d["_s"] = d["date"].astype(io.STRING).str.strip().astype(object)
    g = d.groupby("_s", sort=False).agg(_first=("_first", "min"), _n=("_n", "sum")).sort_values("_first",
                                                                                              kind="stable")
    parsed, notes = parse_date_values(pd.Series(g.index, dtype=object), g["_n"].to_numpy(), formats)
    by_text = pd.Series(parsed.to_numpy(), index=g.index)
    parsed_rows = pd.to_datetime(d["_s"].map(by_text)).astype("datetime64[ns]")
    return pd.DataFrame({"date": d["date"].astype(io.STRING), "_date": parsed_rows.to_numpy()}), notes


def same(con: Any, a: Any, b: Any) -> list[Any]:
    """Join predicates for `a` equal to `b` with NULL equal to NULL. PostgreSQL cannot hash or merge a join on IS
    NOT DISTINCT FROM (it loops over every pair): there the text and its NULL flag are compared as two equalities."""
    if con.name != "postgres":
        return [a.identical_to(b)]
    return [a.fill_null("") == b.fill_null(""), a.isnull() == b.isnull()]


def _join_map(con: Any, t: Any, table: pd.DataFrame, col: str, names: dict[str, str]) -> Any:
    """Left join a value map (uploaded to the engine) on the text of `col`, its columns renamed by `names`."""
    m = upload(con, f"_cvlib_map_{next(_names)}", table).rename(
        {new: old for old, new in names.items()})
    j = t.left_join(m, same(con, t[col], m[col]))  # a NULL text is read as the pandas path reads NA
    return j.drop(f"{col}_right") if f"{col}_right" in j.columns else j


def start(con: Any, t: Any, rules: Cleaning, date_format: Any, decimal: str, thousands: str | None,
          allow_exponent: bool, today: Any = None) -> Pushed:
    """The raw text rows with their amounts and dates read, customer ids stripped, every row kept."""
    import ibis

    raw_columns = [c for c in t.columns if c != ROW]
    t = t.mutate(**{c: t[c].cast("string") for c in raw_columns})
    amounts = amount_map(t, "amount", decimal, thousands, allow_exponent)
    dates, notes = date_map(t, date_format)
    t = _join_map(con, t, amounts, "amount", {"_value": "_amount_raw", "_why": "_amount_why"})
    t = _join_map(con, t, dates, "date", {"_date": "_date"})
    for col in NUMERIC_COLUMNS:
        if col in raw_columns:
            t = _join_map(con, t, amount_map(t, col, decimal, thousands, False)[[col, "_value"]], col,
                          {"_value": f"_{col}"})
    t = t.mutate(_cust=strip(t.customer_id), _amount=t._amount_raw.fill_null(0.0), _adj_net=ibis.literal(0.0),
                 _adj_cap=ibis.literal(0.0), _out=ibis.literal(KEPT).cast("int8"), _rule=ibis.literal(""),
                 _reason=ibis.literal(""), _is_outlier=ibis.literal(False), _kept_zero=ibis.literal(False),
                 _red=ibis.literal(0.0))
    return Pushed(t, con, rules, raw_columns, notes=notes, today=today)


def row(rule: str, enabled: bool, action: str, rows: Any = 0, amount: Any = 0.0, detail: Any = "") -> dict:
    """An audit row; rows, amount and detail may be functions of the final aggregate (`Totals`)."""
    return {"rule": rule, "description": RULES[rule], "enabled": enabled, "action": action, "rows_affected": rows,
            "amount_affected": amount, "detail": detail}


# --------------------------------------------------------------------------- the rules
def duplicates(p: Pushed) -> list[dict]:

    if not p.rules.duplicates.enabled:
        return [row("duplicates", False, "off")]
    content = [c for c in p.raw_columns if not c.startswith(io.KEY_PREFIX)]
    t = p.t
    g = t.group_by(content).agg(_first_row=t[ROW].min(), _n=t.count())  # a hash aggregate, no sort
    g = g.filter(g._n > 1)
    j = t.left_join(g, [e for c in content for e in same(p.con, t[c], g[c])])
    p.t = j.select(*[t[c] for c in t.columns], g._first_row)
    p.send(p.t._first_row.notnull() & (p.t[ROW] != p.t._first_row), "duplicates", "", outcome=DUPLICATE)
    return [row("duplicates", True, "removed", ("n", "duplicates", DUPLICATE), ("raw", "duplicates", DUPLICATE))]


def unreadable(p: Pushed) -> list[dict]:
    t = p.t
    p.send(t._date.isnull(), "unparseable_date", "date cannot be read: " + t.date.fill_null("<NA>"))
    p.send(p.t._amount_raw.isnull(), "unparseable_amount", p.t._amount_why)
    p.send(p.t._cust.isnull() | (p.t._cust == ""), "missing_customer_id", "customer id is empty")
    return [row(r, True, "quarantined", ("n", r, QUARANTINED), 0.0 if r == "unparseable_amount" else
                ("raw", r, QUARANTINED)) for r in ("unparseable_date", "unparseable_amount", "missing_customer_id")]


def histogram(t: Any, expr: Any) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of `expr` (sorted; dates as int64 nanoseconds) and how many rows hold each, counted by
    the engine: a few rows per distinct value reach Python, never the column."""
    h = t.group_by(_v=expr).agg(_n=t.count()).to_pyarrow()
    vals = h.column("_v")
    vals = (vals.cast("timestamp[ns]").to_numpy().astype("int64") if str(vals.type).startswith("timestamp")
            else vals.to_numpy())
    order = np.argsort(vals, kind="stable")
    return vals[order], h.column("_n").to_numpy()[order].astype(np.int64)


def quantiles(t: Any, expr: Any, qs: list[float], how: Any = None) -> tuple[int, list[float]]:
    """(n, np.quantile(how(values), qs)) from the engine's histogram of the values: numpy's linear interpolation
    between the two order statistics around each position, exactly as on the whole column (`how`: a monotonic
    map such as np.log, applied to the two values)."""
    vals, counts = histogram(t, expr)
    cum = np.cumsum(counts)
    n = int(cum[-1]) if len(cum) else 0
    if n == 0:
        return 0, [float("nan")] * len(qs)
    out = []
    for q in qs:
        pos = q * (n - 1)
        lo = math.floor(pos)
        pair = np.array([vals[np.searchsorted(cum, k, side="right")] for k in (lo, min(lo + 1, n - 1))])
        out.append(np.quantile(how(pair) if how is not None else pair, pos - lo))
    return n, out


def implausible(p: Pushed) -> list[dict]:
    import ibis

    dr = p.rules.dates
    if not dr.enabled:
        return [row("implausible_date", False, "off")]
    last = np.datetime64(dr.latest or p.today or dt.date.today()) + np.timedelta64(1, "D")
    n, (bulk,) = quantiles(p.t.filter(p.alive & p.t._date.notnull()), p.t._date, [0.99]) if dr.after_bulk_days \
        else (0, [0])
    if n >= 20:
        bulk = np.int64(bulk).astype("datetime64[ns]")
        last = min(last, (bulk + np.timedelta64(dr.after_bulk_days + 1, "D")).astype("datetime64[D]"))
    first = np.datetime64(dr.earliest)
    last_day = str((last - np.timedelta64(1, "D")).astype("datetime64[D]"))
    span = i18n.t("cleaning.span", first=first, last=last_day)
    d = p.t._date
    early, late = d < pd.Timestamp(first), d >= pd.Timestamp(last)
    why = ibis.ifelse(early, f"date before the earliest plausible date {first}",
                      f"date after the latest plausible date {last_day}")
    p.send(early | late, "implausible_date", why)
    p.spans["implausible_date"] = span
    return [row("implausible_date", True, "quarantined", ("n", "implausible_date", QUARANTINED),
                ("raw", "implausible_date", QUARANTINED), i18n.t("cleaning.plausible", span=span))]


def test_ids(p: Pushed) -> list[dict]:
    t = p.rules.test_ids
    if not (t.enabled and t.ids):
        return [row("test_ids", t.enabled, "off" if not t.enabled else "none listed")]
    p.send(p.t._cust.isin([str(i).strip() for i in t.ids]), "test_ids", "test or internal customer id")
    return [row("test_ids", True, "quarantined", ("n", "test_ids", QUARANTINED), ("raw", "test_ids", QUARANTINED))]


def _return_keys(p: Pushed) -> tuple[Any, list[str]]:
    """Mark returns (`_ret`, amounts made negative) among the live rows; the columns a return is matched on."""
    import ibis

    r, t = p.rules.returns, p.t
    order = strip(t.order_id) if "order_id" in p.raw_columns else None
    is_ret = t._amount < 0
    if r.flag_values and "return_flag" in p.raw_columns:
        is_ret |= strip(t.return_flag).isin(list(r.flag_values))
    if r.invoice_prefix and order is not None:
        is_ret |= order.startswith(r.invoice_prefix)
    is_ret = is_ret.fill_null(False) & p.alive
    t = t.mutate(_ret=is_ret, _amount=ibis.ifelse(is_ret & (t._amount > 0), -t._amount, t._amount))
    if order is not None:
        k2 = order.re_replace("^" + re.escape(r.invoice_prefix), "") if r.invoice_prefix else order
        t = t.mutate(_k2=k2)
    elif "product" in p.raw_columns:
        t = t.mutate(_k2=strip(t["product"]))
    p.t = t
    return t, ["_cust", "_k2"] if "_k2" in t.columns else ["_cust"]


def _netting(con: Any, t: Any, keys: list[str]) -> Any:
    """Which returns match a purchase (`_matched`) and how much each purchase is reduced (`_red`), computed on the
    rows of the keys that have a return only, then joined back by row."""
    import ibis

    ret_keys = t.filter(t._ret).select(*keys).distinct()
    s = t.semi_join(ret_keys, [e for k in keys for e in same(con, t[k], ret_keys[k])])
    s = s.select(ROW, *keys, "_date", "_amount", "_ret", _pur=(s._out == KEPT) & ~s._ret & (s._amount > 0))
    by_key = ibis.window(group_by=[s[k] for k in keys])
    s = s.mutate(_first_pur=ibis.ifelse(s._pur, s._date, ibis.null()).min().over(by_key))
    s = s.mutate(_matched=s._ret & (s._date >= s._first_pur).fill_null(False))
    s = s.mutate(_owed=-ibis.ifelse(s._matched, s._amount, 0.0).sum().over(by_key))
    grp = [s[k] for k in keys] + [s._pur]
    latest_first = ibis.window(group_by=grp, order_by=[ibis.desc(s._date), ibis.desc(s[ROW])], rows=(None, 0))
    s = s.mutate(_cum=s._amount.sum().over(latest_first), _total=s._amount.sum().over(ibis.window(group_by=grp)),
                 _earliest=ibis.row_number().over(ibis.window(group_by=grp, order_by=[s._date, s[ROW]])) == 0)
    red = ibis.greatest(ibis.least(s._owed - (s._cum - s._amount), s._amount), 0.0)
    red = red + ibis.ifelse(s._earliest, ibis.greatest(s._owed - s._total, 0.0), 0.0)
    s = s.select(_row=s[ROW], _m=s._matched, _r=ibis.ifelse(s._pur & (s._owed > 0), red, 0.0))
    j = t.left_join(s, t[ROW] == s._row)
    return j.select(*[t[c] for c in t.columns if c not in ("_red",)], _matched=s._m.fill_null(False),
                    _red=s._r.fill_null(0.0))


def returns(p: Pushed) -> list[dict]:
    """Returns netted into their purchases (latest first) or quarantined, as `cleaning_rules.returns`."""

    if not p.rules.returns.enabled:
        return [row("returns", False, "off")]
    t, keys = _return_keys(p)
    if p.rules.returns.action == "drop":
        p.send(t._ret, "returns", "return or cancellation dropped (cleaning.returns.action = drop)")
        return [row("returns", True, "quarantined", ("n", "returns", QUARANTINED), ("raw", "returns", QUARANTINED))]
    p.t = _netting(p.con, t, keys)
    p.send(p.t._ret & ~p.t._matched, "returns", "return with no matching purchase on or before its date")
    p.t = p.t.mutate(_adj_net=-p.t._red, _amount=p.t._amount - p.t._red)
    p.send(p.t._matched, "returns", "", outcome=NETTED)
    return [row("returns", True, "netted", ("n", "returns", NETTED), ("raw", "returns", NETTED),
                ("netted",))]


def non_positive(p: Pushed) -> list[dict]:
    import ibis

    rule, t = p.rules.non_positive, p.t
    if not rule.enabled:
        return [row("non_positive", False, "off")]
    written_zero = (t._amount_raw == 0) & (t._adj_net == 0)
    kept_zero = (p.alive & written_zero) if rule.keep_zero else ibis.literal(False)
    p.t = t = t.mutate(_kept_zero=kept_zero.fill_null(False))
    why = ibis.ifelse(t._adj_net < 0, "amount is zero or negative after netting returns",
                      ibis.ifelse(t._amount < 0, "negative amount", "zero amount"))
    p.send((t._amount <= 0) & ~t._kept_zero, "non_positive", why)
    return [row("non_positive", True, "quarantined", ("n", "non_positive", QUARANTINED),
                ("raw", "non_positive", QUARANTINED), ("kept_zero",))]


def window(p: Pushed) -> list[dict]:
    w = p.rules.window
    if not (w.enabled and (w.start or w.end)):
        return [row("window", w.enabled, "off" if not w.enabled else "no window set")]
    d = p.t._date
    out = None
    if w.start:
        out = d < pd.Timestamp(w.start)
    if w.end:
        late = d >= pd.Timestamp(w.end) + pd.Timedelta(days=1)
        out = late if out is None else out | late
    p.send(out, "window", f"date outside the analysis window {w.start or '...'} to {w.end or '...'}")
    return [row("window", True, "quarantined", ("n", "window", QUARANTINED), ("raw", "window", QUARANTINED))]


def outliers(p: Pushed) -> list[dict]:
    """Outlying amounts flagged, capped or quarantined, the bounds from the judged amounts (`outlier_bounds`)."""
    import ibis

    o = p.rules.outliers
    p.materialise()
    t = p.t
    absurd = p.alive & (t._amount.abs() > o.ceiling) if o.enabled and o.ceiling else ibis.literal(False)
    p.t = t = t.mutate(_absurd=absurd, _is_out=ibis.literal(False))
    judged = p.alive & ~t._absurd & (t._amount > 0)
    detail = ""
    if o.enabled and (bounds := _bounds(t.filter(judged), o)) is not None:
        lo, hi = p.bounds = bounds
        p.t = t = t.mutate(_is_out=judged & ((t._amount < lo) | (t._amount > hi)))
        detail = i18n.t("cleaning.outlier_log" if o.log_scale else "cleaning.outlier", method=i18n.label(o.method),
                        threshold=f"{o.threshold:g}", lo=f"{lo:,.2f}", hi=f"{hi:,.2f}")
    n_absurd = int(t.filter(t._absurd).count().to_pyarrow().as_py())
    if n_absurd:
        detail += (f"; {n_absurd:,} amounts above the ceiling {o.ceiling:,.0f} "
                   f"({'quarantined' if o.action != 'flag' else 'flagged'}, never rewritten)")
    if not (o.enabled and (p.bounds is not None or n_absurd)):
        return [row("outliers", o.enabled, "off" if not o.enabled else "too few rows")]
    lo, hi = p.bounds or (-np.inf, np.inf)
    return [OUTLIER_ACTIONS[o.action](p, lo, hi, detail.lstrip("; "))]


def _bounds(judged: Any, o: Any) -> tuple[float, float] | None:
    """`outlier_bounds` of the judged amounts (None for fewer than 4), from the engine's histogram of the amounts:
    quantiles by interpolation, a z-score from the exact mean and deviation of the distinct values and counts."""
    if o.method == "zscore":
        values, counts = histogram(judged, judged._amount)
        return outlier_bounds(values, o.method, o.threshold, o.log_scale, counts) if counts.sum() >= 4 else None
    n = int(judged.count().to_pyarrow().as_py())
    if n < 4:
        return None
    return outlier_limits(o.method, o.threshold, o.log_scale,
                          lambda qs: quantiles(judged, judged._amount, qs, np.log if o.log_scale else None)[1],
                          lambda: (0.0, 0.0))


def _drop(p: Pushed, lo: float, hi: float, detail: str) -> dict:
    o = p.rules.outliers
    p.send(p.t._is_out, "outliers", f"amount outside {lo:,.2f} to {hi:,.2f} ({o.method})")
    p.send(p.t._absurd, "outliers", f"amount above the ceiling {o.ceiling:,.0f}")
    p.t = p.t.mutate(_is_outlier=False)
    return row("outliers", True, "quarantined", ("n", "outliers", QUARANTINED), ("raw", "outliers", QUARANTINED),
               detail)


def _cap(p: Pushed, lo: float, hi: float, detail: str) -> dict:
    import ibis

    o = p.rules.outliers
    p.send(p.t._absurd, "outliers", f"amount above the ceiling {o.ceiling:,.0f}: not capped (an absurd value is not "
                                    "rewritten)")
    t = p.t
    capped = ibis.least(ibis.greatest(t._amount, lo), hi) if np.isfinite(lo) else ibis.least(t._amount, hi)
    p.t = t.mutate(_adj_cap=ibis.ifelse(t._is_out, capped - t._amount, 0.0),
                   _amount=ibis.ifelse(t._is_out, capped, t._amount))
    return row("outliers", True, "capped", ("capped_rows",), ("capped",), ("cap_detail", detail))


def _flag(p: Pushed, lo: float, hi: float, detail: str) -> dict:
    p.t = p.t.mutate(_is_outlier=p.t._is_out | p.t._absurd)
    return row("outliers", True, "flagged", ("flagged_rows",), ("flagged",), detail)


OUTLIER_ACTIONS = {"drop": _drop, "cap": _cap, "flag": _flag}
RULE_ORDER = (duplicates, unreadable, implausible, test_ids, returns, non_positive, window, outliers)


def push_cleaning(con: Any, t: Any, rules: Cleaning, date_format: Any = None, decimal: str = ".",
                  thousands: str | None = None, allow_exponent: bool = False, today: Any = None) -> Pushed:
    """Run every rule on the engine of Ibis table `t` (raw text in cvlib's column names and `source_row`).
    Returns the rows with their outcomes; `finish` gives the audit, reconciliation and outputs."""
    p = start(con, t, rules, date_format, decimal, thousands, allow_exponent, today)
    p.materialise()
    pending: list[dict] = []
    for rule in RULE_ORDER:
        pending += rule(p)
    p.audit = pending
    return p
