"""The standard metrics every complete run writes (metrics.json), against hand calculations on a small book."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from cvlib.run import metrics


def book() -> pd.DataFrame:
    """Five customers, dates relative to the end 2024-12-31:
    a: 2023-03-01, 2023-03-11, 2024-06-01 (3 days, gaps 10 and 448 -> median 229), revenue 100
    b: 2023-05-01 twice on one day, 2024-12-31 (2 days, gap 610), revenue 60
    c: 2023-08-01 (1 day), revenue 20
    d: 2024-02-01, 2024-02-21, 2024-03-02 (3 days, gaps 20 and 10 -> median 15), revenue 15
    e: 2024-07-01 (1 day), revenue 5"""
    rows = [("a", "2023-03-01", 40), ("a", "2023-03-11", 30), ("a", "2024-06-01", 30),
            ("b", "2023-05-01", 20), ("b", "2023-05-01", 10), ("b", "2024-12-31", 30),
            ("c", "2023-08-01", 20),
            ("d", "2024-02-01", 5), ("d", "2024-02-21", 5), ("d", "2024-03-02", 5),
            ("e", "2024-07-01", 5)]
    return pd.DataFrame(rows, columns=["customer_id", "date", "amount"]).assign(
        date=lambda d: pd.to_datetime(d["date"]), amount=lambda d: d["amount"].astype(float))


def test_purchase_metrics_equal_the_hand_calculation():
    m = metrics.purchase_metrics(book())
    assert m["customers"] == 5 and m["revenue"] == 200 and m["revenue_per_customer"] == 40
    assert m["top10_revenue_share"] == pytest.approx(100 / 200)  # ceil(0.5) = 1 customer: a
    assert m["top20_revenue_share"] == pytest.approx(100 / 200)  # ceil(1.0) = 1 customer
    assert m["repeat_rate"] == pytest.approx(3 / 5)  # a, b, d bought on two or more days
    # bought 2023-01-01..2023-12-31: a, b, c; of them again in 2024: a, b
    assert m["retention_12m"] == pytest.approx(2 / 3)
    assert m["median_cycle_days"] == pytest.approx(229)  # medians 229 (a), 610 (b), 15 (d)
    # Gini of 5, 15, 20, 60, 100: sum_i (2i - n - 1) x_i / (n sum x)
    x = [5, 15, 20, 60, 100]
    assert m["gini"] == pytest.approx(sum((2 * i - 6) * v for i, v in enumerate(x, 1)) / (5 * 200))


def test_gini_of_equal_and_of_concentrated_values():
    from cvlib.analysis.rfm import gini  # the one Gini of the project (the RFM stage's and metrics.json's)

    assert gini([10, 10, 10, 10]) == pytest.approx(0)
    assert gini([0, 0, 0, 100]) == pytest.approx(0.75)  # (n - 1) / n: one customer holds everything
    assert math.isnan(gini([]))  # undefined: metrics.json writes it as null
    assert metrics._plain(gini([])) is None


def test_metrics_json_of_a_run_carries_definitions_units_period_and_tags(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    book().to_parquet(run / "transactions_clean.parquet")
    clv = pd.DataFrame({"customer_id": list("abcde"), "clv": [50.0, 30.0, 0.0, 10.0, 10.0],
                        "churn_probability": [0.1, 0.5, 1.0, 0.2, 0.5]})
    clv.to_parquet(run / "clv.parquet")
    (run / "strategy.json").write_text(json.dumps({"total_cost": 100.0, "expected_incremental_value": 250.0,
                                                   "net_value": 150.0}))
    out = json.loads(metrics.write_metrics(run, {"study": "s", "client": "C", "currency": "EUR", "industry": "retail",
                                                 "clv": {"horizon_months": 12}}).read_text())
    assert out["schema"] == metrics.SCHEMA and out["industry"] == "retail" and out["currency"] == "EUR"
    assert out["period"] == {"first": "2023-03-01", "last": "2024-12-31"}
    m = out["metrics"]
    assert set(m) == set(metrics.DEFINITIONS) and all(v["definition"] and v["unit"] for v in m.values())
    assert m["mean_clv"]["value"] == pytest.approx(20) and m["median_clv"]["value"] == pytest.approx(10)
    assert m["plan_roi"]["value"] == pytest.approx(1.5)
    assert m["nps"]["value"] is None  # no survey: not measured, never 0


def test_a_run_whose_files_the_metrics_cannot_read_says_why(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    book().to_parquet(run / "transactions_clean.parquet")
    (run / "strategy.json").write_text("not json")
    out = json.loads(metrics.write_metrics(run, {"study": "s"}).read_text())
    assert out["metrics"] is None and "could not be computed" in out["error"]
