"""RFM: customer summary, scores, named segments, value concentration and clusters.

The customer summary is built with integer codes and one sort (no per-customer
Python), so 10M transactions of 1M customers take a few seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib import i18n, io
from cvlib.customers import calibration_holdout, customer_summary
from cvlib.engines import aggregates, duckdb_parquet
from cvlib.engines import summary as engine_summary
from cvlib.occasions import occasion_basis
from cvlib.params import Rfm, SegmentRule, Study


# --------------------------------------------------------------------------- scores
def score(values: pd.Series, n: int = 5, reverse: bool = False, edges: list[float] | None = None,
          ties: str = "shared") -> pd.Series:
    """Scores 1..n by quantiles of the ranks (or by fixed edges). reverse: low values score high.

    ties='shared': equal values always share a score, the lowest values score 1 (bins may be
    uneven under heavy ties);
    ties='first': ranks break ties in data order so the bins are equal-sized."""
    v = values.astype(float)
    if edges is not None:
        bins = [-np.inf, *edges, np.inf]
        s = pd.cut(v, bins=bins, labels=False, right=False).astype(int) + 1
        n = len(edges) + 1
    elif len(v) == 0:
        return pd.Series([], dtype="int64", index=values.index)
    else:
        pct = v.rank(method="min" if ties == "shared" else "first", pct=True)
        s = np.ceil(pct * n).clip(1, n).astype(int)
    s = (n + 1 - s) if reverse else s
    return pd.Series(np.asarray(s, dtype="int64"), index=values.index)


def add_scores(summary: pd.DataFrame, rules: Rfm) -> tuple[pd.DataFrame, list[str]]:
    """Add r_score, f_score, m_score (1..n, 5 best) and a note for each score that carries no information."""
    out = summary.copy()
    notes = []
    e = rules.bin_edges
    spec = {"r_score": ("recency", True, e.recency), "f_score": ("frequency", False, e.frequency),
            "m_score": ("monetary", False, e.monetary)}
    for col, (src, rev, edges) in spec.items():
        out[col] = score(out[src], rules.n_bins, rev, edges, rules.ties)
        if out[src].nunique() <= 1:
            notes.append(i18n.t("rfm.note_constant", what=i18n.label(src), v=f"{out[src].iloc[0]:,.4g}"))
    if len(out) < rules.n_bins:
        notes.append(i18n.t("rfm.note_few", n=len(out), bins=rules.n_bins))
    return out, notes


def assign_segments(scored: pd.DataFrame, grid: list[SegmentRule], n_bins: int = 5, on: str = "rf") -> pd.Series:
    """Segment name per customer: the first grid rule whose R and F (or FM) ranges hold its scores.

    Scores on another scale than 1-5 are mapped onto 1-5 first; unmatched customers are 'Other'."""
    def to5(s: pd.Series) -> np.ndarray:
        return np.ceil(s.to_numpy() * 5 / n_bins).astype(int) if n_bins != 5 else s.to_numpy()

    r = to5(scored["r_score"])
    f_raw = scored["f_score"] if on == "rf" else np.round((scored["f_score"] + scored["m_score"]) / 2)
    f = to5(pd.Series(f_raw, index=scored.index))
    seg = np.full(len(scored), None, dtype=object)
    for rule in grid:
        hit = (seg == None) & (r >= rule.r[0]) & (r <= rule.r[1]) & (f >= rule.f[0]) & (f <= rule.f[1])  # noqa: E711
        seg[hit] = rule.name
    seg[seg == None] = "Other"  # noqa: E711
    order = [g.name for g in grid] + ["Other"]
    return pd.Series(pd.Categorical(seg, categories=list(dict.fromkeys(order))), index=scored.index)


def segment_table(rfm: pd.DataFrame) -> pd.DataFrame:
    """Customers, revenue and their shares, and mean R/F/M per segment (empty segments dropped)."""
    g = rfm.groupby("segment", observed=True).agg(
        customers=("customer_id", "size"), revenue=("monetary", "sum"), mean_recency_days=("recency", "mean"),
        mean_frequency=("frequency", "mean"), mean_monetary=("monetary", "mean"))
    g.insert(1, "share_of_customers", g["customers"] / g["customers"].sum())
    g.insert(3, "share_of_revenue", g["revenue"] / g["revenue"].sum() if g["revenue"].sum() else 0.0)
    return g.reset_index()


def rf_grid(rfm: pd.DataFrame, value: str = "count") -> pd.DataFrame:
    """R (rows, best on top) x F (columns) table of customer counts or mean monetary value."""
    if value == "count":
        t = rfm.pivot_table(index="r_score", columns="f_score", values="customer_id", aggfunc="size", fill_value=0)
    else:
        t = rfm.pivot_table(index="r_score", columns="f_score", values="monetary", aggfunc="mean")
    return t.sort_index(ascending=False)


# --------------------------------------------------------------------------- concentration
def pareto_curve(monetary: pd.Series) -> pd.DataFrame:
    """Cumulative revenue share against cumulative customer share, customers sorted by revenue (desc)."""
    v = np.sort(monetary.to_numpy(dtype=float))[::-1]
    n = len(v)
    total = v.sum()
    return pd.DataFrame({"customer_share": np.arange(1, n + 1) / n,
                         "revenue_share": np.cumsum(v) / total if total else np.zeros(n)})


def gini(values: pd.Series | np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: everyone equal; towards 1: one holds all)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * x) / (n * x.sum()))


def top_share(monetary: pd.Series, q: float) -> float:
    """Revenue share of the top `q` of customers by revenue (the count rounded up: at least one customer)."""
    curve = pareto_curve(monetary)
    if curve.empty:
        return float("nan")
    return float(curve["revenue_share"].iloc[int(np.ceil(q * len(curve))) - 1])


def concentration(monetary: pd.Series) -> dict[str, float]:
    """Top-20% revenue share, the customer share making 80% of revenue, and the Gini coefficient."""
    curve = pareto_curve(monetary)
    if curve.empty:
        return {"top20_revenue_share": float("nan"), "customer_share_for_80pct": float("nan"), "gini": float("nan")}
    n = len(curve)
    idx = int(np.searchsorted(curve["revenue_share"].to_numpy(), 0.8 - 1e-12))
    return {"top20_revenue_share": top_share(monetary, 0.2),
            "customer_share_for_80pct": float(curve["customer_share"].iloc[min(idx, n - 1)]),
            "gini": gini(monetary)}


def abc_classes(monetary: pd.Series, cuts: tuple[float, float] = (0.8, 0.95)) -> pd.Series:
    """A: customers making the first cuts[0] of revenue (by rank), B: up to cuts[1], C: the rest."""
    order = monetary.sort_values(ascending=False, kind="stable")
    total = order.sum()
    before = (order.cumsum() - order) / total if total else pd.Series(0.0, index=order.index)
    cls = np.where(before < cuts[0], "A", np.where(before < cuts[1], "B", "C"))
    return pd.Series(cls, index=order.index).reindex(monetary.index)


def value_tiers(monetary: pd.Series, cuts: list[float], names: list[str]) -> pd.Series:
    """Value pyramid: tiers by customer rank share (top 1%, next 4%, ...)."""
    rank = monetary.rank(method="first", ascending=False) / len(monetary)
    idx = np.searchsorted(np.asarray(cuts), rank.to_numpy() - 1e-12, side="left")
    return pd.Series(pd.Categorical(np.asarray(names, dtype=object)[idx], categories=names), index=monetary.index)


def tier_table(rfm: pd.DataFrame, column: str) -> pd.DataFrame:
    """Customers and revenue with their shares per class (ABC or tier)."""
    g = rfm.groupby(column, observed=False).agg(customers=("customer_id", "size"), revenue=("monetary", "sum"))
    g["share_of_customers"] = g["customers"] / max(g["customers"].sum(), 1)
    g["share_of_revenue"] = g["revenue"] / g["revenue"].sum() if g["revenue"].sum() else 0.0
    return g.reset_index()


# --------------------------------------------------------------------------- clusters
@dataclass
class ClusterResult:
    labels: pd.Series | None
    k: int | None
    scores: pd.DataFrame  # k, inertia, silhouette
    profile: pd.DataFrame
    silhouette_samples: pd.DataFrame | None
    rules: str = ""
    tree_accuracy: float | None = None
    tree_rules: list[dict] = field(default_factory=list)  # one per leaf: cluster, label, bounds, customers
    notes: list[str] = field(default_factory=list)


def cluster_pipeline(k: int, seed: int):
    """log1p -> standardise -> k-means, as one scikit-learn pipeline."""
    from sklearn.cluster import KMeans
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return make_pipeline(FunctionTransformer(np.log1p), StandardScaler(),
                         KMeans(n_clusters=k, n_init=10, random_state=seed))


RECENT_DAYS, LAPSED_DAYS = 180, 365  # a cluster is 'recent' only if its median member bought within half a year


def _label(z: pd.Series, median: pd.Series) -> str:
    """A cluster's name from its mean standardised log recency, frequency and spend, checked against its members'
    medians so that it never contradicts them: 'recent' only when the median member bought within RECENT_DAYS,
    'lapsed' whenever they did not buy for LAPSED_DAYS, 'frequent' never for a cluster of one-time buyers."""
    def level(v: float, hi: str, lo: str, mid: str) -> str:
        return hi if v > 0.5 else lo if v < -0.5 else mid

    recency = level(-z["recency"], "recent", "lapsed", "mid recency")
    if median["recency"] > LAPSED_DAYS:
        recency = "lapsed"
    elif recency == "recent" and median["recency"] > RECENT_DAYS:
        recency = "mid recency"
    frequency = level(z["frequency"], "frequent", "rare", "occasional")
    if median["frequency"] <= 1:
        frequency = "rare"
    return " · ".join([recency, frequency, level(z["monetary"], "high spend", "low spend", "mid spend")])


def silhouettes(dist: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each sample's silhouette from a distance matrix, as scikit-learn's `silhouette_samples` defines it
    (0 in a cluster of one): every sample's distance sums to each cluster as one matrix product, several times
    faster than its chunked pass, which the choice of k repeats for every k."""
    _, lab = np.unique(labels, return_inverse=True)
    n = len(lab)
    onehot = np.zeros((n, int(lab.max()) + 1))
    onehot[np.arange(n), lab] = 1.0
    size = onehot.sum(axis=0)
    sums = dist @ onehot  # distance of each sample to all members of each cluster
    rows = np.arange(n)
    own = sums[rows, lab] / np.maximum(size[lab] - 1, 1)
    means = sums / size
    means[rows, lab] = np.inf
    nearest = means.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (nearest - own) / np.maximum(own, nearest)
    s[size[lab] == 1] = 0.0
    return np.nan_to_num(s)


