"""Campaign evaluation: what a campaign changed, measured against its control group.

The campaigns table gives, per customer, the campaign, the group (treatment or control, any case) and the
campaign date. Outcomes are measured in the `window_days` after the date (the day itself excluded), from the clean
transactions:

- **purchase rate**: the share who bought in the window;
- **revenue**: revenue per customer in the window, adjusted for the same-length window before the date (the
  change in each customer's revenue, a difference in differences): customers' revenue is persistent and skewed,
  so a chance imbalance of large customers between the groups would otherwise swamp the effect; the unadjusted
  difference is shown beside it;
- **retention**: among customers who bought in the same-length window before the date, the share who bought again.

For each campaign and outcome: treatment and control means, the uplift (difference), its bootstrap 95% interval
(customers resampled within each group, seeded) and a test (Welch's t-test for revenue, the two-proportion z-test
for rates). Also the sample-ratio check (chi-square of the group sizes against the planned treatment share: a
mismatch means the assignment did not go as planned and the uplift may be biased), the return on the campaign's
cost (incremental gross profit = revenue uplift x treated customers x margin), the pre/post ratio of revenue per
group and the relative revenue uplift (uplift / control mean), which `strategy.measured_uplift` can use in place
of an action's assumed uplift.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from cvlib import i18n, io, reading
from cvlib.engines import aggregates, duckdb_parquet
from cvlib.params import Study

GROUPS = ("treatment", "control")
OUTCOMES = ("purchase_rate", "revenue", "revenue_unadjusted", "retention")


@dataclass
class CampaignResult:
    outcomes: pd.DataFrame      # per customer and campaign: group, bought, revenue, revenue_before, retained
    uplift: pd.DataFrame        # per campaign and outcome: means, uplift, interval, p-value
    summary: pd.DataFrame       # per campaign: sizes, sample-ratio check, cost, ROI, pre/post, relative uplift
    set_aside: pd.DataFrame     # rows of the campaigns table not used, with the reason
    notes: list[str] = field(default_factory=list)


def assignments(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The usable rows (customer_id, campaign, group in GROUPS, date) and the rows set aside with a reason: an
    unknown group, an unreadable date, no campaign name, or a customer listed twice in one campaign."""
    d = raw.assign(customer_id=raw["customer_id"].astype(str),
                   group=raw["group"].astype("string").str.strip().str.casefold(),
                   campaign=raw["campaign"].astype("string").str.strip(),
                   date=pd.to_datetime(raw["date"], errors="coerce"))
    reason = pd.Series(pd.NA, index=d.index, dtype="string")
    reason[~d["group"].isin(GROUPS)] = "unknown group (treatment or control)"
    reason[d["date"].isna() & reason.isna()] = "unreadable date"
    reason[(d["campaign"].isna() | (d["campaign"] == "")) & reason.isna()] = "no campaign name"
    dup = d.duplicated(["campaign", "customer_id"], keep="first") & reason.isna()
    reason[dup] = "customer listed twice in the campaign"
    bad = reason.notna()
    return (d.loc[~bad, ["customer_id", "campaign", "group", "date"]].reset_index(drop=True),
            raw.loc[bad].assign(reason=reason[bad].to_numpy()).reset_index(drop=True))


def outcomes(tx: pd.DataFrame, assigned: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """Per assigned customer: bought in the window after the campaign date, revenue there, revenue in the
    window before, and retained (bought after, among those who bought before; missing for the others)."""
    ids = pd.Index(io.as_ids(tx["customer_id"]).astype(str))
    day = tx["date"].to_numpy(dtype="datetime64[ns]")
    amount = tx["amount"].to_numpy(dtype=float)
    w = np.timedelta64(window_days, "D")
    rows = []
    for (camp, date), g in assigned.groupby(["campaign", "date"], sort=True):
        start = np.datetime64(pd.Timestamp(date).normalize() + pd.Timedelta(days=1), "ns")  # the day itself excluded
        before_start = np.datetime64(pd.Timestamp(date).normalize(), "ns") - w
        who = pd.Index(g["customer_id"]).get_indexer(ids)  # each transaction's customer in the campaign, or -1
        post = (who >= 0) & (day >= start) & (day < start + w)
        pre = (who >= 0) & (day >= before_start) & (day < start - np.timedelta64(1, "D"))
        n = len(g)
        n_after, n_before = np.bincount(who[post], minlength=n), np.bincount(who[pre], minlength=n)
        rows.append(pd.DataFrame({"campaign": camp, "date": date, "customer_id": g["customer_id"].to_numpy(),
                                  "group": g["group"].to_numpy(), "bought": (n_after > 0).astype(float),
                                  "revenue": np.bincount(who[post], weights=amount[post], minlength=n),
                                  "revenue_before": np.bincount(who[pre], weights=amount[pre], minlength=n),
                                  "retained": np.where(n_before > 0, (n_after > 0).astype(float), np.nan)}))
    cols = ["campaign", "date", "customer_id", "group", "bought", "revenue", "revenue_before", "retained"]
    return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)


