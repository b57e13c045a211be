"""Money over time: discount factors and the closed-form lifetime values (formula CLV, retention form)."""
from __future__ import annotations

import numpy as np
import pandas as pd

DAYS_PER_MONTH = 365.25 / 12


# --------------------------------------------------------------------------- formula CLV
def present_value_years(lifetime_years: float, discount_rate: float = 0.0) -> float:
    """Sum of yearly discount factors over a lifetime (cash at the end of each year; a partial
    last year counts pro rata)."""
    full = int(np.floor(lifetime_years))
    frac = lifetime_years - full
    t = np.arange(1, full + 1)
    base = 1.0 + float(discount_rate)
    return float(np.sum(base ** -t.astype(float)) + frac * base ** -(full + 1.0))


def formula_clv(yearly_revenue: float | np.ndarray, margin: float = 1.0, lifetime_years: float = 1.0,
                acquisition_cost: float | np.ndarray = 0.0, discount_rate: float = 0.0) -> float | np.ndarray:
    """Mean yearly revenue x gross margin x (discounted) expected lifetime in years, minus acquisition cost."""
    return np.asarray(yearly_revenue) * margin * present_value_years(lifetime_years, discount_rate) - acquisition_cost


def retention_clv(margin_per_year: float | np.ndarray, retention: float, discount_rate: float) -> float | np.ndarray:
    """Retention form of CLV: m * r / (1 + d - r) (infinite horizon, constant retention r)."""
    return np.asarray(margin_per_year) * retention / (1 + discount_rate - retention)


def yearly_revenue(rfm: pd.DataFrame) -> pd.Series:
    """Revenue per customer per year observed (customers seen for less than a year count one year)."""
    years = np.maximum(rfm["tenure"].to_numpy(dtype=float), 365.0) / 365.0
    return pd.Series(rfm["monetary"].to_numpy() / years, index=rfm.index)
