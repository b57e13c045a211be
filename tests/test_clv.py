"""CLV models against published results (CDNOW sample, Fader & Hardie), formula CLV, degenerate data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cvlib import customers, finance, models
from cvlib.analysis import clv, contracts, fitting, holdout, rfm
from cvlib.models import (
    BetaGeoNBD,
    GammaGamma,
    ModelFitError,
    ParetoNBD,
    ShiftedBetaGeometric,
    base,
)
from cvlib.params import DATA_DIR


def sig3(value: float, published: float) -> bool:
    """Equal to 3 significant figures."""
    return float(f"{value:.3g}") == float(f"{published:.3g}")


@pytest.fixture(scope="module")
def cdnow_cal() -> pd.DataFrame:
    """The CDNOW sample: 2,357 customers, weeks, calibration 1997-01-01..1997-09-30, same-day purchases merged."""
    cols = ["cid", "sid", "date", "cds", "value"]
    df = pd.read_csv(DATA_DIR / "CDNOW_sample.txt", sep=r"\s+", header=None, names=cols, dtype=str)
    tx = pd.DataFrame({"customer_id": df["cid"].astype("string[pyarrow]"),
                       "date": pd.to_datetime(df["date"], format="%Y%m%d"), "amount": df["value"].astype(float)})
    return customers.calibration_holdout(tx, pd.Timestamp("1997-09-30").date(), pd.Timestamp("1998-06-30").date(),
                                   by="day", unit="weeks")


def test_cdnow_calibration_summary_matches_published_counts(cdnow_cal):
    assert len(cdnow_cal) == 2357
    assert cdnow_cal["x"].sum() == 2457  # repeat transactions in the calibration period (FHL 2005)
    assert (cdnow_cal["x"] > 0).sum() == 946  # customers used by the Gamma-Gamma paper


def test_bgnbd_reproduces_fader_hardie_lee_2005(cdnow_cal):
    m = BetaGeoNBD().fit(cdnow_cal)
    p = m.params_
    assert m.converged_
    for k, v in {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}.items():
        assert sig3(p[k], v), (k, p[k])
    assert round(m.loglik_, 1) == -9582.4
    assert all(np.isfinite(list(m.se_.values())))
    # the paper's worked example: x = 2, t_x = 30.43, T = 38.86 -> 1.226 purchases in the next 39 weeks
    one = pd.DataFrame({"x": [2], "t_x": [30.43], "T": [38.86]})
    assert m.predict(one, 39)[0] == pytest.approx(1.226, abs=0.0015)


def test_fits_on_full_cdnow_master_calibration_converge():
    """23,570 customers: the likelihood reaches its floating-point floor before gtol, which SciPy 1.15+
    reports as an abnormal line search. That stop is a stationary point and must count as converged."""
    df = pd.read_csv(DATA_DIR / "CDNOW_master.txt", sep=r"\s+", header=0, names=["cid", "date", "cds", "value"],
                     dtype=str)
    tx = pd.DataFrame({"customer_id": df["cid"].astype("string[pyarrow]"),
                       "date": pd.to_datetime(df["date"], format="%Y%m%d"), "amount": df["value"].astype(float)})
    cal = customers.calibration_holdout(tx, pd.Timestamp("1997-09-30").date(), pd.Timestamp("1998-06-30").date())
    for model in (BetaGeoNBD(), ParetoNBD()):
        m = model.fit(cal)
        assert m.converged_, m
        assert all(np.isfinite(list(m.se_.values())))
        predicted = m.predict(cal, cal["duration_holdout"].to_numpy()).sum()
        assert predicted == pytest.approx(cal["x_holdout"].sum(), rel=0.15)


def test_abnormal_stop_away_from_a_stationary_point_is_not_converged():
    def wrong_way(th):  # the gradient points uphill: the line search fails with a large gradient
        return float(np.sum((th - 1.0) ** 2)), 2.0 * (1.0 - th)

    res = base._minimize(wrong_way, np.zeros(2), jac=True)
    assert res.status == 2 and not res.success


def test_paretonbd_reproduces_published_estimates(cdnow_cal):
    m = ParetoNBD().fit(cdnow_cal)
    for k, v in {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}.items():
        assert sig3(m.params_[k], v), (k, m.params_[k])
    one = pd.DataFrame({"x": [2], "t_x": [30.43], "T": [38.86]})
    assert 0 < m.p_alive(one)[0] < 1
    # holdout forecast in aggregate: close to BG/NBD's and to the actual count
    pn_total = m.predict(cdnow_cal, cdnow_cal["duration_holdout"].to_numpy()).sum()
    bg_total = BetaGeoNBD().fit(cdnow_cal).predict(cdnow_cal, cdnow_cal["duration_holdout"].to_numpy()).sum()
    assert pn_total == pytest.approx(bg_total, rel=0.05)
    assert pn_total == pytest.approx(cdnow_cal["x_holdout"].sum(), rel=0.15)


def test_gammagamma_reproduces_published_estimates(cdnow_cal):
    m = GammaGamma().fit(cdnow_cal)
    for k, v in {"p": 6.25, "q": 3.74, "gamma": 15.44}.items():
        assert sig3(m.params_[k], v), (k, m.params_[k])
    assert m.population_mean == pytest.approx(6.25 * 15.44 / 2.74, rel=2e-3)
    # shrinkage: a customer's expectation lies between their own mean and the population mean
    one = pd.DataFrame({"x": [3], "monetary_value": [100.0]})
    assert m.population_mean < m.expected_spend(one)[0] < 100


@pytest.mark.parametrize("survivors,alpha,beta", [
    ([1000, 631, 468, 382, 326, 289, 262, 241], 0.704, 1.182),  # regular customers
    ([1000, 869, 743, 653, 593, 551, 517, 491], 0.668, 3.806),  # high end
])
def test_sbg_reproduces_fader_hardie_2007(survivors, alpha, beta):
    d = ShiftedBetaGeometric.from_survivors(survivors)
    m = ShiftedBetaGeometric().fit(d, d["weight"])
    assert sig3(m.params_["alpha"], alpha) and sig3(m.params_["beta"], beta)
    assert m.survival(np.array([0]))[0] == pytest.approx(1.0)
    assert m.survival(np.array([1]))[0] * 1000 == pytest.approx(survivors[1], rel=0.05)


def test_sbg_derl_matches_closed_form_without_discounting():
    m = ShiftedBetaGeometric()
    m.params_ = {"alpha": 2.5, "beta": 3.0}
    for n in (1, 4):
        # expected further periods paid after n periods: (beta + n - 1) / (alpha - 1) when alpha > 1
        assert m.derl(n, 0.0, horizon=200_000)[0] == pytest.approx((3.0 + n - 1) / 1.5, rel=1e-3)
    assert m.derl(3, 0.1)[0] < m.derl(3, 0.0)[0]


def test_simulated_parameters_are_recovered():
    truth = {"r": 0.5, "alpha": 6.0, "a": 0.8, "b": 2.5}
    d = models.simulate_bgnbd(60_000, **truth, T=np.random.default_rng(3).uniform(20, 80, 60_000), seed=3)
    d["monetary_value"] = models.simulate_spend(d["x"].to_numpy(), 6.0, 4.0, 15.0, seed=4)
    bg = BetaGeoNBD().fit(d)
    for k, v in truth.items():
        assert bg.params_[k] == pytest.approx(v, rel=0.1), k
    gg = GammaGamma().fit(d)
    assert gg.params_["p"] == pytest.approx(6.0, rel=0.1) and gg.params_["q"] == pytest.approx(4.0, rel=0.1)


def test_formula_clv_worked_check_and_retention_form():
    assert finance.formula_clv(5000, margin=1.0, lifetime_years=3, acquisition_cost=1000, discount_rate=0) == 14000
    assert finance.formula_clv(1000, 1.0, 1, 0, 0.10) == pytest.approx(1000 / 1.1)
    assert finance.formula_clv(1000, 0.5, 1.5, 0, 0) == pytest.approx(750)
    assert finance.retention_clv(100, 0.8, 0.1) == pytest.approx(100 * 0.8 / 0.3)


def test_degenerate_data_raise_clear_errors():
    none_repeat = pd.DataFrame({"x": [0] * 50, "t_x": [0.0] * 50, "T": np.linspace(1, 30, 50),
                                "monetary_value": 0.0})
    with pytest.raises(ModelFitError, match="no customer made a repeat purchase"):
        BetaGeoNBD().fit(none_repeat)
    with pytest.raises(ModelFitError, match="too few"):
        BetaGeoNBD().fit(none_repeat.head(5))
    same = pd.DataFrame({"x": [1, 2, 3] * 10, "monetary_value": [20.0] * 30})
    with pytest.raises(ModelFitError, match="same"):
        GammaGamma().fit(same)


def test_holdout_validation_on_cdnow_sample(cdnow_cal):
    cols = ["cid", "sid", "date", "cds", "value"]
    df = pd.read_csv(DATA_DIR / "CDNOW_sample.txt", sep=r"\s+", header=None, names=cols, dtype=str)
    tx = pd.DataFrame({"customer_id": df["cid"].astype("string[pyarrow]"),
                       "date": pd.to_datetime(df["date"], format="%Y%m%d"), "amount": df["value"].astype(float)})
    m = BetaGeoNBD().fit(cdnow_cal)
    h = holdout.validate_holdout(cdnow_cal, tx, m, "bgnbd", "weeks", "1997-09-30", "1998-06-30")
    totals = h.totals.set_index("measure")["holdout_total"]
    assert totals["actual repeat purchases"] == cdnow_cal["x_holdout"].sum()
    assert totals["predicted (bgnbd)"] == pytest.approx(totals["actual repeat purchases"], rel=0.15)
    assert h.beat_baseline
    assert len(h.tracking) == 78 and h.tracking["actual"].is_monotonic_increasing
    # cumulative actual at the end of the holdout = all repeat purchases of these customers
    assert h.tracking["actual"].iloc[-1] == cdnow_cal["x"].sum() + cdnow_cal["x_holdout"].sum()
    assert h.tracking["predicted"].iloc[38] == pytest.approx(cdnow_cal["x"].sum(), rel=0.1)


def test_stage_without_repeat_purchases_falls_back_to_formula(tmp_path):
    from cvlib.params import Study

    study = Study.model_validate({"study": "t", "client": "c", "inputs": {"transactions": {
        "path": "x.csv", "columns": {"customer_id": "c", "date": "d", "amount": "a"}}},
        "clv": {"bootstrap": 0}})
    tx = pd.DataFrame({"customer_id": pd.array([f"c{i}" for i in range(40)], dtype="string[pyarrow]"),
                       "date": pd.date_range("2024-01-01", periods=40, freq="D"), "amount": np.arange(40) + 10.0})
    r = rfm.build_rfm(tx, study.rfm)
    res = clv.build_clv(study, tx, r.rfm, r.summary, None)
    assert res.used == "formula"
    assert any("could not be fitted" in n for n in res.notes) and any("BG/NBD model: not used" in n for n in res.notes)
    assert res.customers["clv"].notna().all() and len(res.customers) == 40


def test_bgnbd_predictions_stay_finite_for_heavy_buyers_and_equal_the_direct_form(cdnow_cal):
    from scipy import special

    m = BetaGeoNBD().fit(cdnow_cal)
    r, alpha, a, b = (m.params_[k] for k in m.names)
    heavy = pd.DataFrame({"x": [1000.0], "t_x": [519.0], "T": [520.0]})
    assert np.isfinite(m.predict(heavy, 520)).all() and m.predict(heavy, 520)[0] > 100
    # moderate customers: the transformed form equals the textbook one (FHL 2005, eq. 10)
    d = pd.DataFrame({"x": [0.0, 1, 2, 7, 20], "t_x": [0.0, 10, 30.43, 35, 38], "T": [38.86] * 5})
    t, x, T = 39.0, d["x"].to_numpy(), d["T"].to_numpy()
    direct = ((a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x)
                                         * special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))))
    p_alive = np.where(x > 0, 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + d["t_x"].to_numpy())) ** (r + x)), 1)
    assert m.predict(d, t) == pytest.approx(direct * p_alive, rel=1e-9)


def test_paretonbd_expected_new_matches_simulation():
    m = ParetoNBD()
    m.params_ = {"r": 0.553, "alpha": 10.58, "s": 0.606, "beta": 11.67}  # FH's CDNOW estimates
    rng = np.random.default_rng(0)
    n, t = 400_000, 39.0
    lam = rng.gamma(0.553, 1 / 10.58, n)
    life = rng.exponential(1 / rng.gamma(0.606, 1 / 11.67, n))
    mc = rng.poisson(lam * np.minimum(life, t)).mean()
    assert m.expected_new(np.array([t]))[0] == pytest.approx(mc, rel=0.02)


def test_degenerate_fits_are_not_ok_and_say_why(cdnow_cal):
    m = BetaGeoNBD().fit(cdnow_cal)
    assert m.converged_ and m.degeneracy() is None
    m.se_ = {**m.se_, "b": 1e-153}
    assert m.degeneracy().code == "se_zero" and "practically zero" in fitting.fit_message(m.degeneracy())
    m.se_ = {**m.se_, "b": float("nan")}
    assert m.degeneracy().code == "se_not_finite" and "not finite" in fitting.fit_message(m.degeneracy())
    m.se_ = {k: 0.1 for k in m.names}
    m.params_ = {**m.params_, "b": 425.0}
    assert "b = 425 ran far out" in fitting.fit_message(m.degeneracy())


def test_models_say_when_they_are_not_fitted_and_show_their_parameters(cdnow_cal):
    from cvlib.models import NotFittedError

    for model in (BetaGeoNBD(), ParetoNBD(), GammaGamma(), ShiftedBetaGeometric()):
        assert repr(model) == f"{type(model).__name__}(not fitted)"
    with pytest.raises(NotFittedError, match="BetaGeoNBD is not fitted"):
        BetaGeoNBD().predict(cdnow_cal, 10)
    with pytest.raises(NotFittedError):
        GammaGamma().population_mean()
    with pytest.raises(NotFittedError):
        ShiftedBetaGeometric().survival([1, 2])
    m = BetaGeoNBD().fit(cdnow_cal)
    assert repr(m) == "BetaGeoNBD(r=0.2426, alpha=4.414, a=0.7929, b=2.426; converged, n=2,357)"  # the published fit


def test_paretonbd_as_the_customer_model_runs_with_a_calibration_split(tmp_path):
    from cvlib.analysis.cleaning import run_cleaning
    from cvlib.params import load_study
    from tests.conftest import ROOT

    study = load_study(ROOT / "params" / "cdnow.yaml", {"clv.model": "paretonbd", "clv.bootstrap": 0})
    run_cleaning(study, tmp_path)
    rfm.run_rfm(study, tmp_path)
    res = clv.run_clv(study, tmp_path)
    out = pd.read_parquet(tmp_path / "clv.parquet")
    assert out["clv"].notna().all() and out["p_alive"].between(0, 1).all()  # Pareto/NBD: P(alive) < 1 at x = 0 too
    model = __import__("json").loads((tmp_path / "clv_model.json").read_text())
    assert model["used_for_customer_clv"] == "paretonbd" and model["holdout"]["model"] == "paretonbd"
    assert res is not None


def test_contract_periods_count_completed_renewals_on_the_calendar():
    from cvlib.params import Contracts

    attrs = pd.DataFrame({
        "customer_id": ["seven_months", "anniversary", "day_before", "mid_year_two", "leap", "active_3y"],
        "contract_start": ["2024-01-01", "2021-03-01", "2021-03-01", "2021-03-01", "2020-02-29", "2021-06-15"],
        "contract_end": [None, "2022-03-01", "2022-02-28", "2022-09-01", "2021-02-28", None]})
    p = contracts.contract_periods(attrs, Contracts(enabled=True), pd.Timestamp("2024-08-01")).set_index("customer_id")
    assert p.loc["seven_months", ["periods", "churned", "renewals"]].tolist() == [0, False, 0]  # survived no renewal
    assert p.loc["anniversary", "periods"] == p.loc["day_before", "periods"] == 1  # both paid one period
    assert p.loc["anniversary", "churned"] and p.loc["day_before", "churned"]
    assert p.loc["mid_year_two", "periods"] == 2  # started a second period, then left
    assert p.loc["leap", "periods"] == 1  # leap years add no period
    assert p.loc["active_3y", ["periods", "periods_paid"]].tolist() == [3, 4]
    # an end date after the observation end is still active
    later = contracts.contract_periods(attrs, Contracts(enabled=True), pd.Timestamp("2022-02-01")).set_index("customer_id")
    assert not later.loc["anniversary", "churned"] and later.loc["anniversary", "periods"] == 0


def test_infinite_expected_lifetime_is_said_not_truncated():
    m = ShiftedBetaGeometric()
    m.params_ = {"alpha": 0.7, "beta": 1.2}
    assert np.isfinite(m.derl(np.array([1.0]), 0.1)).all()
    values, note = contracts.expected_remaining(m, np.array([1, 3]))
    assert np.isinf(values).all() and "infinite" in note and "alpha = 0.70" in note
    m.params_ = {"alpha": 3.0, "beta": 2.0}  # E[T] = (alpha + beta - 1) / (alpha - 1) = 2 periods in all
    values, note = contracts.expected_remaining(m, np.array([1]))  # after paying the first: 2 - 1 further periods
    assert note == "" and values[0] == pytest.approx((3.0 + 2.0 - 1) / (3.0 - 1) - 1, rel=1e-4)
    from cvlib import report

    assert report._fmt(np.inf, "auto", "") == "∞"


def test_delta_method_interval_agrees_with_the_bootstrap_and_patterns_change_nothing(cdnow_cal):
    """Large studies get the total-CLV interval from the fits' Hessians; on the CDNOW sample it matches the
    resampling bootstrap's. Fits on distinct (x, t_x, T) patterns equal fits on the rows."""
    from cvlib.analysis.clv import bootstrap_total, delta_interval
    from cvlib.analysis.fitting import fit_models
    from cvlib.models import patterns
    from cvlib.params import Clv

    cal = cdnow_cal.assign(frequency=cdnow_cal["x"] + 1, monetary=(cdnow_cal["x"] + 1) * 20.0,
                           monetary_value=20.0 + cdnow_cal["x"] % 7)
    cfg = Clv(bootstrap=100)
    fits = fit_models(cal, cfg, ("bgnbd",))
    boot = bootstrap_total(cal, cfg, "weeks", "bgnbd", True, fits["bgnbd"], fits["gammagamma"])
    delta = delta_interval(cal, cfg, "weeks", fits["bgnbd"].model, fits["gammagamma"].model)
    width = boot[1] - boot[0]
    assert abs(delta[0] - boot[0]) < 0.15 * width and abs(delta[1] - boot[1]) < 0.15 * width
    (x, t_x, T), inv = patterns(*(cal[c].to_numpy(float) for c in ("x", "t_x", "T")))
    assert len(x) < len(cal) and np.array_equal(x[inv], cal["x"].to_numpy(float))
    rows = BetaGeoNBD().fit(cal)
    grouped = BetaGeoNBD().fit(pd.DataFrame({"x": x, "t_x": t_x, "T": T}), weights=np.bincount(inv))
    assert all(abs(rows.params_[k] - grouped.params_[k]) < 1e-6 * rows.params_[k] for k in rows.names)