def k_scores(Xs: pd.DataFrame, ks: range, seed: int) -> pd.DataFrame:
    """Inertia and mean silhouette of k-means for each k on the sample (the distance matrix once: the scaling
    does not depend on k)."""
    from sklearn.metrics import pairwise_distances

    rows, dist = [], None
    for k in ks:
        pipe = cluster_pipeline(k, seed).fit(Xs)
        lab = pipe[-1].labels_
        if dist is None:
            dist = pairwise_distances(pipe[:-1].transform(Xs))
        sil = float(silhouettes(dist, lab).mean()) if len(set(lab)) > 1 else np.nan
        rows.append({"k": k, "inertia": pipe[-1].inertia_, "silhouette": sil})
    return pd.DataFrame(rows, columns=["k", "inertia", "silhouette"])


def fit_clusters(rfm: pd.DataFrame, cfg) -> ClusterResult:
    """K-means on log, standardised R/F/M: k fixed or chosen by silhouette; profile, labels and a tree."""
    from sklearn.metrics import pairwise_distances
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier, export_text

    X = rfm[["recency", "frequency", "monetary"]].astype(float).clip(lower=0)
    empty = ClusterResult(None, None, pd.DataFrame(columns=["k", "inertia", "silhouette"]), pd.DataFrame(), None)
    distinct = len(X.drop_duplicates())
    if distinct < 3:
        empty.notes.append(i18n.t("rfm.note_no_clusters", k=distinct, n=len(X)))
        return empty
    rng = np.random.default_rng(cfg.seed)
    sample_idx = rng.choice(len(X), min(cfg.sample, len(X)), replace=False)
    Xs = X.iloc[np.sort(sample_idx)]
    lo, hi = (cfg.k, cfg.k) if cfg.k else cfg.k_range
    hi = min(hi, distinct - 1, len(Xs) - 1)
    scores = k_scores(Xs, range(max(lo, 2), hi + 1), cfg.seed)
    if scores.empty:
        empty.notes.append(i18n.t("rfm.note_no_clusters_k"))
        return empty
    k = int(cfg.k) if cfg.k else int(scores.loc[scores["silhouette"].idxmax(), "k"])
    pipe = cluster_pipeline(k, cfg.seed).fit(X)
    raw_labels = pipe.predict(X)
    # order clusters by mean monetary (0 = lowest) so labels are stable across runs
    means = pd.Series(X["monetary"].to_numpy()).groupby(raw_labels).mean().sort_values()
    remap = {old: new for new, old in enumerate(means.index)}
    labels = pd.Series(np.vectorize(remap.get)(raw_labels), index=rfm.index)
    z = (np.log1p(X) - np.log1p(X).mean()) / np.log1p(X).std(ddof=0).replace(0, 1)
    prof = X.assign(cluster=labels.to_numpy()).groupby("cluster").agg(
        customers=("recency", "size"), mean_recency_days=("recency", "mean"), mean_frequency=("frequency", "mean"),
        mean_monetary=("monetary", "mean"), revenue=("monetary", "sum"))
    prof["share_of_customers"] = prof["customers"] / prof["customers"].sum()
    prof["share_of_revenue"] = prof["revenue"] / prof["revenue"].sum()
    medians = X.assign(cluster=labels.to_numpy()).groupby("cluster").median()
    names = z.assign(cluster=labels.to_numpy()).groupby("cluster").mean().apply(
        lambda row: _label(row, medians.loc[row.name]), axis=1)
    dup = names.duplicated(keep=False)
    names[dup] = names[dup] + " (" + names[dup].index.astype(str) + ")"
    prof.insert(0, "label", names)
    Zs = pipe[:-1].transform(Xs)
    lab_s = pipe[-1].predict(Zs)
    sil_s = pd.DataFrame({"cluster": [remap[c] for c in lab_s],
                          "silhouette": silhouettes(pairwise_distances(Zs), lab_s)})
    Xtr, Xte, ytr, yte = train_test_split(X, labels, test_size=0.3, random_state=cfg.seed)
    tree = DecisionTreeClassifier(max_depth=cfg.tree_depth, random_state=cfg.seed).fit(Xtr, ytr)
    acc = float(tree.score(Xte, yte))
    rules_text = export_text(tree, feature_names=["recency_days", "frequency", "monetary"],
                             class_names=[f"{i}: {names[i]}" for i in tree.classes_], decimals=1)
    return ClusterResult(labels, k, scores, prof.reset_index(), sil_s, rules_text, acc,
                         tree_leaf_rules(tree, ["recency", "frequency", "monetary"], names))


