"""Customer lifetime value: formula CLV, probabilistic CLV (BG/NBD or Pareto/NBD with Gamma-Gamma),
holdout validation, bootstrap intervals and contract retention (sBG).

Every figure carries its assumptions: horizon (months), gross margin, annual discount rate.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib import i18n, io, reading
from cvlib.analysis.contracts import contract_summary, with_contracts
from cvlib.analysis.fitting import MODELS, fit_models, fit_record
from cvlib.analysis.holdout import Holdout, validate_holdout
from cvlib.analysis.rfm import value_tiers
from cvlib.analysis.variants import build_variants
from cvlib.engines import aggregates, duckdb_parquet
from cvlib.finance import DAYS_PER_MONTH, formula_clv, retention_clv, yearly_revenue
from cvlib.models import (
    BetaGeoNBD,
    FitOutcome,
    GammaGamma,
    ModelFitError,
    patterns,
)
from cvlib.params import Clv, Study
from cvlib.status import contract_ends, departed

UNIT_DAYS = {"days": 1.0, "weeks": 7.0}


def yearly_retention(tx: pd.DataFrame | Any) -> tuple[float, str]:
    """Share of customers active in one window who buy again in the next, scaled to a year (`tx`: a frame of
    transactions or an engine's table of them).

    The window is a year, or half the observed span when the data cover less than two years."""
    with aggregates.table_of(tx) as t:
        start, end = aggregates.span(t)
        window = min(365.0, (end - start).days / 2)
        if window < 30:
            return float("nan"), i18n.t("clv.retention_short")
        w = pd.Timedelta(days=window)
        prev, both = aggregates.returning(t, end - 2 * w, end - w)
    if not prev:
        return float("nan"), i18n.t("clv.retention_no_prev")
    r_w = both / prev
    r = r_w ** (365.0 / window) if r_w > 0 else 0.0
    how = i18n.t("clv.retention_how", n=f"{both:,}", of=f"{prev:,}", days=f"{window:.0f}")
    return float(min(r, 0.99)), how + ("" if window == 365 else i18n.t("clv.retention_scaled", r=i18n.pct(r_w)))


def acquisition_channel(study: Study, attrs: pd.DataFrame | None, first: pd.Series | None) -> pd.Series | None:
    """Each customer's acquisition channel: an attribute column, else the channel of the first purchase (`first`,
    per customer id)."""
    col = study.clv.formula.channel_column
    if attrs is not None and col and col in attrs.columns:
        return attrs.set_index(attrs["customer_id"].astype(str))[col].astype(str)
    return first


def acquisition_costs(study: Study, attrs: pd.DataFrame | None, channel: pd.Series | None) -> pd.Series | None:
    """Each customer's acquisition cost: an attribute column, else the cost of their acquisition channel (None
    when neither is given; a single cost for everyone is `clv.formula.acquisition_cost`)."""
    f = study.clv.formula
    if attrs is not None and f.acquisition_cost_column and f.acquisition_cost_column in attrs.columns:
        return attrs.set_index(attrs["customer_id"].astype(str))[f.acquisition_cost_column].astype(float)
    if isinstance(f.acquisition_cost, dict) and channel is not None:
        return channel.map(f.acquisition_cost).astype(float)
    return None


def formula_table(rfm: pd.DataFrame, cfg: Clv, retention: float, by: str | None = None,
                  cac: pd.Series | None = None) -> pd.DataFrame:
    """Formula CLV overall or per group: yearly revenue, lifetime, CLV, retention-form CLV and CLV/CAC."""
    lifetime = cfg.formula.lifetime_years or (1 / (1 - retention) if np.isfinite(retention) else 1.0)
    r = cfg.formula.retention_rate or retention
    d = rfm.assign(yearly_revenue=yearly_revenue(rfm), _all="all customers")
    if cac is not None:
        d["cac"] = cac.reindex(d["customer_id"].astype(str)).to_numpy()
    key = by or "_all"
    g = d.groupby(key, observed=True).agg(customers=("customer_id", "size"), yearly_revenue=("yearly_revenue", "mean"),
                                          **({"cac": ("cac", "mean")} if cac is not None else {}))
    cost = g["cac"].fillna(0) if cac is not None else (cfg.formula.acquisition_cost if isinstance(
        cfg.formula.acquisition_cost, (int, float)) else 0.0)
    g["lifetime_years"] = lifetime
    g["formula_clv"] = formula_clv(g["yearly_revenue"], cfg.margin, lifetime, cost, cfg.discount_rate)
    g["retention_form_clv"] = retention_clv(g["yearly_revenue"] * cfg.margin, r,
                                            cfg.discount_rate) if np.isfinite(r) else np.nan
    if cac is not None:
        g["clv_to_cac"] = (g["formula_clv"] + g["cac"]) / g["cac"].replace(0, np.nan)
    return g.reset_index().rename(columns={"_all": "group"})


def discounted_purchases(model, summary: pd.DataFrame, months: int, unit: str,
                         discount_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """(expected purchases over the horizon, their sum discounted month by month) per customer, computed once
    per distinct (x, t_x, T) pattern."""
    (x, t_x, T), inv = patterns(*(summary[c].to_numpy(dtype=float) for c in ("x", "t_x", "T")))
    u = pd.DataFrame({"x": x, "t_x": t_x, "T": T})
    per_month = DAYS_PER_MONTH / UNIT_DAYS[unit]
    monthly = (1 + discount_rate) ** (1 / 12) - 1
    k = np.arange(1, months + 1)
    cum = model.cumulative(u, k * per_month)  # months x patterns
    step = np.diff(np.vstack([np.zeros(len(u)), cum]), axis=0)
    disc = (step / ((1 + monthly) ** k)[:, None]).sum(axis=0)
    return cum[-1][inv], disc[inv]


def own_mean_spend(summary: pd.DataFrame) -> np.ndarray:
    """Each customer's own mean spend per purchase occasion (0 without one): the spend when Gamma-Gamma is not used."""
    f = summary["frequency"]
    return np.where(f > 0, summary["monetary"] / f.where(f > 0, 1), 0.0)


