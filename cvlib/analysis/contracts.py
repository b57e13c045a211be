"""Contract customers: periods paid and elapsed from the customers table, the shifted-beta-geometric fit, and
each running contract's forward value (the rest of the paid period plus renewals weighted by the survival)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cvlib import i18n
from cvlib.analysis.fitting import try_fit
from cvlib.finance import DAYS_PER_MONTH, yearly_revenue
from cvlib.models import (
    FitOutcome,
    ShiftedBetaGeometric,
)
from cvlib.params import Clv, Study

UNIT_DAYS = {"days": 1.0, "weeks": 7.0}


# --------------------------------------------------------------------------- contracts (sBG)
def completed_periods(start: pd.Series, at: pd.Series, period_months: int) -> pd.Series:
    """Whole periods from `start` to `at`, counted on the calendar (anniversaries), so leap years add nothing."""
    months = (at.dt.year - start.dt.year) * 12 + (at.dt.month - start.dt.month) - (at.dt.day < start.dt.day)
    return (months // period_months).clip(lower=0)


def contract_periods(attrs: pd.DataFrame, cfg, end: pd.Timestamp) -> pd.DataFrame:
    """Per contract: completed renewals, periods paid, churned (an end date on or before the observation end;
    empty = active), and `periods`, the sBG fit's count: periods paid by a churned contract (its end on the
    anniversary or the day before counts the same), completed renewals survived by an active one (an active client
    seven months into year one has survived none)."""
    start = pd.to_datetime(attrs[cfg.start_column], errors="coerce", format="mixed")
    stop = pd.to_datetime(attrs[cfg.end_column], errors="coerce", format="mixed")
    churned = stop.notna() & (stop <= end)
    at = stop.where(churned, pd.Timestamp(end))
    survived = completed_periods(start, at, cfg.period_months)
    paid_churned = completed_periods(start, at - pd.Timedelta(days=1), cfg.period_months) + 1
    periods = np.where(churned, paid_churned, survived)
    out = pd.DataFrame({"customer_id": attrs["customer_id"], "periods": periods, "churned": churned,
                        "renewals": np.where(churned, paid_churned - 1, survived),
                        "periods_paid": np.where(churned, paid_churned, survived + 1)})
    out = out[start.notna()].reset_index(drop=True)
    return out.astype({"periods": int, "renewals": int, "periods_paid": int})


def expected_remaining(m: ShiftedBetaGeometric, periods_paid: np.ndarray) -> tuple[np.ndarray, str]:
    """Undiscounted expected further periods; infinite (with a note saying why) when sBG alpha <= 1, where the
    sum of survival probabilities diverges: a truncated sum would be an arbitrary number."""
    if m.params_["alpha"] <= 1:
        return np.full(len(periods_paid), np.inf), i18n.t("clv.note_infinite_lifetime",
                                                          alpha=f"{m.params_['alpha']:.2f}")
    return m.derl(periods_paid, 0.0), ""


def fit_contracts(periods: pd.DataFrame) -> FitOutcome:
    return try_fit("sbg", lambda: ShiftedBetaGeometric().fit(periods))


def contract_forward_clv(m: ShiftedBetaGeometric, periods_paid: np.ndarray, months_elapsed: np.ndarray,
                         value_per_period: np.ndarray, cfg: Clv) -> np.ndarray:
    """Gross profit of each running contract over the horizon from the fitted sBG: the rest of the period already
    paid, then each renewal that starts within the horizon, weighted by the model's probability that a customer who
    has paid `periods_paid` periods renews that often, S(n + k - 1) / S(n - 1), and discounted from its start (the
    part of a period beyond the horizon is left out). `months_elapsed`: months since the contract started."""
    per, h = float(cfg.contracts.period_months), float(cfg.horizon_months)
    monthly = (1 + cfg.discount_rate) ** (1 / 12) - 1
    n = np.maximum(np.asarray(periods_paid, dtype=float), 1.0)
    into = np.mod(np.maximum(np.asarray(months_elapsed, dtype=float), 0.0), per)
    first = per - into  # months to the next renewal
    share = np.minimum(first, h) / per  # the rest of the current period, within the horizon
    a, b = m.params_["alpha"], m.params_["beta"]
    for k in range(1, int(np.ceil(h / per)) + 2):
        starts = first + (k - 1) * per
        inside = np.clip(h - starts, 0.0, per) / per
        stay = np.exp(m._log_s(a, b, n + k - 1) - m._log_s(a, b, n - 1))
        share = share + np.where(inside > 0, stay * inside / (1 + monthly) ** starts, 0.0)
    return cfg.margin * np.asarray(value_per_period, dtype=float) * share


def with_contracts(customers: pd.DataFrame, contracts: dict | None, horizon_months: int,
                   notes: list[str]) -> np.ndarray:
    """Value every running contract by the fitted sBG (`contract_clv_horizon`), in place of the purchase model's or
    the formula's CLV; returns which customers are still valued the other way."""
    if contracts is None:
        return np.ones(len(customers), dtype=bool)
    active = contracts["active"]
    on = customers["customer_id"].astype(str).map(active.set_index(active["customer_id"].astype(str))[
        "contract_clv_horizon"])
    customers["clv"] = on.fillna(customers["clv"]).to_numpy()
    notes.append(i18n.t("clv.note_contract_clv", n=f"{int(on.notna().sum()):,}", h=horizon_months))
    return on.isna().to_numpy()


