"""The value index: profitability per customer, the indicators of current and potential value, their
normalisation and weights (AHP, entropy, two levels), the weighted scores and the value cells."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cvlib import fuzzy, i18n, io
from cvlib.engines import aggregates
from cvlib.errors import ParamError
from cvlib.params import CATEGORIES, Study, Value
from cvlib.rules import cell_names
from cvlib.weights import ahp_weights, entropy_weights


# --------------------------------------------------------------------------- profitability
def profitability(tx: pd.DataFrame | Any, rfm: pd.DataFrame, cfg: Value, default_margin: float,
                  attrs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Revenue, direct cost (`cvlib.engines.aggregates.direct_cost`), cost to serve, profit and margin % per
    customer (`tx`: a frame of transactions or an engine's table of them).

    Cost to serve is yearly, charged for the time each customer has been a customer (at least a month)."""

    with aggregates.table_of(tx) as t:
        g = aggregates.revenue_and_cost(t, cfg.profitability.margin_by_line, default_margin)
    tenure = rfm.set_index(rfm["customer_id"].astype(str))["tenure"].reindex(g.index).fillna(0)
    years = np.maximum(tenure.to_numpy(dtype=float), 30.0) / 365.0
    cts = cfg.profitability.cost_to_serve
    yearly = pd.Series(cts.per_year, index=g.index, dtype=float)
    if cts.by_column:
        if attrs is None or cts.by_column not in attrs.columns:
            raise ParamError(f"value.profitability.cost_to_serve.by_column: column {cts.by_column!r} is not in the "
                             "customers table (inputs.customers)")
        tier = attrs.set_index("customer_id")[cts.by_column].astype(str).reindex(g.index)
        yearly = yearly + tier.map(cts.by_value).astype(float).fillna(0.0)
    g["cost_to_serve"] = yearly.to_numpy() * years
    g["profit"] = g["revenue"] - g["direct_cost"] - g["cost_to_serve"]
    g["margin_pct"] = np.where(g["revenue"] != 0, g["profit"] / g["revenue"], np.nan)
    g["years_observed"] = years
    return g.reset_index(names="customer_id")


def clv_with_costs(prof: pd.DataFrame, cfg: Value, retention: float, discount_rate: float) -> pd.Series:
    """Sum over the horizon of discounted yearly profit (less retention cost), weighted by survival
    r^(t-1), minus acquisition cost."""
    p = cfg.profitability
    yearly_profit = prof["profit"] / np.maximum(prof["years_observed"], 1.0) - p.retention_cost_per_year
    r = retention if np.isfinite(retention) else 1.0
    t = np.arange(1, p.horizon_years + 1, dtype=float)
    factor = float(np.sum(r ** (t - 1) / (1 + discount_rate) ** t))
    return yearly_profit * factor - p.acquisition_cost


# --------------------------------------------------------------------------- indicators and weights
def spend_trend(tx: pd.DataFrame | Any) -> pd.Series:
    """Spend rate in the later half of the period against the customer's own earlier rate, like with like:
    (late - early) / (late + early), each a spend per day of the half the customer was there for (the earlier
    half from their first purchase). -1: bought only before the midpoint (lapsed, whatever they spent); +1: only
    after it; missing for a customer first seen in the later half (no earlier rate to compare with). `tx`: a frame
    of transactions or an engine's table of them."""

    with aggregates.table_of(tx) as t:
        start, end = aggregates.span(t)
        mid = start + (end - start) / 2
        h = aggregates.halves(t, start, mid)
    first = h["first_day"].to_numpy(dtype=float)
    mid_day, end_day = (mid - start).days, max((end - start).days, 1)
    early = h["earlier"].to_numpy(dtype=float) / np.maximum(mid_day - first, 1.0)
    later = h["recent"].to_numpy(dtype=float) / max(end_day - mid_day, 1.0)
    total = early + later
    out = np.where((first <= mid_day) & (total > 0), (later - early) / np.where(total > 0, total, 1.0), np.nan)
    return pd.Series(out, index=h.index)


