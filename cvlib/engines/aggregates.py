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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib import io
from cvlib.customers import DAY_NS, Purchases
from cvlib.engines.connect import duckdb, duckdb_parquet
from cvlib.engines.summary import days, occasions
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


@contextmanager
def table_of(tx: Any) -> Iterator[Any]:
    """An engine's table as it is, a frame of transactions as one (`frame_table`), or a Parquet file of them read
    by DuckDB: the functions that read transactions take any, with one implementation (the engine expressions)."""
    if isinstance(tx, pd.DataFrame):
        with frame_table(tx) as t:
            yield t
    elif isinstance(tx, Path):
        with duckdb_parquet(tx) as t:
            yield t
    else:
        yield tx


def occasion_of(t: Any, occasion: str) -> str:
    """The study's purchase occasion resolved against the table (`cvlib.occasions.resolve_occasion`)."""
    return resolve_occasion(occasion, "order_id" in t.columns, lambda: has_orders(t))


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


def daily(t: Any, occasion: str, ids: Any = None) -> Book:
    """The customer-day totals of the clean transactions `t` alone (`Book.p`, its last day and the study's
    `occasion` resolved): all that cycles, churn risk and cohorts read (`ids`: the customers' `code_table`)."""
    ids = code_table(t.customer_id.cast("string")) if ids is None else ids
    by_day = coded(customer_days(t), {"customer_id": ids})
    day = by_day["day"].to_numpy(np.int64)
    p = Purchases(names(ids).rename("customer_id"), by_day["code"].to_numpy(np.int64), day * DAY_NS, day,
                  by_day["amount"].to_numpy(float))
    del by_day
    end = pd.Timestamp(int(p.day.max()), unit="D") if len(p.day) else pd.Timestamp("NaT")
    return Book(p, end, occasion_of(t, occasion), None, None, None)


def book(t: Any, occasion: str, product: str | None = "product") -> Book:
    """Every aggregate of the clean transactions `t` the journey stage reads (`occasion`: the study's)."""
    ids = code_table(t.customer_id.cast("string"))
    b = daily(t, occasion, ids)
    items = item_names = channels = first_last = channel_names = None
    if product and product in t.columns:
        it = code_table(t[product].cast("string"))
        items, item_names = coded(item_first_days(t, product), {"customer_id": ids, "item": it}), names(it)
    if "channel" in t.columns:
        ch = code_table(t.channel.cast("string"))
        channels = coded(channel_revenue(t), {"customer_id": ids, "channel": ch})
        first_last = coded(first_and_last_channel(t), {"customer_id": ids, "first_channel": ch, "last_channel": ch})
        first_last, channel_names = first_last.set_index("code").sort_index(), names(ch)
    return replace(b, items=items, channels=channels, first_last=first_last, item_names=item_names,
                   channel_names=channel_names)


def early_behaviour(t: Any, days_: int, product: str | None = "product") -> pd.DataFrame:
    """Per customer (index: customer id, in id order): the spend on the first purchase day (first_order_value),
    the purchase days (early_purchases) and the distinct products (early_service_lines, when there is a product
    column) within `days_` days of the first purchase, by time: the rows dated before the first purchase's
    time plus `days_` days."""
    import ibis

    d = days(t)
    w = ibis.window(group_by=d.customer_id)
    d = d.mutate(_first=d.date.min().over(w), _first_day=d._day.min().over(w))
    e = d.filter(d.date < d._first + ibis.interval(days=int(days_)))
    amount = e.amount.cast("decimal(38, 9)")
    agg = {"first_order_value": amount.sum(where=e._day == e._first_day).cast("float64"),
           "early_purchases": e._day.nunique()}
    if product and product in t.columns:
        agg["early_service_lines"] = e[product].nunique()
    out = e.group_by(e.customer_id.cast("string").name("customer_id")).agg(**agg).order_by("customer_id").to_pandas()
    out["customer_id"] = out["customer_id"].astype(io.STRING)
    return out.set_index("customer_id")


