"""Value-model validation: gains and holdout sums by hand, and scores that see nothing of the holdout."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cvlib.analysis import validation
from cvlib.params import Study


def test_captured_share_by_hand():
    score = pd.Series([9.0, 8.0, 7.0, 1.0, 5.0], index=list("abcde"))
    realised = pd.Series([10.0, 0.0, 30.0, 60.0, 0.0], index=list("abcde"))
    assert validation.captured(score, realised, 0.2) == pytest.approx(0.10)   # top 1 of 5: a
    assert validation.captured(score, realised, 0.4) == pytest.approx(0.10)   # a, b
    assert validation.captured(score, realised, 0.6) == pytest.approx(0.40)   # a, b, c
    assert validation.captured(score, realised, 1.0) == pytest.approx(1.0)
    g = validation.gains_curve(pd.DataFrame({"s": score, "v": realised}), ("s",), "v", points=5)
    assert g["s"].tolist() == pytest.approx([0, 0.1, 0.1, 0.4, 0.4, 1.0])


def book(seed: int = 0, n: int = 400) -> pd.DataFrame:
    """Customers buying at their own rate over two years; the holdout is the second year."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rate, spend = rng.gamma(2.0, 4.0), rng.lognormal(3, 0.5)
        first = rng.integers(0, 300)
        days = np.sort(first + np.cumsum(rng.exponential(365 / rate, 30)))
        days = days[days < 730]
        rows += [(f"c{i:03d}", pd.Timestamp("2023-01-01") + pd.Timedelta(days=int(d)), round(spend * rng.gamma(5, 0.2), 2))
                 for d in np.r_[first, days]]
    return pd.DataFrame(rows, columns=["customer_id", "date", "amount"])


def study() -> Study:
    return Study.model_validate({"study": "v", "client": "c", "inputs": {"transactions": {
        "path": "unused.csv", "columns": {"customer_id": "id", "date": "date", "amount": "amount"}}},
        "rfm": {"calibration_end": "2023-12-31", "holdout_end": "2024-12-31"}, "clv": {"bootstrap": 0}})


def test_holdout_revenue_is_summed_by_hand_and_the_scores_see_nothing_of_the_holdout():
    tx = book()
    v = validation.validate_value(study(), tx)
    d = v.customers.set_index("customer_id")
    cal = pd.Timestamp("2023-12-31")
    assert set(d.index) == set(tx.loc[tx["date"] <= cal, "customer_id"])  # customers first seen later are not scored
    hold = tx[(tx["date"] > cal) & (tx["date"] <= pd.Timestamp("2024-12-31"))].groupby("customer_id")["amount"].sum()
    assert d["holdout_revenue"].to_numpy() == pytest.approx(hold.reindex(d.index).fillna(0).to_numpy())
    assert d["past_revenue"].to_numpy() == pytest.approx(
        tx[tx["date"] <= cal].groupby("customer_id")["amount"].sum().reindex(d.index).to_numpy())
    # no leak: doubling every holdout amount changes the realised value, not one score
    later = tx["date"] > cal
    v2 = validation.validate_value(study(), tx.assign(amount=np.where(later, tx["amount"] * 2, tx["amount"])))
    d2 = v2.customers.set_index("customer_id")
    assert d2["value_score"].equals(d["value_score"]) and d2["clv"].equals(d["clv"])
    assert d2["holdout_revenue"].to_numpy() == pytest.approx(2 * d["holdout_revenue"].to_numpy())
    m = v.metrics.set_index("ranking")
    assert set(m.index) == set(validation.RANKINGS) and (m["spearman"] > 0.3).all()  # buying rates persist
    assert v.beats_past_revenue == (m.loc["value_score", "top_20pct_share"] > m.loc["past_revenue", "top_20pct_share"])


def test_no_calibration_end_no_validation():
    s = study().model_copy(update={"rfm": study().rfm.model_copy(update={"calibration_end": None})})
    assert validation.validate_value(s, book(n=50)) is None
