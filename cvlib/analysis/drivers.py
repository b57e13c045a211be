"""Loyalty and retention: churn facts, cohorts, survival curves, NPS/CSAT, and what drives them.

Relative importance for linear outcomes: Shapley decomposition of R-squared (LMG; exact over all
subsets up to `max_exact` drivers, sampled orderings beyond) and Johnson's relative weights, both
with bootstrap intervals. Binary outcomes: standardised logistic coefficients and a gradient-boosted
classifier's permutation importance on a held-out split. Categorical drivers count as one driver.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib import i18n, io, threads
from cvlib.analysis import churn, journey, reasons
from cvlib.params import Drivers, Study
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


def cohort_matrices(tx: pd.DataFrame, max_months: int = 24) -> dict[str, pd.DataFrame]:
    """Cohort (month of first purchase) x months since, as {"customers": share of the cohort active,
    "revenue": revenue relative to the cohort's first month}. Cells after the data's last month are NaN (not
    observed), so a young cohort does not show as 0% retained. Integer codes and counts: the ids are hashed
    once for both matrices."""
    codes, ids = pd.factorize(io.as_ids(tx["customer_id"]))
    month = (tx["date"].dt.year * 12 + tx["date"].dt.month - 1).to_numpy(dtype=np.int64)  # months since year 0
    first = np.full(len(ids), np.iinfo(np.int64).max)
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
              "revenue": np.bincount(cell[keep], weights=tx["amount"].to_numpy(dtype=float)[keep],
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


# --------------------------------------------------------------------------- driver table
@dataclass
class DriverSet:
    X: pd.DataFrame               # numeric design matrix (categoricals one-hot)
    groups: dict[str, list[str]]  # driver -> its columns in X
    ratings: list[str]            # drivers that are survey ratings
    notes: list[str] = field(default_factory=list)
    collinear: pd.DataFrame = field(default_factory=pd.DataFrame)
    respondents: pd.Series | None = None  # customers the analyses use (respondents when surveys are drivers)


def early_behaviour(tx: pd.DataFrame, days: int) -> pd.DataFrame:
    """First order value, purchases and service lines in each customer's first `days` days."""
    d = tx.assign(customer_id=io.as_ids(tx["customer_id"]))
    first = d.groupby("customer_id")["date"].transform("min")
    early = d[d["date"] < first + pd.Timedelta(days=days)]
    first_day = early[early["date"].dt.normalize() == first.loc[early.index].dt.normalize()]
    days_bought = early[["customer_id"]].assign(day=early["date"].dt.normalize()).drop_duplicates()
    out = pd.DataFrame({"first_order_value": first_day.groupby("customer_id")["amount"].sum(),
                        "early_purchases": days_bought.groupby("customer_id").size()})
    if "product" in d.columns:
        out["early_service_lines"] = early.groupby("customer_id")["product"].nunique()
    return out


Drivers_ = tuple[list[pd.Series | pd.DataFrame], dict[str, list[str]]]  # columns, and each driver's columns


def _attribute_drivers(attrs: pd.DataFrame, customers: pd.Index, skip: set[str]) -> Drivers_:
    """Numeric attributes as they are; categorical ones (at most 12 values) as dummies, missing kept missing."""
    parts, groups = [], {}
    a = io.first_per_customer(attrs).reindex(customers)
    for col in a.columns:
        s = a[col]
        if col in skip:
            continue
        if pd.api.types.is_numeric_dtype(s):
            parts.append(s.astype(float).rename(col))
            groups[col] = [col]
        elif s.nunique() <= 12:
            dummies = pd.get_dummies(s.astype("string"), prefix=col, prefix_sep="=", drop_first=True, dtype=float)
            dummies[s.isna().to_numpy()] = np.nan
            if dummies.shape[1]:
                parts.append(dummies)
                groups[col] = list(dummies.columns)
    return parts, groups


def _survey_drivers(fb: pd.DataFrame, customers: pd.Index, c) -> tuple[Drivers_, list[str], pd.Series]:
    """Each customer's mean survey ratings and complaint rate, the rating drivers, and who answered a survey."""
    parts, groups = [], {}
    f = fb.assign(customer_id=fb["customer_id"].astype(str))
    not_ratings = {"customer_id", "date", c.nps, c.csat, c.complaints}
    rating_cols = c.ratings or [k for k in f.columns if k not in not_ratings and pd.api.types.is_numeric_dtype(f[k])]
    means = f.groupby("customer_id")[rating_cols].mean().reindex(customers)
    for col in rating_cols:
        parts.append(means[col].rename(col))
        groups[col] = [col]
    if c.complaints and c.complaints in f.columns:  # a rate per survey: not a sum that grows with tenure
        parts.append(f.groupby("customer_id")[c.complaints].mean().reindex(customers).rename("complaints"))
        groups["complaints"] = ["complaints"]
    return (parts, groups), list(rating_cols), f.groupby("customer_id").size().reindex(customers).notna()


def _usable(X: pd.DataFrame, groups: dict[str, list[str]], cfg: Drivers, notes: list[str]) -> dict[str, list[str]]:
    """The drivers asked for (`drivers.drivers`), without those entirely missing or constant (each said)."""
    if cfg.drivers:
        unknown = [d for d in cfg.drivers if d not in groups]
        if unknown:
            notes.append(i18n.for_consultant("drivers.note_unknown", names=", ".join(unknown)))
        groups = {k: v for k, v in groups.items() if k in cfg.drivers}
    for name, cols in list(groups.items()):
        sub = X[cols]
        if sub.isna().all().all():
            notes.append(i18n.t("drivers.note_all_missing", name=i18n.label(name)))
            del groups[name]
        elif sub.nunique(dropna=True).max() <= 1:
            notes.append(i18n.t("drivers.note_constant_driver", name=i18n.label(name)))
            del groups[name]
    return groups


def driver_set(customers: pd.Index, attrs: pd.DataFrame | None, fb: pd.DataFrame | None, early: pd.DataFrame,
               cfg: Drivers) -> DriverSet:
    """The drivers per customer: attributes, mean survey ratings and complaints, early behaviour.

    Constant or entirely missing drivers are dropped with a note; near-collinear pairs are reported."""
    parts, groups, ratings, notes = [], {}, [], []
    respondents = pd.Series(True, index=customers)
    if attrs is not None:
        more, named = _attribute_drivers(attrs, customers, set(cfg.never_used()) | {"customer_id", "date"})
        parts, groups = parts + more, {**groups, **named}
    if fb is not None:
        (more, named), ratings, respondents = _survey_drivers(fb, customers, cfg.feedback)
        parts, groups = parts + more, {**groups, **named}
    for col in early.columns:
        parts.append(early[col].reindex(customers).astype(float).rename(col))
        groups[col] = [col]
    X = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=customers)
    groups = _usable(X, groups, cfg, notes)
    X = X[[c for cols in groups.values() for c in cols]]
    collinear = collinear_pairs(X)
    if len(collinear):
        notes.append(i18n.t("drivers.note_collinear", n=len(collinear)))
    rated = [r for r in ratings if r in groups] or ("complaints" in groups)
    if rated and (~respondents).any():
        notes.append(i18n.t("drivers.note_respondents", n=f"{int((~respondents).sum()):,}", of=f"{len(customers):,}",
                            k=f"{int(respondents.sum()):,}"))
    else:
        respondents = pd.Series(True, index=customers)
    return DriverSet(X, groups, [r for r in ratings if r in groups], notes, collinear, respondents)


