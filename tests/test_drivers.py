"""Loyalty drivers: survey arithmetic, relative importance against brute force, KM, planted agency effects."""
from __future__ import annotations

from itertools import permutations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from cvlib.analysis import drivers, importance, loyalty
from cvlib.params import Drivers


def test_nps_arithmetic_and_interval():
    assert loyalty.nps(pd.Series([10, 9, 8, 7, 0, 6]))["nps"] == pytest.approx(0)
    assert loyalty.nps(pd.Series([9, 10, 10, 7]))["nps"] == pytest.approx(75)
    assert loyalty.nps(pd.Series([0, 1, 2, 3]))["nps"] == pytest.approx(-100)
    r = loyalty.nps(pd.Series([10] * 50 + [7] * 30 + [3] * 20))
    # promoters .5, detractors .2: NPS 30; var = (.5 + .2 - .3^2) / 100 = .0061
    assert r["nps"] == pytest.approx(30) and r["ci_high"] - r["nps"] == pytest.approx(100 * 1.96 * 0.0061 ** 0.5, rel=1e-3)
    assert np.isnan(loyalty.nps(pd.Series([], dtype=float))["nps"])


def test_csat_share_and_wilson_interval():
    assert loyalty.csat(pd.Series([5, 4, 3, 2, 1]))["csat"] == pytest.approx(0.4)
    w = loyalty.csat(pd.Series([5] * 5 + [1] * 5))  # 5 of 10: Wilson 95% interval 0.2366 to 0.7634
    assert (round(w["ci_low"], 4), round(w["ci_high"], 4)) == (0.2366, 0.7634)
    assert loyalty.csat(pd.Series([10, 9, 3]), scale=10)["csat"] == pytest.approx(2 / 3)


def small_frame(seed=0, n=300):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    X["c"] = 0.6 * X["a"] + rng.normal(scale=0.8, size=n)  # correlated with a
    X["d=x"] = (rng.random(n) < 0.4).astype(float)
    X["d=y"] = ((rng.random(n) < 0.5) & (X["d=x"] == 0)).astype(float)
    y = pd.Series(1.0 * X["a"] + 0.5 * X["b"] + 0.3 * X["c"] + 0.8 * X["d=x"] + rng.normal(size=n))
    groups = {"a": ["a"], "b": ["b"], "c": ["c"], "d": ["d=x", "d=y"]}
    return X, y, groups


def r2_sklearn(X, y, cols):
    if not cols:
        return 0.0
    return LinearRegression().fit(X[cols], y).score(X[cols], y)


def test_lmg_equals_brute_force_over_all_orderings_and_sums_to_r2():
    X, y, groups = small_frame()
    names = list(groups)
    brute = dict.fromkeys(names, 0.0)
    orders = list(permutations(names))
    for order in orders:
        used: list[str] = []
        for g in order:
            before = r2_sklearn(X, y, used)
            used = used + groups[g]
            brute[g] += (r2_sklearn(X, y, used) - before) / len(orders)
    exact = importance.lmg(X, y, groups)
    for g in names:
        assert exact[g] == pytest.approx(brute[g], abs=1e-9)
    full = r2_sklearn(X, y, list(X.columns))
    assert exact.sum() == pytest.approx(full, abs=1e-9)
    sampled = importance.lmg(X, y, groups, max_exact=2, permutations=3000, seed=1)
    assert sampled.sum() == pytest.approx(full, abs=1e-6)  # every ordering telescopes to R²
    for g in names:
        assert sampled[g] == pytest.approx(exact[g], abs=0.01)


def test_relative_weights_sum_to_r2_and_rank_like_lmg():
    X, y, groups = small_frame(seed=2)
    rw = importance.relative_weights(X, y, groups)
    assert rw.sum() == pytest.approx(r2_sklearn(X, y, list(X.columns)), abs=1e-9)
    assert rw.idxmax() == importance.lmg(X, y, groups).idxmax() == "a"


def test_kaplan_meier_by_hand():
    flags = pd.DataFrame({"customer_id": list("abcdef"), "duration_days": [5, 6, 6, 2, 4, 4],
                          "churned": [True, False, True, True, True, False]})
    curves, test = loyalty.km_curves(flags)
    s = curves.set_index("days")["survival"]
    assert s[2] == pytest.approx(5 / 6) and s[4] == pytest.approx(5 / 6 * 4 / 5)
    assert s[5] == pytest.approx(5 / 6 * 4 / 5 * 2 / 3) and s[6] == pytest.approx(5 / 6 * 4 / 5 * 2 / 3 * 1 / 2)
    from lifelines import KaplanMeierFitter

    ref = KaplanMeierFitter().fit(flags["duration_days"], flags["churned"]).survival_function_.iloc[:, 0]
    assert s.reindex(ref.index).to_numpy() == pytest.approx(ref.to_numpy())
    grouped, t2 = loyalty.km_curves(flags, pd.Series({"a": "x", "b": "x", "c": "x", "d": "y", "e": "y", "f": "y"}))
    assert set(grouped["group"]) == {"x", "y"} and 0 <= t2["p_value"] <= 1


