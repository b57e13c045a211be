"""Pareto/NBD (Schmittlein, Morrison & Colombo 1987) with Fader & Hardie's hypergeometric form of the
likelihood."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, special

from cvlib.models.base import (
    LOG_BOUND,
    FitReason,
    ModelFitError,
    _check,
    _Fitted,
    _left_out,
    _minimize,
    _purchase_data,
    _start,
)


class ParetoNBD(_Fitted):
    """Pareto/NBD: Poisson purchases while alive, exponential lifetimes; rate ~ Gamma(r, alpha),
    dropout rate ~ Gamma(s, beta). fit(frame) uses x, t_x, T."""

    names = ("r", "alpha", "s", "beta")
    shapes = ("r", "s")
    WARM_PATTERNS = 2_000  # above this many distinct (x, t_x, T), start from a fit on this many of them

    @staticmethod
    def _log_A0(r, alpha, s, beta, x, t_x, T):
        """log of Fader & Hardie's A0 term (difference of two hypergeometric terms)."""
        rsx = r + s + x
        if alpha >= beta:
            b2, big = s + 1, alpha
            z_tx, z_T = (alpha - beta) / (alpha + t_x), (alpha - beta) / (alpha + T)
        else:
            b2, big = r + x, beta
            z_tx, z_T = (beta - alpha) / (beta + t_x), (beta - alpha) / (beta + T)
        term_tx = np.log(special.hyp2f1(rsx, b2, rsx + 1, z_tx)) - rsx * np.log(big + t_x)
        term_T = np.log(special.hyp2f1(rsx, b2, rsx + 1, z_T)) - rsx * np.log(big + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            return term_tx + np.log(-np.expm1(np.minimum(term_T - term_tx, 0.0)))

    def _loglik_terms(self, log_theta, x, t_x, T):
        with np.errstate(all="ignore"):  # non-finite terms are caught by the callers
            return self._loglik_terms_raw(log_theta, x, t_x, T)

    def _loglik_terms_raw(self, log_theta, x, t_x, T):
        r, alpha, s, beta = np.exp(log_theta)
        first = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        second = np.log(s / (r + s + x)) + self._log_A0(r, alpha, s, beta, x, t_x, T)
        lse = np.logaddexp(first, second)
        base = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        return base, first, second, lse

    def _neg_ll(self, log_theta, x, t_x, T, w):
        if np.any(np.abs(log_theta) > LOG_BOUND + 1):
            return 1e300  # far outside the parameter box: not worth a (slow) hypergeometric evaluation
        base, _, _, lse = self._loglik_terms(log_theta, x, t_x, T)
        v = -np.sum(w * (base + lse))
        return v if np.isfinite(v) else 1e300

    def fit(self, frame: pd.DataFrame, weights: np.ndarray | None = None,
            start: "dict[str, float] | _Fitted | None" = None, errors: bool = True) -> "ParetoNBD":
        """Maximum likelihood on the distinct (x, t_x, T) patterns: BFGS (Nelder-Mead when BFGS fails) from a
        default guess, or from a fit on a subsample when there are many patterns, then L-BFGS-B; with `start`
        (a warm start from a nearby fit, as in bootstrap refits) L-BFGS-B alone."""
        x, t_x, T, w = _purchase_data(frame, weights, "Pareto/NBD")
        self.n_no_time_ = _left_out(frame, weights)
        fun = lambda th: self._neg_ll(th, x, t_x, T, w)  # noqa: E731
        bootstrap_refit = start is not None  # given a nearby fit, the bounded polish alone
        mean_T = max(float(np.average(T, weights=w)), 1e-3)
        if start is None and len(x) > self.WARM_PATTERNS:
            # many distinct histories: the search starts from a fit on a seeded subsample of them, so the
            # expensive full likelihood is only evaluated near its optimum (the optimum itself is unchanged)
            pick = np.sort(np.random.default_rng(0).choice(len(x), self.WARM_PATTERNS, replace=False))
            sub = pd.DataFrame({"x": x[pick], "t_x": t_x[pick], "T": T[pick]})
            try:
                start = ParetoNBD().fit(sub, weights=w[pick], errors=False)
            except ModelFitError:
                start = None
            if start is not None and (start.degeneracy() or not start.converged_):
                # already unidentified on the subsample (e.g. no sign of dropout): the full likelihood, slowest
                # exactly there, is not worth evaluating; the model is reported as not usable
                self.params_, self.loglik_, self.n_ = start.params_, float("nan"), int(w.sum())
                self.se_ = {k: float("nan") for k in self.names}
                self.errors_, self.converged_ = False, False
                self.reason_ = FitReason("subsample", {"n": f"{self.WARM_PATTERNS:,}",
                                                       "why": start.degeneracy() or start.reason_})
                return self
        x0 = _start(self, start, [1.0, mean_T, 1.0, mean_T])
        if not bootstrap_refit:
            # BFGS (numerical gradient) gets near the optimum in about a third of Nelder-Mead's evaluations; when
            # it wanders off (a non-finite likelihood, a parameter past its bound) Nelder-Mead starts again
            shape_at = [self.names.index(k) for k in self.shapes]

            def run_out(xk) -> None:  # a shape parameter far past MAX_SHAPE: the model is not identified, stop
                if np.any(np.asarray(xk)[shape_at] > np.log(10 * self.MAX_SHAPE)):
                    raise StopIteration

            with np.errstate(all="ignore"):
                res = optimize.minimize(fun, x0, method="BFGS", callback=run_out,
                                        options={"gtol": 1e-6, "maxiter": 500})
            if not (np.all(np.abs(res.x) < LOG_BOUND) and np.isfinite(res.fun) and res.fun < 1e299):
                res = optimize.minimize(fun, x0, method="Nelder-Mead", callback=run_out,
                                        options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-9, "adaptive": True})
            x0 = res.x
        res = _minimize(fun, x0, jac=False) if np.all(np.abs(x0) < LOG_BOUND) else res
        self._finish(res, fun, int(w.sum()), errors=errors)
        return self

    def p_alive(self, frame: pd.DataFrame) -> np.ndarray:
        x, t_x, T = _check(frame, ("x", "t_x", "T"))
        _, first, second, _ = self._loglik_terms(np.log(self.fitted_params()), x, t_x, T)
        return special.expit(first - second)

    def predict(self, frame: pd.DataFrame, t: float | np.ndarray) -> np.ndarray:
        """Expected purchases in the next t time units."""
        x, t_x, T = _check(frame, ("x", "t_x", "T"))
        r, alpha, s, beta = self.fitted_params()
        t = np.asarray(t, dtype=float)
        if abs(s - 1) < 1e-9:
            growth = (beta + T) * np.log((beta + T + t) / (beta + T))
        else:
            growth = (beta + T) / (s - 1) * (1 - ((beta + T) / (beta + T + t)) ** (s - 1))
        return (r + x) / (alpha + T) * growth * self.p_alive(frame)

    def cumulative(self, frame: pd.DataFrame, ts: np.ndarray) -> np.ndarray:
        """Expected purchases in the next t, for each t in ts (rows) and customer (columns); P(alive) once."""
        x, t_x, T = _check(frame, ("x", "t_x", "T"))
        r, alpha, s, beta = self.fitted_params()
        t = np.asarray(ts, dtype=float)[:, None]
        if abs(s - 1) < 1e-9:
            growth = (beta + T) * np.log((beta + T + t) / (beta + T))
        else:
            growth = (beta + T) / (s - 1) * (1 - ((beta + T) / (beta + T + t)) ** (s - 1))
        return (r + x) / (alpha + T) * growth * self.p_alive(frame)[None, :]

    def expected_new(self, t: np.ndarray) -> np.ndarray:
        """E[X(t)]: expected purchases in (0, t] of a customer just acquired,
        r beta / (alpha (s - 1)) (1 - (beta / (beta + t))^(s - 1)) (Fader and Hardie's Pareto/NBD note, eq. 17)."""
        r, alpha, s, beta = self.fitted_params()
        t = np.asarray(t, dtype=float)
        if abs(s - 1) < 1e-9:
            return r * beta / alpha * np.log((beta + t) / beta)
        return r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + t)) ** (s - 1))


# --------------------------------------------------------------------------- Gamma-Gamma
