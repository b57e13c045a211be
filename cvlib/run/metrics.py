"""The standard, scale-free metrics of a complete run (`metrics.json`), the same for every study so studies can be
set side by side: concentration, repeat and retention, purchase cycle, lifetime value, churn, NPS, value at risk
and the plan's return, each with its definition, unit and period, and the study's industry tags."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib import io
from cvlib.analysis import rfm
from cvlib.customers import DAY_NS, Purchases, purchases
from cvlib.engines import aggregates, duckdb_parquet
from cvlib.run import summary

SCHEMA = 1
METRICS_FILE = "metrics.json"

DEFINITIONS: dict[str, tuple[str, str]] = {  # key: (unit, definition)
    "customers": ("customers", "customers with at least one kept transaction"),
    "revenue": ("currency", "sum of the kept transaction amounts"),
    "revenue_per_customer": ("currency", "revenue / customers"),
    "top10_revenue_share": ("share", "share of revenue from the 10% of customers with the highest revenue"),
    "top20_revenue_share": ("share", "share of revenue from the 20% of customers with the highest revenue"),
    "gini": ("index 0-1", "Gini coefficient of revenue per customer (0: all equal, 1: one customer has all)"),
    "repeat_rate": ("share", "share of customers who bought on two or more days"),
    "retention_12m": ("share", "share of the customers who bought in the 12 months before the last 12 months "
                               "who bought again in the last 12 months"),
    "median_cycle_days": ("days", "median over repeat customers of their median days between purchase days"),
    "mean_clv": ("currency", "mean lifetime value per customer over the study's horizon (clv.parquet)"),
    "median_clv": ("currency", "median lifetime value per customer over the study's horizon"),
    "churn_rate": ("share", "churn rate as the loyalty stage measures it (drivers.json: customers who did not "
                            "buy again within the churn window)"),
    "nps": ("points", "net promoter score of the survey: % promoters - % detractors"),
    "value_at_risk_share": ("share", "sum of CLV x churn probability / sum of CLV"),
    "plan_roi": ("ratio", "(expected incremental value - cost) / cost of the recommended plan"),
}


def purchase_metrics(clean: pd.DataFrame | Purchases, end: dt.date | None = None) -> dict[str, float | None]:
    """The metrics read off the kept transactions (customer_id, date, amount), or off their customer-day totals
    (`Purchases`, as the engine returns them): concentration, repeat rate, 12-month retention (against `end`,
    default the last date) and the median purchase cycle, all counted in whole days."""
    p = clean if isinstance(clean, Purchases) else purchases(clean)
    n = len(p.ids)
    rev = pd.Series(np.bincount(p.code, weights=p.amount, minlength=n))
    total = float(rev.sum())
    d0 = int(p.day.min()) if len(p.day) else 0
    span = int(p.day.max()) - d0 + 1 if len(p.day) else 1
    key = np.unique(p.code * span + (p.day - d0))  # distinct (customer, day), by customer then day
    cust, day = key // span, key % span + d0
    end_ts = pd.Timestamp(end) if end is not None else pd.Timestamp(int(day.max()) if len(day) else 0, unit="D")
    year, two = (int((end_ts - pd.DateOffset(months=m)).normalize().value // DAY_NS) for m in (12, 24))
    base = set(cust[(day > two) & (day <= year)].tolist())
    last_year = set(cust[day > year].tolist())
    same = cust[1:] == cust[:-1]
    gaps = pd.Series((day[1:] - day[:-1])[same].astype(float))
    cycles = gaps.groupby(cust[1:][same]).median()
    return {
        "customers": n, "revenue": total, "revenue_per_customer": total / n if n else None,
        "top10_revenue_share": rfm.top_share(rev, 0.10), "top20_revenue_share": rfm.top_share(rev, 0.20),
        "gini": rfm.gini(rev), "repeat_rate": float((np.bincount(cust, minlength=n) >= 2).mean()) if n else None,
        "retention_12m": len(base & last_year) / len(base) if base else None,
        "median_cycle_days": float(cycles.median()) if len(cycles) else None,
    }


def run_metrics(run_dir: Path) -> dict[str, float | None]:
    """The model-based metrics of a run, from its files (None where the study did not compute them)."""
    figs = {f.key: f.value for f in summary.figures(run_dir)}
    clv = io.read_stage(run_dir, "clv.parquet", optional=True)
    st = summary._json(run_dir, "strategy.json") or {}
    total_clv = float(clv["clv"].sum()) if clv is not None else 0.0
    risk = figs.get("value_at_risk")
    return {
        "mean_clv": float(clv["clv"].mean()) if clv is not None and len(clv) else None,
        "median_clv": float(clv["clv"].median()) if clv is not None and len(clv) else None,
        "churn_rate": figs.get("churn_rate"), "nps": figs.get("nps"),
        "value_at_risk_share": risk / total_clv if risk is not None and total_clv > 0 else None,
        "plan_roi": (st["expected_incremental_value"] - st["total_cost"]) / st["total_cost"]
        if st.get("total_cost") else None,
    }


def study_metrics(run_dir: Path, params: dict[str, Any]) -> dict[str, Any]:
    """metrics.json of a complete run: every standard metric with its unit, definition and period, and the
    study's name, currency, horizon and industry tags (schema version `SCHEMA`)."""
    with duckdb_parquet(io.stage_file(run_dir, "transactions_clean.parquet")) as t:  # aggregates, not the rows
        p, (first, last) = aggregates.daily(t, "day").p, aggregates.span(t)
    values = {**purchase_metrics(p), **run_metrics(run_dir)}
    period = {"first": str(first.date()), "last": str(last.date())}
    return {"schema": SCHEMA, "study": params.get("study"), "client": params.get("client"),
            "currency": params.get("currency"), "industry": params.get("industry"),
            "market_segment": params.get("market_segment"), "period": period,
            "clv_horizon_months": (params.get("clv") or {}).get("horizon_months"),
            "metrics": {k: {"value": _plain(values.get(k)), "unit": unit, "definition": text}
                        for k, (unit, text) in DEFINITIONS.items()}}


def _plain(v: Any) -> float | int | None:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return None
    return int(v) if isinstance(v, (int, np.integer)) else round(float(v), 6)


def write_metrics(run_dir: Path, params: dict[str, Any]) -> Path:
    """Write the run's metrics.json (before the run is sealed). A stage file the metrics cannot read does not stop
    the run (its reports are complete): the file then says why it holds no metrics."""
    try:
        out = study_metrics(run_dir, params)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        out = {"schema": SCHEMA, "study": params.get("study"), "metrics": None,
               "error": f"the standard metrics could not be computed: {type(exc).__name__}: {exc}"}
    return io.write_json(out, run_dir / METRICS_FILE)
