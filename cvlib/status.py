"""Whether a customer has left: one definition for the whole study.

A customer has left ("departed") at the observation end when any of these holds, checked in this order:

- ``contract ended``: their contract (``clv.contracts.end_column`` of the customers table) ended on or before the
  observation end, in a study with contracts (``clv.contracts.enabled`` or ``drivers.churn: contracts``);
- ``inactive``: no purchase for more than ``drivers.churn_days`` days;
- ``p_alive``: the purchase model's P(alive) is below ``clv.departed_p_alive``. BG/NBD's P(alive) of a customer
  without a repeat purchase is 1 by construction (dropout can only follow a purchase), not evidence: for those
  customers only the first two tests apply.

The CLV stage decides it (it has the model) and writes it into ``clv.parquet`` (``departed``,
``departed_reason``); every later stage reads it from there. A departed customer's forward value (CLV, value at
risk, expected gains of any action but a win-back) is zero, they sit in no cell of the value matrix and in no
strategic group but the departed one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cvlib import io


def contract_ends(attrs: pd.DataFrame, column: str = "contract_end") -> pd.Series:
    """customer_id -> contract end date (NaT: still active), from the customers table's configured column."""
    a = io.first_per_customer(attrs)
    if column not in a.columns:
        return pd.Series(pd.NaT, index=a.index, dtype="datetime64[ns]")
    return pd.to_datetime(a[column], errors="coerce", format="mixed")


def departed(ids: pd.Series, recency_days: pd.Series | np.ndarray, churn_days: int,
             contract_end: pd.Series | None = None, end: pd.Timestamp | None = None,
             p_alive: np.ndarray | None = None, p_alive_below: float | None = None) -> pd.DataFrame:
    """customer_id, departed (bool) and departed_reason ('' for a live customer, else one of REASONS).

    `contract_end`: customer id -> contract end date (NaT: still running), with `end` the observation end;
    `p_alive`: the model's P(alive) per customer (NaN where it carries no evidence)."""
    ids = pd.Series(ids).astype(str).reset_index(drop=True)
    reason = np.full(len(ids), "", dtype=object)
    if p_alive is not None and p_alive_below is not None:
        p = np.asarray(p_alive, dtype=float)
        reason[np.nan_to_num(p, nan=1.0) < p_alive_below] = "p_alive"
    reason[np.asarray(recency_days, dtype=float) > churn_days] = "inactive"
    if contract_end is not None:
        stop = pd.to_datetime(contract_end.reindex(ids.to_numpy()), errors="coerce").to_numpy()
        at = np.datetime64(pd.Timestamp(end)) if end is not None else None
        ended = ~pd.isna(stop) & ((stop <= at) if at is not None else True)
        reason[ended] = "contract ended"
    return pd.DataFrame({"customer_id": ids.to_numpy(), "departed": reason != "", "departed_reason": reason})


def live(df: pd.DataFrame) -> pd.Series:
    """True for customers still active (a table without the `departed` column: everyone)."""
    if "departed" not in df.columns:
        return pd.Series(True, index=df.index)
    return ~df["departed"].fillna(False).astype(bool)