def collinear_pairs(X: pd.DataFrame, threshold: float = 0.8) -> pd.DataFrame:
    """Pairs of columns whose correlation is at least `threshold` in absolute value."""
    if X.shape[1] < 2:
        return pd.DataFrame(columns=["driver_a", "driver_b", "correlation"])
    r = X.corr()
    rows = [(a, b, r.loc[a, b]) for a, b in combinations(r.columns, 2) if abs(r.loc[a, b]) >= threshold]
    return pd.DataFrame(rows, columns=["driver_a", "driver_b", "correlation"])


# --------------------------------------------------------------------------- linear importance
def _standardise(X: np.ndarray) -> np.ndarray:
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1)


def r2_subset(corr_xx: np.ndarray, corr_xy: np.ndarray, cols: list[int]) -> float:
    """R-squared of the regression on a subset of standardised columns, from the correlations."""
    if not cols:
        return 0.0
    Rss = corr_xx[np.ix_(cols, cols)]
    r = corr_xy[cols]
    try:
        beta = np.linalg.solve(Rss, r)
    except np.linalg.LinAlgError:  # collinear columns
        beta = np.linalg.lstsq(Rss, r, rcond=None)[0]
    return float(r @ beta)


def _prefix_r2(C: np.ndarray, order: list[int]) -> np.ndarray:
    """R-squared after each column of `order` is added: one Cholesky factor of the correlations with the
    outcome last; the outcome row holds the successive increments (a tiny ridge keeps collinear columns safe)."""
    idx = [*order, C.shape[0] - 1]
    M = C[np.ix_(idx, idx)] + np.eye(len(idx)) * 1e-9
    L = np.linalg.cholesky(M)
    return np.cumsum(L[-1, :-1] ** 2)


