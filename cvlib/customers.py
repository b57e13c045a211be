"""The per-customer kernel: customer codes, purchase occasions, per-customer sums and the customer summary
(x, t_x, T, monetary), purchase cycles at a date. Every stage counts a customer's purchases here.

Ids are coded once (Arrow's dictionary encoding, in order of first appearance) and the summary is one sort of
(customer, day) keys: no per-customer Python, so 10M transactions of 1M customers take a few seconds. The
default path of a study is the same summary computed by DuckDB (`cvlib.engines.summary`, tested equal).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cvlib import io
from cvlib.occasions import occasion_days, period_numbers

UNIT_DAYS = {"days": 1.0, "weeks": 7.0}


KEY32_LIMIT = 2**32  # customers x days up to this: (customer, day) keys sorted as uint32, half the memory of int64


# --------------------------------------------------------------------------- occasions
def occasions(tx: pd.DataFrame, by: str = "day") -> pd.DataFrame:
    """Purchase occasions (`by`: OCCASIONS): one row per customer and occasion, with its first day and value.

    Sorted by customer, then date. Columns: customer (int code), day (int days since epoch), value.
    The customer codes index `customer_ids` returned in `.attrs['customer_ids']`.
    """
    if "_code" in tx.columns:
        codes, uniques = tx["_code"].to_numpy(), None
    else:
        codes, uniques = customer_codes(tx["customer_id"])
    day = tx["date"].to_numpy(dtype="datetime64[ns]").view(np.int64) // 86_400_000_000_000
    amount = tx["amount"].to_numpy(dtype=np.float64)
    codes = codes.astype(np.int64)
    if by == "order":
        ocodes, _ = pd.factorize(tx["order_id"])
        key = codes * (int(ocodes.max()) + 2) + ocodes.astype(np.int64)
        uk, inv = np.unique(key, return_inverse=True)
        value = np.bincount(inv, weights=amount, minlength=len(uk))
        first_day = np.full(len(uk), np.iinfo(np.int64).max)
        np.minimum.at(first_day, inv, day)
        cust = uk // (int(ocodes.max()) + 2)
        order = np.lexsort((first_day, cust))
        out = pd.DataFrame({"customer": cust[order], "day": first_day[order], "value": value[order]})
    else:
        day = occasion_days(codes, day, by)
        d0 = int(day.min()) if len(day) else 0
        span = int(day.max() - d0 + 1) if len(day) else 1
        key = codes * span + (day - d0)
        uk, inv = np.unique(key, return_inverse=True)
        value = np.bincount(inv, weights=amount, minlength=len(uk))
        out = pd.DataFrame({"customer": uk // span, "day": uk % span + d0, "value": value})
    out.attrs["customer_ids"] = uniques
    out.attrs["customer_codes"] = out["customer"].to_numpy()
    return out


def customer_codes(ids: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer code per row (0..n-1, every code used) and the distinct ids, in order of first appearance.

    Arrow-backed text ids keep their distinct values Arrow-backed (no Python string objects)."""
    if isinstance(ids.dtype, pd.CategoricalDtype):
        ids = ids.cat.remove_unused_categories()
        return ids.cat.codes.to_numpy().astype(np.int64), pd.Index(ids.cat.categories.astype(str))
    if isinstance(ids.dtype, pd.StringDtype) and ids.dtype.storage == "pyarrow":
        enc = pc.dictionary_encode(io.arrow_strings(ids))  # codes in order of first appearance
        return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), _text_index(enc.dictionary)
    codes, uniques = pd.factorize(ids)
    return codes.astype(np.int64), pd.Index(uniques.astype(str))


def _text_index(distinct) -> pd.Index:
    """Arrow text values as an Arrow-backed text Index (no Python string objects)."""

    return pd.Index(pd.array(distinct.cast(pa.large_string()), dtype=io.STRING))


def _checked(codes: np.ndarray, ids: pd.Index) -> np.ndarray:
    """The codes, once checked to number every row's customer 0..n-1 (a missing id has none)."""
    if len(codes) and (codes.min() < 0 or len(ids) != int(codes.max()) + 1):
        raise ValueError("customer_summary needs a customer id on every row: clean the transactions first")
    return codes


def _day_side(ids: pd.Series, day: np.ndarray, amount: np.ndarray,
              by: str = "day") -> tuple[pd.Index, dict[str, np.ndarray]]:
    """The distinct ids in order of first appearance and their per-customer aggregates of occasions by day, week or
    month (each dated by its first day)."""
    codes, distinct = customer_codes(ids)
    codes = _checked(codes, distinct)
    agg = _per_customer_days(codes, occasion_days(codes, day, by), amount, len(distinct))
    if by in ("week", "month"):  # recency from the last purchase day, not from the last occasion's first day
        agg["last_buy"] = np.full(len(distinct), np.iinfo(np.int64).min)
        np.maximum.at(agg["last_buy"], codes, day)
    return distinct, agg


