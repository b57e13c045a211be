"""The study summary: headline figures and key findings, as plain sentences generated from the numbers,
each pointing to the stage report that shows it. Reads whatever stage outputs the run folder holds."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cvlib import i18n, io
from cvlib.params import DEFAULT_SEGMENTS
from cvlib.rules import lapsing_valuable_segments
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
    """A figure rounded for reading in the report language: counts and money to whole units (cents below
    100: a mean CLV of 10.47 is not "10"; 万/亿 in Chinese), shares to 0.1 points."""
    if v is None or v != v:
        return "–"
    sign = "+" if signed and v > 0 else ""
    if kind == "share":
        return f"{sign}{100 * v:.1f}" + (i18n.t("summary.points") if signed else "%")
    if kind == "points":  # NPS is always shown with its sign
        return f"{'+' if v > 0 else ''}{v:.0f}" + i18n.t("summary.points")
    if kind == "money":
        return i18n.money(v, currency, signed=signed)
    return f"{sign}{v:,.0f}"


def run_params(run_dir: str | Path) -> dict:
    """A run's resolved parameters (params.yaml in its folder; empty when it has none)."""
    path = Path(run_dir) / "params.yaml"
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}


def run_language(run_dir: str | Path) -> str:
    """The report language of a run (English when its parameters do not say)."""
    return (run_params(run_dir).get("report") or {}).get("language", "en")


def _segments(run_dir: Path) -> list[dict]:
    """The run's segment grid (from its resolved parameters; the default grid without them)."""
    return (run_params(run_dir).get("rfm") or {}).get("segments") or DEFAULT_SEGMENTS


def figures(run_dir: str | Path) -> list[Figure]:
    """The study's headline figures, from whatever stage outputs the run folder holds: customers, revenue,
    top-20% revenue share, mean CLV, churn rate, value at risk, the plan's net value, NPS."""
    run_dir = Path(run_dir)
    out: list[Figure] = []
    c = _json(run_dir, "cleaning.json")
    if c:
        s = c["summary"]
        out += [Figure("customers", i18n.t("summary.customers"), s["customers"], "count"),
                Figure("revenue", i18n.t("summary.revenue"), s["amount_kept"], "money")]
    r = _json(run_dir, "rfm.json")
    if r:
        out.append(Figure("top20_share", i18n.t("summary.top20_share"),
                          r["concentration"]["top20_revenue_share"], "share"))
    m = _json(run_dir, "clv_model.json")
    clv = _parquet(run_dir, "clv.parquet")
    if m and clv is not None:
        h = m["assumptions"]["horizon_months"]
        out.append(Figure("mean_clv", i18n.t("summary.mean_clv", h=h), float(clv["clv"].mean()), "money"))
    d = _json(run_dir, "drivers.json")
    if d and d.get("rates"):
        out.append(Figure("churn_rate", i18n.t("summary.churn_rate"), d["rates"][0]["churn_rate"], "share"))
        out.append(Figure("retention_rate", i18n.t("summary.retention_rate"), 1 - d["rates"][0]["churn_rate"], "share"))
    risk = _parquet(run_dir, "churn_risk.parquet")
    if clv is not None and risk is not None and risk["churn_probability"].notna().any():
        v = clv.merge(risk, on="customer_id")
        out.append(Figure("value_at_risk", i18n.t("summary.value_at_risk"),
                          float((v["clv"] * v["churn_probability"]).sum()), "money"))
    st = _json(run_dir, "strategy.json")
    if st:
        out.append(Figure("plan_net_value", i18n.t("summary.plan_net_value"),
                          st["net_value"], "money"))
    if d and d.get("nps") is not None:
        out.append(Figure("nps", "NPS", d["nps"], "points"))
    return out


def headline(run_dir: str | Path, currency: str) -> list[tuple[str, str]]:
    """(label, value) pairs of the headline figures, formatted, with the study period."""
    run_dir = Path(run_dir)
    out = [(f.label, f.text(currency)) for f in figures(run_dir) if f.key != "retention_rate"]  # 1 - churn rate
    c = _json(run_dir, "cleaning.json")
    if c:
        out.insert(2, (i18n.t("summary.period"),
                       i18n.t("summary.period_value", first=i18n.date(c["summary"]["first_date"]),
                                                                last=i18n.date(c["summary"]["last_date"]))))
    return out


Finding = tuple[str, str]  # a sentence and the stage report (with its section) that shows it


