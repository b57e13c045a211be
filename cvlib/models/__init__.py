"""Probabilistic customer-base models, fitted by maximum likelihood (numpy/scipy).

- BetaGeoNBD: BG/NBD (Fader, Hardie & Lee 2005), purchases in non-contractual settings.
- ParetoNBD: Pareto/NBD (Schmittlein, Morrison & Colombo 1987), with Fader & Hardie's
  hypergeometric form of the likelihood.
- GammaGamma: spend per transaction (Fader & Hardie 2013).
- ShiftedBetaGeometric: contract renewals (Fader & Hardie 2007).

Estimators follow scikit-learn habits: `fit(frame)` returns self; fitted attributes end
in `_` (`params_`, `se_`, `loglik_`, `converged_`). Parameters are optimised on the
log scale; log-likelihoods are computed in log space (no overflow for large x and T).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

from cvlib import i18n

LOG_BOUND = 12.0  # |log parameter| limit: parameters in [6e-6, 1.6e5]
STATIONARY_RTOL = 1e-6  # a gradient this small against |log-likelihood| is rounding noise


class ModelFitError(RuntimeError):
    """The model cannot be fitted to these data; the message says why."""


def _check(frame: pd.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise KeyError(f"columns {missing} are needed (have {list(frame.columns)})")
    return tuple(frame[c].to_numpy(dtype=np.float64) for c in cols)


def patterns(*cols: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The distinct rows of the given columns and, for each original row, the index of its pattern.

    Customers with the same (x, t_x, T) share every likelihood and prediction term, so models work on the
    patterns (weighted by how many customers have each) and map results back: on CDNOW 23,570 customers
    are 5,100 patterns. Rows are hashed column by column (pandas.factorize), in linear time."""
    arrays = [np.asarray(c, dtype=float) for c in cols]
    if len(arrays[0]) == 0:
        return tuple(arrays), np.zeros(0, dtype=np.intp)
    key = np.zeros(len(arrays[0]), dtype=np.int64)
    for a in arrays:
        codes, uniq = pd.factorize(a, use_na_sentinel=False)
        key, _ = pd.factorize(key * len(uniq) + codes)  # renumbered each time: no overflow with many columns
    key = key.astype(np.intp)
    # factorize numbers codes in order of first appearance: a row is a pattern's first where the code is new
    seen = np.maximum.accumulate(key)
    first = np.flatnonzero(np.r_[True, seen[1:] > seen[:-1]])
    return tuple(a[first] for a in arrays), key


def no_observation_time(frame: pd.DataFrame) -> np.ndarray:
    """Customers with no observation time (T = 0: first seen on the cut-off day). Their likelihood term is 1
    whatever the parameters (nothing could have happened yet), so they are left out of a fit and still scored:
    P(alive) 1 and the expected purchases of a customer just acquired."""
    return frame["T"].to_numpy(dtype=np.float64) <= 0


def _purchase_data(frame: pd.DataFrame, weights: np.ndarray | None, model: str) -> tuple[np.ndarray, ...]:
    """x, t_x, T and weights of the distinct (x, t_x, T) patterns, checked: enough customers, some repeat
    purchases, 0 <= t_x <= T. Customers with weight 0 (left out of a bootstrap resample) drop out, and so do
    customers with no observation time (T = 0, `no_observation_time`), counted by the fit in `n_no_time_`."""
    x, t_x, T = _check(frame, ("x", "t_x", "T"))
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    if np.any((T <= 0) & (x > 0)):
        raise ModelFitError("a customer with repeat purchases has no observation time (T = 0): check the summary")
    keep = (w > 0) & (T > 0)
    x, t_x, T, w = x[keep], t_x[keep], T[keep], w[keep]
    if len(x) < 10:
        raise ModelFitError(f"only {len(x)} customers: too few to fit {model} (need at least 10)")
    if not (x > 0).any():
        raise ModelFitError(f"no customer made a repeat purchase: {model} cannot separate purchase rate from dropout")
    if np.any(t_x > T + 1e-9) or np.any(t_x < 0):
        raise ModelFitError("t_x must lie between 0 and T for every customer")
    (x, t_x, T), inv = patterns(x, t_x, T)
    return x, t_x, T, np.bincount(inv, weights=w, minlength=len(x))


