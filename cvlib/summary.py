"""The study summary: headline figures and key findings, as plain sentences generated from the numbers,
each pointing to the stage report that shows it. Reads whatever stage outputs the run folder holds."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib import io
from cvlib.stages import html_of


def _json(run_dir: Path, name: str) -> dict | None:
    p = run_dir / name
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def _parquet(run_dir: Path, name: str) -> pd.DataFrame | None:
    return io.read_stage(run_dir, name, optional=True)


@dataclass(frozen=True)
class Figure:
    """A headline figure: a stable key (for comparing runs), a label, its value and its kind."""
    key: str
    label: str
    value: float
    kind: str  # count | money | share | points

    def text(self, currency: str) -> str:
        return format_figure(self.value, self.kind, currency)


def format_figure(v: float | None, kind: str, currency: str, signed: bool = False) -> str:
    """A figure rounded for reading: counts and money to whole units, shares to 0.1 points."""
    if v is None or v != v:
        return "–"
    sign = "+" if signed and v > 0 else ""
    if kind == "share":
        return f"{sign}{100 * v:.1f}" + (" points" if signed else "%")
    if kind == "points":
        return f"{'+' if v > 0 else ''}{v:.0f} points"  # NPS is always shown with its sign
    if kind == "money":  # whole units, cents below 100 (a mean CLV of 10.47 is not "10")
        return f"{sign}{v:,.2f} {currency}" if abs(v) < 100 else f"{sign}{v:,.0f} {currency}"
    return f"{sign}{v:,.0f}"


def figures(run_dir: str | Path) -> list[Figure]:
    """The study's headline figures, from whatever stage outputs the run folder holds: customers, revenue,
    top-20% revenue share, mean CLV, churn rate, value at risk, the plan's net value, NPS."""
    run_dir = Path(run_dir)
    out: list[Figure] = []
    c = _json(run_dir, "cleaning.json")
    if c:
        s = c["summary"]
        out += [Figure("customers", "customers", s["customers"], "count"),
                Figure("revenue", "revenue (clean)", s["amount_kept"], "money")]
    r = _json(run_dir, "rfm.json")
    if r:
        out.append(Figure("top20_share", "revenue share of the top 20% of customers",
                          r["concentration"]["top20_revenue_share"], "share"))
    m = _json(run_dir, "clv_model.json")
    clv = _parquet(run_dir, "clv.parquet")
    if m and clv is not None:
        h = m["assumptions"]["horizon_months"]
        out.append(Figure("mean_clv", f"mean {h}-month CLV", float(clv["clv"].mean()), "money"))
    d = _json(run_dir, "drivers.json")
    if d and d.get("rates"):
        out.append(Figure("churn_rate", "churn rate", d["rates"][0]["churn_rate"], "share"))
    risk = _parquet(run_dir, "churn_risk.parquet")
    if clv is not None and risk is not None and risk["churn_probability"].notna().any():
        v = clv.merge(risk, on="customer_id")
        out.append(Figure("value_at_risk", "value at risk (CLV x churn probability)",
                          float((v["clv"] * v["churn_probability"]).sum()), "money"))
    st = _json(run_dir, "strategy.json")
    if st:
        out.append(Figure("plan_net_value", "plan net value (expected extra value less its cost)",
                          st["net_value"], "money"))
    if d and d.get("nps") is not None:
        out.append(Figure("nps", "NPS", d["nps"], "points"))
    return out


def headline(run_dir: str | Path, currency: str) -> list[tuple[str, str]]:
    """(label, value) pairs of the headline figures, formatted, with the study period."""
    run_dir = Path(run_dir)
    out = [(f.label, f.text(currency)) for f in figures(run_dir)]
    c = _json(run_dir, "cleaning.json")
    if c:
        out.insert(2, ("period", f"{c['summary']['first_date']} to {c['summary']['last_date']}"))
    return out


def findings(run_dir: str | Path, currency: str) -> list[tuple[str, str]]:
    """(sentence, stage report) pairs generated from the numbers."""
    run_dir = Path(run_dir)
    out: list[tuple[str, str]] = []
    c = _json(run_dir, "cleaning.json")
    if c:
        s = c["summary"]
        q = s["rows_quarantined"] + s["rows_duplicates"]
        out.append((f"{q:,} of {s['rows_in']:,} rows ({q / max(s['rows_in'], 1):.1%}) were set aside or removed in "
                    "cleaning; every row and amount is accounted for.", html_of("cleaning")))
    r = _json(run_dir, "rfm.json")
    if r:
        k = r["concentration"]
        out.append((f"The top 20% of customers make {k['top20_revenue_share']:.0%} of revenue; "
                    f"{k['customer_share_for_80pct']:.0%} of customers make 80% of it.", html_of("rfm")))
    clv = _parquet(run_dir, "clv.parquet")
    m = _json(run_dir, "clv_model.json")
    if clv is not None and m:
        h = m["assumptions"]["horizon_months"]
        by = clv.groupby("segment", observed=True)["clv"].sum()
        if by.sum() > 0:
            share = (by / by.sum()).sort_values(ascending=False)
            named = [share.index[0]] + [s for s in ("At Risk", "Can't Lose Them") if s in share.index
                                        and share[s] >= 0.01 and s != share.index[0]]
            for seg in named:
                out.append((f"{seg} customers hold {share[seg]:.0%} of predicted {h}-month value.", html_of("clv")))
        hold = m.get("holdout")
        if hold:
            out.append((f"On the holdout period the {hold['model']} model "
                        f"{'beat' if hold['beat_naive_baseline'] else 'did not beat'} the naive baseline.",
                        html_of("clv")))
    v = _json(run_dir, "value.json")
    if v and v.get("whale_curve", {}).get("loss_making_customers"):
        w = v["whale_curve"]
        out.append((f"{w['loss_making_customers']:,} customers lose money: together they destroy "
                    f"{w['destroyed_by_loss_makers']:,.0f} {currency} of profit.", html_of("value")))
    drv = _parquet(run_dir, "drivers.parquet")
    if drv is not None and len(drv):
        p = drv[drv["method"].str.startswith("permutation")]
        if len(p):
            out.append((f"The strongest churn driver is {p.sort_values('importance').iloc[-1]['driver']}.",
                        html_of("drivers")))
        lmg = drv[drv["method"].str.startswith("LMG")]
        if len(lmg):
            out.append((f"The strongest driver of the loyalty outcome is "
                        f"{lmg.sort_values('importance').iloc[-1]['driver']}.", html_of("drivers")))
    st = _json(run_dir, "strategy.json")
    if st:
        cost, val = st["total_cost"], st["expected_incremental_value"]
        roi = (val - cost) / cost if cost else np.nan
        out.append((f"The recommended plan spends {cost:,.0f} of a {st['budget']:,.0f} {currency} budget for an expected "
                    f"{val:,.0f} {currency} of extra value, {val - cost:,.0f} {currency} net of its cost (ROI {roi:.0%}), "
                    f"against {st['even_split_net_value']:,.0f} {currency} net for an even split of the budget.",
                    html_of("strategy")))
    return out
