"""Customer value assessment: profitability (whale curve), a weighted value index (fixed, AHP or
entropy weights) of current and potential value, and the current x potential value matrix."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib import i18n, io, reading
from cvlib.analysis.validation import validate_value
from cvlib.analysis.value_index import Scores, index_scores, live_customers, value_cells
from cvlib.engines import aggregates, duckdb_parquet
from cvlib.params import Study
from cvlib.rules import DEPARTED_CELL


def whale_curve(profit: pd.Series) -> tuple[pd.DataFrame, dict[str, float]]:
    """Cumulative profit (% of total) against customers ranked by profit, and its key figures:
    peak (% of total profit), where it peaks (customer share), and the profit the loss-making tail destroys."""
    p = np.sort(profit.to_numpy(dtype=float))[::-1]
    n = len(p)
    total = p.sum()
    cum = np.cumsum(p)
    curve = pd.DataFrame({"customer_share": np.arange(1, n + 1) / n,
                          "cumulative_profit_pct": cum / total * 100 if total else np.zeros(n)})
    peak_i = int(np.argmax(cum)) if n else 0
    facts = {"total_profit": float(total), "peak_profit": float(cum[peak_i]) if n else 0.0,
             "peak_pct_of_total": float(cum[peak_i] / total * 100) if n and total else float("nan"),
             "peak_at_customer_share": float((peak_i + 1) / n) if n else float("nan"),
             "destroyed_by_loss_makers": float(-p[p < 0].sum()) + 0.0,
             "loss_making_customers": int((p < 0).sum())}
    return curve, facts


def fuzzy_table(res: "ValueResult", levels: list[str]) -> pd.DataFrame:
    """Per fuzzy level (worst first): customers, their share, mean membership of the level, mean weighted score
    and mean fuzzy grade, and the value cell most of them are in."""
    c = res.customers
    g = c.groupby("fuzzy_level").agg(customers=("customer_id", "size"), mean_value_score=("value_score", "mean"),
                                     mean_fuzzy_grade=("fuzzy_grade", "mean"),
                                     mean_membership=("fuzzy_membership", "mean"),
                                     main_value_cell=("value_cell", lambda s: s.value_counts().index[0]))
    g = g.reindex([lv for lv in levels if lv in g.index])
    g["share_of_customers"] = g["customers"] / len(c)
    return g.reset_index()[["fuzzy_level", "customers", "share_of_customers", "mean_membership", "mean_value_score",
                            "mean_fuzzy_grade", "main_value_cell"]]


def cell_table(df: pd.DataFrame) -> pd.DataFrame:
    """Customers, revenue and profit with their shares per value cell."""
    g = df.groupby("value_cell").agg(customers=("value_cell", "size"), revenue=("revenue", "sum"),
                                     profit=("profit", "sum"), mean_current=("current_value_score", "mean"),
                                     mean_potential=("potential_value_score", "mean"))
    g["share_of_customers"] = g["customers"] / g["customers"].sum()
    g["share_of_revenue"] = g["revenue"] / g["revenue"].sum()
    g["share_of_profit"] = g["profit"] / g["profit"].sum() if g["profit"].sum() else np.nan
    return g.reset_index().sort_values("mean_current", ascending=False)


# --------------------------------------------------------------------------- the stage
@dataclass
class ValueResult:
    customers: pd.DataFrame
    whale: pd.DataFrame
    whale_facts: dict
    scores: Scores
    notes: list[str]
    validation: Any = None  # cvlib.analysis.validation.Validation: the score against realised holdout value


def build_value(study: Study, tx: pd.DataFrame | Any, rfm: pd.DataFrame, clv: pd.DataFrame, retention: float,
                attrs: pd.DataFrame | None = None, fb: pd.DataFrame | None = None) -> ValueResult:
    """Profitability, the value index and the value cells (`tx`: the clean transactions as an engine's table, or
    as a frame)."""
    cfg = study.value
    with aggregates.table_of(tx) as t:
        prof, scores = index_scores(study, t, rfm, clv, retention, attrs, fb, aggregates.span(t)[1])
    out = prof.set_index("customer_id").join(scores.customers)
    m = cfg.matrix
    alive = live_customers(clv, out.index)  # the matrix places live customers; departed ones have their own cell
    out["value_cell"] = value_cells(out.loc[alive, "current_value_score"], out.loc[alive, "potential_value_score"],
                                    m.size, m.current_cuts, m.potential_cuts, m.names).reindex(out.index).fillna(
        DEPARTED_CELL)
    whale, facts = whale_curve(out["profit"])
    out = out.reset_index()
    out["customer_id"] = out["customer_id"].astype(io.STRING)
    notes = list(scores.notes)
    if not (("cost" in tx.columns) or ("margin" in tx.columns) or cfg.profitability.margin_by_line):
        notes.append(i18n.t("value.assumed_margin", m=i18n.pct(study.clv.margin, 0)))
    return ValueResult(out, whale, facts, scores, notes)


@i18n.in_study_language
def run_value(study: Study, run_dir: str | Path) -> ValueResult:
    """Read the earlier outputs, build the value assessment, write value.parquet and value.json."""
    run_dir = Path(run_dir)
    rfm = io.read_stage(run_dir, "rfm.parquet")
    clv = io.read_stage(run_dir, "clv.parquet")
    retention = io.read_stage_json(run_dir, "clv_model.json")["assumptions"]["yearly_retention"]
    attrs, fb = reading.read_attributes(study, "customers"), reading.read_attributes(study, "feedback")
    with duckdb_parquet(io.stage_file(run_dir, "transactions_clean.parquet")) as t:
        res = build_value(study, t, rfm, clv, float(retention) if retention is not None else float("nan"), attrs, fb)
        res.validation = v = validate_value(study, t, attrs, fb)
    io.write_parquet(res.customers, run_dir / "value.parquet")
    ahp = res.scores.ahp
    io.write_json({"weights_method": study.value.weights.method, "normalisation": study.value.normalisation,
                   "weights": res.scores.weights.to_dict("records"),
                   "ahp": None if ahp is None else {"lambda_max": ahp["lambda_max"], "ci": ahp["ci"], "cr": ahp["cr"],
                                                    "consistent": ahp["consistent"]},
                   "whale_curve": res.whale_facts, "notes": res.notes,
                   "validation": None if v is None else {
                       "calibration_end": str(v.calibration_end.date()), "holdout_end": str(v.holdout_end.date()),
                       "metrics": v.metrics.to_dict("records"), "beats_past_revenue": v.beats_past_revenue},
                   "churn_by_cell": churn_by_cell(v).to_dict("records")},
                  run_dir / "value.json")
    return res


def churn_by_cell(validation) -> pd.DataFrame:
    """Does the potential axis mean something? The value cells as the study would have drawn them on the
    calibration end (`cvlib.analysis.validation`), against who then made no purchase at all in the holdout:
    high-potential
    cells should churn less. Empty without a calibration period."""
    cols = ["value_cell", "customers", "holdout_churn_rate", "mean_potential_score"]
    if validation is None or validation.customers.empty:
        return pd.DataFrame(columns=cols)
    d = validation.customers
    g = d.assign(churned=d["holdout_revenue"] <= 0).groupby("value_cell").agg(
        customers=("churned", "size"), holdout_churn_rate=("churned", "mean"),
        mean_potential_score=("potential_value_score", "mean"))
    return g.sort_values("mean_potential_score", ascending=False).reset_index()[cols]


def matrix_cuts(res: ValueResult, study: Study) -> tuple[list[float], list[float]]:
    """The cut points the value matrix used (for drawing the grid)."""
    m = study.value.matrix
    q = [0.5] if m.size == 2 else [1 / 3, 2 / 3]
    on = res.customers[res.customers["value_cell"] != DEPARTED_CELL]  # the grid is cut over live customers
    c = m.current_cuts or list(on["current_value_score"].quantile(q))
    p = m.potential_cuts or list(on["potential_value_score"].quantile(q))
    return c, p


def whale_summary(facts: dict, currency: str) -> str:
    """The whale curve in one or two plain sentences."""

    total = i18n.money(facts["total_profit"], currency)
    if facts["loss_making_customers"] == 0:
        return i18n.t("value.whale_no_losses", total=total)
    return i18n.t("value.whale", total=total, peak=f"{facts['peak_pct_of_total']:.0f}%",
                  at=i18n.pct(facts["peak_at_customer_share"], 0), n=f"{facts['loss_making_customers']:,}",
                  lost=i18n.money(facts["destroyed_by_loss_makers"], currency))


def loss_makers(res: ValueResult, n: int) -> pd.DataFrame:
    """The n customers with the largest losses."""
    cols = ["customer_id", "revenue", "direct_cost", "cost_to_serve", "profit", "margin_pct"]
    return res.customers.loc[res.customers["profit"] < 0, cols].sort_values("profit").head(n)
