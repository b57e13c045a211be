"""What each sales channel brings: acquisition channels with their cost, CLV/CAC and ROI, channels used,
multi-channel customers, and migration from the first channel to the last."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cvlib import customers

STAGES = ("acquisition", "growth", "maturity", "decline", "lapsed")
NOT_YET = "not yet a customer"


def _first_and_last(p: customers.Purchases, ch: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's channel (code) of the first and of the last purchase; ties keep the file's order."""
    order = np.lexsort((p.ns, p.code))  # by customer, then time
    sc = p.code[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
    ends = np.r_[starts[1:], len(sc)] - 1
    first_ch, last_ch = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    first_ch[sc[starts]], last_ch[sc[starts]] = ch[order[starts]], ch[order[ends]]
    return first_ch, last_ch


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
                cac: pd.Series | dict[str, float] | float | None = None,
                p: customers.Purchases | None = None) -> dict[str, pd.DataFrame]:
    """What each channel brings, from transactions with a `channel` column (`clv`, `churned`, `acquisition`
    channel and `cac`: per customer id; `cac` may also be a cost per acquisition channel or one cost; `p`: the
    transactions' `customers.purchases`, when the caller has them):
    - `acquisition`: by acquisition channel (`acquisition`, else the channel of the first purchase): customers,
      revenue, mean and total CLV, conversion (share who came back for a second purchase day), and with
      acquisition costs the mean CAC, CLV/CAC and ROI ((total CLV - total cost) / total cost);
    - `used`: by channel used: customers who bought through it, the revenue through it, their mean CLV and
      CLV/CAC;
    - `multi`: multi-channel against single-channel customers: customers, mean revenue, mean CLV, retention;
    - `migration`: customers by first channel (rows) and last channel (columns) of their purchases."""
    p = customers.purchases(tx) if p is None else p
    ch, names = customers.item_codes(tx["channel"])
    names = list(names)
    if (ch < 0).any():
        ch, names = np.where(ch < 0, len(names), ch), [*names, "unknown"]
    n, k = len(p.ids), len(names)
    first_ch, last_ch = _first_and_last(p, ch, n)
    pair = p.code * k + ch
    if n * k <= 20_000_000:
        keys = np.flatnonzero(np.bincount(pair, minlength=n * k))
        pair_revenue = np.bincount(pair, weights=p.amount, minlength=n * k)[keys]
    else:
        keys, inv = np.unique(pair, return_inverse=True)
        pair_revenue = np.bincount(inv.ravel(), weights=p.amount)
    pair_cust, pair_ch = keys // k, keys % k
    ids = pd.Index(np.asarray(p.ids, dtype=object), name="customer_id")
    per = pd.DataFrame({"revenue": np.bincount(p.code, weights=p.amount, minlength=n),
                        "channels": np.bincount(pair_cust, minlength=n),
                        "converted": customers.distinct_days(p) >= 2}, index=ids)
    label = np.array(names, dtype=object)
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
