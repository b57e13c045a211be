"""Loyalty and retention measured: who churned (inactivity or contracts), retention rates by group, cohort
matrices, Kaplan-Meier survival curves with the log-rank test, NPS and CSAT with cluster-bootstrap intervals."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cvlib.analysis.importance import (
    interval,
)
from cvlib.customers import Purchases, purchases
from cvlib.params import Drivers
from cvlib.status import contract_ends

Z95 = 1.959963984540054


# --------------------------------------------------------------------------- retention facts
def churn_flags(rfm: pd.DataFrame, cfg: Drivers, attrs: pd.DataFrame | None = None,
                end: pd.Timestamp | None = None, end_column: str = "contract_end") -> pd.DataFrame:
    """Per customer: churned (bool), eligible (observed long enough to be judged), duration in days."""
    d = rfm[["customer_id", "recency", "tenure", "frequency", "first_purchase", "last_purchase"]].copy()
    d["customer_id"] = d["customer_id"].astype(str)
    if cfg.churn == "contracts" and attrs is not None:
        stop = contract_ends(attrs, end_column).reindex(d["customer_id"])
        at = end if end is not None else pd.Timestamp(rfm["last_purchase"].max())
        d["churned"] = (stop.notna() & (stop <= at)).to_numpy()  # ended on or before the observation end
        d["eligible"] = True
    else:
        d["churned"] = d["recency"] > cfg.churn_days
        d["eligible"] = d["tenure"] >= cfg.churn_days
    # survival time: first purchase to last purchase for churners, to the end for the others (censored)
    d["duration_days"] = np.where(d["churned"], d["tenure"] - d["recency"], d["tenure"]).clip(min=0)
    return d


def retention_rates(flags: pd.DataFrame, rfm: pd.DataFrame, by: pd.Series | None = None) -> pd.DataFrame:
    """Retention, churn and repeat-purchase rates among customers observed long enough, overall and by group."""
    d = flags[flags["eligible"]].assign(repeat=lambda x: x["frequency"] > 1)
    d["group"] = "all customers" if by is None else d["customer_id"].map(by).fillna("unknown").astype(str)
    g = d.groupby("group").agg(customers=("churned", "size"), churn_rate=("churned", "mean"),
                               repeat_purchase_rate=("repeat", "mean"))
    g.insert(1, "retention_rate", 1 - g["churn_rate"])
    return g.reset_index()


def cohort_matrices(tx: pd.DataFrame | Purchases, max_months: int = 24) -> dict[str, pd.DataFrame]:
    """Cohort (month of first purchase) x months since, as {"customers": share of the cohort active,
    "revenue": revenue relative to the cohort's first month}. Cells after the data's last month are NaN (not
    observed), so a young cohort does not show as 0% retained. Integer codes and counts: the ids are hashed
    once for both matrices. `tx`: the transactions or their `Purchases` (such as the engine's customer-day
    totals: a month's activity and revenue are the same from either)."""
    p = tx if isinstance(tx, Purchases) else purchases(tx)
    codes = p.code
    month = p.day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) + 1970 * 12  # since year 0
    first = np.full(len(p.ids), np.iinfo(np.int64).max)
    np.minimum.at(first, codes, month)
    k = month - first[codes]
    keep = k <= max_months
    c0, width = int(first.min()), max_months + 1
    n_cohorts = int(first.max()) - c0 + 1
    cell = (first[codes] - c0) * width + k  # (cohort, months since) of each row
    key = codes[keep].astype(np.int64) * width + k[keep]
    key.sort()
    key = key[np.r_[True, key[1:] != key[:-1]]] if len(key) else key  # distinct (customer, months since)
    cust_cell = (first[key // width] - c0) * width + key % width
    counts = {"customers": np.bincount(cust_cell, minlength=n_cohorts * width).astype(float),
              "revenue": np.bincount(cell[keep], weights=p.amount[keep],
                                     minlength=n_cohorts * width)}
    present = counts["customers"].reshape(n_cohorts, width)[:, 0] > 0
    cols = range(0, int(min(max_months, month.max() - first.min())) + 1)
    cohorts = np.arange(c0, c0 + n_cohorts)[present]
    unobserved = (cohorts[:, None] + np.asarray(cols)[None, :]) > month.max()
    out = {}
    for name, v in counts.items():
        grid = v.reshape(n_cohorts, width)[present][:, : len(cols)]
        with np.errstate(invalid="ignore", divide="ignore"):
            t = pd.DataFrame(grid / grid[:, [0]], columns=pd.Index(cols, name="months since first purchase"))
        t = t.mask(unobserved)  # months after the data's last month were never observed: blank, not 0%
        t.index = pd.Index([f"{c // 12:04d}-{c % 12 + 1:02d}" for c in cohorts], name="cohort")  # as Period("1997-01")
        out[name] = t
    return out


def cohort_matrix(tx: pd.DataFrame, value: str = "customers", max_months: int = 24) -> pd.DataFrame:
    """One of `cohort_matrices`: "customers" (share of the cohort active) or "revenue"."""
    return cohort_matrices(tx, max_months)[value]


def km_curves(flags: pd.DataFrame, groups: pd.Series | None = None) -> tuple[pd.DataFrame, dict]:
    """Kaplan-Meier retention curves (lifelines) per group, and a multivariate log-rank test."""
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    d = flags.copy()
    d["group"] = "all customers" if groups is None else d["customer_id"].map(groups).fillna("unknown").astype(str)
    curves = []
    for g, sub in d.groupby("group"):
        if len(sub) < 2:
            continue
        kmf = KaplanMeierFitter().fit(sub["duration_days"], sub["churned"], label=str(g))
        sf = kmf.survival_function_.reset_index()
        sf.columns = ["days", "survival"]
        curves.append(sf.assign(group=str(g), customers=len(sub)))
    curves_df = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=["days", "survival", "group"])
    test = {"test": "log-rank", "p_value": float("nan"), "statistic": float("nan"), "groups": d["group"].nunique()}
    if d["group"].nunique() > 1 and d["churned"].any():
        r = multivariate_logrank_test(d["duration_days"], d["group"], d["churned"])
        test.update(p_value=float(r.p_value), statistic=float(r.test_statistic))
    return curves_df, test


# --------------------------------------------------------------------------- survey
def nps(scores: pd.Series) -> dict[str, float]:
    """Net promoter score in points (share 9-10 minus share 0-6) with a 95% interval."""
    s = pd.to_numeric(scores, errors="coerce").dropna()
    n = len(s)
    if n == 0:
        return {"n": 0, "nps": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                "promoters": float("nan"), "detractors": float("nan")}
    pp, pd_ = float((s >= 9).mean()), float((s <= 6).mean())
    v = pp - pd_
    se = math.sqrt(max(pp + pd_ - v * v, 0) / n)
    return {"n": n, "nps": 100 * v, "ci_low": 100 * (v - Z95 * se), "ci_high": 100 * (v + Z95 * se),
            "promoters": pp, "detractors": pd_}


def csat(scores: pd.Series, scale: int = 5) -> dict[str, float]:
    """CSAT: share of the top two boxes (4-5 on a 5-point scale) with a Wilson 95% interval."""
    s = pd.to_numeric(scores, errors="coerce").dropna()
    n = len(s)
    if n == 0:
        return {"n": 0, "csat": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    p = float((s >= scale - 1).mean())
    den = 1 + Z95**2 / n
    mid = (p + Z95**2 / (2 * n)) / den
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / den
    return {"n": n, "csat": p, "ci_low": mid - half, "ci_high": mid + half}


def cluster_bootstrap(values: pd.Series, clusters: pd.Series, stat, n: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """95% interval of stat(values) resampling whole customers (clusters) with replacement: answers of one
    customer are not independent, so an interval that treats them as such is too narrow."""
    d = pd.DataFrame({"v": pd.to_numeric(values, errors="coerce").to_numpy(), "c": clusters.to_numpy()}).dropna()
    if d.empty:
        return float("nan"), float("nan")
    codes, _ = pd.factorize(d["c"])
    order = np.argsort(codes, kind="stable")
    v = d["v"].to_numpy()[order]
    starts = np.r_[0, np.flatnonzero(np.diff(codes[order])) + 1]
    sizes = np.diff(np.r_[starts, len(v)])
    rng = np.random.default_rng(seed)
    k = len(starts)
    draws = []
    for _ in range(n):
        pick = rng.integers(0, k, k)
        idx = np.concatenate([np.arange(starts[i], starts[i] + sizes[i]) for i in pick])
        draws.append(stat(pd.Series(v[idx])))
    return interval(np.array(draws), stat(pd.Series(v)))


def survey_table(fb: pd.DataFrame, cfg: Drivers, groups: pd.Series | None = None) -> pd.DataFrame:
    """NPS, CSAT and complaint rate (with intervals) overall and per group."""
    f = fb.assign(customer_id=fb["customer_id"].astype(str))
    f["group"] = "all customers" if groups is None else f["customer_id"].map(groups).fillna("unknown").astype(str)
    c = cfg.feedback
    rows = []
    for name, sub in [("all customers", f), *list(f.groupby("group"))]:
        r = {"group": name, "responses": len(sub), "customers": sub["customer_id"].nunique()}
        repeated = r["customers"] < r["responses"]  # customers answered more than once: resample customers
        if c.nps and c.nps in sub:
            n = nps(sub[c.nps])
            lo, hi = (cluster_bootstrap(sub[c.nps], sub["customer_id"], lambda x: nps(x)["nps"], 400, cfg.seed)
                      if repeated else (n["ci_low"], n["ci_high"]))
            r.update(nps_points=n["nps"], nps_ci_low=lo, nps_ci_high=hi)
        if c.csat and c.csat in sub:
            k = csat(sub[c.csat], c.csat_scale)
            lo, hi = (cluster_bootstrap(sub[c.csat], sub["customer_id"], lambda x: csat(x, c.csat_scale)["csat"],
                                        400, cfg.seed) if repeated else (k["ci_low"], k["ci_high"]))
            r.update(csat=k["csat"], csat_ci_low=lo, csat_ci_high=hi)
        if c.complaints and c.complaints in sub:
            r.update(share_with_complaints=float((sub[c.complaints].fillna(0) > 0).mean()),
                     complaints_per_response=float(sub[c.complaints].fillna(0).mean()))
        rows.append(r)
    out = pd.DataFrame(rows)
    return out.drop_duplicates("group") if groups is None else out
