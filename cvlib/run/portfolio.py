"""Studies side by side: the standard metrics (metrics.json) of each study's latest complete run, each study's
position against its peer group (quartile and percentile), what moved most since the study's previous run, and one
client's anonymised benchmark (the pages: `cvlib.run.portfolio_pages`)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib import i18n, privacy
from cvlib.errors import ParamError
from cvlib.params import Kpi
from cvlib.run import history as runs
from cvlib.run.metrics import DEFINITIONS, METRICS_FILE

# metrics where a lower value is the better position (the percentile is read the other way)
LOWER_IS_BETTER = {"churn_rate", "value_at_risk_share", "median_cycle_days"}
SIZE = {"customers", "revenue"}  # the book's size: shown, never ranked (positions are for scale-free metrics)
RANKED = tuple(k for k in DEFINITIONS if k not in SIZE)
MONEY = tuple(k for k, (unit, _) in DEFINITIONS.items() if unit == "currency")  # compared only in one currency
CLV = ("mean_clv", "median_clv")  # ... and only over one CLV horizon


def comparable_by(metric: str) -> list[str]:
    """What a metric is compared within beyond the peer group: money in one currency, CLV over one horizon."""
    return (["currency", "horizon"] if metric in CLV else ["currency"]) if metric in MONEY else []


def _key(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    """The comparability key of each row (text; a missing value is its own key)."""
    vals = df[cols].astype(object).where(df[cols].notna(), "").to_numpy()
    return pd.Series(["|".join(str(x) for x in r) for r in vals], index=df.index, dtype=object)
MIN_PEERS, MAX_WEIGHT = 5, 0.25  # a benchmark cell: at least 5 studies, none above 25% of its customers


@dataclass
class Portfolio:
    table: pd.DataFrame  # one row per study: study, client, group, currency, run, one column per metric
    positions: pd.DataFrame  # study, group, metric, value, percentile (0-100, 100 = best of the group), quartile
    movers: pd.DataFrame  # study, metric, before, now, change (relative): the largest moves first
    rates: dict[str, float] | None = None  # units of `base` per unit of each currency, when amounts were converted
    base: str = ""
    trends: pd.DataFrame | None = None  # study, run, metric, value: every run of each study, oldest first


def read_rates(path: Path) -> tuple[str, dict[str, float]]:
    """A currency rate table (YAML: `base: EUR` and `rates: {USD: 0.92, ...}`, units of the base currency per
    unit of each currency), read safely and checked; a clear error naming the file and the entry otherwise."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ParamError(f"--rates {path}: cannot read the rate table ({e}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("base"), str) or not isinstance(data.get("rates"), dict):
        raise ParamError(f"--rates {path}: expected 'base: <currency>' and 'rates: {{<currency>: <units of the base "
                         "per unit>, ...}}'.")
    rates = {}
    for cur, v in data["rates"].items():
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0
        if not ok:
            raise ParamError(f"--rates {path}: the rate of {cur!r} is {v!r}; give a positive number (units of "
                             f"{data['base']} per one {cur}).")
        rates[str(cur)] = float(v)
    return data["base"], {**rates, data["base"]: 1.0}


def convert(table: pd.DataFrame, base: str, rates: dict[str, float], source: str = "the rate table") -> pd.DataFrame:
    """The money metrics of every study in `base` (`rates`: units of base per unit); a study whose currency has
    no rate is refused, by name."""
    cur = table["currency"].fillna("")
    missing = sorted(set(cur) - set(rates))
    if missing:
        who = ", ".join(f"{s} ({c or 'no currency'})" for s, c in zip(table["study"], cur) if c in missing)
        raise ParamError(f"{source} has no rate for {', '.join(repr(c) for c in missing)}: studies {who}. Add "
                         f"each currency under rates: with the units of {base} per one unit.")
    factor = cur.map(rates).astype(float)
    out = table.assign(own_currency=table["currency"], currency=base)
    for k in MONEY:
        out[k] = pd.to_numeric(out[k], errors="coerce") * factor
    return out


def study_runs(folder: Path) -> list[dict]:
    """The metrics of a study's complete, intact runs that wrote them, newest first."""
    out = []
    for run_dir, _ in runs.Runs(folder).verified():
        p = run_dir / METRICS_FILE
        if p.is_file():
            m = json.loads(p.read_text(encoding="utf-8"))
            if m.get("metrics"):
                out.append({**m, "run": run_dir.name})
    return out


