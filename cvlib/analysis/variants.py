"""Named CLV formulas, each shown with its formula and inputs beside the model CLV.

- **aov**: average order value x purchases per year x lifespan in years (revenue, before margin).
- **retention_growth**: yearly net profit m, kept with the yearly retention r and growing by g, discounted at d,
  summed over the horizon of H years: sum over t = 1..H of m (r (1 + g) / (1 + d))^t; for one year this is
  (net profit x retention) x (1 + growth) / (1 + d).
- **discounted_profit**: (yearly gross profit - yearly maintenance cost) discounted over the lifetime, minus the
  acquisition cost.
- **contribution**: the customer's profit as a share of total profit, and profit per unit of cost to serve.

Net profit is revenue less direct cost less cost to serve (`cvlib.analysis.value.profitability`), gross profit revenue
less direct cost, both per year observed (at least one). Each input comes from the parameters or is measured in
the data; the table says which.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cvlib import i18n
from cvlib.analysis.value_index import profitability
from cvlib.engines import aggregates
from cvlib.finance import present_value_years

VARIANTS = ("aov", "retention_growth", "discounted_profit", "contribution")
COLUMNS = {"aov": "clv_aov", "retention_growth": "clv_retention_growth", "discounted_profit": "clv_discounted_profit",
           "contribution": "profit_share"}


@dataclass(frozen=True)
class Inputs:
    """The variants' inputs, each with where it came from ('params' or 'measured')."""
    lifetime_years: float
    retention: float
    growth: float
    discount_rate: float
    horizon_years: int
    maintenance_cost: float
    sources: dict[str, str]


def measured_growth(tx: pd.DataFrame | Any) -> float:
    """Yearly growth of revenue per active customer: the last 365 days against the 365 before (NaN when the
    data cover less than two years; `tx`: a frame of transactions or an engine's table of them)."""
    year = pd.Timedelta(days=365)
    with aggregates.table_of(tx) as t:
        start, end = aggregates.span(t)
        if start > end - 2 * year:
            return float("nan")
        (last, n_last), (before, n_before) = (aggregates.window_spend(t, end - year, end),
                                              aggregates.window_spend(t, end - 2 * year, end - year))
    if not n_last or not n_before:
        return float("nan")
    return float((last / n_last) / (before / n_before) - 1)


def per_customer(prof: pd.DataFrame, rfm: pd.DataFrame, inputs: Inputs,
                 acquisition_cost: pd.Series | float = 0.0) -> pd.DataFrame:
    """Every variant for each customer (index: customer id). `prof`: `cvlib.analysis.value.profitability`; `rfm`: the
    customer summary (frequency, monetary, tenure); `acquisition_cost`: per customer id, or one cost."""
    p = prof.set_index(prof["customer_id"].astype(str))
    r = rfm.set_index(rfm["customer_id"].astype(str)).reindex(p.index)
    years = np.maximum(r["tenure"].to_numpy(dtype=float), 365.0) / 365.0
    freq = r["frequency"].to_numpy(dtype=float)
    aov = np.where(freq > 0, r["monetary"].to_numpy(dtype=float) / np.maximum(freq, 1), 0.0)
    out = pd.DataFrame(index=p.index.rename("customer_id"))
    out["clv_aov"] = aov * (freq / years) * inputs.lifetime_years
    net = p["profit"].to_numpy(dtype=float) / years
    k = inputs.retention * (1 + inputs.growth) / (1 + inputs.discount_rate)
    out["clv_retention_growth"] = net * sum(k ** t for t in range(1, inputs.horizon_years + 1))
    gross = (p["revenue"] - p["direct_cost"]).to_numpy(dtype=float) / years
    cac = (acquisition_cost.reindex(out.index).fillna(0.0).to_numpy(dtype=float)
           if isinstance(acquisition_cost, pd.Series) else float(acquisition_cost))
    out["clv_discounted_profit"] = ((gross - inputs.maintenance_cost)
                                    * present_value_years(inputs.lifetime_years, inputs.discount_rate) - cac)
    total = p["profit"].sum()
    out["profit_share"] = p["profit"].to_numpy(dtype=float) / total if total != 0 else np.nan
    cts = p["cost_to_serve"].to_numpy(dtype=float)
    out["profit_per_cost_to_serve"] = np.where(cts > 0, p["profit"].to_numpy(dtype=float) / np.where(cts > 0, cts, 1),
                                               np.nan)
    return out


def contribution_facts(per: pd.DataFrame) -> dict[str, float]:
    """Profit contribution in two numbers: the share of total profit earned by the top 10% of customers, and the
    median profit per unit of cost to serve."""
    share = per["profit_share"].sort_values(ascending=False)
    top = share.iloc[:max(1, int(np.ceil(0.1 * len(share))))].sum()
    ratio = per["profit_per_cost_to_serve"].dropna()
    return {"top10_profit_share": float(top),
            "median_profit_per_cost_to_serve": float(ratio.median()) if len(ratio) else float("nan")}