def test_driver_set_drops_constant_and_missing_and_reports_collinear():
    idx = pd.Index([f"c{i}" for i in range(50)])
    rng = np.random.default_rng(0)
    v = rng.normal(size=50)
    attrs = pd.DataFrame({"customer_id": idx, "const": 1.0, "empty": np.nan, "v": v, "v2": v * 2 + 0.01,
                          "region": rng.choice(["N", "S"], 50)})
    ds = drivers.driver_set(idx, attrs, None, pd.DataFrame(index=idx), Drivers())
    assert "const" not in ds.groups and "empty" not in ds.groups and {"v", "v2", "region"} <= set(ds.groups)
    assert any("'const'" in n for n in ds.notes) and any("'empty'" in n for n in ds.notes)
    assert len(ds.collinear) == 1 and set(ds.collinear.iloc[0][["driver_a", "driver_b"]]) == {"v", "v2"}


def test_too_few_churners_is_said_not_fitted():
    idx = pd.Index([f"c{i}" for i in range(60)])
    ds = drivers.DriverSet(pd.DataFrame({"x": np.arange(60.0)}, index=idx), {"x": ["x"]}, [])
    churned = pd.Series([True] * 3 + [False] * 57, index=idx)
    out = importance.churn_model(ds, churned, Drivers())
    assert isinstance(out, str) and "too few churners (3)" in out


