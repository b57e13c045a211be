"""Churn risk from each customer's current state, validated out of time.

A customer "churns" when they make no purchase in the next `horizon` days (or, for contracts, when their
contract ends in that time). The design is a time split:

- features as of a cutoff (recency, frequency, spend, tenure, the customer's own purchase cycle and how far
  past it they are, the purchase model's P(alive), attributes and survey answers given by then);
- the label: churned in the horizon after the cutoff;
- trained at `end - 2 horizon`, tested at `end - horizon` (out of time), then refitted at `end - horizon` and
  used to score every customer with the same features computed at the observation end.

The purchase model's own forecast, P(no purchase in the horizon) = 1 - P(alive) (1 - ((alpha + T) /
(alpha + T + h))^(r + x)) under BG/NBD, is the baseline; the better of the two on the out-of-time test is used,
and the report says which. BG/NBD's P(alive) is 1 for every customer without a repeat purchase (a property of the
model, not evidence), so it is left out (missing) for them as a feature.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cvlib import i18n, io, threads
from cvlib.customers import DAY_NS, Purchases, _next_day, cycles_at, purchases, until
from cvlib.models import BetaGeoNBD

MIN_CLASS = 20


def bounded_sample(y: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Row positions of a stratified random sample of at most `cap` rows (all rows when there are fewer): the
    classifiers' training and validation cost grows with the rows; the sample keeps the churn share."""
    n = len(y)
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    y = np.asarray(y).astype(bool)
    picks = []
    for cls in (True, False):
        rows = np.flatnonzero(y == cls)
        take = max(1, int(round(cap * len(rows) / n)))
        picks.append(rng.choice(rows, min(take, len(rows)), replace=False))
    return np.sort(np.concatenate(picks))


@dataclass
class ChurnRisk:
    scores: pd.DataFrame            # customer_id, churn_probability, churned, recency, cycle_days, within_cycle
    method: str                     # "classifier" | "purchase model" | "none"
    validation: str                 # how the AUCs were measured
    auc_model: float
    auc_baseline: float
    calibration: pd.DataFrame       # decile of predicted risk: mean predicted, observed churn, customers
    by_recency: pd.DataFrame        # recency decile: mean recency, mean churn probability, customers
    n_train: int = 0
    n_test: int = 0
    horizon_days: int = 0
    cutoffs: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    benchmarks: pd.DataFrame | None = None  # ranking, AUC among every customer and among the active, customers
    auc_recency: float = float("nan")


def state_at(tx: pd.DataFrame, at: pd.Timestamp, unit_days: float = 7.0, p: Purchases | None = None) -> pd.DataFrame:
    """Behaviour features of every customer who bought on or before `at`, as of `at` (`p`: the transactions'
    `purchases`, when several cutoffs share them)."""
    p = purchases(tx) if p is None else p
    c = cycles_at(p, at)
    at_day = pd.Timestamp(at).normalize().value // DAY_NS
    out = pd.DataFrame(index=c.index)
    out["recency_days"] = (at_day - c["last"]).astype(float)
    out["tenure_days"] = (at_day - c["first"]).astype(float)
    out["occasions"] = c["occasions"].astype(float)
    out["log_spend"] = np.log1p(c["spend"].clip(lower=0).to_numpy())
    out["log_mean_spend"] = np.log1p((c["spend"] / c["occasions"]).clip(lower=0).to_numpy())
    out["median_gap_days"] = c["median_gap"]
    out["gap_cv"] = c["gap_cv"]
    out["recency_over_cycle"] = out["recency_days"] / c["median_gap"].where(c["median_gap"] > 0)
    out["rate_per_year"] = (c["occasions"] - 1) / np.maximum(out["tenure_days"], 1.0) * 365.25
    # the purchase model's view at `at`: x, t_x, T in `unit_days`
    out["x"] = c["occasions"] - 1.0
    out["t_x"] = (c["last"] - c["first"]) / unit_days
    out["T"] = out["tenure_days"] / unit_days
    return out


