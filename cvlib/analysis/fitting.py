"""Fitting the purchase and spend models, and why a fit is not usable in the report language (the models give
codes)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cvlib import i18n
from cvlib.models import (
    BetaGeoNBD,
    FitOutcome,
    FitReason,
    GammaGamma,
    ModelFitError,
    ParetoNBD,
)
from cvlib.params import Clv

UNIT_DAYS = {"days": 1.0, "weeks": 7.0}


MODELS = {"bgnbd": BetaGeoNBD, "paretonbd": ParetoNBD}


# --------------------------------------------------------------------------- probabilistic CLV
def fit_models(summary: pd.DataFrame, cfg: Clv,
               which: tuple[str, ...] = ("bgnbd", "paretonbd")) -> dict[str, FitOutcome]:
    """Fit the purchase models and Gamma-Gamma; a model that cannot be fitted carries the reason."""
    out: dict[str, FitOutcome] = {}
    rng = np.random.default_rng(cfg.seed)
    for name in which:
        data = summary
        if name == "paretonbd" and len(summary) > cfg.max_fit_customers:
            data = summary.iloc[np.sort(rng.choice(len(summary), cfg.max_fit_customers, replace=False))]
        out[name] = try_fit(name, lambda d=data, n=name: MODELS[n]().fit(d))
    out["gammagamma"] = try_fit("gammagamma", lambda: GammaGamma().fit(summary))
    return out


def fit_message(reason: FitReason) -> str:
    """A fit's reason (the models give codes) in the report language; an optimiser's own message as it is."""
    if reason.code == "converged":
        return "converged"
    if reason.code == "optimizer":
        return str(reason.fields["why"])
    fields = {k: fit_message(v) if isinstance(v, FitReason) else v for k, v in reason.fields.items()}
    return i18n.t(f"models.{reason.code}", **fields)


def fit_record(model) -> dict:
    """A fitted model's record for clv_model.json, its reason worded."""
    return {**model.to_dict(), "message": fit_message(model.reason_)}


def try_fit(name: str, fit) -> FitOutcome:
    try:
        model = fit()
    except ModelFitError as exc:
        return FitOutcome(name, None, str(exc))
    except (FloatingPointError, ValueError, np.linalg.LinAlgError) as exc:
        return FitOutcome(name, None, i18n.t("models.numerical_failure", why=exc))
    if not model.converged_:
        why = i18n.t("models.not_usable" if model.reason_ == model.degeneracy() else "models.not_converged")
        return FitOutcome(name, model, f"{why}: {fit_message(model.reason_)}")
    return FitOutcome(name, model)
