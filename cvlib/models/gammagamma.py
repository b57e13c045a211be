"""Gamma-Gamma (Fader & Hardie 2013): spend per transaction."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from cvlib.models.base import FitReason, ModelFitError, _check, _Fitted, _minimize, _start


class GammaGamma(_Fitted):
    """Gamma-Gamma spend model: spend per transaction ~ Gamma(p, nu), nu ~ Gamma(q, gamma).

    fit(frame) uses x (repeat transactions, > 0) and monetary_value (their mean value)."""

    names = ("p", "q", "gamma")
    shapes = ("p", "q")

    @staticmethod
    def _prepare(x: np.ndarray, m: np.ndarray, w: np.ndarray) -> dict:
        """Sums that do not depend on the parameters, and the distinct x (the gamma functions' arguments)."""
        ux, xi = np.unique(x, return_inverse=True)
        wx = w * x
        return {"x": x, "m": m, "w": w, "wx": wx, "ux": ux, "Wu": np.bincount(xi, weights=w), "W": float(w.sum()),
                "S_logm": float(np.dot(w, np.log(m))), "S_x_logm": float(np.dot(wx, np.log(m))),
                "S_x_logx": float(np.dot(wx, np.log(x)))}

    def _terms(self, log_theta, d: dict, grad=True):
        """Negative log-likelihood (and its gradient on the log scale); the gamma and digamma functions of
        p x + q and p x once per distinct x, one logarithm per customer."""
        p, q, g = np.exp(log_theta)
        pu = p * d["ux"]
        gm = g + d["m"] * d["x"]
        lg = np.log(gm)
        W, Wu = d["W"], d["Wu"]
        value = -(np.dot(Wu, special.gammaln(pu + q) - special.gammaln(pu)) - W * special.gammaln(q) + W * q * np.log(g)
                  + p * d["S_x_logm"] - d["S_logm"] + p * d["S_x_logx"] - p * np.dot(d["wx"], lg)
                  - q * np.dot(d["w"], lg))
        if not grad:
            return value
        dpq = special.digamma(pu + q)
        d_p = np.dot(Wu * d["ux"], dpq - special.digamma(pu)) + d["S_x_logm"] + d["S_x_logx"] - np.dot(d["wx"], lg)
        d_q = np.dot(Wu, dpq) - W * special.digamma(q) + W * np.log(g) - np.dot(d["w"], lg)
        d_g = W * q / g - np.dot(d["w"], (p * d["x"] + q) / gm)
        return value, -np.array([d_p * p, d_q * q, d_g * g])

    def fit(self, frame: pd.DataFrame, weights: np.ndarray | None = None,
            start: "dict[str, float] | _Fitted | None" = None, errors: bool = True) -> "GammaGamma":
        """Maximum likelihood over the customers with repeat purchases (optionally weighted; `start` warm-starts)."""
        x, m = _check(frame, ("x", "monetary_value"))
        w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
        keep = (x > 0) & (m > 0) & (w > 0)
        x, m, w = x[keep], m[keep], w[keep]
        if len(x) < 10:
            raise ModelFitError(f"only {len(x)} customers with repeat purchases: too few to fit Gamma-Gamma")
        if np.allclose(m, m[0]):
            raise ModelFitError("every customer's mean spend is the same: Gamma-Gamma has no heterogeneity to fit")
        data = self._prepare(x, m, w)
        fun = lambda th: self._terms(th, data)  # noqa: E731
        res = _minimize(fun, _start(self, start, [1.0, 1.0, max(float(np.mean(m)), 1e-3)]), jac=True)
        self._finish(res, lambda th: self._terms(th, data, grad=False), int(w.sum()), grad=lambda th: fun(th)[1],
                     errors=errors)
        if self.converged_ and self.params_["q"] <= 1:
            self.converged_ = False
            self.reason_ = FitReason("q_le_1")
        return self

    def expected_spend(self, frame: pd.DataFrame) -> np.ndarray:
        """E[spend per transaction | x, monetary_value]; customers without repeats get the population mean."""
        x, m = _check(frame, ("x", "monetary_value"))
        p, q, g = self.fitted_params()
        return (p * (g + m * x)) / (p * x + q - 1)

    @property
    def population_mean(self) -> float:
        p, q, g = self.fitted_params()
        return p * g / (q - 1)


# --------------------------------------------------------------------------- sBG (contracts)


def simulate_spend(x: np.ndarray, p: float, q: float, gamma: float, seed: int = 0) -> np.ndarray:
    """Mean value of x transactions per customer from a Gamma-Gamma world (0 where x = 0)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x)
    nu = rng.gamma(q, 1 / gamma, len(x))
    total = rng.gamma(np.maximum(p * x, 1e-12), 1 / nu)
    return np.where(x > 0, total / np.maximum(x, 1), 0.0)