def lmg(X: pd.DataFrame, y: pd.Series, groups: dict[str, list[str]], max_exact: int = 12, permutations: int = 300,
        seed: int = 0) -> pd.Series:
    """Shapley decomposition of R-squared over driver groups (sums to the full model's R-squared)."""
    Z = np.column_stack([_standardise(X.to_numpy(dtype=float)), _standardise(y.to_numpy(dtype=float)[:, None])])
    C = np.corrcoef(Z, rowvar=False) if len(Z) > 1 else np.eye(Z.shape[1])
    C = np.nan_to_num(C)
    cxx, cxy = C[:-1, :-1], C[:-1, -1]
    index = {c: i for i, c in enumerate(X.columns)}
    names = list(groups)
    p = len(names)
    cols_of = [[index[c] for c in groups[n]] for n in names]
    cache: dict[int, float] = {}

    def r2(mask: int) -> float:
        if mask not in cache:
            cache[mask] = r2_subset(cxx, cxy, [c for j in range(p) if mask >> j & 1 for c in cols_of[j]])
        return cache[mask]

    shares = np.zeros(p)
    if p <= max_exact:
        fact = [math.factorial(k) for k in range(p + 1)]
        for j in range(p):
            others = [k for k in range(p) if k != j]
            for size in range(p):
                w = fact[size] * fact[p - size - 1] / fact[p]
                for combo in combinations(others, size):
                    m = sum(1 << k for k in combo)
                    shares[j] += w * (r2(m | 1 << j) - r2(m))
    else:
        rng = np.random.default_rng(seed)
        for _ in range(permutations):
            perm = rng.permutation(p)
            order = [c for j in perm for c in cols_of[j]]
            prefix = _prefix_r2(C, order)
            ends = np.cumsum([len(cols_of[j]) for j in perm]) - 1
            at = prefix[ends]
            shares[perm] += np.diff(np.r_[0.0, at])
        shares /= permutations
    return pd.Series(shares, index=names)


def relative_weights(X: pd.DataFrame, y: pd.Series, groups: dict[str, list[str]]) -> pd.Series:
    """Johnson's relative weights (sum to R-squared); a categorical driver sums its columns' weights."""
    Z = _standardise(X.to_numpy(dtype=float))
    yz = _standardise(y.to_numpy(dtype=float)[:, None])[:, 0]
    n = len(Z)
    Rxx = Z.T @ Z / n
    rxy = Z.T @ yz / n
    evals, evecs = np.linalg.eigh(Rxx)
    evals = np.clip(evals, 1e-12, None)
    lam = evecs @ np.diag(np.sqrt(evals)) @ evecs.T  # correlations of X with its orthogonal counterparts
    beta = np.linalg.solve(lam, rxy)
    raw = (lam**2) @ (beta**2)
    w = pd.Series(raw, index=X.columns)
    return pd.Series({g: float(w[cols].sum()) for g, cols in groups.items()})


