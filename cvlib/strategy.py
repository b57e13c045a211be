"""Strategy: strategic groups, a playbook, a budget allocation with expected return, and CRM target lists.

Expected incremental value of an action for a customer = uplift x the value it acts on (predicted CLV, or
value at risk = CLV x churn probability). The allocation maximises expected net value (incremental value
less the actions' cost) under the budget, as an integer program over (group, action) counts (scipy's milp);
within a group, the customers with the highest expected gain are targeted first.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib import io
from cvlib.errors import ParamError
from cvlib.params import Action, Strategy, Study


# --------------------------------------------------------------------------- the customer table
def customer_table(rfm: pd.DataFrame, clv: pd.DataFrame, value: pd.DataFrame | None = None,
                   risk: pd.DataFrame | None = None, tx: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One row per customer with what the group rules can use: RFM, CLV, churn probability, value cell, trend."""
    notes = []
    d = rfm.assign(customer_id=rfm["customer_id"].astype(str)).set_index("customer_id")
    c = clv.assign(customer_id=clv["customer_id"].astype(str)).set_index("customer_id")
    d = d.join(c[[k for k in c.columns if k not in d.columns]], how="left")
    d["clv_tier"] = d["clv_tier"].astype(str)
    d["segment"] = d["segment"].astype(str)
    if risk is not None and risk["churn_probability"].notna().any():
        r = risk.assign(customer_id=risk["customer_id"].astype(str)).set_index("customer_id")["churn_probability"]
        d["churn_probability"] = r.reindex(d.index).fillna(1 - d["p_alive"].fillna(0.5))
    else:
        d["churn_probability"] = (1 - d["p_alive"]).fillna(0.5)
        notes.append("No churn model from the drivers stage: churn probability is 1 - P(alive) from the CLV model.")
    if value is not None:
        v = value.assign(customer_id=value["customer_id"].astype(str)).set_index("customer_id")
        d = d.join(v[[k for k in ("value_cell", "profit", "value_score") if k in v.columns]], how="left")
    else:
        d["value_cell"] = "unknown"
        notes.append("No value assessment: the value matrix cell is 'unknown' for every customer.")
    if tx is not None:
        from cvlib.value import spend_trend

        d["trend"] = spend_trend(tx).reindex(d.index).fillna(0.0)
    else:
        d["trend"] = 0.0
    d["value_at_risk"] = d["clv"] * d["churn_probability"]
    return d.reset_index(), notes


def assign_groups(df: pd.DataFrame, cfg: Strategy) -> pd.DataFrame:
    """Every customer in exactly one group: the first rule that matches, else the default group."""
    group = pd.Series(pd.NA, index=df.index, dtype="object")
    objective = pd.Series(cfg.default_objective, index=df.index, dtype="object")
    for rule in cfg.groups:
        try:
            hit = df.eval(rule.when, engine="python")
        except Exception as exc:
            raise ParamError(f"strategy.groups: rule {rule.name!r} ({rule.when!r}) cannot be evaluated: {exc}. "
                             f"Columns: {', '.join(map(str, df.columns))}.") from None
        hit = pd.Series(hit, index=df.index).fillna(False).astype(bool) & group.isna()
        group[hit] = rule.name
        objective[hit] = rule.objective
    rest = group.isna()
    group[rest] = cfg.default_group
    return df.assign(group=group.astype(str), objective=objective)


OBJECTIVES = {"wider": "acquire look-alikes, win back the lapsed", "longer": "retain, extend the lifetime",
              "deeper": "grow share of wallet: cross-sell, upsell, new service lines"}


# --------------------------------------------------------------------------- economics
def gains(df: pd.DataFrame, action: Action, multiplier: float = 1.0) -> pd.Series:
    """Expected incremental value of the action for each customer."""
    base = df["clv"] if action.applies_to == "clv" else df["value_at_risk"]
    return (action.uplift * multiplier * base.clip(lower=0)).fillna(0.0)


