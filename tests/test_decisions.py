"""The decisions a client acts on, checked against planted truths (issue #28): a one-off campaign effect is booked
once, a client who has left is worth nothing forward and reached by win-back only, purchase models fit on books
with customers first seen on a cut-off day, the potential axis is not made of lapsed one-timers, and the
churn-risk ranking is the one that beats the others among live customers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cvlib import io, status
from cvlib.analysis import allocation, campaign, strategy
from cvlib.params import Action, CampaignParams, Strategy, load_study
from cvlib.stages import by_name

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- 1. plan economics
def test_a_one_off_campaign_effect_is_booked_once_within_15_percent_of_the_planted_gross_profit(tmp_path):
    """A randomised campaign whose treated customers each buy a one-off extra 600 in the 90-day window. The plan
    that uses its measured uplift must promise about 600 x margin per targeted customer, not a share of a
    two-year CLV (which is 60 times larger here)."""
    rng = np.random.default_rng(2)
    n, margin, planted = 1200, 0.3, 600.0
    ids = [f"k{i:04d}" for i in range(n)]
    treated = rng.random(n) < 0.5
    day = pd.Timestamp("2024-04-01")
    rows = []
    for i, c in enumerate(ids):
        for m in range(-6, 4):  # a steady monthly buyer, before and after the campaign
            rows.append((c, day + pd.Timedelta(days=30 * m + int(rng.integers(1, 28))), float(rng.gamma(4, 25))))
        if treated[i]:
            rows.append((c, day + pd.Timedelta(days=int(rng.integers(1, 90))), planted * float(rng.lognormal(0, 0.3))
                         / np.exp(0.045)))  # mean exactly `planted`
    tx = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    assigned = pd.DataFrame({"customer_id": ids, "campaign": "offer", "date": day,
                             "group": np.where(treated, "treatment", "control")})
    up, summ = campaign.evaluate(campaign.outcomes(tx, assigned, 90), CampaignParams(bootstrap=300), margin)
    io.write_json({"campaigns": summ.to_dict("records"), "uplift": up.to_dict("records"), "window_days": 90},
                  tmp_path / "campaign.json")
    cfg = Strategy.model_validate({
        "groups": [{"name": "all", "objective": "deeper", "when": "clv > 0"}], "budget": 10_000,
        "actions": [{"name": "offer", "groups": ["all"], "cost_per_customer": 20, "uplift": 0.1}],
        "measured_uplift": {"offer": "offer"}})
    effects, _ = strategy.measured_effects(cfg, campaign.measured_uplift(tmp_path), margin)
    df = pd.DataFrame({"customer_id": ids, "clv": 24 * 300.0, "monthly_profit": 300.0, "value_at_risk": 0.0,
                       "churn_probability": 0.1, "segment": "x", "group": "all"})
    alloc = allocation.allocate(df, cfg, measured=effects)
    targets = strategy.target_list(df, alloc, cfg, "EUR")
    truth = len(targets) * planted * margin
    assert len(targets) == 250  # half the budget at 20 each: the action's share, not the whole budget
    assert float(targets["expected_gain"].sum()) == pytest.approx(truth, rel=0.15)
    iv = allocation.plan_interval(alloc, df, cfg, effects)
    assert iv["measured"] and iv["gain_low"] < truth < iv["gain_high"] and iv["roi_low"] < iv["roi"] < iv["roi_high"]
    # the same measurement read as a relative uplift on horizon CLV (the old booking) would promise far more
    assert summ["relative_uplift"].iloc[0] * 24 * 300.0 * len(targets) > 5 * truth
    # measured gross profit below the action's cost: no budget for it
    dear = cfg.model_copy(update={"actions": [cfg.actions[0].model_copy(update={"cost_per_customer": 250})]})
    assert allocation.allocate(df, dear, measured=effects).chosen.empty


def test_revenue_effects_last_their_months_and_retention_effects_act_on_value_at_risk():
    df = pd.DataFrame({"customer_id": ["a", "b"], "monthly_profit": [100.0, 10.0], "value_at_risk": [50.0, 500.0],
                       "past_monthly_profit": [80.0, 40.0], "departed": [False, True], "clv": [2400.0, 0.0]})
    revenue = Action(name="r", groups=["g"], cost_per_customer=1, uplift=0.1, effect_months=6)
    decaying = revenue.model_copy(update={"effect_decay": 0.5})
    retention = Action(name="k", groups=["g"], cost_per_customer=1, uplift=0.2, applies_to="value_at_risk")
    win_back = Action(name="w", groups=["departed"], cost_per_customer=1, uplift=0.1,
                               applies_to="win_back", effect_months=12)
    assert allocation.gains(df, revenue).tolist() == pytest.approx([0.1 * 100 * 6, 0.0])  # b has left: nothing
    assert allocation.gains(df, decaying).tolist() == pytest.approx([0.1 * 100 * (1 - 0.5 ** 6) / 0.5, 0.0])
    assert allocation.gains(df, retention).tolist() == pytest.approx([0.2 * 50, 0.0])
    assert allocation.gains(df, win_back).tolist() == pytest.approx([0.0, 0.1 * 40 * 12])  # departed only


def test_win_back_actions_are_for_the_departed_group_only_and_other_actions_never_reach_it():
    base = {"groups": [{"name": "g", "objective": "deeper", "when": "clv > 0"}]}
    with pytest.raises(ValueError, match="win-back action"):
        Strategy.model_validate({**base, "actions": [{"name": "w", "groups": ["g"], "cost_per_customer": 1,
                                                      "uplift": 0.1, "applies_to": "win_back"}]})
    with pytest.raises(ValueError, match="applies_to: win_back"):
        Strategy.model_validate({**base, "actions": [{"name": "x", "groups": ["departed"], "cost_per_customer": 1,
                                                      "uplift": 0.1}]})
    with pytest.raises(ValueError, match="departed_group"):
        Strategy.model_validate({**base, "default_group": "departed", "actions": [
            {"name": "x", "groups": ["g"], "cost_per_customer": 1, "uplift": 0.1}]})


# --------------------------------------------------------------------------- 2. departed customers
def test_one_definition_of_who_has_left():
    ids = pd.Series(["a", "b", "c", "d", "e"])
    ends = pd.Series(pd.to_datetime(["2024-01-31", None, "2025-03-01", None, None]), index=["a", "b", "c", "d", "e"])
    st = status.departed(ids, [10, 400, 10, 10, 10], 365, ends, pd.Timestamp("2024-12-31"),
                         np.array([0.9, 0.9, 0.9, 0.02, np.nan]), 0.1)
    assert st["departed_reason"].tolist() == ["contract ended", "inactive", "", "p_alive", ""]
    # a contract ending after the observation end is still running; P(alive) missing (one-time buyers under
    # BG/NBD, where it is 1 by construction) is no evidence either way


def agency_like(tmp_path: Path, seed: int, n_clients: int, **updates) -> Path:
    """Another client book of the agency generator (a seed the examples never use) with the example's params."""
    from cvlib.examples import write_agency

    files = write_agency(tmp_path / "data", seed=seed, n_clients=n_clients)
    p = yaml.safe_load((ROOT / "params" / "agency_demo.yaml").read_text())
    p["study"] = f"agency_{seed}"
    for name, f in (("transactions", "billings"), ("customers", "clients"), ("feedback", "survey"),
                    ("campaigns", "campaigns")):
        p["inputs"][name]["path"] = str(files[f])
    p["clv"]["bootstrap"], p["drivers"]["bootstrap"], p["clv"]["compare_paretonbd"] = 0, 0, False
    p["rfm"]["clusters"] = {"k_range": [2, 3]}
    for key, value in updates.items():
        section, name = key.split(".", 1)
        p[section][name] = value
    out = tmp_path / "params.yaml"
    out.write_text(yaml.safe_dump(p, allow_unicode=True), encoding="utf-8")
    return out