@pytest.fixture(scope="module")
def agency_run(tmp_path_factory):
    import os

    from cvlib import load_study
    from cvlib.analysis import cleaning, rfm
    from tests.conftest import ROOT

    os.environ["CVLIB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    study = load_study(ROOT / "params" / "agency_demo.yaml", ["drivers.bootstrap=20"])
    run = tmp_path_factory.mktemp("run")
    cleaning.run_cleaning(study, run)
    rfm.run_rfm(study, run)
    return study, drivers.run_drivers(study, run), run


def test_planted_churn_drivers_come_out_on_top(agency_run):
    _, res, run = agency_run
    perm = drivers.by_method(res.drivers, "permutation")
    assert set(perm["driver"].head(2)) == {"responsiveness", "complaints"}
    assert drivers.by_method(res.drivers, "logistic")["driver"].iloc[0] == "responsiveness"
    assert res.churn.auc > 0.65
    risk = pd.read_parquet(run / "churn_risk.parquet")
    assert risk["churn_probability"].between(0, 1).all() and len(risk) == 2000


def test_planted_nps_drivers_come_out_on_top(agency_run):
    _, res, run = agency_run
    for method in ("LMG", "relative"):
        assert set(drivers.by_method(res.drivers, method)["driver"].head(2)) == {"creative_quality", "strategic_insight"}
    lmg = drivers.by_method(res.drivers, "LMG")
    assert lmg["importance"].sum() == pytest.approx(res.linear_r2)
    # the planted drivers' intervals stand clear of every unplanted one (the code keeps each estimate inside its own
    # interval, so a check of that alone could not fail)
    by = lmg.set_index("driver")
    planted = by.loc[["creative_quality", "strategic_insight"]]
    unplanted = by.drop(index=["creative_quality", "strategic_insight", "reporting_transparency"])
    assert planted["ci_low"].min() > 10 * unplanted["ci_high"].max()
    assert (planted["ci_high"] > planted["ci_low"]).all() and by.loc["reporting_transparency", "ci_low"] > 0
    saved = pd.read_parquet(run / "drivers.parquet")
    assert {"driver", "method", "importance", "ci_low", "ci_high", "mean_rating"} <= set(saved.columns)
    quad = res.ipa.set_index("driver")["quadrant"]
    assert quad["creative_quality"] in {"concentrate here", "keep up the good work"}


def test_agency_example_is_deterministic_and_messy():
    from cvlib.examples import agency_book

    a = agency_book(n_clients=200, seed=3)
    b = agency_book(n_clients=200, seed=3)
    pd.testing.assert_frame_equal(a["billings"], b["billings"])
    bills = a["billings"]
    assert bills.duplicated().any() and (bills["client_id"] == "").any()
    assert bills["invoice_id"].str.startswith("CN-").any() and bills["date"].str.contains("/").any()
    assert bills["amount"].str.startswith("$").any()


def test_nps_interval_is_clustered_by_customer_when_customers_answer_more_than_once():
    from cvlib.params import Drivers

    rng = np.random.default_rng(0)
    # 60 customers, each answering 10 times with their own fixed score: 600 answers but only 60 opinions
    own = rng.integers(0, 11, 60)
    fb = pd.DataFrame({"customer_id": np.repeat([f"c{i}" for i in range(60)], 10), "nps": np.repeat(own, 10)})
    t = loyalty.survey_table(fb, Drivers()).set_index("group").loc["all customers"]
    naive = loyalty.nps(fb["nps"])
    once = loyalty.nps(pd.Series(own))
    width = t["nps_ci_high"] - t["nps_ci_low"]
    assert width > 2 * (naive["ci_high"] - naive["ci_low"])  # the naive interval pretends to 600 opinions
    assert abs(width - (once["ci_high"] - once["ci_low"])) < 0.35 * width  # about the width of 60 opinions
    assert t["nps_ci_low"] <= t["nps_points"] <= t["nps_ci_high"] and t["customers"] == 60


def test_bootstrap_intervals_always_contain_their_estimate():
    rng = np.random.default_rng(1)
    for _ in range(50):
        draws = rng.normal(rng.normal(), 1, 40) + rng.choice([0, 5])  # sometimes every draw is far to one side
        est = float(rng.normal())
        lo, hi = importance.interval(draws, est)
        assert lo <= est <= hi


def test_survey_drivers_use_respondents_and_complaints_are_a_rate():
    from cvlib.params import Drivers

    customers = pd.Index(["a", "b", "c", "d"])
    fb = pd.DataFrame({"customer_id": ["a", "a", "b", "c"], "quality": [4.0, 2, 5, 3], "complaints": [2, 0, 1, 0]})
    early = pd.DataFrame({"first_order_value": [1.0, 2, 3, 4]}, index=customers)
    ds = drivers.driver_set(customers, None, fb, early, Drivers())
    assert ds.respondents.tolist() == [True, True, True, False]
    assert ds.X.loc["a", "complaints"] == 1.0  # 2 complaints over 2 surveys, not a sum of 2
    assert np.isnan(ds.X.loc["d", "quality"]) and any("respondents only" in n for n in ds.notes)


def test_answering_no_survey_does_not_pose_as_a_rating_effect(tmp_path):
    """Non-respondents churn more; the rating itself has no effect. Filled with the median, the rating would
    take 0.20 of AUC as a proxy for 'answered no survey'; on respondents only it takes next to nothing."""
    from cvlib.params import Drivers

    rng = np.random.default_rng(4)
    n = 1500
    customers = pd.Index([f"c{i}" for i in range(n)])
    answered = rng.random(n) < 0.5
    churned = pd.Series(rng.random(n) < np.where(answered, 0.15, 0.6), index=customers)
    fb = pd.DataFrame({"customer_id": customers[answered], "quality": rng.integers(1, 6, answered.sum()).astype(float)})
    early = pd.DataFrame({"first_order_value": rng.gamma(2, 50, n)}, index=customers)
    ds = drivers.driver_set(customers, None, fb, early, Drivers())
    r = ds.respondents.to_numpy()
    cm = importance.churn_model(drivers.DriverSet(ds.X[r], ds.groups, ds.ratings), churned[r], Drivers(min_class=5))
    perm = cm.importance[cm.importance["method"].str.startswith("permutation")].set_index("driver")
    assert perm.loc["quality", "importance"] < 0.03 and perm.loc["quality", "ci_low"] <= 0.01


def test_linear_importances_side_by_side_one_row_per_driver_largest_first():
    from cvlib.analysis.drivers import linear_side_by_side

    rows = [("a", "LMG share of R² (300 sampled orderings)", 0.10, 0.08, 0.12),
            ("b", "LMG share of R² (300 sampled orderings)", 0.30, 0.25, 0.35),
            ("a", "relative weight (Johnson)", 0.11, None, None),
            ("b", "relative weight (Johnson)", 0.29, None, None),
            ("b", "permutation (gradient boosting, ROC AUC drop)", 0.5, None, None)]
    d = pd.DataFrame(rows, columns=["driver", "method", "importance", "ci_low", "ci_high"])
    out = linear_side_by_side(d)
    assert out["driver"].tolist() == ["b", "a"]
    assert out["lmg_share"].tolist() == [0.30, 0.10] and out["relative_weight"].tolist() == [0.29, 0.11]
    assert out["ci_low"].tolist() == [0.25, 0.08]
