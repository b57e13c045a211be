"""The customer journey: each customer's purchase cycle and whether they are overdue, their lifecycle stage and
how stages flow from one period to the next, and cross-sell rules from what customers buy together.

- **Cycle**: the median number of days between a customer's purchase days, shrunk toward their group's cycle
  when they have few gaps (one-time buyers get the group's cycle); the next purchase is expected one cycle
  after the last; a customer is **overdue** when the days since their last purchase exceed k cycles.
- **Lifecycle stage** at a date: *acquisition* (first purchase within the last period), *lapsed* (past their
  own expected return time: recency over `lapsed_factor` cycles), else *growth*, *maturity* or *decline* by
  their spend in the last period against their own mean spend per period before it.
- **Cross-sell rules**: association rules (support, confidence, lift) over customer baskets, mined with
  mlxtend's FP-growth, kept when they also hold on a later holdout period; each customer's next best product
  is the consequent of the strongest rule whose antecedent they hold and whose consequent they lack.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib import churn, io
from cvlib.params import Study

STAGES = ("acquisition", "growth", "maturity", "decline", "lapsed")
NOT_YET = "not yet a customer"


def purchase_cycles(tx: pd.DataFrame, end: pd.Timestamp, groups: pd.Series | None = None, k: float = 2.0,
                    prior_gaps: float = 2.0, p: churn.Purchases | None = None) -> pd.DataFrame:
    """Per customer who bought by `end` (index: customer id): occasions, own median gap, cycle_days (own median
    shrunk toward the group's: (own x gaps + group x prior_gaps) / (gaps + prior_gaps); the group's for one-time
    buyers), recency_days, expected_next, overdue (recency over k cycles) and days_overdue."""
    c = churn.cycles_at(churn.purchases(tx) if p is None else p, end)
    end_day = pd.Timestamp(end).normalize().value // churn.DAY_NS
    g = (groups.reindex(c.index) if groups is not None else pd.Series("all", index=c.index)).fillna("unknown")
    own = c["median_gap"]
    overall = float(own.median()) if own.notna().any() else np.nan
    own = own.astype(float)
    typical = own.groupby(g).median().reindex(g.to_numpy()).fillna(overall).to_numpy(dtype=float)
    gaps = (c["occasions"] - 1).clip(lower=0).to_numpy(dtype=float)
    cycle = np.where(own.notna(), (own.fillna(0).to_numpy() * gaps + typical * prior_gaps) / (gaps + prior_gaps),
                     typical).astype(float)
    recency = (end_day - c["last"]).to_numpy(dtype=float)
    last = pd.to_datetime(c["last"].to_numpy() * churn.DAY_NS)
    out = pd.DataFrame({"occasions": c["occasions"].to_numpy(), "median_gap_days": own.to_numpy(),
                        "cycle_days": cycle, "recency_days": recency, "last_purchase": last,
                        "expected_next": last + pd.to_timedelta(np.nan_to_num(cycle, nan=0.0).round(), unit="D")},
                       index=c.index)
    out.loc[np.isnan(cycle), "expected_next"] = pd.NaT
    out["overdue"] = recency > k * cycle  # False where there is no cycle at all (NaN compares False)
    out["days_overdue"] = np.clip(recency - k * cycle, 0, None)
    return out


def lifecycle_stage(tx: pd.DataFrame, at: pd.Timestamp, period_days: int = 90, growth: float = 0.25,
                    decline: float = 0.25, lapsed_factor: float = 2.0, groups: pd.Series | None = None,
                    prior_gaps: float = 2.0) -> pd.Series:
    """Each customer's lifecycle stage at `at` (customers who bought by then): acquisition, lapsed, growth,
    maturity or decline (see the module doc; the cycle is `purchase_cycles`' with the same shrinkage)."""
    at = pd.Timestamp(at).normalize()
    known = tx[tx["date"] < at + pd.Timedelta(days=1)]
    p = churn.purchases(known)  # ids coded once for the cycles and the spend
    cyc = purchase_cycles(known, at, groups, lapsed_factor, prior_gaps, p=p)
    start = (at - pd.Timedelta(days=period_days)).value // churn.DAY_NS  # the last period: (start, at]
    recent = p.day > start
    spend_recent = np.bincount(p.code, weights=np.where(recent, p.amount, 0.0), minlength=len(p.ids))
    spend_before = np.bincount(p.code, weights=np.where(recent, 0.0, p.amount), minlength=len(p.ids))
    first = np.full(len(p.ids), np.iinfo(np.int64).max)
    np.minimum.at(first, p.code, p.day)
    where = p.ids.get_indexer(cyc.index)
    periods_before = np.maximum((start - first[where]) / period_days, 1.0)
    rate_before = spend_before[where] / periods_before
    ratio = np.divide(spend_recent[where], rate_before, out=np.full(len(where), np.inf), where=rate_before > 0)
    stage = np.where(ratio >= 1 + growth, "growth", np.where(ratio <= 1 - decline, "decline", "maturity"))
    stage = np.where(cyc["recency_days"].to_numpy() > lapsed_factor * cyc["cycle_days"].to_numpy(), "lapsed", stage)
    stage = np.where(first[where] > start, "acquisition", stage)
    return pd.Series(stage, index=cyc.index, name="lifecycle_stage")


def lifecycle_flow(tx: pd.DataFrame, end: pd.Timestamp, period_days: int = 90, **rules) -> tuple[pd.Series, pd.DataFrame]:
    """Stages now and one period earlier, and the transition table (rows: the earlier stage, 'not yet a
    customer' for those acquired since; columns: the stage now; cells: customers)."""
    end = pd.Timestamp(end).normalize()
    now = lifecycle_stage(tx, end, period_days, **rules)
    before = lifecycle_stage(tx, end - pd.Timedelta(days=period_days), period_days, **rules)
    prev = before.reindex(now.index).fillna(NOT_YET)
    order = [NOT_YET, *STAGES]
    table = pd.crosstab(prev, now).reindex(index=order, columns=list(STAGES), fill_value=0)
    table.index.name, table.columns.name = "stage before", "stage now"
    return now, table


# --------------------------------------------------------------------------- cross-sell
def baskets(tx: pd.DataFrame, item: str = "product") -> pd.DataFrame:
    """Customer x item: True where the customer bought the item (one row per customer, items as columns)."""
    d = tx[["customer_id", item]].dropna()
    cust, ids = pd.factorize(d["customer_id"].astype(str), sort=True)
    code, items = pd.factorize(d[item].astype(str), sort=True)
    m = np.zeros((len(ids), len(items)), dtype=bool)
    m[cust, code] = True
    return pd.DataFrame(m, index=pd.Index(ids, name="customer_id"), columns=pd.Index(items, name=item))


def association_rules(basket: pd.DataFrame, min_support: float = 0.02, min_confidence: float = 0.3,
                      min_lift: float = 1.2, max_len: int = 3) -> pd.DataFrame:
    """Rules 'antecedent -> consequent' (one consequent item) with support, confidence and lift at or above the
    thresholds, strongest first; frequent itemsets by mlxtend's FP-growth."""
    from mlxtend.frequent_patterns import association_rules as mx_rules
    from mlxtend.frequent_patterns import fpgrowth

    cols = ["antecedent", "consequent", "support", "confidence", "lift", "antecedent_support", "customers"]
    if basket.empty or basket.shape[1] < 2:
        return pd.DataFrame(columns=cols)
    items = fpgrowth(basket, min_support=min_support, use_colnames=True, max_len=max_len)
    if items.empty or items["itemsets"].map(len).max() < 2:
        return pd.DataFrame(columns=cols)
    r = mx_rules(items, metric="confidence", min_threshold=min_confidence, num_itemsets=len(basket))
    r = r[(r["consequents"].map(len) == 1) & (r["lift"] >= min_lift)]
    out = pd.DataFrame({"antecedent": r["antecedents"].map(lambda s: tuple(sorted(s))),
                        "consequent": r["consequents"].map(lambda s: next(iter(s))),
                        "support": r["support"].to_numpy(), "confidence": r["confidence"].to_numpy(),
                        "lift": r["lift"].to_numpy(), "antecedent_support": r["antecedent support"].to_numpy()})
    out["customers"] = (out["support"] * len(basket)).round().astype(int)
    return out.sort_values(["lift", "confidence", "support"], ascending=False, kind="stable").reset_index(drop=True)[cols]


def rule_metrics(basket: pd.DataFrame, antecedent: tuple, consequent: str) -> tuple[float, float, float]:
    """Support, confidence and lift of one rule on a basket table (0 where an item is absent)."""
    n = len(basket)
    if not n or any(i not in basket.columns for i in (*antecedent, consequent)):
        return 0.0, 0.0, 0.0
    has_a = basket[list(antecedent)].all(axis=1)
    both = (has_a & basket[consequent]).sum() / n
    conf = both / (has_a.sum() / n) if has_a.any() else 0.0
    p_c = basket[consequent].mean()
    return float(both), float(conf), float(conf / p_c) if p_c > 0 else 0.0


def holdout_rules(rules: pd.DataFrame, holdout_basket: pd.DataFrame, min_confidence: float, min_lift: float) -> pd.DataFrame:
    """The rules that still hold on a later period's baskets (confidence and lift there at or above the
    thresholds), with their holdout figures."""
    m = [rule_metrics(holdout_basket, a, c) for a, c in zip(rules["antecedent"], rules["consequent"])]
    out = rules.assign(holdout_support=[x[0] for x in m], holdout_confidence=[x[1] for x in m],
                       holdout_lift=[x[2] for x in m])
    keep = (out["holdout_confidence"] >= min_confidence) & (out["holdout_lift"] >= min_lift)
    return out[keep].reset_index(drop=True)


def next_best_product(basket: pd.DataFrame, rules: pd.DataFrame) -> pd.DataFrame:
    """Per customer: the consequent of the strongest rule (rules come strongest first) whose antecedent they
    bought and whose consequent they have not, and that rule as text; customers with no such rule are left out."""
    best: dict[str, tuple[str, str]] = {}
    for a, c in zip(rules["antecedent"], rules["consequent"]):
        if c not in basket.columns or any(i not in basket.columns for i in a):
            continue
        hit = basket[list(a)].all(axis=1) & ~basket[c]
        for cust in hit.index[hit.to_numpy()]:
            best.setdefault(cust, (c, f"{' + '.join(a)} -> {c}"))
    return pd.DataFrame([(k, v[0], v[1]) for k, v in best.items()],
                        columns=["customer_id", "suggested_product", "rule"])


# --------------------------------------------------------------------------- channels
def channel_mix(tx: pd.DataFrame, clv: pd.Series | None = None, churned: pd.Series | None = None,
                acquisition: pd.Series | None = None,
                cac: pd.Series | dict[str, float] | float | None = None) -> dict[str, pd.DataFrame]:
    """What each channel brings, from transactions with a `channel` column (`clv`, `churned`, `acquisition`
    channel and `cac`: per customer id; `cac` may also be a cost per acquisition channel or one cost):

    - `acquisition`: by acquisition channel (`acquisition`, else the channel of the first purchase): customers,
      revenue, mean and total CLV, conversion (share who came back for a second purchase day), and with
      acquisition costs the mean CAC, CLV/CAC and ROI ((total CLV - total cost) / total cost);
    - `used`: by channel used: customers who bought through it, the revenue through it, their mean CLV and
      CLV/CAC;
    - `multi`: multi-channel against single-channel customers: customers, mean revenue, mean CLV, retention;
    - `migration`: customers by first channel (rows) and last channel (columns) of their purchases."""
    d = tx[["customer_id", "date", "amount", "channel"]].assign(customer_id=lambda x: x["customer_id"].astype(str),
                                                                 channel=lambda x: x["channel"].astype(str))
    d = d.sort_values(["customer_id", "date"], kind="stable")
    per = d.groupby("customer_id").agg(first_channel=("channel", "first"), last_channel=("channel", "last"),
                                       channels=("channel", "nunique"), revenue=("amount", "sum"))
    per["days"] = d.assign(day=d["date"].dt.normalize()).drop_duplicates(["customer_id", "day"]).groupby(
        "customer_id").size().reindex(per.index).to_numpy()
    per["acquired_by"] = (acquisition.reindex(per.index).fillna("unknown").astype(str).to_numpy()
                          if acquisition is not None else per["first_channel"].to_numpy())
    per["converted"] = per["days"] >= 2
    per["clv"] = clv.reindex(per.index).to_numpy(dtype=float) if clv is not None else np.nan
    per["retained"] = (~churned.reindex(per.index).astype("boolean")).to_numpy(dtype=float, na_value=np.nan) \
        if churned is not None else np.nan
    if isinstance(cac, pd.Series):
        per["cac"] = cac.reindex(per.index).to_numpy(dtype=float)
    elif isinstance(cac, dict):
        per["cac"] = per["acquired_by"].map(cac).astype(float)
    elif cac is not None:
        per["cac"] = float(cac)
    costs = {"cac": ("cac", "mean"), "spent": ("cac", "sum")} if cac is not None else {}
    acq = per.groupby("acquired_by").agg(customers=("revenue", "size"), revenue=("revenue", "sum"),
                                         mean_clv=("clv", "mean"), total_clv=("clv", "sum"),
                                         conversion=("converted", "mean"), **costs)
    if cac is not None:
        acq["clv_to_cac"] = acq["mean_clv"] / acq["cac"].where(acq["cac"] > 0)
        acq["roi"] = (acq["total_clv"] - acq["spent"]) / acq["spent"].where(acq["spent"] > 0)
        acq = acq.drop(columns="spent")
    pairs = d.groupby(["channel", "customer_id"])["amount"].sum().reset_index()
    pairs = pairs.join(per[["clv", *(["cac"] if cac is not None else [])]], on="customer_id")
    used = pairs.groupby("channel").agg(customers=("customer_id", "size"), revenue=("amount", "sum"),
                                        mean_clv=("clv", "mean"), **({"cac": ("cac", "mean")} if cac is not None else {}))
    if cac is not None:
        used["clv_to_cac"] = used["mean_clv"] / used["cac"].where(used["cac"] > 0)
        used = used.drop(columns="cac")
    per["reach"] = np.where(per["channels"] > 1, "multi-channel", "single channel")
    multi = per.groupby("reach").agg(customers=("revenue", "size"), mean_revenue=("revenue", "mean"),
                                     mean_clv=("clv", "mean"), retention_rate=("retained", "mean"))
    migration = pd.crosstab(per["first_channel"], per["last_channel"])
    migration.index.name, migration.columns.name = "first channel", "last channel"
    return {"acquisition": acq.reset_index().rename(columns={"acquired_by": "channel"}),
            "used": used.reset_index(), "multi": multi.reset_index(), "migration": migration}


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


def build_journey(study: Study, tx: pd.DataFrame, rfm: pd.DataFrame, clv: pd.DataFrame | None,
                  attrs: pd.DataFrame | None = None, risk: pd.DataFrame | None = None) -> JourneyResult:
    """Everything the journey stage computes, from clean transactions, the RFM (and CLV) tables, the customer
    attributes (acquisition channel and cost) and the churn flags of the drivers stage (retention by channel)."""
    cfg = study.journey
    end = pd.Timestamp(tx["date"].max()).normalize()
    seg = io.by_customer(rfm)["segment"].astype(str)
    value = (io.by_customer(clv)["clv"]
             if clv is not None else pd.Series(dtype=float))
    cyc = purchase_cycles(tx, end, seg, cfg.cycles.overdue_k, cfg.cycles.prior_gaps)
    cyc.index = cyc.index.astype(str)
    lc = cfg.lifecycle
    now, transitions = lifecycle_flow(tx, end, lc.period_days, growth=lc.growth, decline=lc.decline,
                                      lapsed_factor=lc.lapsed_factor, groups=seg, prior_gaps=cfg.cycles.prior_gaps)
    now.index = now.index.astype(str)
    revenue = tx.groupby(io.as_ids(tx["customer_id"]).astype(str))["amount"].sum()
    cust = cyc.assign(lifecycle_stage=now.reindex(cyc.index).to_numpy(), segment=seg.reindex(cyc.index).to_numpy(),
                      revenue=revenue.reindex(cyc.index).to_numpy(), clv=value.reindex(cyc.index).to_numpy())
    stages = cust.groupby("lifecycle_stage").agg(customers=("revenue", "size"), revenue=("revenue", "sum"),
                                                 total_clv=("clv", "sum"), mean_clv=("clv", "mean"))
    stages = stages.reindex(list(STAGES)).fillna({"customers": 0, "revenue": 0.0, "total_clv": 0.0})
    stages["share_of_customers"] = stages["customers"] / max(len(cust), 1)
    by_seg = cust.assign(overdue_clv=cust["clv"].where(cust["overdue"], 0.0)).groupby("segment").agg(
        customers=("revenue", "size"), median_cycle_days=("cycle_days", "median"), share_overdue=("overdue", "mean"),
        overdue_clv=("overdue_clv", "sum"))
    overdue = cust[cust["overdue"]].sort_values(["clv", "days_overdue"], ascending=False).reset_index(names="customer_id")
    notes: list[str] = []
    channels = None
    if "channel" in tx.columns:
        from cvlib.clv import acquisition_channel, acquisition_costs

        acquired = acquisition_channel(study, tx, attrs)
        churned = (io.by_customer(risk)["churned"]
                   if risk is not None and "churned" in risk.columns else None)
        cost = acquisition_costs(study, attrs, acquired)
        f = study.clv.formula.acquisition_cost
        channels = channel_mix(tx, value if len(value) else None, churned, acquired,
                               cost if cost is not None else (f if f else None))
    rules = None
    if "product" in tx.columns:
        cc = cfg.cross_sell
        split = end - pd.Timedelta(days=cc.holdout_days)
        early = tx[tx["date"] <= split] if cc.holdout_days else tx
        rules = association_rules(baskets(early), cc.min_support, cc.min_confidence, cc.min_lift, cc.max_len)
        if cc.holdout_days and len(rules):
            rules = holdout_rules(rules, baskets(tx[tx["date"] > split]), cc.min_confidence, cc.min_lift)
        best = next_best_product(baskets(tx), rules).set_index("customer_id")
        cust = cust.join(best, how="left")
    cust = cust.reset_index(names="customer_id")
    return JourneyResult(cust, stages.reset_index(names="lifecycle_stage"), transitions,
                         by_seg.reset_index(), overdue, channels, rules, end, notes)


def run_journey(study: Study, run_dir: str | Path) -> JourneyResult:
    """Read the clean transactions and the RFM (and CLV) tables; write journey.parquet and journey.json."""
    run_dir = Path(run_dir)
    res = build_journey(study, io.read_stage(run_dir, "transactions_clean.parquet"),
                        io.read_stage(run_dir, "rfm.parquet"), io.read_stage(run_dir, "clv.parquet", optional=True),
                        io.read_attributes(study, "customers"),
                        io.read_stage(run_dir, "churn_risk.parquet", optional=True))
    cols = ["customer_id", "lifecycle_stage", "cycle_days", "expected_next", "overdue", "days_overdue"]
    cols += [c for c in ("suggested_product", "rule") if c in res.customers.columns]
    io.write_parquet(res.customers[cols].astype({"customer_id": io.STRING}), run_dir / "journey.parquet")
    io.write_json({"end": str(res.end.date()), "stages": res.stages.to_dict("records"),
                   "transitions": {str(k): {str(c): int(v) for c, v in row.items()}
                                   for k, row in res.transitions.iterrows()},
                   "overdue_customers": int(len(res.overdue)),
                   "rules": [] if res.rules is None else [
                       {"antecedent": list(a), "consequent": c, "support": s, "confidence": f, "lift": lift}
                       for a, c, s, f, lift in zip(res.rules["antecedent"], res.rules["consequent"],
                                                   res.rules["support"], res.rules["confidence"], res.rules["lift"])],
                   "notes": res.notes}, run_dir / "journey.json")
    return res