def run_stages(params: Path, run_dir: Path, stages: tuple[str, ...]):
    study = load_study(params)
    run_dir.mkdir(exist_ok=True)
    return study, {s: by_name(s).build()(study, run_dir) for s in stages}


ALL = ("cleaning", "rfm", "clv", "value", "drivers", "journey", "campaign", "strategy")


@pytest.fixture(scope="module")
def contract_book(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("contracts")
    params = agency_like(tmp, seed=11, n_clients=500)
    run = tmp / "run"
    study, res = run_stages(params, run, ALL)
    return study, run, res


def test_a_client_whose_contract_ended_is_worth_nothing_forward_and_reached_by_win_back_only(contract_book):
    study, run, res = contract_book
    clients = pd.read_csv(study.inputs.customers.path, dtype=str).set_index("client_id")
    end = pd.to_datetime(clients["contract_end"], errors="coerce")
    last = io.read_stage(run, "transactions_clean.parquet")["date"].max()
    ended = set(end[end.notna() & (end <= last)].index)
    assert len(ended) > 50
    clv = io.by_customer(io.read_stage(run, "clv.parquet"))
    gone = clv.loc[clv.index.isin(ended)]
    assert gone["departed"].all() and (gone["departed_reason"] == "contract ended").all()
    assert (gone["clv"] == 0).all() and (gone["monthly_profit"] == 0).all()
    assert (gone["clv_before_status"] > 0).any()  # what the model alone would have said
    live = clv.loc[~clv["departed"]]
    assert (live["clv"] > 0).mean() > 0.9  # running contracts are valued, by the fitted sBG
    model = json.loads((run / "clv_model.json").read_text())
    assert model["used_for_customer_clv"] == "sbg"
    assert model["formula_fallback"] is None  # no live client is valued by the formula: the headline must not say so
    value = io.by_customer(io.read_stage(run, "value.parquet"))
    assert (value.loc[value.index.isin(ended), "value_cell"] == "departed").all()
    assert "departed" not in set(value.loc[~value.index.isin(ended), "value_cell"])
    groups = io.by_customer(io.read_stage(run, "strategy_groups.parquet"))
    assert (groups.loc[groups.index.isin(ended), "group"] == "departed").all()
    assert (groups.loc[groups.index.isin(ended), "value_at_risk"] == 0).all()
    targets = pd.read_csv(run / "targets.csv", dtype={"customer_id": str})
    kind = {a.name: a.applies_to for a in study.strategy.actions}
    on_departed = targets[targets["customer_id"].isin(ended)]
    assert len(on_departed) and (on_departed["action"].map(kind) == "win_back").all()
    assert not targets[~targets["customer_id"].isin(ended)]["action"].map(kind).eq("win_back").any()
    st = json.loads((run / "strategy.json").read_text())
    assert st["departed_in_targets"] == 0
    playbook = pd.read_csv(run / "playbook.csv").set_index("group")  # the departed group has its row and action
    assert playbook.loc["departed", "customers"] == len(ended) and "win-back pitch" in playbook.loc["departed", "actions"]
    assert playbook["customers"].sum() == len(clv)
    # the headline value at risk counts live customers only
    from cvlib.run.summary import figures

    var = {f.key: f.value for f in figures(run)}["value_at_risk"]
    risk = io.by_customer(io.read_stage(run, "churn_risk.parquet"))
    live_var = float((live["clv"] * risk["churn_probability"].reindex(live.index)).sum())
    assert var == pytest.approx(live_var)


def test_no_action_takes_the_whole_budget_and_a_top_driver_lever_is_offered(contract_book):
    study, run, res = contract_book
    st = json.loads((run / "strategy.json").read_text())
    shares = pd.DataFrame(st["budget_shares"]).set_index("action")
    assert (shares["share_of_budget"] <= study.strategy.max_action_share + 1e-9).all()
    assert shares["share_of_budget"].sum() <= 1 + 1e-9
    levers = pd.DataFrame(st["lever_shares"]).set_index("lever")  # the plan's budget per driver lever, too
    assert levers["cost"].sum() == pytest.approx(shares["cost"].sum())
    assert levers["cost"].to_dict() == pytest.approx(shares.groupby("lever")["cost"].sum().to_dict())
    assert set(levers.index) == set(shares["lever"])


def test_an_action_on_a_top_churn_driver_is_offered_to_the_retention_groups():
    cfg = Strategy.model_validate({
        "groups": [{"name": "risk", "objective": "longer", "when": "churn_probability > 0.5"},
                   {"name": "big", "objective": "deeper", "when": "clv > 100"}],
        "actions": [{"name": "price review", "groups": [], "cost_per_customer": 1, "uplift": 0.1,
                     "applies_to": "value_at_risk", "lever": "price_fairness"},
                    {"name": "other", "groups": ["big"], "cost_per_customer": 1, "uplift": 0.1}]})
    drivers = pd.DataFrame({"driver": ["price_fairness", "tenure", "complaints", "region", "x"],
                            "method": "permutation (AUC drop)", "importance": [0.09, 0.05, 0.04, 0.01, 0.001]})
    new, notes = strategy.with_levers(cfg, drivers)
    assert new.actions[0].groups == ["risk"] and len(notes) == 1 and "price review" in notes[0]
    weak = drivers.assign(importance=[0.0001, 0.05, 0.04, 0.03, 0.02])  # price fairness is not a top driver
    assert strategy.with_levers(cfg, weak)[0].actions[0].groups == []


# --------------------------------------------------------------------------- 3. customers with no observation time
def bgnbd_book(seed: int, n: int, end_day: int, extra_first_days: list[int]) -> list[dict]:
    """A BG/NBD-like purchase book with daily acquisition over two years, plus one customer first seen on each of
    `extra_first_days` (and never again)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2022-01-01")
    rows = []
    for c in range(n):
        d = int(rng.integers(0, end_day - 30))
        lam, p = rng.gamma(0.8, 1 / 25), rng.beta(1, 5)
        while d <= end_day:
            rows.append({"customer": f"c{c:04d}", "date": str((start + pd.Timedelta(days=d)).date()),
                         "amount": f"{rng.gamma(3, 15):.2f}"})
            if rng.random() < p:
                break
            d += 1 + int(rng.exponential(1 / lam))
    for i, d in enumerate(extra_first_days):
        rows.append({"customer": f"new{i}", "date": str((start + pd.Timedelta(days=d)).date()), "amount": "25.00"})
    return rows


def test_customers_first_seen_on_a_cut_off_day_are_left_out_of_the_fits_and_scored(tmp_path):
    from tests.conftest import write_study

    end_day, h = 729, 120
    start = pd.Timestamp("2022-01-01")
    cal_day = 540
    cutoffs = [end_day, cal_day, end_day - h, end_day - 2 * h]  # observation end, calibration end, churn cutoffs
    rows = bgnbd_book(3, 500, end_day, cutoffs)
    params = write_study(tmp_path, rows, name="t0", extra={
        "rfm": {"calibration_end": str((start + pd.Timedelta(days=cal_day)).date()),
                "holdout_end": str((start + pd.Timedelta(days=end_day)).date()), "frequency": "days"},
        "clv": {"bootstrap": 0, "compare_paretonbd": True}, "drivers": {"churn_days": h, "bootstrap": 0},
        "cleaning": {"duplicates": {"enabled": False}, "outliers": {"enabled": False}}})
    study, _ = run_stages(params, tmp_path / "run", ("cleaning", "rfm", "clv", "drivers"))
    m = json.loads((tmp_path / "run" / "clv_model.json").read_text())
    assert m["used_for_customer_clv"] == "bgnbd" and m["formula_fallback"] is None
    assert m["models"]["bgnbd"]["usable"] and m["models"]["paretonbd"]["usable"]
    assert m["models"]["bgnbd"]["left_out_no_observation_time"] == 1  # first seen on the observation end
    assert m["holdout"] is not None  # the calibration fit had one too (first seen on the calibration end)
    assert m["holdout"]["calibration_fit"]["bgnbd"]["left_out_no_observation_time"] >= 1
    clv = io.by_customer(io.read_stage(tmp_path / "run", "clv.parquet"))
    assert clv.loc["new0", "expected_purchases"] > 0 and np.isfinite(clv.loc["new0", "clv"])  # scored
    risk = json.loads((tmp_path / "run" / "drivers.json").read_text())["churn_risk"]
    assert np.isfinite(risk["auc_purchase_model"])  # the baseline fits at the churn cutoffs too


# --------------------------------------------------------------------------- 4. potential from live evidence
def test_the_spend_trend_compares_like_with_like():
    from cvlib.analysis.value_index import spend_trend

    d = lambda n: pd.Timestamp("2023-01-01") + pd.Timedelta(days=n)  # noqa: E731
    tx = pd.DataFrame({"customer_id": ["small", "big", "steady", "steady", "grower", "grower", "new", "edge", "edge"],
                       "date": [d(10), d(10), d(20), d(300), d(30), d(330), d(300), d(0), d(364)],
                       "amount": [10.0, 100.0, 50.0, 50.0, 10.0, 90.0, 40.0, 1.0, 1.0]})
    t = spend_trend(tx)
    assert t["small"] == t["big"] == -1.0  # lapsed one-timers alike, whatever they spent
    assert t["grower"] > 0 and np.isnan(t["new"])  # first seen after the midpoint: no earlier rate
    assert abs(t["steady"]) < 0.1  # about the same spend per day of each half they were there for


def test_the_potential_cells_are_not_lapsed_one_timers(tmp_path):
    """A book with many small one-time buyers who lapsed long ago beside active repeat buyers: 'Develop' and the
    'growth potential' group hold under 10% lapsed one-timers (before, a $10 one-timer outranked a $100 one on
    potential and recency was not in the score)."""
    from tests.conftest import write_study

    rng = np.random.default_rng(8)
    start = pd.Timestamp("2022-01-01")
    rows = []
    for c in range(300):  # lapsed small one-timers
        rows.append({"customer": f"once{c}", "date": str((start + pd.Timedelta(days=int(rng.integers(0, 200)))).date()),
                     "amount": f"{rng.uniform(5, 15):.2f}"})
    for c in range(300):  # active repeat buyers, some growing
        grow = rng.random() < 0.4
        for d in np.sort(rng.integers(0, 720, int(rng.integers(2, 9)))):
            amt = rng.gamma(3, 20) * (1 + 2 * grow * d / 720)
            rows.append({"customer": f"rep{c}", "date": str((start + pd.Timedelta(days=int(d))).date()),
                         "amount": f"{amt:.2f}"})
        rows.append({"customer": f"rep{c}", "date": str((start + pd.Timedelta(days=int(rng.integers(650, 729)))).date()),
                     "amount": "30.00"})
    params = write_study(tmp_path, rows, name="lapsed", extra={
        "clv": {"bootstrap": 0, "compare_paretonbd": False}, "drivers": {"bootstrap": 0, "churn_days": 180},
        "value": {"indicators": [{"column": "revenue", "group": "current"}, {"column": "frequency", "group": "current"},
                                 {"column": "clv", "group": "potential"}, {"column": "spend_trend", "group": "potential"}],
                  "weights": {"method": "entropy"}}})
    study, _ = run_stages(params, tmp_path / "run", ("cleaning", "rfm", "clv", "value", "drivers", "strategy"))
    value = io.by_customer(io.read_stage(tmp_path / "run", "value.parquet"))
    rfm = io.by_customer(io.read_stage(tmp_path / "run", "rfm.parquet"))
    lapsed_once = (rfm["frequency"] == 1) & (rfm["recency"] > 180)
    develop = value.index[value["value_cell"] == "Develop"]
    assert len(develop) and lapsed_once.reindex(develop).mean() < 0.10
    groups = io.by_customer(io.read_stage(tmp_path / "run", "strategy_groups.parquet"))
    growth = groups.index[groups["group"] == "growth potential"]
    assert len(growth) and lapsed_once.reindex(growth).mean() < 0.10


# --------------------------------------------------------------------------- 5. churn risk against recency
def test_the_churn_ranking_is_the_best_among_live_customers_and_never_a_worse_one():
    from cvlib.analysis import churn

    rng = np.random.default_rng(1)
    n = 4000
    recency = rng.uniform(0, 400, n)
    y = rng.random(n) < 1 / (1 + np.exp(-(recency - 200) / 40))  # churn follows recency alone
    active = recency <= 180
    noisy = recency + rng.normal(0, 150, n)  # a 'classifier' that is recency plus noise
    bench = churn.benchmark_table(y, active, {"classifier": noisy, "purchase model": rng.random(n), "recency": recency})
    assert churn.choose_ranking(bench) == "recency"
    b = bench.set_index("ranking")
    assert b.loc["recency", "auc_active"] > b.loc["classifier", "auc_active"] > b.loc["purchase model", "auc_active"]
    assert b.loc["recency", "active_customers"] == active.sum()
    better = churn.benchmark_table(y, active, {"classifier": recency + 0.0, "purchase model": noisy,
                                               "recency": noisy})
    assert churn.choose_ranking(better) == "classifier"
    p = churn.recency_probability(recency, y, np.array([0.0, 200.0, 400.0]))
    assert p[0] < p[1] < p[2] and 0 <= p[0] and p[2] <= 1  # more days since the last purchase, more risk


def test_the_churn_risk_group_is_defined_on_value_before_risk():
    """Ten big past spenders at high risk: a high churn probability pulls their CLV into the lowest tier, so the old
    rule (clv_tier != 'Low') found nobody; on past value they are the churn-risk group."""
    from cvlib.params import Clv

    n = 100
    yearly = np.r_[np.full(10, 5000.0), np.linspace(100, 1000, n - 10)]
    d = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "monetary": yearly, "tenure": 365.0,
                      "churn_probability": np.r_[np.full(10, 0.9), np.full(n - 10, 0.1)],
                      "within_cycle": False, "churned": False, "departed": False, "value_cell": "x", "trend": 0.0})
    d["clv"] = d["monetary"] * (1 - d["churn_probability"]) * np.r_[np.full(10, 0.01), np.ones(n - 10)]
    from cvlib.analysis.rfm import value_tiers

    cfg = Clv()
    d["clv_tier"] = np.asarray(value_tiers(d["clv"], cfg.tiers.cuts, cfg.tiers.names), dtype=object)
    d["past_value_tier"] = strategy.past_value_tiers(d["monetary"], d["departed"], cfg)
    assert (d["clv_tier"].iloc[:10] == "Low").all()  # risk has already taken their CLV down
    g = strategy.assign_groups(d, Strategy())
    assert (g["group"].iloc[:10] == "churn risk").all() and (g["group"].iloc[10:] != "churn risk").all()


# --------------------------------------------------------------------------- 7. labels follow the data
def test_importance_performance_reads_performance_on_the_rating_scale():
    from cvlib.analysis.drivers import ipa

    imp = pd.Series({"responsiveness": 0.09, "price_fairness": 0.01, "reporting": 0.02, "creative": 0.08})
    close = pd.Series({"responsiveness": 3.47, "price_fairness": 3.51, "reporting": 3.49, "creative": 3.50})
    q = ipa(imp, close, (1, 5)).set_index("driver")["quadrant"]
    assert "possible overkill" not in set(q)  # 3.51 of 5 is not good performance because the others are 3.47
    assert q["responsiveness"] == "concentrate here" and q["price_fairness"] == "low priority"
    great = close.copy()
    great["price_fairness"] = 4.7
    assert ipa(imp, great, (1, 5)).set_index("driver").loc["price_fairness", "quadrant"] == "possible overkill"


def test_a_cluster_name_never_contradicts_its_members():
    from cvlib.analysis.rfm import _label

    z = pd.Series({"recency": -1.2, "frequency": 1.0, "monetary": 1.1})  # more recent than most, on average
    assert _label(z, pd.Series({"recency": 30.0, "frequency": 4.0})).startswith("recent · frequent")
    assert _label(z, pd.Series({"recency": 340.0, "frequency": 4.0})).startswith("mid recency")
    assert _label(z, pd.Series({"recency": 400.0, "frequency": 1.0})).startswith("lapsed · rare")


def test_a_lost_client_is_lapsed_never_in_decline_or_maturity(contract_book):
    study, run, res = contract_book
    j = io.read_stage(run, "journey.parquet")
    assert j["lost"].any() and (j.loc[j["lost"], "lifecycle_stage"] == "lapsed").all()


def test_findings_name_the_lapsing_valuable_segments_whatever_they_are_called():
    """The run summary names the segments of customers who bought often but not lately from the study's grid
    (recency score at most 2, frequency from 3), so a study with its own segment names (Chinese, a client's) gets
    the same findings as the default grid; segments of other scores are never named."""
    from cvlib.params import DEFAULT_SEGMENTS
    from cvlib.rules import lapsing_valuable_segments

    assert lapsing_valuable_segments(DEFAULT_SEGMENTS) == ["At Risk", "Can't Lose Them"]
    zh = [{"name": n, "r": s["r"], "f": s["f"]} for n, s in zip(
        ["冠军客户", "忠诚客户", "潜在忠诚客户", "新客户", "有潜力客户", "需要关注", "即将沉睡", "不能失去", "有流失风险",
         "已流失", "休眠客户"], DEFAULT_SEGMENTS)]
    assert lapsing_valuable_segments(zh) == ["有流失风险", "不能失去"]
    assert lapsing_valuable_segments([{"name": "sleepers", "r": [1, 2], "f": [1, 2]},
                                      {"name": "fans", "r": [4, 5], "f": [4, 5]}]) == []
