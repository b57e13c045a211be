"""The plan's economics and its allocation: each action's expected incremental gross profit per customer
(`gains`), measured campaign effects booked once, the spending limits, and the choice of (customer, action) pairs
within the budget (an integer program for small studies, a greedy convex-hull walk for large ones), with the
sensitivity of the plan and its interval."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cvlib import i18n
from cvlib.errors import StageError
from cvlib.params import Action, Strategy
from cvlib.rules import RULE_COLUMNS, TEXT_RULE_COLUMNS, rule_categories  # noqa: F401  # the rule vocabulary


# --------------------------------------------------------------------------- economics
@dataclass(frozen=True)
class Measured:
    """A campaign's measured effect for an action: gross profit per treated customer over the campaign window, with
    its 95% interval (revenue uplift x margin)."""
    campaign: str
    gain: float
    low: float
    high: float
    window_days: int


def effect_months(action: Action) -> float:
    """Months of full effect an action buys: effect_months, each month keeping effect_decay of the one before."""
    m, k = action.effect_months, action.effect_decay
    return m if k >= 1 else (1 - k ** m) / (1 - k)


def gains(df: pd.DataFrame, action: Action, multiplier: float = 1.0, measured: dict[str, Measured] | None = None,
          which: str = "gain") -> pd.Series:
    """Expected incremental gross profit of the action for each customer (see the module doc). `which`: 'gain', or
    'low' / 'high' for the ends of a measured effect's interval (an assumed uplift has none: the gain itself).
    Departed customers gain nothing from any action but a win-back."""
    m = (measured or {}).get(action.name)
    gone = df["departed"].to_numpy(dtype=bool) if "departed" in df.columns else np.zeros(len(df), dtype=bool)
    if action.applies_to == "win_back":
        g = action.uplift * df["past_monthly_profit"].clip(lower=0) * effect_months(action)
        return (multiplier * g).where(gone, 0.0).fillna(0.0)
    if m is not None:
        per = {"gain": m.gain, "low": m.low, "high": m.high}[which]
        g = pd.Series(max(per, 0.0), index=df.index, dtype=float)
    elif action.applies_to == "value_at_risk":
        g = action.uplift * df["value_at_risk"].clip(lower=0)
    else:
        g = action.uplift * df["monthly_profit"].clip(lower=0) * effect_months(action)
    return (multiplier * g).where(~gone, 0.0).fillna(0.0)


def action_table(df: pd.DataFrame, cfg: Strategy, horizon_months: int, multiplier: float = 1.0,
                 measured: dict[str, Measured] | None = None) -> pd.DataFrame:
    """Per group and action: customers, cost, expected incremental value, ROI and payback if all are targeted."""
    rows = []
    at = group_positions(df)
    for a in cfg.actions:
        for g in a.groups:
            if not len(at.get(g, ())):
                continue
            sub = df.iloc[at[g]]
            gain = gains(sub, a, multiplier, measured)
            cost = a.cost_per_customer * len(sub)
            value = float(gain.sum())
            m = (measured or {}).get(a.name) if a.applies_to != "win_back" else None
            months = (m.window_days / (365.25 / 12) if m is not None else None if a.applies_to == "value_at_risk"
                      else effect_months(a))
            rows.append({"group": g, "action": a.name, "customers": len(sub), "cost_per_customer": a.cost_per_customer,
                         "uplift": np.nan if m is not None else a.uplift * multiplier,
                         "acts_on": "measured" if m is not None else a.applies_to,
                         "effect_months": None if months is None else round(months, 2),
                         "cost": cost, "expected_incremental_value": value,
                         "roi": (value - cost) / cost if cost else np.nan,
                         "payback_months": cost / (value / horizon_months) if value > 0 else np.nan})
    return pd.DataFrame(rows)


MAX_BINARIES = 3_000  # above this many (customer, action) candidates the allocation is solved greedily (LP bound)


@dataclass
class Allocation:
    plan: pd.DataFrame      # group, action, customers_targeted, cost, expected_incremental_value, net_value
    total_cost: float
    total_value: float
    net_value: float
    chosen: pd.DataFrame = field(default_factory=pd.DataFrame)  # customer_id, group, action, expected_gain, cost
    method: str = "exact"   # exact: one binary per customer x action; blocks: above MAX_BINARIES candidates
    status: str = ""


CHOSEN_COLUMNS = ["customer_id", "group", "action", "expected_gain", "cost"]


def group_positions(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each group's row positions in `df`, in row order (one pass over the group column, not one per group)."""
    return df.groupby("group", sort=False).indices if len(df) else {}