def action_table(df: pd.DataFrame, cfg: Strategy, horizon_months: int, multiplier: float = 1.0) -> pd.DataFrame:
    """Per group and action: customers, cost, expected incremental value, ROI and payback if all are targeted."""
    rows = []
    for a in cfg.actions:
        for g in a.groups:
            sub = df[df["group"] == g]
            if sub.empty:
                continue
            gain = gains(sub, a, multiplier)
            cost = a.cost_per_customer * len(sub)
            value = float(gain.sum())
            rows.append({"group": g, "action": a.name, "customers": len(sub), "cost_per_customer": a.cost_per_customer,
                         "uplift": a.uplift * multiplier, "acts_on": a.applies_to, "cost": cost,
                         "expected_incremental_value": value, "roi": (value - cost) / cost if cost else np.nan,
                         "payback_months": cost / (value / horizon_months) if value > 0 else np.nan})
    return pd.DataFrame(rows)


@dataclass
class Allocation:
    plan: pd.DataFrame      # group, action, customers_targeted, cost, expected_incremental_value, net_value
    total_cost: float
    total_value: float
    net_value: float


def _options(df: pd.DataFrame, cfg: Strategy, multiplier: float) -> list[dict]:
    """For each (group, action): the customers' gains sorted high to low."""
    opts = []
    for a in cfg.actions:
        for g in a.groups:
            sub = df[df["group"] == g]
            if len(sub):
                gain = gains(sub, a, multiplier).sort_values(ascending=False)
                opts.append({"group": g, "action": a.name, "cost": a.cost_per_customer, "gains": gain})
    return opts


def allocate(df: pd.DataFrame, cfg: Strategy, budget: float | None = None, multiplier: float = 1.0,
             blocks: int = 10) -> Allocation:
    """Maximise expected net value (gain - cost) under the budget; each customer gets at most one action.

    Each (group, action)'s customers are cut into `blocks` blocks by expected gain (best first), and an
    integer program chooses how many customers of each block to target."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    budget = cfg.budget if budget is None else budget
    opts = _options(df, cfg, multiplier)
    if not opts:
        return Allocation(pd.DataFrame(columns=["group", "action", "customers_targeted", "cost",
                                                "expected_incremental_value", "net_value"]), 0.0, 0.0, 0.0)
    var_opt, var_gain, var_cap, var_cost, var_group = [], [], [], [], []
    for i, o in enumerate(opts):
        chunks = [c for c in np.array_split(o["gains"].to_numpy(), min(blocks, len(o["gains"]))) if len(c)]
        for ch in chunks:
            var_opt.append(i)
            var_gain.append(float(ch.mean()))
            var_cap.append(len(ch))
            var_cost.append(o["cost"])
            var_group.append(o["group"])
    gain, cap, cost = np.array(var_gain), np.array(var_cap, float), np.array(var_cost)
    n = len(gain)
    groups = sorted(set(var_group))
    rows = [cost]  # budget
    ub = [budget]
    for g in groups:  # at most one action per customer: a group's targets cannot exceed its size
        rows.append(np.array([1.0 if vg == g else 0.0 for vg in var_group]))
        ub.append(float((df["group"] == g).sum()))
    res = milp(c=-(gain - cost), constraints=LinearConstraint(np.vstack(rows), -np.inf, np.array(ub)),
               integrality=np.ones(n), bounds=Bounds(np.zeros(n), cap))
    x = np.round(res.x).astype(int) if res.x is not None else np.zeros(n, dtype=int)
    plan = []
    for i, o in enumerate(opts):
        idx = [k for k in range(n) if var_opt[k] == i]
        k_n = int(sum(x[k] for k in idx))
        value = float(sum(x[k] * gain[k] for k in idx))
        plan.append({"group": o["group"], "action": o["action"], "customers_targeted": k_n, "cost": k_n * o["cost"],
                     "expected_incremental_value": value, "net_value": value - k_n * o["cost"]})
    p = pd.DataFrame(plan)
    return Allocation(p, float(p["cost"].sum()), float(p["expected_incremental_value"].sum()),
                      float(p["net_value"].sum()))


def even_split(df: pd.DataFrame, cfg: Strategy, budget: float | None = None, multiplier: float = 1.0) -> Allocation:
    """The naive plan: the budget split evenly across every (group, action), best customers first."""
    budget = cfg.budget if budget is None else budget
    opts = _options(df, cfg, multiplier)
    share = budget / len(opts) if opts else 0.0
    used: dict[str, int] = {}
    plan = []
    for o in opts:
        size = int((df["group"] == o["group"]).sum())
        left = size - used.get(o["group"], 0)
        k_n = min(left, int(share // o["cost"]) if o["cost"] > 0 else left)
        used[o["group"]] = used.get(o["group"], 0) + k_n
        value = float(o["gains"].iloc[:k_n].sum())
        plan.append({"group": o["group"], "action": o["action"], "customers_targeted": k_n, "cost": k_n * o["cost"],
                     "expected_incremental_value": value, "net_value": value - k_n * o["cost"]})
    p = pd.DataFrame(plan)
    return Allocation(p, float(p["cost"].sum()), float(p["expected_incremental_value"].sum()),
                      float(p["net_value"].sum()))


def sensitivity(df: pd.DataFrame, cfg: Strategy) -> pd.DataFrame:
    """Optimised and even-split results when every uplift is scaled by each multiplier."""
    rows = []
    for m in cfg.sensitivity:
        opt, even = allocate(df, cfg, multiplier=m), even_split(df, cfg, multiplier=m)
        rows.append({"uplift_multiplier": m, "optimised_net_value": opt.net_value, "optimised_cost": opt.total_cost,
                     "even_split_net_value": even.net_value})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- outputs
def playbook(df: pd.DataFrame, cfg: Strategy) -> pd.DataFrame:
    """One row per group: size, revenue share, CLV, value at risk, objective, actions, channel, priority."""
    g = df.groupby("group").agg(customers=("customer_id", "size"), revenue=("monetary", "sum"),
                                total_clv=("clv", "sum"), mean_clv=("clv", "mean"),
                                value_at_risk=("value_at_risk", "sum"), objective=("objective", "first"))
    g["share_of_revenue"] = g["revenue"] / g["revenue"].sum()
    acts = {grp: [a for a in cfg.actions if grp in a.groups] for grp in g.index}
    g["aim"] = g["objective"].map(OBJECTIVES)
    g["actions"] = [", ".join(a.name for a in acts[grp]) or "none in the action library" for grp in g.index]
    g["channel"] = [", ".join(dict.fromkeys(a.channel for a in acts[grp] if a.channel)) for grp in g.index]
    g["priority"] = [min((a.priority for a in acts[grp]), default=np.nan) for grp in g.index]
    order = [r.name for r in cfg.groups] + [cfg.default_group]
    g = g.reindex([o for o in order if o in g.index])
    return g.reset_index()[["group", "customers", "share_of_revenue", "total_clv", "mean_clv", "value_at_risk",
                            "objective", "aim", "actions", "channel", "priority"]]


def profiles(df: pd.DataFrame) -> pd.DataFrame:
    """Each group's profile: mean recency, frequency, monetary, CLV, churn probability, main segment."""
    g = df.groupby("group").agg(mean_recency_days=("recency", "mean"), mean_frequency=("frequency", "mean"),
                                mean_monetary=("monetary", "mean"), mean_clv=("clv", "mean"),
                                mean_churn_probability=("churn_probability", "mean"),
                                main_segment=("segment", lambda s: s.value_counts().index[0]))
    return g.reset_index()