def bootstrap_difference(t: np.ndarray, c: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of mean(t) - mean(c), customers resampled within each group."""
    if len(t) < 2 or len(c) < 2 or resamples <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    mt = t[rng.integers(0, len(t), (resamples, len(t)))].mean(axis=1)
    mc = c[rng.integers(0, len(c), (resamples, len(c)))].mean(axis=1)
    lo, hi = np.percentile(mt - mc, [2.5, 97.5])
    return float(lo), float(hi)


def test_difference(t: np.ndarray, c: np.ndarray, rate: bool) -> float:
    """Two-sided p-value: the two-proportion z-test for rates, Welch's t-test for amounts."""
    if len(t) < 2 or len(c) < 2:
        return float("nan")
    if rate:
        p = (t.sum() + c.sum()) / (len(t) + len(c))
        se = np.sqrt(p * (1 - p) * (1 / len(t) + 1 / len(c)))
        return float(2 * stats.norm.sf(abs(t.mean() - c.mean()) / se)) if se > 0 else float("nan")
    if np.var(t) == 0 and np.var(c) == 0:
        return 0.0 if t.mean() != c.mean() else 1.0
    return float(stats.ttest_ind(t, c, equal_var=False).pvalue)


def sample_ratio(n_t: int, n_c: int, share: float) -> float:
    """p-value of the chi-square test of the group sizes against the planned treatment share."""
    n = n_t + n_c
    if n == 0:
        return float("nan")
    return float(stats.chisquare([n_t, n_c], [n * share, n * (1 - share)]).pvalue)


def evaluate(out: pd.DataFrame, cfg, margin: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The uplift table (per campaign and outcome) and the summary (per campaign), see the module doc."""
    up, summ = [], []
    for i, (camp, g) in enumerate(out.groupby("campaign", sort=True)):
        t, c = g[g["group"] == "treatment"], g[g["group"] == "control"]
        g = g.assign(revenue_change=g["revenue"] - g["revenue_before"])
        t, c = g[g["group"] == "treatment"], g[g["group"] == "control"]
        for j, (name, col, rate) in enumerate((("purchase_rate", "bought", True), ("revenue", "revenue_change", False),
                                               ("revenue_unadjusted", "revenue", False),
                                               ("retention", "retained", True))):
            tv, cv = t[col].dropna().to_numpy(dtype=float), c[col].dropna().to_numpy(dtype=float)
            lo, hi = bootstrap_difference(tv, cv, cfg.bootstrap, cfg.seed + 101 * i + j)
            up.append({"campaign": camp, "outcome": name, "treatment_n": len(tv), "control_n": len(cv),
                       "treatment_mean": tv.mean() if len(tv) else np.nan,
                       "control_mean": cv.mean() if len(cv) else np.nan,
                       "uplift": (tv.mean() - cv.mean()) if len(tv) and len(cv) else np.nan,
                       "ci_low": lo, "ci_high": hi, "p_value": test_difference(tv, cv, rate)})
        share = cfg.treatment_share.get(camp, cfg.default_treatment_share)
        srm = sample_ratio(len(t), len(c), share)
        rev = up[-3]  # the adjusted revenue uplift
        control_mean = c["revenue"].mean() if len(c) else np.nan  # revenue per control customer after the date
        n_t = len(t)
        cost = cfg.costs.get(camp, np.nan) if camp in cfg.costs else cfg.cost_per_customer.get(camp, np.nan) * n_t
        gain = rev["uplift"] * n_t * margin
        pre_t, pre_c = t["revenue_before"].sum(), c["revenue_before"].sum()
        summ.append({"campaign": camp, "date": g["date"].iloc[0], "treatment": n_t, "control": len(c),
                     "planned_share": share, "treatment_share": n_t / max(len(g), 1), "sample_ratio_p": srm,
                     "sample_ratio_mismatch": bool(srm < 0.001),
                     "relative_uplift": rev["uplift"] / control_mean if control_mean else np.nan,
                     "relative_ci_low": rev["ci_low"] / control_mean if control_mean else np.nan,
                     "relative_ci_high": rev["ci_high"] / control_mean if control_mean else np.nan,
                     "incremental_revenue": rev["uplift"] * n_t, "incremental_profit": gain, "cost": cost,
                     "roi": (gain - cost) / cost if cost and cost == cost and cost > 0 else np.nan,
                     "post_pre_treatment": t["revenue"].sum() / pre_t if pre_t > 0 else np.nan,
                     "post_pre_control": c["revenue"].sum() / pre_c if pre_c > 0 else np.nan})
    return pd.DataFrame(up), pd.DataFrame(summ)


def build_campaign(study: Study, tx: pd.DataFrame | None, raw: pd.DataFrame | None) -> CampaignResult:
    """Everything the campaign stage computes from the campaigns table and the transactions (customer_id, date,
    amount: rows, or each customer's spend per day as the stage reads them), empty tables without a campaigns
    table. The windows are counted in whole days, so a day's total stands for its rows."""
    if raw is None:
        empty = pd.DataFrame()
        return CampaignResult(empty, empty, empty, empty)
    assigned, aside = assignments(raw)
    out = outcomes(tx, assigned, study.campaign.window_days)
    up, summ = evaluate(out, study.campaign, study.clv.margin) if len(out) else (pd.DataFrame(), pd.DataFrame())
    return CampaignResult(out, up, summ, aside)


@i18n.in_study_language
def run_campaign(study: Study, run_dir: str | Path) -> CampaignResult:
    """Read the clean transactions and the campaigns table; write campaign.json."""
    run_dir = Path(run_dir)
    raw = reading.read_attributes(study, "campaigns")
    clean, tx = io.stage_file(run_dir, "transactions_clean.parquet"), None
    if raw is not None:  # the campaign customers' spend per day, from the engine: all the windows need
        with duckdb_parquet(clean) as t:
            tx = aggregates.daily_spend(t, raw["customer_id"])
    res = build_campaign(study, tx, raw)
    io.write_json({"campaigns": [] if res.summary.empty else res.summary.to_dict("records"),
                   "uplift": [] if res.uplift.empty else res.uplift.to_dict("records"),
                   "rows_used": int(len(res.outcomes)), "rows_set_aside": int(len(res.set_aside)),
                   "window_days": study.campaign.window_days},
                  run_dir / "campaign.json")
    return res


def measured_uplift(run_dir: str | Path) -> dict[str, dict]:
    """campaign -> its summary record, from a run folder's campaign.json (empty when there is none), with the
    pre-period-adjusted revenue uplift per treated customer (`revenue_uplift`, `revenue_ci_low`, `revenue_ci_high`)
    and the window it was measured over (`window_days`)."""
    data = io.read_stage_json(Path(run_dir), "campaign.json", optional=True) or {}
    revenue = {u["campaign"]: u for u in data.get("uplift", []) if u.get("outcome") == "revenue"}
    out = {}
    for c in data.get("campaigns", []):
        u = revenue.get(c["campaign"], {})
        out[c["campaign"]] = {**c, "window_days": data.get("window_days"), "revenue_uplift": u.get("uplift"),
                              "revenue_ci_low": u.get("ci_low"), "revenue_ci_high": u.get("ci_high")}
    return out


def srm_sentences(res: CampaignResult) -> list[tuple[str, dict]]:
    """A warning sentence (catalogue key, fields) for each campaign whose split is not the planned one."""

    return [("campaign.srm", {"campaign": r.campaign, "t": f"{r.treatment:,}", "c": f"{r.control:,}",
                              "share": i18n.pct(r.planned_share), "p": f"{r.sample_ratio_p:.2g}"})
            for r in res.summary.itertuples() if r.sample_ratio_mismatch]


def uplift_view(uplift: pd.DataFrame, currency: str) -> pd.DataFrame:
    """The uplift table for reading: rates as percentages (uplift in points), revenue in money, p-values rounded
    (below 0.001 shown as such)."""

    def fmt(v: float, rate: bool, signed: bool = False) -> str:
        if v != v:
            return "–"
        if rate:
            return i18n.pct(v, 1, signed=signed)
        return i18n.money(v, currency, decimals=0, signed=signed)

    rows = []
    for r in uplift.itertuples():
        rate = r.outcome in ("purchase_rate", "retention")
        rows.append({"campaign": r.campaign, "outcome": r.outcome, "treatment_n": r.treatment_n,
                     "control_n": r.control_n, "treatment_mean": fmt(r.treatment_mean, rate),
                     "control_mean": fmt(r.control_mean, rate), "uplift": fmt(r.uplift, rate, True),
                     "ci_low": fmt(r.ci_low, rate, True), "ci_high": fmt(r.ci_high, rate, True),
                     "p_value": "–" if r.p_value != r.p_value else "< 0.001" if r.p_value < 0.001
                         else f"{r.p_value:.3f}"})
    return pd.DataFrame(rows)