def _options(df: pd.DataFrame, cfg: Strategy, multiplier: float, measured: dict[str, Measured] | None = None
             ) -> list[dict]:
    """For each (group, action): the customers' gains sorted high to low, and their row positions in that order."""
    at = group_positions(df)
    opts = []
    for a in cfg.actions:
        every = None
        for g in a.groups:
            if len(at.get(g, ())):
                every = gains(df, a, multiplier, measured) if every is None else every  # once per action
                gain = every.iloc[at[g]].sort_values(ascending=False, kind="stable")
                opts.append({"group": g, "action": a.name, "cost": a.cost_per_customer, "gains": gain,
                             "pos": df.index.get_indexer(gain.index)})
    return opts


def _candidates(df: pd.DataFrame, opts: list[dict]) -> pd.DataFrame:
    """Every (customer, action) pair worth considering: expected gain above the action's cost (a pair that
    loses money never belongs to an optimal plan)."""
    parts = []
    for i, o in enumerate(opts):
        g = o["gains"]
        keep = g > o["cost"]
        if keep.any():
            parts.append(pd.DataFrame({"row": g.index[keep], "option": i, "expected_gain": g[keep].to_numpy(),
                                       "cost": float(o["cost"])}))
    if not parts:
        return pd.DataFrame(columns=["row", "option", "expected_gain", "cost"])
    return pd.concat(parts, ignore_index=True)


def _plan_from(chosen: pd.DataFrame, opts: list[dict]) -> pd.DataFrame:
    """One row per (group, action): what the chosen customers cost and deliver (zeros where none)."""
    base = pd.DataFrame([{"group": o["group"], "action": o["action"]} for o in opts],
                        columns=["group", "action"])
    agg = chosen.groupby(["group", "action"], sort=False).agg(customers_targeted=("expected_gain", "size"),
                                                              cost=("cost", "sum"),
                                                              expected_incremental_value=("expected_gain", "sum"))
    plan = base.merge(agg.reset_index(), on=["group", "action"], how="left").fillna(
        {"customers_targeted": 0, "cost": 0.0, "expected_incremental_value": 0.0})
    plan["customers_targeted"] = plan["customers_targeted"].astype(int)
    plan["net_value"] = plan["expected_incremental_value"] - plan["cost"]
    return plan


def _allocation(df: pd.DataFrame, opts: list[dict], picks: pd.DataFrame, method: str, status: str) -> Allocation:
    """An Allocation whose figures are the sums over exactly the chosen (customer, action) pairs, each expected gain
    to the cent as the exported target list shows it, so the list's column sums are the plan's figures (the
    choice itself is made on the unrounded gains)."""
    option = picks["option"].to_numpy(dtype=np.int64)
    chosen = pd.DataFrame({"customer_id": df.loc[picks["row"], "customer_id"].to_numpy(),
                           "group": np.array([o["group"] for o in opts], dtype=object)[option],
                           "action": np.array([o["action"] for o in opts], dtype=object)[option],
                           "expected_gain": np.round(picks["expected_gain"].to_numpy(dtype=float), 2),
                           "cost": picks["cost"].to_numpy(dtype=float)}, columns=CHOSEN_COLUMNS)
    plan = _plan_from(chosen, opts)
    cost, value = float(chosen["cost"].sum()), float(chosen["expected_gain"].sum())
    return Allocation(plan, cost, value, value - cost, chosen, method, status)


