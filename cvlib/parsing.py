"""Reading client values exactly: dates (formats given, or inferred and reported, ambiguous day/month orders
named) and amounts (a strict grammar: one number, a currency sign or code, one sign, consistent grouping; anything
else cannot be read exactly and is left unread with the reason, never guessed)."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from cvlib import i18n, io

DATE_CANDIDATES = [
    "%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y",
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%d %b %Y", "%b %d, %Y", "%d-%b-%Y", "%Y年%m月%d日",
]
AMBIGUOUS = {"%d/%m/%Y": "%m/%d/%Y", "%m/%d/%Y": "%d/%m/%Y", "%d-%m-%Y": "%m-%d-%Y", "%m-%d-%Y": "%d-%m-%Y"}


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
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques)) if len(codes) else np.zeros(0, np.int64)
    parsed, notes = parse_date_values(pd.Series(uniques.astype(object), dtype=object), counts, formats)
    out = _take(parsed.to_numpy(dtype="datetime64[ns]"), codes, np.datetime64("NaT", "ns"))
    return pd.Series(out, index=s.index, dtype="datetime64[ns]"), notes


def parse_date_values(texts: pd.Series, counts: np.ndarray, formats: str | list[str] | None = None
                      ) -> tuple[pd.Series, list[str]]:
    """`parse_dates` on distinct stripped texts (in order of first appearance) that occur `counts` times: the
    parsed value of each, and the notes (rows read per format). An engine sends only its distinct values here."""
    texts = texts.reset_index(drop=True)
    parsed = pd.Series(pd.NaT, index=texts.index, dtype="datetime64[ns]")
    which = np.full(len(texts), -1)
    given = [formats] if isinstance(formats, str) else list(formats or [])
    order = given or _inferred_order(texts)
    for i, fmt in enumerate(order):
        rem = parsed.isna() & (texts != "")
        if not rem.any():
            break
        hit = pd.to_datetime(texts[rem], format=fmt, errors="coerce").dropna()
        parsed.loc[hit.index] = hit
        which[hit.index.to_numpy()] = i
    rows = np.bincount(which + 1, weights=counts, minlength=len(order) + 1)[1:].astype(np.int64) if len(texts) \
        else []
    notes: list[str] = []
    for i, n_rows in enumerate(rows):
        if n_rows:
            fmt = order[i]
            note = i18n.t("cleaning.date_format_given" if given else "cleaning.date_format_inferred", fmt=fmt,
                          n=f"{n_rows:,}")
            alt = AMBIGUOUS.get(fmt)
            vals = texts[which == i]
            if not given and alt and pd.to_datetime(vals, format=alt, errors="coerce").notna().all():
                note += i18n.t("cleaning.also_fits", alt=alt)
            notes.append(note)
    return parsed, notes


def _inferred_order(texts: pd.Series) -> list[str]:
    """The candidate formats, those that read most of a sample of the distinct values first."""
    filled = texts[texts != ""]
    sample = filled.sample(min(20_000, len(filled)), random_state=0)
    order: list[str] = []
    while len(sample):
        hits = {f: pd.to_datetime(sample, format=f, errors="coerce").notna() for f in DATE_CANDIDATES
                if f not in order}
        best = max(hits, key=lambda f: int(hits[f].sum()), default=None)
        if best is None or not hits[best].any():
            break
        order.append(best)
        sample = sample[~hits[best]]
    return order + [f for f in DATE_CANDIDATES if f not in order]


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
