"""Churn risk from the customer's current state (issue #11): a time split, validated out of time."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cvlib.analysis import churn
from cvlib.params import Drivers


def book(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Customers buying at their own rate until they quit at a random time (known truth: quitters churn)."""
    rng = np.random.default_rng(seed)
    start, end = pd.Timestamp("2021-01-01"), pd.Timestamp("2023-12-31")
    rows = []
    for i in range(n):
        rate = rng.gamma(2.0, 1 / 40)  # purchases per day
        first = start + pd.Timedelta(days=int(rng.integers(0, 400)))
        quit_at = first + pd.Timedelta(days=float(rng.exponential(500)))
        t = first
        while t <= min(quit_at, end):
            rows.append((f"c{i}", t, float(rng.gamma(2, 20))))
            t = t + pd.Timedelta(days=max(1.0, float(rng.exponential(1 / rate))))
    return pd.DataFrame(rows, columns=["customer_id", "date", "amount"])


def test_churn_risk_is_validated_out_of_time_and_rises_with_recency():
    tx = book()
    end = tx["date"].max().normalize()
    r = churn.churn_risk(tx, end, 120, Drivers())
    assert r.validation.startswith("out of time") and r.method in {"classifier", "purchase model"}
    assert r.auc_model > 0.7 and r.auc_baseline > 0.6
    assert r.by_recency["mean_churn_probability"].iloc[-1] > r.by_recency["mean_churn_probability"].iloc[0] + 0.3
    s = r.scores.set_index("customer_id")
    assert s["churn_probability"].between(0, 1).all() and len(s) == tx["customer_id"].nunique()
    # customers who bought in the last days are within their cycle and far below the long-lapsed in risk
    recent = s[s["recency"] <= 3]
    lapsed = s[s["recency"] > 400]
    assert recent["within_cycle"].all() and recent["churn_probability"].mean() < lapsed["churn_probability"].mean()


def test_state_is_computed_only_from_what_was_known_at_the_cutoff():
    tx = pd.DataFrame({"customer_id": ["a", "a", "a", "b"], "amount": [10.0, 20, 30, 5],
                       "date": pd.to_datetime(["2024-01-01", "2024-01-31", "2024-03-01", "2024-02-01"])})
    s = churn.state_at(tx, pd.Timestamp("2024-02-15"))
    assert s.loc["a", "occasions"] == 2 and s.loc["a", "recency_days"] == 15 and s.loc["a", "median_gap_days"] == 30
    assert np.isnan(s.loc["b", "median_gap_days"]) and s.loc["b", "tenure_days"] == 14
    lab = churn.label_after(tx, pd.Timestamp("2024-02-15"), 30, s.index)
    assert lab.to_dict() == {"a": False, "b": True}


def test_one_time_buyers_get_the_typical_cycle_and_few_gaps_are_shrunk():
    st = pd.DataFrame({"median_gap_days": [10.0, 100.0, np.nan], "occasions": [30.0, 2.0, 1.0]}, index=list("xyz"))
    c = churn.usual_cycle(st)
    typical = 55.0
    assert c["z"] == typical
    assert abs(c["x"] - 10) < abs(c["y"] - 100)  # many gaps: close to their own cycle
    assert c["y"] == (100 * 1 + typical * 2) / 3


def test_contract_churn_is_a_renewal_decision_not_a_purchase_gap():
    tx = book(600, seed=2)
    end = tx["date"].max().normalize()
    ids = tx["customer_id"].drop_duplicates()
    rng = np.random.default_rng(0)
    ended = pd.Series(pd.NaT, index=ids.to_numpy(), dtype="datetime64[ns]")
    pick = rng.random(len(ids)) < 0.3
    ended[pick] = end - pd.to_timedelta(rng.integers(0, 600, pick.sum()), unit="D")
    r = churn.churn_risk(tx, end, 120, Drivers(), contract_end=ended)
    s = r.scores.set_index("customer_id")
    assert not s["within_cycle"].any()  # a recent bill does not shield a client from not renewing
    assert (s.loc[s["churned"], "churn_probability"] == 1.0).all()
    assert s["churned"].sum() == int((ended.dropna() <= end).sum())


def test_within_cycle_rests_on_the_cycle_it_is_given():
    """The drivers stage passes the journey's cycle (purchase occasion, segment shrinkage), so `within_cycle`,
    `cycle_days` and `overdue` agree; a customer inside that cycle is within it, whatever the purchase days say."""
    tx = book(600, seed=3)
    end = tx["date"].max().normalize()
    r0 = churn.churn_risk(tx, end, 120, Drivers())
    s0 = r0.scores.set_index("customer_id")
    wide = pd.Series(10_000.0, index=s0.index)  # a cycle longer than any recency
    s1 = churn.churn_risk(tx, end, 120, Drivers(), cycle=wide).scores.set_index("customer_id")
    assert s1["within_cycle"].all() and (s1["cycle_days"] == 10_000.0).all()
    assert not s0["within_cycle"].all()


def test_a_churn_reason_attribute_cannot_leak_into_the_churn_risk():
    """A reason is recorded only for customers who left: given to the model it would 'predict' churn perfectly
    (the agency example's AUC went from 0.79 to 0.97 before it was kept out). The scores must not change."""
    tx = book(800, seed=5)
    end = tx["date"].max().normalize()
    last = tx.groupby("customer_id")["date"].max()
    gone = last < end - pd.Timedelta(days=120)
    region = pd.Series(np.where(np.arange(len(last)) % 2, "N", "S"), index=last.index)
    plain = pd.DataFrame({"customer_id": last.index, "region": region.to_numpy()})
    leaky = plain.assign(churn_reason=np.where(gone.to_numpy(), "price", None))
    a = churn.churn_risk(tx, end, 120, Drivers(), attrs=plain)
    b = churn.churn_risk(tx, end, 120, Drivers(), attrs=leaky)
    pd.testing.assert_frame_equal(a.scores, b.scores)
    assert a.auc_model == b.auc_model


def test_batch_predictions_use_every_core_only_for_large_batches(monkeypatch):
    """cvlib's one-thread cap (applied by every notebook) is widened for a large prediction batch only:
    CVLIB_THREADS unset and the batch at least BATCH_MIN_ROWS; afterwards the cap is back."""
    import os

    import sklearn.ensemble  # noqa: F401  (loads scikit-learn's OpenMP runtime)
    from threadpoolctl import threadpool_info

    from cvlib import threads

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.delenv("CVLIB_THREADS", raising=False)
    threads.limit_threads()
    big = threads.BATCH_MIN_ROWS
    openmp = lambda: [p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"]  # noqa: E731
    assert openmp() and all(k == 1 for k in openmp())  # cvlib's default cap
    with threads.batch_threads(big) as n:
        assert n == 2 and all(k == 2 for k in openmp())
    assert all(k == 1 for k in openmp())  # back to one thread after the batch
    with threads.batch_threads(big - 1) as n:
        assert n == 1 and all(k == 1 for k in openmp())
    monkeypatch.setenv("CVLIB_THREADS", "1")  # a count the user chose is kept
    with threads.batch_threads(big) as n:
        assert n == 1 and all(k == 1 for k in openmp())
