"""The relative importance of drivers: LMG shares of R² (exact or by sampled orderings) and Johnson's relative
weights for a linear outcome, logistic and gradient-boosted churn classifiers with grouped permutation importance,
bootstrap intervals, and the near-collinear pairs a reader should know about."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from cvlib import i18n, threads
from cvlib.analysis import churn
from cvlib.params import Drivers

Z95 = 1.959963984540054


# --------------------------------------------------------------------------- driver table
@dataclass
class DriverSet:
    X: pd.DataFrame               # numeric design matrix (categoricals one-hot)
    groups: dict[str, list[str]]  # driver -> its columns in X
    ratings: list[str]            # drivers that are survey ratings
    notes: list[str] = field(default_factory=list)
    collinear: pd.DataFrame = field(default_factory=pd.DataFrame)
    respondents: pd.Series | None = None  # customers the analyses use (respondents when surveys are drivers)


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
