"""What one purchase occasion is, once per study (`Study.occasion`): an order, a day, a week from Monday or a
calendar month. The per-customer kernel (`cvlib.customers`) and the engines count occasions with these."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

#: what one purchase occasion can be (`Study.occasion`, resolved): an order, a day, a week from Monday, a month
OCCASIONS = ("order", "day", "week", "month")


def occasion_basis(tx: pd.DataFrame, occasion: str) -> str:
    """The study's occasion with 'auto' resolved: an order when the data has order ids, else a day."""
    return resolve_occasion(occasion, "order_id" in tx.columns, lambda: bool(tx["order_id"].notna().any()))


def resolve_occasion(occasion: str, order_column: bool, has_orders: Callable[[], bool]) -> str:
    """`occasion_basis` for any table: whether it has an order id column, and a call telling whether any row has
    an order id (asked only for 'auto')."""
    if occasion == "auto":
        return "order" if order_column and has_orders() else "day"
    if occasion == "order" and not order_column:
        raise ValueError("occasion is 'order' but the transactions have no order_id column mapped")
    if occasion not in OCCASIONS:
        raise ValueError(f"unknown purchase occasion {occasion!r} ({', '.join(OCCASIONS)})")
    return occasion


def period_numbers(day: np.ndarray, occasion: str) -> np.ndarray:
    """Each day's period: the day itself, its week (from Monday) or its calendar month, as an integer."""
    if occasion in ("day", "order"):  # an order's cycle is counted on the day it was placed
        return day
    if occasion == "week":
        return np.floor_divide(day + 3, 7)  # day 0 (1970-01-01) was a Thursday
    if occasion == "month":
        return day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    raise ValueError(f"unknown purchase occasion {occasion!r} (day, week or month)")


def occasion_days(codes: np.ndarray, day: np.ndarray, occasion: str) -> np.ndarray:
    """Each row's occasion as the first day the customer bought in its week or month (the day itself for days):
    distinct (customer, day) pairs are then the occasions."""
    if occasion in ("day", "order") or not len(day):
        return day
    period = period_numbers(day, occasion)
    p0 = int(period.min())
    _, inv = np.unique(codes.astype(np.int64) * (int(period.max()) - p0 + 1) + (period - p0), return_inverse=True)
    first = np.full(int(inv.max()) + 1, np.iinfo(np.int64).max)
    np.minimum.at(first, inv, day)
    return first[inv]


#: the length of one occasion's period in days (the journey gives cycles in days)
OCCASION_DAYS = {"day": 1.0, "order": 1.0, "week": 7.0, "month": 365.25 / 12}