def normalise(x: pd.Series, method: str, direction: str = "higher") -> pd.Series:
    """Indicator on a 0-1 scale (1 best): min-max, or percentile rank. A constant indicator gives 0.5."""
    v = x.astype(float)
    if method == "rank":
        out = v.rank(method="average", pct=True)
        out = (out - out.min()) / (out.max() - out.min()) if out.max() > out.min() else out * 0 + 0.5
    else:
        lo, hi = v.min(), v.max()
        out = (v - lo) / (hi - lo) if hi > lo else v * 0 + 0.5
    return 1 - out if direction == "lower" else out  # missing stays missing: it is left out of the score


def weighted_score(norm: pd.DataFrame, w: pd.Series) -> pd.Series:
    """0-100 score: the weighted mean of the normalised indicators each customer has (weights rescaled over
    the indicators present; 50 when none is)."""
    have = norm.notna()
    total = have.mul(w, axis=1).sum(axis=1)
    score = norm.fillna(0).mul(w, axis=1).sum(axis=1) / total.where(total > 0)
    return (100 * score).fillna(50.0)


def extra_indicators(study: Study, tx: pd.DataFrame | Any, fb: pd.DataFrame | None, attrs: pd.DataFrame | None,
                     end: pd.Timestamp) -> pd.DataFrame:
    """Satisfaction and relationship indicators per customer (as of `end`): mean NPS and CSAT and complaints per
    survey answered (feedback table), service lines bought (a product column), contract years (contracts on)."""
    out = []
    if fb is not None:
        f = fb[fb["date"] <= end] if "date" in fb.columns else fb
        f = f.assign(customer_id=f["customer_id"].astype(str))
        c = study.drivers.feedback
        cols = {name: col for name, col in (("nps", c.nps), ("csat", c.csat), ("complaints_per_survey", c.complaints))
                if col and col in f.columns and pd.api.types.is_numeric_dtype(f[col])}
        if cols:
            out.append(f.groupby("customer_id")[list(cols.values())].mean().set_axis(list(cols), axis=1))
    if "product" in tx.columns:
        with aggregates.table_of(tx) as t:
            out.append(aggregates.distinct_per_customer(t, "product").rename("service_lines_bought").to_frame())
    k = study.clv.contracts
    if k.enabled and attrs is not None and k.start_column in attrs.columns:
        a = io.first_per_customer(attrs)
        start = pd.to_datetime(a[k.start_column], errors="coerce")
        stop = (pd.to_datetime(a[k.end_column], errors="coerce") if k.end_column in a.columns
                else pd.Series(pd.NaT, index=a.index))
        stop = stop.where(stop.notna() & (stop <= end), end)
        out.append(((stop - start).dt.days / 365.25).clip(lower=0).rename("contract_years").to_frame())
    return pd.concat(out, axis=1) if out else pd.DataFrame(index=pd.Index([], name="customer_id"))


