"""The cleaning rules, in the order they run (`RULE_ORDER`). Each rule is a small function of the rows being
cleaned (`Rows`) that moves the rows it catches to their outcome (`_Book.send`) and returns its audit rows; only
rows still kept reach the next rule. The cleaning stage (`cvlib.analysis.cleaning`) runs them and reconciles."""
from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pandas as pd

from cvlib import i18n, io
from cvlib.io import ROW
from cvlib.params import Cleaning
from cvlib.parsing import parse_amounts, parse_amounts_explained, parse_dates

KEPT, QUARANTINED, DUPLICATE, NETTED = 0, 1, 2, 3


RULES = {
    "malformed_line": "line with the wrong number of fields",
    "unparseable_date": "date cannot be read",
    "unparseable_amount": "amount cannot be read exactly",
    "missing_customer_id": "customer id is empty",
    "implausible_date": "date outside the plausible range",
    "duplicates": "exact duplicate of an earlier row",
    "test_ids": "test or internal customer id",
    "returns": "return or cancellation",
    "non_positive": "zero or negative amount after netting",
    "window": "date outside the analysis window",
    "outliers": "outlying transaction amount",
}


def _tail_key(s: pd.Series) -> np.ndarray:
    """A cheap integer fingerprint of each text value: its length and last 8 bytes, read from the Arrow buffers."""
    offsets, data = io.string_buffers(io.arrow_strings(s))
    starts, ends = offsets[:-1], offsets[1:]
    key = (ends - starts).astype(np.int64)
    for k in range(1, 9):
        pos = ends - k
        byte = np.where(pos >= starts, data[np.clip(pos, 0, len(data) - 1)], 0).astype(np.int64)
        key = key * np.int64(257) + byte
    return key


def exact_duplicates(raw: pd.DataFrame, columns: list[str], amounts: np.ndarray | None = None) -> np.ndarray:
    """True for every row whose text in `columns` repeats an earlier row.

    Exact repeats share every value, so only rows whose integer key (amount, date, and a fingerprint of
    each other column) repeats are compared in full: an integer pass over all rows, then a text
    comparison of the few candidates."""
    n = len(raw)
    dup = np.zeros(n, dtype=bool)
    if n == 0:
        return dup
    if amounts is None:
        amounts = parse_amounts(raw["amount"]).to_numpy()
    bits = np.where(np.isnan(amounts), -1.0, amounts).view(np.int64)
    date_codes, _ = pd.factorize(raw["date"].astype(io.STRING))
    key = bits * np.int64(1_000_003) + date_codes.astype(np.int64)
    with np.errstate(over="ignore"):
        for col in columns:
            if col not in ("amount", "date"):
                key = key * np.int64(1_000_000_007) + _tail_key(raw[col])
    cand = np.flatnonzero(pd.Series(key).duplicated(keep=False).to_numpy())
    if len(cand):
        sub = raw.iloc[cand][columns].astype(object)
        dup[cand] = sub.duplicated(keep="first").to_numpy()
    return dup


def _blank(s: pd.Series) -> np.ndarray:
    t = s.astype(io.STRING).str.strip()
    return (t.isna() | (t == "")).to_numpy(dtype=bool)


# --------------------------------------------------------------------------- bookkeeping
class _Book:
    """Outcome, amounts and adjustments of every input row."""

    def __init__(self, n: int) -> None:
        self.outcome = np.zeros(n, dtype=np.int8)
        self.parts: list[pd.DataFrame] = []
        self.audit: list[dict] = []

    @property
    def alive(self) -> np.ndarray:
        return self.outcome == KEPT

    def send(self, mask: np.ndarray, rule: str, reason: str | np.ndarray | Callable[[np.ndarray], object],
             outcome: int = QUARANTINED) -> int:
        """Move the live rows in mask to an outcome; reasons may be a function of the row positions."""
        idx = np.flatnonzero(mask & self.alive)
        if len(idx):
            self.outcome[idx] = outcome
            if outcome == QUARANTINED:
                if callable(reason):
                    reasons = reason(idx)
                else:
                    reasons = reason if isinstance(reason, str) else np.asarray(reason)[idx]
                self.parts.append(pd.DataFrame({"_pos": idx, "rule": rule, "reason": reasons}))
        return len(idx)

    @staticmethod
    def row(rule: str, enabled: bool, action: str, rows: int, amount: float, detail: str = "") -> dict:
        """One audit row: the rule, whether it ran, what it did, to how many rows and how much amount."""
        return {"rule": rule, "description": RULES[rule], "enabled": enabled, "action": action,
                "rows_affected": int(rows), "amount_affected": round(float(amount), 2), "detail": detail}