def collect(reports_dir: Path, studies: list[str] | None = None) -> dict[str, list[dict]]:
    """Each named study's (default: every study folder's) runs with metrics; a named study without any is an
    error that says how to get one."""
    names = studies or sorted(p.name for p in reports_dir.iterdir() if p.is_dir() and (p / "latest").exists()) \
        if reports_dir.is_dir() else []
    found = {}
    for name in names:
        folder = runs.study_folder(name, reports_dir)
        got = study_runs(folder)
        if not got and studies:
            raise ParamError(f"Study {name!r} has no complete run with metrics.json in {folder}: run it again "
                             "(cvlib run PARAMS) to write its standard metrics.")
        if got:
            found[folder.name] = got
    if not found:
        raise ParamError(f"No study under {reports_dir} has a complete run with metrics.json: run the studies first.")
    return found


def build(found: dict[str, list[dict]], group_by: str | None = "industry",
          rates: tuple[str, dict[str, float]] | None = None) -> Portfolio:
    """The portfolio of the studies' latest runs: the metrics side by side, positions within each peer group
    (`group_by`: industry, market_segment or None for one group), and the largest moves since the previous run.
    Money metrics are converted to one currency with `rates` (base, rates: `read_rates`); without, they are
    ranked only among the group's studies in the same currency."""
    rows = []
    for study, got in found.items():
        m = got[0]
        group = (m.get(group_by) if group_by else None) or "–"
        rows.append({"study": study, "client": m.get("client") or study, "group": group,
                     "currency": m.get("currency"), "horizon": m.get("clv_horizon_months"), "run": m["run"],
                     **{k: (m["metrics"].get(k) or {}).get("value") for k in DEFINITIONS}})
    table = pd.DataFrame(rows).sort_values(["group", "study"]).reset_index(drop=True)
    if rates is not None:
        table = convert(table, *rates)
    return Portfolio(table, positions(table), movers(found), rates[1] if rates else None, rates[0] if rates else "",
                     trends(found))


def positions(table: pd.DataFrame) -> pd.DataFrame:
    """Each study's percentile within its group for every metric it has (100: the best of the group, the
    direction of `LOWER_IS_BETTER` applied; ties share the mean rank) and its quartile (1 = top quarter)."""
    out = []
    for metric in RANKED:
        v = table[["study", "group", metric]].dropna(subset=[metric])
        for _, g in v.groupby([v["group"], _key(table.loc[v.index], comparable_by(metric))]):
            vals = g[metric].astype(float)
            ranks = (-vals if metric in LOWER_IS_BETTER else vals).rank(method="average")
            pct = 100.0 * (ranks - 1) / (len(g) - 1) if len(g) > 1 else pd.Series(100.0, index=g.index)
            for i in g.index:
                out.append({"study": g.at[i, "study"], "group": g.at[i, "group"], "metric": metric,
                            "value": float(vals[i]), "peers": len(g), "percentile": round(float(pct[i]), 1),
                            "quartile": int(np.clip(4 - np.floor(pct[i] / 25.0), 1, 4))})
    return pd.DataFrame(out, columns=["study", "group", "metric", "value", "peers", "percentile", "quartile"])


def trends(found: dict[str, list[dict]]) -> pd.DataFrame:
    """Every metric of every complete run of each study, oldest run first (amounts in the study's own currency)."""
    rows = [{"study": study, "run": r["run"], "metric": k, "value": (r["metrics"].get(k) or {}).get("value")}
            for study, got in found.items() for r in reversed(got) for k in DEFINITIONS]
    return pd.DataFrame(rows, columns=["study", "run", "metric", "value"])


def movers(found: dict[str, list[dict]], top: int = 10) -> pd.DataFrame:
    """The metrics that moved most (relative change) between each study's previous and latest run."""
    out = []
    for study, got in found.items():
        if len(got) < 2:
            continue
        now, before = got[0]["metrics"], got[1]["metrics"]
        for k in DEFINITIONS:
            a, b = (before.get(k) or {}).get("value"), (now.get(k) or {}).get("value")
            if a is None or b is None or a == b:
                continue
            out.append({"study": study, "metric": k, "before": a, "now": b,
                        "change": (b - a) / abs(a) if a else np.inf})
    df = pd.DataFrame(out, columns=["study", "metric", "before", "now", "change"])
    return df.reindex(df["change"].abs().sort_values(ascending=False).index).head(top).reset_index(drop=True)


# --------------------------------------------------------------------------- one client's anonymised benchmark
@dataclass
class Benchmark:
    study: str
    group: str
    cells: pd.DataFrame  # metric, value, peers, p25, median, p75, percentile, shown, why (hidden: the reason)
    peers: list[str]  # the peer studies' names (shown only as keyed pseudonyms)
    currency: str = ""
    mixed: bool = False  # some peers report in another currency (money metrics compared without them)


def benchmark_key(env: str) -> bytes:
    """The key of the peers' pseudonyms, from an environment variable (never a default: it would let anyone
    reverse them)."""
    key = os.environ.get(env, "").strip()
    if len(key) < privacy.MIN_KEY_LENGTH:
        raise ParamError(f"cvlib portfolio --benchmark-for names the other clients by keyed pseudonyms: set {env} to "
                         f"a secret of at least {privacy.MIN_KEY_LENGTH} characters (it is {len(key)} now).")
    return key.encode("utf-8")