def label_after(tx: pd.DataFrame, at: pd.Timestamp, horizon_days: int, customers: pd.Index,
                p: Purchases | None = None) -> pd.Series:
    """True for customers with no purchase in (at, at + horizon]."""
    p = purchases(tx) if p is None else p
    window = (p.ns >= _next_day(at).value) & (p.ns < _next_day(at + pd.Timedelta(days=horizon_days)).value)
    active = np.zeros(len(p.ids), dtype=bool)
    active[p.code[window]] = True
    where = p.ids.get_indexer(io.as_ids(pd.Series(customers)))
    return pd.Series(~np.where(where >= 0, active[np.maximum(where, 0)], False), index=customers)


def usual_cycle(state: pd.DataFrame) -> pd.Series:
    """Each customer's usual purchase interval in days: their own median gap, shrunk toward the typical cycle
    when they have few gaps; one-time buyers get the typical cycle (median over repeat buyers)."""
    own = state["median_gap_days"]
    typical = float(own.median()) if own.notna().any() else np.nan
    gaps = (state["occasions"] - 1).clip(lower=0)
    k = 2.0  # pseudo-gaps of the typical cycle
    shrunk = (own * gaps + typical * k) / (gaps + k)
    return shrunk.where(own.notna(), typical)


# --------------------------------------------------------------------------- the purchase model baseline
def _bgnbd_at(state: pd.DataFrame):
    return BetaGeoNBD().fit(state[["x", "t_x", "T"]])


def baseline_risk(model, state: pd.DataFrame, horizon_days: float, unit_days: float) -> np.ndarray:
    """BG/NBD's P(no purchase in the next horizon) for each customer."""
    r, alpha = model.params_["r"], model.params_["alpha"]
    h = horizon_days / unit_days
    x, T = state["x"].to_numpy(), state["T"].to_numpy()
    p_alive = model.p_alive(state[["x", "t_x", "T"]])
    none_if_alive = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + h)))
    return 1 - p_alive * (1 - none_if_alive)


def with_p_alive(state: pd.DataFrame, model) -> pd.DataFrame:
    """State plus the model's P(alive), left missing where it carries no evidence (no repeat purchase)."""
    p = model.p_alive(state[["x", "t_x", "T"]]) if model is not None else np.full(len(state), np.nan)
    return state.assign(p_alive=np.where(state["x"].to_numpy() > 0, p, np.nan))


# --------------------------------------------------------------------------- features from attributes and surveys
def extra_features(customers: pd.Index, attrs: pd.DataFrame | None, fb: pd.DataFrame | None, at: pd.Timestamp,
                   exclude: list[str], nps_col: str | None, complaints_col: str | None) -> pd.DataFrame:
    """Numeric attributes, categorical ones as codes, and survey answers given on or before `at` (means, a
    count, complaints per survey), missing where a customer gave none."""
    out = pd.DataFrame(index=customers)
    if attrs is not None:
        a = io.first_per_customer(attrs).reindex(customers)
        for col in a.columns:
            if col in exclude or pd.api.types.is_datetime64_any_dtype(a[col]):
                continue
            if pd.api.types.is_numeric_dtype(a[col]):
                out[f"attr_{col}"] = a[col].astype(float)
            elif a[col].nunique() <= 12:
                codes = pd.Categorical(a[col].astype("string").fillna("missing")).codes.astype(float)
                out[f"attr_{col}"] = codes
    if fb is not None:
        f = fb.assign(customer_id=fb["customer_id"].astype(str))
        if "date" in f.columns:
            f = f[f["date"].isna() | (f["date"] <= at)]
        num = [c for c in f.columns if c not in {"customer_id", "date"} and pd.api.types.is_numeric_dtype(f[c])
               and c not in exclude]
        if num:
            g = f.groupby("customer_id")
            means = g[num].mean().reindex(customers)
            for c in num:
                if c == complaints_col:
                    out["complaints_per_survey"] = means[c]
                else:
                    out[f"survey_{c}"] = means[c]
            out["surveys_answered"] = g.size().reindex(customers).fillna(0).astype(float)
    return out