def customer_sums(ids: pd.Series, **values: Any) -> pd.DataFrame:
    """Sums of `values` (arrays or Series in the rows' order) per customer, indexed by customer id in id order,
    as a groupby gives (missing values count as 0): the ids coded once by `customer_codes` (digit ids read as
    numbers, no hashing), the sums by `bincount`."""
    codes, distinct = customer_codes(io.as_ids(ids))
    return pd.DataFrame({k: np.bincount(codes, weights=np.nan_to_num(np.asarray(v, dtype=float)),
                                        minlength=len(distinct)) for k, v in values.items()},
                        index=distinct.rename("customer_id")).sort_index()


def _per_customer_days(codes: np.ndarray, day: np.ndarray, amount: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Occasions = distinct days: the (customer, day) pairs sorted once, counted per customer.

    Every code 0..n-1 must occur. Written to allocate few large arrays (in place, 32-bit keys where
    they fit): on a kernel that compacts memory for huge pages, each fresh large array can stall."""
    d0 = int(day.min())
    span = int(day.max()) - d0 + 1
    pairs = np.empty(len(codes), dtype=np.uint32 if n * span <= KEY32_LIMIT else np.int64)
    np.multiply(codes, span, out=pairs, casting="unsafe")  # modular arithmetic: only the final key must fit
    np.add(pairs, day, out=pairs, casting="unsafe")
    np.subtract(pairs, np.int64(d0), out=pairs, casting="unsafe")
    pairs.sort()  # by customer, then day
    new_day = np.empty(len(pairs), dtype=bool)
    new_day[0] = True
    np.not_equal(pairs[1:], pairs[:-1], out=new_day[1:])
    start = np.searchsorted(pairs, (np.arange(n) * span).astype(pairs.dtype))  # each customer's first pair
    end = np.append(start[1:], len(pairs)) - 1
    first = (pairs[start] % span).astype(np.int64) + d0
    last = (pairs[end] % span).astype(np.int64) + d0
    count = np.add.reduceat(new_day.view(np.uint8), start, dtype=np.int64)  # uint8: several times faster than bool
    on_first = day == first[codes]  # the few rows on each customer's first day
    first_value = np.bincount(codes[on_first], weights=amount[on_first], minlength=n)
    return {"first": first, "last": last, "count": count,
            "total": np.bincount(codes, weights=amount, minlength=n), "first_value": first_value}


def order_codes(orders: pd.Series) -> np.ndarray:
    """Integer code per row's order id (Arrow's dictionary encoding: '007' and '7' are different orders)."""
    return pc.dictionary_encode(io.arrow_strings(orders)).indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _order_side(tx: pd.DataFrame, day: np.ndarray) -> tuple[np.ndarray, ...]:
    """Order code per row, and each order's first day and value."""
    ocode = order_codes(tx["order_id"])
    k = int(ocode.max()) + 1
    o_day = np.full(k, np.iinfo(np.int64).max)
    np.minimum.at(o_day, ocode, day)
    return ocode, o_day, np.bincount(ocode, weights=tx["amount"].to_numpy(dtype=np.float64), minlength=k)


def _per_customer_orders(codes: np.ndarray, n: int, ocode: np.ndarray, o_day: np.ndarray,
                         o_value: np.ndarray) -> dict[str, np.ndarray]:
    """Occasions = distinct orders, each dated by its first row and belonging to its first row's customer."""
    k = len(o_day)
    o_row = np.full(k, len(codes), dtype=np.int64)
    np.minimum.at(o_row, ocode, np.arange(len(codes), dtype=np.int64))  # each order's first row
    present = np.flatnonzero(o_row < len(codes))  # codes that are orders (offset codes can have gaps)
    o_cust = codes[o_row[present]]  # the customer of each order's first row
    o_day, o_value = o_day[present], o_value[present]
    k = len(present)
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(first, o_cust, o_day)
    np.maximum.at(last, o_cust, o_day)
    # the first occasion: the customer's earliest order (ties: the order seen first in the data)
    on_first = np.flatnonzero(o_day == first[o_cust])
    pick = np.full(n, k)
    np.minimum.at(pick, o_cust[on_first], on_first)
    return {"first": first, "last": last, "count": np.bincount(o_cust, minlength=n),
            "total": np.bincount(o_cust, weights=o_value, minlength=n), "first_value": o_value[np.minimum(pick, k - 1)]}