def _left_out(frame: pd.DataFrame, weights: np.ndarray | None) -> int:
    """How many customers (by weight) a purchase-model fit left out for having no observation time."""
    w = np.ones(len(frame)) if weights is None else np.asarray(weights, dtype=float)
    return int(round(float(w[no_observation_time(frame)].sum())))


def _start(model: "_Fitted", start: "dict[str, float] | _Fitted | None", default: list[float]) -> np.ndarray:
    """Log starting values: the default guess, or a fitted model's parameters (a warm start)."""
    if start is None:
        return np.log(default)
    p = start.params_ if isinstance(start, _Fitted) else start
    return np.clip(np.log([p[k] for k in model.names]), -LOG_BOUND + 0.5, LOG_BOUND - 0.5)


def _hessian(f, theta: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Central-difference Hessian of a scalar function."""
    k = len(theta)
    h = np.zeros((k, k))
    for i in range(k):
        for j in range(i, k):
            e_i, e_j = np.eye(k)[i] * eps, np.eye(k)[j] * eps
            num = f(theta + e_i + e_j) - f(theta + e_i - e_j) - f(theta - e_i + e_j) + f(theta - e_i - e_j)
            v = num / (4 * eps**2)
            h[i, j] = h[j, i] = v
    return h


def _hessian_from_grad(grad, theta: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Central-difference Hessian from an analytic gradient (2k gradient calls)."""
    k = len(theta)
    cols = [(grad(theta + np.eye(k)[i] * eps) - grad(theta - np.eye(k)[i] * eps)) / (2 * eps) for i in range(k)]
    h = np.column_stack(cols)
    return (h + h.T) / 2


def _standard_errors(neg_ll, log_theta: np.ndarray, grad=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Standard errors of the parameters (delta method from the Hessian on the log scale), and the covariance
    matrix of the log parameters (None when the Hessian is not that of a proper maximum)."""
    nan = np.full(len(log_theta), np.nan)
    try:
        with np.errstate(all="ignore"):
            hess = _hessian_from_grad(grad, log_theta) if grad is not None else _hessian(neg_ll, log_theta)
        if not np.all(np.isfinite(hess)) or np.linalg.eigvalsh(hess).min() <= 0:
            return nan, None  # not a proper maximum: no standard errors
        cov = np.linalg.inv(hess)
        var = np.diag(cov)
        return np.where(var > 0, np.exp(log_theta) * np.sqrt(np.abs(var)), np.nan), cov
    except np.linalg.LinAlgError:
        return nan, None


class _Fitted:
    names: tuple[str, ...] = ()
    params_: dict[str, float]

    def _finish(self, res: optimize.OptimizeResult, neg_ll, n: int, grad=None, errors: bool = True) -> None:
        theta = res.x
        self.params_ = dict(zip(self.names, np.exp(theta)))
        self.loglik_ = float(-res.fun)
        self.n_ = n
        at_bound = bool(np.any(np.abs(theta) > LOG_BOUND - 1e-3))
        self.converged_ = bool(res.success) and not at_bound and np.isfinite(res.fun)
        self.message_ = (i18n.t("models.at_bound") if at_bound
                         else str(res.message) if not res.success else "converged")
        se, self.log_cov_ = _standard_errors(neg_ll, theta, grad) if errors else (np.full(len(theta), np.nan), None)
        self.se_ = dict(zip(self.names, se))
        self.errors_ = errors  # False: standard errors skipped (bootstrap refits), not checked below
        problem = self.degeneracy() if self.converged_ else ""
        if problem:
            self.converged_, self.message_ = False, problem

    shapes: tuple[str, ...] = ()  # shape parameters: one far out means the heterogeneity is not identified
    MAX_SHAPE = 200.0
    MIN_RELATIVE_SE = 1e-6

    def degeneracy(self) -> str:
        """Why a converged fit is still not usable ('' when it is): standard errors that are not finite or are
        practically zero, or a shape parameter run far out (the data do not identify the model)."""
        bad_se = [k for k, v in self.se_.items() if not np.isfinite(v)] if getattr(self, "errors_", True) else []
        if bad_se:
            return i18n.t("models.se_not_finite", names=", ".join(bad_se))
        tiny = [k for k, v in self.se_.items() if np.isfinite(v) and v < self.MIN_RELATIVE_SE * abs(self.params_[k])]
        if tiny:
            return i18n.t("models.se_zero", names=", ".join(f"{k} ({self.se_[k]:.1e})" for k in tiny))
        far = [k for k in self.shapes if self.params_[k] > self.MAX_SHAPE]
        if far:
            return i18n.t("models.far_out", names=", ".join(f"{k} = {self.params_[k]:,.0f}" for k in far),
                          limit=f"{self.MAX_SHAPE:.0f}")
        return ""

    def summary(self) -> pd.DataFrame:
        """Parameters with standard errors."""
        return pd.DataFrame({"parameter": list(self.params_), "estimate": list(self.params_.values()),
                             "std_error": [self.se_[k] for k in self.params_]})

    def to_dict(self) -> dict:
        return {"params": self.params_, "std_errors": self.se_, "loglik": self.loglik_, "n": self.n_,
                "left_out_no_observation_time": getattr(self, "n_no_time_", 0),
                "converged": self.converged_, "message": self.message_}


def _minimize(fun, x0: np.ndarray, jac: bool) -> optimize.OptimizeResult:
    """L-BFGS-B on the log parameters, with tight tolerances.

    Near the maximum of a likelihood summed over thousands of customers the objective reaches its
    floating-point floor before the gradient reaches gtol; SciPy (1.15 and later) then reports that
    the line search failed ('ABNORMAL'). Such a stop counts as converged when the gradient is
    negligible against the objective (at most STATIONARY_RTOL x |f|): a stationary point. Any other
    failure stays a failure."""
    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(x0)
    res = optimize.minimize(fun, x0, jac=jac, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-7})
    grad = np.asarray(res.jac, dtype=float)
    if (not res.success and res.status == 2 and np.isfinite(res.fun) and np.all(np.isfinite(grad))
            and np.abs(grad).max() <= STATIONARY_RTOL * max(1.0, abs(float(res.fun)))):
        res.success = True
        res.message = "converged (the likelihood stopped improving at its floating-point precision)"
    return res


# --------------------------------------------------------------------------- BG/NBD
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
        r, alpha, a, b = (self.params_[k] for k in self.names)
        log_ratio = np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) + (r + x) * (np.log(alpha + T)
            - np.log(alpha + t_x))
        return np.where(x > 0, special.expit(-log_ratio), 1.0)

    def predict(self, frame: pd.DataFrame, t: float | np.ndarray) -> np.ndarray:
        """Expected purchases in the next t time units, given each customer's x, t_x, T."""
        x, t_x, T = _check(frame, ("x", "t_x", "T"))
        r, alpha, a, b = (self.params_[k] for k in self.names)
        t = np.broadcast_to(np.asarray(t, dtype=float), x.shape)
        return self._first(x, T, t) * self.p_alive(frame)

    def _first(self, x: np.ndarray, T: np.ndarray, t: np.ndarray) -> np.ndarray:
        """E[purchases in the next t | alive], a function of x, T and t (not t_x)."""
        r, alpha, a, b = (self.params_[k] for k in self.names)
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
        r, alpha, a, b = (self.params_[k] for k in self.names)
        t = np.asarray(t, dtype=float)
        hyp = special.hyp2f1(r, b, a + b - 1, t / (alpha + t))
        return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp)


# --------------------------------------------------------------------------- Pareto/NBD
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
                self.message_ = i18n.t("models.subsample", n=f"{self.WARM_PATTERNS:,}",
                                       why=start.degeneracy() or start.message_)
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
        _, first, second, _ = self._loglik_terms(np.log([self.params_[k] for k in self.names]), x, t_x, T)
        return special.expit(first - second)

    def predict(self, frame: pd.DataFrame, t: float | np.ndarray) -> np.ndarray:
        """Expected purchases in the next t time units."""
        x, t_x, T = _check(frame, ("x", "t_x", "T"))
        r, alpha, s, beta = (self.params_[k] for k in self.names)
        t = np.asarray(t, dtype=float)
        if abs(s - 1) < 1e-9:
            growth = (beta + T) * np.log((beta + T + t) / (beta + T))
        else:
            growth = (beta + T) / (s - 1) * (1 - ((beta + T) / (beta + T + t)) ** (s - 1))
        return (r + x) / (alpha + T) * growth * self.p_alive(frame)

    def cumulative(self, frame: pd.DataFrame, ts: np.ndarray) -> np.ndarray:
        """Expected purchases in the next t, for each t in ts (rows) and customer (columns); P(alive) once."""
        x, t_x, T = _check(frame, ("x", "t_x", "T"))
        r, alpha, s, beta = (self.params_[k] for k in self.names)
        t = np.asarray(ts, dtype=float)[:, None]
        if abs(s - 1) < 1e-9:
            growth = (beta + T) * np.log((beta + T + t) / (beta + T))
        else:
            growth = (beta + T) / (s - 1) * (1 - ((beta + T) / (beta + T + t)) ** (s - 1))
        return (r + x) / (alpha + T) * growth * self.p_alive(frame)[None, :]

    def expected_new(self, t: np.ndarray) -> np.ndarray:
        """E[X(t)]: expected purchases in (0, t] of a customer just acquired,
        r beta / (alpha (s - 1)) (1 - (beta / (beta + t))^(s - 1)) (Fader and Hardie's Pareto/NBD note, eq. 17)."""
        r, alpha, s, beta = (self.params_[k] for k in self.names)
        t = np.asarray(t, dtype=float)
        if abs(s - 1) < 1e-9:
            return r * beta / alpha * np.log((beta + t) / beta)
        return r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + t)) ** (s - 1))