def interval(draws: np.ndarray, estimate: float) -> tuple[float, float]:
    """95% bias-corrected percentile interval of resampled values around `estimate`. The correction moves the
    percentiles by how far the resamples sit to one side of the estimate; where they all do, the interval is
    extended to the estimate, so an interval always contains its estimate."""
    from scipy.stats import norm

    d = np.asarray(draws, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) == 0 or not np.isfinite(estimate):
        return float("nan"), float("nan")
    share = (np.sum(d < estimate) + 0.5 * np.sum(d == estimate)) / len(d)
    z0 = norm.ppf(np.clip(share, 1 / (2 * len(d)), 1 - 1 / (2 * len(d))))
    lo, hi = np.quantile(d, norm.cdf(2 * z0 + norm.ppf([0.025, 0.975])))
    return float(min(lo, estimate)), float(max(hi, estimate))


def bootstrap_importance(fn, X: pd.DataFrame, y: pd.Series, groups: dict, n: int, seed: int,
                         estimate: pd.Series | None = None) -> pd.DataFrame:
    """95% intervals of an importance function over bootstrap resamples of customers (bias-corrected
    percentiles around the full-sample estimate, see `interval`)."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n):
        idx = rng.integers(0, len(X), len(X))
        draws.append(fn(X.iloc[idx].reset_index(drop=True), y.iloc[idx].reset_index(drop=True), groups))
    if not draws:
        return pd.DataFrame({"ci_low": np.nan, "ci_high": np.nan}, index=list(groups))
    d = pd.DataFrame(draws)
    est = estimate if estimate is not None else fn(X, y, groups)
    bounds = {k: interval(d[k].to_numpy(), float(est[k])) for k in d.columns}
    return pd.DataFrame(bounds, index=["ci_low", "ci_high"]).T


# --------------------------------------------------------------------------- binary importance
def _impute(X: pd.DataFrame) -> pd.DataFrame:
    return X.fillna(X.median()).fillna(0.0)


def logistic_importance(X: pd.DataFrame, y: np.ndarray, groups: dict[str, list[str]], seed: int = 0) -> pd.Series:
    """Standardised logistic coefficients (a categorical driver: its largest absolute coefficient, signed)."""
    from sklearn.linear_model import LogisticRegression

    Z = _standardise(_impute(X).to_numpy(dtype=float))
    m = LogisticRegression(max_iter=2000, C=1.0, random_state=seed).fit(Z, y)
    coef = pd.Series(m.coef_[0], index=X.columns)
    return pd.Series({g: float(coef[cols].iloc[np.argmax(np.abs(coef[cols].to_numpy()))])
                      for g, cols in groups.items()})


def permutation_importance_groups(model, X: pd.DataFrame, y: np.ndarray, groups: dict[str, list[str]],
                                  repeats: int = 10, seed: int = 0) -> pd.DataFrame:
    """Drop in ROC AUC when a driver's columns are shuffled together (mean and 95% range over repeats)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    base = roc_auc_score(y, model.predict_proba(X)[:, 1])
    rows = {}
    for g, cols in groups.items():
        drops = []
        for _ in range(repeats):
            Xp = X.copy()
            perm = rng.permutation(len(X))
            Xp[cols] = X[cols].to_numpy()[perm]
            drops.append(base - roc_auc_score(y, model.predict_proba(Xp)[:, 1]))
        mean = float(np.mean(drops))
        rows[g] = {"importance": mean, "ci_low": min(float(np.percentile(drops, 2.5)), mean),
                   "ci_high": max(float(np.percentile(drops, 97.5)), mean)}
    return pd.DataFrame(rows).T


@dataclass
class ChurnModel:
    auc: float
    importance: pd.DataFrame        # driver, method, importance, ci_low, ci_high
    probabilities: pd.Series        # out-of-fold calibrated P(churn) per customer
    calibration: pd.DataFrame       # mean predicted against observed churn, by bin
    n: int
    churners: int