def tree_leaf_rules(tree, features: list[str], names: pd.Series) -> list[dict]:
    """Each leaf of a fitted decision tree as a rule: the cluster it predicts, that cluster's label, the
    (lower, upper] bounds on each feature along the path, and the training customers it holds."""
    t = tree.tree_
    out: list[dict] = []

    def walk(node: int, bounds: dict[str, tuple[float, float]]) -> None:
        if t.children_left[node] == -1:
            cluster = int(tree.classes_[int(np.argmax(t.value[node][0]))])
            out.append({"cluster": cluster, "label": str(names[cluster]), "bounds": bounds,
                        "customers": int(t.n_node_samples[node])})
            return
        f, thr = features[t.feature[node]], float(t.threshold[node])
        lo, hi = bounds.get(f, (-np.inf, np.inf))
        walk(t.children_left[node], {**bounds, f: (lo, min(hi, thr))})
        walk(t.children_right[node], {**bounds, f: (max(lo, thr), hi)})

    walk(0, {})
    return sorted(out, key=lambda r: (r["cluster"], -r["customers"]))


def rule_sentences(rules: list[dict], currency: str) -> list[str]:
    """Leaf rules as sentences in the report language: 'Cluster 2 (recent · frequent): recency at most 30 days
    and more than 3 purchases (1,234 customers in the training sample)'. Leaves of one cluster are listed
    together; split values of whole-number features (days, purchases) are read as whole numbers."""

    def cond(f: str, lo: float, hi: float) -> str:
        unit = {"recency": "days", "frequency": "purchases", "monetary": "money"}[f]
        # days and purchases are whole numbers: x <= 30.5 is x <= 30 and x > 30.5 is "over 30"
        fmt = (lambda v: i18n.money(v, currency, decimals=0)) if unit == "money" else (lambda v: f"{np.floor(v):,.0f}")
        if np.isfinite(lo) and np.isfinite(hi):
            return i18n.t(f"rules.{f}_between", lo=fmt(lo), hi=fmt(hi))
        if np.isfinite(hi):
            return i18n.t(f"rules.{f}_at_most", v=fmt(hi))
        return i18n.t(f"rules.{f}_over", v=fmt(lo))

    out = []
    for r in rules:
        conds = [cond(f, *r["bounds"][f]) for f in ("recency", "frequency", "monetary") if f in r["bounds"]]
        out.append(i18n.t("rules.sentence", cluster=r["cluster"], label=i18n.name(r["label"]),
                          conditions=i18n.t("rules.and").join(conds) or i18n.t("rules.everyone"),
                          n=f"{r['customers']:,}"))
    return out


