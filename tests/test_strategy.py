"""Strategy: group rules, budget allocation against brute force and the even split, target lists."""
from __future__ import annotations

import re
from itertools import product

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvlib import ParamError
from cvlib.analysis import allocation, strategy
from cvlib.params import Strategy


def frame(n_by_group: dict[str, int], clv: dict[str, float] | None = None, p: float = 0.5) -> pd.DataFrame:
    rows = []
    for g, n in n_by_group.items():
        for i in range(n):
            v = (clv or {}).get(g, 100.0)
            rows.append({"customer_id": f"{g}-{i}", "group": g, "clv": v, "churn_probability": p,
                         "value_at_risk": v * p, "segment": "Loyal", "monthly_profit": v / 12})
    return pd.DataFrame(rows)


def test_every_customer_in_exactly_one_group_first_rule_wins():
    df = pd.DataFrame({"customer_id": list("abcde"), "clv": [500, 50, 5, 300, 1], "churn_probability": [0.9, 0.1, 0.9, 0.2, 0.0],
                       "clv_tier": ["High", "Medium", "Low", "High", "Low"]})
    cfg = Strategy.model_validate({"groups": [
        {"name": "risk", "objective": "longer", "when": "churn_probability >= 0.5 and clv_tier != 'Low'"},
        {"name": "top", "objective": "longer", "when": "clv_tier == 'High'"},
        {"name": "mid", "objective": "deeper", "when": "clv_tier == 'Medium'"}], "default_group": "rest",
        "actions": [{"name": "a", "groups": ["rest"], "cost_per_customer": 1, "uplift": 0.1}]})
    out = strategy.assign_groups(df, cfg)
    assert out["group"].tolist() == ["risk", "mid", "rest", "top", "rest"]
    assert out["objective"].tolist() == ["longer", "deeper", "wider", "longer", "wider"]
    bad = Strategy.model_validate({"groups": [{"name": "x", "objective": "wider", "when": "no_such_column > 1"}],
                                   "actions": [{"name": "a", "groups": ["x"], "cost_per_customer": 1, "uplift": 0.1}]})
    with pytest.raises(ParamError, match="rule 'x'"):
        strategy.assign_groups(df, bad)


def test_action_for_unknown_group_is_a_parameter_error():
    with pytest.raises(ValueError, match="unknown group"):
        Strategy.model_validate({"actions": [{"name": "a", "groups": ["nobody"], "cost_per_customer": 1, "uplift": 0.1}]})


def small_cfg(budget: float, uplifts=(0.2, 0.1, 0.05), share: float = 1.0) -> Strategy:
    """Three actions whose revenue effects last 12 months (a gain of uplift x CLV for a frame's 12-month CLV); no
    action held to a share of the budget unless `share` says so."""
    return Strategy.model_validate({
        "groups": [{"name": "g1", "objective": "longer", "when": "clv > 150"}], "default_group": "g2", "budget": budget,
        "max_action_share": share,
        "actions": [{"name": "a", "groups": ["g1"], "cost_per_customer": 10, "uplift": uplifts[0]},
                    {"name": "b", "groups": ["g1", "g2"], "cost_per_customer": 4, "uplift": uplifts[1]},
                    {"name": "c", "groups": ["g2"], "cost_per_customer": 1, "uplift": uplifts[2]}]})


def brute_force(df: pd.DataFrame, cfg: Strategy) -> float:
    """Best net value over every integer allocation (each customer at most one action)."""
    opts = [(g, a) for a in cfg.actions for g in a.groups]
    sizes = df.groupby("group").size()
    best = 0.0
    for counts in product(*[range(int(sizes[g]) + 1) for g, _ in opts]):
        used = {}
        cost = value = 0.0
        for (g, a), k in zip(opts, counts):
            used[g] = used.get(g, 0) + k
            cost += k * a.cost_per_customer
            value += k * a.uplift * float(df.loc[df["group"] == g, "clv"].iloc[0])
        if cost <= cfg.budget and all(used[g] <= sizes[g] for g in used):
            best = max(best, value - cost)
    return best