def _cleaning_findings(run_dir: Path, currency: str) -> list[Finding]:
    c = _json(run_dir, "cleaning.json")
    if not c:
        return []
    s = c["summary"]
    q = s["rows_quarantined"] + s["rows_duplicates"]
    return [(i18n.t("summary.f_cleaning", q=f"{q:,}", n=f"{s['rows_in']:,}", share=i18n.pct(q / max(s["rows_in"], 1))),
             html_of("cleaning") + "#reconciliation")]


def _rfm_findings(run_dir: Path, currency: str) -> list[Finding]:
    r = _json(run_dir, "rfm.json")
    if not r:
        return []
    k = r["concentration"]
    return [(i18n.t("summary.f_concentration", top=i18n.pct(k["top20_revenue_share"], 0),
                    share=i18n.pct(k["customer_share_for_80pct"], 0)), html_of("rfm") + "#value_concentration")]


def _clv_findings(run_dir: Path, currency: str) -> list[Finding]:
    clv, m = _parquet(run_dir, "clv.parquet"), _json(run_dir, "clv_model.json")
    if clv is None or not m:
        return []
    out = []
    if "departed" in clv.columns and clv["departed"].any():
        gone = clv["departed"].astype(bool)
        out.append((i18n.t("summary.f_departed", n=f"{int(gone.sum()):,}", share=i18n.pct(gone.mean(), 0)),
                    html_of("clv")))
    by = clv.groupby("segment", observed=True)["clv"].sum()
    if by.sum() > 0:
        share = (by / by.sum()).sort_values(ascending=False)
        named = [share.index[0]] + [s for s in lapsing_valuable_segments(_segments(run_dir)) if s in share.index
                                    and share[s] >= 0.01 and s != share.index[0]]
        out += [(i18n.t("summary.f_segment_value", seg=i18n.name(str(seg)), share=i18n.pct(share[seg], 0),
                        h=m["assumptions"]["horizon_months"]), html_of("clv") + "#probabilistic_models")
                for seg in named]
    hold = m.get("holdout")
    if hold:
        out.append((i18n.t("summary.f_holdout_beat" if hold["beat_naive_baseline"] else "summary.f_holdout_not_beat",
                           model=i18n.label(hold["model"])), html_of("clv") + "#validation_on_the_holdout_peri"))
    return out


def _value_findings(run_dir: Path, currency: str) -> list[Finding]:
    v = _json(run_dir, "value.json")
    if not (v and v.get("whale_curve", {}).get("loss_making_customers")):
        return []
    w = v["whale_curve"]
    return [(i18n.t("summary.f_loss_makers", n=f"{w['loss_making_customers']:,}",
                    lost=i18n.money(w["destroyed_by_loss_makers"], currency)), html_of("value") + "#profitability")]


def _driver_findings(run_dir: Path, currency: str) -> list[Finding]:
    drv = _parquet(run_dir, "drivers.parquet")
    if drv is None or not len(drv):
        return []
    out = []
    for prefix, key, anchor in (("permutation", "summary.f_churn_driver", "#what_drives_churn"),
                                ("LMG", "summary.f_outcome_driver", "#what_drives_the_outcome")):
        d = drv[drv["method"].str.startswith(prefix)]
        if len(d):
            top = str(d.sort_values("importance").iloc[-1]["driver"])
            out.append((i18n.t(key, driver=i18n.label(top)), html_of("drivers") + anchor))
    return out


def _plan_findings(run_dir: Path, currency: str) -> list[Finding]:
    st = _json(run_dir, "strategy.json")
    if not st:
        return []
    cost, val = st["total_cost"], st["expected_incremental_value"]
    roi = (val - cost) / cost if cost else np.nan
    m = lambda v: i18n.money(v, currency, decimals=0)  # noqa: E731
    return [(i18n.t("summary.f_plan", cost=m(cost), budget=m(st["budget"]), value=m(val), net=m(val - cost),
                    roi=i18n.pct(roi, 0), even=m(st["even_split_net_value"])),
             html_of("strategy") + "#budget_allocation")]


FINDERS = (_cleaning_findings, _rfm_findings, _clv_findings, _value_findings, _driver_findings, _plan_findings)


def findings(run_dir: str | Path, currency: str) -> list[Finding]:
    """(sentence, stage report) pairs generated from the numbers, stage by stage; a CLV by the formula (the purchase
    model not used) first, with the reason: never silent."""
    run_dir = Path(run_dir)
    m = _json(run_dir, "clv_model.json")
    first = [(i18n.t("clv.headline_formula", why=m["formula_fallback"]), html_of("clv"))] \
        if m and m.get("formula_fallback") else []
    return first + [f for finder in FINDERS for f in finder(run_dir, currency)]
