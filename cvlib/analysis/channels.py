"""What each sales channel brings: acquisition channels with their cost, CLV/CAC and ROI, channels used,
multi-channel customers, and migration from the first channel to the last."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cvlib import customers
from cvlib.engines import aggregates


def _labels(b: aggregates.Book) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The channel names (in text order, 'unknown' last for rows without one) and, as codes into them: each
    (customer, channel) pair's channel, and each customer's first and last channel (in customer code order)."""
    fl = b.first_last
    coded = [b.channels["channel"].to_numpy(np.int64), fl["first_channel"].to_numpy(np.int64),
             fl["last_channel"].to_numpy(np.int64)]
    names = list(b.channel_names)
    if any((c < 0).any() for c in coded):
        names.append(aggregates.UNKNOWN)
    return (np.array(names, dtype=object), *(np.where(c < 0, len(names) - 1, c) for c in coded))


def _by_acquisition(per: pd.DataFrame, costs: bool) -> pd.DataFrame:
    """Customers, revenue, CLV and conversion by acquisition channel; with costs the mean CAC, CLV/CAC and ROI."""
    spent = {"cac": ("cac", "mean"), "spent": ("cac", "sum")} if costs else {}
    acq = per.groupby("acquired_by").agg(customers=("revenue", "size"), revenue=("revenue", "sum"),
                                         mean_clv=("clv", "mean"), total_clv=("clv", "sum"),
                                         conversion=("converted", "mean"), **spent)
    if costs:
        acq["clv_to_cac"] = acq["mean_clv"] / acq["cac"].where(acq["cac"] > 0)
        acq["roi"] = (acq["total_clv"] - acq["spent"]) / acq["spent"].where(acq["spent"] > 0)
        acq = acq.drop(columns="spent")
    return acq


def _by_channel_used(pairs: pd.DataFrame, costs: bool) -> pd.DataFrame:
    """Customers who bought through each channel, the revenue through it, their mean CLV (and CLV/CAC)."""
    used = pairs.groupby("channel").agg(customers=("amount", "size"), revenue=("amount", "sum"),
                                        mean_clv=("clv", "mean"), **({"cac": ("cac", "mean")} if costs else {}))
    if costs:
        used["clv_to_cac"] = used["mean_clv"] / used["cac"].where(used["cac"] > 0)
        used = used.drop(columns="cac")
    return used


def channel_mix(tx: pd.DataFrame, clv: pd.Series | None = None, churned: pd.Series | None = None,
                acquisition: pd.Series | None = None,
                cac: pd.Series | dict[str, float] | float | None = None) -> dict[str, pd.DataFrame]:
    """`channel_mix_of` the transactions of a frame with a `channel` column (the engine's aggregates of it)."""
    with aggregates.frame_table(tx) as t:
        return channel_mix_of(aggregates.book(t, "day"), clv, churned, acquisition, cac)


def channel_mix_of(b: aggregates.Book, clv: pd.Series | None = None, churned: pd.Series | None = None,
                   acquisition: pd.Series | None = None,
                   cac: pd.Series | dict[str, float] | float | None = None) -> dict[str, pd.DataFrame]:
    """What each channel brings, from a book's aggregates (`clv`, `churned`, `acquisition` channel and `cac`: per
    customer id; `cac` may also be a cost per acquisition channel or one cost):
    - `acquisition`: by acquisition channel (`acquisition`, else the channel of the first purchase): customers,
      revenue, mean and total CLV, conversion (share who came back for a second purchase day), and with
      acquisition costs the mean CAC, CLV/CAC and ROI ((total CLV - total cost) / total cost);
    - `used`: by channel used: customers who bought through it, the revenue through it, their mean CLV and
      CLV/CAC;
    - `multi`: multi-channel against single-channel customers: customers, mean revenue, mean CLV, retention;
    - `migration`: customers by first channel (rows) and last channel (columns) of their purchases."""
    p = b.p
    label, pair_ch, first_ch, last_ch = _labels(b)
    pair_cust = b.channels["code"].to_numpy(np.int64)
    n, k = len(p.ids), len(label)
    pair_revenue = b.channels["revenue"].to_numpy(dtype=float)
    ids = pd.Index(np.asarray(p.ids, dtype=object), name="customer_id")
    per = pd.DataFrame({"revenue": np.bincount(p.code, weights=p.amount, minlength=n),
                        "channels": np.bincount(pair_cust, minlength=n),
                        "converted": customers.distinct_days(p) >= 2}, index=ids)
    per["acquired_by"] = (acquisition.reindex(ids).fillna("unknown").astype(str).to_numpy()
                          if acquisition is not None else label[first_ch])
    per["clv"] = clv.reindex(ids).to_numpy(dtype=float) if clv is not None else np.nan
    per["retained"] = (~churned.reindex(ids).astype("boolean")).to_numpy(dtype=float, na_value=np.nan) \
        if churned is not None else np.nan
    if isinstance(cac, pd.Series):
        per["cac"] = cac.reindex(ids).to_numpy(dtype=float)
    elif isinstance(cac, dict):
        per["cac"] = per["acquired_by"].map(cac).astype(float)
    elif cac is not None:
        per["cac"] = float(cac)
    acq = _by_acquisition(per, cac is not None)
    pairs = pd.DataFrame({"channel": label[pair_ch], "amount": pair_revenue,
                          "clv": per["clv"].to_numpy()[pair_cust],
                          **({"cac": per["cac"].to_numpy()[pair_cust]} if cac is not None else {})})
    used = _by_channel_used(pairs, cac is not None)
    per["reach"] = np.where(per["channels"] > 1, "multi-channel", "single channel")
    multi = per.groupby("reach").agg(customers=("revenue", "size"), mean_revenue=("revenue", "mean"),
                                     mean_clv=("clv", "mean"), retention_rate=("retained", "mean"))
    moves = np.bincount(first_ch * k + last_ch, minlength=k * k).reshape(k, k)
    rows, cols = moves.sum(axis=1) > 0, moves.sum(axis=0) > 0
    migration = pd.DataFrame(moves[rows][:, cols], index=pd.Index(label[rows], name="first channel"),
                             columns=pd.Index(label[cols], name="last channel"))
    return {"acquisition": acq.reset_index().rename(columns={"acquired_by": "channel"}),
            "used": used.reset_index(), "multi": multi.reset_index(), "migration": migration}
