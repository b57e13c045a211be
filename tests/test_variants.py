"""The named CLV formulas against hand calculations."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cvlib.analysis import variants


def test_each_variant_by_hand():
    """A: 2 years, 4 orders worth 400 (AOV 100, 2 a year), direct cost 240, cost to serve 60, profit 100.
    B: 100 days (counted as one year), 1 order of 50, direct cost 30, no cost to serve, profit 20.
    Lifespan 3 years, retention 0.8, growth 0.1, discount 0.1, horizon 2 years, maintenance 20 a year, CAC 30."""
    rfm = pd.DataFrame({"customer_id": ["A", "B"], "tenure": [730, 100], "frequency": [4, 1], "monetary": [400.0, 50.0]})
    prof = pd.DataFrame({"customer_id": ["A", "B"], "revenue": [400.0, 50.0], "direct_cost": [240.0, 30.0],
                         "cost_to_serve": [60.0, 0.0], "profit": [100.0, 20.0]})
    inputs = variants.Inputs(lifetime_years=3.0, retention=0.8, growth=0.1, discount_rate=0.1, horizon_years=2,
                             maintenance_cost=20.0, sources={})
    v = variants.per_customer(prof, rfm, inputs, acquisition_cost=30.0)
    # (a) AOV x purchases a year x lifespan: 100 x 2 x 3; 50 x 1 x 3
    assert v.loc["A", "clv_aov"] == pytest.approx(600.0) and v.loc["B", "clv_aov"] == pytest.approx(150.0)
    # (b) net profit a year 50 (A) and 20 (B); r (1 + g) / (1 + d) = 0.8: 50 x (0.8 + 0.64), 20 x 1.44
    assert v.loc["A", "clv_retention_growth"] == pytest.approx(72.0)
    assert v.loc["B", "clv_retention_growth"] == pytest.approx(28.8)
    # (c) gross profit a year 80 (A) and 20 (B), less 20 maintenance, x (1/1.1 + 1/1.21 + 1/1.331), less 30
    pv = 1 / 1.1 + 1 / 1.21 + 1 / 1.331
    assert v.loc["A", "clv_discounted_profit"] == pytest.approx(60 * pv - 30)
    assert v.loc["B", "clv_discounted_profit"] == pytest.approx(-30.0)
    # (d) 100 and 20 of 120 total profit; profit per cost to serve 100 / 60, none for B (no cost to serve)
    assert v["profit_share"].tolist() == pytest.approx([100 / 120, 20 / 120])
    assert v.loc["A", "profit_per_cost_to_serve"] == pytest.approx(100 / 60)
    assert np.isnan(v.loc["B", "profit_per_cost_to_serve"])
    facts = variants.contribution_facts(v)
    assert facts["top10_profit_share"] == pytest.approx(100 / 120)  # the top 10% of two customers is one
    # a cost per customer takes the place of the single cost
    w = variants.per_customer(prof, rfm, inputs, acquisition_cost=pd.Series({"A": 10.0}))
    assert w.loc["A", "clv_discounted_profit"] == pytest.approx(60 * pv - 10) and w.loc["B", "clv_discounted_profit"] == 0


def test_growth_is_measured_over_the_last_two_years_or_not_at_all():
    d = lambda s: pd.Timestamp(s)  # noqa: E731
    tx = pd.DataFrame({"customer_id": ["c", "a", "b", "a", "a"], "amount": [70.0, 100.0, 100.0, 100.0, 50.0],
                       "date": [d("2022-12-30"), d("2023-02-01"), d("2023-03-01"), d("2024-02-01"), d("2024-12-31")]})
    # the year before: 200 from 2 customers (100 each); the last year: 150 from 1 customer (c is older than both)
    assert variants.measured_growth(tx) == pytest.approx(0.5)
    assert np.isnan(variants.measured_growth(tx[tx["date"] > d("2023-06-01")]))  # less than two years of data


@pytest.mark.parametrize("used, fallback, beat, expect", [
    ("bgnbd", "", True, "beat the naive baseline on the holdout"),
    ("bgnbd", "", False, "did not beat the naive baseline"),
    ("paretonbd", "", None, "no holdout period was available"),
    ("formula", "too few repeat buyers", None, "No purchase model could be used (too few repeat buyers)"),
    ("bgnbd", "some customers by the formula", True, "No purchase model could be used"),
    ("sbg", "", True, "retention model of their renewals"),
])
def test_one_recommended_clv_says_which_and_why(used, fallback, beat, expect):
    """The CLV report and the executive summary name one CLV, its mean and total, and the reason: a model
    that failed its holdout check is flagged, a formula fallback says so."""
    from cvlib import i18n
    from cvlib.analysis.variants import recommendation

    key, fields = recommendation(used, fallback, beat, pd.Series([10.0, 0.0, 20.0]), "USD", 12)
    text = i18n.t(key, **fields)
    assert expect in text, text
    assert "10.00 USD per customer" in text and "30.00 USD for the whole base" in text and "12 months" in text
    assert i18n.label(used) in text
