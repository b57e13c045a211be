"""Cleaning rules for client transactions, with an audit and a reconciliation.

Every input row ends in exactly one place: kept, quarantined (with a reason),
removed as an exact duplicate, or netted into its purchase (a return). Amounts
reconcile to the cent: see `reconciliation`.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib import i18n, io
from cvlib.errors import InputDataError
from cvlib.io import ROW
from cvlib.params import Cleaning, Study

KEPT, QUARANTINED, DUPLICATE, NETTED = 0, 1, 2, 3

DATE_CANDIDATES = [
    "%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y",
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%d %b %Y", "%b %d, %Y", "%d-%b-%Y", "%Y年%m月%d日",
]
AMBIGUOUS = {"%d/%m/%Y": "%m/%d/%Y", "%m/%d/%Y": "%d/%m/%Y", "%d-%m-%Y": "%m-%d-%Y", "%m-%d-%Y": "%d-%m-%Y"}

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


@dataclass
class CleaningResult:
    """Clean transactions, quarantined rows and the bookkeeping that explains them."""

    clean: pd.DataFrame
    quarantine: pd.DataFrame
    audit: pd.DataFrame
    reconciliation: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    outlier_bounds: tuple[float, float] | None = None
    removed: pd.DataFrame | None = None  # duplicates and netted return rows: source_row, outcome, amount_value

    @property
    def balanced(self) -> bool:
        """True when rows and amounts reconcile (amounts to the cent)."""
        r = self.reconciliation.set_index("term")
        return bool(r.loc["difference", "rows"] == 0 and abs(r.loc["difference", "amount"]) < 0.005)

    def summary(self) -> dict:
        r = self.reconciliation.set_index("term")
        return {
            "rows_in": int(r.loc["input", "rows"]),
            "rows_kept": int(r.loc["kept", "rows"]),
            "rows_quarantined": int(r.loc["quarantined", "rows"]),
            "rows_duplicates": int(r.loc["duplicates removed", "rows"]),
            "rows_netted": int(r.loc["returns netted into purchases", "rows"]),
            "amount_in": float(r.loc["input", "amount"]),
            "amount_kept": float(r.loc["kept", "amount"]),
            "customers": int(self.clean["customer_id"].nunique()),
            "first_date": str(self.clean["date"].min().date()) if len(self.clean) else None,
            "last_date": str(self.clean["date"].max().date()) if len(self.clean) else None,
            "balanced": self.balanced,
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- parsing
def _factorized(s: pd.Series) -> tuple[np.ndarray, pd.Index]:
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return codes, pd.Index(uniques)


def _take(values: np.ndarray, codes: np.ndarray, fill: object) -> np.ndarray:
    out = values[np.where(codes < 0, 0, codes)] if len(values) else np.full(len(codes), fill)
    if len(values):
        out = out.copy()
        out[codes < 0] = fill
    return out


def parse_dates(s: pd.Series, formats: str | list[str] | None = None) -> tuple[pd.Series, list[str]]:
    """Text to datetime (NaT where unreadable). Given formats are tried in order;
    None: formats are inferred (greedily, so mixed formats work) and reported in the notes."""
    if pd.api.types.is_datetime64_any_dtype(s):
        out = s.dt.tz_localize(None) if getattr(s.dt, "tz", None) is not None else s
        return out.astype("datetime64[ns]"), []
    codes, uniques = _factorized(s.astype(io.STRING).str.strip())
    texts = pd.Series(uniques.astype(object), dtype=object)
    parsed = pd.Series(pd.NaT, index=texts.index, dtype="datetime64[ns]")
    which = np.full(len(texts), -1)
    given = [formats] if isinstance(formats, str) else list(formats or [])
    if given:
        order = given
    else:  # choose formats on a sample of distinct values, most successful first
        sample = texts[texts != ""].sample(min(20_000, len(texts)), random_state=0) if len(texts) else texts
        order = []
        while len(sample):
            hits = {f: pd.to_datetime(sample, format=f, errors="coerce").notna() for f in DATE_CANDIDATES if f not in order}
            best = max(hits, key=lambda f: int(hits[f].sum()), default=None)
            if best is None or not hits[best].any():
                break
            order.append(best)
            sample = sample[~hits[best]]
        order += [f for f in DATE_CANDIDATES if f not in order]
    for i, fmt in enumerate(order):
        rem = parsed.isna() & (texts != "")
        if not rem.any():
            break
        hit = pd.to_datetime(texts[rem], format=fmt, errors="coerce").dropna()
        parsed.loc[hit.index] = hit
        which[hit.index.to_numpy()] = i
    rows = np.bincount(which[codes[codes >= 0]] + 1, minlength=len(order) + 1)[1:] if len(codes) else []
    notes: list[str] = []
    for i, n_rows in enumerate(rows):
        if n_rows:
            fmt = order[i]
            note = i18n.t("cleaning.date_format_given" if given else "cleaning.date_format_inferred", fmt=fmt, n=f"{n_rows:,}")
            alt = AMBIGUOUS.get(fmt)
            vals = texts[which == i]
            if not given and alt and pd.to_datetime(vals, format=alt, errors="coerce").notna().all():
                note += i18n.t("cleaning.also_fits", alt=alt)
            notes.append(note)
    out = _take(parsed.to_numpy(dtype="datetime64[ns]"), codes, np.datetime64("NaT"))
    return pd.Series(out, index=s.index, dtype="datetime64[ns]"), notes


_SPACE = "\\s\\x{00a0}\\x{2009}\\x{202f}"
_SIGN = "[+\\-\\x{2212}]"
# a currency symbol (any in Unicode's Sc class, optionally after up to three letters: US$, R$, HK$), an ISO code,
# or a local unit written after the number
_CURRENCY = "(?:[A-Z]{0,3}\\p{Sc}|[A-Z]{3}|元|圆|円|원|kr|zł|Kč|Rs\\.?)"
MAX_DIGITS = 15  # a float64 holds 15 significant decimal digits exactly


def _number_pattern(decimal: str, thousands: str | None, allow_exponent: bool) -> str:
    """RE2 pattern of one plain number: digits, optional consistent grouping, optional decimals."""
    d = re.escape(decimal)
    groupers = [thousands] if thousands else ([",", " ", "'", "\u00a0", "\u2009", "\u202f"] if decimal == "."
                                              else [".", " ", "'", "\u00a0", "\u2009", "\u202f"])
    alts = [f"[0-9]+(?:{d}[0-9]*)?", f"{d}[0-9]+"]
    for g in groupers:
        gx = re.escape(g) if g.isascii() else f"\\x{{{ord(g):04x}}}"
        alts.append(f"[0-9]{{1,3}}(?:{gx}[0-9]{{3}})+(?:{d}[0-9]+)?")
    if decimal == "." and thousands in (None, ","):  # Indian grouping: 12,34,567.89
        alts.append("[0-9]{1,2}(?:,[0-9]{2})+,[0-9]{3}(?:\\.[0-9]+)?")
    if allow_exponent:
        alts.append(f"(?:[0-9]+(?:{d}[0-9]*)?|{d}[0-9]+)[eE][+\\-]?[0-9]{{1,3}}")
    return "(?:" + "|".join(alts) + ")"


def _amount_pattern(decimal: str, thousands: str | None, allow_exponent: bool) -> str:
    w = f"[{_SPACE}]*"
    num = _number_pattern(decimal, thousands, allow_exponent)
    return (f"^{w}(?P<open>\\()?{w}(?P<s1>{_SIGN})?{w}(?P<c1>{_CURRENCY})?{w}(?P<s2>{_SIGN})?{w}(?P<num>{num})"
            f"{w}(?P<c2>{_CURRENCY})?{w}(?P<s3>[\\-\\x{{2212}}])?{w}(?P<close>\\))?{w}$")


def parse_amounts_explained(s: pd.Series, decimal: str = ".", thousands: str | None = None,
                            allow_exponent: bool = False) -> tuple[pd.Series, pd.Series]:
    """Text to float, strictly, with the reason for every value that cannot be read exactly ("" when read).

    A value is one number with at most a currency symbol or code (before or after it), one sign (leading,
    trailing, or accounting parentheses), consistent grouping and one decimal separator. Anything else
    (letters, several numbers, markup, exponent notation unless allowed, more than 15 significant digits) is
    NaN with a reason: never guessed."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        v = pd.to_numeric(s, errors="coerce").astype("float64")
        v = v.where(np.isfinite(v))
        return v, pd.Series(np.where(v.isna(), "amount is empty or not a finite number", ""), index=s.index)
    codes, uniques = _factorized(s.astype(io.STRING))
    u = pa.array(pd.Series(uniques, dtype=object).astype(str).tolist(), type=pa.string()) if len(uniques) else \
        pa.array([], type=pa.string())
    m = pc.extract_regex(u, _amount_pattern(decimal, thousands, allow_exponent))
    ok = m.is_valid().to_numpy(zero_copy_only=False)
    part = {name: pc.fill_null(pc.struct_field(m, name), "").to_numpy(zero_copy_only=False).astype(str)
            for name in ("open", "s1", "c1", "s2", "num", "c2", "s3", "close")}
    signs = (part["s1"] != "").astype(int) + (part["s2"] != "") + (part["s3"] != "")
    paren = part["open"] != ""
    ok &= (paren == (part["close"] != "")) & (signs + paren <= 1) & ~((part["c1"] != "") & (part["c2"] != ""))
    num = pd.Series(part["num"], dtype=object)
    digits = num.str.replace(r"[eE].*$", "", regex=True).str.replace(r"[^0-9]", "", regex=True).str.lstrip("0")
    too_long = ok & (digits.str.len().to_numpy() > MAX_DIGITS)
    ok &= ~too_long
    plain = num.str.replace(f"[^0-9eE+\\-{re.escape(decimal)}]", "", regex=True)
    if decimal != ".":
        plain = plain.str.replace(decimal, ".", regex=False)
    with np.errstate(all="ignore"):
        val = pd.to_numeric(plain.where(ok, None), errors="coerce").to_numpy(dtype=float)
    neg = np.isin(part["s1"], ["-", "\u2212"]) | np.isin(part["s2"], ["-", "\u2212"]) | (part["s3"] != "") | paren
    val = np.where(neg, -val, val)
    val[~ok | ~np.isfinite(val)] = np.nan
    text = pd.Series(uniques, dtype=object).astype(str)
    expo = text.str.fullmatch(r"\s*[+-]?\$?\s*\d+(\.\d*)?[eE][+-]?\d+\s*").to_numpy(dtype=bool)
    reason = np.where(text.str.strip().to_numpy() == "", "amount is empty",
             np.where(too_long, f"amount has more than {MAX_DIGITS} significant digits: it cannot be read exactly",
             np.where(expo & ~allow_exponent, "amount is in exponent notation (set inputs.transactions.allow_exponent: "
                                              "true if the file really writes amounts so)",
                      "amount is not one plain number (letters, several numbers, markup or misplaced separators)")))
    reason = np.where(np.isnan(val), reason, "").astype(object)
    vals = pd.Series(_take(val, codes, np.nan), index=s.index, dtype="float64")
    reasons = pd.Series(_take(reason, codes, "amount is empty"), index=s.index, dtype=object)
    return vals, reasons


