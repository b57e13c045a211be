"""Loyalty and retention: churn facts, cohorts, survival curves, NPS/CSAT, and what drives them.

Relative importance for linear outcomes: Shapley decomposition of R-squared (LMG; exact over all
subsets up to `max_exact` drivers, sampled orderings beyond) and Johnson's relative weights, both
with bootstrap intervals. Binary outcomes: standardised logistic coefficients and a gradient-boosted
classifier's permutation importance on a held-out split. Categorical drivers count as one driver.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib import i18n, io, reading
from cvlib.analysis import churn, journey, reasons
from cvlib.analysis.importance import (
    ChurnModel,
    DriverSet,
    bootstrap_importance,
    churn_model,
    collinear_pairs,
    lmg,
    relative_weights,
)
from cvlib.analysis.loyalty import churn_flags, cohort_matrices, km_curves, retention_rates, survey_table
from cvlib.engines import aggregates, duckdb_parquet
from cvlib.params import Drivers, Study
from cvlib.status import contract_ends

Z95 = 1.959963984540054


def early_behaviour(tx: pd.DataFrame, days: int) -> pd.DataFrame:
    """First order value, purchases and service lines in each customer's first `days` days
    (`cvlib.engines.aggregates.early_behaviour` on a frame of transactions)."""
    with aggregates.frame_table(tx) as t:
        return aggregates.early_behaviour(t, days)


Drivers_ = tuple[list[pd.Series | pd.DataFrame], dict[str, list[str]]]  # columns, and each driver's columns


def _attribute_drivers(attrs: pd.DataFrame, customers: pd.Index, skip: set[str]) -> Drivers_:
    """Numeric attributes as they are; categorical ones (at most 12 values) as dummies, missing kept missing."""
    parts, groups = [], {}
    a = io.first_per_customer(attrs).reindex(customers)
    for col in a.columns:
        s = a[col]
        if col in skip:
            continue
        if pd.api.types.is_numeric_dtype(s):
            parts.append(s.astype(float).rename(col))
            groups[col] = [col]
        elif s.nunique() <= 12:
            dummies = pd.get_dummies(s.astype("string"), prefix=col, prefix_sep="=", drop_first=True, dtype=float)
            dummies[s.isna().to_numpy()] = np.nan
            if dummies.shape[1]:
                parts.append(dummies)
                groups[col] = list(dummies.columns)
    return parts, groups


def _survey_drivers(fb: pd.DataFrame, customers: pd.Index, c) -> tuple[Drivers_, list[str], pd.Series]:
    """Each customer's mean survey ratings and complaint rate, the rating drivers, and who answered a survey."""
    parts, groups = [], {}
    f = fb.assign(customer_id=fb["customer_id"].astype(str))
    not_ratings = {"customer_id", "date", c.nps, c.csat, c.complaints}
    rating_cols = c.ratings or [k for k in f.columns if k not in not_ratings and pd.api.types.is_numeric_dtype(f[k])]
    means = f.groupby("customer_id")[rating_cols].mean().reindex(customers)
    for col in rating_cols:
        parts.append(means[col].rename(col))
        groups[col] = [col]
    if c.complaints and c.complaints in f.columns:  # a rate per survey: not a sum that grows with tenure
        parts.append(f.groupby("customer_id")[c.complaints].mean().reindex(customers).rename("complaints"))
        groups["complaints"] = ["complaints"]
    return (parts, groups), list(rating_cols), f.groupby("customer_id").size().reindex(customers).notna()


def _usable(X: pd.DataFrame, groups: dict[str, list[str]], cfg: Drivers, notes: list[str]) -> dict[str, list[str]]:
    """The drivers asked for (`drivers.drivers`), without those entirely missing or constant (each said)."""
    if cfg.drivers:
        unknown = [d for d in cfg.drivers if d not in groups]
        if unknown:
            notes.append(i18n.for_consultant("drivers.note_unknown", names=", ".join(unknown)))
        groups = {k: v for k, v in groups.items() if k in cfg.drivers}
    for name, cols in list(groups.items()):
        sub = X[cols]
        if sub.isna().all().all():
            notes.append(i18n.t("drivers.note_all_missing", name=i18n.label(name)))
            del groups[name]
        elif sub.nunique(dropna=True).max() <= 1:
            notes.append(i18n.t("drivers.note_constant_driver", name=i18n.label(name)))
            del groups[name]
    return groups


