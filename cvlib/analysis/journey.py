"""The customer journey: each customer's purchase cycle and whether they are overdue, their lifecycle stage and
how stages flow from one period to the next, and cross-sell rules from what customers buy together.

- **Cycle**: the median number of days between a customer's purchase occasions (days; weeks or calendar months
  for billing data), shrunk toward their group's cycle when they have few gaps (one-time buyers get the group's
  cycle); the next purchase is expected one cycle after the last; a customer is **overdue** when the days since
  their last purchase exceed k cycles and they are not already **lost** (churned by the drivers stage's
  definition: no purchase for `drivers.churn_days`, or a contract that ended). A lost customer is a win-back
  case with little value left, not a customer running late.
- **Lifecycle stage** at a date: *acquisition* (first purchase within the last period), *lapsed* (past their
  own expected return time: recency over `lapsed_factor` cycles), else *growth*, *maturity* or *decline* by
  their spend in the last period against their own mean spend per period before it.
- **Cross-sell rules**: directed rules 'A -> B' from the order in which customers first bought each item (B on
  a later day than A), with a lift against customers holding as many products (not against everyone: heavy buyers
  hold everything), kept when the association and the order are significant and when they also hold on a later
  holdout period (A's buyers who lacked B then bought it more often than the matched baseline); each customer's
  next best product is the consequent of the strongest rule whose antecedent they hold and whose consequent they
  lack. A rule is never read backwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib import customers, i18n, io, reading
from cvlib.analysis.channels import channel_mix_of
from cvlib.analysis.clv import acquisition_channel, acquisition_costs
from cvlib.customers import occasion_periods
from cvlib.engines import aggregates, duckdb_parquet
from cvlib.occasions import OCCASION_DAYS
from cvlib.params import Study

STAGES = ("acquisition", "growth", "maturity", "decline", "lapsed")
NOT_YET = "not yet a customer"


def purchase_cycles(tx: pd.DataFrame | None, end: pd.Timestamp, groups: pd.Series | None = None, k: float = 2.0,
                    prior_gaps: float = 2.0, p: customers.Purchases | None = None, occasion: str = "day",
                    lost: pd.Series | float | None = None) -> pd.DataFrame:
    """Per customer who bought by `end` (index: customer id): occasions, own median gap, cycle_days (own median
    shrunk toward the group's: (own x gaps + group x prior_gaps) / (gaps + prior_gaps); the group's for one-time
    buyers), recency_days, expected_next, lost, overdue (recency over k cycles, and not lost) and days_overdue.

    Gaps are counted between purchase occasions (`occasion`: day, week or month) and given in days. `lost`: per
    customer, whether they have already left (the drivers stage's churn flag), or a number of days without a
    purchase after which they have; a lost customer is a win-back case, not overdue."""
    p = customers.purchases(tx) if p is None else p
    c = customers.cycles_at(occasion_periods(p, occasion), end)
    unit = OCCASION_DAYS[occasion]
    end_day = pd.Timestamp(end).normalize().value // customers.DAY_NS
    if occasion == "day":
        last_day = c["last"].to_numpy()
    else:  # the last purchase day, not the last occasion's number
        cut = p.ns < (pd.Timestamp(end).normalize() + pd.Timedelta(days=1)).value
        last_by_code = np.full(len(p.ids), np.iinfo(np.int64).min)
        np.maximum.at(last_by_code, p.code[cut], p.day[cut])
        last_day = last_by_code[c["code"].to_numpy(dtype=np.int64)]
    g = (groups.reindex(c.index) if groups is not None else pd.Series("all", index=c.index)).fillna("unknown")
    own = c["median_gap"].astype(float) * unit
    overall = float(own.median()) if own.notna().any() else np.nan
    typical = own.groupby(g.to_numpy()).median().reindex(g.to_numpy()).fillna(overall).to_numpy(dtype=float)
    gaps = (c["occasions"] - 1).clip(lower=0).to_numpy(dtype=float)
    cycle = np.where(own.notna(), (own.fillna(0).to_numpy() * gaps + typical * prior_gaps) / (gaps + prior_gaps),
                     typical).astype(float)
    recency = (end_day - last_day).astype(float)
    last = pd.to_datetime(last_day * customers.DAY_NS)
    out = pd.DataFrame({"code": c["code"].to_numpy(dtype=np.int64), "occasions": c["occasions"].to_numpy(),
                        "median_gap_days": own.to_numpy(), "cycle_days": cycle, "recency_days": recency,
                        "last_purchase": last,
                        "expected_next": last + pd.to_timedelta(np.nan_to_num(cycle, nan=0.0).round(), unit="D")},
                       index=c.index)
    out.loc[np.isnan(cycle), "expected_next"] = pd.NaT
    if isinstance(lost, pd.Series):
        gone = lost.reindex(c.index).astype("boolean").fillna(False).to_numpy(dtype=bool)
    elif lost is not None:
        gone = recency > float(lost)
    else:
        gone = np.zeros(len(out), dtype=bool)
    out["lost"] = gone
    late = recency > k * cycle  # False where there is no cycle at all (NaN compares False)
    out["overdue"] = late & ~gone
    out["days_overdue"] = np.where(out["overdue"], np.clip(recency - k * cycle, 0, None), 0.0)
    return out


def lifecycle_stage(tx: pd.DataFrame | None, at: pd.Timestamp, period_days: int = 90, growth: float = 0.25,
                    decline: float = 0.25, lapsed_factor: float = 2.0, groups: pd.Series | None = None,
                    prior_gaps: float = 2.0, p: customers.Purchases | None = None, occasion: str = "day") -> pd.Series:
    """Each customer's lifecycle stage at `at` (customers who bought by then): acquisition, lapsed, growth,
    maturity or decline (see the module doc; the cycle is `purchase_cycles`' with the same shrinkage)."""
    at = pd.Timestamp(at).normalize()
    p = customers.purchases(tx) if p is None else p  # ids coded once for the cycles and the spend
    cyc = purchase_cycles(None, at, groups, lapsed_factor, prior_gaps, p=p, occasion=occasion)
    cut = p.ns < (at + pd.Timedelta(days=1)).value
    code, day, amount = p.code[cut], p.day[cut], p.amount[cut]
    start = (at - pd.Timedelta(days=period_days)).value // customers.DAY_NS  # the last period: (start, at]
    recent = day > start
    spend_recent = np.bincount(code, weights=np.where(recent, amount, 0.0), minlength=len(p.ids))
    spend_before = np.bincount(code, weights=np.where(recent, 0.0, amount), minlength=len(p.ids))
    first = np.full(len(p.ids), np.iinfo(np.int64).max)
    np.minimum.at(first, code, day)
    where = cyc["code"].to_numpy(dtype=np.int64)
    periods_before = np.maximum((start - first[where]) / period_days, 1.0)
    rate_before = spend_before[where] / periods_before
    ratio = np.divide(spend_recent[where], rate_before, out=np.full(len(where), np.inf), where=rate_before > 0)
    stage = np.where(ratio >= 1 + growth, "growth", np.where(ratio <= 1 - decline, "decline", "maturity"))
    stage = np.where(cyc["recency_days"].to_numpy() > lapsed_factor * cyc["cycle_days"].to_numpy(), "lapsed", stage)
    stage = np.where(first[where] > start, "acquisition", stage)
    return pd.Series(stage, index=cyc.index, name="lifecycle_stage")


def lifecycle_flow(tx: pd.DataFrame | None, end: pd.Timestamp, period_days: int = 90,
                   p: customers.Purchases | None = None, **rules) -> tuple[pd.Series, pd.DataFrame]:
    """Stages now and one period earlier, and the transition table (rows: the earlier stage, 'not yet a
    customer' for those acquired since; columns: the stage now; cells: customers)."""
    end = pd.Timestamp(end).normalize()
    p = customers.purchases(tx) if p is None else p
    now = lifecycle_stage(None, end, period_days, p=p, **rules)
    before = lifecycle_stage(None, end - pd.Timedelta(days=period_days), period_days, p=p, **rules)
    prev = before.reindex(now.index).fillna(NOT_YET)
    order = [NOT_YET, *STAGES]
    table = pd.crosstab(prev.to_numpy(), now.to_numpy()).reindex(index=order, columns=list(STAGES), fill_value=0)
    table.index.name, table.columns.name = "stage before", "stage now"
    return now, table


# --------------------------------------------------------------------------- cross-sell
def basket_of(customer: np.ndarray, item: np.ndarray, ids: pd.Index, items: pd.Index) -> pd.DataFrame:
    """Customer x item booleans from integer codes (an item code below 0, a missing item, is skipped): one row
    per customer with at least one item."""
    ok = item >= 0
    m = np.zeros((len(ids), len(items)), dtype=bool)
    m[customer[ok], item[ok]] = True
    has = m.any(axis=1)
    return pd.DataFrame(m[has], index=pd.Index(np.asarray(ids, dtype=object)[has], name="customer_id"),
                        columns=items)


def baskets(tx: pd.DataFrame, item: str = "product") -> pd.DataFrame:
    """Customer x item: True where the customer bought the item (one row per customer, items as columns)."""
    cust, ids = pd.factorize(tx["customer_id"].astype(str), sort=True)
    code, items = customers.item_codes(tx[item])
    return basket_of(cust, code, pd.Index(ids), items)


NEVER = np.iinfo(np.int64).max  # the first day of an item a customer never bought


def first_days(customer: np.ndarray, item: np.ndarray, day: np.ndarray, n: int, m: int) -> np.ndarray:
    """Customer x item: the first day each customer bought each item (NEVER where they did not)."""
    ok = item >= 0
    out = np.full((n, m), NEVER, dtype=np.int64)
    np.minimum.at(out, (customer[ok], item[ok]), day[ok].astype(np.int64))
    return out


def _rate_by_count(k: np.ndarray, among: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """For each number of products held (index): the share of the customers `among` who `hit` (NaN where none).
    The baseline a rule must beat: heavy buyers hold everything, so customers are compared at equal counts."""
    kmax = int(k.max()) + 1 if len(k) else 1
    total = np.bincount(k[among], minlength=kmax)
    return np.divide(np.bincount(k[among], weights=hit[among], minlength=kmax), total, out=np.full(kmax, np.nan),
                     where=total > 0)


def _matched_rate(held: np.ndarray, a: int, b: int, k: np.ndarray) -> np.ndarray:
    """For each customer: the share holding b among customers who hold as many products as they do and not a."""
    return _rate_by_count(k, ~held[:, a], held[:, b])[k]


def sequence_rules(first: np.ndarray, items: pd.Index, min_support: float = 0.02, min_confidence: float = 0.3,
                   min_lift: float = 1.2, max_p_value: float = 0.05) -> pd.DataFrame:
    """Directed rules 'A -> B' from each customer's first day of each item (`first_days`), strongest first.

    support: share of customers who bought B on a later day than A; confidence: share of A's buyers who did;
    lift: the share of A's buyers holding B against the customers holding as many products without A (so heavy
    buyers holding everything do not make unrelated items look related); kept when both one-sided tests hold at
    `max_p_value`: A's buyers hold B more often than that baseline (binomial), and of the customers who bought both
    on different days more bought A first (sign test). A rule is only ever read in the direction observed."""
    from scipy.stats import binomtest

    cols = ["antecedent", "consequent", "support", "confidence", "lift", "antecedent_support", "customers",
            "a_first", "b_first", "p_value"]
    held = first < NEVER
    keep = held.any(axis=1)
    first, held = first[keep], held[keep]
    n = len(first)
    rows = []
    if n == 0 or held.shape[1] < 2:
        return pd.DataFrame(columns=cols)
    k = held.sum(axis=1)
    frequent = np.flatnonzero(held.mean(axis=0) >= min_support)
    for a in frequent:
        has_a = held[:, a]
        n_a = int(has_a.sum())
        for b in frequent:
            if a == b:
                continue
            both = has_a & held[:, b]
            a_first = int((both & (first[:, a] < first[:, b])).sum())
            b_first = int((both & (first[:, b] < first[:, a])).sum())
            support, confidence = a_first / n, a_first / n_a
            if support < min_support or confidence < min_confidence or a_first <= b_first:
                continue
            expected = float(np.nanmean(_matched_rate(held, a, b, k)[has_a]))
            holds = float(both.sum()) / n_a
            lift = holds / expected if expected > 0 else np.inf
            if lift < min_lift:
                continue
            p_assoc = binomtest(int(both.sum()), n_a, min(max(expected, 1e-12), 1.0), alternative="greater").pvalue
            p_order = binomtest(a_first, a_first + b_first, 0.5, alternative="greater").pvalue
            p = max(p_assoc, p_order)
            if p > max_p_value:
                continue
            rows.append({"antecedent": (str(items[a]),), "consequent": str(items[b]), "support": support,
                         "confidence": confidence, "lift": lift, "antecedent_support": n_a / n,
                         "customers": a_first, "a_first": a_first, "b_first": b_first, "p_value": p})
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["lift", "confidence", "support"], ascending=False, kind="stable").reset_index(drop=True)


def holdout_rules(rules: pd.DataFrame, first: np.ndarray, items: pd.Index, split_day: int,
                  min_lift: float) -> pd.DataFrame:
    """The rules that hold going forward: of the customers who had bought A but not B by `split_day`, the share who
    bought B after it, against the customers holding as many products by then without A or B. Kept when that
    holdout lift is at least `min_lift`."""
    col = {str(c): i for i, c in enumerate(items)}
    held = first <= split_day
    k = held.sum(axis=1)
    known = k > 0
    later = (first > split_day) & (first < NEVER)
    conv, base = [], []
    for ant, c in zip(rules["antecedent"], rules["consequent"]):
        a, b = col[ant[0]], col[c]
        lacking = known & ~held[:, b]
        mine = lacking & held[:, a]
        rate = _rate_by_count(k, lacking & ~held[:, a], later[:, b])
        conv.append(float(later[mine, b].mean()) if mine.any() else 0.0)
        base.append(float(np.nanmean(rate[k[mine]])) if mine.any() else np.nan)
    out = rules.assign(holdout_conversion=conv, holdout_baseline=base)
    out["holdout_lift"] = out["holdout_conversion"] / out["holdout_baseline"].where(out["holdout_baseline"] > 0)
    out.loc[(out["holdout_baseline"] == 0) & (out["holdout_conversion"] > 0), "holdout_lift"] = np.inf
    return out[out["holdout_lift"] >= min_lift].reset_index(drop=True)


def _holders(m: np.ndarray, col: dict, antecedent: tuple) -> np.ndarray | None:
    """Rows of a basket matrix holding every antecedent item (None when an item is not in the basket)."""
    if any(i not in col for i in antecedent):
        return None
    return m[:, [col[i] for i in antecedent]].all(axis=1)


def next_best_product(basket: pd.DataFrame, rules: pd.DataFrame) -> pd.DataFrame:
    """Per customer: the consequent of the strongest rule (rules come strongest first) whose antecedent they
    bought and whose consequent they have not, and that rule as text; customers with no such rule are left out."""
    m, col = basket.to_numpy(dtype=bool), {c: i for i, c in enumerate(basket.columns)}
    pick = np.full(len(m), -1)
    for r, (a, c) in enumerate(zip(rules["antecedent"], rules["consequent"])):
        has_a = _holders(m, col, a)
        if has_a is None or c not in col:
            continue
        pick[has_a & ~m[:, col[c]] & (pick < 0)] = r
    rows = np.flatnonzero(pick >= 0)
    cons = rules["consequent"].to_numpy(dtype=object)
    text = np.array([f"{' + '.join(a)} -> {c}" for a, c in zip(rules["antecedent"], rules["consequent"])], dtype=object)
    return pd.DataFrame({"customer_id": basket.index.to_numpy()[rows], "suggested_product": cons[pick[rows]],
                         "rule": text[pick[rows]]})


# --------------------------------------------------------------------------- the stage
@dataclass
class JourneyResult:
    customers: pd.DataFrame         # customer_id, lifecycle_stage, cycle_days, expected_next, overdue, ...
    stages: pd.DataFrame            # per stage: customers, revenue, CLV
    transitions: pd.DataFrame       # stage a period ago (rows) x stage now (columns)
    cycles_by_segment: pd.DataFrame  # per segment: customers, median cycle, share overdue
    overdue: pd.DataFrame           # the overdue customers, most value at stake first
    channels: dict[str, pd.DataFrame] | None
    rules: pd.DataFrame | None
    end: pd.Timestamp
    notes: list[str] = field(default_factory=list)
    overview: dict = field(default_factory=dict)  # the fields of the report's opening sentence
    occasion: str = "day"           # what one purchase occasion was (the study's, resolved)


def cross_sell(b: aggregates.Book, cc) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Directed product rules mined before the holdout and kept when they hold on it, and each customer's next best
    product (indexed by customer id), from the first day each customer bought each product."""
    p = b.p
    item, items = b.items["item"].to_numpy(np.int64), b.item_names.rename("product")
    code = b.items["code"].to_numpy(np.int64)
    first = first_days(code, item, b.items["day"].to_numpy(np.int64), len(p.ids), len(items))
    split = int(np.datetime64((b.end - pd.Timedelta(days=cc.holdout_days)).date(), "D").astype(np.int64))
    mined = np.where(first <= split, first, NEVER) if cc.holdout_days else first
    rules = sequence_rules(mined, items, cc.min_support, cc.min_confidence, cc.min_lift, cc.max_p_value)
    if cc.holdout_days and len(rules):
        rules = holdout_rules(rules, first, items, split, cc.min_lift)
    return rules, next_best_product(basket_of(code, item, p.ids, items), rules).set_index("customer_id")


def stage_table(cust: pd.DataFrame) -> pd.DataFrame:
    """Customers, revenue and CLV by lifecycle stage, with each stage's share and strategy."""
    stages = cust.groupby("lifecycle_stage").agg(customers=("revenue", "size"), revenue=("revenue", "sum"),
                                                 total_clv=("clv", "sum"), mean_clv=("clv", "mean"))
    stages = stages.reindex(list(STAGES)).fillna({"customers": 0, "revenue": 0.0, "total_clv": 0.0})
    stages["share_of_customers"] = stages["customers"] / max(len(cust), 1)
    stages["strategy"] = [i18n.t(f"journey.stage_strategy_{s}") for s in stages.index]
    return stages


def build_journey(study: Study, b: aggregates.Book, rfm: pd.DataFrame, clv: pd.DataFrame | None,
                  attrs: pd.DataFrame | None = None, risk: pd.DataFrame | None = None) -> JourneyResult:
    """Everything the journey stage computes, from the engine's aggregates of the clean transactions
    (`cvlib.engines.aggregates.book`), the RFM (and CLV) tables, the customer attributes (acquisition channel and
    cost) and the churn flags of the drivers stage (who is already lost; retention by channel)."""
    cfg = study.journey
    end, p, occasion = b.end, b.p, b.occasion
    seg = io.by_customer(rfm)["segment"].astype(str)
    value = (io.by_customer(clv)["clv"]
             if clv is not None else pd.Series(dtype=float))
    churned = (io.by_customer(risk)["churned"].astype(bool)
               if risk is not None and "churned" in risk.columns else None)
    notes: list[str] = []
    if churned is None:
        notes.append(i18n.t("journey.note_lost_by_silence", days=study.drivers.churn_days))
    if occasion in ("day", "order") and study.clv.contracts.enabled:
        notes.append(i18n.for_consultant("journey.note_occasion_contracts"))
    cyc = purchase_cycles(None, end, seg, cfg.cycles.overdue_k, cfg.cycles.prior_gaps, p=p, occasion=occasion,
                          lost=churned if churned is not None else float(study.drivers.churn_days))
    lc = cfg.lifecycle
    now, transitions = lifecycle_flow(None, end, lc.period_days, p=p, growth=lc.growth, decline=lc.decline,
                                      lapsed_factor=lc.lapsed_factor, groups=seg, prior_gaps=cfg.cycles.prior_gaps,
                                      occasion=occasion)
    revenue = np.bincount(p.code, weights=p.amount, minlength=len(p.ids))[cyc["code"].to_numpy(dtype=np.int64)]
    cyc.index = pd.Index(np.asarray(cyc.index, dtype=object), name="customer_id")
    cust = cyc.drop(columns="code").assign(  # a customer already lost is lapsed, never in decline or maturity
        lifecycle_stage=np.where(cyc["lost"].to_numpy(dtype=bool), "lapsed", now.to_numpy()),
        segment=seg.reindex(cyc.index).to_numpy(), revenue=revenue,
        clv=value.reindex(cyc.index).to_numpy())
    stages = stage_table(cust)
    by_seg = cust.assign(overdue_clv=cust["clv"].where(cust["overdue"], 0.0)).groupby("segment").agg(
        customers=("revenue", "size"), median_cycle_days=("cycle_days", "median"), share_overdue=("overdue", "mean"),
        share_lost=("lost", "mean"), overdue_clv=("overdue_clv", "sum"))
    overdue = cust[cust["overdue"]].sort_values(["clv", "days_overdue"],
                                                ascending=False).reset_index(names="customer_id")
    channels = None
    if b.channels is not None:
        acquired = acquisition_channel(study, attrs, b.first_channels())
        cost = acquisition_costs(study, attrs, acquired)
        f = study.clv.formula.acquisition_cost
        channels = channel_mix_of(b, value if len(value) else None, churned, acquired,
                                  cost if cost is not None else (f if f else None))
    rules = None
    if b.items is not None:
        rules, best = cross_sell(b, cfg.cross_sell)
        cust = cust.join(best, how="left")
    cust = cust.reset_index(names="customer_id")
    overview = {"n": len(cust), "end": i18n.date(end), "k": f"{cfg.cycles.overdue_k:g}", "overdue": len(overdue),
                "lost": int(cust["lost"].sum()), "occasion": i18n.t(f"journey.occasion_{occasion}"),
                "period": lc.period_days}
    return JourneyResult(cust, stages.reset_index(names="lifecycle_stage"), transitions,
                         by_seg.reset_index(), overdue, channels, rules, end, notes, overview, occasion)


@i18n.in_study_language
def run_journey(study: Study, run_dir: str | Path) -> JourneyResult:
    """Read the clean transactions and the RFM (and CLV) tables; write journey.parquet and journey.json."""
    run_dir = Path(run_dir)
    with duckdb_parquet(io.stage_file(run_dir, "transactions_clean.parquet")) as t:
        b = aggregates.book(t, study.occasion)
    res = build_journey(study, b, io.read_stage(run_dir, "rfm.parquet"),
                        io.read_stage(run_dir, "clv.parquet", optional=True),
                        reading.read_attributes(study, "customers"),
                        io.read_stage(run_dir, "churn_risk.parquet", optional=True))
    cols = ["customer_id", "lifecycle_stage", "cycle_days", "recency_days", "expected_next", "lost", "overdue",
            "days_overdue"]
    cols += [c for c in ("suggested_product", "rule") if c in res.customers.columns]
    io.write_parquet(res.customers[cols].astype({"customer_id": io.STRING}), run_dir / "journey.parquet")
    io.write_json({"end": str(res.end.date()), "stages": res.stages.to_dict("records"),
                   "transitions": {str(k): {str(c): int(v) for c, v in row.items()}
                                   for k, row in res.transitions.iterrows()},
                   "occasion": res.occasion,
                   "overdue_customers": int(len(res.overdue)), "lost_customers": int(res.customers["lost"].sum()),
                   "rules": [] if res.rules is None else [
                       {"antecedent": list(a), "consequent": c, "support": s, "confidence": f, "lift": lift}
                       for a, c, s, f, lift in zip(res.rules["antecedent"], res.rules["consequent"],
                                                   res.rules["support"], res.rules["confidence"], res.rules["lift"])],
                   "notes": res.notes}, run_dir / "journey.json")
    return res