def parse_amounts(s: pd.Series, decimal: str = ".", thousands: str | None = None,
                  allow_exponent: bool = False) -> pd.Series:
    """Text to float (NaN where the value cannot be read exactly); see `parse_amounts_explained`."""
    return parse_amounts_explained(s, decimal, thousands, allow_exponent)[0]


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

    def log(self, rule: str, enabled: bool, action: str, rows: int, amount: float, detail: str = "") -> None:
        self.audit.append({"rule": rule, "description": RULES[rule], "enabled": enabled, "action": action,
                           "rows_affected": int(rows), "amount_affected": round(float(amount), 2), "detail": detail})


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
    span = f"{first} to {last_day}"
    # one small code per row, not a text per row (11.8M fixed-width texts took 2.4 GB)
    codes = early.astype(np.int8) + 2 * late.astype(np.int8)
    reason = pd.Categorical.from_codes(codes, categories=["", f"date before the earliest plausible date {first}",
                                                          f"date after the latest plausible date {last_day}"])
    return early | late, reason, span


def clean_transactions(
    raw: pd.DataFrame,
    rules: Cleaning,
    malformed: pd.DataFrame | None = None,
    date_format: str | list[str] | None = None,
    decimal: str = ".",
    thousands: str | None = None,
    allow_exponent: bool = False,
    today: dt.date | None = None,
) -> CleaningResult:
    """Apply the cleaning rules to raw (text) transactions in cvlib's column names."""
    n = len(raw)
    malformed = malformed if malformed is not None else pd.DataFrame(columns=["line", "text", "expected", "got"])
    book = _Book(n)
    notes: list[str] = []
    has = set(raw.columns)

    # 1. exact duplicates (on the file's content, before any parsing)
    content = [c for c in raw.columns if c != ROW]
    amount_parsed, amount_reason = parse_amounts_explained(raw["amount"], decimal, thousands, allow_exponent)
    amount_raw = amount_parsed.to_numpy()
    if rules.duplicates.enabled:
        dup = exact_duplicates(raw, content, amount_raw)
        book.send(dup, "duplicates", "", outcome=DUPLICATE)
        book.log("duplicates", True, "removed", dup.sum(), _sum(amount_raw[dup]))
    else:
        book.log("duplicates", False, "off", 0, 0)

    # 2. coercion with per-row capture
    dates, date_notes = parse_dates(raw["date"], date_format)
    notes += date_notes
    bad_date = dates.isna().to_numpy() & book.alive
    k = book.send(bad_date, "unparseable_date", lambda i: "date cannot be read: " + raw["date"].iloc[i].astype(str).fillna(""))
    book.log("unparseable_date", True, "quarantined", k, _sum(amount_raw[bad_date]))
    bad_amount = np.isnan(amount_raw)
    k = book.send(bad_amount, "unparseable_amount", lambda i: (
        "amount cannot be read exactly: " + raw["amount"].iloc[i].astype(str).fillna("").map(
            lambda v: repr(v) if len(v) <= 80 else repr(v[:80]) + f"... ({len(v):,} characters)").to_numpy()
        + " (" + amount_reason.iloc[i].to_numpy().astype(str) + ")"))
    book.log("unparseable_amount", True, "quarantined", k, 0.0)
    blank_id = _blank(raw["customer_id"]) & book.alive
    k = book.send(blank_id, "missing_customer_id", "customer id is empty")
    book.log("missing_customer_id", True, "quarantined", k, _sum(amount_raw[blank_id]))
    dr = rules.dates
    if dr.enabled:
        odd, why, span = implausible_dates(dates.where(pd.Series(book.alive, index=dates.index)), dr.earliest,
                                           dr.latest, dr.after_bulk_days, today)
        odd &= book.alive
        k = book.send(odd, "implausible_date", lambda i: np.asarray(why[i], dtype=object))
        book.log("implausible_date", True, "quarantined", k, _sum(amount_raw[odd]), i18n.t("cleaning.plausible", span=span))
        if k:
            notes.append(i18n.t("cleaning.implausible_note", n=f"{k:,}", span=span))
    else:
        book.log("implausible_date", False, "off", 0, 0)

    cust = raw["customer_id"].astype(io.STRING).str.strip()
    amount = np.where(np.isnan(amount_raw), 0.0, amount_raw).astype("float64")
    adj_net = np.zeros(n)
    adj_cap = np.zeros(n)

    # 3. test / internal ids
    if rules.test_ids.enabled and rules.test_ids.ids:
        test = cust.isin([str(i).strip() for i in rules.test_ids.ids]).fillna(False).to_numpy(dtype=bool)
        before = book.alive.copy()
        k = book.send(test, "test_ids", "test or internal customer id")
        book.log("test_ids", True, "quarantined", k, _sum(amount_raw[test & before]))
    else:
        book.log("test_ids", rules.test_ids.enabled, "off" if not rules.test_ids.enabled else "none listed", 0, 0)

    # 4. returns and cancellations
    order = raw["order_id"].astype(io.STRING).str.strip() if "order_id" in has else None
    if rules.returns.enabled:
        is_ret = amount < 0
        if rules.returns.flag_values and "return_flag" in has:
            flagged = raw["return_flag"].astype(io.STRING).str.strip().isin(rules.returns.flag_values).fillna(False)
            is_ret |= flagged.to_numpy(dtype=bool)
        if rules.returns.invoice_prefix and order is not None:
            is_ret |= order.str.startswith(rules.returns.invoice_prefix).fillna(False).to_numpy(dtype=bool)
        is_ret &= book.alive
        flip = is_ret & (amount > 0)
        amount[flip] = -amount[flip]
        if rules.returns.action == "drop":
            before = book.alive.copy()
            k = book.send(is_ret, "returns", "return or cancellation dropped (cleaning.returns.action = drop)")
            book.log("returns", True, "quarantined", k, _sum(amount_raw[is_ret & before]))
        else:
            k_net, k_unmatched, changed = _net_returns(book, is_ret, cust, order, dates, amount, adj_net, raw, rules)
            book.log("returns", True, "netted", k_net, _sum(amount_raw[book.outcome == NETTED]),
                     i18n.t("cleaning.netted", changed=f"{changed:,}", unmatched=f"{k_unmatched:,}"))
    else:
        book.log("returns", False, "off", 0, 0)

    # 5. zero or negative amounts left
    written_zero = (amount_raw == 0) & (adj_net == 0)
    if rules.non_positive.enabled:
        kept_zero = book.alive & written_zero if rules.non_positive.keep_zero else np.zeros(n, dtype=bool)
        nonpos = book.alive & (amount <= 0) & ~kept_zero
        k = book.send(nonpos, "non_positive", lambda i: np.where(
            adj_net[i] < 0, "amount is zero or negative after netting returns",
            np.where(amount[i] < 0, "negative amount", "zero amount")))
        book.log("non_positive", True, "quarantined", k, _sum(amount_raw[nonpos]),
                 i18n.t("cleaning.kept_zero", n=f"{int(kept_zero.sum()):,}")
                 if kept_zero.any() else "")
    else:
        book.log("non_positive", False, "off", 0, 0)

    # 6. analysis window
    w = rules.window
    if w.enabled and (w.start or w.end):
        d = dates.to_numpy()
        out = np.zeros(n, dtype=bool)
        if w.start:
            out |= d < np.datetime64(w.start)
        if w.end:
            out |= d >= np.datetime64(w.end) + np.timedelta64(1, "D")
        out &= ~np.isnat(d)
        before = book.alive.copy()
        k = book.send(out, "window", f"date outside the analysis window {w.start or '...'} to {w.end or '...'}")
        book.log("window", True, "quarantined", k, _sum(amount_raw[out & before]))
    else:
        book.log("window", w.enabled, "off" if not w.enabled else "no window set", 0, 0)

    # 7. outliers
    is_outlier = np.zeros(n, dtype=bool)
    bounds = None
    o = rules.outliers
    absurd = book.alive & (np.abs(amount) > o.ceiling) if o.enabled and o.ceiling else np.zeros(n, dtype=bool)
    judged = book.alive & ~absurd & (amount > 0)  # $0 purchase occasions are not amounts to judge or cap
    if o.enabled and judged.sum() >= 4:
        lo, hi = bounds = outlier_bounds(amount[judged], o.method, o.threshold, o.log_scale)
        is_outlier = judged & ((amount < lo) | (amount > hi))
        detail = i18n.t("cleaning.outlier_log" if o.log_scale else "cleaning.outlier", method=o.method,
                        threshold=f"{o.threshold:g}", lo=f"{lo:,.2f}", hi=f"{hi:,.2f}")
    else:
        lo, hi, detail = -np.inf, np.inf, ""
    if absurd.any():
        detail += (f"; {int(absurd.sum()):,} amounts above the ceiling {o.ceiling:,.0f} "
                   f"({'quarantined' if o.action != 'flag' else 'flagged'}, never rewritten)")
    if o.enabled and (bounds is not None or absurd.any()):
        if o.action == "drop":
            k = book.send(is_outlier, "outliers", f"amount outside {lo:,.2f} to {hi:,.2f} ({o.method})")
            k += book.send(absurd, "outliers", f"amount above the ceiling {o.ceiling:,.0f}")
            book.log("outliers", True, "quarantined", k, _sum(amount_raw[is_outlier | absurd]), detail.lstrip("; "))
            is_outlier[:] = False
        elif o.action == "cap":
            k_abs = book.send(absurd, "outliers", f"amount above the ceiling {o.ceiling:,.0f}: not capped (an "
                                                  "absurd value is not rewritten)")
            capped = np.clip(amount, lo, hi)
            adj_cap[is_outlier] = capped[is_outlier] - amount[is_outlier]
            amount[is_outlier] = capped[is_outlier]
            extra = f"; {_sum(amount_raw[absurd]):,.2f} above the ceiling quarantined" if k_abs else ""
            book.log("outliers", True, "capped", is_outlier.sum() + k_abs, _sum(adj_cap), detail.lstrip("; ") + extra)
        else:
            is_outlier |= absurd
            book.log("outliers", True, "flagged", is_outlier.sum(), _sum(amount[is_outlier]), detail.lstrip("; "))
    else:
        book.log("outliers", o.enabled, "off" if not o.enabled else "too few rows", 0, 0)

    # outputs
    keep = book.alive
    clean = pd.DataFrame({ROW: raw[ROW].to_numpy()[keep], "customer_id": cust.to_numpy()[keep],
                          "date": dates.to_numpy()[keep], "amount": amount[keep]})
    clean["customer_id"] = clean["customer_id"].astype(io.STRING)
    for col in ("quantity", "cost", "margin"):
        if col in has:
            clean[col] = parse_amounts(raw[col], decimal, thousands).to_numpy()[keep]
    for col in ("order_id", "product", "channel"):
        if col in has:
            clean[col] = raw[col].astype(io.STRING).str.strip().to_numpy()[keep]
            clean[col] = clean[col].astype(io.STRING)
    if (adj_net[keep] != 0).any() or (adj_cap[keep] != 0).any():
        clean["amount_original"] = amount_raw[keep]
    if o.enabled and o.action == "flag":
        clean["is_outlier"] = is_outlier[keep]

    quarantine = _quarantine_frame(raw, book, amount_raw, amount, malformed)
    audit = pd.DataFrame(book.audit)
    if len(malformed):
        audit = pd.concat([pd.DataFrame([{"rule": "malformed_line", "description": RULES["malformed_line"],
                                          "enabled": True, "action": "quarantined", "rows_affected": len(malformed),
                                          "amount_affected": 0.0, "detail": ""}]), audit], ignore_index=True)
    recon = reconciliation(raw_rows=n + len(malformed), amount_in=_sum(amount_raw), clean=clean, quarantine=quarantine,
                           duplicates=(int((book.outcome == DUPLICATE).sum()), _sum(amount_raw[book.outcome == DUPLICATE])),
                           netted=(int((book.outcome == NETTED).sum()),
                                   _sum(amount_raw[book.outcome == NETTED]) - _sum(adj_net[book.alive])),
                           capped=-_sum(adj_cap[book.alive]))
    gone = np.flatnonzero((book.outcome == DUPLICATE) | (book.outcome == NETTED))
    removed = pd.DataFrame({ROW: raw[ROW].to_numpy()[gone],
                            "outcome": np.where(book.outcome[gone] == DUPLICATE, "duplicate", "netted"),
                            "amount_value": amount_raw[gone]})
    return CleaningResult(clean=clean, quarantine=quarantine, audit=audit, reconciliation=recon, notes=notes,
                          outlier_bounds=bounds, removed=removed)


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