def _spend(spend: GammaGamma | None, summary: pd.DataFrame) -> np.ndarray:
    return spend.expected_spend(summary) if spend is not None else own_mean_spend(summary)


def total_clv(summary: pd.DataFrame, purchase, spend: GammaGamma | None, cfg: Clv, unit: str,
              counted: np.ndarray | None = None) -> float:
    """Predicted CLV over the horizon summed over the customers (what the intervals are about); `counted`: only
    these customers' CLV counts (the live ones valued by the purchase model; the model is still fitted on all)."""
    _, disc = discounted_purchases(purchase, summary, cfg.horizon_months, unit, cfg.discount_rate)
    value = cfg.margin * _spend(spend, summary) * disc
    return float(np.sum(value if counted is None else value[counted]))


def customer_clv(summary: pd.DataFrame, purchase, spend: GammaGamma | None, cfg: Clv, unit: str) -> pd.DataFrame:
    """p_alive, expected purchases and spend, and CLV over the horizon for each customer."""
    exp_n, disc_n = discounted_purchases(purchase, summary, cfg.horizon_months, unit, cfg.discount_rate)
    exp_spend = _spend(spend, summary)
    return pd.DataFrame({"customer_id": summary["customer_id"].to_numpy(),
                         "p_alive": evidence_p_alive(purchase, summary),
                         "expected_purchases": exp_n, "expected_spend": exp_spend,
                         "clv": cfg.margin * exp_spend * disc_n})


def evidence_p_alive(purchase, summary: pd.DataFrame) -> np.ndarray:
    """The model's P(alive), left missing where it carries no evidence: BG/NBD gives P(alive) = 1 to every
    customer without a repeat purchase (dropout can only follow a purchase), whenever they bought. The CLV of
    those customers still uses the model as fitted; only the P(alive) shown and used as an indicator is left out."""
    p = purchase.p_alive(summary)
    if isinstance(purchase, BetaGeoNBD):
        p = np.where(summary["x"].to_numpy() > 0, p, np.nan)
    return p


def fallback_clv(rfm: pd.DataFrame, cfg: Clv, retention: float) -> pd.DataFrame:
    """Per-customer formula CLV over the horizon when no purchase model could be fitted."""
    lifetime = min(cfg.horizon_months / 12, cfg.formula.lifetime_years or (
        1 / (1 - retention) if np.isfinite(retention) else 1.0))
    yr = yearly_revenue(rfm)
    return pd.DataFrame({"customer_id": rfm["customer_id"].to_numpy(), "p_alive": np.nan,
                         "expected_purchases": rfm["frequency"].to_numpy() / np.maximum(rfm["tenure"].to_numpy(), 365)
                             * 365 * lifetime,
                         "expected_spend": rfm["monetary_mean"].to_numpy(),
                         "clv": np.asarray(formula_clv(yr, cfg.margin, lifetime, 0.0, cfg.discount_rate))})