def summary(per: pd.DataFrame, model_clv: pd.Series | None, which: tuple[str, ...], formulas: dict[str, str],
            inputs_text: dict[str, str]) -> pd.DataFrame:
    """One row per variant chosen (and the model CLV): its formula, its inputs, mean and total per customer."""
    cols = COLUMNS
    rows = []
    if model_clv is not None:
        rows.append({"variant": "clv", "formula": formulas["model"], "inputs": inputs_text["model"],
                     "mean_per_customer": float(model_clv.mean()), "total": float(model_clv.sum())})
    for v in which:
        s = per[cols[v]]
        money = v != "contribution"  # shares and ratios: their figures are contribution_facts
        rows.append({"variant": cols[v], "formula": formulas[v], "inputs": inputs_text[v],
                     "mean_per_customer": float(s.mean()) if money else np.nan,
                     "total": float(s.sum()) if money else np.nan})
    return pd.DataFrame(rows)


def build_variants(study, tx: pd.DataFrame | Any, rfm: pd.DataFrame, model_clv: pd.Series | None, retention: float,
                   cac: pd.Series | None, attrs: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The study's chosen variants: per customer, the summary table (formulas and inputs in the report language)
    and the contribution facts."""

    cfg, f = study.clv, study.clv.formula
    measured_r = retention if np.isfinite(retention) else 0.0
    r = f.retention_rate or measured_r
    lifetime = f.lifetime_years or (1 / (1 - measured_r) if measured_r < 1 else 1.0)
    g_measured = measured_growth(tx)
    g = f.growth_rate if f.growth_rate is not None else (g_measured if np.isfinite(g_measured) else 0.0)
    src = lambda given: i18n.t("clv.variant_params" if given else "clv.variant_measured")  # noqa: E731
    growth_src = src(f.growth_rate is not None) if f.growth_rate is not None or np.isfinite(g_measured) else \
        i18n.t("clv.variant_growth_assumed")
    inputs = Inputs(lifetime, r, g, cfg.discount_rate, max(1, int(round(cfg.horizon_months / 12))),
                    f.maintenance_cost_per_year,
                    {"lifetime": src(f.lifetime_years), "retention": src(f.retention_rate), "growth": growth_src})
    prof = profitability(tx, rfm, study.value, cfg.margin, attrs)
    cost = cac if cac is not None else (f.acquisition_cost if isinstance(f.acquisition_cost, (int, float)) else 0.0)
    per = per_customer(prof, rfm, inputs, cost)
    pct = lambda v: i18n.pct(v, 1)  # noqa: E731
    text = {"model": i18n.t("clv.variant_inputs_model", model=i18n.label(cfg.model), h=cfg.horizon_months,
                            m=pct(cfg.margin), d=pct(cfg.discount_rate)),
            "aov": i18n.t("clv.variant_inputs_aov", L=f"{lifetime:.2f}", src=inputs.sources["lifetime"]),
            "retention_growth": i18n.t("clv.variant_inputs_retention_growth", r=pct(r), rs=inputs.sources["retention"],
                                       g=pct(g), gs=inputs.sources["growth"], d=pct(cfg.discount_rate),
                                       H=inputs.horizon_years),
            "discounted_profit": i18n.t("clv.variant_inputs_discounted_profit", L=f"{lifetime:.2f}",
                                        src=inputs.sources["lifetime"], d=pct(cfg.discount_rate),
                                        c=f"{f.maintenance_cost_per_year:,.2f}"),
            "contribution": i18n.t("clv.variant_inputs_contribution")}
    formulas = {k: i18n.t(f"clv.variant_formula_{k}") for k in ("model", *VARIANTS)}
    which = tuple(v for v in VARIANTS if v in cfg.variants)
    table = summary(per, model_clv, which, formulas, text)
    return per, table, contribution_facts(per) if "contribution" in which else {}


def sentences(facts: dict) -> list[tuple[str, dict]]:
    """The report's sentence on profit contribution (catalogue key, fields); none without the facts."""

    if not facts:
        return []
    ratio = facts["median_profit_per_cost_to_serve"]
    if not np.isfinite(ratio):
        return [("clv.contribution_no_cost", {"top": i18n.pct(facts["top10_profit_share"])})]
    return [("clv.contribution", {"top": i18n.pct(facts["top10_profit_share"]), "ratio": f"{ratio:.2f}"})]


def recommendation(used: str, fallback: str, beat_baseline: bool | None, clv: pd.Series, currency: str,
                   horizon_months: int) -> tuple[str, dict]:
    """The one CLV definition the study recommends and uses downstream (the purchase model `used`, the contract
    model 'sbg' or, when no model could be fitted, the formula, `fallback` saying why), its size, and why, as a
    catalogue key and its fields (`beat_baseline`: the holdout's verdict, None without a holdout). The other
    definitions are for comparison."""
    if used == "formula" or fallback:
        why = i18n.t("clv.why_formula", why=fallback or used)
    elif used == "sbg":
        why = i18n.t("clv.why_contracts")
    elif beat_baseline is None:
        why = i18n.t("clv.why_model_unchecked")
    else:
        why = i18n.t("clv.why_model_validated" if beat_baseline else "clv.why_model_not_validated")
    return "clv.recommended", {"used": i18n.label(used), "h": horizon_months, "why": why,
                               "mean": i18n.money(float(clv.mean()), currency),
                               "total": i18n.money(float(clv.sum()), currency)}
