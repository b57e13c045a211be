"""The study summary: headline figures and key findings, as plain sentences generated from the numbers,
each pointing to the stage report that shows it. Reads whatever stage outputs the run folder holds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib import io


def _json(run_dir: Path, name: str) -> dict | None:
    p = run_dir / name
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def _parquet(run_dir: Path, name: str) -> pd.DataFrame | None:
    return io.read_stage(run_dir, name, optional=True)


def headline(run_dir: str | Path, currency: str) -> list[tuple[str, str]]:
    """(label, value) pairs: customers, revenue, top-20% share, mean CLV, churn rate, NPS, value at risk."""
    run_dir = Path(run_dir)
    out: list[tuple[str, str]] = []
    c = _json(run_dir, "cleaning.json")
    if c:
        s = c["summary"]
        out += [("customers", f"{s['customers']:,}"), ("revenue (clean)", f"{s['amount_kept']:,.0f} {currency}"),
                ("period", f"{s['first_date']} to {s['last_date']}")]
    r = _json(run_dir, "rfm.json")
    if r:
        out.append(("revenue share of the top 20% of customers", f"{r['concentration']['top20_revenue_share']:.1%}"))
    m = _json(run_dir, "clv_model.json")
    clv = _parquet(run_dir, "clv.parquet")
    if m and clv is not None:
        h = m["assumptions"]["horizon_months"]
        out.append((f"mean {h}-month CLV", f"{clv['clv'].mean():,.2f} {currency}"))
    d = _json(run_dir, "drivers.json")
    if d and d.get("rates"):
        out.append(("churn rate", f"{d['rates'][0]['churn_rate']:.1%}"))
    risk = _parquet(run_dir, "churn_risk.parquet")
    if clv is not None and risk is not None and risk["churn_probability"].notna().any():
        v = clv.merge(risk, on="customer_id")
        out.append(("value at risk (CLV x churn probability)",
                    f"{float((v['clv'] * v['churn_probability']).sum()):,.0f} {currency}"))
    nps = _nps(run_dir)
    if nps is not None:
        out.append(("NPS", f"{nps:+.0f} points"))
    return out


def _nps(run_dir: Path) -> float | None:
    d = _json(run_dir, "drivers.json")
    return d.get("nps") if d else None


def findings(run_dir: str | Path, currency: str) -> list[tuple[str, str]]:
    """(sentence, stage report) pairs generated from the numbers."""
    run_dir = Path(run_dir)
    out: list[tuple[str, str]] = []
    c = _json(run_dir, "cleaning.json")
    if c:
        s = c["summary"]
        q = s["rows_quarantined"] + s["rows_duplicates"]
        out.append((f"{q:,} of {s['rows_in']:,} rows ({q / max(s['rows_in'], 1):.1%}) were set aside or removed in "
                    "cleaning; every row and amount is accounted for.", "01_cleaning.html"))
    r = _json(run_dir, "rfm.json")
    if r:
        k = r["concentration"]
        out.append((f"The top 20% of customers make {k['top20_revenue_share']:.0%} of revenue; "
                    f"{k['customer_share_for_80pct']:.0%} of customers make 80% of it.", "02_rfm.html"))
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
                out.append((f"{seg} customers hold {share[seg]:.0%} of predicted {h}-month value.", "03_clv.html"))
        hold = m.get("holdout")
        if hold:
            out.append((f"On the holdout period the {hold['model']} model "
                        f"{'beat' if hold['beat_naive_baseline'] else 'did not beat'} the naive baseline.",
                        "03_clv.html"))
    v = _json(run_dir, "value.json")
    if v and v.get("whale_curve", {}).get("loss_making_customers"):
        w = v["whale_curve"]
        out.append((f"{w['loss_making_customers']:,} customers lose money: together they destroy "
                    f"{w['destroyed_by_loss_makers']:,.0f} {currency} of profit.", "03b_value.html"))
    drv = _parquet(run_dir, "drivers.parquet")
    if drv is not None and len(drv):
        p = drv[drv["method"].str.startswith("permutation")]
        if len(p):
            out.append((f"The strongest churn driver is {p.sort_values('importance').iloc[-1]['driver']}.",
                        "04_loyalty_drivers.html"))
        lmg = drv[drv["method"].str.startswith("LMG")]
        if len(lmg):
            out.append((f"The strongest driver of the loyalty outcome is "
                        f"{lmg.sort_values('importance').iloc[-1]['driver']}.", "04_loyalty_drivers.html"))
    st = _json(run_dir, "strategy.json")
    if st:
        cost, val = st["total_cost"], st["expected_incremental_value"]
        roi = (val - cost) / cost if cost else np.nan
        out.append((f"The recommended plan spends {cost:,.0f} of a {st['budget']:,.0f} {currency} budget for an expected "
                    f"{val:,.0f} {currency} of extra value, {val - cost:,.0f} {currency} net of its cost (ROI {roi:.0%}), "
                    f"against {st['even_split_net_value']:,.0f} {currency} net for an even split of the budget.",
                    "05_strategy.html"))
    return out