def churn_model(ds: DriverSet, churned: pd.Series, cfg: Drivers, X_new: pd.DataFrame | None = None) -> ChurnModel | str:
    """Logistic and gradient-boosted churn models; calibrated out-of-fold churn probabilities.

    Returns the reason as text when there are too few churners or stayers. A large batch of customers outside the
    sample is scored on every core (`batch_threads`)."""
    from sklearn.calibration import CalibratedClassifierCV, calibration_curve
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import (
        StratifiedKFold,
        cross_val_predict,
        train_test_split,
    )

    y = churned.astype(int).to_numpy()
    k1, k0 = int(y.sum()), int(len(y) - y.sum())
    if min(k1, k0) < cfg.min_class:
        return i18n.t("drivers.too_few", k1=k1, k0=k0, need=cfg.min_class)
    if ds.X.shape[1] == 0:
        return i18n.t("drivers.no_usable")
    X_all = _impute(ds.X)
    keep = churn.bounded_sample(y, cfg.max_model_customers, cfg.seed)
    X, y = X_all.iloc[keep], y[keep]  # the classifiers' rows: every eligible customer, or a stratified sample
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=cfg.test_size, random_state=cfg.seed, stratify=y)
    gbm = HistGradientBoostingClassifier(max_depth=3, learning_rate=0.08, max_iter=200, random_state=cfg.seed)
    gbm.fit(Xtr, ytr)
    auc = float(roc_auc_score(yte, gbm.predict_proba(Xte)[:, 1]))
    perm = permutation_importance_groups(gbm, Xte, yte, ds.groups, 10, cfg.seed)
    logit = logistic_importance(X, y, ds.groups, cfg.seed)
    imp = pd.concat([
        perm.assign(method="permutation (gradient boosting, ROC AUC drop)").rename_axis("driver").reset_index(),
        pd.DataFrame({"driver": logit.index, "importance": logit.to_numpy(), "ci_low": np.nan, "ci_high": np.nan,
                      "method": "logistic (standardised coefficient, + raises churn)"}),
    ], ignore_index=True)
    cal = CalibratedClassifierCV(HistGradientBoostingClassifier(max_depth=3, learning_rate=0.08, max_iter=200,
                                                                random_state=cfg.seed), method="isotonic", cv=3)
    folds = StratifiedKFold(5, shuffle=True, random_state=cfg.seed)
    proba = cross_val_predict(cal, X, y, cv=folds, method="predict_proba")[:, 1]
    obs, pred = calibration_curve(y, proba, n_bins=10, strategy="quantile")
    probs = pd.Series(proba, index=X.index)
    rest = X_all.drop(index=X.index)
    new = X_new.fillna(ds.X.median()).fillna(0.0) if X_new is not None else X_all.iloc[:0]
    if len(rest) or len(new):  # customers outside the sample, and those too new to be judged: the model fitted
        other = pd.concat([rest, new])  # on the sample scores them
        cal.fit(X, y)
        with threads.batch_threads(len(other)):
            probs = pd.concat([probs, pd.Series(cal.predict_proba(other)[:, 1], index=other.index)])
    return ChurnModel(auc, imp, probs, pd.DataFrame({"predicted": pred, "observed": obs}), len(y), int(y.sum()))


IPA_GOOD = 2 / 3  # a rating counts as good performance from two thirds of the way up its scale


def ipa(importance: pd.Series, ratings_mean: pd.Series, scale: tuple[float, float] = (1.0, 5.0)) -> pd.DataFrame:
    """Importance-performance analysis: quadrant of each rated driver. Importance is split at the mean importance;
    performance on the rating scale itself (good from two thirds of the way up, `performance_cut`), not at the
    mean of the observed ratings: attributes all rated 3.5 of 5 are not 'possible overkill' because one is 3.51."""
    d = pd.DataFrame({"importance": importance, "mean_rating": ratings_mean}).dropna()
    cut = scale[0] + IPA_GOOD * (scale[1] - scale[0])
    hi_i = d["importance"] >= d["importance"].mean()
    hi_p = d["mean_rating"] >= cut
    d["performance_cut"] = cut
    d["quadrant"] = np.select([hi_i & hi_p, hi_i & ~hi_p, ~hi_i & ~hi_p], ["keep up the good work",
                                                                          "concentrate here", "low priority"],
                              "possible overkill")
    return d.rename_axis("driver").reset_index()


