"""The per-customer summary as one engine expression (Ibis): what `cvlib.customers.customer_summary` and
`calibration_holdout` compute in pandas, run where the transactions are (DuckDB over Parquet by default,
PostgreSQL, Spark, ...), only one row per customer coming back.

Conventions, the same as the pandas kernel (tested equal): a day is the client's local calendar day (a timestamp
that carries a zone is converted to `timezone` first); the observation end and the calibration cut-off are
inclusive (a purchase on the cut-off day is in the calibration period; the holdout starts the day after); an
occasion is a customer's day, week (from Monday) or calendar month (dated by its first purchase day; recency from
the last purchase day), or an order (dated by its first day, owned by the customer of its first row);
`monetary_value` is the mean of the repeat occasions, the first occasion excluded (ties: the first row)."""
from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from cvlib import io
from cvlib.customers import UNIT_DAYS
from cvlib.io import ROW

#: the SQL function giving the local wall-clock time of an instant, per dialect (the function, argument order)
LOCAL_TIME = {"duckdb": ("timezone", "zone_first"), "postgres": ("timezone", "zone_first"),
              "spark": ("from_utc_timestamp", "zone_last"), "bigquery": ("DATETIME", "zone_last"),
              "snowflake": ("CONVERT_TIMEZONE", "zone_first")}


def local_time(col: Any, engine: str, zone: str | None) -> Any:
    """A timestamp with a zone converted to the client's wall clock in `zone` (UTC when None), by the engine;
    any other column (a timestamp without a zone is taken as local time already) as it is."""
    import ibis

    typ = col.type()
    if not (typ.is_timestamp() and typ.timezone is not None):
        return col
    name, order = LOCAL_TIME[engine]
    args = ("string", typ) if order == "zone_first" else (typ, "string")
    to_local = ibis.udf.scalar.builtin(lambda a, b: None, name=name, signature=(args, "timestamp"))
    z = ibis.literal(zone or "UTC")
    return to_local(z, col) if order == "zone_first" else to_local(col, z)


def local_day(col: Any, engine: str, zone: str | None) -> Any:
    """The calendar day of a date or timestamp column on the client's clock (`local_time`)."""
    col = local_time(col, engine, zone)
    return col.cast("date") if col.type().is_timestamp() else col


