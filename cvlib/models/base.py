"""What every model shares: the fitted-model base (`__repr__` with the fitted parameters, a check that the
model is fitted, standard errors, why a fit is not usable as a code the stage words), data checks and the
optimiser."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize

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


@dataclass(frozen=True)
class FitReason:
    """Why a fit is usable or not, as a code and its fields; the stage words it in the report language
    (`cvlib.analysis.clv.fit_message`, catalogue section `models`). No model text is localised here."""

    code: str
    fields: dict = field(default_factory=dict)


CONVERGED = FitReason("converged")


class NotFittedError(ModelFitError):
    """A fitted attribute or a prediction asked of a model before `fit`."""


class _Fitted:
    """The base of every model: fitted parameters (`params_`, `se_`, `loglik_`, `converged_`, `reason_`), their
    repr, and the check that the model is fitted before anything is predicted."""

    names: tuple[str, ...] = ()
    params_: dict[str, float]

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return f"{type(self).__name__}(not fitted)"
        shown = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
        return f"{type(self).__name__}({shown}; {self.reason_.code}, n={self.n_:,})"

    def check_fitted(self) -> None:
        """Raise NotFittedError unless `fit` has run."""
        if not hasattr(self, "params_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(frame) first")

    def fitted_params(self) -> tuple[float, ...]:
        """The fitted parameters in the model's order (NotFittedError before `fit`)."""
        self.check_fitted()
        return tuple(self.params_[k] for k in self.names)

    def _finish(self, res: optimize.OptimizeResult, neg_ll, n: int, grad=None, errors: bool = True) -> None:
        theta = res.x
        self.params_ = dict(zip(self.names, np.exp(theta)))
        self.loglik_ = float(-res.fun)
        self.n_ = n
        at_bound = bool(np.any(np.abs(theta) > LOG_BOUND - 1e-3))
        self.converged_ = bool(res.success) and not at_bound and np.isfinite(res.fun)
        self.reason_ = (FitReason("at_bound") if at_bound
                        else FitReason("optimizer", {"why": str(res.message)}) if not res.success else CONVERGED)
        se, self.log_cov_ = _standard_errors(neg_ll, theta, grad) if errors else (np.full(len(theta), np.nan), None)
        self.se_ = dict(zip(self.names, se))
        self.errors_ = errors  # False: standard errors skipped (bootstrap refits), not checked below
        problem = self.degeneracy() if self.converged_ else ""
        if problem:
            self.converged_, self.reason_ = False, problem

    shapes: tuple[str, ...] = ()  # shape parameters: one far out means the heterogeneity is not identified
    MAX_SHAPE = 200.0
    MIN_RELATIVE_SE = 1e-6

    def degeneracy(self) -> FitReason | None:
        """Why a converged fit is still not usable (None when it is): standard errors that are not finite or are
        practically zero, or a shape parameter run far out (the data do not identify the model)."""
        bad_se = [k for k, v in self.se_.items() if not np.isfinite(v)] if getattr(self, "errors_", True) else []
        if bad_se:
            return FitReason("se_not_finite", {"names": ", ".join(bad_se)})
        tiny = [k for k, v in self.se_.items() if np.isfinite(v) and v < self.MIN_RELATIVE_SE * abs(self.params_[k])]
        if tiny:
            return FitReason("se_zero", {"names": ", ".join(f"{k} ({self.se_[k]:.1e})" for k in tiny)})
        far = [k for k in self.shapes if self.params_[k] > self.MAX_SHAPE]
        if far:
            return FitReason("far_out", {"names": ", ".join(f"{k} = {self.params_[k]:,.0f}" for k in far),
                                         "limit": f"{self.MAX_SHAPE:.0f}"})
        return None

    def summary(self) -> pd.DataFrame:
        """Parameters with standard errors."""
        return pd.DataFrame({"parameter": list(self.params_), "estimate": list(self.params_.values()),
                             "std_error": [self.se_[k] for k in self.params_]})

    def to_dict(self) -> dict:
        return {"params": self.params_, "std_errors": self.se_, "loglik": self.loglik_, "n": self.n_,
                "left_out_no_observation_time": getattr(self, "n_no_time_", 0),
                "converged": self.converged_, "message": self.reason_.code}


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


@dataclass
class FitOutcome:
    """A model, or why it could not be fitted."""

    name: str
    model: _Fitted | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.model is not None and self.model.converged_
