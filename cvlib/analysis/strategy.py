"""Strategy: strategic groups, a playbook, a budget allocation with expected return, and CRM target lists.

Expected incremental gross profit of an action for a customer (`gains`): a revenue effect over the months it lasts
(uplift x expected gross profit per month x effect months), a retention effect (uplift x churn probability x CLV),
a win-back (uplift x past gross profit per month x effect months, departed customers only) or a measured campaign
effect (its uplift per treated customer x margin, booked once). Customers who have left (cvlib.status) are in
the departed group, reached by win-back actions only. The allocation maximises expected net value (gain less the
actions' cost) under the budget, each action taking at most its share of it (diminishing returns), as an integer
program over (customer, action) pairs (scipy's milp) or greedily for large studies; the target list is exactly
the chosen pairs, so its sums are the plan's figures.
"""
from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib import expr, i18n, io
from cvlib import xlsx as xlsx_writer
from cvlib.analysis import reasons
from cvlib.analysis.allocation import (
    Allocation,
    Measured,
    action_table,
    allocate,
    even_split,
    plan_interval,
    sensitivity,
)
from cvlib.analysis.campaign import measured_uplift
from cvlib.analysis.journey import STAGES
from cvlib.analysis.rfm import value_tiers
from cvlib.analysis.value_index import spend_trend
from cvlib.engines import duckdb_parquet
from cvlib.errors import ParamError
from cvlib.params import Clv, Strategy, Study
from cvlib.rules import RULE_COLUMNS, TEXT_RULE_COLUMNS, rule_categories  # noqa: F401  # the rule vocabulary