def driver_set(customers: pd.Index, attrs: pd.DataFrame | None, fb: pd.DataFrame | None, early: pd.DataFrame,
               cfg: Drivers) -> DriverSet:
    """The drivers per customer: attributes, mean survey ratings and complaints, early behaviour.

    Constant or entirely missing drivers are dropped with a note; near-collinear pairs are reported."""
    parts, groups, ratings, notes = [], {}, [], []
    respondents = pd.Series(True, index=customers)
    if attrs is not None:
        more, named = _attribute_drivers(attrs, customers, set(cfg.never_used()) | {"customer_id", "date"})
        parts, groups = parts + more, {**groups, **named}
    if fb is not None:
        (more, named), ratings, respondents = _survey_drivers(fb, customers, cfg.feedback)
        parts, groups = parts + more, {**groups, **named}
    for col in early.columns:
        parts.append(early[col].reindex(customers).astype(float).rename(col))
        groups[col] = [col]
    X = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=customers)
    groups = _usable(X, groups, cfg, notes)
    X = X[[c for cols in groups.values() for c in cols]]
    collinear = collinear_pairs(X)
    if len(collinear):
        notes.append(i18n.t("drivers.note_collinear", n=len(collinear)))
    rated = [r for r in ratings if r in groups] or ("complaints" in groups)
    if rated and (~respondents).any():
        notes.append(i18n.t("drivers.note_respondents", n=f"{int((~respondents).sum()):,}", of=f"{len(customers):,}",
                            k=f"{int(respondents.sum()):,}"))
    else:
        respondents = pd.Series(True, index=customers)
    return DriverSet(X, groups, [r for r in ratings if r in groups], notes, collinear, respondents)


IPA_GOOD = 2 / 3  # a rating counts as good performance from two thirds of the way up its scale


def ipa(importance: pd.Series, ratings_mean: pd.Series, scale: tuple[float, float] = (1.0, 5.0)) -> pd.DataFrame:
    """Importance-performance analysis: quadrant of each rated driver. Importance is split at the mean importance;
    performance on the rating scale itself (good from two thirds of the way up, `performance_cut`), not at the
    mean of the observed ratings: attributes all rated 3.5 of 5 are not 'possible overkill' because one is 3.51."""
    d = pd.DataFrame({"importance": importance, "mean_rating": ratings_mean}).dropna()
    cut = scale[0] + IPA_GOOD * (scale[1] - scale[0])
    hi_i = d["importance"] >= d["importance"].mean()
    hi_p = d["mean_rating"] >= cut
    d["performance_cut"] = cut
    d["quadrant"] = np.select([hi_i & hi_p, hi_i & ~hi_p, ~hi_i & ~hi_p], ["keep up the good work",
                                                                          "concentrate here", "low priority"],
                              "possible overkill")
    return d.rename_axis("driver").reset_index()


# --------------------------------------------------------------------------- the stage
@dataclass
class DriversResult:
    flags: pd.DataFrame
    rates: pd.DataFrame
    rates_by: pd.DataFrame
    cohorts: pd.DataFrame
    revenue_cohorts: pd.DataFrame
    km: pd.DataFrame
    logrank: dict
    survey: pd.DataFrame | None
    drivers: pd.DataFrame
    ipa: pd.DataFrame | None
    churn: ChurnModel | None
    linear_r2: float | None
    collinear: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    risk: "churn.ChurnRisk | None" = None
    reasons: pd.DataFrame | None = None            # why customers left: per reason, customers and revenue
    reasons_by_segment: pd.DataFrame | None = None


def group_series(study: Study, rfm: pd.DataFrame, attrs: pd.DataFrame | None) -> pd.Series:
    """customer_id -> group label for the 'by group' views (RFM segment or an attribute)."""
    col = study.drivers.group_by
    if col in rfm.columns:
        return rfm.set_index(rfm["customer_id"].astype(str))[col].astype(str)
    if attrs is not None and col in attrs.columns:
        return attrs.set_index(attrs["customer_id"].astype(str))[col].astype(str)
    return rfm.set_index(rfm["customer_id"].astype(str))["segment"].astype(str)