def outlier_bounds(x: np.ndarray, method: str, threshold: float, log_scale: bool = True) -> tuple[float, float]:
    """Lower and upper bounds of ordinary amounts (quantile: upper only)."""
    x = np.asarray(x, dtype=float)
    v = np.log(x[x > 0]) if log_scale else x
    if len(v) == 0:
        return -np.inf, np.inf
    if method == "iqr":
        q1, q3 = np.quantile(v, [0.25, 0.75])
        lo, hi = q1 - threshold * (q3 - q1), q3 + threshold * (q3 - q1)
    elif method == "zscore":
        mu, sd = float(np.mean(v)), float(np.std(v))
        lo, hi = mu - threshold * sd, mu + threshold * sd
    else:
        lo, hi = -np.inf, float(np.quantile(v, threshold))
    if log_scale:
        lo, hi = (np.exp(lo) if np.isfinite(lo) else -np.inf), float(np.exp(hi))
    return float(lo), float(hi)


def _quarantine_frame(raw: pd.DataFrame, book: _Book, amount_raw: np.ndarray, amount: np.ndarray,
                      malformed: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in raw.columns]
    if book.parts:
        parts = pd.concat(book.parts, ignore_index=True).sort_values("_pos")
        pos = parts["_pos"].to_numpy()
        q = raw.iloc[pos][cols].reset_index(drop=True).astype({c: "string" for c in cols if c != ROW})
        q.insert(1, "rule", parts["rule"].to_numpy())
        q.insert(2, "reason", parts["reason"].to_numpy())
        q["amount_value"] = amount_raw[pos]
        q["amount_after_netting"] = amount[pos]
    else:
        q = pd.DataFrame(columns=[ROW, "rule", "reason", *[c for c in cols if c != ROW], "amount_value",
                                  "amount_after_netting"])
    if len(malformed):
        rows = malformed[ROW] if ROW in malformed.columns else pd.Series(pd.NA, index=malformed.index)
        m = pd.DataFrame({ROW: rows.to_numpy(), "rule": "malformed_line",
                          "reason": [f"file row {ln}: expected {e} fields, found {g}" for ln, e, g in
                                     zip(malformed["line"], malformed["expected"], malformed["got"])],
                          "raw_line": malformed["text"].astype(str).to_numpy()})
        if "customer_id" in malformed.columns:
            m["customer_id"] = malformed["customer_id"].astype(str).to_numpy()
        q = pd.concat([m, q], ignore_index=True).sort_values(ROW, kind="stable", na_position="first")
        q = q.reset_index(drop=True)
    return q