def _sum(a: np.ndarray) -> float:
    return float(np.nansum(a)) if len(a) else 0.0


def implausible_dates(dates: pd.Series, earliest: dt.date, latest: dt.date | None, after_bulk_days: int | None,
                      today: dt.date | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Dates before `earliest`, after `latest` (default today), or more than `after_bulk_days` after the 99th
    percentile of the dates: (mask, reason per row, the range in words)."""
    d = dates.to_numpy(dtype="datetime64[ns]")
    ok = ~np.isnat(d)
    last = np.datetime64(latest or today or dt.date.today()) + np.timedelta64(1, "D")
    if after_bulk_days and ok.sum() >= 20:
        bulk = np.quantile(d[ok].astype("int64"), 0.99).astype("int64").astype("datetime64[ns]")
        last = min(last, (bulk + np.timedelta64(after_bulk_days + 1, "D")).astype("datetime64[D]"))
    first = np.datetime64(earliest)
    early, late = ok & (d < first), ok & (d >= last)
    last_day = str((last - np.timedelta64(1, "D")).astype("datetime64[D]"))
    span = i18n.t("cleaning.span", first=first, last=last_day)
    # one small code per row, not a text per row (11.8M fixed-width texts took 2.4 GB)
    codes = early.astype(np.int8) + 2 * late.astype(np.int8)
    reason = pd.Categorical.from_codes(codes, categories=["", f"date before the earliest plausible date {first}",
                                                          f"date after the latest plausible date {last_day}"])
    return early | late, reason, span


def _net_returns(book: _Book, is_ret: np.ndarray, cust: pd.Series, order: pd.Series | None, dates: pd.Series,
                 amount: np.ndarray, adj_net: np.ndarray, raw: pd.DataFrame, rules: Cleaning) -> tuple[int, int, int]:
    """Net each return against its purchases (same customer and order, else product, else customer).

    Returns reduce the latest purchases first; a return with no purchase of that key on or
    before its date is quarantined. Amounts are changed in place.
    """
    if not is_ret.any():
        return 0, 0, 0
    # only purchases of customers who returned something can match a return
    ret_customers = pd.unique(cust.to_numpy()[is_ret])
    pur = book.alive & ~is_ret & (amount > 0) & cust.isin(ret_customers).fillna(False).to_numpy(dtype=bool)
    sel = np.flatnonzero(is_ret | pur)
    keys = {"cust": cust.to_numpy()[sel]}
    if order is not None:
        o = order.iloc[sel]
        if rules.returns.invoice_prefix:
            o = o.str.replace("^" + re.escape(rules.returns.invoice_prefix), "", regex=True)
        keys["k2"] = o.to_numpy()
    elif "product" in raw.columns:
        keys["k2"] = raw["product"].astype(io.STRING).str.strip().to_numpy()[sel]
    d = pd.DataFrame(keys)
    d["key"] = d.groupby(list(keys), dropna=False, sort=False).ngroup().to_numpy()
    d["pos"] = sel
    d["date"] = dates.to_numpy()[sel]
    d["amount"] = amount[sel]
    d["ret"] = is_ret[sel]
    p = d[~d["ret"]]
    r = d[d["ret"]]
    first_purchase = p.groupby("key")["date"].min()
    matched = r["date"].to_numpy() >= r["key"].map(first_purchase).to_numpy()
    unmatched_pos = r["pos"].to_numpy()[~matched]
    mask = np.zeros(len(amount), dtype=bool)
    mask[unmatched_pos] = True
    k_unmatched = book.send(mask, "returns", "return with no matching purchase on or before its date")
    r = r[matched]
    owed = (-r.groupby("key")["amount"].sum()).rename("owed")
    p = p[p["key"].isin(owed.index)].sort_values(["key", "date", "pos"], ascending=[True, False, False])
    if len(p):
        cum = p.groupby("key")["amount"].cumsum().to_numpy()
        amt = p["amount"].to_numpy()
        o = p["key"].map(owed).to_numpy()
        red = np.clip(o - (cum - amt), 0, amt)
        last = ~p["key"].duplicated(keep="last").to_numpy()  # earliest purchase of each key takes any excess
        total = p.assign(_t=amt).groupby("key")["_t"].transform("sum").to_numpy()
        red = red + np.where(last, np.maximum(o - total, 0), 0)
        pos = p["pos"].to_numpy()
        adj_net[pos] = -red
        amount[pos] -= red
        changed = int((red > 0).sum())
    else:
        changed = 0
    net_mask = np.zeros(len(amount), dtype=bool)
    net_mask[r["pos"].to_numpy()] = True
    k_net = book.send(net_mask, "returns", "", outcome=NETTED)
    return k_net, k_unmatched, changed


def outlier_bounds(x: np.ndarray, method: str, threshold: float, log_scale: bool = True,
                   counts: np.ndarray | None = None) -> tuple[float, float]:
    """Lower and upper bounds of ordinary amounts (quantile: upper only). `counts`: `x` holds distinct values and
    each occurs that often (the engine's histogram)."""
    x = np.asarray(x, dtype=float)
    keep = x > 0 if log_scale else slice(None)
    v = np.log(x[keep]) if log_scale else x
    if len(v) == 0:
        return -np.inf, np.inf
    distinct = (v, np.asarray(counts)[keep]) if counts is not None else np.unique(v, return_counts=True)
    full = v if counts is None else np.repeat(*distinct)
    return outlier_limits(method, threshold, log_scale, lambda qs: list(np.quantile(full, qs)),
                          lambda: exact_moments(*distinct))


def exact_moments(values: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """Mean and (population) standard deviation of `values` each repeated `counts` times, computed exactly (a float
    is an integer over a power of two) and rounded once: the same figures whatever the row order or the engine."""
    n = int(np.sum(counts))
    ratios = [float(v).as_integer_ratio() for v in values]
    scale = max(d for _, d in ratios)
    ints = [num * (scale // d) for num, d in ratios]
    total = sum(i * int(c) for i, c in zip(ints, counts))
    squares = sum(i * i * int(c) for i, c in zip(ints, counts))
    mean = Fraction(total, n * scale)
    return float(mean), math.sqrt(float(Fraction(squares, n * scale * scale) - mean * mean))


def outlier_limits(method: str, threshold: float, log_scale: bool, quantile: Callable[[list[float]], list[float]],
                   moments: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    """The bounds from the (log) amounts' quantiles or mean and standard deviation, however they are computed."""
    if method == "iqr":
        q1, q3 = quantile([0.25, 0.75])
        lo, hi = q1 - threshold * (q3 - q1), q3 + threshold * (q3 - q1)
    elif method == "zscore":
        mu, sd = moments()
        lo, hi = mu - threshold * sd, mu + threshold * sd
    else:
        lo, hi = -np.inf, float(quantile([threshold])[0])
    if log_scale:
        lo, hi = (np.exp(lo) if np.isfinite(lo) else -np.inf), float(np.exp(hi))
    return float(lo), float(hi)


def reconciliation(raw_rows: int, amount_in: float, kept: tuple[int, float], quarantined: tuple[int, float],
                   duplicates: tuple[int, float], netted: tuple[int, float], capped: float) -> pd.DataFrame:
    """Rows and amounts of the input against the outputs.

    rows in = kept + quarantined + duplicates removed + returns netted;
    amount in = kept + quarantined + duplicates + netting effect + capping (to the cent).
    """
    rows = [
        ("input", raw_rows, amount_in, "rows read (malformed lines included); amounts as written in the file"),
        ("kept", kept[0], kept[1], "clean rows; amounts after netting and capping"),
        ("quarantined", quarantined[0], quarantined[1], "amounts as written in the file"),
        ("duplicates removed", duplicates[0], duplicates[1], "exact repeats of an earlier row"),
        ("returns netted into purchases", netted[0], netted[1],
         "return rows absorbed, less the reductions they made to kept purchases"),
        ("capping", 0, capped, "amount removed by capping outliers"),
    ]
    df = pd.DataFrame(rows, columns=["term", "rows", "amount", "note"])
    parts = df.iloc[1:]
    df.loc[len(df)] = ["difference", raw_rows - int(parts["rows"].sum()),
                       round(amount_in - float(parts["amount"].sum()), 6), "input minus the terms above: must be 0"]
    df["amount"] = df["amount"].round(2) + 0.0  # no "-0.00"
    return df


@dataclass
class Rows:
    """The rows being cleaned and what the rules learn about them: raw text, parsed amounts and dates, the amounts
    after netting and capping, and each row's outcome (`book`)."""

    raw: pd.DataFrame
    rules: Cleaning
    book: _Book
    amount_raw: np.ndarray  # as written in the file (NaN: unreadable)
    amount_reason: pd.Series  # why an amount could not be read
    date_format: str | list[str] | None
    today: dt.date | None
    cust: pd.Series  # customer ids, stripped
    amount: np.ndarray  # after netting returns and capping outliers
    adj_net: np.ndarray  # change made by netting returns
    adj_cap: np.ndarray  # change made by capping outliers
    dates: pd.Series = field(default_factory=pd.Series)
    notes: list[str] = field(default_factory=list)
    is_outlier: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    bounds: tuple[float, float] | None = None

    @classmethod
    def read(cls, raw: pd.DataFrame, rules: Cleaning, date_format: str | list[str] | None, decimal: str,
             thousands: str | None, allow_exponent: bool, today: dt.date | None) -> "Rows":
        """The raw rows with their amounts read (strictly, `parsing.parse_amounts_explained`)."""
        n = len(raw)
        parsed, reason = parse_amounts_explained(raw["amount"], decimal, thousands, allow_exponent)
        amount_raw = parsed.to_numpy()
        return cls(raw, rules, _Book(n), amount_raw, reason, date_format, today,
                   raw["customer_id"].astype(io.STRING).str.strip(),
                   np.where(np.isnan(amount_raw), 0.0, amount_raw).astype("float64"), np.zeros(n), np.zeros(n),
                   is_outlier=np.zeros(n, dtype=bool))

    def amount_of(self, mask: np.ndarray) -> float:
        """The amount as written of the rows in mask."""
        return _sum(self.amount_raw[mask])


def duplicates(rows: Rows) -> list[dict]:
    """Exact duplicate rows (on the file's content, before any parsing) are removed and counted."""
    if not rows.rules.duplicates.enabled:
        return [_Book.row("duplicates", False, "off", 0, 0)]
    content = [c for c in rows.raw.columns if c != ROW and not c.startswith(io.KEY_PREFIX)]
    dup = exact_duplicates(rows.raw, content, rows.amount_raw)
    rows.book.send(dup, "duplicates", "", outcome=DUPLICATE)
    return [_Book.row("duplicates", True, "removed", dup.sum(), rows.amount_of(dup))]


def _shown(values: pd.Series) -> pd.Series:
    """Raw values as quoted text, a long one cut to 80 characters."""
    return values.astype(str).fillna("").map(lambda v: repr(v) if len(v) <= 80 else
                                             repr(v[:80]) + f"... ({len(v):,} characters)")


def unreadable(rows: Rows) -> list[dict]:
    """Rows whose date or amount cannot be read, or whose customer id is empty, are quarantined (always on)."""
    raw, book = rows.raw, rows.book
    rows.dates, date_notes = parse_dates(raw["date"], rows.date_format)
    rows.notes += date_notes
    bad_date = rows.dates.isna().to_numpy() & book.alive
    k_date = book.send(bad_date, "unparseable_date",
                       lambda i: "date cannot be read: " + raw["date"].iloc[i].astype(str).fillna(""))
    k_amount = book.send(np.isnan(rows.amount_raw), "unparseable_amount", lambda i: (
        "amount cannot be read exactly: " + _shown(raw["amount"].iloc[i]).to_numpy()
        + " (" + rows.amount_reason.iloc[i].to_numpy().astype(str) + ")"))
    blank_id = _blank(raw["customer_id"]) & book.alive
    k_id = book.send(blank_id, "missing_customer_id", "customer id is empty")
    return [_Book.row("unparseable_date", True, "quarantined", k_date, rows.amount_of(bad_date)),
            _Book.row("unparseable_amount", True, "quarantined", k_amount, 0.0),
            _Book.row("missing_customer_id", True, "quarantined", k_id, rows.amount_of(blank_id))]


def implausible(rows: Rows) -> list[dict]:
    """Dates before the earliest plausible one, after the latest, or far after the bulk of the file."""
    dr, book = rows.rules.dates, rows.book
    if not dr.enabled:
        return [_Book.row("implausible_date", False, "off", 0, 0)]
    odd, why, span = implausible_dates(rows.dates.where(pd.Series(book.alive, index=rows.dates.index)), dr.earliest,
                                       dr.latest, dr.after_bulk_days, rows.today)
    odd &= book.alive
    k = book.send(odd, "implausible_date", lambda i: np.asarray(why[i], dtype=object))
    if k:
        rows.notes.append(i18n.t("cleaning.implausible_note", n=f"{k:,}", span=span))
    return [_Book.row("implausible_date", True, "quarantined", k, rows.amount_of(odd),
                      i18n.t("cleaning.plausible", span=span))]


def test_ids(rows: Rows) -> list[dict]:
    """Test or internal customer ids listed in the parameters are quarantined."""
    t = rows.rules.test_ids
    if not (t.enabled and t.ids):
        return [_Book.row("test_ids", t.enabled, "off" if not t.enabled else "none listed", 0, 0)]
    test = rows.cust.isin([str(i).strip() for i in t.ids]).fillna(False).to_numpy(dtype=bool)
    caught = test & rows.book.alive
    k = rows.book.send(test, "test_ids", "test or internal customer id")
    return [_Book.row("test_ids", True, "quarantined", k, rows.amount_of(caught))]


def _is_return(rows: Rows, order: pd.Series | None) -> np.ndarray:
    """Returns and cancellations among the kept rows: a negative amount, a return flag, an invoice prefix."""
    r, raw = rows.rules.returns, rows.raw
    is_ret = rows.amount < 0
    if r.flag_values and "return_flag" in raw.columns:
        is_ret |= raw["return_flag"].astype(io.STRING).str.strip().isin(r.flag_values).fillna(False).to_numpy(bool)
    if r.invoice_prefix and order is not None:
        is_ret |= order.str.startswith(r.invoice_prefix).fillna(False).to_numpy(dtype=bool)
    return is_ret & rows.book.alive


def returns(rows: Rows) -> list[dict]:
    """Returns and cancellations: netted into their purchases, or quarantined (`returns.action`)."""
    if not rows.rules.returns.enabled:
        return [_Book.row("returns", False, "off", 0, 0)]
    order = rows.raw["order_id"].astype(io.STRING).str.strip() if "order_id" in rows.raw.columns else None
    is_ret, book, amount = _is_return(rows, order), rows.book, rows.amount
    flip = is_ret & (amount > 0)
    amount[flip] = -amount[flip]
    if rows.rules.returns.action == "drop":
        k = book.send(is_ret, "returns", "return or cancellation dropped (cleaning.returns.action = drop)")
        return [_Book.row("returns", True, "quarantined", k, rows.amount_of(is_ret))]
    k_net, k_unmatched, changed = _net_returns(book, is_ret, rows.cust, order, rows.dates, amount, rows.adj_net,
                                               rows.raw, rows.rules)
    return [_Book.row("returns", True, "netted", k_net, rows.amount_of(book.outcome == NETTED),
                      i18n.t("cleaning.netted", changed=f"{changed:,}", unmatched=f"{k_unmatched:,}"))]


def non_positive(rows: Rows) -> list[dict]:
    """Zero or negative amounts left after netting are quarantined; purchases written as 0 stay with keep_zero."""
    rule, book, amount, adj_net = rows.rules.non_positive, rows.book, rows.amount, rows.adj_net
    if not rule.enabled:
        return [_Book.row("non_positive", False, "off", 0, 0)]
    written_zero = (rows.amount_raw == 0) & (adj_net == 0)
    kept_zero = book.alive & written_zero if rule.keep_zero else np.zeros(len(amount), dtype=bool)
    nonpos = book.alive & (amount <= 0) & ~kept_zero
    k = book.send(nonpos, "non_positive", lambda i: np.where(
        adj_net[i] < 0, "amount is zero or negative after netting returns",
        np.where(amount[i] < 0, "negative amount", "zero amount")))
    detail = i18n.t("cleaning.kept_zero", n=f"{int(kept_zero.sum()):,}") if kept_zero.any() else ""
    return [_Book.row("non_positive", True, "quarantined", k, rows.amount_of(nonpos), detail)]


def window(rows: Rows) -> list[dict]:
    """Dates outside the analysis window (inclusive) are quarantined."""
    w = rows.rules.window
    if not (w.enabled and (w.start or w.end)):
        return [_Book.row("window", w.enabled, "off" if not w.enabled else "no window set", 0, 0)]
    d = rows.dates.to_numpy()
    out = np.zeros(len(d), dtype=bool)
    if w.start:
        out |= d < np.datetime64(w.start)
    if w.end:
        out |= d >= np.datetime64(w.end) + np.timedelta64(1, "D")
    caught = out & ~np.isnat(d) & rows.book.alive
    k = rows.book.send(caught, "window", f"date outside the analysis window {w.start or '...'} to {w.end or '...'}")
    return [_Book.row("window", True, "quarantined", k, rows.amount_of(caught))]


def outliers(rows: Rows) -> list[dict]:
    """Outlying amounts (and any above the absolute ceiling): flagged, capped or quarantined (`outliers.action`)."""
    o, book, amount = rows.rules.outliers, rows.book, rows.amount
    n = len(amount)
    absurd = book.alive & (np.abs(amount) > o.ceiling) if o.enabled and o.ceiling else np.zeros(n, dtype=bool)
    judged = book.alive & ~absurd & (amount > 0)  # $0 purchase occasions are not amounts to judge or cap
    lo, hi, detail = -np.inf, np.inf, ""
    if o.enabled and judged.sum() >= 4:
        lo, hi = rows.bounds = outlier_bounds(amount[judged], o.method, o.threshold, o.log_scale)
        rows.is_outlier = judged & ((amount < lo) | (amount > hi))
        detail = i18n.t("cleaning.outlier_log" if o.log_scale else "cleaning.outlier", method=i18n.label(o.method),
                        threshold=f"{o.threshold:g}", lo=f"{lo:,.2f}", hi=f"{hi:,.2f}")
    if absurd.any():
        detail += (f"; {int(absurd.sum()):,} amounts above the ceiling {o.ceiling:,.0f} "
                   f"({'quarantined' if o.action != 'flag' else 'flagged'}, never rewritten)")
    if not (o.enabled and (rows.bounds is not None or absurd.any())):
        return [_Book.row("outliers", o.enabled, "off" if not o.enabled else "too few rows", 0, 0)]
    return [OUTLIER_ACTIONS[o.action](rows, absurd, lo, hi, detail.lstrip("; "))]


def _drop_outliers(rows: Rows, absurd: np.ndarray, lo: float, hi: float, detail: str) -> dict:
    o, out = rows.rules.outliers, rows.is_outlier
    k = rows.book.send(out, "outliers", f"amount outside {lo:,.2f} to {hi:,.2f} ({o.method})")
    k += rows.book.send(absurd, "outliers", f"amount above the ceiling {o.ceiling:,.0f}")
    row = _Book.row("outliers", True, "quarantined", k, rows.amount_of(out | absurd), detail)
    rows.is_outlier = np.zeros(len(out), dtype=bool)
    return row


def _cap_outliers(rows: Rows, absurd: np.ndarray, lo: float, hi: float, detail: str) -> dict:
    o, out, amount = rows.rules.outliers, rows.is_outlier, rows.amount
    k_abs = rows.book.send(absurd, "outliers", f"amount above the ceiling {o.ceiling:,.0f}: not capped (an absurd "
                                               "value is not rewritten)")
    capped = np.clip(amount, lo, hi)
    rows.adj_cap[out] = capped[out] - amount[out]
    amount[out] = capped[out]
    extra = f"; {rows.amount_of(absurd):,.2f} above the ceiling quarantined" if k_abs else ""
    return _Book.row("outliers", True, "capped", out.sum() + k_abs, _sum(rows.adj_cap), detail + extra)


def _flag_outliers(rows: Rows, absurd: np.ndarray, lo: float, hi: float, detail: str) -> dict:
    rows.is_outlier = rows.is_outlier | absurd
    return _Book.row("outliers", True, "flagged", rows.is_outlier.sum(), _sum(rows.amount[rows.is_outlier]), detail)


OUTLIER_ACTIONS: dict[str, Callable[..., dict]] = {"drop": _drop_outliers, "cap": _cap_outliers,
                                                   "flag": _flag_outliers}

#: the cleaning rules in the order they run (each sees only the rows the earlier ones kept)
RULE_ORDER: tuple[Callable[[Rows], list[dict]], ...] = (duplicates, unreadable, implausible, test_ids, returns,
                                                        non_positive, window, outliers)