def study_cycles(study: Study, b: aggregates.Book, rfm: pd.DataFrame, end: pd.Timestamp) -> pd.Series:
    """Each customer's usual purchase cycle in days as the journey stage measures it (the study's purchase
    occasion, `journey.cycles`: shrinkage toward the segment's cycle), so `within_cycle`, `cycle_days` and
    `overdue` rest on one cycle in every stage. `b`: the engine's customer-day totals (`aggregates.daily`)."""

    c = study.journey.cycles
    seg = io.by_customer(rfm)["segment"].astype(str) if "segment" in rfm.columns else None
    return journey.purchase_cycles(None, end, seg, c.overdue_k, c.prior_gaps, p=b.p,
                                   occasion=b.occasion)["cycle_days"]


def build_drivers(study: Study, b: aggregates.Book, early: pd.DataFrame, rfm: pd.DataFrame,
                  clv: pd.DataFrame | None, attrs: pd.DataFrame | None, fb: pd.DataFrame | None) -> DriversResult:
    """Everything the drivers stage computes, from the engine's aggregates of the clean transactions: the
    customer-day totals (`aggregates.daily`) and each customer's `early_behaviour`."""
    cfg = study.drivers
    notes: list[str] = []
    if study.drivers.group_by not in rfm.columns and (attrs is None or study.drivers.group_by not in attrs.columns):
        notes.append(i18n.for_consultant("drivers.note_group_by", by=study.drivers.group_by))
    groups = group_series(study, rfm, attrs)
    end = pd.Timestamp(rfm["last_purchase"].max()).normalize() if "end" not in rfm.attrs else rfm.attrs["end"]
    end_col = study.clv.contracts.end_column
    flags = churn_flags(rfm, cfg, attrs, end, end_col)
    ce = contract_ends(attrs, end_col) if cfg.churn == "contracts" and attrs is not None else None
    unit = 7.0 if study.rfm.time_unit == "weeks" else 1.0
    risk = churn.churn_risk(b.p, end, cfg.churn_days, cfg, attrs, fb, ce, unit, study_cycles(study, b, rfm, end))
    notes += risk.notes
    rates = retention_rates(flags, rfm)
    rates_by = retention_rates(flags, rfm, groups)
    km, logrank = km_curves(flags, groups)
    survey = survey_table(fb, cfg, groups) if fb is not None else None
    if fb is None:
        notes.append(i18n.for_consultant("drivers.note_no_feedback"))
    ds = driver_set(pd.Index(flags["customer_id"]), attrs, fb, early, cfg)
    notes += ds.notes
    rows, churn_cm = _churn_drivers(ds, flags, cfg, notes)
    more, linear_r2, ipa_df = _outcome_drivers(ds, cfg, fb, clv, churn_cm, notes)
    rows += more
    drivers = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["driver", "method", "importance", "ci_low", "ci_high"])
    means = ds.X[ds.ratings].mean() if ds.ratings else pd.Series(dtype=float)
    drivers["mean_rating"] = drivers["driver"].map(means)
    drivers = drivers[["driver", "method", "importance", "ci_low", "ci_high", "mean_rating"]]
    cohorts = cohort_matrices(b.p)
    res = DriversResult(flags, rates, rates_by, cohorts["customers"], cohorts["revenue"], km,
                        logrank, survey, drivers, ipa_df, churn_cm, linear_r2, ds.collinear, notes, risk)
    why = reasons.churn_reasons(attrs, fb, cfg.churn_reason_column)
    if why is not None:
        r = io.by_customer(rfm)
        res.reasons, res.reasons_by_segment = reasons.reason_tables(
            why, flags.set_index("customer_id")["churned"], r["segment"].astype(str), r["monetary"],
            r["tenure"] / 365.0)
    return res


def _churn_drivers(ds: DriverSet, flags: pd.DataFrame, cfg: Drivers,
                   notes: list[str]) -> tuple[list[pd.DataFrame], ChurnModel | None]:
    """What drives churn among the customers observed long enough (and who answered a survey when ratings are
    drivers): the churn classifier's permutation importance and the LMG shares of a linear probability model."""
    eligible = flags.set_index("customer_id")["eligible"]
    churned = flags.set_index("customer_id")["churned"]
    el = eligible.to_numpy()
    if ds.respondents is not None:
        el = el & ds.respondents.reindex(eligible.index).fillna(False).to_numpy(dtype=bool)
        eligible = pd.Series(el, index=eligible.index)
    cm = churn_model(DriverSet(ds.X[el], ds.groups, ds.ratings), churned[eligible], cfg, ds.X[~el])
    if isinstance(cm, str):
        notes.append(i18n.t("drivers.note_classifier_skipped", why=cm))
        return [], None
    if cm.n < int(el.sum()):
        notes.append(i18n.t("drivers.note_classifier_sample", n=f"{cm.n:,}", of=f"{int(el.sum()):,}"))
    missing = int(ds.X[el].isna().any(axis=1).sum())
    notes.append(i18n.t("drivers.note_classifier", n=f"{cm.n:,}", k=f"{cm.churners:,}", missing=f"{missing:,}"))
    # the same decomposition as for the other outcomes: Shapley shares of R² of a linear probability model
    lin_churn, _ = linear_drivers(ds, churned[eligible], cfg, notes, i18n.t("drivers.churn_lpm"), "churn ")
    return [cm.importance, lin_churn], cm