def contract_summary(study: Study, attrs: pd.DataFrame | None, rfm: pd.DataFrame, end: pd.Timestamp,
                     notes: list[str]) -> dict | None:
    """sBG fit on contract periods, projected retention, DERL and CLV per contract (`end`: the last purchase's
    time, where contracts still running are censored)."""
    c = study.clv.contracts
    if attrs is None or c.start_column not in attrs.columns or c.end_column not in attrs.columns:
        notes.append(i18n.for_consultant("clv.note_no_contract_columns", start=c.start_column, end=c.end_column))
        return None
    periods = contract_periods(attrs, c, end)
    fit = fit_contracts(periods)
    if not fit.ok:
        notes.append(i18n.t("clv.note_sbg_not_used", why=fit.reason))
        return None
    m: ShiftedBetaGeometric = fit.model
    per_period_discount = (1 + study.clv.discount_rate) ** (c.period_months / 12) - 1
    active = periods[~periods["churned"]].copy()
    if c.value_column and c.value_column in attrs.columns:
        value = attrs.set_index("customer_id")[c.value_column].astype(float)
    else:
        value = yearly_revenue(rfm.set_index("customer_id")) * c.period_months / 12
    active["value_per_period"] = active["customer_id"].astype(str).map(value).fillna(0).to_numpy()
    active["expected_remaining_periods"], note = expected_remaining(m, active["periods_paid"].to_numpy())
    if note:
        notes.append(note)
    active["derl_periods"] = m.derl(active["periods_paid"].to_numpy(), per_period_discount)
    active["contract_clv"] = study.clv.margin * active["value_per_period"] * active["derl_periods"]
    start = pd.to_datetime(attrs.set_index(attrs["customer_id"].astype(str))[c.start_column], errors="coerce",
                           format="mixed")
    elapsed = (end - start.reindex(active["customer_id"].astype(str).to_numpy())).dt.days.to_numpy()
    active["contract_clv_horizon"] = contract_forward_clv(m, active["periods_paid"].to_numpy(),
                                                          elapsed / DAYS_PER_MONTH,
                                                          active["value_per_period"].to_numpy(), study.clv)
    t = np.arange(0, 11)
    curve = pd.DataFrame({"period": t, "survival": m.survival(t), "retention": np.r_[np.nan, m.retention(t[1:])]})
    return {"model": m, "periods": periods, "active": active, "curve": curve}