def bootstrap_total(summary: pd.DataFrame, cfg: Clv, unit: str, name: str, with_spend: bool,
                    full: FitOutcome | None = None, full_spend: FitOutcome | None = None,
                    counted: np.ndarray | None = None) -> tuple[float, float] | None:
    """95% interval of total predicted CLV from refits on customers resampled with replacement.

    A resample is a vector of counts (how often each customer was drawn), so each refit is a weighted fit on
    the distinct (x, t_x, T) patterns, warm-started from the full fit (`full`): the same estimator as refitting
    on the resampled rows, without building them. The total is over the observed customers, as before."""
    if cfg.bootstrap == 0:
        return None
    rng = np.random.default_rng(cfg.seed)
    totals = []
    base = summary.reset_index(drop=True)
    n = len(base)
    (x, t_x, T), inv = patterns(*(base[c].to_numpy(dtype=float) for c in ("x", "t_x", "T")))
    pat = pd.DataFrame({"x": x, "t_x": t_x, "T": T})
    start = full.model if full is not None and full.ok else None
    spend_start = full_spend.model if full_spend is not None and full_spend.ok else None
    for _ in range(cfg.bootstrap):
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        try:
            m = MODELS[name]().fit(pat, weights=np.bincount(inv, weights=counts, minlength=len(pat)), start=start,
                                   errors=False)
            s = GammaGamma().fit(base, weights=counts, start=spend_start, errors=False) if with_spend else None
        except ModelFitError:
            continue
        if not m.converged_:
            continue
        totals.append(total_clv(base, m, s, cfg, unit, counted))
    if len(totals) < max(10, cfg.bootstrap // 2):
        return None
    lo, hi = np.percentile(totals, [2.5, 97.5])
    return float(lo), float(hi)


def delta_interval(summary: pd.DataFrame, cfg: Clv, unit: str, purchase, spend,
                   counted: np.ndarray | None = None) -> tuple[float, float] | None:
    """95% interval of total predicted CLV by the delta method: the total as a function of the purchase and spend
    models' log parameters, its gradient by central differences, their covariance from each fit's Hessian (the
    two likelihoods are separate, so the covariance is block-diagonal). Valid for large numbers of customers,
    which is where it replaces the resampling bootstrap. None without a covariance."""

    models = [m for m in (purchase, spend) if m is not None]
    if any(getattr(m, "log_cov_", None) is None for m in models):
        return None
    base = summary.reset_index(drop=True)
    theta = np.concatenate([np.log([m.params_[k] for k in m.names]) for m in models])
    sizes = [len(m.names) for m in models]

    def total(th: np.ndarray) -> float:
        parts = np.split(th, np.cumsum(sizes)[:-1])
        ms = []
        for m, part in zip(models, parts):
            c = copy.copy(m)
            c.params_ = dict(zip(m.names, np.exp(part)))
            ms.append(c)
        return total_clv(base, ms[0], ms[1] if len(ms) > 1 else None, cfg, unit, counted)

    h = 1e-4
    grad = np.array([(total(theta + h * e) - total(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])
    cov = np.zeros((len(theta), len(theta)))
    i = 0
    for m, k in zip(models, sizes):
        cov[i:i + k, i:i + k] = m.log_cov_
        i += k
    sd = float(np.sqrt(max(grad @ cov @ grad, 0.0)))
    mid = total(theta)
    return mid - 1.96 * sd, mid + 1.96 * sd


def forward_interval(summary: pd.DataFrame, customers: pd.DataFrame, by_model: np.ndarray, cfg: Clv, unit: str,
                     purchase: FitOutcome, spend: FitOutcome) -> tuple[tuple[float, float] | None, str]:
    """95% interval of the forward total CLV: the model's part over the live customers it values (refitted on
    every customer), plus the contracts' sBG values taken as fixed; with how it was computed."""
    counted = by_model & ~customers["departed"].to_numpy(dtype=bool)
    fixed = float(customers.loc[~by_model, "clv"].sum())
    if len(summary) > cfg.bootstrap_max_customers and cfg.bootstrap:
        interval = delta_interval(summary, cfg, unit, purchase.model, spend.model if spend.ok else None, counted)
        how = i18n.t("clv.interval_delta", n=f"{len(summary):,}", cap=f"{cfg.bootstrap_max_customers:,}")
    else:
        interval = bootstrap_total(summary, cfg, unit, cfg.model, spend.ok, purchase, spend, counted)
        how = i18n.t("clv.interval_bootstrap", n=cfg.bootstrap)
    return (None if interval is None else (interval[0] + fixed, interval[1] + fixed)), how


def observation_end(rfm: pd.DataFrame) -> pd.Timestamp:
    """The observation end the RFM table was computed at (last purchase + recency)."""
    return pd.Timestamp((pd.to_datetime(rfm["last_purchase"]) + pd.to_timedelta(rfm["recency"], unit="D")).max())


def with_status(study: Study, customers: pd.DataFrame, rfm: pd.DataFrame, attrs: pd.DataFrame | None,
                notes: list[str]) -> pd.DataFrame:
    """The customers with `departed` / `departed_reason` (cvlib.status) and their forward value: CLV, expected
    purchases and `monthly_profit` (CLV per month of the horizon) are zero for a customer who has left."""

    cfg = study.clv
    ce = None
    if attrs is not None and (cfg.contracts.enabled or study.drivers.churn == "contracts"):
        ce = contract_ends(attrs, cfg.contracts.end_column)
    r = io.by_customer(rfm)["recency"].reindex(customers["customer_id"].astype(str).to_numpy())
    st = departed(customers["customer_id"], r.to_numpy(), study.drivers.churn_days, ce, observation_end(rfm),
                  customers["p_alive"].to_numpy(dtype=float), cfg.departed_p_alive)
    gone = st["departed"].to_numpy()
    out = customers.assign(departed=gone, departed_reason=st["departed_reason"].to_numpy())
    out["clv_before_status"] = out["clv"]
    out.loc[gone, ["clv", "expected_purchases"]] = 0.0
    out["monthly_profit"] = out["clv"] / cfg.horizon_months
    if gone.any():
        counts = st.loc[gone, "departed_reason"].value_counts()
        notes.append(i18n.t("clv.note_departed", n=f"{int(gone.sum()):,}", of=f"{len(out):,}",
                            why=i18n.t("common.list_sep").join(
                                i18n.t("departed.count", n=f"{v:,}", reason=i18n.t(
                                    "departed." + k.replace(" ", "_"), days=study.drivers.churn_days,
                                    p=cfg.departed_p_alive)) for k, v in counts.items())))
    return out


# --------------------------------------------------------------------------- the stage
@dataclass
class ClvResult:
    customers: pd.DataFrame
    fits: dict[str, FitOutcome]
    used: str
    retention: float
    retention_how: str
    formula: pd.DataFrame
    by_segment: pd.DataFrame
    by_channel: pd.DataFrame | None
    holdout: Holdout | None
    holdout_fits: dict[str, FitOutcome] | None
    interval: tuple[float, float] | None
    interval_how: str
    contracts: dict | None
    notes: list[str] = field(default_factory=list)
    variants: pd.DataFrame | None = None  # the named CLV formulas beside the model CLV (cvlib.analysis.variants)
    contribution: dict = field(default_factory=dict)
    fallback: str = ""  # why (some) customers' CLV is the formula's instead of a model's ('' when none is)

    @property
    def purchase_model(self):
        """The fitted purchase model the per-customer CLV used (None for the formula or the contracts' sBG)."""
        f = self.fits.get(self.used)
        return f.model if f is not None and f.ok else None


def _holdout_check(study: Study, t: Any, cal: pd.DataFrame | None, notes: list[str],
                   end: pd.Timestamp) -> tuple[Holdout | None, dict | None]:
    """The purchase model refitted on the calibration period and checked on the holdout (with a calibration end)."""
    cfg = study.clv
    if cal is None or not len(cal):
        notes.append(i18n.for_consultant("clv.note_no_holdout"))
        return None, None
    hfits = fit_models(cal, cfg, (cfg.model,))
    if not hfits[cfg.model].ok:
        notes.append(i18n.t("clv.note_holdout_skipped", model=i18n.label(cfg.model), why=hfits[cfg.model].reason))
        return None, hfits
    return validate_holdout(cal, t, hfits[cfg.model].model, cfg.model, study.rfm.time_unit,
                            study.rfm.calibration_end, study.rfm.holdout_end or end,
                            aggregates.occasion_of(t, study.occasion)), hfits


def _formula_views(study: Study, t: Any, rfm2: pd.DataFrame, attrs: pd.DataFrame | None,
                   customers: pd.DataFrame, retention: float) -> tuple:
    """The acquisition costs and the formula CLV overall, by segment (beside the model CLV) and by channel."""
    cfg = study.clv
    channel = acquisition_channel(study, attrs, aggregates.first_channel(t))
    cac = acquisition_costs(study, attrs, channel)
    if channel is not None:
        rfm2["channel"] = rfm2["customer_id"].map(channel).fillna("unknown")
    overall = formula_table(rfm2, cfg, retention, None, cac)
    by_seg = formula_table(rfm2, cfg, retention, "segment", cac)
    by_seg = by_seg.merge(customers.groupby("segment", observed=True)["clv"].agg(["mean", "sum"]).rename(
        columns={"mean": "mean_model_clv", "sum": "total_model_clv"}), left_on="segment", right_index=True, how="left")
    by_chan = formula_table(rfm2, cfg, retention, "channel", cac) if channel is not None else None
    return cac, overall, by_seg, by_chan


def build_clv(study: Study, tx: pd.DataFrame | Any, rfm: pd.DataFrame, summary: pd.DataFrame,
              cal: pd.DataFrame | None, attrs: pd.DataFrame | None = None) -> ClvResult:
    """Everything the CLV stage computes. `tx`: the clean transactions as an engine's table (the stage: DuckDB
    over the Parquet file; only aggregates come back) or as a frame."""
    with aggregates.table_of(tx) as t:
        return _build_clv(study, t, rfm, summary, cal, attrs)


def _build_clv(study: Study, t: Any, rfm: pd.DataFrame, summary: pd.DataFrame, cal: pd.DataFrame | None,
               attrs: pd.DataFrame | None) -> ClvResult:
    cfg, unit = study.clv, study.rfm.time_unit
    notes: list[str] = []
    retention, how = yearly_retention(t)
    which = ("bgnbd", "paretonbd") if cfg.compare_paretonbd else (cfg.model,)
    which = tuple(dict.fromkeys((cfg.model, *which)))
    fits = fit_models(summary, cfg, which)
    if "paretonbd" in which and len(summary) > cfg.max_fit_customers:
        notes.append(i18n.t("clv.note_pnbd_sample", n=f"{cfg.max_fit_customers:,}", of=f"{len(summary):,}"))
    for f in fits.values():
        if not f.ok:
            notes.append(i18n.t("clv.note_not_used", model=i18n.label(f.name), why=f.reason))
    purchase, spend = fits[cfg.model], fits["gammagamma"]
    formula_note = ""
    if purchase.ok:
        used = cfg.model
        customers = customer_clv(summary, purchase.model, spend.model if spend.ok else None, cfg, unit)
        if not spend.ok:
            notes.append(i18n.t("clv.note_own_mean"))
    else:
        used = "formula"
        formula_note = i18n.t("clv.note_formula_used", h=cfg.horizon_months, model=i18n.label(cfg.model),
                              why=purchase.reason)
        notes.append(formula_note)
        customers = fallback_clv(rfm, cfg, retention)
    seg = rfm[["customer_id", "segment"]].astype({"customer_id": str})
    customers = customers.astype({"customer_id": str}).merge(seg, on="customer_id", how="left")
    rfm2 = rfm.assign(customer_id=rfm["customer_id"].astype(str))
    end = aggregates.span(t)[1]  # the last purchase's time, read once
    contracts = contract_summary(study, attrs, rfm2, end, notes) if cfg.contracts.enabled else None
    by_model = with_contracts(customers, contracts, cfg.horizon_months, notes)
    used = used if by_model.all() else "sbg"
    customers = with_status(study, customers, rfm, attrs, notes)
    if formula_note and not (by_model & ~customers["departed"].to_numpy(dtype=bool)).any():
        notes.remove(formula_note)  # every live customer is valued by the contract model: no formula value is left
    interval, interval_how = forward_interval(summary, customers, by_model, cfg, unit, purchase, spend) \
        if purchase.ok else (None, "")
    customers["clv_tier"] = value_tiers(customers["clv"], cfg.tiers.cuts, cfg.tiers.names)
    customers["customer_id"] = customers["customer_id"].astype(io.STRING)

    cac, overall, by_seg, by_chan = _formula_views(study, t, rfm2, attrs, customers, retention)

    holdout, hfits = _holdout_check(study, t, cal, notes, end)

    variants, contribution = None, {}
    if cfg.variants:
        per, variants, contribution = build_variants(study, t, rfm, customers["clv"], retention, cac, attrs)
        aligned = per.reindex(customers["customer_id"].astype(str).to_numpy())
        customers = customers.assign(**{c: aligned[c].to_numpy() for c in per.columns})
    fallback = formula_note if formula_note and formula_note in notes else ""  # some CLV is the formula's
    return ClvResult(customers, fits, used, retention, how, overall, by_seg, by_chan, holdout, hfits, interval,
                     interval_how, contracts, notes, variants, contribution, fallback)


@i18n.in_study_language
def run_clv(study: Study, run_dir: str | Path) -> ClvResult:
    """Read the earlier stages' outputs (of the clean transactions, only the engine's aggregates), build the CLV
    stage, write clv.parquet and clv_model.json."""
    run_dir = Path(run_dir)
    rfm = io.read_stage(run_dir, "rfm.parquet")
    summary = io.read_stage(run_dir, "clv_summary.parquet")
    cal = io.read_stage(run_dir, "clv_calibration.parquet", optional=True)
    attrs = reading.read_attributes(study, "customers")
    with duckdb_parquet(io.stage_file(run_dir, "transactions_clean.parquet")) as t:
        res = build_clv(study, t, rfm, summary, cal, attrs)
    io.write_parquet(res.customers, run_dir / "clv.parquet")
    io.write_json(model_report(study, res), run_dir / "clv_model.json")
    return res


def model_report(study: Study, res: ClvResult) -> dict:
    """The JSON record of the stage: models, assumptions, validation."""
    cfg = study.clv
    h = res.holdout
    return {
        "used_for_customer_clv": res.used,
        "formula_fallback": res.fallback or None,
        "departed_customers": int(res.customers["departed"].sum()),
        "assumptions": {"horizon_months": cfg.horizon_months, "margin": cfg.margin,
                        "annual_discount_rate": cfg.discount_rate, "time_unit": study.rfm.time_unit,
                        "currency": study.currency, "yearly_retention": res.retention,
                        "retention_measured_as": res.retention_how},
        "models": {k: {**(fit_record(f.model) if f.model else {}), "usable": f.ok, "reason": f.reason}
                   for k, f in res.fits.items()},
        "holdout": None if h is None else {
            "model": h.model, "totals": h.totals.to_dict("records"), "errors": h.errors.to_dict("records"),
            "beat_naive_baseline": h.beat_baseline,
            "calibration_fit": {k: fit_record(f.model) if f.model else None
                                for k, f in (res.holdout_fits or {}).items()}},
        "total_clv": float(res.customers["clv"].sum()),
        "total_clv_95pct_interval": res.interval,
        "total_clv_interval_method": res.interval_how,
        "contracts": None if not res.contracts else {"params": res.contracts["model"].params_,
                                                     "se": res.contracts["model"].se_},
        "variants": None if res.variants is None
            else res.variants.drop(columns=["formula", "inputs"]).to_dict("records"),
        "contribution": res.contribution,
        "notes": res.notes,
    }


def parameter_table(fits: dict[str, FitOutcome]) -> pd.DataFrame:
    """One row per model parameter: estimate, standard error, log-likelihood, and whether it is usable."""
    rows = []
    for name, f in fits.items():
        if f.model is None:
            rows.append({"model": name, "parameter": "–", "estimate": np.nan, "std_error": np.nan,
                         "loglik": np.nan, "status": f.reason})
            continue
        flat = any(not np.isfinite(v) for v in f.model.se_.values())
        status = (("ok, but the likelihood is flat here: no standard errors" if flat else "ok") if f.ok else f.reason)
        for _, r in f.model.summary().iterrows():
            rows.append({"model": name, "parameter": r["parameter"], "estimate": r["estimate"],
                         "std_error": r["std_error"], "loglik": f.model.loglik_, "status": status})
    return pd.DataFrame(rows)


def clv_by(customers: pd.DataFrame, column: str) -> pd.DataFrame:
    """Customers, mean and total CLV per value of a column."""
    return customers.groupby(column, observed=True)["clv"].agg(customers="size", mean_clv="mean",
                                                               total_clv="sum").reset_index()


def max_age(run_dir: str | Path) -> float:
    """The largest customer age T in the CLV summary (for the P(alive) grid)."""
    return float(io.read_stage(run_dir, "clv_summary.parquet", columns=["T"])["T"].max())


def calibration_week(study: Study, tracking: pd.DataFrame) -> float | None:
    """Week number (in the tracking chart) where calibration ends."""
    if study.rfm.calibration_end is None or tracking.empty:
        return None
    weeks_total = len(tracking)
    hold = pd.Timestamp(study.rfm.holdout_end) if study.rfm.holdout_end else None
    if hold is None:
        return None
    return weeks_total - (hold - pd.Timestamp(study.rfm.calibration_end)).days / 7