# --------------------------------------------------------------------------- the stage
@dataclass
class RfmResult:
    rfm: pd.DataFrame
    summary: pd.DataFrame
    calibration: pd.DataFrame | None
    concentration: dict
    clusters: ClusterResult
    basis: str
    end: pd.Timestamp
    notes: list[str] = field(default_factory=list)


def _summary(tx: pd.DataFrame | None, rules: Rfm, basis: str, table: Any = None) -> pd.DataFrame:
    """The per-customer summary at the observation end: by the pandas kernel, or by the engine of Ibis table
    `table` (the same transactions) when given."""
    if table is None:
        return customer_summary(tx, rules.end_date, basis, rules.time_unit)
    return engine_summary.customer_summary(table, rules.end_date or aggregates.span(table)[1], basis, rules.time_unit)


def _calibration(tx: pd.DataFrame | None, rules: Rfm, basis: str, table: Any = None) -> pd.DataFrame:
    """The calibration summary with the holdout (`calibration_holdout`), by pandas or by the table's engine."""
    if table is None:
        return calibration_holdout(tx, rules.calibration_end, rules.holdout_end, basis, rules.time_unit)
    return engine_summary.calibration_holdout(table, rules.calibration_end,
                                              rules.holdout_end or aggregates.span(table)[1], basis, rules.time_unit)