def cell(values: pd.Series, weights: pd.Series) -> tuple[bool, str]:
    """Whether a benchmark cell may be shown (the benchmark providers' rule: at least `MIN_PEERS` studies, none
    above `MAX_WEIGHT` of the cell's customers) and, if not, why."""
    if len(values) < MIN_PEERS:
        return False, i18n.t("portfolio.hidden_few", n=len(values), k=MIN_PEERS)
    total = float(weights.sum())
    top = float(weights.max()) / total if total > 0 else 1.0
    if top > MAX_WEIGHT:
        return False, i18n.t("portfolio.hidden_dominant", share=i18n.pct(top, 0), k=i18n.pct(MAX_WEIGHT, 0))
    return True, ""


def benchmark(p: Portfolio, study: str) -> Benchmark:
    """The study's metrics against the distribution of its peer group (the other studies of its group),
    each cell shown only where the suppression rule (`cell`) allows."""
    t = p.table.set_index("study")
    if study not in t.index:
        raise ParamError(f"cvlib portfolio --benchmark-for {study}: no complete run with metrics for that study.")
    group = t.at[study, "group"]
    peers = t[(t["group"] == group) & (t.index != study)]
    rows = []
    for k in RANKED:
        cols = comparable_by(k)
        same = _key(peers, cols) == _key(t.loc[[study]], cols).iloc[0]
        v = peers.loc[same, k].dropna().astype(float)
        shown, why = cell(v, peers.loc[v.index, "customers"].fillna(0).astype(float))
        mine = t.at[study, k]
        below = float((v < mine).sum() + 0.5 * (v == mine).sum()) / len(v) if len(v) and mine is not None else None
        pct = None if below is None else 100 * ((1 - below) if k in LOWER_IS_BETTER else below)
        q = v.quantile([0.25, 0.5, 0.75]).tolist() if shown else [None] * 3
        rows.append({"metric": k, "value": mine, "peers": len(v), "p25": q[0], "median": q[1], "p75": q[2],
                     "percentile": round(pct, 0) if shown and pct is not None else None, "shown": shown, "why": why})
    mixed = bool((peers["currency"].fillna("") != (t.at[study, "currency"] or "")).any())
    return Benchmark(study, str(group), pd.DataFrame(rows), list(peers.index), t.at[study, "currency"] or "", mixed)


# --------------------------------------------------------------------------- the peers' benchmarks of a study's KPIs
#: an index KPI (`cvlib.params.Kpi`) -> the standard metric of the same definition, and whether the KPI is 1 - it
KPI_METRICS = {"top20_share": ("top20_revenue_share", False), "mean_clv": ("mean_clv", False),
               "churn_rate": ("churn_rate", False), "retention_rate": ("churn_rate", True), "nps": ("nps", False)}


def kpi_benchmarks(run_dir: Path, kpis: list[Kpi]) -> tuple[list[Kpi], str]:
    """`monitoring.benchmarks: portfolio`: each KPI without a benchmark of its own gets its peer group's median,
    from the latest complete runs of the other studies beside this run's study folder with the same industry tag,
    under `benchmark`'s suppression rule (and money in one currency, CLV over one horizon); a size (customers,
    revenue, value at risk, the plan's value) has no peer benchmark. Also the sentence saying where the benchmarks
    come from and which are hidden, and why. Never names another study."""
    path = run_dir / METRICS_FILE
    mine = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if not mine.get("industry"):
        return kpis, i18n.t("monitoring.peers_no_industry")
    me = run_dir.parent.name
    found = {f.name: got for f in sorted(run_dir.parent.parent.iterdir())
             if f.is_dir() and f.name != me and (f / "latest").exists() and (got := study_runs(f))}
    b = benchmark(build({**found, me: [{**mine, "run": run_dir.name}]}, "industry"), me)
    cells = b.cells.set_index("metric")
    out, hidden, used = [], [], 0
    for k in kpis:
        metric, flip = KPI_METRICS.get(k.kpi, (None, False))
        if k.benchmark is not None or metric is None:
            out.append(k)
        elif cells.at[metric, "shown"]:
            median = float(cells.at[metric, "median"])
            out.append(k.model_copy(update={"benchmark": 1 - median if flip else median}))
            used += 1
        else:
            out.append(k)
            why = cells.at[metric, "why"]
            hidden.append(i18n.t("monitoring.peer_hidden_one", kpi=i18n.t(f"portfolio.m_{metric}"), why=why))
    note = i18n.t("monitoring.peer_source", n=len(b.peers), group=b.group, used=used)
    return out, " ".join([note, *hidden])