@pytest.mark.parametrize("budget", [0.5, 15, 37, 60, 500])
def test_allocation_matches_brute_force_and_respects_budget(budget):
    df = frame({"g1": 3, "g2": 4}, {"g1": 200.0, "g2": 60.0})
    cfg = small_cfg(budget)
    alloc = allocation.allocate(df, cfg)
    assert alloc.total_cost <= budget + 1e-9
    assert alloc.net_value == pytest.approx(brute_force(df, cfg), abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(budget=st.floats(0.01, 2000), n1=st.integers(1, 30), n2=st.integers(1, 30), clv1=st.floats(1, 1000),
       clv2=st.floats(1, 1000))
def test_allocation_never_exceeds_budget_or_group_sizes(budget, n1, n2, clv1, clv2):
    df = frame({"g1": n1, "g2": n2}, {"g1": clv1, "g2": clv2})
    alloc = allocation.allocate(df, small_cfg(budget))
    assert alloc.total_cost <= budget + 1e-6
    per_group = alloc.plan.groupby("group")["customers_targeted"].sum()
    assert per_group.get("g1", 0) <= n1 and per_group.get("g2", 0) <= n2
    assert alloc.net_value >= -1e-9  # never funds a plan that loses money


def test_optimised_beats_even_split_when_uplifts_differ():
    df = frame({"g1": 50, "g2": 200}, {"g1": 300.0, "g2": 40.0})
    cfg = small_cfg(600, uplifts=(0.5, 0.01, 0.3))
    opt, even = allocation.allocate(df, cfg), allocation.even_split(df, cfg)
    assert opt.net_value > even.net_value and even.total_cost <= 600 + 1e-9


def test_target_lists_hold_exactly_the_chosen_customers():
    rng = np.random.default_rng(0)
    df = frame({"g1": 40, "g2": 60})
    df["clv"] = rng.uniform(50, 400, len(df))
    df["monthly_profit"] = df["clv"] / 12
    df["value_at_risk"] = df["clv"] * df["churn_probability"]
    cfg = small_cfg(300)
    alloc = allocation.allocate(df, cfg)
    targets = strategy.target_list(df, alloc, cfg, "EUR")
    assert targets["customer_id"].is_unique  # one action per customer
    counts = targets.groupby(["group", "action"]).size()
    for _, row in alloc.plan.iterrows():
        assert counts.get((row["group"], row["action"]), 0) == row["customers_targeted"]
    merged = targets.merge(df[["customer_id", "group"]], on="customer_id", suffixes=("", "_true"))
    assert (merged["group"] == merged["group_true"]).all()
    assert set(targets.columns) >= {"customer_id", "group", "action", "clv", "churn_probability", "reason"}
    # within a (group, action) the chosen ones have the highest gains among those not taken by another action
    a_rows = targets[targets["action"] == "a"]
    if len(a_rows):
        assert a_rows["clv"].min() >= df[(df["group"] == "g1") & ~df["customer_id"].isin(targets["customer_id"])]["clv"].max() - 1e-9


def test_write_targets_csv_and_workbook(tmp_path):
    t = pd.DataFrame({"customer_id": ["007", "008"], "group": ["g", "g"], "action": ["win-back: email/call", "x"],
                      "clv": [1.0, 2.0], "churn_probability": [0.1, 0.2], "expected_gain": [1, 1], "reason": ["r", "r"]})
    csv, xlsx = strategy.write_targets(t, tmp_path)
    assert pd.read_csv(csv, dtype=str)["customer_id"].tolist() == ["007", "008"]  # real ids, zeros kept
    book = pd.read_excel(xlsx, sheet_name=None, dtype=str)
    assert len(book) == 2 and sum(len(s) for s in book.values()) == 2


def brute_force_per_customer(df: pd.DataFrame, cfg: Strategy) -> float:
    """Best net value over every assignment of at most one action to each customer (gains differ per customer),
    each action spending at most its share of the budget."""
    caps = {a.name: (a.max_budget_share or cfg.max_action_share) * cfg.budget for a in cfg.actions}
    group_cap = cfg.max_group_share * cfg.budget
    options = []
    for _, c in df.iterrows():
        opts = [(0.0, 0.0, None, None)]
        for a in cfg.actions:
            if c["group"] in a.groups:
                base = c["clv"] if a.applies_to == "clv" else c["value_at_risk"]
                opts.append((a.uplift * max(base, 0.0), a.cost_per_customer, a.name, c["group"]))
        options.append(opts)
    best = 0.0
    for combo in product(*options):
        cost = sum(o[1] for o in combo)
        spent: dict = {}
        by_group: dict = {}
        for o in combo:
            spent[o[2]] = spent.get(o[2], 0.0) + o[1]
            by_group[o[3]] = by_group.get(o[3], 0.0) + o[1]
        if cost <= cfg.budget + 1e-9 and all(v <= caps[k] + 1e-9 for k, v in spent.items() if k) and \
                all(v <= group_cap + 1e-9 for k, v in by_group.items() if k):
            best = max(best, sum(o[0] for o in combo) - cost)
    return best


def test_no_action_or_group_takes_more_than_its_share_of_the_budget_and_the_capped_plan_is_the_optimum():
    rng = np.random.default_rng(3)
    for trial in range(60):
        df, cfg = random_instance(rng, share=float(rng.choice([0.3, 0.5, 0.7])))
        if trial % 2:  # a limit per group too
            cfg = cfg.model_copy(update={"max_group_share": float(rng.choice([0.4, 0.6]))})
        exact, greedy = allocation.allocate(df, cfg), allocation.allocate(df, cfg, max_binaries=0)
        best = brute_force_per_customer(df, cfg)
        assert exact_net(df, cfg, exact) == pytest.approx(best, abs=1e-6), trial
        for alloc in (exact, greedy):
            spent = alloc.chosen.groupby("action")["cost"].sum()
            assert (spent <= cfg.max_action_share * cfg.budget + 1e-9).all(), trial
            by_group = alloc.chosen.groupby("group")["cost"].sum()
            assert (by_group <= cfg.max_group_share * cfg.budget + 1e-9).all(), trial
            assert alloc.total_cost <= cfg.budget + 1e-9
            assert exact_net(df, cfg, alloc) <= best + 1e-6
    # one profitable action, default share: half the budget, not all of it, unless the action's own limit says so
    df = frame({"g1": 50, "g2": 50}, {"g1": 1000.0, "g2": 1.0})
    one = Strategy.model_validate({"groups": [{"name": "g1", "objective": "longer", "when": "clv > 150"}],
                                   "default_group": "g2", "budget": 100,
                                   "actions": [{"name": "a", "groups": ["g1"], "cost_per_customer": 10, "uplift": 0.2}]})
    for mb in (3000, 0):
        assert allocation.allocate(df, one, max_binaries=mb).total_cost == pytest.approx(50)
        own = one.model_copy(update={"actions": [one.actions[0].model_copy(update={"max_budget_share": 1.0})]})
        assert allocation.allocate(df, own, max_binaries=mb).total_cost == pytest.approx(100)


def random_instance(rng: np.random.Generator, share: float = 1.0) -> tuple[pd.DataFrame, Strategy]:
    n1, n2 = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    df = frame({"g1": n1, "g2": n2})
    df["clv"] = rng.uniform(0, 300, len(df)).round(2)
    df["monthly_profit"] = df["clv"] / 12
    df["churn_probability"] = rng.uniform(0, 1, len(df)).round(3)
    df["value_at_risk"] = df["clv"] * df["churn_probability"]
    cfg = Strategy.model_validate({
        "groups": [{"name": "g1", "objective": "longer", "when": "clv > 0"}], "default_group": "g2",
        "budget": float(rng.uniform(5, 120)), "max_action_share": share,
        "actions": [{"name": "a", "groups": ["g1"], "cost_per_customer": float(rng.uniform(1, 30)),
                     "uplift": float(rng.uniform(0.01, 0.5)), "applies_to": "value_at_risk"},
                    {"name": "b", "groups": ["g1", "g2"], "cost_per_customer": float(rng.uniform(1, 30)),
                     "uplift": float(rng.uniform(0.01, 0.3))},
                    {"name": "c", "groups": ["g1", "g2"], "cost_per_customer": float(rng.uniform(1, 30)),
                     "uplift": float(rng.uniform(0.01, 0.3))}]})
    return df, cfg


def exact_net(df: pd.DataFrame, cfg: Strategy, alloc) -> float:
    """The chosen pairs' net value from the unrounded gains (the plan reports each gain to the cent, as listed)."""
    actions = {a.name: a for a in cfg.actions}
    row = df.set_index("customer_id").loc[alloc.chosen["customer_id"]]
    gain = [float(allocation.gains(row.iloc[[i]], actions[a]).iloc[0]) for i, a in enumerate(alloc.chosen["action"])]
    return float(np.sum(gain) - alloc.chosen["cost"].sum())


def test_allocation_is_the_brute_force_optimum_on_heterogeneous_instances_and_delivers_what_it_reports():
    rng = np.random.default_rng(11)
    for trial in range(60):
        df, cfg = random_instance(rng)
        alloc = allocation.allocate(df, cfg)
        best = brute_force_per_customer(df, cfg)
        assert exact_net(df, cfg, alloc) == pytest.approx(best, abs=1e-6), trial  # the optimal choice
        assert alloc.net_value == pytest.approx(best, abs=0.005 * len(alloc.chosen) + 1e-9)  # reported to the cent
        assert alloc.total_cost <= cfg.budget + 1e-9
        targets = strategy.target_list(df, alloc, cfg, "EUR")
        assert targets["customer_id"].is_unique
        delivered = float((targets["expected_gain"] - targets["cost"]).sum())
        assert delivered == pytest.approx(alloc.net_value, abs=1e-9)  # the list delivers what the plan reports
        assert float(targets["expected_gain"].sum()) == pytest.approx(alloc.total_value, abs=1e-9)
        assert alloc.plan["net_value"].sum() == pytest.approx(alloc.net_value, abs=1e-9)
        even = allocation.even_split(df, cfg)
        assert exact_net(df, cfg, even) <= best + 1e-9 and even.total_cost <= cfg.budget + 1e-9


def test_large_instances_are_solved_greedily_within_the_lp_bound_never_counting_a_customer_twice():
    rng = np.random.default_rng(3)
    df = frame({"g1": 300, "g2": 500})
    df["clv"] = rng.lognormal(4, 1, len(df))
    df["monthly_profit"] = df["clv"] / 12
    df["value_at_risk"] = df["clv"] * rng.uniform(0, 1, len(df))
    cfg = small_cfg(2000, uplifts=(0.2, 0.15, 0.1))
    exact = allocation.allocate(df, cfg, max_binaries=10_000)
    greedy = allocation.allocate(df, cfg, max_binaries=60)
    assert exact.method == "exact" and greedy.method == "greedy" and "LP bound" in greedy.status
    gap, bound = (float(x.replace(",", "")) for x in re.search(r"within ([\d,.]+) .*LP bound ([\d,.]+)",
                                                                 greedy.status).groups())
    assert gap == round(bound - greedy.net_value, 2)  # the gap is to the plan as reported
    for a in (exact, greedy):
        t = strategy.target_list(df, a, cfg, "EUR")
        assert t["customer_id"].is_unique and a.total_cost <= 2000 + 1e-9
        assert float((t["expected_gain"] - t["cost"]).sum()) == pytest.approx(a.net_value, abs=1e-6)
    assert exact.net_value - 1e-6 <= greedy.net_value + df["clv"].max() * 0.2 and greedy.net_value <= exact.net_value + 1e-6
    assert greedy.net_value >= 0.995 * exact.net_value


def test_greedy_is_near_the_brute_force_optimum_on_small_instances():
    rng = np.random.default_rng(5)
    for trial in range(40):
        df, cfg = random_instance(rng)
        best = brute_force_per_customer(df, cfg)
        g = allocation.allocate(df, cfg, max_binaries=0)
        assert g.total_cost <= cfg.budget + 1e-9 and exact_net(df, cfg, g) <= best + 1e-6
        bound = float(g.status.split("LP bound ")[1].replace(",", "")) if "LP bound" in g.status else g.net_value
        assert bound >= best - 1e-2  # the LP bound is an upper bound on the optimum
        t = strategy.target_list(df, g, cfg, "EUR")
        assert float((t["expected_gain"] - t["cost"]).sum()) == pytest.approx(g.net_value, abs=1e-9)


def greedy_one_by_one(cand: pd.DataFrame, budget: float) -> tuple[list, float]:
    """The LP-relaxation greedy written plainly, one customer and one increment at a time (the reference the
    vectorised `allocation._greedy` must equal exactly: same picks, same order, same bound to the last bit)."""
    c = cand.assign(net=cand["expected_gain"] - cand["cost"]).sort_values(["row", "cost", "net"],
                                                                          ascending=[True, True, False])
    inc = []
    for row, opts in c.groupby("row", sort=True):
        hull = []
        for idx, cost, net in zip(opts.index, opts["cost"], opts["net"]):
            if hull and net <= hull[-1][1]:
                continue
            while hull:
                c0, n0 = (hull[-2][0], hull[-2][1]) if len(hull) > 1 else (0.0, 0.0)
                c1, n1 = hull[-1][0], hull[-1][1]
                if (n1 - n0) * (cost - c0) <= (net - n0) * (c1 - c0):
                    hull.pop()
                else:
                    break
            hull.append((cost, net, idx))
        pc, pn = 0.0, 0.0
        for seq, (hc, hn, hi) in enumerate(hull):
            inc.append((row, hc - pc, hn - pn, hi, seq))
            pc, pn = hc, hn
    inc = pd.DataFrame(inc, columns=["row", "dcost", "dnet", "idx", "seq"])
    inc["eff"] = [dn / dc if dc > 0 else np.inf for dc, dn in zip(inc["dcost"], inc["dnet"])]
    inc = inc.sort_values(["eff", "seq"], ascending=[False, True], kind="stable")
    left, bound, fractional, level, chosen = float(budget), 0.0, False, {}, {}
    for r, dc, dn, i, q in zip(inc["row"], inc["dcost"], inc["dnet"], inc["idx"], inc["seq"]):
        if level.get(r, -1) != q - 1:
            continue
        if dc <= left + 1e-9:
            left -= dc
            level[r], chosen[r] = q, i
            if not fractional:
                bound += dn
        elif not fractional:
            fractional = True
            bound += dn * max(left, 0.0) / dc
    return list(chosen.values()), bound + 0.0


def test_vectorised_greedy_equals_the_one_by_one_walk_exactly():
    rng = np.random.default_rng(11)
    checked = 0
    for trial in range(400):
        n_cust, n_opt = int(rng.integers(1, 30)), int(rng.integers(1, 6))
        # ties on purpose: repeated costs (and free actions), gains on a coarse grid
        costs = rng.choice([0.0, 1.0, 2.5, 5.0, 10.0, 10.0, 20.0], n_opt)
        parts = []
        for o in range(n_opt):
            rows = rng.choice(n_cust, int(rng.integers(1, n_cust + 1)), replace=False)
            g = rng.integers(1, 30, len(rows)).astype(float) if trial % 2 else np.round(rng.lognormal(2, 1, len(rows)), 6)
            parts.append(pd.DataFrame({"row": rows, "option": o, "expected_gain": g, "cost": costs[o]}))
        cand = pd.concat(parts, ignore_index=True)
        cand = cand[cand["expected_gain"] > cand["cost"]].reset_index(drop=True)
        if cand.empty:
            continue
        budget = float(rng.choice([0, 1, 3, 7, 15, 40, 100, 1e6]))
        picks, bound = allocation._greedy(cand, budget)
        ref, ref_bound = greedy_one_by_one(cand, budget)
        assert picks.index.tolist() == ref and bound == ref_bound, (trial, budget)
        assert float(picks["cost"].sum()) <= budget + 1e-6 and picks["row"].is_unique
        checked += 1
    assert checked > 300


def test_playbook_carries_each_groups_journey_and_a_strategy_per_lifecycle_stage():
    df = frame({"churn risk": 4, "low value": 6}).assign(
        monetary=100.0, objective="longer",
        overdue=[True, True, True, False] + [False] * 6,
        cycle_days=[30.0, 30.0, 60.0, 90.0] + [200.0] * 6,
        lifecycle_stage=["decline", "decline", "lapsed", "maturity"] + ["lapsed"] * 5 + ["acquisition"],
        suggested_product=["analytics", "analytics", "PR", None] + [None] * 6)
    cfg = Strategy.model_validate({"groups": [{"name": "churn risk", "objective": "longer", "when": "overdue"}],
                                   "actions": [{"name": "a", "groups": ["churn risk"], "cost_per_customer": 1,
                                                "uplift": 0.1}]})
    pb = strategy.playbook(df, cfg).set_index("group")
    assert pb.loc["churn risk", "share_overdue"] == 0.75 and pb.loc["churn risk", "median_cycle_days"] == 45.0
    assert pb.loc["churn risk", "main_lifecycle_stage"] == "decline"
    assert pb.loc["churn risk", "top_suggested_product"] == "analytics"
    assert pb.loc["low value", "top_suggested_product"] is None and pb.loc["low value", "main_lifecycle_stage"] == "lapsed"
    lc = strategy.lifecycle_playbook(df).set_index("lifecycle_stage")
    assert list(lc.index) == ["acquisition", "maturity", "decline", "lapsed"]  # the stages' own order
    assert lc.loc["lapsed", "customers"] == 6 and lc.loc["lapsed", "main_group"] == "low value"
    assert lc.loc["decline", "share_overdue"] == 1.0 and lc["strategy"].str.len().gt(20).all()
    assert strategy.lifecycle_playbook(df.assign(lifecycle_stage="unknown")).empty  # no journey stage


def test_exported_target_list_sums_to_the_plan_to_the_cent(tmp_path):
    """The client sums the exported targets.csv (amounts to the cent): its columns must give the plan's figures,
    however many customers (rounding each row after summing would drift by cents over thousands of rows)."""
    rng = np.random.default_rng(8)
    df = frame({"g1": 3000, "g2": 2000})
    df["clv"] = rng.lognormal(3, 1, len(df))  # every gain with many decimals
    df["monthly_profit"] = df["clv"] / 12
    df["value_at_risk"] = df["clv"] * rng.uniform(0, 1, len(df))
    cfg = small_cfg(4000, uplifts=(0.137, 0.0911, 0.0533))
    for alloc in (allocation.allocate(df, cfg), allocation.even_split(df, cfg)):
        csv, _ = strategy.write_targets(strategy.target_list(df, alloc, cfg, "EUR"), tmp_path)
        listed = pd.read_csv(csv)
        assert len(listed) > 1000
        assert round(float(listed["expected_gain"].sum()), 2) == round(alloc.total_value, 2)
        assert round(float(listed["cost"].sum()), 2) == round(alloc.total_cost, 2)
        plan = alloc.plan
        assert round(float(plan["expected_incremental_value"].sum()), 2) == round(alloc.total_value, 2)
