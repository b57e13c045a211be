"""What the journey and campaign stages need of the transactions, computed by the engine where the clean
transactions are (DuckDB over `transactions_clean.parquet`), so that only aggregates come back, never the rows:

- per customer and purchase day: the spend (cycles, lifecycle stages and flows, campaign windows: every rule of
  those stages is counted in whole local days, so a day's total is all they use of its rows);
- per customer and product: the first day it was bought (cross-sell rules, baskets, next best product);
- per customer and channel: the spend, and each customer's channel of the first and of the last purchase (by time,
  then by the row's place in the file or the table's key order).

The same expressions run on an in-memory frame (`frame_table`), so a stage built from a DataFrame in a notebook or
a test computes exactly what the study does."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cvlib import io
from cvlib.customers import DAY_NS, Purchases
from cvlib.engines.connect import duckdb
from cvlib.engines.summary import days
from cvlib.io import ROW
from cvlib.occasions import resolve_occasion

UNKNOWN = "unknown"  # the channel of a row that has none


@dataclass(frozen=True)
class Book:
    """The aggregates of one book of clean transactions (see the module doc). Customers are codes into `p.ids`
    (the ids in text order), products and channels codes into their names (in text order; -1: none), so only
    numbers come back in bulk, each text once."""
    p: Purchases                     # one entry per customer and purchase day, with that day's spend
    end: pd.Timestamp                # the last purchase day
    occasion: str                    # the study's purchase occasion, resolved against the data
    items: pd.DataFrame | None       # code, item, day: the first day of each item (None: no product column)
    channels: pd.DataFrame | None    # code, channel, revenue (None: no channel column)
    first_last: pd.DataFrame | None  # first_channel, last_channel: one row per customer, in code order
    item_names: pd.Index | None = None
    channel_names: pd.Index | None = None

    def first_channels(self) -> pd.Series:
        """Each customer's channel of the first purchase (customer id -> name; 'unknown' for a row without one)."""
        label = np.append(np.asarray(self.channel_names, dtype=object), UNKNOWN)  # code -1: no channel
        return pd.Series(label[self.first_last["first_channel"].to_numpy(np.int64)],
                         index=np.asarray(self.p.ids, dtype=object))


@contextmanager
def frame_table(tx: pd.DataFrame) -> Iterator[Any]:
    """A frame of transactions as an Ibis table on a private DuckDB (its rows numbered in `source_row` when the
    frame has no such column, so ties keep the frame's order)."""
    con = duckdb()
    try:
        yield con.create_table("tx", tx if ROW in tx.columns else tx.assign(**{ROW: np.arange(1, len(tx) + 1)}))
    finally:
        con.disconnect()


def customer_days(t: Any, only: pd.Series | None = None) -> Any:
    """One row per customer and local purchase day (`day`: days since 1970-01-01) with the day's spend (`amount`);
    `only`: these customers' days alone (the filter runs in the engine)."""
    import ibis

    if only is not None:
        t = t.filter(t.customer_id.cast("string").isin(ibis.memtable({"id": only.astype(str).unique()}).id))
    d = days(t)
    return d.group_by([d.customer_id.cast("string").name("customer_id"), d._day.name("day")]).agg(
        amount=exact_sum(d.amount))


def exact_sum(amount: Any) -> Any:
    """A sum that does not depend on the order the engine meets the rows in (its threads): each amount as a
    decimal of 9 places, added exactly, the total back as a float. Reruns give the same bytes."""
    return amount.cast("decimal(38, 9)").sum().cast("float64")


def daily_spend(t: Any, only: pd.Series) -> pd.DataFrame:
    """`customer_days` of the customers `only` as transactions (customer_id, date at midnight, amount)."""
    d = customer_days(t, only).order_by(["customer_id", "day"]).to_pandas()  # one order every time
    return pd.DataFrame({"customer_id": d["customer_id"].astype(io.STRING),
                         "date": pd.to_datetime(d["day"].to_numpy(np.int64), unit="D"),
                         "amount": d["amount"].to_numpy(float)})


def item_first_days(t: Any, column: str = "product") -> Any:
    """The first local day each customer bought each item (rows with no item are not items)."""
    d = days(t)
    d = d.filter(d[column].notnull())
    return d.group_by([d.customer_id.cast("string").name("customer_id"), d[column].cast("string").name("item")]).agg(
        day=d._day.min())