# --------------------------------------------------------------------------- the customer table
def customer_table(rfm: pd.DataFrame, clv: pd.DataFrame, value: pd.DataFrame | None = None,
                   risk: pd.DataFrame | None = None, tx: pd.DataFrame | Any | None = None,
                   journey: pd.DataFrame | None = None, clv_cfg: Clv | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One row per customer with what the group rules can use: RFM, CLV, churn probability, value cell, trend,
    lifecycle stage and whether they are overdue (journey stage), whether they have left (the CLV stage's
    `departed`, cvlib.status), their expected and past gross profit per month, and `past_value_tier`: the CLV
    tiers' cuts and names applied to past yearly revenue of live customers (value before any churn risk)."""
    notes = []
    d = io.by_customer(rfm)
    c = io.by_customer(clv)
    d = value_columns(d.join(c[[k for k in c.columns if k not in d.columns]], how="left"), clv_cfg or Clv())
    d["clv_tier"] = d["clv_tier"].astype(str)
    d["segment"] = d["segment"].astype(str)
    rk = io.by_customer(risk) if risk is not None else None
    if rk is not None and rk["churn_probability"].notna().any():
        d["churn_probability"] = rk["churn_probability"].reindex(d.index)
        missing = int(d["churn_probability"].isna().sum())
        if missing:
            notes.append(i18n.t("strategy.note_no_probability", n=f"{missing:,}"))
    else:
        d["churn_probability"] = np.nan
        notes.append(i18n.for_consultant("strategy.note_no_risk"))
    if "departed" in c.columns:  # one definition of who has left, the CLV stage's
        d["churned"] = d["departed"]
    else:  # an older CLV output: the drivers stage's flag (without it nobody is known to have churned)
        d["churned"] = (rk["churned"].reindex(d.index).fillna(False).astype(bool) if rk is not None
                        and "churned" in rk else False)
        d["departed"] = d["churned"]
    if rk is not None and "within_cycle" in rk.columns:
        d["within_cycle"] = rk["within_cycle"].reindex(d.index).fillna(False).astype(bool)
        d["cycle_days"] = rk["cycle_days"].reindex(d.index)
    else:  # the customer's own cycle from the RFM columns: mean days between purchase occasions
        cyc = (d["tenure"] - d["recency"]) / (d["frequency"] - 1).where(d["frequency"] > 1)
        d["cycle_days"] = cyc.fillna(cyc.median())
        d["within_cycle"] = (d["recency"] <= d["cycle_days"]).fillna(False)
    if value is not None:
        v = io.by_customer(value)
        d = d.join(v[[k for k in ("value_cell", "profit", "value_score") if k in v.columns]], how="left")
    else:
        d["value_cell"] = "unknown"
        notes.append("No value assessment: the value matrix cell is 'unknown' for every customer.")
    if tx is not None:
        d["trend"] = spend_trend(tx).reindex(d.index).fillna(0.0)
    else:
        d["trend"] = 0.0
    d["value_at_risk"] = (d["clv"] * d["churn_probability"]).fillna(0.0).where(~d["departed"], 0.0)  # live only
    j = io.by_customer(journey) \
        if journey is not None else None
    d["lifecycle_stage"] = j["lifecycle_stage"].reindex(d.index).fillna("unknown").astype(str) if j is not None \
        else "unknown"
    d["overdue"] = j["overdue"].reindex(d.index).fillna(False).astype(bool) if j is not None else False
    for col, src in (("suggested_product", "suggested_product"), ("cross_sell_rule", "rule")):
        d[col] = j[src].reindex(d.index).astype(object) if j is not None and src in j.columns else None
    return d.reset_index(), notes


def assign_groups(df: pd.DataFrame, cfg: Strategy) -> pd.DataFrame:
    """Every customer in exactly one group: the departed group for customers who have left, else the first rule
    that matches, else the default group."""
    group = pd.Series(pd.NA, index=df.index, dtype="object")
    objective = pd.Series(cfg.default_objective, index=df.index, dtype="object")
    if "departed" in df.columns:  # customers who have left: their own group, before any rule
        gone = df["departed"].fillna(False).astype(bool)
        group[gone], objective[gone] = cfg.departed_group, "wider"
    for rule in cfg.groups:
        try:
            hit = expr.evaluate(rule.when, df)
        except (expr.ExpressionError, TypeError) as exc:
            raise ParamError(f"strategy.groups: rule {rule.name!r} ({rule.when!r}) cannot be evaluated: "
                             f"{exc}") from None
        hit = hit & group.isna()
        group[hit] = rule.name
        objective[hit] = rule.objective
    rest = group.isna()
    group[rest] = cfg.default_group
    return df.assign(group=group.astype(str), objective=objective)


def value_columns(d: pd.DataFrame, cfg: Clv) -> pd.DataFrame:
    """`departed` (False without the CLV stage's status), expected and past gross profit per month, and the past
    value tier, added to the customer table."""
    d["departed"] = d["departed"].fillna(False).astype(bool) if "departed" in d.columns else False
    if "monthly_profit" not in d.columns:
        d["monthly_profit"] = d["clv"] / cfg.horizon_months
    yearly = d["monetary"] / np.maximum(d["tenure"].astype(float), 365.0) * 365.0
    d["past_monthly_profit"] = cfg.margin * yearly / 12
    d["past_value_tier"] = past_value_tiers(yearly, d["departed"], cfg)
    return d


def past_value_tiers(yearly_revenue: pd.Series, departed: pd.Series, cfg: Clv) -> pd.Series:
    """The CLV tiers (cuts and names) applied to past yearly revenue of live customers; departed customers are in
    the lowest tier. Value before churn risk, so a rule 'high risk and high value' is not empty by construction."""

    out = pd.Series(cfg.tiers.names[-1], index=yearly_revenue.index, dtype=object)
    on = ~departed.to_numpy(dtype=bool)
    if on.any():
        out[on] = np.asarray(value_tiers(yearly_revenue[on], cfg.tiers.cuts, cfg.tiers.names), dtype=object)
    return out.astype(str)


def lever_shares(shares: pd.DataFrame) -> pd.DataFrame:
    """The budget per driver lever (the churn or outcome driver an action works on; '' for actions on none): its
    actions, cost, share of the budget and expected gain."""
    g = shares.groupby("lever", sort=False).agg(actions=("action", ", ".join), cost=("cost", "sum"),
                                                share_of_budget=("share_of_budget", "sum"),
                                                expected_incremental_value=("expected_incremental_value", "sum"))
    return g.reset_index()


def budget_shares(alloc: Allocation, cfg: Strategy) -> pd.DataFrame:
    """Per action: customers targeted, cost, its share of the money spent and of the budget, expected gain, net
    value, ROI and the driver lever it works on."""
    lever = {a.name: a.lever or "" for a in cfg.actions}
    g = alloc.plan.groupby("action", sort=False).agg(customers_targeted=("customers_targeted", "sum"),
                                                     cost=("cost", "sum"),
                                                     expected_incremental_value=("expected_incremental_value",
                                                                                 "sum")).reset_index()
    spent = float(g["cost"].sum())
    g["share_of_spend"] = g["cost"] / spent if spent else 0.0
    g["share_of_budget"] = g["cost"] / cfg.budget
    g["net_value"] = g["expected_incremental_value"] - g["cost"]
    g["roi"] = g["net_value"] / g["cost"].where(g["cost"] > 0)
    g["lever"] = g["action"].map(lever)
    return g


# --------------------------------------------------------------------------- outputs
def _main(s: pd.Series):
    """The most frequent value of a column (None when it has none)."""
    counts = s.dropna().value_counts()
    return counts.index[0] if len(counts) else None


def journey_profile(df: pd.DataFrame, by: str = "group") -> pd.DataFrame:
    """Per group (or lifecycle stage): the share overdue, the median purchase cycle (days), the main lifecycle
    stage and the most suggested next product (journey stage; None without cross-sell rules)."""
    return df.groupby(by).agg(share_overdue=("overdue", "mean"), median_cycle_days=("cycle_days", "median"),
                              main_lifecycle_stage=("lifecycle_stage", _main),
                              top_suggested_product=("suggested_product", _main))


def playbook(df: pd.DataFrame, cfg: Strategy) -> pd.DataFrame:
    """One row per group: size, revenue share, CLV, value at risk, objective, actions, channel, priority, and
    the group's journey: share overdue, median cycle, main lifecycle stage, most suggested product."""
    g = df.groupby("group").agg(customers=("customer_id", "size"), revenue=("monetary", "sum"),
                                total_clv=("clv", "sum"), mean_clv=("clv", "mean"),
                                value_at_risk=("value_at_risk", "sum"), objective=("objective", "first"))
    g["share_of_revenue"] = g["revenue"] / g["revenue"].sum()
    acts = {grp: [a for a in cfg.actions if grp in a.groups] for grp in g.index}
    g["aim"] = g["objective"].map(lambda o: i18n.t(f"strategy.aim_{o}"))
    g["actions"] = [", ".join(a.name for a in acts[grp]) or "none in the action library" for grp in g.index]
    g["channel"] = [", ".join(dict.fromkeys(a.channel for a in acts[grp] if a.channel)) for grp in g.index]
    g["priority"] = [min((a.priority for a in acts[grp]), default=np.nan) for grp in g.index]
    g = g.join(journey_profile(df))
    order = [r.name for r in cfg.groups] + [cfg.default_group, cfg.departed_group]
    g = g.reindex([o for o in order if o in g.index])
    return g.reset_index()[["group", "customers", "share_of_revenue", "total_clv", "mean_clv", "value_at_risk",
                            "objective", "aim", "actions", "channel", "priority", *JOURNEY_COLUMNS]]


JOURNEY_COLUMNS = ("share_overdue", "median_cycle_days", "main_lifecycle_stage", "top_suggested_product")


def lifecycle_playbook(df: pd.DataFrame) -> pd.DataFrame:
    """Per lifecycle stage (journey stage): customers, CLV, share overdue, the strategic group most of them are
    in, and the stage's strategy; empty when the journey stage did not run."""

    known = df[df["lifecycle_stage"].isin(STAGES)]
    if known.empty:
        return pd.DataFrame(columns=["lifecycle_stage", "customers", "total_clv", "share_overdue", "main_group",
                                     "strategy"])
    g = known.groupby("lifecycle_stage").agg(customers=("customer_id", "size"), total_clv=("clv", "sum"),
                                             share_overdue=("overdue", "mean"), main_group=("group", _main))
    g = g.reindex([s for s in STAGES if s in g.index])
    g["strategy"] = [i18n.t(f"journey.stage_strategy_{s}") for s in g.index]
    return g.reset_index()


def profiles(df: pd.DataFrame) -> pd.DataFrame:
    """Each group's profile: mean recency, frequency, monetary, CLV, churn probability, main segment."""
    g = df.groupby("group").agg(mean_recency_days=("recency", "mean"), mean_frequency=("frequency", "mean"),
                                mean_monetary=("monetary", "mean"), mean_clv=("clv", "mean"),
                                mean_churn_probability=("churn_probability", "mean"),
                                main_segment=("segment", _main))
    return g.reset_index()


def top_driver_names(drivers: pd.DataFrame | None, prefix: str, n: int = 3) -> list[str]:
    """The `n` drivers of largest absolute importance by the methods starting with `prefix`."""
    if drivers is None or drivers.empty:
        return []
    d = drivers[drivers["method"].str.startswith(prefix)]
    return [str(x) for x in d.assign(a=d["importance"].abs()).sort_values("a", ascending=False)["driver"].head(n)]


def top_drivers(drivers: pd.DataFrame | None, n: int = 3) -> dict[str, str]:
    """The strongest churn drivers and outcome drivers, as short text (their labels in the report language)."""
    if drivers is None or drivers.empty:
        return {}
    out = {}
    for key, prefix in (("churn", "permutation"), ("outcome", "LMG")):
        top = top_driver_names(drivers, prefix, n)
        if top:
            out[key] = i18n.t("common.list_sep").join(i18n.label(x) for x in top)
    return out


def target_list(df: pd.DataFrame, alloc: Allocation, cfg: Strategy, currency: str) -> pd.DataFrame:
    """The customers the allocation chose, with their action, a reason and their next best product with its
    cross-sell rule (journey stage; empty without one), for the CRM (highest expected gain first within each
    action). Exactly the allocation's (customer, action) pairs: the list delivers the plan."""
    cols = ["customer_id", "group", "action", "clv", "churn_probability", "expected_gain", "cost", "reason",
            "suggested_product", "cross_sell_rule"]
    if alloc.chosen.empty:
        return pd.DataFrame(columns=cols)
    info = df.set_index("customer_id").reindex(columns=["segment", "clv", "churn_probability", "suggested_product",
                                                        "cross_sell_rule"])
    t = alloc.chosen.join(info, on="customer_id")
    order = {a.name: i for i, a in enumerate(cfg.actions)}
    t = t.assign(_o=t["action"].map(order)).sort_values(["_o", "expected_gain"], ascending=[True, False],
                                                         kind="stable")
    t["reason"] = [i18n.t("strategy.reason", seg=i18n.name(str(seg)), clv=f"{clv:,.0f}", currency=currency,
                          p=i18n.pct(p, 0), gain=f"{gain:,.0f}", cost=f"{cost:,.2f}")
                   for seg, clv, p, gain, cost in zip(t["segment"], t["clv"], t["churn_probability"],
                                                      t["expected_gain"], t["cost"])]
    return t[cols].reset_index(drop=True)


def write_targets(targets: pd.DataFrame, run_dir: Path) -> tuple[Path, Path]:
    """targets.csv and targets.xlsx (one sheet per action; cvlib.xlsx, fast and reproducible), real customer ids,
    amounts to the cent. The CSV keeps the stable English column names; the workbook's header row is in the
    report language."""
    targets = io.rounded_for_export(targets)
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
        sheets = {"targets": targets} if targets.empty else {
            sheet(str(action), used): sub for action, sub in targets.groupby("action", sort=False)}
        xlsx_writer.write_xlsx(sheets, p,
                               headers={n: [i18n.label(str(c)) for c in df.columns] for n, df in sheets.items()})

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
    lifecycle: pd.DataFrame | None = None  # per lifecycle stage: size, CLV, main group, the stage's strategy
    win_back: pd.DataFrame | None = None  # per churn reason (drivers stage): the win-back action of the library
    interval: dict = field(default_factory=dict)  # the plan's gain, net and ROI with their measured intervals
    shares: pd.DataFrame | None = None  # per action: spend, share of the budget, gain, ROI, lever


def measured_effects(cfg: Strategy, measured: dict[str, dict], margin: float) -> tuple[dict[str, Measured], list[str]]:
    """For each action of `strategy.measured_uplift` whose campaign has a measured revenue uplift: its gross profit
    per treated customer (the pre-period-adjusted revenue uplift x the margin, at least 0) with its interval, over
    the campaign window, and a note per action saying which was used. The effect is booked once: it was measured
    over the window, not over the CLV horizon."""
    out, notes = {}, []
    for a in cfg.actions:
        camp = cfg.measured_uplift.get(a.name)
        m = measured.get(camp) if camp else None
        uplift = None if m is None else m.get("revenue_uplift")
        if camp and uplift is not None and uplift == uplift:  # a measured uplift (not NaN)
            out[a.name] = Measured(camp, margin * float(m["revenue_uplift"]), margin * float(m["revenue_ci_low"]),
                                   margin * float(m["revenue_ci_high"]), int(m.get("window_days") or 0))
            e = out[a.name]
            notes.append(i18n.t("strategy.note_measured_gain", action=a.name, campaign=camp,
                                gain=f"{e.gain:,.2f}", lo=f"{e.low:,.2f}", hi=f"{e.high:,.2f}", days=e.window_days,
                                margin=i18n.pct(margin, 0), cost=f"{a.cost_per_customer:,.2f}"))
        elif camp:
            notes.append(i18n.t("strategy.note_uplift_not_measured", action=a.name, campaign=camp,
                                assumed=i18n.pct(a.uplift)))
    return out, notes


def with_levers(cfg: Strategy, drivers: pd.DataFrame | None, n: int = 3) -> tuple[Strategy, list[str]]:
    """An action with no groups whose `lever` is one of the `n` strongest churn drivers is offered to every
    retention group (objective 'longer'): the top driver's lever gets a chance at the budget."""
    top = set(top_driver_names(drivers, "permutation", n))
    retention = [g.name for g in cfg.groups if g.objective == "longer"]
    actions, notes = [], []
    for a in cfg.actions:
        if a.lever and not a.groups and a.applies_to != "win_back" and a.lever in top and retention:
            a = a.model_copy(update={"groups": retention})
            notes.append(i18n.t("strategy.note_lever", action=a.name, driver=i18n.label(a.lever),
                                groups=i18n.t("common.list_sep").join(i18n.name(g) for g in retention)))
        actions.append(a)
    return cfg.model_copy(update={"actions": actions}), notes


def build_strategy(study: Study, rfm: pd.DataFrame, clv: pd.DataFrame, value: pd.DataFrame | None,
                   risk: pd.DataFrame | None, drivers: pd.DataFrame | None, tx: pd.DataFrame | Any | None,
                   journey: pd.DataFrame | None = None, measured: dict[str, dict] | None = None,
                   churn_reasons: pd.DataFrame | None = None, value_check: dict | None = None) -> StrategyResult:
    """Everything the strategy stage computes. `value_check`: the value stage's validation record (whether its
    score beat the ranking by past revenue), so a group built on the score says when it was not validated."""
    cfg, lever_notes = with_levers(study.strategy, drivers)
    effects, measured_notes = measured_effects(cfg, measured or {}, study.clv.margin)
    d, notes = customer_table(rfm, clv, value, risk, tx, journey, study.clv)
    notes = measured_notes + lever_notes + notes
    d = assign_groups(d, cfg)
    alloc = allocate(d, cfg, measured=effects)
    for r in cfg.groups:
        if not (d["group"] == r.name).any():
            notes.append(i18n.t("strategy.note_empty_group", group=i18n.name(r.name), rule=r.when))
    if value_check is not None and value_check.get("beats_past_revenue") is False:
        uses = [r.name for r in cfg.groups if "value_cell" in r.when or "value_score" in r.when]
        if uses:
            notes.append(i18n.t("strategy.note_value_not_validated", groups=i18n.t("common.list_sep").join(
                i18n.name(g) for g in uses)))
    res = StrategyResult(d, playbook(d, cfg), profiles(d), action_table(d, cfg, study.clv.horizon_months,
                                                                        measured=effects), alloc,
                         even_split(d, cfg, measured=effects), sensitivity(d, cfg, effects),
                         target_list(d, alloc, cfg, study.currency), top_drivers(drivers), notes, lifecycle_playbook(d),
                         reasons.win_back(churn_reasons, cfg.actions, cfg.win_back) if churn_reasons is not None
                         else None)
    res.interval = plan_interval(alloc, d, cfg, effects)
    res.shares = budget_shares(alloc, cfg)
    return res


def value_validation(run_dir: Path) -> dict | None:
    """The value stage's check of its score against realised holdout revenue (value.json), when it made one."""
    d = io.read_stage_json(Path(run_dir), "value.json", optional=True)
    return (d or {}).get("validation")


def churn_reasons(run_dir: Path) -> pd.DataFrame | None:
    """The drivers stage's churn reasons (drivers.json), when it found any."""
    d = io.read_stage_json(Path(run_dir), "drivers.json", optional=True)
    return pd.DataFrame(d["churn_reasons"]) if d and d.get("churn_reasons") else None


@i18n.in_study_language
def run_strategy(study: Study, run_dir: str | Path) -> StrategyResult:
    """Read every earlier output there is; write playbook, allocation and target lists."""

    run_dir = Path(run_dir)

    def opt(name: str) -> pd.DataFrame | None:
        return io.read_stage(run_dir, name, optional=True)

    clean = "transactions_clean.parquet"  # the spend trend, from engine aggregates
    with duckdb_parquet(io.stage_file(run_dir, clean)) if (run_dir / clean).is_file() else nullcontext() as t:
        res = build_strategy(study, io.read_stage(run_dir, "rfm.parquet"),
                             io.read_stage(run_dir, "clv.parquet"), opt("value.parquet"),
                             opt("churn_risk.parquet"), opt("drivers.parquet"), t,
                             opt("journey.parquet"), measured_uplift(run_dir), churn_reasons(run_dir),
                             value_validation(run_dir))
    io.write_parquet(res.customers[["customer_id", "group", "objective", "clv", "churn_probability", "value_at_risk"]],
                     run_dir / "strategy_groups.parquet")
    io.write_csv(io.rounded_for_export(res.playbook), run_dir / "playbook.csv")
    write_targets(res.targets, run_dir)
    a = res.allocation
    # the plan's figures are the sums of the target list as written (to the cent): what the CRM list delivers
    listed = io.rounded_for_export(res.targets)
    gain, cost = float(listed["expected_gain"].sum()), float(listed["cost"].sum())
    io.write_json({"budget": study.strategy.budget, "allocation": a.plan.to_dict("records"),
                   "method": a.method, "solver_status": a.status,
                   "total_cost": cost, "expected_incremental_value": gain,
                   "net_value": gain - cost, "even_split_net_value": res.even.net_value,
                   "even_split_cost": res.even.total_cost,
                   "target_list": {"customers": len(res.targets), "expected_incremental_value": gain, "cost": cost},
                   "interval": res.interval, "budget_shares": res.shares.to_dict("records"),
                   "lever_shares": lever_shares(res.shares).to_dict("records"),
                   "departed_in_targets": int(res.customers.set_index("customer_id").loc[
                       res.targets["customer_id"], "departed"].to_numpy(dtype=bool)[
                       (res.targets["action"].map({a.name: a.applies_to for a in study.strategy.actions})
                        != "win_back").to_numpy()].sum()) if len(res.targets) else 0,
                   "playbook": res.playbook.to_dict("records"),
                   "lifecycle_playbook": res.lifecycle.to_dict("records"),
                   "win_back": None if res.win_back is None else res.win_back.to_dict("records"), "notes": res.notes},
                       run_dir / "strategy.json")
    return res