# --------------------------------------------------------------------------- what the CLV stage reads
def span(t: Any) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The times of the first and the last purchase."""
    r = t.aggregate(start=t.date.min(), end=t.date.max()).to_pandas()
    return pd.Timestamp(r["start"].iloc[0]), pd.Timestamp(r["end"].iloc[0])


def returning(t: Any, lo: pd.Timestamp, mid: pd.Timestamp) -> tuple[int, int]:
    """The customers with a purchase dated in (lo, mid], and how many of them bought again after `mid`."""
    prev = t.filter((t.date > lo) & (t.date <= mid)).select("customer_id").distinct()
    cur = t.filter(t.date > mid).select("customer_id").distinct()
    return int(prev.count().execute()), int(prev.semi_join(cur, "customer_id").count().execute())


def window_spend(t: Any, lo: pd.Timestamp, hi: pd.Timestamp) -> tuple[float, int]:
    """The spend (exact sum) and the distinct customers of the purchases dated in (lo, hi]."""
    w = t.filter((t.date > lo) & (t.date <= hi))
    r = w.aggregate(spend=exact_sum(w.amount), customers=w.customer_id.nunique()).to_pandas()
    spend = r["spend"].iloc[0]
    return (0.0 if pd.isna(spend) else float(spend)), int(r["customers"].iloc[0])


def first_channel(t: Any) -> pd.Series | None:
    """Each customer's channel of the first purchase (by time, ties by the row's place; 'unknown' for a row with
    none), by customer id in id order; None without a channel column."""
    if "channel" not in t.columns:
        return None
    f = first_and_last_channel(t).select("customer_id", "first_channel").order_by("customer_id").to_pandas()
    return pd.Series(f["first_channel"].fillna(UNKNOWN).astype(str).to_numpy(),
                     index=f["customer_id"].astype(str).to_numpy(), name="channel")


def direct_cost(t: Any, margin_by_line: dict[str, float], default_margin: float) -> Any:
    """Each row's direct cost: the cost column, else amount minus the margin column, else amount x (1 - the margin
    of its product line), else amount x (1 - default margin) (a missing cost or margin: the default margin)."""
    import ibis

    m = float(default_margin)
    if "cost" in t.columns and bool(t.cost.notnull().any().execute()):
        return t.cost.cast("float64").fill_null(t.amount * (1 - m))
    if "margin" in t.columns and bool(t.margin.notnull().any().execute()):
        return t.amount - t.margin.cast("float64").fill_null(t.amount * m)
    if margin_by_line and "product" in t.columns:
        lines = {str(k): ibis.literal(float(v)) for k, v in margin_by_line.items()}
        line = t["product"].cast("string").substitute(lines, else_=ibis.literal(m))
        return t.amount * (1 - line.fill_null(m))
    return t.amount * (1 - m)


def revenue_and_cost(t: Any, margin_by_line: dict[str, float], default_margin: float) -> pd.DataFrame:
    """Per customer (index: customer id, in id order): revenue and direct cost (`direct_cost`), exact sums."""
    c = t.mutate(_cost=direct_cost(t, margin_by_line, default_margin))
    out = c.group_by(c.customer_id.cast("string").name("customer_id")).agg(
        revenue=exact_sum(c.amount), direct_cost=exact_sum(c._cost)).order_by("customer_id").to_pandas()
    return out.set_index(pd.Index(out["customer_id"].astype(io.STRING), name="customer_id")).drop(
        columns="customer_id")


def repeat_tracking(t: Any, ids: pd.Series, until: Any, by: str) -> tuple[pd.Series, pd.Series]:
    """For the customers `ids`, their occasions (`by`, as the customer summary counts them) up to the day `until`:
    how many customers had their first occasion on each day, and how many repeat occasions (after the customer's
    first day) fell on each day (both indexed by day number)."""
    import ibis

    d = days(t, by=by if by in ("week", "month") else "day")
    d = d.filter(d.customer_id.cast("string").isin(ibis.memtable({"id": ids.astype(str).unique()}).id))
    occ = occasions(d, by, until=until)
    first = occ.group_by("customer_id").agg(first=occ.day.min())
    j = occ.join(first, "customer_id")
    firsts = first.group_by("first").agg(n=first.count()).order_by("first").to_pandas()
    r = j.filter(j.day > j["first"])
    rep = r.group_by("day").agg(n=r.count()).order_by("day").to_pandas()
    return (pd.Series(firsts["n"].to_numpy(np.int64), index=firsts["first"].to_numpy(np.int64)),
            pd.Series(rep["n"].to_numpy(np.int64), index=rep["day"].to_numpy(np.int64)))


# --------------------------------------------------------------------------- what the value stage reads
def before(t: Any, at: pd.Timestamp) -> Any:
    """The transactions dated on or before the day of `at` (the data as they stood at its end)."""
    return t.filter(t.date < (pd.Timestamp(at).normalize() + pd.Timedelta(days=1)).to_pydatetime())


def halves(t: Any, start: pd.Timestamp, mid: pd.Timestamp) -> pd.DataFrame:
    """Per customer (index: customer id, in id order): the spend (negative amounts as 0, exact sums) dated up to
    `mid` (earlier) and after it (recent), and the first purchase as whole days since `start` (first_day)."""
    import ibis

    amount = t.amount.clip(lower=0).cast("decimal(38, 9)")
    late = t.date > mid.to_pydatetime()
    days_in = ((t.date.epoch_seconds() - ibis.literal(start.to_pydatetime()).epoch_seconds()) / 86400.0).floor()
    out = t.group_by(t.customer_id.cast("string").name("customer_id")).agg(
        earlier=amount.sum(where=~late).cast("float64"), recent=amount.sum(where=late).cast("float64"),
        first_day=days_in.min().cast("float64")).order_by("customer_id").to_pandas()
    out = out.set_index(pd.Index(out["customer_id"].astype(io.STRING), name="customer_id")).drop(columns="customer_id")
    return out.fillna({"earlier": 0.0, "recent": 0.0})


def distinct_per_customer(t: Any, column: str) -> pd.Series:
    """The distinct non-missing values of `column` per customer (index: customer id, in id order)."""
    out = t.group_by(t.customer_id.cast("string").name("customer_id")).agg(n=t[column].nunique()).order_by(
        "customer_id").to_pandas()
    return pd.Series(out["n"].to_numpy(np.int64), index=pd.Index(out["customer_id"].astype(io.STRING),
                                                                 name="customer_id"))


def spend_between(t: Any, after: pd.Timestamp, until: pd.Timestamp) -> pd.Series:
    """Per customer (index: customer id): the spend (exact sum) dated after the day of `after` up to the day of
    `until`, inclusive (only customers with a purchase then)."""
    lo = (pd.Timestamp(after).normalize() + pd.Timedelta(days=1)).to_pydatetime()
    hi = (pd.Timestamp(until).normalize() + pd.Timedelta(days=1)).to_pydatetime()
    w = t.filter((t.date >= lo) & (t.date < hi))
    out = w.group_by(w.customer_id.cast("string").name("customer_id")).agg(spend=exact_sum(w.amount)).order_by(
        "customer_id").to_pandas()
    return pd.Series(out["spend"].to_numpy(float), index=pd.Index(out["customer_id"].astype(io.STRING),
                                                                  name="customer_id"))