def indicator_frame(tx: pd.DataFrame | Any, rfm: pd.DataFrame, clv: pd.DataFrame, prof: pd.DataFrame,
                    attrs: pd.DataFrame | None, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every column an indicator can use, one row per customer (`extra`: `extra_indicators`)."""
    base = io.by_customer(rfm)
    frames = [base,
              io.by_customer(clv).drop(
                  columns=["segment"], errors="ignore"),
              prof.set_index("customer_id"), spend_trend(tx).rename("spend_trend").to_frame()]
    if extra is not None:
        frames.append(extra)
    if attrs is not None:
        a = io.by_customer(attrs)
        frames.append(a[[c for c in a.columns if pd.api.types.is_numeric_dtype(a[c])]])
    out = frames[0]
    for f in frames[1:]:
        out = out.join(f[[c for c in f.columns if c not in out.columns]], how="left")
    return out


@dataclass
class Scores:
    customers: pd.DataFrame
    weights: pd.DataFrame
    ahp: dict | None
    notes: list[str] = field(default_factory=list)
    memberships: pd.DataFrame | None = None  # fuzzy evaluation: each customer's membership of each level


def score_customers(ind: pd.DataFrame, cfg: Value) -> Scores:
    """Normalise the indicators, weigh them, and score current, potential and total value (0-100)."""
    notes: list[str] = []
    missing = [i.column for i in cfg.indicators if i.column not in ind.columns]
    if missing:
        raise ParamError(f"value.indicators: column(s) {missing} are not available. Available: "
                         f"{', '.join(sorted(map(str, ind.columns)))}.")
    norm = pd.DataFrame({i.column: normalise(ind[i.column], i.normalisation or cfg.normalisation, i.direction)
                         for i in cfg.indicators}, index=ind.index)
    cols = [i.column for i in cfg.indicators]
    if cfg.weights.groups is not None:
        w, ahp, categories = two_level_weights(norm, cfg, cols, notes)
    else:
        w, ahp = one_level_weights(norm, cfg, cols, notes)
        categories = None
    for c in cols:
        if cfg.weights.method == "entropy" and ind[c].nunique(dropna=True) <= 1:
            notes.append(i18n.t("value.indicator_constant", indicator=i18n.label(c)))
    w = w / w.sum()
    group = {i.column: i.group for i in cfg.indicators}
    out = pd.DataFrame(index=ind.index)
    for g in ("current", "potential"):
        gc = [c for c in cols if group[c] == g]
        gw = w[gc] / w[gc].sum() if w[gc].sum() > 0 else pd.Series(1 / len(gc), index=gc)
        out[f"{g}_value_score"] = weighted_score(norm[gc], gw)
    out["value_score"] = weighted_score(norm[cols], w)
    memberships = None
    if cfg.fuzzy.enabled:
        fz = cfg.fuzzy
        memberships = fuzzy.evaluate(norm[cols], w, fz.levels, fz.centres, fz.level_scores)
        out["fuzzy_level"], out["fuzzy_grade"] = memberships.pop("fuzzy_level"), memberships.pop("fuzzy_grade")
        out["fuzzy_membership"] = memberships.max(axis=1)  # the membership of the level chosen
    for c in cols:
        k = int(norm[c].isna().sum())
        if k:
            notes.append(i18n.t("value.indicator_missing_p_alive" if c == "p_alive" else "value.indicator_missing",
                                indicator=i18n.label(c), n=f"{k:,}"))
    for c in ("current_value_score", "potential_value_score", "value_score"):
        out[c.replace("_score", "_rank")] = out[c].rank(ascending=False, method="min").astype(int)
    labels = {i.column: i.label or i.column for i in cfg.indicators}
    wt = pd.DataFrame({"indicator": [labels[c] for c in cols], "column": cols, "group": [group[c] for c in cols],
                       "direction": [i.direction for i in cfg.indicators],
                       "normalisation": [i.normalisation or cfg.normalisation for i in cfg.indicators],
                       "weight": w.to_numpy(),
                       "mean_normalised": norm[cols].mean().to_numpy()})
    if categories is not None:
        cat = {i.column: i.category for i in cfg.indicators}
        wt.insert(3, "category", [cat[c] for c in cols])
        wt.insert(4, "category_weight", [categories[cat[c]] for c in cols])
    return Scores(out, wt, ahp, notes, memberships)


def _checked_ahp(matrix: list[list[float]], allow_inconsistent: bool, where: str, notes: list[str]) -> dict:
    """AHP weights of a matrix, stopping (or noting, when allowed) an inconsistent one."""
    ahp = ahp_weights(matrix)
    if not ahp["consistent"]:
        msg = (f"The AHP comparison matrix {where} is inconsistent: consistency ratio {ahp['cr']:.3f} (must be below "
               f"0.10). Revise the pairwise judgements, or set {where.replace('matrix', 'allow_inconsistent')}: true "
               "to go on anyway.")
        if not allow_inconsistent:
            raise ParamError(msg)
        notes.append(msg)
    return ahp


def one_level_weights(norm: pd.DataFrame, cfg: Value, cols: list[str], notes: list[str],
                      matrix: list[list[float]] | None = None) -> tuple[pd.Series, dict | None]:
    """Weights of `cols` (summing to 1) by the indicator method: fixed, AHP (`matrix`: the comparisons of these
    columns, default the whole value.weights.ahp.matrix) or entropy of the normalised values."""
    ahp = None
    if cfg.weights.method == "fixed":
        w = pd.Series({c: float(cfg.weights.fixed[c]) for c in cols})
    elif cfg.weights.method == "ahp":
        m = matrix if matrix is not None else cfg.weights.ahp.matrix
        ahp = _checked_ahp(m, cfg.weights.ahp.allow_inconsistent, "value.weights.ahp.matrix", notes) if len(cols) > 1 \
            else {"weights": np.ones(1), "lambda_max": 1.0, "ci": 0.0, "cr": 0.0, "consistent": True}
        w = pd.Series(ahp["weights"], index=cols)
    else:
        w = entropy_weights(norm[cols])
    return w / w.sum() if w.sum() > 0 else pd.Series(1 / len(cols), index=cols), ahp


def two_level_weights(norm: pd.DataFrame, cfg: Value, cols: list[str],
                      notes: list[str]) -> tuple[pd.Series, dict | None, dict[str, float]]:
    """Two-level weights: within each category by the indicator method (AHP: the category's rows and columns of
    value.weights.ahp.matrix), the categories by value.weights.groups (fixed, AHP over the categories used, or
    entropy of the customers' category scores); an indicator's weight is its category's times its own."""

    cat = {i.column: i.category for i in cfg.indicators}
    used = [c for c in CATEGORIES if any(cat[k] == c for k in cols)]
    within: dict[str, pd.Series] = {}
    for c in used:
        gc = [k for k in cols if cat[k] == c]
        sub = None
        if cfg.weights.method == "ahp":
            idx = [cols.index(k) for k in gc]
            sub = [[cfg.weights.ahp.matrix[i][j] for j in idx] for i in idx]
        within[c], _ = one_level_weights(norm, cfg, gc, notes, sub)
    g = cfg.weights.groups
    ahp = None
    if g.method == "fixed":
        top = pd.Series({c: float(g.fixed[c]) for c in used})
    elif g.method == "ahp":
        ahp = _checked_ahp(g.ahp.matrix, g.ahp.allow_inconsistent, "value.weights.groups.ahp.matrix", notes)
        top = pd.Series(ahp["weights"], index=used)
    else:
        scores = pd.DataFrame({c: weighted_score(norm[list(within[c].index)], within[c]) / 100 for c in used})
        top = entropy_weights(scores)
    top = top / top.sum()
    w = pd.concat([within[c] * top[c] for c in used]).reindex(cols)
    return w, ahp, {c: float(top[c]) for c in used}


# --------------------------------------------------------------------------- value matrix
def value_cells(current: pd.Series, potential: pd.Series, size: int = 2, current_cuts: list[float] | None = None,
                potential_cuts: list[float] | None = None, names: dict[str, str] | None = None) -> pd.Series:
    """Cell of each customer in the current x potential grid (median, or tertile, cuts unless given)."""
    levels = ["low", "high"] if size == 2 else ["low", "medium", "high"]
    q = [0.5] if size == 2 else [1 / 3, 2 / 3]

    def cut(s: pd.Series, cuts: list[float] | None) -> pd.Series:
        edges = cuts or list(s.quantile(q))
        if len(edges) != size - 1:
            raise ParamError(f"value.matrix: a {size}x{size} grid needs {size - 1} cut point(s), got {edges}")
        idx = np.searchsorted(np.asarray(edges), s.to_numpy(), side="right")  # on the cut = upper cell
        return pd.Series(np.asarray(levels, dtype=object)[idx], index=s.index)

    c, p = cut(current, current_cuts), cut(potential, potential_cuts)
    return (c + "/" + p).map(cell_names(size, names))


def live_customers(clv: pd.DataFrame, ids: pd.Index) -> np.ndarray:
    """For each id in `ids`: True unless the CLV stage marked the customer as departed."""
    if "departed" not in clv.columns:
        return np.ones(len(ids), dtype=bool)
    return ~io.by_customer(clv)["departed"].reindex(ids).fillna(False).astype(bool).to_numpy()


def index_scores(study: Study, tx: pd.DataFrame | Any, rfm: pd.DataFrame, clv: pd.DataFrame, retention: float,
                 attrs: pd.DataFrame | None, fb: pd.DataFrame | None, end: pd.Timestamp) -> tuple[pd.DataFrame, Scores]:
    """Profitability (with the costed CLV) and the value index scores of the customers in `rfm`, from the data
    given (up to `end`; `tx`: a frame of transactions or an engine's table of them): the value stage's
    computation, and the validation's as of the calibration end."""
    with aggregates.table_of(tx) as t:
        prof = profitability(t, rfm, study.value, study.clv.margin, attrs)
        prof["clv_with_costs"] = clv_with_costs(prof, study.value, retention, study.clv.discount_rate).to_numpy()
        ind = indicator_frame(t, rfm, clv, prof, attrs, extra_indicators(study, t, fb, attrs, end))
    return prof, score_customers(ind, study.value)