def days(t: Any, engine: str = "duckdb", zone: str | None = None, by: str = "day") -> Any:
    """The transactions with `_day`: the local calendar day as days since 1970-01-01 (and `_period`, its week from
    Monday or calendar month as a number, for occasions by week or month)."""
    d = local_day(t.date, engine, zone)
    if by == "week":
        return t.mutate(_day=d.epoch_days(), _period=(d.epoch_days() + 3) // 7)  # 1970-01-01 was a Thursday
    if by == "month":
        return t.mutate(_day=d.epoch_days(), _period=d.year() * 12 + d.month())
    return t.mutate(_day=d.epoch_days())


def _day_number(d: dt.date) -> int:
    return (pd.Timestamp(d).normalize() - pd.Timestamp(0)).days


def occasions(t: Any, by: str, after: dt.date | None = None, until: dt.date | None = None) -> Any:
    """One row per occasion of the rows dated after `after` up to `until` (inclusive) of `days(t)`: customer_id,
    day, value, rank (0: the customer's first), _first_row. An order is built from the rows in the period only."""
    import ibis

    if after is not None:
        t = t.filter(t._day > _day_number(after))
    if until is not None:
        t = t.filter(t._day <= _day_number(until))
    if by in ("week", "month"):  # the period's first purchase day stands for it; the last one kept for recency
        w = ibis.window(group_by=[t.customer_id, t._period])
        t = t.mutate(_last_buy=t._day, _day=t._day.min().over(w))
    if by == "order":
        first = t.group_by("order_id").agg(day=t._day.min(), value=t.amount.sum(), _first_row=t[ROW].min())
        owner = t.select("order_id", "customer_id", _first_row=t[ROW])
        occ = first.join(owner, ["order_id", "_first_row"]).select("customer_id", "day", "value", "_first_row")
    else:
        more = {"last_buy": t._last_buy.max()} if by in ("week", "month") else {}
        occ = t.group_by(["customer_id", t._day.name("day")]).agg(value=t.amount.sum(), _first_row=t[ROW].min(),
                                                                  **more)
    w = ibis.window(group_by=occ.customer_id, order_by=[occ.day, occ._first_row])
    return occ.mutate(rank=ibis.row_number().over(w))


def summary_expr(t: Any, end: dt.date, by: str = "day", unit: str = "weeks") -> Any:
    """Per-customer RFM and CLV inputs at `end` (inclusive) from `days(t)`, in the pandas kernel's columns."""
    import ibis

    end_day = _day_number(end)
    occ = occasions(t, by, until=end)
    g = occ.group_by("customer_id").agg(first=occ.day.min(), last=occ.day.max(), frequency=occ.count(),
                                        monetary=occ.value.sum(),
                                        first_value=occ.value.sum(where=occ["rank"] == 0),
                                        _order=occ._first_row.min(),
                                        **({"last_buy": occ.last_buy.max()} if by in ("week", "month") else {}))
    k, x = UNIT_DAYS[unit], g.frequency - 1
    last_buy = g.last_buy if by in ("week", "month") else g["last"]
    span = (g["last"] - g["first"]).cast("float64")  # floats: PostgreSQL divides integers as NUMERIC otherwise
    age = (end_day - g["first"]).cast("float64")
    g = g.mutate(recency=end_day - last_buy, tenure=end_day - g["first"], x=x, t_x=span / k, T=age / k,
                    monetary_mean=g.monetary / g.frequency.cast("float64"),
                    monetary_value=ibis.ifelse(x > 0, (g.monetary - g.first_value) / x.cast("float64"), 0.0))
    return g.mutate(last_buy=last_buy) if by in ("week", "month") else g


def holdout_expr(t: Any, cal_end: dt.date, hold_end: dt.date, by: str = "day") -> Any:
    """Occasions and spend per customer from the day after `cal_end` to `hold_end` (inclusive) of `days(t)`."""
    h = occasions(t, by, after=cal_end, until=hold_end)
    return h.group_by("customer_id").agg(x_holdout=h.count(), spend_holdout=h.value.sum())


COLUMNS = ["customer_id", "first_purchase", "last_purchase", "recency", "frequency", "monetary", "monetary_mean",
           "tenure", "x", "t_x", "T", "monetary_value"]


def as_frame(df: pd.DataFrame, end: dt.date) -> pd.DataFrame:
    """The engine's result in the pandas kernel's form: its columns, types and customer order (the order of each
    customer's first row)."""
    out = df.sort_values("_order", kind="stable").reset_index(drop=True)
    for c, day in (("first", "first"), ("last", "last_buy" if "last_buy" in out.columns else "last")):
        out[f"{c}_purchase"] = (out[day].to_numpy(np.int64) * 86_400_000_000_000).astype("datetime64[ns]")
    for c in ("recency", "frequency", "tenure", "x"):
        out[c] = out[c].astype(np.int64)
    for c in ("monetary", "monetary_mean", "t_x", "T", "monetary_value"):
        out[c] = out[c].astype(np.float64)
    out["customer_id"] = out["customer_id"].astype(io.STRING)
    out = out[COLUMNS + [c for c in ("x_holdout", "spend_holdout", "duration_holdout") if c in out.columns]]
    out.attrs["end"] = pd.Timestamp(end).normalize()
    return out


def customer_summary(t: Any, end: dt.date, by: str = "day", unit: str = "weeks", engine: str = "duckdb",
                     zone: str | None = None) -> pd.DataFrame:
    """`cvlib.customers.customer_summary` computed by the engine of Ibis table `t` (columns customer_id, date,
    amount, source_row, and order_id when by='order')."""
    return as_frame(summary_expr(days(t, engine, zone, by), end, by, unit).to_pandas(), end)


def calibration_holdout(t: Any, cal_end: dt.date, hold_end: dt.date, by: str = "day", unit: str = "weeks",
                        engine: str = "duckdb", zone: str | None = None) -> pd.DataFrame:
    """`cvlib.customers.calibration_holdout` computed by the engine: the calibration summary of the customers
    first seen by `cal_end`, with their holdout occasions, spend and the holdout length in `unit`."""
    t = days(t, engine, zone, by)
    cal = summary_expr(t, cal_end, by, unit)
    hold = holdout_expr(t, cal_end, hold_end, by)
    j = cal.left_join(hold, "customer_id").drop("customer_id_right")
    j = j.mutate(x_holdout=j.x_holdout.fill_null(0), spend_holdout=j.spend_holdout.fill_null(0.0))
    out = j.to_pandas()
    out["duration_holdout"] = (pd.Timestamp(hold_end).normalize() - pd.Timestamp(cal_end).normalize()).days \
        / UNIT_DAYS[unit]
    return as_frame(out, cal_end)


def histories(summary: Any) -> Any:
    """The distinct (x, t_x, T) histories with their number of customers: all a BG/NBD or Pareto/NBD fit needs
    (the models take weights), so a billion transactions come back as a few thousand rows."""
    return summary.group_by(["x", "t_x", "T"]).agg(customers=summary.count()).order_by(["x", "t_x", "T"])
