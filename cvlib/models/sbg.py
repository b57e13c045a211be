"""Shifted-beta-geometric (Fader & Hardie 2007): contract renewals."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from cvlib.models.base import ModelFitError, _check, _Fitted, _minimize


class ShiftedBetaGeometric(_Fitted):
    """sBG retention model for contracts: each period a customer churns with probability theta,
    theta ~ Beta(alpha, beta) across customers (Fader & Hardie 2007).

    fit(frame) uses `periods` (renewal periods observed) and `churned` (True if the contract ended
    after that many periods; False if still active: right-censored)."""

    names = ("alpha", "beta")
    shapes = ("alpha", "beta")

    @staticmethod
    def _log_p(alpha, beta, t):
        return special.betaln(alpha + 1, beta + t - 1) - special.betaln(alpha, beta)

    @staticmethod
    def _log_s(alpha, beta, t):
        return special.betaln(alpha, beta + t) - special.betaln(alpha, beta)

    def _neg_ll(self, log_theta, t, churned, w):
        a, b = np.exp(log_theta)
        ll = np.where(churned, self._log_p(a, b, np.maximum(t, 1)), self._log_s(a, b, t))
        return -np.sum(w * ll)

    def fit(self, frame: pd.DataFrame, weights: np.ndarray | None = None) -> "ShiftedBetaGeometric":
        t, c = _check(frame, ("periods", "churned"))
        w = np.ones_like(t) if weights is None else np.asarray(weights, dtype=float)
        churned = c.astype(bool)
        if not churned.any():
            raise ModelFitError("no contract has ended: the churn rate cannot be estimated")
        if churned.all() and np.all(t == t[0]):
            raise ModelFitError("every contract ended after the same number of periods: no heterogeneity to fit")
        fun = lambda th: self._neg_ll(th, t, churned, w)  # noqa: E731
        res = _minimize(fun, np.log([1.0, 1.0]), jac=False)
        self._finish(res, fun, int(w.sum()))
        return self

    @classmethod
    def from_survivors(cls, survivors: list[int] | np.ndarray) -> pd.DataFrame:
        """Turn a cohort's counts still active at periods 0..n into fit() rows with weights."""
        s = np.asarray(survivors, dtype=float)
        lost = s[:-1] - s[1:]
        n = len(s) - 1
        return pd.DataFrame({"periods": [*range(1, n + 1), n], "churned": [True] * n + [False],
                             "weight": [*lost, s[-1]]})

    def survival(self, t: np.ndarray) -> np.ndarray:
        """Share of a new cohort still active after t periods."""
        a, b = self.fitted_params()
        return np.exp(self._log_s(a, b, np.asarray(t, dtype=float)))

    def retention(self, t: np.ndarray) -> np.ndarray:
        """Retention rate from period t-1 to t: (beta + t - 1) / (alpha + beta + t - 1)."""
        a, b = self.fitted_params()
        t = np.asarray(t, dtype=float)
        return (b + t - 1) / (a + b + t - 1)

    def derl(self, periods_paid: np.ndarray | float, discount: float, horizon: int = 2000) -> np.ndarray:
        """Discounted expected residual lifetime: expected number of further periods paid by a customer
        who has paid `periods_paid` periods so far, each future period k discounted by (1 + discount)^k."""
        n = np.atleast_1d(np.asarray(periods_paid, dtype=float))
        un, inv = np.unique(n, return_inverse=True)
        k = np.arange(1, horizon + 1, dtype=float)
        a, b = self.fitted_params()
        out = np.empty(len(un))
        for i, ni in enumerate(un):  # S(n + k - 1) / S(n - 1), computed in log space
            log_ratio = self._log_s(a, b, ni + k - 1) - self._log_s(a, b, ni - 1)
            out[i] = np.sum(np.exp(log_ratio - k * np.log1p(discount)))
        return out[inv]