def channel_revenue(t: Any) -> Any:
    """Each customer's spend through each channel (a missing channel is NULL)."""
    return t.group_by([t.customer_id.cast("string").name("customer_id"),
                       t.channel.cast("string").name("channel")]).agg(revenue=exact_sum(t.amount))


def first_and_last_channel(t: Any) -> Any:
    """Each customer's channel of the first and of the last purchase: by time, ties by the row's place."""
    import ibis

    first = ibis.window(group_by=t.customer_id, order_by=[t.date, t[ROW]])
    last = ibis.window(group_by=t.customer_id, order_by=[t.date.desc(), t[ROW].desc()])
    r = t.mutate(_first=ibis.row_number().over(first), _last=ibis.row_number().over(last))
    a = r.filter(r._first == 0).select(customer_id=r.customer_id.cast("string"), first_channel=r.channel.cast("string"))
    b = r.filter(r._last == 0).select(customer_id=r.customer_id.cast("string"), last_channel=r.channel.cast("string"))
    return a.join(b, "customer_id")


def has_orders(t: Any) -> bool:
    """Whether the transactions carry order ids (a mapped column with at least one value)."""
    return "order_id" in t.columns and bool(t.order_id.notnull().any().execute())


def code_table(values: Any) -> Any:
    """The distinct non-missing values of a text column, each with its code: its place in text order (0-based),
    kept by the engine for the joins that follow."""
    import ibis

    d = values.name("value").as_table().distinct()
    d = d.filter(d.value.notnull())
    return d.mutate(code=ibis.row_number().over(order_by=d.value)).cache()


def coded(expr: Any, tables: dict[str, Any]) -> pd.DataFrame:
    """A per-customer aggregate fetched with its text columns (`tables`: column -> `code_table`) as codes: a
    customer's code, an item's or a channel's code (-1 where it has none), so no text comes back per row. Rows in
    the order of those codes, then of the other key columns, whatever order the engine's threads finished in."""
    keys = [c for c in expr.columns if c in tables or c == "day"]
    for col, codes in tables.items():
        c = codes.rename(**{f"_{col}": "code", f"_{col}_value": "value"})
        expr = expr.left_join(c, expr[col] == c[f"_{col}_value"])
        expr = expr.mutate(**{col: expr[f"_{col}"].fill_null(-1)}).drop(f"_{col}", f"_{col}_value")
    return expr.order_by(keys).rename(code="customer_id").to_pandas()


def names(codes: Any) -> pd.Index:
    """The values of a `code_table`, in code order."""
    return pd.Index(pd.array(codes.order_by("code").value.to_pyarrow(), dtype=io.STRING))


def book(t: Any, occasion: str, product: str | None = "product") -> Book:
    """Every aggregate of the clean transactions `t` the journey stage reads (`occasion`: the study's)."""
    ids = code_table(t.customer_id.cast("string"))
    by_day = coded(customer_days(t), {"customer_id": ids})
    day = by_day["day"].to_numpy(np.int64)
    p = Purchases(names(ids).rename("customer_id"), by_day["code"].to_numpy(np.int64), day * DAY_NS, day,
                  by_day["amount"].to_numpy(float))
    del by_day
    end = pd.Timestamp(int(p.day.max()), unit="D") if len(p.day) else pd.Timestamp("NaT")
    items = item_names = channels = first_last = channel_names = None
    if product and product in t.columns:
        it = code_table(t[product].cast("string"))
        items, item_names = coded(item_first_days(t, product), {"customer_id": ids, "item": it}), names(it)
    if "channel" in t.columns:
        ch = code_table(t.channel.cast("string"))
        channels = coded(channel_revenue(t), {"customer_id": ids, "channel": ch})
        first_last = coded(first_and_last_channel(t), {"customer_id": ids, "first_channel": ch, "last_channel": ch})
        first_last, channel_names = first_last.set_index("code").sort_index(), names(ch)
    resolved = resolve_occasion(occasion, "order_id" in t.columns, lambda: has_orders(t))
    return Book(p, end, resolved, items, channels, first_last, item_names, channel_names)
