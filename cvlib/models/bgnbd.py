"""BG/NBD (Fader, Hardie & Lee 2005): purchases and dropout in non-contractual settings."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from cvlib.models.base import _check, _Fitted, _left_out, _minimize, _purchase_data, _start, patterns


class BetaGeoNBD(_Fitted):
    """BG/NBD: purchases follow a Poisson process while alive; after each purchase the
    customer drops out with probability p. Heterogeneity: rate ~ Gamma(r, alpha), p ~ Beta(a, b).

    fit(frame) uses columns x (repeat purchases), t_x (time of last purchase) and T (age),
    all in one time unit."""

    names = ("r", "alpha", "a", "b")
    shapes = ("r", "a", "b")

    @staticmethod
    def _prepare(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray) -> dict:
        """Split customers without repeat purchases (one term) from the others (two terms)."""
        pos = x > 0
        ux, xi = np.unique(x[pos], return_inverse=True)
        return {"T0": T[~pos], "w0": w[~pos], "x": x[pos], "t_x": t_x[pos], "T": T[pos], "w": w[pos], "ux": ux,
                "xi": xi, "n0": float(w[~pos].sum())}

    def _terms(self, log_theta: np.ndarray, d: dict, grad: bool = True):
        """Negative log-likelihood (and its gradient on the log scale)."""
        r, alpha, a, b = np.exp(log_theta)
        ln_alpha = np.log(alpha)
        # customers with x = 0: L = (alpha / (alpha + T))^r
        la_T0 = np.log(alpha + d["T0"])
        ll0 = r * (d["n0"] * ln_alpha - np.dot(d["w0"], la_T0))
        # customers with x > 0; functions of x are computed once per distinct x
        x, t_x, T, w, ux, xi = d["x"], d["t_x"], d["T"], d["w"], d["ux"], d["xi"]
        A12u = (special.gammaln(r + ux) - special.gammaln(r) + special.gammaln(a + b) + special.gammaln(b + ux)
                - special.gammaln(b) - special.gammaln(a + b + ux))
        la_T = np.log(alpha + T)
        la_tx = np.log(alpha + t_x)
        bx1 = b + x - 1
        A3 = -(r + x) * la_T
        A4 = np.log(a) - np.log(bx1) - (r + x) * la_tx
        mx = np.maximum(A3, A4)
        e3, e4 = np.exp(A3 - mx), np.exp(A4 - mx)
        lse = mx + np.log(e3 + e4)
        value = -(ll0 + np.dot(w, A12u[xi] + lse) + w.sum() * r * ln_alpha)
        if not grad:
            return value
        w4 = e4 / (e3 + e4)
        w3 = 1.0 - w4
        W = w.sum() + d["n0"]
        d_r = (np.dot(w, (special.digamma(r + ux) - special.digamma(r))[xi] - w3 * la_T - w4 * la_tx)
               + W * ln_alpha - np.dot(d["w0"], la_T0))
        d_alpha = (W * r / alpha - r * np.dot(d["w0"], 1 / (alpha + d["T0"]))
                   - np.dot(w, (r + x) * (w3 / (alpha + T) + w4 / (alpha + t_x))))
        dig_ab = special.digamma(a + b)
        d_a = np.dot(w, (dig_ab - special.digamma(a + b + ux))[xi] + w4 / a)
        d_b = np.dot(w, (dig_ab + special.digamma(b + ux) - special.digamma(b) - special.digamma(a + b + ux))[xi]
                     - w4 / bx1)
        # the x = 0 group also carries A2(x=0) = 0 and A1(x=0) = 0, so no a, b terms
        g = np.array([d_r * r, d_alpha * alpha, d_a * a, d_b * b])
        return value, -g

    def fit(self, frame: pd.DataFrame, weights: np.ndarray | None = None,
            start: "dict[str, float] | _Fitted | None" = None, errors: bool = True) -> "BetaGeoNBD":
        """Maximum likelihood on the distinct (x, t_x, T) patterns; `start` warm-starts from other parameters;
        errors=False skips the standard errors (bootstrap refits)."""
        x, t_x, T, w = _purchase_data(frame, weights, "BG/NBD")
        self.n_no_time_ = _left_out(frame, weights)
        data = self._prepare(x, t_x, T, w)
        fun = lambda th: self._terms(th, data)  # noqa: E731
        x0 = _start(self, start, [1.0, max(float(np.average(T, weights=w)), 1e-3), 1.0, 1.0])
        res = _minimize(fun, x0, jac=True)
        self._finish(res, lambda th: self._terms(th, data, grad=False), int(w.sum()), grad=lambda th: fun(th)[1],
                     errors=errors)
        return self

    def p_alive(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability that each customer is still alive at T."""
        x, t_x, T = _check(frame, ("x", "t_x", "T"))
        r, alpha, a, b = self.fitted_params()
        log_ratio = np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) + (r + x) * (np.log(alpha + T)
            - np.log(alpha + t_x))
        return np.where(x > 0, special.expit(-log_ratio), 1.0)

    def predict(self, frame: pd.DataFrame, t: float | np.ndarray) -> np.ndarray:
        """Expected purchases in the next t time units, given each customer's x, t_x, T."""
        x, t_x, T = _check(frame, ("x", "t_x", "T"))
        r, alpha, a, b = self.fitted_params()
        t = np.broadcast_to(np.asarray(t, dtype=float), x.shape)
        return self._first(x, T, t) * self.p_alive(frame)

    def _first(self, x: np.ndarray, T: np.ndarray, t: np.ndarray) -> np.ndarray:
        """E[purchases in the next t | alive], a function of x, T and t (not t_x)."""
        r, alpha, a, b = self.fitted_params()
        z = t / (alpha + T + t)
        # ((alpha + T) / (alpha + T + t))^(r + x) 2F1(r + x, b + x; a + b + x - 1; z), by Euler's transformation
        # (1 - z)^(c - a - b) 2F1(c - a, c - b; c; z): the same value without overflow for heavy buyers (large x)
        hyp = np.exp((a - 1) * np.log1p(-z)) * special.hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
        return (a + b + x - 1) / (a - 1) * (1 - hyp)

    def cumulative(self, frame: pd.DataFrame, ts: np.ndarray) -> np.ndarray:
        """Expected purchases in the next t, for each t in ts (rows) and customer (columns): the
        hypergeometric part once per distinct (x, T), P(alive) once per customer."""
        x, t_x, T = _check(frame, ("x", "t_x", "T"))
        (ux, uT), inv = patterns(x, T)
        tt = np.asarray(ts, dtype=float)[:, None]
        return self._first(ux[None, :], uT[None, :], tt)[:, inv] * self.p_alive(frame)[None, :]

    def expected_new(self, t: np.ndarray) -> np.ndarray:
        """E[X(t)]: expected repeat purchases in (0, t] of a customer just acquired."""
        r, alpha, a, b = self.fitted_params()
        t = np.asarray(t, dtype=float)
        hyp = special.hyp2f1(r, b, a + b - 1, t / (alpha + t))
        return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp)


# --------------------------------------------------------------------------- Pareto/NBD


def simulate_bgnbd(n: int, r: float, alpha: float, a: float, b: float, T: float | np.ndarray = 52.0,
                   seed: int = 0) -> pd.DataFrame:
    """Customers drawn from a BG/NBD world: columns x, t_x, T (seeded, vectorised)."""
    rng = np.random.default_rng(seed)
    T = np.broadcast_to(np.asarray(T, dtype=float), (n,)).copy()
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    x = np.zeros(n, dtype=np.int64)
    t_x = np.zeros(n)
    now = np.zeros(n)
    active = np.arange(n)
    while len(active):
        now[active] += rng.exponential(1 / lam[active])
        inside = now[active] <= T[active]
        buyers = active[inside]
        x[buyers] += 1
        t_x[buyers] = now[buyers]
        alive = rng.random(len(buyers)) >= p[buyers]  # after a purchase, drop out with probability p
        active = buyers[alive]
    return pd.DataFrame({"x": x, "t_x": t_x, "T": T})