def reconciliation(raw_rows: int, amount_in: float, clean: pd.DataFrame, quarantine: pd.DataFrame,
                   duplicates: tuple[int, float], netted: tuple[int, float], capped: float) -> pd.DataFrame:
    """Rows and amounts of the input against the outputs.

    rows in = kept + quarantined + duplicates removed + returns netted;
    amount in = kept + quarantined + duplicates + netting effect + capping (to the cent).
    """
    rows = [
        ("input", raw_rows, amount_in, "rows read (malformed lines included); amounts as written in the file"),
        ("kept", len(clean), float(clean["amount"].sum()), "clean rows; amounts after netting and capping"),
        ("quarantined", len(quarantine), float(pd.to_numeric(quarantine["amount_value"], errors="coerce").sum()),
         "amounts as written in the file"),
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


# --------------------------------------------------------------------------- the stage
def run_cleaning(study: Study, run_dir: str | Path) -> CleaningResult:
    """Read the study's transactions, clean them, write the stage outputs into run_dir."""
    raw, malformed = io.read_transactions(study)
    if len(raw) == 0:
        raise InputDataError(f"{study.resolve(study.inputs.transactions.path)} has no data rows.")
    spec = study.inputs.transactions
    result = clean_transactions(raw, study.cleaning, malformed, spec.date_format, spec.decimal, spec.thousands,
                                spec.allow_exponent)
    check_reconciliation(result)
    if len(result.clean) == 0:
        sample = result.quarantine.head(5).to_string()
        raise InputDataError(
            f"No rows survived cleaning of {study.resolve(spec.path)}. First quarantined rows:\n{sample}\n"
            "Check the column mapping, date_format, decimal/thousands and the analysis window in the params file."
        )
    run_dir = Path(run_dir)
    io.write_parquet(result.clean, run_dir / "transactions_clean.parquet")
    io.write_csv(result.quarantine, run_dir / "quarantine.csv")
    io.write_json({"summary": result.summary(), "audit": result.audit.to_dict("records"),
                   "reconciliation": result.reconciliation.to_dict("records")}, run_dir / "cleaning.json")
    return result


# --------------------------------------------------------------------------- profile of the clean data
def monthly_activity(clean: pd.DataFrame) -> pd.DataFrame:
    """Revenue, transactions and active customers per calendar month."""
    m = clean.assign(month=clean["date"].dt.to_period("M"))
    out = m.groupby("month").agg(revenue=("amount", "sum"), transactions=("amount", "size"),
                                 active_customers=("customer_id", "nunique")).reset_index()
    out["month"] = out["month"].dt.to_timestamp()
    return out


def coverage(clean: pd.DataFrame) -> pd.DataFrame:
    """One-row overview: dates covered, customers, transactions, revenue."""
    return pd.DataFrame([{
        "first date": clean["date"].min().date(), "last date": clean["date"].max().date(),
        "days covered": int((clean["date"].max() - clean["date"].min()).days) + 1,
        "customers": clean["customer_id"].nunique(), "transactions": len(clean),
        "revenue": clean["amount"].sum(), "mean transaction": clean["amount"].mean(),
    }])


def top_customers(clean: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The n customers with the highest revenue, with their share of the total."""
    g = clean.groupby("customer_id", observed=True).agg(revenue=("amount", "sum"), transactions=("amount", "size"),
                                                        first=("date", "min"), last=("date", "max"))
    g["share_of_revenue"] = g["revenue"] / clean["amount"].sum()
    return g.sort_values("revenue", ascending=False).head(n).reset_index()


def check_reconciliation(result: CleaningResult) -> None:
    """Raise if rows or amounts do not reconcile (the report must not go out then)."""
    if not result.balanced:
        raise AssertionError("Cleaning does not reconcile; do not use this run:\n" + result.reconciliation.to_string())


def quarantine_by_reason(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows and their amount (as written in the file) per rule."""
    if quarantine.empty:
        return pd.DataFrame({"rule": ["(none)"], "rows": [0], "amount": [0.0]})
    q = quarantine.assign(amount=pd.to_numeric(quarantine["amount_value"], errors="coerce"))
    return q.groupby("rule").agg(rows=("rule", "size"), amount=("amount", "sum")).reset_index().sort_values(
        "rows", ascending=False)