def _hull_increments(rows: np.ndarray, costs: np.ndarray, nets: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each customer's options on the upper convex hull of (cost, net gain) from (0, 0), as increments.

    The options come sorted by customer, cost (ascending) and net (descending). All customers are walked at once,
    one option position at a time (a customer has a handful of options), each keeping its hull as a stack.
    Returns, customer by customer and along each hull: the option's position, its increment of cost and of net
    gain, and its place on the hull (0, 1, ...)."""
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.zeros(0, dtype=np.int64)
    counts = np.diff(np.r_[starts, len(rows)])
    m, k_max = len(starts), int(counts.max()) if len(counts) else 0
    s_cost, s_net = np.zeros((m, k_max)), np.zeros((m, k_max))
    s_pos, size = np.zeros((m, k_max), dtype=np.int64), np.zeros(m, dtype=np.int64)
    for k in range(k_max):
        act = np.flatnonzero(counts > k)
        pos = starts[act] + k
        ck, nk, sz = costs[pos], nets[pos], size[act]
        top = np.maximum(sz - 1, 0)
        keep = (sz == 0) | (nk > s_net[act, top])  # else dominated: costs more, gains no more
        act, pos, ck, nk, sz = act[keep], pos[keep], ck[keep], nk[keep], sz[keep]
        while len(act):
            # drop the last point while it lies below the line from the point before it (or the origin) to this one
            t1, t0 = np.maximum(sz - 1, 0), np.maximum(sz - 2, 0)
            c1, n1 = s_cost[act, t1], s_net[act, t1]
            c0 = np.where(sz > 1, s_cost[act, t0], 0.0)
            n0 = np.where(sz > 1, s_net[act, t0], 0.0)
            pop = (sz > 0) & ((n1 - n0) * (ck - c0) <= (nk - n0) * (c1 - c0))
            if not pop.any():
                break
            sz = sz - pop
        s_cost[act, sz], s_net[act, sz], s_pos[act, sz] = ck, nk, pos
        size[act] = sz + 1
    cust, seq = np.nonzero(np.arange(k_max) < size[:, None])  # customer by customer, along the hull
    prev = seq > 0
    d_cost, d_net = s_cost[cust, seq].copy(), s_net[cust, seq].copy()
    d_cost[prev] -= s_cost[cust[prev], seq[prev] - 1]
    d_net[prev] -= s_net[cust[prev], seq[prev] - 1]
    return s_pos[cust, seq], d_cost, d_net, seq


def _greedy(cand: pd.DataFrame, budget: float) -> tuple[pd.DataFrame, float]:
    """Multiple-choice knapsack by its LP relaxation (Sinha and Zoltners): each customer's options on the upper
    convex hull of (cost, net gain) become increments, taken in order of net gain per unit cost while the budget
    allows; then any later increment that still fits. Returns the chosen rows and the LP bound on the optimum.

    The increments taken before the first that does not fit are found at once (the budget left before each is
    the running difference, subtracted in the same order as one by one); only the rest is walked one by one."""
    cost = cand["cost"].to_numpy(dtype=float)
    net = cand["expected_gain"].to_numpy(dtype=float) - cost
    by = np.lexsort((-net, cost, cand["row"].to_numpy()))  # by customer, cost, then net (high first): stable
    rows = cand["row"].to_numpy()[by]
    pos, d_cost, d_net, seq = _hull_increments(rows, cost[by], net[by])
    eff = np.full(len(d_cost), np.inf)
    np.divide(d_net, d_cost, out=eff, where=d_cost > 0)
    order = np.lexsort((seq, -eff))  # best net gain per unit cost first, ties in hull order
    r, dc, dn, q, at = rows[pos][order], d_cost[order], d_net[order], seq[order], pos[order]
    left_after = np.subtract.accumulate(np.r_[float(budget), dc])  # budget left if all before were taken
    # in the prefix every increment is taken: it fits, and its customer's previous increment came before it
    place = np.empty(len(order), dtype=np.int64)
    place[order] = np.arange(len(order))
    follows = np.ones(len(order), dtype=bool)
    later = np.flatnonzero(q > 0)
    follows[later] = place[order[later] - 1] < later
    stop = np.flatnonzero((dc > left_after[:-1] + 1e-9) | ~follows)
    p = int(stop[0]) if len(stop) else len(order)
    left, bound = float(left_after[p]), float(np.add.accumulate(dn[:p])[-1]) if p else 0.0
    customers, first = np.unique(r[:p], return_index=True)
    last = p - 1 - np.unique(r[:p][::-1], return_index=True)[1]  # each customer's last increment taken
    level: dict = dict(zip(customers.tolist(), q[last].tolist()))
    ins = np.argsort(first, kind="stable")  # customers in the order first taken
    chosen: dict = dict(zip(customers[ins].tolist(), at[last[ins]].tolist()))
    j = p
    while j < len(order):  # on to the first increment that does not fit: the LP bound takes its fraction
        if level.get(r[j], -1) == q[j] - 1:  # else its customer's previous option was not taken
            if dc[j] > left + 1e-9:
                bound += dn[j] * max(left, 0.0) / dc[j]
                break
            left -= dc[j]
            level[r[j]], chosen[r[j]] = q[j], at[j]
            bound += dn[j]
        j += 1
    rest = np.arange(j + 1, len(order))
    rest = rest[dc[rest] <= left + 1e-9]  # after it, only increments that fit in what is left can be taken
    for rj, dcj, qj, aj in zip(r[rest].tolist(), dc[rest].tolist(), q[rest].tolist(), at[rest].tolist()):
        if level.get(rj, -1) == qj - 1 and dcj <= left + 1e-9:
            left -= dcj
            level[rj], chosen[rj] = qj, aj
    return cand.iloc[by[list(chosen.values())]], bound + 0.0


def spending_limits(cfg: Strategy, budget: float, opts: list[dict]) -> list[tuple[str, np.ndarray, float]]:
    """(name, option positions, cap) of every spending limit that can bind: each action's max_budget_share (else
    strategy.max_action_share) and each group's strategy.max_group_share of the budget (diminishing returns)."""
    out = []
    for a in cfg.actions:
        mine = np.array([i for i, o in enumerate(opts) if o["action"] == a.name], dtype=np.int64)
        share = a.max_budget_share or cfg.max_action_share
        if len(mine) and share < 1:
            out.append((a.name, mine, share * budget))
    if cfg.max_group_share < 1:
        for g in dict.fromkeys(o["group"] for o in opts):
            mine = np.array([i for i, o in enumerate(opts) if o["group"] == g], dtype=np.int64)
            out.append((g, mine, cfg.max_group_share * budget))
    return out


