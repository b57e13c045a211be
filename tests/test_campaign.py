"""Campaign evaluation: outcomes by hand, uplift with intervals and tests, sample ratio, ROI, rows set aside,
and a planted uplift recovered."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cvlib.analysis import campaign
from cvlib.params import CampaignParams

DATE = pd.Timestamp("2024-03-01")


def tx_of(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "date", "amount"]).assign(date=lambda d: pd.to_datetime(d["date"]))


def test_outcomes_by_hand():
    tx = tx_of([("a", "2024-02-10", 50.0), ("a", "2024-03-01", 999.0),  # the campaign day itself does not count
                ("a", "2024-03-15", 100.0), ("a", "2024-06-15", 7.0),    # after the 90-day window
                ("b", "2024-04-01", 30.0), ("c", "2024-01-20", 20.0)])
    assigned = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "campaign": "spring",
                             "group": ["treatment", "treatment", "control", "control"], "date": DATE})
    o = campaign.outcomes(tx, assigned, 90).set_index("customer_id")
    assert o.loc["a", "revenue"] == 100.0 and o.loc["a", "revenue_before"] == 50.0 and o.loc["a", "retained"] == 1.0
    assert o.loc["b", "bought"] == 1.0 and np.isnan(o.loc["b", "retained"])  # b did not buy before: no retention
    assert o.loc["c", "bought"] == 0.0 and o.loc["c", "retained"] == 0.0 and o.loc["c", "revenue_before"] == 20.0
    assert o.loc["d", "revenue"] == 0.0 and o.loc["d", "bought"] == 0.0


def test_rows_that_cannot_be_used_are_set_aside_with_their_reason():
    raw = pd.DataFrame({"customer_id": ["a", "b", "c", "d", "a", "e"],
                        "group": ["Treatment", " control ", "holdout", "control", "treatment", "treatment"],
                        "campaign": ["x", "x", "x", "x", "x", ""],
                        "date": ["2024-03-01", "2024-03-01", "2024-03-01", "not a date", "2024-03-01", "2024-03-01"]})
    used, aside = campaign.assignments(raw)
    assert used["customer_id"].tolist() == ["a", "b"] and used["group"].tolist() == ["treatment", "control"]
    assert aside["reason"].tolist() == ["unknown group (treatment or control)", "unreadable date",
                                        "customer listed twice in the campaign", "no campaign name"]
    assert len(used) + len(aside) == len(raw)  # nothing lost silently


def test_uplift_interval_test_sample_ratio_and_roi():
    rng = np.random.default_rng(0)
    n = 2000
    group = np.where(np.arange(n) < 1000, "treatment", "control")
    revenue = rng.gamma(2.0, 50.0, n) + np.where(group == "treatment", 20.0, 0.0)  # planted: +20 per customer
    out = pd.DataFrame({"campaign": "x", "date": DATE, "customer_id": [f"c{i}" for i in range(n)], "group": group,
                        "bought": (revenue > 60).astype(float), "revenue": revenue, "revenue_before": 100.0,
                        "retained": 1.0})
    cfg = CampaignParams(costs={"x": 5000.0}, bootstrap=500)
    up, summ = campaign.evaluate(out, cfg, margin=0.5)
    r = up.set_index("outcome").loc["revenue"]  # adjusted for the pre-period: here the same 100 for everyone
    t, c = revenue[group == "treatment"], revenue[group == "control"]
    assert up.set_index("outcome").loc["revenue_unadjusted", "uplift"] == pytest.approx(r["uplift"])
    assert r["uplift"] == pytest.approx(t.mean() - c.mean())
    assert r["ci_low"] < 20 < r["ci_high"] and r["ci_low"] > 0 and r["p_value"] < 1e-6
    s = summ.iloc[0]
    assert s["sample_ratio_p"] == pytest.approx(1.0) and not s["sample_ratio_mismatch"]
    assert s["incremental_profit"] == pytest.approx(r["uplift"] * 1000 * 0.5)
    assert s["roi"] == pytest.approx((r["uplift"] * 1000 * 0.5 - 5000) / 5000)
    assert s["relative_uplift"] == pytest.approx(r["uplift"] / c.mean())
    assert s["post_pre_control"] == pytest.approx(c.sum() / (1000 * 100.0))
    # the same numbers with the same seed; a lopsided split is flagged
    assert campaign.evaluate(out, cfg, margin=0.5)[0].equals(up)
    lopsided = out[~((out["group"] == "control") & (np.arange(n) % 3 == 0))]
    assert campaign.evaluate(lopsided, cfg, 0.5)[1]["sample_ratio_mismatch"].iloc[0]


def test_a_rate_is_tested_as_proportions_by_hand():
    t, c = np.r_[np.ones(60), np.zeros(40)], np.r_[np.ones(45), np.zeros(55)]
    p = 105 / 200
    z = 0.15 / np.sqrt(p * (1 - p) * (2 / 100))
    from scipy.stats import norm

    assert campaign.test_difference(t, c, rate=True) == pytest.approx(2 * norm.sf(z))


def test_the_agency_example_recovers_its_planted_campaign_uplift(tmp_path):
    """cvlib.examples plants a workshop offer worth 0.55 x 12,000 EUR x size per treated client: the adjusted
    revenue uplift's interval holds it and excludes 0; the unusable rows are set aside and counted."""
    from cvlib.analysis import cleaning
    from cvlib.examples import SIZES, agency_book
    from cvlib.params import load_study

    study = load_study("params/agency_demo.yaml")
    cleaning.run_cleaning(study, tmp_path)
    res = campaign.run_campaign(study, tmp_path)
    clients = agency_book()["clients"].set_index("client_id")
    treated = res.outcomes.loc[res.outcomes["group"] == "treatment", "customer_id"]
    planted = 0.55 * 12000 * clients.loc[treated, "size_tier"].map(SIZES).mean() * np.exp(0.2 ** 2 / 2)
    r = res.uplift.set_index("outcome").loc["revenue"]
    assert r["ci_low"] < planted < r["ci_high"] and r["ci_low"] > 0 and r["p_value"] < 0.01
    s = res.summary.iloc[0]
    assert not s["sample_ratio_mismatch"] and s["roi"] > 0 and s["relative_ci_low"] > 0
    assert len(res.set_aside) == 2 and len(res.outcomes) + len(res.set_aside) == len(agency_book()["campaigns"])


