"""RFM: customer summary, scores, named segments, value concentration and clusters.

The customer summary is built with integer codes and one sort (no per-customer
Python), so 10M transactions of 1M customers take a few seconds.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib import i18n, io
from cvlib.params import Rfm, SegmentRule, Study

UNIT_DAYS = {"days": 1.0, "weeks": 7.0}
KEY32_LIMIT = 2**32  # customers x days up to this: (customer, day) keys sorted as uint32, half the memory of int64
# text ids without a cheap integer key are summarised in groups of about this many rows, split by a hash of each id
# (every row of a customer in one group): each group's distinct ids fit in the processor's cache when hashed
PARTITION_ROWS = 625_000
# groups summarised on two threads from this many rows: above the runner's limit for two kernels side by side
# (runner.SIDE_BY_SIDE_MAX_ROWS), so the second thread never competes with another stage for a core
PARALLEL_MIN_ROWS = 4_000_000


# --------------------------------------------------------------------------- occasions
def occasions(tx: pd.DataFrame, by: str = "days") -> pd.DataFrame:
    """Purchase occasions: one row per customer and day (or order), with its date and value.

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
    if by == "orders":
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
        d0 = int(day.min()) if len(day) else 0
        span = int(day.max() - d0 + 1) if len(day) else 1
        key = codes * span + (day - d0)
        uk, inv = np.unique(key, return_inverse=True)
        value = np.bincount(inv, weights=amount, minlength=len(uk))
        out = pd.DataFrame({"customer": uk // span, "day": uk % span + d0, "value": value})
    out.attrs["customer_ids"] = uniques
    out.attrs["customer_codes"] = out["customer"].to_numpy()
    return out


def frequency_basis(tx: pd.DataFrame, rules: Rfm) -> str:
    """'orders' or 'days' (auto: orders when the data has order ids)."""
    if rules.frequency == "auto":
        return "orders" if "order_id" in tx.columns and tx["order_id"].notna().any() else "days"
    if rules.frequency == "orders" and "order_id" not in tx.columns:
        raise ValueError("rfm.frequency is 'orders' but the transactions have no order_id column mapped")
    return rules.frequency


def text_int_key(arr) -> np.ndarray | None:
    """An int64 per text value, equal exactly when the texts are equal, where one is cheap to get; else None.

    Digit-only ids (up to 17 digits) are read as numbers, their length kept when leading zeros would
    make '007' and '7' equal, and so are ids of one fixed prefix and digits (CUST-12345); ids of one length up
    to 8 bytes are their bytes packed into one integer
    (bijectively mixed, so hash tables spread them). Integers factorise several times faster than
    texts are hashed: 10M ids in well under a second instead of about two."""
    import pyarrow.compute as pc

    if len(arr) == 0 or arr.null_count:
        return None
    lens = pc.binary_length(arr)
    mm = pc.min_max(lens)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    if lo > 0 and hi <= 17 and pc.all(pc.ascii_is_decimal(arr)).as_py():
        return _digits_after(arr, 0, hi)
    if lo == hi and 0 < hi <= 8:
        offsets, data = io.string_buffers(arr)
        packed = np.zeros((len(arr), 8), dtype=np.uint8)
        packed[:, :hi] = data[offsets[0]:offsets[-1]].reshape(-1, hi)
        key = packed.view(np.uint64).ravel()
        with np.errstate(over="ignore"):
            key *= np.uint64(0x9E3779B97F4A7C15)  # odd multiplier and xor-shift: both one-to-one
        key ^= key >> np.uint64(29)
        return key.view(np.int64)
    prefix = re.match(r"[^0-9]*", arr[0].as_py()).group(0)
    if 0 < len(prefix) < lo and prefix.isascii() and pc.all(pc.starts_with(arr, prefix)).as_py():
        # one fixed prefix and digits (CUST-12345, C-0001): the digits say everything, and are a number
        if hi - len(prefix) <= 17:  # the prefix is ASCII: one byte per character
            return _digits_after(arr, len(prefix), hi - len(prefix))
    return None


def _digits_after(arr, skip: int, width: int, chunk: int = 1 << 18) -> np.ndarray | None:
    """The digits after the first `skip` bytes of each text as an integer (None if any is not a digit).

    Read from Arrow's buffers right-aligned, one digit position per pass, in chunks through small
    reused buffers that stay in cache: no sliced copy of the texts, and the only large fresh array
    is the result (fresh large arrays are slow to fault in on these machines)."""
    offsets, data = io.string_buffers(arr)
    n = len(offsets) - 1
    out = np.empty(n, np.int64)
    start, pos = np.empty(min(n, chunk), np.int64), np.empty(min(n, chunk), np.int64)
    digit, valid, bad = np.empty(len(start), np.uint8), np.empty(len(start), bool), np.empty(len(start), bool)
    lead_zero = False  # a value of several digits starting with '0' ('007')
    for a in range(0, n, chunk):
        m = min(chunk, n - a)
        st, ps, dg, ok, bd = start[:m], pos[:m], digit[:m], valid[:m], bad[:m]
        val, end = out[a:a + m], offsets[a + 1:a + m + 1]
        np.add(offsets[a:a + m], skip, out=st)
        np.subtract(end, width, out=ps)
        val[:] = 0
        for _ in range(width):
            np.greater_equal(ps, st, out=ok)  # this position holds one of the value's digits
            np.take(data, ps, out=dg, mode="clip")
            np.subtract(dg, 48, out=dg)  # '0'..'9' -> 0..9; anything else wraps above 9
            np.greater(dg, 9, out=bd)
            bd &= ok
            if bd.any():
                return None
            dg *= ok
            val *= 10
            val += dg
            ps += 1
        np.take(data, st, out=dg, mode="clip")
        lead_zero = lead_zero or bool(((dg == 48) & (end - st > 1)).any())
    if lead_zero:
        n_digits = np.diff(offsets) - skip
        if n_digits.min() != n_digits.max():  # '007' and '7' told apart by length (< 10**17 * 20: no overflow)
            out *= 20
            out += n_digits
    return out


def first_appearance_codes(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..n-1 numbering the distinct keys in order of first appearance, and each one's first row.

    Keys in a narrow range (numbered ids) are coded by direct indexing, not hashing: 10M rows of 1M ids
    in about half the time of pd.factorize. `key` may be overwritten."""
    lo, hi = (int(key.min()), int(key.max())) if len(key) else (0, -1)
    if hi - lo < 4 * len(key) + 1024 and len(key) < 2**31 - 1:
        rel = np.subtract(key, lo, out=key)
        first = np.full(hi - lo + 1, len(key), dtype=np.int32)
        np.minimum.at(first, rel, np.arange(len(key), dtype=first.dtype))  # each key's earliest row
        first_row = np.sort(first[first < len(key)]).astype(np.int64)
        code_of = np.empty(hi - lo + 1, dtype=np.int64)
        code_of[rel[first_row]] = np.arange(len(first_row), dtype=np.int64)
        return np.take(code_of, rel, out=rel), first_row
    codes, _ = pd.factorize(key)  # codes in order of first appearance, as the dictionary would give
    codes = codes.astype(np.int64, copy=False)
    # factorize numbers codes in order of first appearance: a code's first row is where the running
    # maximum of the codes grows (linear, unlike np.minimum.at)
    seen = np.maximum.accumulate(codes)
    return codes, np.flatnonzero(np.r_[True, seen[1:] > seen[:-1]])


def customer_codes(ids: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer code per row (0..n-1, every code used) and the distinct ids, in order of first appearance.

    Arrow-backed text ids keep their distinct values Arrow-backed (no Python string objects)."""
    if isinstance(ids.dtype, pd.CategoricalDtype):
        ids = ids.cat.remove_unused_categories()
        return ids.cat.codes.to_numpy().astype(np.int64), pd.Index(ids.cat.categories.astype(str))
    if isinstance(ids.dtype, pd.StringDtype) and ids.dtype.storage == "pyarrow":
        arr = io.arrow_strings(ids)
        key = text_int_key(arr)
        groups = hash_groups(arr) if key is None and not arr.null_count else None  # hashed ids: in cache-sized groups
        codes, distinct = _arrow_codes(arr, key) if groups is None else _grouped_codes(arr, groups)
        return codes, _text_index(distinct)
    codes, uniques = pd.factorize(ids)
    return codes.astype(np.int64), pd.Index(uniques.astype(str))


def _text_index(distinct) -> pd.Index:
    """Arrow text values as an Arrow-backed text Index (no Python string objects)."""
    import pyarrow as pa

    return pd.Index(pd.array(distinct.cast(pa.large_string()), dtype=io.STRING))


def _arrow_codes(arr, key: np.ndarray | None):
    """Codes in order of first appearance and the distinct values of Arrow text, from its integer key if any."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if key is None:
        enc = pc.dictionary_encode(arr)
        return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), enc.dictionary
    codes, first_row = first_appearance_codes(key)
    return codes, arr.take(pa.array(first_row))


def _group_bits(n: int, rows: int | None) -> int:
    """log2 of the number of groups of about `rows` (default PARTITION_ROWS) that `n` rows make, at most 256 groups;
    0 below two groups' worth (one pass is as fast)."""
    rows = rows or PARTITION_ROWS
    return min(int(np.ceil(np.log2(n / rows))), 8) if n >= 2 * rows else 0


def hash_groups(arr, rows: int | None = None) -> tuple[np.ndarray, int] | None:
    """A group number (uint8) per value of Arrow text, from a hash of the value's last two bytes and its length, and
    the number of groups (about `rows` rows each); None below two groups' worth of rows.

    Equal values always share a group, so per-customer work can be done group by group. Built in chunks through
    small reused buffers: no fresh large arrays, which stall on these machines."""
    n, bits = len(arr), _group_bits(len(arr), rows)
    if bits == 0:
        return None
    offsets, data = io.string_buffers(arr)
    group = np.empty(n, dtype=np.uint8)
    chunk = 1 << 18
    ln, b1, b2 = (np.empty(min(n, chunk), dtype=np.uint32) for _ in range(3))
    at, byte = np.empty(len(ln), dtype=np.int64), np.empty(len(ln), dtype=np.uint8)
    for a in range(0, n, chunk):
        m = min(chunk, n - a)
        end, l_, x, y, i, b = offsets[a + 1:a + m + 1], ln[:m], b1[:m], b2[:m], at[:m], byte[:m]
        np.subtract(end, offsets[a:a + m], out=l_, casting="unsafe")
        np.subtract(end, 1, out=i)
        x[:] = np.take(data, i, out=b, mode="clip")  # last byte (clip: an empty first value reads byte 0)
        x *= l_ > 0
        i -= 1
        y[:] = np.take(data, i, out=b, mode="clip")  # the byte before it
        y *= l_ > 1
        y <<= 8
        x |= y
        l_ &= 0xFF
        l_ <<= 16
        x |= l_
        x *= np.uint32(2654435761)  # Fibonacci hashing: the top bits mix every input bit
        x >>= np.uint32(32 - bits)
        group[a:a + m] = x
    return group, 1 << bits


def key_groups(key: np.ndarray, rows: int | None = None) -> tuple[np.ndarray, int] | None:
    """`hash_groups` for integer keys (`text_int_key`): the group from the key's bits, mixed."""
    n, bits = len(key), _group_bits(len(key), rows)
    if bits == 0:
        return None
    group = np.empty(n, dtype=np.uint8)
    chunk = 1 << 18
    x = np.empty(min(n, chunk), dtype=np.uint64)
    for a in range(0, n, chunk):
        m = min(chunk, n - a)
        h = x[:m]
        h[:] = key[a:a + m].view(np.uint64)
        h *= np.uint64(0x9E3779B97F4A7C15)
        h >>= np.uint64(64 - bits)
        group[a:a + m] = h
    return group, 1 << bits


def _by_groups(arr, groups: tuple[np.ndarray, int], key: np.ndarray | None, work) -> tuple[Any, list, np.ndarray]:
    """Run `work(rows, codes, n)` on each group of `hash_groups` / `key_groups` (two threads from
    PARALLEL_MIN_ROWS): `rows` the group's row positions in order, `codes` its customers numbered 0..n-1 in order of
    first appearance (from `key` when given, else by Arrow's hashing, in cache-sized tables). Returns the groups'
    distinct ids one after the other, each group's result, and the order putting those ids in order of first
    appearance over all rows. Each group's arrays are small enough for the allocator to reuse."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.compute as pc

    group, n_groups = groups

    def one(g: int) -> tuple[Any, Any, np.ndarray] | None:
        rows = np.flatnonzero(group == g)
        if not len(rows):
            return None
        if key is None:
            enc = pc.dictionary_encode(arr.take(pa.array(rows)))
            codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            seen = np.maximum.accumulate(codes)  # codes number first appearances: the running maximum grows there
            first, distinct = rows[np.flatnonzero(np.r_[True, seen[1:] > seen[:-1]])], enc.dictionary
        else:
            codes, first = first_appearance_codes(key[rows])
            first = rows[first]
            distinct = arr.take(pa.array(first))
        return distinct, work(rows, codes, len(distinct)), first

    if len(group) >= PARALLEL_MIN_ROWS and (os.cpu_count() or 1) >= 2:
        with ThreadPoolExecutor(2) as pool:  # Arrow's hashing and numpy's sorts release the interpreter lock
            parts = [p for p in pool.map(one, range(n_groups)) if p is not None]
    else:
        parts = [p for p in map(one, range(n_groups)) if p is not None]
    order = np.argsort(np.concatenate([p[2] for p in parts]))  # by each customer's first row
    return pa.concat_arrays([p[0] for p in parts]), [p[1] for p in parts], order


def _grouped_days(arr, groups: tuple[np.ndarray, int], day: np.ndarray, amount: np.ndarray,
                  key: np.ndarray | None = None) -> tuple[Any, dict[str, np.ndarray]]:
    """`_per_customer_days` group by group (`_by_groups`), customers then in order of first appearance, as one pass
    gives them: each customer's rows keep their order, so every sum adds the same numbers in the same order."""
    import pyarrow as pa

    distinct, aggs, order = _by_groups(arr, groups, key,
                                       lambda rows, codes, n: _per_customer_days(codes, day[rows], amount[rows], n))
    return distinct.take(pa.array(order)), {k: np.concatenate([a[k] for a in aggs])[order] for k in aggs[0]}


def _grouped_codes(arr, groups: tuple[np.ndarray, int], key: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
    """`_arrow_codes` group by group (`_by_groups`): the same codes and distinct values as one pass."""
    import pyarrow as pa

    distinct, coded, order = _by_groups(arr, groups, key, lambda rows, codes, n: (rows, codes))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))  # a group's code + the group's offset -> the code over all rows
    out, start = np.empty(len(groups[0]), dtype=np.int64), 0
    for rows, codes in coded:
        out[rows] = rank[codes + start]
        start += int(codes.max()) + 1
    return out, distinct.take(pa.array(order))


def _checked(codes: np.ndarray, ids: pd.Index) -> np.ndarray:
    """The codes, once checked to number every row's customer 0..n-1 (a missing id has none)."""
    if len(codes) and (codes.min() < 0 or len(ids) != int(codes.max()) + 1):
        raise ValueError("customer_summary needs a customer id on every row: clean the transactions first")
    return codes


def _day_side(ids: pd.Series, day: np.ndarray, amount: np.ndarray) -> tuple[pd.Index, dict[str, np.ndarray]]:
    """The distinct ids in order of first appearance and their per-customer day aggregates: large Arrow text ids
    group by group (`key_groups` from their integer key, else `hash_groups`), others coded at once."""
    if isinstance(ids.dtype, pd.StringDtype) and ids.dtype.storage == "pyarrow" and not ids.hasnans:
        arr = io.arrow_strings(ids)
        key = text_int_key(arr)
        groups = hash_groups(arr) if key is None else key_groups(key)
        if groups is not None:
            distinct, agg = _grouped_days(arr, groups, day, amount, key)
            return _text_index(distinct), agg
    codes, distinct = customer_codes(ids)  # small inputs (their key, if any, is cheap to compute again)
    return distinct, _per_customer_days(_checked(codes, distinct), day, amount, len(distinct))


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
    """Integer code per row's order id: cheap integer keys where the ids allow (numeric, short fixed-width),
    used as they are when dense, else factorised; other ids dictionary-encoded. Codes may have gaps."""
    import pyarrow.compute as pc

    arr = io.arrow_strings(orders)
    key = text_int_key(arr)
    if key is None:
        return pc.dictionary_encode(arr).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    lo, hi = int(key.min()), int(key.max())
    # dense order numbers need no hashing: offset from the smallest (unused codes are dropped later)
    return key - lo if hi - lo < 2 * len(key) + 1000 else pd.factorize(key)[0].astype(np.int64)


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


def customer_summary(tx: pd.DataFrame, end: pd.Timestamp | dt.date | None = None, by: str = "days",
                     unit: str = "weeks") -> pd.DataFrame:
    """One row per customer at the observation end (transactions after it are ignored).

    RFM in days: recency (end - last purchase), frequency (occasions), monetary (total) and
    monetary_mean (per occasion), tenure (end - first). CLV inputs in `unit`: x (repeat
    occasions), t_x (last - first), T (end - first), monetary_value (mean of repeat occasions, 0 if none).
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
    elif by == "orders":
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:  # text encoding of the ids (Arrow, no GIL) beside the order side
            future = pool.submit(customer_codes, tx["customer_id"])
            order_side = _order_side(tx, day)
            codes, ids = future.result()
        agg = _per_customer_orders(_checked(codes, ids), len(ids), *order_side)
    else:
        ids, agg = _day_side(tx["customer_id"], day, amount)
    first, last, count, total = agg["first"], agg["last"], agg["count"], agg["total"]
    k = UNIT_DAYS[unit]
    x = count - 1
    out = pd.DataFrame({
        "customer_id": pd.array(ids, dtype=io.STRING),
        "first_purchase": (first * 86_400_000_000_000).astype("datetime64[ns]"),
        "last_purchase": (last * 86_400_000_000_000).astype("datetime64[ns]"),
        "recency": (end_day - last).astype(np.int64),
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
                        by: str = "days", unit: str = "weeks") -> pd.DataFrame:
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


# --------------------------------------------------------------------------- scores
def score(values: pd.Series, n: int = 5, reverse: bool = False, edges: list[float] | None = None,
          ties: str = "shared") -> pd.Series:
    """Scores 1..n by quantiles of the ranks (or by fixed edges). reverse: low values score high.

    ties='shared': equal values always share a score, the lowest values score 1 (bins may be
    uneven under heavy ties);
    ties='first': ranks break ties in data order so the bins are equal-sized."""
    v = values.astype(float)
    if edges is not None:
        bins = [-np.inf, *edges, np.inf]
        s = pd.cut(v, bins=bins, labels=False, right=False).astype(int) + 1
        n = len(edges) + 1
    elif len(v) == 0:
        return pd.Series([], dtype="int64", index=values.index)
    else:
        pct = v.rank(method="min" if ties == "shared" else "first", pct=True)
        s = np.ceil(pct * n).clip(1, n).astype(int)
    s = (n + 1 - s) if reverse else s
    return pd.Series(np.asarray(s, dtype="int64"), index=values.index)


def add_scores(summary: pd.DataFrame, rules: Rfm) -> tuple[pd.DataFrame, list[str]]:
    """Add r_score, f_score, m_score (1..n, 5 best) and a note for each score that carries no information."""
    out = summary.copy()
    notes = []
    e = rules.bin_edges
    spec = {"r_score": ("recency", True, e.recency), "f_score": ("frequency", False, e.frequency),
            "m_score": ("monetary", False, e.monetary)}
    for col, (src, rev, edges) in spec.items():
        out[col] = score(out[src], rules.n_bins, rev, edges, rules.ties)
        if out[src].nunique() <= 1:
            notes.append(i18n.t("rfm.note_constant", what=i18n.label(src), v=f"{out[src].iloc[0]:,.4g}"))
    if len(out) < rules.n_bins:
        notes.append(i18n.t("rfm.note_few", n=len(out), bins=rules.n_bins))
    return out, notes


def assign_segments(scored: pd.DataFrame, grid: list[SegmentRule], n_bins: int = 5, on: str = "rf") -> pd.Series:
    """Segment name per customer: the first grid rule whose R and F (or FM) ranges hold its scores.

    Scores on another scale than 1-5 are mapped onto 1-5 first; unmatched customers are 'Other'."""
    def to5(s: pd.Series) -> np.ndarray:
        return np.ceil(s.to_numpy() * 5 / n_bins).astype(int) if n_bins != 5 else s.to_numpy()

    r = to5(scored["r_score"])
    f_raw = scored["f_score"] if on == "rf" else np.round((scored["f_score"] + scored["m_score"]) / 2)
    f = to5(pd.Series(f_raw, index=scored.index))
    seg = np.full(len(scored), None, dtype=object)
    for rule in grid:
        hit = (seg == None) & (r >= rule.r[0]) & (r <= rule.r[1]) & (f >= rule.f[0]) & (f <= rule.f[1])  # noqa: E711
        seg[hit] = rule.name
    seg[seg == None] = "Other"  # noqa: E711
    order = [g.name for g in grid] + ["Other"]
    return pd.Series(pd.Categorical(seg, categories=list(dict.fromkeys(order))), index=scored.index)


def segment_table(rfm: pd.DataFrame) -> pd.DataFrame:
    """Customers, revenue and their shares, and mean R/F/M per segment (empty segments dropped)."""
    g = rfm.groupby("segment", observed=True).agg(
        customers=("customer_id", "size"), revenue=("monetary", "sum"), mean_recency_days=("recency", "mean"),
        mean_frequency=("frequency", "mean"), mean_monetary=("monetary", "mean"))
    g.insert(1, "share_of_customers", g["customers"] / g["customers"].sum())
    g.insert(3, "share_of_revenue", g["revenue"] / g["revenue"].sum() if g["revenue"].sum() else 0.0)
    return g.reset_index()


def rf_grid(rfm: pd.DataFrame, value: str = "count") -> pd.DataFrame:
    """R (rows, best on top) x F (columns) table of customer counts or mean monetary value."""
    if value == "count":
        t = rfm.pivot_table(index="r_score", columns="f_score", values="customer_id", aggfunc="size", fill_value=0)
    else:
        t = rfm.pivot_table(index="r_score", columns="f_score", values="monetary", aggfunc="mean")
    return t.sort_index(ascending=False)


# --------------------------------------------------------------------------- concentration
def pareto_curve(monetary: pd.Series) -> pd.DataFrame:
    """Cumulative revenue share against cumulative customer share, customers sorted by revenue (desc)."""
    v = np.sort(monetary.to_numpy(dtype=float))[::-1]
    n = len(v)
    total = v.sum()
    return pd.DataFrame({"customer_share": np.arange(1, n + 1) / n,
                         "revenue_share": np.cumsum(v) / total if total else np.zeros(n)})


def gini(values: pd.Series | np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: everyone equal; towards 1: one holds all)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * x) / (n * x.sum()))


def concentration(monetary: pd.Series) -> dict[str, float]:
    """Top-20% revenue share, the customer share making 80% of revenue, and the Gini coefficient."""
    curve = pareto_curve(monetary)
    if curve.empty:
        return {"top20_revenue_share": float("nan"), "customer_share_for_80pct": float("nan"), "gini": float("nan")}
    n = len(curve)
    top = int(np.ceil(0.2 * n))
    idx = int(np.searchsorted(curve["revenue_share"].to_numpy(), 0.8 - 1e-12))
    return {"top20_revenue_share": float(curve["revenue_share"].iloc[top - 1]),
            "customer_share_for_80pct": float(curve["customer_share"].iloc[min(idx, n - 1)]),
            "gini": gini(monetary)}


def abc_classes(monetary: pd.Series, cuts: tuple[float, float] = (0.8, 0.95)) -> pd.Series:
    """A: customers making the first cuts[0] of revenue (by rank), B: up to cuts[1], C: the rest."""
    order = monetary.sort_values(ascending=False, kind="stable")
    total = order.sum()
    before = (order.cumsum() - order) / total if total else pd.Series(0.0, index=order.index)
    cls = np.where(before < cuts[0], "A", np.where(before < cuts[1], "B", "C"))
    return pd.Series(cls, index=order.index).reindex(monetary.index)


def value_tiers(monetary: pd.Series, cuts: list[float], names: list[str]) -> pd.Series:
    """Value pyramid: tiers by customer rank share (top 1%, next 4%, ...)."""
    rank = monetary.rank(method="first", ascending=False) / len(monetary)
    idx = np.searchsorted(np.asarray(cuts), rank.to_numpy() - 1e-12, side="left")
    return pd.Series(pd.Categorical(np.asarray(names, dtype=object)[idx], categories=names), index=monetary.index)


def tier_table(rfm: pd.DataFrame, column: str) -> pd.DataFrame:
    """Customers and revenue with their shares per class (ABC or tier)."""
    g = rfm.groupby(column, observed=False).agg(customers=("customer_id", "size"), revenue=("monetary", "sum"))
    g["share_of_customers"] = g["customers"] / max(g["customers"].sum(), 1)
    g["share_of_revenue"] = g["revenue"] / g["revenue"].sum() if g["revenue"].sum() else 0.0
    return g.reset_index()


# --------------------------------------------------------------------------- clusters
@dataclass
class ClusterResult:
    labels: pd.Series | None
    k: int | None
    scores: pd.DataFrame  # k, inertia, silhouette
    profile: pd.DataFrame
    silhouette_samples: pd.DataFrame | None
    rules: str = ""
    tree_accuracy: float | None = None
    tree_rules: list[dict] = field(default_factory=list)  # one per leaf: cluster, label, bounds, customers
    notes: list[str] = field(default_factory=list)


def cluster_pipeline(k: int, seed: int):
    """log1p -> standardise -> k-means, as one scikit-learn pipeline."""
    from sklearn.cluster import KMeans
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return make_pipeline(FunctionTransformer(np.log1p), StandardScaler(),
                         KMeans(n_clusters=k, n_init=10, random_state=seed))


RECENT_DAYS, LAPSED_DAYS = 180, 365  # a cluster is 'recent' only if its median member bought within half a year


def _label(z: pd.Series, median: pd.Series) -> str:
    """A cluster's name from its mean standardised log recency, frequency and spend, checked against its members'
    medians so that it never contradicts them: 'recent' only when the median member bought within RECENT_DAYS,
    'lapsed' whenever they did not buy for LAPSED_DAYS, 'frequent' never for a cluster of one-time buyers."""
    def level(v: float, hi: str, lo: str, mid: str) -> str:
        return hi if v > 0.5 else lo if v < -0.5 else mid

    recency = level(-z["recency"], "recent", "lapsed", "mid recency")
    if median["recency"] > LAPSED_DAYS:
        recency = "lapsed"
    elif recency == "recent" and median["recency"] > RECENT_DAYS:
        recency = "mid recency"
    frequency = level(z["frequency"], "frequent", "rare", "occasional")
    if median["frequency"] <= 1:
        frequency = "rare"
    return " · ".join([recency, frequency, level(z["monetary"], "high spend", "low spend", "mid spend")])


def silhouettes(dist: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each sample's silhouette from a distance matrix, as scikit-learn's `silhouette_samples` defines it
    (0 in a cluster of one): every sample's distance sums to each cluster as one matrix product, several times
    faster than its chunked pass, which the choice of k repeats for every k."""
    _, lab = np.unique(labels, return_inverse=True)
    n = len(lab)
    onehot = np.zeros((n, int(lab.max()) + 1))
    onehot[np.arange(n), lab] = 1.0
    size = onehot.sum(axis=0)
    sums = dist @ onehot  # distance of each sample to all members of each cluster
    rows = np.arange(n)
    own = sums[rows, lab] / np.maximum(size[lab] - 1, 1)
    means = sums / size
    means[rows, lab] = np.inf
    nearest = means.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (nearest - own) / np.maximum(own, nearest)
    s[size[lab] == 1] = 0.0
    return np.nan_to_num(s)


def fit_clusters(rfm: pd.DataFrame, cfg) -> ClusterResult:
    """K-means on log, standardised R/F/M: k fixed or chosen by silhouette; profile, labels and a tree."""
    from sklearn.metrics import pairwise_distances
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier, export_text

    X = rfm[["recency", "frequency", "monetary"]].astype(float).clip(lower=0)
    empty = ClusterResult(None, None, pd.DataFrame(columns=["k", "inertia", "silhouette"]), pd.DataFrame(), None)
    distinct = len(X.drop_duplicates())
    if distinct < 3:
        empty.notes.append(i18n.t("rfm.note_no_clusters", k=distinct, n=len(X)))
        return empty
    rng = np.random.default_rng(cfg.seed)
    sample_idx = rng.choice(len(X), min(cfg.sample, len(X)), replace=False)
    Xs = X.iloc[np.sort(sample_idx)]
    lo, hi = (cfg.k, cfg.k) if cfg.k else cfg.k_range
    hi = min(hi, distinct - 1, len(Xs) - 1)
    rows = []
    dist = None  # the sample's distance matrix: the scaling does not depend on k, so it is computed once
    for k in range(max(lo, 2), hi + 1):
        pipe = cluster_pipeline(k, cfg.seed).fit(Xs)
        lab = pipe[-1].labels_
        if dist is None:
            dist = pairwise_distances(pipe[:-1].transform(Xs))
        sil = float(silhouettes(dist, lab).mean()) if len(set(lab)) > 1 else np.nan
        rows.append({"k": k, "inertia": pipe[-1].inertia_, "silhouette": sil})
    del dist
    scores = pd.DataFrame(rows)
    if scores.empty:
        empty.notes.append(i18n.t("rfm.note_no_clusters_k"))
        return empty
    k = int(cfg.k) if cfg.k else int(scores.loc[scores["silhouette"].idxmax(), "k"])
    pipe = cluster_pipeline(k, cfg.seed).fit(X)
    raw_labels = pipe.predict(X)
    # order clusters by mean monetary (0 = lowest) so labels are stable across runs
    means = pd.Series(X["monetary"].to_numpy()).groupby(raw_labels).mean().sort_values()
    remap = {old: new for new, old in enumerate(means.index)}
    labels = pd.Series(np.vectorize(remap.get)(raw_labels), index=rfm.index)
    z = (np.log1p(X) - np.log1p(X).mean()) / np.log1p(X).std(ddof=0).replace(0, 1)
    prof = X.assign(cluster=labels.to_numpy()).groupby("cluster").agg(
        customers=("recency", "size"), mean_recency_days=("recency", "mean"), mean_frequency=("frequency", "mean"),
        mean_monetary=("monetary", "mean"), revenue=("monetary", "sum"))
    prof["share_of_customers"] = prof["customers"] / prof["customers"].sum()
    prof["share_of_revenue"] = prof["revenue"] / prof["revenue"].sum()
    medians = X.assign(cluster=labels.to_numpy()).groupby("cluster").median()
    names = z.assign(cluster=labels.to_numpy()).groupby("cluster").mean().apply(
        lambda row: _label(row, medians.loc[row.name]), axis=1)
    dup = names.duplicated(keep=False)
    names[dup] = names[dup] + " (" + names[dup].index.astype(str) + ")"
    prof.insert(0, "label", names)
    Zs = pipe[:-1].transform(Xs)
    lab_s = pipe[-1].predict(Zs)
    sil_s = pd.DataFrame({"cluster": [remap[l] for l in lab_s], "silhouette": silhouettes(pairwise_distances(Zs), lab_s)})
    Xtr, Xte, ytr, yte = train_test_split(X, labels, test_size=0.3, random_state=cfg.seed)
    tree = DecisionTreeClassifier(max_depth=cfg.tree_depth, random_state=cfg.seed).fit(Xtr, ytr)
    acc = float(tree.score(Xte, yte))
    rules_text = export_text(tree, feature_names=["recency_days", "frequency", "monetary"],
                             class_names=[f"{i}: {names[i]}" for i in tree.classes_], decimals=1)
    return ClusterResult(labels, k, scores, prof.reset_index(), sil_s, rules_text, acc,
                         tree_leaf_rules(tree, ["recency", "frequency", "monetary"], names))


def tree_leaf_rules(tree, features: list[str], names: pd.Series) -> list[dict]:
    """Each leaf of a fitted decision tree as a rule: the cluster it predicts, that cluster's label, the
    (lower, upper] bounds on each feature along the path, and the training customers it holds."""
    t = tree.tree_
    out: list[dict] = []

    def walk(node: int, bounds: dict[str, tuple[float, float]]) -> None:
        if t.children_left[node] == -1:
            cluster = int(tree.classes_[int(np.argmax(t.value[node][0]))])
            out.append({"cluster": cluster, "label": str(names[cluster]), "bounds": bounds,
                        "customers": int(t.n_node_samples[node])})
            return
        f, thr = features[t.feature[node]], float(t.threshold[node])
        lo, hi = bounds.get(f, (-np.inf, np.inf))
        walk(t.children_left[node], {**bounds, f: (lo, min(hi, thr))})
        walk(t.children_right[node], {**bounds, f: (max(lo, thr), hi)})

    walk(0, {})
    return sorted(out, key=lambda r: (r["cluster"], -r["customers"]))


def rule_sentences(rules: list[dict], currency: str) -> list[str]:
    """Leaf rules as sentences in the report language: 'Cluster 2 (recent · frequent): recency at most 30 days
    and more than 3 purchases (1,234 customers in the training sample)'. Leaves of one cluster are listed
    together; split values of whole-number features (days, purchases) are read as whole numbers."""
    from cvlib import i18n

    def cond(f: str, lo: float, hi: float) -> str:
        unit = {"recency": "days", "frequency": "purchases", "monetary": "money"}[f]
        # days and purchases are whole numbers: x <= 30.5 is x <= 30 and x > 30.5 is "over 30"
        fmt = (lambda v: i18n.money(v, currency, decimals=0)) if unit == "money" else (lambda v: f"{np.floor(v):,.0f}")
        if np.isfinite(lo) and np.isfinite(hi):
            return i18n.t(f"rules.{f}_between", lo=fmt(lo), hi=fmt(hi))
        if np.isfinite(hi):
            return i18n.t(f"rules.{f}_at_most", v=fmt(hi))
        return i18n.t(f"rules.{f}_over", v=fmt(lo))

    out = []
    for r in rules:
        conds = [cond(f, *r["bounds"][f]) for f in ("recency", "frequency", "monetary") if f in r["bounds"]]
        out.append(i18n.t("rules.sentence", cluster=r["cluster"], label=i18n.name(r["label"]),
                          conditions=i18n.t("rules.and").join(conds) or i18n.t("rules.everyone"),
                          n=f"{r['customers']:,}"))
    return out


# --------------------------------------------------------------------------- the stage
@dataclass
class RfmResult:
    rfm: pd.DataFrame
    summary: pd.DataFrame
    calibration: pd.DataFrame | None
    concentration: dict
    clusters: ClusterResult
    basis: str
    end: pd.Timestamp
    notes: list[str] = field(default_factory=list)


def build_rfm(tx: pd.DataFrame, rules: Rfm) -> RfmResult:
    """Everything the RFM stage computes, from clean transactions."""
    basis = frequency_basis(tx, rules)
    summary = customer_summary(tx, rules.end_date, basis, rules.time_unit)
    end = summary.attrs["end"]
    notes = []
    late = int((tx["date"] > end + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")).sum())
    if late:
        notes.append(i18n.t("rfm.note_late", n=f"{late:,}", end=i18n.date(end)))
    scored, score_notes = add_scores(summary, rules)
    notes += score_notes
    scored["segment"] = assign_segments(scored, rules.segments, rules.n_bins, rules.segment_on)
    if (scored["segment"] == "Other").any():
        notes.append(i18n.for_consultant("rfm.note_other", n=f"{int((scored['segment'] == 'Other').sum()):,}"))
    conc = concentration(scored["monetary"])
    scored["abc_class"] = abc_classes(scored["monetary"], rules.abc)
    scored["value_tier"] = value_tiers(scored["monetary"], rules.pyramid.cuts, rules.pyramid.names)
    if rules.clusters.enabled:
        clusters = fit_clusters(scored, rules.clusters)
        notes += clusters.notes
    else:
        clusters = ClusterResult(None, None, pd.DataFrame(), pd.DataFrame(), None, notes=[i18n.for_consultant("rfm.note_clusters_off")])
    scored["cluster"] = clusters.labels.astype("Int64") if clusters.labels is not None else pd.array(
        [pd.NA] * len(scored), dtype="Int64")
    if (scored["frequency"] == 1).all():
        notes.append(i18n.t("rfm.note_all_once"))
    cal = None
    if rules.calibration_end:
        cal = calibration_holdout(tx, rules.calibration_end, rules.holdout_end, basis, rules.time_unit)
    return RfmResult(scored, summary, cal, conc, clusters, basis, end, notes)


def run_rfm(study: Study, run_dir: str | Path) -> RfmResult:
    """Read the clean transactions from run_dir, build the RFM stage, write its outputs there."""
    run_dir = Path(run_dir)
    tx = io.read_stage(run_dir, "transactions_clean.parquet")
    res = build_rfm(tx, study.rfm)
    io.write_parquet(res.rfm, run_dir / "rfm.parquet")
    clv_cols = ["customer_id", "x", "t_x", "T", "monetary_value", "frequency", "monetary"]
    io.write_parquet(res.summary[clv_cols], run_dir / "clv_summary.parquet")
    if res.calibration is not None:
        io.write_parquet(res.calibration, run_dir / "clv_calibration.parquet")
    io.write_json({"end": res.end, "basis": res.basis, "time_unit": study.rfm.time_unit,
                   "concentration": res.concentration, "k": res.clusters.k,
                   "tree_accuracy": res.clusters.tree_accuracy, "notes": res.notes,
                   "customers": len(res.rfm)}, run_dir / "rfm.json")
    return res


def describe(rfm: pd.DataFrame) -> pd.DataFrame:
    """Distribution of recency, frequency, monetary and tenure (mean and percentiles)."""
    from cvlib import i18n

    cols = {c: i18n.t(f"rfm.measure_{c}") for c in ("recency", "frequency", "monetary", "monetary_mean", "tenure")}
    d = rfm[list(cols)].describe(percentiles=[0.25, 0.5, 0.75, 0.9]).T.drop(columns="count")
    d.index = [cols[c] for c in d.index]
    return d.reset_index(names="measure")


def cluster_segment_crosstab(rfm: pd.DataFrame) -> pd.DataFrame:
    """Customers per cluster (rows) and named segment (columns)."""
    return pd.crosstab(rfm["cluster"], rfm["segment"]).reset_index()