def _outcome_drivers(ds: DriverSet, cfg: Drivers, fb: pd.DataFrame | None, clv: pd.DataFrame | None,
                     churn_cm: ChurnModel | None, notes: list[str]) -> tuple[list[pd.DataFrame], float | None,
                                                                           pd.DataFrame | None]:
    """What drives the linear outcome (NPS or CLV), and the importance-performance grid of the ratings (on the
    outcome's LMG shares, else on the churn classifier's importance)."""
    rows, linear_r2, ipa_df, imp = [], None, None, None
    if cfg.outcome in {"nps", "clv"}:
        y = None
        if cfg.outcome == "nps" and fb is not None and cfg.feedback.nps in fb.columns:
            y = fb.assign(customer_id=fb["customer_id"].astype(str)).groupby("customer_id")[cfg.feedback.nps].mean()
        elif cfg.outcome == "clv" and clv is not None:
            y = clv.set_index(clv["customer_id"].astype(str))["clv"]
        if y is None:
            notes.append(i18n.t("drivers.note_no_outcome", outcome=i18n.label(cfg.outcome)))
        else:
            lin, linear_r2 = linear_drivers(ds, y, cfg, notes, cfg.outcome.upper() if cfg.outcome == "nps"
                                            else i18n.t("drivers.predicted_clv"))
            rows.append(lin)
            if ds.ratings and len(lin):
                imp = lin[lin["method"].str.startswith("LMG")].set_index("driver")["importance"]
    elif churn_cm is not None and ds.ratings:
        perm = churn_cm.importance[churn_cm.importance["method"].str.startswith("permutation")]
        imp = perm.set_index("driver")["importance"]
    if imp is not None:
        ipa_df = ipa(imp[imp.index.isin(ds.ratings)], ds.X[ds.ratings].mean(), (1, cfg.feedback.csat_scale))
    return rows, linear_r2, ipa_df


def linear_drivers(ds: DriverSet, y: pd.Series, cfg: Drivers, notes: list[str], outcome: str = "",
                   prefix: str = "") -> tuple[pd.DataFrame, float]:
    """LMG and relative weights (with bootstrap intervals) for an outcome, on the customers who have the outcome
    and every driver (their number and the number dropped are stated in the notes)."""
    X = ds.X.reindex(y.index)
    ok = X.notna().all(axis=1) & y.notna()
    X, yv = X[ok].reset_index(drop=True), y[ok].astype(float).reset_index(drop=True)
    groups = {g: cols for g, cols in ds.groups.items() if X[cols].nunique().max() > 1}
    dropped_groups = sorted(set(ds.groups) - set(groups))
    X = X[[c for cols in groups.values() for c in cols]]
    what = outcome or i18n.t("drivers.the_outcome")
    notes.append(i18n.t("drivers.note_linear", what=what, n=f"{len(X):,}", dropped=f"{int((~ok).sum()):,}",
                        of=f"{len(ok):,}")
                 + (i18n.t("drivers.note_constant", names=", ".join(i18n.label(g) for g in dropped_groups))
                    if dropped_groups else "") + i18n.t("drivers.full_stop"))
    if len(X) < max(30, 3 * X.shape[1]) or not groups:
        notes.append(i18n.t("drivers.note_too_few", n=len(X), what=what))
        return pd.DataFrame(columns=["driver", "method", "importance", "ci_low", "ci_high"]), float("nan")
    lmg_fn = lambda a, b, g: lmg(a, b, g, cfg.max_exact, cfg.permutations, cfg.seed)  # noqa: E731
    shares = lmg_fn(X, yv, groups)
    rw = relative_weights(X, yv, groups)
    how = "exact" if len(groups) <= cfg.max_exact else f"{cfg.permutations} sampled orderings"
    out = []
    for name, imp, fn in ((f"{prefix}LMG share of R² ({how})", shares, lmg_fn),
                          (f"{prefix}relative weight (Johnson)", rw, relative_weights)):
        ci = bootstrap_importance(fn, X, yv, groups, cfg.bootstrap, cfg.seed, imp)
        out.append(pd.DataFrame({"driver": imp.index, "method": name, "importance": imp.to_numpy(),
                                 "ci_low": ci["ci_low"].reindex(imp.index).to_numpy(),
                                 "ci_high": ci["ci_high"].reindex(imp.index).to_numpy()}))
    return pd.concat(out, ignore_index=True), float(shares.sum())