def test_a_measured_campaign_enters_the_plan_as_its_gross_profit_per_customer_booked_once():
    from cvlib.analysis.allocation import gains
    from cvlib.analysis.strategy import measured_effects
    from cvlib.params import Strategy

    cfg = Strategy.model_validate({"groups": [{"name": "g", "objective": "wider", "when": "clv > 0"}],
                                   "actions": [{"name": "offer", "groups": ["g"], "cost_per_customer": 1, "uplift": 0.04},
                                               {"name": "call", "groups": ["g"], "cost_per_customer": 1, "uplift": 0.1}],
                                   "measured_uplift": {"offer": "spring", "call": "autumn"}})
    measured = {"spring": {"relative_uplift": 0.11, "revenue_uplift": 200.0, "revenue_ci_low": 120.0,
                           "revenue_ci_high": 280.0, "window_days": 90}}
    effects, notes = measured_effects(cfg, measured, margin=0.35)
    assert set(effects) == {"offer"}  # 'autumn' was not measured: the assumption stays, and a note says so
    e = effects["offer"]
    assert (e.gain, e.low, e.high, e.window_days) == pytest.approx((70.0, 42.0, 98.0, 90))
    assert len(notes) == 2 and "spring" in notes[0] and "autumn" in notes[1]
    # the gain is the same 70 (once) for a customer with a CLV of 10 or 10,000: not a share of horizon CLV
    df = pd.DataFrame({"customer_id": ["a", "b"], "clv": [10.0, 10_000.0], "monthly_profit": [10 / 12, 10_000 / 12],
                       "value_at_risk": [0.0, 0.0]})
    assert gains(df, cfg.actions[0], measured=effects).tolist() == [70.0, 70.0]
    assert gains(df, cfg.actions[0], measured=effects, which="low").tolist() == [42.0, 42.0]
    assert gains(df, cfg.actions[1], measured=effects).tolist() == pytest.approx([0.1 * 10, 0.1 * 10_000])
    harmful = {"spring": {**measured["spring"], "revenue_uplift": -50.0, "revenue_ci_low": -90.0}}
    assert gains(df, cfg.actions[0], measured=measured_effects(cfg, harmful, 0.35)[0]).tolist() == [0.0, 0.0]


def test_the_uplift_table_reads_rates_as_percentages_and_money_as_money():
    up = pd.DataFrame({"campaign": ["x", "x"], "outcome": ["purchase_rate", "revenue"], "treatment_n": [10, 10],
                       "control_n": [9, 9], "treatment_mean": [0.981, 8975.4], "control_mean": [0.9387, 2212.0],
                       "uplift": [0.0423, 6763.4], "ci_low": [0.0213, 4704.5], "ci_high": [0.0631, 8856.7],
                       "p_value": [0.00014, 0.0412]})
    v = campaign.uplift_view(up, "EUR").set_index("outcome")
    assert v.loc["purchase_rate", "treatment_mean"] == "98.1%" and v.loc["purchase_rate", "uplift"] == "+4.2%"
    assert v.loc["purchase_rate", "p_value"] == "< 0.001" and v.loc["revenue", "p_value"] == "0.041"
    assert "6,763" in v.loc["revenue", "uplift"] and "EUR" in v.loc["revenue", "uplift"]