def top_drivers(drivers: pd.DataFrame | None, n: int = 3) -> dict[str, str]:
    """The strongest churn drivers and outcome drivers, as short text."""
    if drivers is None or drivers.empty:
        return {}
    out = {}
    for key, prefix in (("churn", "permutation"), ("outcome", "LMG")):
        d = drivers[drivers["method"].str.startswith(prefix)]
        if len(d):
            out[key] = ", ".join(d.assign(a=d["importance"].abs()).sort_values("a", ascending=False)["driver"].head(n))
    return out


def target_list(df: pd.DataFrame, alloc: Allocation, cfg: Strategy, currency: str) -> pd.DataFrame:
    """The customers chosen for each action (highest expected gain first) with a reason, for the CRM."""
    acts = {a.name: a for a in cfg.actions}
    parts = []
    taken: set[str] = set()  # one action per customer
    plan = alloc.plan.assign(per_customer=alloc.plan["expected_incremental_value"]
                             / alloc.plan["customers_targeted"].replace(0, np.nan))
    for _, row in plan.sort_values("per_customer", ascending=False).iterrows():
        k_n = int(row["customers_targeted"])
        if k_n <= 0:
            continue
        a = acts[row["action"]]
        sub = df[(df["group"] == row["group"]) & ~df["customer_id"].isin(taken)].copy()
        sub["expected_gain"] = gains(sub, a)
        sub = sub.sort_values("expected_gain", ascending=False).head(k_n)
        taken.update(sub["customer_id"])
        sub["action"] = a.name
        sub["reason"] = [f"{seg} segment; CLV {clv:,.0f} {currency}; churn probability {p:.0%}; expected gain "
                         f"{gain:,.0f} {currency} for {a.cost_per_customer:,.0f} {currency}"
                         for seg, clv, p, gain in zip(sub["segment"], sub["clv"], sub["churn_probability"],
                                                      sub["expected_gain"])]
        parts.append(sub[["customer_id", "group", "action", "clv", "churn_probability", "expected_gain", "reason"]])
    if not parts:
        return pd.DataFrame(columns=["customer_id", "group", "action", "clv", "churn_probability", "expected_gain",
                                     "reason"])
    return pd.concat(parts, ignore_index=True)