# --------------------------------------------------------------------------- the stage
@dataclass
class DriversResult:
    flags: pd.DataFrame
    rates: pd.DataFrame
    rates_by: pd.DataFrame
    cohorts: pd.DataFrame
    revenue_cohorts: pd.DataFrame
    km: pd.DataFrame
    logrank: dict
    survey: pd.DataFrame | None
    drivers: pd.DataFrame
    ipa: pd.DataFrame | None
    churn: ChurnModel | None
    linear_r2: float | None
    collinear: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    risk: "churn.ChurnRisk | None" = None
    reasons: pd.DataFrame | None = None            # why customers left: per reason, customers and revenue
    reasons_by_segment: pd.DataFrame | None = None


def group_series(study: Study, rfm: pd.DataFrame, attrs: pd.DataFrame | None) -> pd.Series:
    """customer_id -> group label for the 'by group' views (RFM segment or an attribute)."""
    col = study.drivers.group_by
    if col in rfm.columns:
        return rfm.set_index(rfm["customer_id"].astype(str))[col].astype(str)
    if attrs is not None and col in attrs.columns:
        return attrs.set_index(attrs["customer_id"].astype(str))[col].astype(str)
    return rfm.set_index(rfm["customer_id"].astype(str))["segment"].astype(str)


def study_cycles(study: Study, tx: pd.DataFrame, rfm: pd.DataFrame, end: pd.Timestamp) -> pd.Series:
    """Each customer's usual purchase cycle in days as the journey stage measures it (`journey.cycles`: the
    purchase occasion, shrinkage toward the segment's cycle), so `within_cycle`, `cycle_days` and `overdue` rest
    on one cycle in every stage."""

    c = study.journey.cycles
    seg = io.by_customer(rfm)["segment"].astype(str) if "segment" in rfm.columns else None
    return journey.purchase_cycles(tx, end, seg, c.overdue_k, c.prior_gaps, occasion=c.occasion)["cycle_days"]