def customer_summary(tx: pd.DataFrame, end: pd.Timestamp | dt.date | None = None, by: str = "day",
                     unit: str = "weeks") -> pd.DataFrame:
    """One row per customer at the observation end (transactions after it are ignored).

    RFM in days: recency (end - last purchase), frequency (occasions: `by` in OCCASIONS), monetary (total) and
    monetary_mean (per occasion), tenure (end - first). CLV inputs in `unit`: x (repeat
    occasions), t_x (last - first occasion), T (end - first), monetary_value (mean of repeat occasions, 0 if none).
    A week's or a month's occasion is dated by its first purchase day.
    """
    end = (pd.Timestamp(end) if end is not None else tx["date"].max()).normalize()
    day = tx["date"].to_numpy(dtype="datetime64[ns]").view(np.int64) // 86_400_000_000_000
    end_day = int(end.value // 86_400_000_000_000)
    if (day > end_day).any():
        tx, day = tx[day <= end_day], day[day <= end_day]
    amount = tx["amount"].to_numpy(dtype=np.float64)
    if len(tx) == 0:
        ids = customer_codes(tx["customer_id"])[1]
        agg = {k: np.zeros(0, dtype=np.int64) for k in ("first", "last", "count")}
        agg.update(total=np.zeros(0), first_value=np.zeros(0))
    elif by == "order":
        codes, ids = customer_codes(tx["customer_id"])
        agg = _per_customer_orders(_checked(codes, ids), len(ids), *_order_side(tx, day))
    else:
        ids, agg = _day_side(tx["customer_id"], day, amount, by)
    first, last, count, total = agg["first"], agg["last"], agg["count"], agg["total"]
    last_buy = agg.get("last_buy", last)
    k = UNIT_DAYS[unit]
    x = count - 1
    out = pd.DataFrame({
        "customer_id": pd.array(ids, dtype=io.STRING),
        "first_purchase": (first * 86_400_000_000_000).astype("datetime64[ns]"),
        "last_purchase": (last_buy * 86_400_000_000_000).astype("datetime64[ns]"),
        "recency": (end_day - last_buy).astype(np.int64),
        "frequency": count.astype(np.int64),
        "monetary": total,
        "monetary_mean": total / np.maximum(count, 1),
        "tenure": (end_day - first).astype(np.int64),
        "x": x.astype(np.int64),
        "t_x": (last - first) / k,
        "T": (end_day - first) / k,
        "monetary_value": np.where(x > 0, (total - agg["first_value"]) / np.maximum(x, 1), 0.0),
    }, copy=False)  # fresh arrays: kept as they are, not copied into blocks
    out.attrs["end"] = end
    return out


def calibration_holdout(tx: pd.DataFrame, calibration_end: dt.date, holdout_end: dt.date | None = None,
                        by: str = "day", unit: str = "weeks") -> pd.DataFrame:
    """CLV summary at calibration_end for customers first seen by then, with their holdout
    occasions (`x_holdout`), spend (`spend_holdout`) and the holdout length (`duration_holdout`, in unit)."""
    cal_end = pd.Timestamp(calibration_end)
    hold_end = pd.Timestamp(holdout_end) if holdout_end else tx["date"].max().normalize()
    cal = customer_summary(tx, cal_end, by, unit)
    after = tx[(tx["date"] > cal_end + pd.Timedelta(days=1) - pd.Timedelta(1, "ns"))
               & (tx["date"] < hold_end + pd.Timedelta(days=1))]
    after = after[after["customer_id"].isin(cal["customer_id"])]
    if len(after):
        occ = occasions(after, by)
        ids = occ.attrs["customer_ids"].astype(str)
        hold = pd.DataFrame({"customer_id": ids[occ["customer"].to_numpy()], "value": occ["value"].to_numpy()})
        agg = hold.groupby("customer_id").agg(x_holdout=("value", "size"), spend_holdout=("value", "sum"))
    else:
        agg = pd.DataFrame(columns=["x_holdout", "spend_holdout"])
    ids = cal["customer_id"].astype(str)
    cal["x_holdout"] = ids.map(agg["x_holdout"]).fillna(0).astype(np.int64).to_numpy()
    cal["spend_holdout"] = ids.map(agg["spend_holdout"]).fillna(0.0).astype(float).to_numpy()
    cal["duration_holdout"] = (hold_end.normalize() - cal_end.normalize()).days / UNIT_DAYS[unit]
    return cal


DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class Purchases:
    """Transactions as integers, computed once for every cutoff: each row's customer (a code into `ids`, which
    are sorted, so customers come out in id order as a sort would give them), its timestamp and its day."""
    ids: pd.Index
    code: np.ndarray
    ns: np.ndarray
    day: np.ndarray
    amount: np.ndarray


def purchases(tx: pd.DataFrame) -> Purchases:
    """The transactions' customer codes, times, days and amounts."""
    codes, ids = pd.factorize(io.as_ids(tx["customer_id"]), sort=True)
    ns = tx["date"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return Purchases(pd.Index(ids, name="customer_id"), codes.astype(np.int64), ns, np.floor_divide(ns, DAY_NS),
                     tx["amount"].to_numpy(dtype=float))


def until(p: Purchases, at: pd.Timestamp) -> Purchases:
    """The purchases on or before the day of `at`, with only the customers who have one among them."""
    cut = p.ns < _next_day(at).value
    if cut.all():
        return p
    code = p.code[cut]
    keep = np.unique(code)
    new = np.full(len(p.ids), -1, dtype=np.int64)
    new[keep] = np.arange(len(keep))
    return Purchases(p.ids[keep], new[code], p.ns[cut], p.day[cut], p.amount[cut])


def cycles_at(p: Purchases, at: pd.Timestamp) -> pd.DataFrame:
    """Per customer who bought on or before the day of `at` (index: customer id, in id order): distinct purchase
    days (occasions), first and last day (day numbers), median and mean gap between purchase days in days, the
    gaps' coefficient of variation, total spend, and the customer's code in `p`. Integer keys and sorting, no
    per-customer Python."""
    cut = p.ns < _next_day(at).value
    whole = bool(cut.all())  # a cutoff after the last purchase: the arrays as they are, no copies
    code, day, amount = (p.code, p.day, p.amount) if whole else (p.code[cut], p.day[cut], p.amount[cut])
    if not len(code):
        return pd.DataFrame(columns=["code", "occasions", "first", "last", "median_gap", "mean_gap", "gap_cv", "spend"],
                            index=pd.Index([], name="customer_id"))
    d0 = int(day.min())
    span = int(day.max()) - d0 + 1
    key = code * span + (day - d0)
    key.sort()  # distinct (customer, day), by customer then day: a sort (numpy's hashed unique is slower here)
    key = key[np.r_[True, key[1:] != key[:-1]]]
    c, d = key // span, key % span + d0
    new = np.r_[True, c[1:] != c[:-1]]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(c)]
    cust = c[starts]
    occ = ends - starts
    same = ~new[1:]
    gap_days = np.diff(d)[same]  # whole days, 1 .. span - 1
    gap_of = (np.cumsum(new) - 1)[1:][same]  # the position of each gap's customer in `cust` (non-decreasing)
    gap = gap_days.astype(float)
    n_gaps = np.bincount(gap_of, minlength=len(cust))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(gap_of, weights=gap, minlength=len(cust)) / n_gaps
        sd = np.sqrt(np.bincount(gap_of, weights=(gap - mean[gap_of]) ** 2, minlength=len(cust)) / n_gaps)
        cv = sd / mean
    # gaps sorted within each customer (the median is the middle one or two): one sort of customer * span + gap,
    # whose customer part stays in place, as `gap_of` is already in order (several times faster than a lexsort)
    sg = gap_of * span + gap_days
    sg.sort()
    sg = (sg - gap_of * span).astype(float)
    g_start = np.r_[0, np.cumsum(n_gaps)[:-1]]
    has = n_gaps > 0
    median = np.full(len(cust), np.nan)
    lo, hi = g_start[has] + (n_gaps[has] - 1) // 2, g_start[has] + n_gaps[has] // 2
    median[has] = (sg[lo] + sg[hi]) / 2
    spend = np.bincount(code, weights=amount, minlength=len(p.ids))[cust]
    return pd.DataFrame({"code": cust, "occasions": occ, "first": d[starts], "last": d[ends - 1], "median_gap": median,
                         "mean_gap": mean, "gap_cv": cv, "spend": spend}, index=p.ids[cust])


def occasion_periods(p: Purchases, occasion: str = "day") -> Purchases:
    """The purchases with each row's day replaced by its purchase occasion's period (`period_numbers`). Monthly
    billing of several service lines on different days is one occasion a month, not a purchase every few days."""
    return p if occasion in ("day", "order") else replace(p, day=period_numbers(p.day, occasion))


# --------------------------------------------------------------------------- per-customer state at a date
def _next_day(at: pd.Timestamp) -> pd.Timestamp:
    """Midnight after the day of `at`: 'on or before the cutoff day' includes that whole day."""
    return pd.Timestamp(at).normalize() + pd.Timedelta(days=1)


def item_codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Each row's item as a code into the item names sorted as text (-1 where missing)."""
    code, uniq = pd.factorize(values)
    names = np.array([str(u) for u in uniq], dtype=object)
    order = np.argsort(names, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return np.where(code >= 0, rank[np.maximum(code, 0)], -1), pd.Index(names[order], name=values.name)



def distinct_days(p: Purchases) -> np.ndarray:
    """Distinct purchase days per customer code."""
    if not len(p.code):
        return np.zeros(len(p.ids), dtype=np.int64)
    d0 = int(p.day.min())
    span = int(p.day.max()) - d0 + 1
    key = np.sort(p.code * span + (p.day - d0))
    key = key[np.r_[True, key[1:] != key[:-1]]]
    return np.bincount(key // span, minlength=len(p.ids))