@i18n.in_study_language
def run_drivers(study: Study, run_dir: str | Path) -> DriversResult:
    """Read the earlier outputs and the attribute and feedback tables; write drivers.parquet and churn_risk.parquet."""
    run_dir = Path(run_dir)
    with duckdb_parquet(io.stage_file(run_dir, "transactions_clean.parquet")) as t:
        b, early = aggregates.daily(t, study.occasion), aggregates.early_behaviour(t, study.drivers.early_days)
    rfm = io.read_stage(run_dir, "rfm.parquet")
    info = io.read_stage_json(run_dir, "rfm.json", optional=True)
    if info is not None:
        rfm.attrs["end"] = pd.Timestamp(info["end"]).normalize()
    clv = io.read_stage(run_dir, "clv.parquet", optional=True)
    attrs = reading.read_attributes(study, "customers")
    fb = reading.read_attributes(study, "feedback")
    res = build_drivers(study, b, early, rfm, clv, attrs, fb)
    io.write_parquet(res.drivers, run_dir / "drivers.parquet")
    sc = res.risk.scores.set_index("customer_id").reindex(res.flags["customer_id"].astype(str))
    risk = pd.DataFrame({"customer_id": res.flags["customer_id"].astype(io.STRING),
                         "churn_probability": sc["churn_probability"].to_numpy(),
                         "churned": res.flags["churned"].to_numpy(),
                         "within_cycle": sc["within_cycle"].fillna(False).astype(bool).to_numpy(),
                         "cycle_days": sc["cycle_days"].to_numpy()})
    io.write_parquet(risk, run_dir / "churn_risk.parquet")
    nps_all = None
    if res.survey is not None and "nps_points" in res.survey.columns:
        nps_all = float(res.survey.loc[res.survey["group"] == "all customers", "nps_points"].iloc[0])
    io.write_json({"rates": res.rates.to_dict("records"), "logrank": res.logrank, "nps": nps_all,
                   "auc": None if res.churn is None else res.churn.auc, "linear_r2": res.linear_r2,
                   "churn_risk": {"method": res.risk.method, "validation": res.risk.validation,
                                  "auc": res.risk.auc_model, "auc_purchase_model": res.risk.auc_baseline,
                                  "auc_recency": res.risk.auc_recency,
                                  "benchmarks": None if res.risk.benchmarks is None
                                  else res.risk.benchmarks.to_dict("records"),
                                  "horizon_days": res.risk.horizon_days, "cutoffs": res.risk.cutoffs},
                   "churn_reasons": None if res.reasons is None else res.reasons.to_dict("records"),
                   "notes": res.notes}, run_dir / "drivers.json")
    return res


def linear_side_by_side(drivers: pd.DataFrame) -> pd.DataFrame:
    """The two linear importances of each driver in one row (LMG share of R² with its interval, Johnson's
    relative weight), largest LMG share first: one row per driver instead of one per driver and method."""
    lmg = by_method(drivers, "LMG").set_index("driver")
    rw = by_method(drivers, "relative").set_index("driver")["importance"]
    return pd.DataFrame({"driver": lmg.index, "lmg_share": lmg["importance"].to_numpy(),
                         "ci_low": lmg["ci_low"].to_numpy(), "ci_high": lmg["ci_high"].to_numpy(),
                         "relative_weight": rw.reindex(lmg.index).to_numpy()})


def by_method(drivers: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """The importance rows of one method (matched by the start of its name), largest first."""
    d = drivers[drivers["method"].str.startswith(prefix)]
    return d.assign(_o=d["importance"].abs()).sort_values("_o", ascending=False).drop(columns="_o")