# --------------------------------------------------------------------------- fit and score
def _classifier(seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_depth=3, learning_rate=0.06, max_iter=250, l2_regularization=1.0,
                                          min_samples_leaf=40, random_state=seed)


def _calibrated(seed: int, n: int):
    from sklearn.calibration import CalibratedClassifierCV

    return CalibratedClassifierCV(_classifier(seed), method="isotonic" if n >= 2000 else "sigmoid", cv=3)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(p)
    if ok.sum() < 2 or len(np.unique(y[ok])) < 2:
        return float("nan")
    return float(roc_auc_score(y[ok], p[ok]))


RANKINGS = ("classifier", "purchase model", "recency")


def benchmark_table(y: np.ndarray, active: np.ndarray, scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """Out-of-time AUC of each ranking of churn risk (higher score = more at risk), among every customer and among
    those still active at the cutoff (bought within the horizon, or a running contract): the decision the list
    feeds is about live customers, where recency alone is the benchmark to beat."""
    rows = []
    for name, sc in scores.items():
        sc = np.asarray(sc, dtype=float)
        rows.append({"ranking": name, "auc_all": _auc(y, sc), "auc_active": _auc(y[active], sc[active]),
                     "customers": int(len(y)), "active_customers": int(active.sum()),
                     "active_churn_rate": float(np.mean(y[active])) if active.any() else float("nan")})
    return pd.DataFrame(rows)


def choose_ranking(bench: pd.DataFrame) -> str:
    """The ranking the churn-risk list uses: the best AUC among active customers (among every customer when the
    active ones have too few churners to tell); ties go to the simpler ranking (recency, then the purchase model)."""
    col = "auc_active" if bench["auc_active"].notna().any() else "auc_all"
    b = bench.set_index("ranking")[col].dropna()
    if b.empty:
        return "classifier"
    simple_first = [r for r in ("recency", "purchase model", "classifier") if r in b.index]
    best = b.max()
    return next(r for r in simple_first if b[r] >= best - 1e-9)


def bench_fields(bench: pd.DataFrame) -> dict[str, str]:
    """The AUCs among active customers (or all, when not available) as text for the report's sentence."""
    b = bench.set_index("ranking")

    def f(name: str) -> str:
        active = b.loc[name, "auc_active"]
        v = active if active == active else b.loc[name, "auc_all"]  # among the active, where measured
        return "–" if v != v else f"{v:.3f}"

    return {"clf": f("classifier"), "pm": f("purchase model"), "rec": f("recency"),
            "n": f"{int(b['active_customers'].iloc[0]):,}"}


def ranked(y: np.ndarray, recency: np.ndarray, classifier: np.ndarray, purchase_model: np.ndarray,
           horizon: int | None) -> tuple[pd.DataFrame, str, pd.DataFrame]:
    """The out-of-time benchmark of the three rankings (active: bought within `horizon`; every customer when None,
    as for contracts), the ranking chosen and its calibration table."""
    active = recency <= horizon if horizon is not None else np.ones(len(y), dtype=bool)
    scores = {"classifier": classifier, "purchase model": purchase_model, "recency": recency}
    bench = benchmark_table(y, active, scores)
    method = choose_ranking(bench)
    shown = recency_probability(recency, y, recency) if method == "recency" else scores[method]
    return bench, method, calibration_table(y, shown)


def recency_probability(recency_fit: np.ndarray, y: np.ndarray, recency_new: np.ndarray) -> np.ndarray:
    """Churn probability as a non-decreasing function of recency, fitted by isotonic regression on the labelled
    cutoff and applied to `recency_new` (recency used as the ranking, calibrated on what followed)."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0.0, y_max=1.0)
    return iso.fit(np.asarray(recency_fit, dtype=float), np.asarray(y, dtype=float)).predict(
        np.asarray(recency_new, dtype=float))


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted churn probability against the observed churn rate, by decile of prediction."""
    d = pd.DataFrame({"p": p, "y": y.astype(float)}).dropna()
    if d.empty:
        return pd.DataFrame(columns=["decile", "customers", "mean_predicted", "observed_churn"])
    d["decile"] = pd.qcut(d["p"].rank(method="first"), min(bins, len(d)), labels=False) + 1
    t = d.groupby("decile").agg(customers=("y", "size"), mean_predicted=("p", "mean"), observed_churn=("y", "mean"))
    return t.reset_index()


def by_recency_decile(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean churn probability by decile of recency (1 = bought most recently)."""
    d = scores.dropna(subset=["churn_probability"])
    if d.empty:
        return pd.DataFrame(columns=["recency_decile", "customers", "mean_recency_days", "mean_churn_probability"])
    q = pd.qcut(d["recency"].rank(method="first"), min(10, len(d)), labels=False) + 1
    t = d.assign(recency_decile=q).groupby("recency_decile").agg(
        customers=("recency", "size"), mean_recency_days=("recency", "mean"),
        mean_churn_probability=("churn_probability", "mean"))
    return t.reset_index()


def _frame(tx, at, horizon, attrs, fb, cfg, unit_days, label: bool, p: Purchases | None = None):
    p = purchases(tx) if p is None else p
    state = state_at(tx, at, unit_days, p)
    model = None
    if (state["x"] > 0).sum() >= 10:
        try:
            model = _bgnbd_at(state)
        except Exception:  # the baseline is optional: without it the classifier goes on
            model = None
    state = with_p_alive(state, model)
    feats = state.drop(columns=["x", "t_x", "T"]).join(
        extra_features(state.index, attrs, fb, at, cfg.never_used(), cfg.feedback.nps, cfg.feedback.complaints))
    base = baseline_risk(model, state, horizon, unit_days) if model is not None else np.full(len(state), np.nan)
    y = label_after(tx, at, horizon, state.index, p).to_numpy() if label else None
    return state, feats, base, y


class InactivityLabels:
    """Churn as inactivity: a customer churns who makes no purchase within the horizon; recent buyers, within
    their usual purchase cycle, are shielded from the churn-risk list."""

    shields_by_cycle = True

    def __init__(self, horizon_days: int) -> None:
        self.h = horizon_days
        self.recency_horizon: int | None = horizon_days  # recency beyond the horizon is churn by definition

    def churned(self, state: pd.DataFrame, end: pd.Timestamp) -> np.ndarray:
        return state["recency_days"].to_numpy() > self.h

    def at_cutoff(self, frame: tuple, at: pd.Timestamp) -> tuple:
        return frame  # labelled by the purchases after the cutoff (`label_after`)


class ContractLabels:
    """Churn as a contract that ends: labelled by the contract end dates; a client billed last week can still be
    about not to renew, so the purchase cycle shields no one."""

    shields_by_cycle = False
    recency_horizon = None

    def __init__(self, horizon_days: int, contract_end: pd.Series) -> None:
        self.h, self.contract_end = horizon_days, contract_end

    def churned(self, state: pd.DataFrame, end: pd.Timestamp) -> np.ndarray:
        ce = self.contract_end.reindex(state.index)
        return (ce.notna() & (ce <= end)).to_numpy()

    def at_cutoff(self, frame: tuple, at: pd.Timestamp) -> tuple:
        """The frame of the customers whose contract still ran at the cutoff, labelled by its end within the
        horizon."""
        s, f, b, _ = frame
        ce = self.contract_end.reindex(s.index)
        y = (ce.notna() & (ce > at) & (ce <= at + pd.Timedelta(days=self.h))).to_numpy()
        alive = ~(ce.fillna(pd.Timestamp.max) <= at).to_numpy()
        return s[alive], f[alive], b[alive], y[alive]


@dataclass
class _Training:
    """What the one training path learned: the ranking chosen, the probabilities of every customer, and how it
    was validated."""

    method: str = "none"
    validation: str = ""
    auc_model: float = float("nan")
    auc_baseline: float = float("nan")
    auc_recency: float = float("nan")
    benchmarks: pd.DataFrame | None = None
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    n_train: int = 0
    n_test: int = 0
    proba: np.ndarray | None = None


def _sampled(frame: tuple, cap: int, seed: int) -> tuple:
    keep = bounded_sample(frame[3], cap, seed)
    s, f, b, y = frame
    return s.iloc[keep], f.iloc[keep], b[keep], y[keep]


def _two_classes(y: np.ndarray) -> bool:
    k = int(y.sum())
    return min(k, len(y) - k) >= MIN_CLASS


def _test_probabilities(f1: pd.DataFrame, y1: np.ndarray, later: tuple | None, seed: int,
                        texts: dict) -> tuple[np.ndarray, list[str], str, int, int]:
    """Out-of-time probabilities of the test cutoff's customers from a model trained at the earlier cutoff
    (`later`: that cutoff's frame), else out-of-fold at the test cutoff. Returns them with the columns used, the
    validation in words and the training and test sizes."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    cols = list(f1.columns)
    if later is not None:
        f2 = later[1].reindex(columns=cols)
        cols = [c for c in cols if f2[c].notna().any() and f1[c].notna().any()]  # a column with no value
        clf = _calibrated(seed, len(later[3])).fit(f2[cols], later[3])
        return clf.predict_proba(f1[cols])[:, 1], cols, texts["out_of_time"], len(later[3]), len(y1)
    cols = [c for c in cols if f1[c].notna().any()]
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    p_test = cross_val_predict(_calibrated(seed, len(y1)), f1[cols], y1, cv=folds, method="predict_proba")[:, 1]
    return p_test, cols, texts["in_time"], len(y1), len(y1)


def _train(frames: dict, labels: InactivityLabels | ContractLabels, cfg, feats_end: pd.DataFrame,
           state_end: pd.DataFrame, texts: dict, notes: list[str]) -> _Training:
    """The one training path: the test cutoff's customers scored (out of time when the earlier cutoff has both
    classes), the three rankings compared among the active, and every customer scored by the one chosen."""
    s1, f1, b1, y1 = frames["test"]
    cap = cfg.max_model_customers
    later = frames.get("train")
    if len(y1) > cap:
        s1, f1, b1, y1 = _sampled((s1, f1, b1, y1), cap, cfg.seed)
        notes.append(i18n.t("churn.sampled", n=f"{cap:,}"))
    if later is not None and len(later[3]) > cap and _two_classes(later[3]):
        later = _sampled(later, cap, cfg.seed + 1)
    if later is not None and not _two_classes(later[3]):
        later = None
    p_test, cols, validation, n_train, n_test = _test_probabilities(f1, y1, later, cfg.seed, texts)
    if later is None:
        notes.append(i18n.t("churn.in_time_note", h=labels.h))
    bench, method, cal = ranked(y1, s1["recency_days"].to_numpy(dtype=float), p_test, b1, labels.recency_horizon)
    out = _Training(method, validation, _auc(y1, p_test), _auc(y1, b1),
                    float(bench.set_index("ranking").loc["recency", "auc_all"]), bench, cal, n_train, n_test)
    if method == "classifier":
        final = _calibrated(cfg.seed, len(y1)).fit(f1[cols], y1)
        with threads.batch_threads(len(feats_end)):  # every customer scored: a large batch
            out.proba = final.predict_proba(feats_end.reindex(columns=cols))[:, 1]
    elif method == "recency":
        out.proba = recency_probability(s1["recency_days"].to_numpy(dtype=float), y1,
                                        state_end["recency_days"].to_numpy(dtype=float))
    notes.append(i18n.t(f"churn.ranking_{method.replace(' ', '_')}", **bench_fields(bench)))
    return out


def churn_risk(tx: pd.DataFrame | Purchases, end: pd.Timestamp, horizon_days: int, cfg,
               attrs: pd.DataFrame | None = None, fb: pd.DataFrame | None = None, contract_end: pd.Series | None = None,
               unit_days: float = 7.0, cycle: pd.Series | None = None) -> ChurnRisk:
    """Every customer's probability of churning in the next `horizon_days` after `end` (see the module doc).
    `cycle`: each customer's usual purchase cycle in days (the study's, `journey.purchase_cycles`), which decides
    `within_cycle`; `usual_cycle` of the purchase days when not given. `tx`: the transactions, or their
    `Purchases` (the engine's customer-day totals: every rule here counts whole days, so they give the same)."""
    notes: list[str] = []
    end, h = pd.Timestamp(end).normalize(), int(horizon_days)
    labels = InactivityLabels(h) if contract_end is None else ContractLabels(h, contract_end)
    p = until(tx if isinstance(tx, Purchases) else purchases(tx), end)  # codes and days once, for three cutoffs
    start = pd.Timestamp(int(p.day.min()), unit="D")
    c1, c2 = end - pd.Timedelta(days=h), end - pd.Timedelta(days=2 * h)
    state_end, feats_end, base_end, _ = _frame(None, end, h, attrs, fb, cfg, unit_days, label=False, p=p)
    scores = _current_state(state_end, usual_cycle(state_end) if cycle is None else cycle.reindex(state_end.index),
                            labels, end)

    def usable(at: pd.Timestamp) -> bool:
        return at - start >= pd.Timedelta(days=30)

    def frame(at: pd.Timestamp) -> tuple:
        return labels.at_cutoff(_frame(None, at, h, attrs, fb, cfg, unit_days, label=True, p=p), at)

    texts = {"in_time": i18n.t("churn.in_time", at=i18n.date(c1), h=h),
             "out_of_time": i18n.t("churn.out_of_time", train=i18n.date(c2), test=i18n.date(c1), h=h,
                                   end=i18n.date(end))}
    fit = _Training(validation=i18n.t("churn.not_validated"))
    if not usable(c1):
        notes.append(i18n.t("churn.too_short", days=h + 30, h=h))
    elif not _two_classes((test := frame(c1))[3]):
        k1 = int(test[3].sum())
        notes.append(i18n.t("churn.too_few", k1=k1, k0=len(test[3]) - k1, at=i18n.date(c1), need=MIN_CLASS))
    else:
        fit = _train({"test": test, **({"train": frame(c2)} if usable(c2) else {})}, labels, cfg, feats_end,
                     state_end, texts, notes)
    if fit.method == "none" and np.isfinite(base_end).any():
        fit.method, fit.proba = "purchase model", base_end
        notes.append(i18n.t("churn.baseline_used"))
    elif fit.method == "purchase model":
        fit.proba = base_end
    scores["churn_probability"] = fit.proba if fit.proba is not None else np.full(len(scores), np.nan)
    if contract_end is not None:
        scores.loc[scores["churned"], "churn_probability"] = 1.0
    scores["customer_id"] = scores["customer_id"].astype(str)
    return ChurnRisk(scores, fit.method, fit.validation, fit.auc_model, fit.auc_baseline, fit.calibration,
                     by_recency_decile(scores), fit.n_train, fit.n_test, h,
                     {"train": str(c2.date()), "test": str(c1.date()), "score": str(end.date())}, notes,
                     fit.benchmarks, fit.auc_recency)


def _current_state(state: pd.DataFrame, cycle: pd.Series, labels: InactivityLabels | ContractLabels,
                   end: pd.Timestamp) -> pd.DataFrame:
    """Each customer's recency, usual cycle, whether still within it, and whether churned already at `end`."""
    scores = pd.DataFrame({"customer_id": state.index, "recency": state["recency_days"].to_numpy(),
                           "cycle_days": cycle.to_numpy()})
    within = (scores["recency"] <= scores["cycle_days"].fillna(-1)).to_numpy()
    scores["within_cycle"] = within if labels.shields_by_cycle else False
    scores["churned"] = labels.churned(state, end)
    return scores