def build_drivers(study: Study, tx: pd.DataFrame, rfm: pd.DataFrame, clv: pd.DataFrame | None,
                  attrs: pd.DataFrame | None, fb: pd.DataFrame | None) -> DriversResult:
    """Everything the drivers stage computes."""
    cfg = study.drivers
    notes: list[str] = []
    if study.drivers.group_by not in rfm.columns and (attrs is None or study.drivers.group_by not in attrs.columns):
        notes.append(i18n.for_consultant("drivers.note_group_by", by=study.drivers.group_by))
    groups = group_series(study, rfm, attrs)
    end = pd.Timestamp(rfm["last_purchase"].max()).normalize() if "end" not in rfm.attrs else rfm.attrs["end"]
    end_col = study.clv.contracts.end_column
    flags = churn_flags(rfm, cfg, attrs, end, end_col)
    ce = contract_ends(attrs, end_col) if cfg.churn == "contracts" and attrs is not None else None
    unit = 7.0 if study.rfm.time_unit == "weeks" else 1.0
    risk = churn.churn_risk(tx, end, cfg.churn_days, cfg, attrs, fb, ce, unit, study_cycles(study, tx, rfm, end))
    notes += risk.notes
    rates = retention_rates(flags, rfm)
    rates_by = retention_rates(flags, rfm, groups)
    km, logrank = km_curves(flags, groups)
    survey = survey_table(fb, cfg, groups) if fb is not None else None
    if fb is None:
        notes.append(i18n.for_consultant("drivers.note_no_feedback"))
    ds = driver_set(pd.Index(flags["customer_id"]), attrs, fb, early_behaviour(tx, cfg.early_days), cfg)
    notes += ds.notes
    rows = []
    churn_cm = None
    eligible = flags.set_index("customer_id")["eligible"]
    churned = flags.set_index("customer_id")["churned"]
    el = eligible.to_numpy()
    if ds.respondents is not None:
        el = el & ds.respondents.reindex(eligible.index).fillna(False).to_numpy(dtype=bool)
        eligible = pd.Series(el, index=eligible.index)
    cm = churn_model(DriverSet(ds.X[el], ds.groups, ds.ratings), churned[eligible], cfg, ds.X[~el])
    if isinstance(cm, str):
        notes.append(i18n.t("drivers.note_classifier_skipped", why=cm))
    else:
        churn_cm = cm
        rows.append(cm.importance)
        if cm.n < int(el.sum()):
            notes.append(i18n.t("drivers.note_classifier_sample", n=f"{cm.n:,}", of=f"{int(el.sum()):,}"))
        missing = int(ds.X[el].isna().any(axis=1).sum())
        notes.append(i18n.t("drivers.note_classifier", n=f"{cm.n:,}", k=f"{cm.churners:,}", missing=f"{missing:,}"))
        # the same decomposition as for the other outcomes: Shapley shares of R² of a linear probability model
        lin_churn, _ = linear_drivers(ds, churned[eligible], cfg, notes, i18n.t("drivers.churn_lpm"),
                                      "churn ")
        rows.append(lin_churn)
    linear_r2 = None
    ipa_df = None
    if cfg.outcome in {"nps", "clv"}:
        y = None
        if cfg.outcome == "nps" and fb is not None and cfg.feedback.nps in fb.columns:
            y = fb.assign(customer_id=fb["customer_id"].astype(str)).groupby("customer_id")[cfg.feedback.nps].mean()
        elif cfg.outcome == "clv" and clv is not None:
            y = clv.set_index(clv["customer_id"].astype(str))["clv"]
        if y is None:
            notes.append(i18n.t("drivers.note_no_outcome", outcome=i18n.label(cfg.outcome)))
        else:
            lin, linear_r2 = linear_drivers(ds, y, cfg, notes, cfg.outcome.upper() if cfg.outcome == "nps"
                                            else i18n.t("drivers.predicted_clv"))
            rows.append(lin)
            if ds.ratings and len(lin):
                imp = lin[lin["method"].str.startswith("LMG")].set_index("driver")["importance"]
                ipa_df = ipa(imp[imp.index.isin(ds.ratings)], ds.X[ds.ratings].mean(), (1, cfg.feedback.csat_scale))
    elif churn_cm is not None and ds.ratings:
        perm = churn_cm.importance[churn_cm.importance["method"].str.startswith("permutation")]
        imp = perm.set_index("driver")["importance"]
        ipa_df = ipa(imp[imp.index.isin(ds.ratings)], ds.X[ds.ratings].mean(), (1, cfg.feedback.csat_scale))
    drivers = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["driver", "method", "importance", "ci_low", "ci_high"])
    means = ds.X[ds.ratings].mean() if ds.ratings else pd.Series(dtype=float)
    drivers["mean_rating"] = drivers["driver"].map(means)
    drivers = drivers[["driver", "method", "importance", "ci_low", "ci_high", "mean_rating"]]
    cohorts = cohort_matrices(tx)
    res = DriversResult(flags, rates, rates_by, cohorts["customers"], cohorts["revenue"], km,
                        logrank, survey, drivers, ipa_df, churn_cm, linear_r2, ds.collinear, notes, risk)
    why = reasons.churn_reasons(attrs, fb, cfg.churn_reason_column)
    if why is not None:
        r = io.by_customer(rfm)
        res.reasons, res.reasons_by_segment = reasons.reason_tables(
            why, churned, r["segment"].astype(str), r["monetary"], r["tenure"] / 365.0)
    return res