def _after(tx: pd.DataFrame | None, table: Any, end: pd.Timestamp) -> int:
    """The transactions dated after the day of `end` (counted by the table's engine when there is one)."""
    if table is not None:
        after = table.filter(table.date >= (pd.Timestamp(end).normalize() + pd.Timedelta(days=1)).to_pydatetime())
        return int(after.count().execute())
    return int((tx["date"] > end + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")).sum())


def build_rfm(tx: pd.DataFrame | None, rules: Rfm, table: Any = None, occasion: str = "auto") -> RfmResult:
    """Everything the RFM stage computes, from clean transactions (`table`: the same as an Ibis table, whose engine
    then computes the per-customer summary and the counts; `tx` is then not needed), counting the study's purchase
    `occasion`."""
    basis = occasion_basis(tx, occasion) if table is None else aggregates.occasion_of(table, occasion)
    summary = _summary(tx, rules, basis, table)
    end = summary.attrs["end"]
    notes = []
    late = _after(tx, table, end)
    if late:
        notes.append(i18n.t("rfm.note_late", n=f"{late:,}", end=i18n.date(end)))
    scored, score_notes = add_scores(summary, rules)
    notes += score_notes
    scored["segment"] = assign_segments(scored, rules.segments, rules.n_bins, rules.segment_on)
    if (scored["segment"] == "Other").any():
        notes.append(i18n.for_consultant("rfm.note_other", n=f"{int((scored['segment'] == 'Other').sum()):,}"))
    conc = concentration(scored["monetary"])
    scored["abc_class"] = abc_classes(scored["monetary"], rules.abc)
    scored["value_tier"] = value_tiers(scored["monetary"], rules.pyramid.cuts, rules.pyramid.names)
    if rules.clusters.enabled:
        clusters = fit_clusters(scored, rules.clusters)
        notes += clusters.notes
    else:
        clusters = ClusterResult(None, None, pd.DataFrame(), pd.DataFrame(), None,
                                 notes=[i18n.for_consultant("rfm.note_clusters_off")])
    scored["cluster"] = clusters.labels.astype("Int64") if clusters.labels is not None else pd.array(
        [pd.NA] * len(scored), dtype="Int64")
    if (scored["frequency"] == 1).all():
        notes.append(i18n.t("rfm.note_all_once"))
    cal = None
    if rules.calibration_end:
        cal = _calibration(tx, rules, basis, table)
    return RfmResult(scored, summary, cal, conc, clusters, basis, end, notes)


@i18n.in_study_language
def run_rfm(study: Study, run_dir: str | Path) -> RfmResult:
    """Build the RFM stage from the clean transactions in run_dir (by default their engine's summary, never the
    rows), write its outputs there."""
    run_dir = Path(run_dir)
    if study.rfm.summary_engine == "duckdb":  # the engine reads the file; only the summary comes back
        with duckdb_parquet(io.stage_file(run_dir, "transactions_clean.parquet")) as table:
            res = build_rfm(None, study.rfm, table, study.occasion)
    else:
        res = build_rfm(io.read_stage(run_dir, "transactions_clean.parquet"), study.rfm, occasion=study.occasion)
    io.write_parquet(res.rfm, run_dir / "rfm.parquet")
    clv_cols = ["customer_id", "x", "t_x", "T", "monetary_value", "frequency", "monetary"]
    io.write_parquet(res.summary[clv_cols], run_dir / "clv_summary.parquet")
    if res.calibration is not None:
        io.write_parquet(res.calibration, run_dir / "clv_calibration.parquet")
    io.write_json({"end": res.end, "basis": res.basis, "time_unit": study.rfm.time_unit,
                   "concentration": res.concentration, "k": res.clusters.k,
                   "tree_accuracy": res.clusters.tree_accuracy, "notes": res.notes,
                   "customers": len(res.rfm)}, run_dir / "rfm.json")
    return res


def describe(rfm: pd.DataFrame) -> pd.DataFrame:
    """Distribution of recency, frequency, monetary and tenure (mean and percentiles)."""

    cols = {c: i18n.t(f"rfm.measure_{c}") for c in ("recency", "frequency", "monetary", "monetary_mean", "tenure")}
    d = rfm[list(cols)].describe(percentiles=[0.25, 0.5, 0.75, 0.9]).T.drop(columns="count")
    d.index = [cols[c] for c in d.index]
    return d.reset_index(names="measure")


def cluster_segment_crosstab(rfm: pd.DataFrame) -> pd.DataFrame:
    """Customers per cluster (rows) and named segment (columns)."""
    return pd.crosstab(rfm["cluster"], rfm["segment"]).reset_index()