def write_targets(targets: pd.DataFrame, run_dir: Path) -> tuple[Path, Path]:
    """targets.csv and targets.xlsx (one sheet per action), real customer ids."""
    csv = io.write_csv(targets, run_dir / "targets.csv")

    def sheet(name: str, used: set[str]) -> str:
        base = re.sub(r"[\[\]:*?/\\]", " ", name)[:31] or "action"
        s, i = base, 2
        while s in used:
            s = f"{base[:28]}~{i}"
            i += 1
        used.add(s)
        return s

    def write(p: Path) -> None:
        used: set[str] = set()
        with pd.ExcelWriter(p, engine="openpyxl") as xw:
            if targets.empty:
                targets.to_excel(xw, sheet_name="targets", index=False)
            for action, sub in targets.groupby("action", sort=False):
                sub.to_excel(xw, sheet_name=sheet(str(action), used), index=False)

    xlsx = io._atomic(run_dir / "targets.xlsx", write)
    return csv, xlsx


# --------------------------------------------------------------------------- the stage
@dataclass
class StrategyResult:
    customers: pd.DataFrame
    playbook: pd.DataFrame
    profiles: pd.DataFrame
    actions: pd.DataFrame
    allocation: Allocation
    even: Allocation
    sensitivity: pd.DataFrame
    targets: pd.DataFrame
    drivers: dict[str, str]
    notes: list[str] = field(default_factory=list)


def build_strategy(study: Study, rfm: pd.DataFrame, clv: pd.DataFrame, value: pd.DataFrame | None,
                   risk: pd.DataFrame | None, drivers: pd.DataFrame | None, tx: pd.DataFrame | None) -> StrategyResult:
    cfg = study.strategy
    d, notes = customer_table(rfm, clv, value, risk, tx)
    d = assign_groups(d, cfg)
    alloc = allocate(d, cfg)
    return StrategyResult(d, playbook(d, cfg), profiles(d), action_table(d, cfg, study.clv.horizon_months), alloc,
                          even_split(d, cfg), sensitivity(d, cfg), target_list(d, alloc, cfg, study.currency),
                          top_drivers(drivers), notes)


def run_strategy(study: Study, run_dir: str | Path) -> StrategyResult:
    """Read every earlier output there is; write playbook, allocation and target lists."""
    run_dir = Path(run_dir)

    def opt(name: str) -> pd.DataFrame | None:
        return io.read_stage(run_dir, name, optional=True)

    res = build_strategy(study, io.read_stage(run_dir, "rfm.parquet"),
                         io.read_stage(run_dir, "clv.parquet"), opt("value.parquet"),
                         opt("churn_risk.parquet"), opt("drivers.parquet"), opt("transactions_clean.parquet"))
    io.write_parquet(res.customers[["customer_id", "group", "objective", "clv", "churn_probability", "value_at_risk"]],
                     run_dir / "strategy_groups.parquet")
    io.write_csv(res.playbook, run_dir / "playbook.csv")
    write_targets(res.targets, run_dir)
    io.write_json({"budget": study.strategy.budget, "allocation": res.allocation.plan.to_dict("records"),
                   "total_cost": res.allocation.total_cost, "expected_incremental_value": res.allocation.total_value,
                   "net_value": res.allocation.net_value, "even_split_net_value": res.even.net_value,
                   "playbook": res.playbook.to_dict("records"), "notes": res.notes}, run_dir / "strategy.json")
    return res