def _capped_greedy(cand: pd.DataFrame, budget: float, members: list[np.ndarray], caps: list[float]) -> pd.DataFrame:
    """The greedy allocation under spending limits (`members[j]`: which candidates limit j covers): solve, and
    while a limit is exceeded, keep its best picks (net gain per unit cost) that fit every limit, take its
    candidates and those customers out, and solve again for what is left of the budget."""
    kept, left, pool, caps = [], float(budget), np.ones(len(cand), dtype=bool), list(caps)
    cost = cand["cost"].to_numpy(dtype=float)
    while pool.any():
        picks, _ = _greedy(cand[pool], left)
        at = cand.index.get_indexer(picks.index)
        spent = [float(cost[at][m[at]].sum()) for m in members]
        over = [j for j in range(len(caps)) if spent[j] > caps[j] + 1e-9]
        if not over:
            kept.append(picks)
            break
        j = max(over, key=lambda k: spent[k] / max(caps[k], 1e-12))
        mine = at[members[j][at]]
        eff = (cand["expected_gain"].to_numpy(dtype=float)[mine] - cost[mine]) / np.maximum(cost[mine], 1e-12)
        take = []
        for r in mine[np.argsort(-eff, kind="stable")]:  # best first, while every limit it counts for allows
            if cost[r] <= left + 1e-9 and all(cost[r] <= caps[k] + 1e-9 for k in range(len(caps)) if members[k][r]):
                take.append(r)
                left -= cost[r]
                for k in range(len(caps)):
                    if members[k][r]:
                        caps[k] -= cost[r]
        kept.append(cand.iloc[take])
        pool &= ~members[j] & ~cand["row"].isin(cand["row"].to_numpy()[take]).to_numpy()
    return pd.concat(kept) if kept else cand.iloc[:0]