# --------------------------------------------------------------------------- Gamma-Gamma
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
            self.message_ = i18n.t("models.q_le_1")
        return self

    def expected_spend(self, frame: pd.DataFrame) -> np.ndarray:
        """E[spend per transaction | x, monetary_value]; customers without repeats get the population mean."""
        x, m = _check(frame, ("x", "monetary_value"))
        p, q, g = (self.params_[k] for k in self.names)
        return (p * (g + m * x)) / (p * x + q - 1)

    @property
    def population_mean(self) -> float:
        p, q, g = (self.params_[k] for k in self.names)
        return p * g / (q - 1)


# --------------------------------------------------------------------------- sBG (contracts)
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
        return np.exp(self._log_s(self.params_["alpha"], self.params_["beta"], np.asarray(t, dtype=float)))

    def retention(self, t: np.ndarray) -> np.ndarray:
        """Retention rate from period t-1 to t: (beta + t - 1) / (alpha + beta + t - 1)."""
        a, b = self.params_["alpha"], self.params_["beta"]
        t = np.asarray(t, dtype=float)
        return (b + t - 1) / (a + b + t - 1)

    def derl(self, periods_paid: np.ndarray | float, discount: float, horizon: int = 2000) -> np.ndarray:
        """Discounted expected residual lifetime: expected number of further periods paid by a customer
        who has paid `periods_paid` periods so far, each future period k discounted by (1 + discount)^k."""
        n = np.atleast_1d(np.asarray(periods_paid, dtype=float))
        un, inv = np.unique(n, return_inverse=True)
        k = np.arange(1, horizon + 1, dtype=float)
        a, b = self.params_["alpha"], self.params_["beta"]
        out = np.empty(len(un))
        for i, ni in enumerate(un):  # S(n + k - 1) / S(n - 1), computed in log space
            log_ratio = self._log_s(a, b, ni + k - 1) - self._log_s(a, b, ni - 1)
            out[i] = np.sum(np.exp(log_ratio - k * np.log1p(discount)))
        return out[inv]


@dataclass
class FitOutcome:
    """A model, or why it could not be fitted."""

    name: str
    model: _Fitted | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.model is not None and self.model.converged_


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


def simulate_spend(x: np.ndarray, p: float, q: float, gamma: float, seed: int = 0) -> np.ndarray:
    """Mean value of x transactions per customer from a Gamma-Gamma world (0 where x = 0)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x)
    nu = rng.gamma(q, 1 / gamma, len(x))
    total = rng.gamma(np.maximum(p * x, 1e-12), 1 / nu)
    return np.where(x > 0, total / np.maximum(x, 1), 0.0)