def linear_drivers(ds: DriverSet, y: pd.Series, cfg: Drivers, notes: list[str], outcome: str = "",
                   prefix: str = "") -> tuple[pd.DataFrame, float]:
    """LMG and relative weights (with bootstrap intervals) for an outcome, on the customers who have the outcome
    and every driver (their number and the number dropped are stated in the notes)."""
    X = ds.X.reindex(y.index)
    ok = X.notna().all(axis=1) & y.notna()
    X, yv = X[ok].reset_index(drop=True), y[ok].astype(float).reset_index(drop=True)
    groups = {g: cols for g, cols in ds.groups.items() if X[cols].nunique().max() > 1}
    dropped_groups = sorted(set(ds.groups) - set(groups))
    X = X[[c for cols in groups.values() for c in cols]]
    what = outcome or i18n.t("drivers.the_outcome")
    notes.append(i18n.t("drivers.note_linear", what=what, n=f"{len(X):,}", dropped=f"{int((~ok).sum()):,}",
                        of=f"{len(ok):,}")
                 + (i18n.t("drivers.note_constant", names=", ".join(i18n.label(g) for g in dropped_groups))
                    if dropped_groups else "") + i18n.t("drivers.full_stop"))
    if len(X) < max(30, 3 * X.shape[1]) or not groups:
        notes.append(i18n.t("drivers.note_too_few", n=len(X), what=what))
        return pd.DataFrame(columns=["driver", "method", "importance", "ci_low", "ci_high"]), float("nan")
    lmg_fn = lambda a, b, g: lmg(a, b, g, cfg.max_exact, cfg.permutations, cfg.seed)  # noqa: E731
    shares = lmg_fn(X, yv, groups)
    rw = relative_weights(X, yv, groups)
    how = "exact" if len(groups) <= cfg.max_exact else f"{cfg.permutations} sampled orderings"
    out = []
    for name, imp, fn in ((f"{prefix}LMG share of R² ({how})", shares, lmg_fn),
                          (f"{prefix}relative weight (Johnson)", rw, relative_weights)):
        ci = bootstrap_importance(fn, X, yv, groups, cfg.bootstrap, cfg.seed, imp)
        out.append(pd.DataFrame({"driver": imp.index, "method": name, "importance": imp.to_numpy(),
                                 "ci_low": ci["ci_low"].reindex(imp.index).to_numpy(),
                                 "ci_high": ci["ci_high"].reindex(imp.index).to_numpy()}))
    return pd.concat(out, ignore_index=True), float(shares.sum())


def run_drivers(study: Study, run_dir: str | Path) -> DriversResult:
    """Read the earlier outputs and the attribute and feedback tables; write drivers.parquet and churn_risk.parquet."""
    run_dir = Path(run_dir)
    tx = io.read_stage(run_dir, "transactions_clean.parquet")
    rfm = io.read_stage(run_dir, "rfm.parquet")
    info = io.read_stage_json(run_dir, "rfm.json", optional=True)
    if info is not None:
        rfm.attrs["end"] = pd.Timestamp(info["end"]).normalize()
    clv = io.read_stage(run_dir, "clv.parquet", optional=True)
    attrs = io.read_attributes(study, "customers")
    fb = io.read_attributes(study, "feedback")
    res = build_drivers(study, tx, rfm, clv, attrs, fb)
    io.write_parquet(res.drivers, run_dir / "drivers.parquet")
    sc = res.risk.scores.set_index("customer_id").reindex(res.flags["customer_id"].astype(str))
    risk = pd.DataFrame({"customer_id": res.flags["customer_id"].astype(io.STRING),
                         "churn_probability": sc["churn_probability"].to_numpy(),
                         "churned": res.flags["churned"].to_numpy(),
                         "within_cycle": sc["within_cycle"].fillna(False).astype(bool).to_numpy(),
                         "cycle_days": sc["cycle_days"].to_numpy()})
    io.write_parquet(risk, run_dir / "churn_risk.parquet")
    nps_all = None
    if res.survey is not None and "nps_points" in res.survey.columns:
        nps_all = float(res.survey.loc[res.survey["group"] == "all customers", "nps_points"].iloc[0])
    io.write_json({"rates": res.rates.to_dict("records"), "logrank": res.logrank, "nps": nps_all,
                   "auc": None if res.churn is None else res.churn.auc, "linear_r2": res.linear_r2,
                   "churn_risk": {"method": res.risk.method, "validation": res.risk.validation,
                                  "auc": res.risk.auc_model, "auc_purchase_model": res.risk.auc_baseline,
                                  "auc_recency": res.risk.auc_recency,
                                  "benchmarks": None if res.risk.benchmarks is None
                                  else res.risk.benchmarks.to_dict("records"),
                                  "horizon_days": res.risk.horizon_days, "cutoffs": res.risk.cutoffs},
                   "churn_reasons": None if res.reasons is None else res.reasons.to_dict("records"),
                   "notes": res.notes}, run_dir / "drivers.json")
    return res


def by_method(drivers: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """The importance rows of one method (matched by the start of its name), largest first."""
    d = drivers[drivers["method"].str.startswith(prefix)]
    return d.assign(_o=d["importance"].abs()).sort_values("_o", ascending=False).drop(columns="_o")