def allocate(df: pd.DataFrame, cfg: Strategy, budget: float | None = None, multiplier: float = 1.0,
             max_binaries: int = MAX_BINARIES, measured: dict[str, Measured] | None = None) -> Allocation:
    """Maximise expected net value (gain - cost) under the budget; each customer gets at most one action and no
    action or group spends more than its limit (`spending_limits`).

    Up to `max_binaries` (customer, action) pairs worth considering: an integer program with one binary per pair,
    one row per customer (at most one action), the budget row and a row per spending limit, solved to optimality
    by scipy's `milp` (HiGHS). Above that size: the multiple-choice knapsack's LP relaxation, solved greedily,
    less its one fractional customer (then any option that still fits); its distance from the LP bound is
    reported (with binding caps, `_capped_greedy`: no bound). Either way the reported value is the sum over the
    chosen customers, so the target list delivers it to the cent."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_array


    budget = cfg.budget if budget is None else budget
    opts = _options(df, cfg, multiplier, measured)
    cand = _candidates(df, opts)
    if cand.empty:
        return _allocation(df, opts, cand, "exact", "no customer's expected gain exceeds an action's cost")
    limits = spending_limits(cfg, budget, opts)
    option = cand["option"].to_numpy(dtype=np.int64)
    members = [np.isin(option, mine) for _, mine, _ in limits]
    caps = [cap for _, _, cap in limits]
    cost = cand["cost"].to_numpy(dtype=float)
    if len(cand) > max_binaries:
        picks, bound = _greedy(cand, budget)
        at = cand.index.get_indexer(picks.index)
        if any(cost[at][m[at]].sum() > c + 1e-9 for m, c in zip(members, caps)):
            picks = _capped_greedy(cand, budget, members, caps)
            alloc = _allocation(df, opts, picks[["row", "option", "expected_gain", "cost"]], "greedy", "")
            alloc.status = i18n.t("strategy.greedy_capped", n=f"{len(cand):,}")
            return alloc
        alloc = _allocation(df, opts, picks[["row", "option", "expected_gain", "cost"]], "greedy", "")
        gap = max(bound - alloc.net_value, 0.0)  # from the plan as reported (gains to the cent)
        alloc.status = (i18n.t("strategy.greedy_status", n=f"{len(cand):,}", gap=f"{gap:,.2f}",
                               share=i18n.pct(gap / bound, 2), bound=f"{bound:,.2f}") if bound > 0
                        else i18n.t("strategy.greedy"))
        return alloc
    n = len(cand)
    rows = pd.factorize(cand["row"])[0]
    a_cust = csr_array((np.ones(n), (rows, np.arange(n))), shape=(rows.max() + 1, n))
    rows_ = [LinearConstraint(a_cust, -np.inf, 1.0), LinearConstraint(cost[None, :], -np.inf, budget)]
    rows_ += [LinearConstraint(np.where(m, cost, 0.0)[None, :], -np.inf, c) for m, c in zip(members, caps)
              if cost[m].sum() > c]
    res = milp(c=-(cand["expected_gain"].to_numpy(dtype=float) - cost), constraints=rows_,
               integrality=np.ones(n), bounds=Bounds(np.zeros(n), np.ones(n)), options={"time_limit": 60})
    if res.x is None or res.status not in (0, 1):
        raise StageError(f"The budget allocation could not be solved ({res.message}; {n:,} variables, budget "
                         f"{budget:,.2f}). Check strategy.budget and the actions' costs.")
    picks = cand[np.round(res.x).astype(bool)]
    status = "optimal" if res.status == 0 else f"stopped at the time limit, best plan found ({res.message})"
    return _allocation(df, opts, picks[["row", "option", "expected_gain", "cost"]], "exact", status)


def even_split(df: pd.DataFrame, cfg: Strategy, budget: float | None = None, multiplier: float = 1.0,
               measured: dict[str, Measured] | None = None) -> Allocation:
    """The naive plan: the budget split evenly across every (group, action), best customers first, each customer
    at most once (its figures, too, are the sums over the customers it picks)."""
    budget = cfg.budget if budget is None else budget
    opts = _options(df, cfg, multiplier, measured)
    share = budget / len(opts) if opts else 0.0
    taken = np.zeros(len(df), dtype=bool)
    picks = []
    for i, o in enumerate(opts):
        free = ~taken[o["pos"]]
        g = o["gains"][free]
        k_n = min(len(g), int(share // o["cost"]) if o["cost"] > 0 else len(g))
        top = g.iloc[:k_n]
        taken[o["pos"][free][:k_n]] = True
        picks.append(pd.DataFrame({"row": top.index, "option": i, "expected_gain": top.to_numpy(),
                                   "cost": float(o["cost"])}))
    empty = pd.DataFrame(columns=["row", "option", "expected_gain", "cost"])
    p = pd.concat(picks, ignore_index=True) if picks else empty
    return _allocation(df, opts, p, "even split", "")


def sensitivity(df: pd.DataFrame, cfg: Strategy, measured: dict[str, Measured] | None = None) -> pd.DataFrame:
    """Optimised and even-split results when every uplift is scaled by each multiplier."""
    rows = []
    for m in cfg.sensitivity:
        opt = allocate(df, cfg, multiplier=m, measured=measured)
        even = even_split(df, cfg, multiplier=m, measured=measured)
        rows.append({"uplift_multiplier": m, "optimised_net_value": opt.net_value, "optimised_cost": opt.total_cost,
                     "even_split_net_value": even.net_value})
    return pd.DataFrame(rows)


def plan_interval(alloc: Allocation, df: pd.DataFrame, cfg: Strategy, measured: dict[str, Measured] | None
                  ) -> dict[str, float]:
    """The plan's expected gain, net value and ROI with the 95% interval their measured uplifts give (the ends of
    each measured effect's interval for the customers that action targets; an assumed uplift counts as given)."""
    chosen = alloc.chosen
    gain = float(chosen["expected_gain"].sum())
    lo = hi = gain
    by_name = {a.name: a for a in cfg.actions}
    for name, m in (measured or {}).items():
        mine = chosen["action"] == name
        if mine.any() and name in by_name:
            rows = df.set_index("customer_id").loc[chosen.loc[mine, "customer_id"]].reset_index()
            point = float(chosen.loc[mine, "expected_gain"].sum())
            lo += float(gains(rows, by_name[name], 1.0, measured, "low").round(2).sum()) - point
            hi += float(gains(rows, by_name[name], 1.0, measured, "high").round(2).sum()) - point
    cost = float(chosen["cost"].sum())

    def roi(v: float) -> float:
        return (v - cost) / cost if cost else float("nan")

    return {"gain": gain, "gain_low": lo, "gain_high": hi, "cost": cost, "net": gain - cost, "net_low": lo - cost,
            "net_high": hi - cost, "roi": roi(gain), "roi_low": roi(lo), "roi_high": roi(hi),
            "measured": bool(measured) and bool(chosen["action"].isin(list(measured or {})).any())}
