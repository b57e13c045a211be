"""Does the value score mean something? The score and CLV as the study would have computed them at the
calibration end, checked against the value customers actually delivered in the holdout period after it.

- **As of the calibration end**: the customer summary, the purchase model's CLV (fitted on the calibration
  period; the formula when it cannot be fitted), profitability and the value index with the study's own
  indicators and weighting method, all from the transactions up to that day only.
- **Realised value**: each customer's revenue in the holdout period (0 for those who did not buy again).
- **Rankings compared**: the value score, CLV, and the simple ranking by past revenue. For each: Spearman's rank
  correlation with holdout revenue, and the gains (the share of all holdout revenue that the top 10% and 20% of
  customers by the ranking delivered). The score beats the simple ranking when it captures more in its top 20%.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from cvlib import i18n, io
from cvlib.analysis import clv as clv_mod
from cvlib.analysis import fitting, value_index
from cvlib.engines import aggregates
from cvlib.engines import summary as engine_summary
from cvlib.params import Study
from cvlib.rules import DEPARTED_CELL

RANKINGS = ("value_score", "clv", "past_revenue")
SHARES = (0.10, 0.20)


@dataclass
class Validation:
    customers: pd.DataFrame   # customer_id, value_score, potential_value_score, value_cell, clv, past_revenue (as of
    #                           the calibration end), holdout_revenue
    metrics: pd.DataFrame     # per ranking: spearman, top 10% and top 20% share of holdout revenue
    gains: pd.DataFrame       # share of customers (0-1) x ranking: cumulative share of holdout revenue
    calibration_end: pd.Timestamp
    holdout_end: pd.Timestamp
    beats_past_revenue: bool
    notes: list[str] = field(default_factory=list)


def scores_as_of(study: Study, tx: pd.DataFrame | Any, at: pd.Timestamp, attrs: pd.DataFrame | None = None,
                 fb: pd.DataFrame | None = None) -> pd.DataFrame:
    """Value score, CLV and past revenue per customer who bought by `at`, from the transactions up to then only
    (`tx`: a frame of transactions or an engine's table of them: the engine computes the summary and sums)."""

    at = pd.Timestamp(at).normalize()
    with aggregates.table_of(tx) as t:
        return _scores_as_of(study, aggregates.before(t, at), at, attrs, fb)


def _scores_as_of(study: Study, past: Any, at: pd.Timestamp, attrs: pd.DataFrame | None,
                  fb: pd.DataFrame | None) -> pd.DataFrame:
    summary = engine_summary.customer_summary(past, at.date(), aggregates.occasion_of(past, study.occasion),
                                              study.rfm.time_unit)
    cfg = study.clv
    retention, _ = clv_mod.yearly_retention(past)
    fits = fitting.fit_models(summary, cfg, (cfg.model,))
    purchase, spend = fits[cfg.model], fits["gammagamma"]
    if purchase.ok:
        c = clv_mod.customer_clv(summary, purchase.model, spend.model if spend.ok else None, cfg, study.rfm.time_unit)
    else:
        c = clv_mod.fallback_clv(summary, cfg, retention)
    c = clv_mod.with_status(study, c.astype({"customer_id": str}), summary, attrs, [])  # who had left by then
    prof, index = value_index.index_scores(study, past, summary, c, retention, attrs, fb, at)
    scores = index.customers
    out = pd.DataFrame({"value_score": scores["value_score"],
                        "potential_value_score": scores["potential_value_score"]})
    m = study.value.matrix
    alive = value_index.live_customers(c, out.index)
    out["value_cell"] = value_index.value_cells(scores.loc[alive, "current_value_score"],
                                          scores.loc[alive, "potential_value_score"], m.size, m.current_cuts,
                                          m.potential_cuts, m.names).reindex(out.index).fillna(DEPARTED_CELL)
    out["clv"] = io.by_customer(c)["clv"].reindex(out.index).to_numpy()
    out["past_revenue"] = prof.set_index("customer_id")["revenue"].reindex(out.index).to_numpy()
    return out.rename_axis("customer_id")


def cumulative_share(score: pd.Series, realised: pd.Series) -> np.ndarray:
    """The share of all realised value delivered by the top 1, 2, ... customers by `score` (ties: the order of
    the customer ids, so the figures are reproducible)."""
    order = pd.DataFrame({"s": score.to_numpy(), "id": score.index.astype(str)}).sort_values(
        ["s", "id"], ascending=[False, True], kind="stable").index.to_numpy()
    total = float(realised.sum())
    cum = np.cumsum(realised.to_numpy(dtype=float)[order])
    return cum / total if total > 0 else np.full(len(cum), np.nan)


def _at(cum: np.ndarray, share: float) -> float:
    return float(cum[max(1, int(np.ceil(share * len(cum)))) - 1])


def captured(score: pd.Series, realised: pd.Series, share: float) -> float:
    """The share of all realised value delivered by the top `share` of customers by `score`."""
    return _at(cumulative_share(score, realised), share)


def gains_curve(d: pd.DataFrame, columns: tuple[str, ...], target: str, points: int = 20) -> pd.DataFrame:
    """Cumulative share of `target` captured by the top share of customers by each column (0, 5%, ..., 100%)."""
    shares = np.linspace(0, 1, points + 1)
    out = pd.DataFrame({"customer_share": shares})
    for col in columns:
        ok = d[col].notna()
        cum = cumulative_share(d.loc[ok, col], d.loc[ok, target])
        out[col] = [0.0] + [_at(cum, s) for s in shares[1:]]
    return out


def validate_value(study: Study, tx: pd.DataFrame | Any, attrs: pd.DataFrame | None = None,
                   fb: pd.DataFrame | None = None) -> Validation | None:
    """The value score, CLV and past revenue as of `rfm.calibration_end`, against holdout revenue up to
    `rfm.holdout_end` (else the data's end); None without a calibration end."""
    if study.rfm.calibration_end is None:
        return None
    cal = pd.Timestamp(study.rfm.calibration_end).normalize()
    with aggregates.table_of(tx) as t:
        end = pd.Timestamp(study.rfm.holdout_end or aggregates.span(t)[1]).normalize()
        d = scores_as_of(study, t, cal, attrs, fb)
        hold = aggregates.spend_between(t, cal, end)
    hold.index = hold.index.astype(str)
    d.index = d.index.astype(str)
    d["holdout_revenue"] = hold.reindex(d.index).fillna(0.0).to_numpy()
    rows = []
    for col in RANKINGS:
        ok = d[col].notna()
        rho = spearmanr(d.loc[ok, col], d.loc[ok, "holdout_revenue"]).statistic if ok.sum() > 2 else np.nan
        rows.append({"ranking": col, "customers": int(ok.sum()), "spearman": float(rho),
                     **{f"top_{int(s * 100)}pct_share": captured(d.loc[ok, col], d.loc[ok, "holdout_revenue"], s)
                        for s in SHARES}})
    metrics = pd.DataFrame(rows)
    m = metrics.set_index("ranking")
    beats = bool(m.loc["value_score", "top_20pct_share"] > m.loc["past_revenue", "top_20pct_share"])
    return Validation(d.reset_index(), metrics, gains_curve(d, RANKINGS, "holdout_revenue"), cal, end, beats)


def sentences(v: Validation) -> list[tuple[str, dict]]:
    """The report's two sentences (catalogue key, fields): what was compared, and whether the score beats the
    ranking by past revenue."""
    m = v.metrics.set_index("ranking")
    return [("value.validation", {"cal": i18n.date(v.calibration_end), "end": i18n.date(v.holdout_end),
                                  "n": f"{len(v.customers):,}"}),
            ("value.validation_beats" if v.beats_past_revenue else "value.validation_not",
             {"score": i18n.pct(m.loc["value_score", "top_20pct_share"]),
              "past": i18n.pct(m.loc["past_revenue", "top_20pct_share"]),
              "rho_s": f"{m.loc['value_score', 'spearman']:.2f}", "rho_p": f"{m.loc['past_revenue', 'spearman']:.2f}"})]
