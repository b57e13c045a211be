"""The portfolio's pages: the studies side by side (`portfolio.html` and an xlsx) and one client's anonymised
benchmark, in the reports' template and either language."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cvlib import fonts, i18n, privacy, xlsx
from cvlib.run import summary
from cvlib.run.metrics import DEFINITIONS
from cvlib.run.pages import render
from cvlib.run.portfolio import RANKED, Benchmark, Portfolio

KINDS = {"share": "share", "ratio": "share", "customers": "count", "days": "count", "points": "points",
         "currency": "money"}  # a metric's unit -> the kind the index page formats a figure by


def _shown(v: float | None, metric: str, currency: str = "") -> str:
    """A metric value as the run's index shows a figure of its kind (`summary.format_figure`)."""
    kind = KINDS.get(DEFINITIONS[metric][0])
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return summary.format_figure(v, kind, currency) if kind else f"{v:.2f}"


def _money_words(p: Portfolio) -> dict[str, str]:
    """The page's opening sentence and, with studies in several currencies and no rates, why their money metrics
    are ranked apart."""
    n = len(p.table)
    if p.rates:
        used = sorted(set(p.table["own_currency"].fillna("")) - {p.base})
        rates = ", ".join(f"1 {c} = {p.rates[c]:g} {p.base}" for c in used) or "–"
        return {"intro": i18n.t("portfolio.intro_converted", n=n, base=p.base, rates=rates), "note": ""}
    several = p.table["currency"].fillna("").nunique() > 1
    return {"intro": i18n.t("portfolio.intro", n=n), "note": i18n.t("portfolio.money_by_currency") if several else ""}


TREND_METRICS = ("retention_12m", "repeat_rate", "churn_rate", "revenue_per_customer", "mean_clv")
TREND_RUNS = 6  # the page shows each study's last runs; the workbook every run


def trend_rows(trends: pd.DataFrame, currency: dict[str, str]) -> list[dict]:
    """Per study with two runs or more: its number of runs and, for each of `TREND_METRICS`, its values over the
    last `TREND_RUNS` runs, oldest first ('41% → 38% → 35%')."""
    out = []
    for study, g in trends.groupby("study", sort=True):
        runs = list(dict.fromkeys(g["run"]))
        if len(runs) < 2:
            continue
        last = g[g["run"].isin(runs[-TREND_RUNS:])]
        cells = [" → ".join(_shown(v, k, currency.get(study, "")) for v in last.loc[last["metric"] == k, "value"])
                 for k in TREND_METRICS]
        out.append({"study": study, "runs": len(runs), "cells": cells})
    return out


def write(p: Portfolio, out_dir: Path, language: str = "en") -> list[Path]:
    """portfolio.html (escaped, self-contained) and portfolio.xlsx (the full tables) in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with i18n.speaking(language):
        labels = {k: i18n.t(f"portfolio.m_{k}") for k in DEFINITIONS}
        shown = [{"study": r["study"], "client": r["client"], "group": r["group"], "currency": r["currency"] or "",
                  "values": [_shown(r[k], k, r["currency"] or "") for k in DEFINITIONS]} for _, r in p.table.iterrows()]
        pos = p.positions.assign(metric=p.positions["metric"].map(labels))
        grid = pos.assign(cell=[i18n.t("portfolio.position_cell", p=f"{r.percentile:.0f}", q=r.quartile)
                                for r in pos.itertuples()]).pivot(index="study", columns="metric", values="cell")
        ranked = [labels[k] for k in RANKED if labels[k] in grid.columns]
        own = p.table["own_currency"] if "own_currency" in p.table.columns else p.table["currency"]
        cur = dict(zip(p.table["study"], own.fillna("")))  # movers and trends: amounts as each study gave them
        moved = [{"study": r["study"], "metric": labels[r["metric"]],
                  "before": _shown(r["before"], r["metric"], cur[r["study"]]),
                  "now": _shown(r["now"], r["metric"], cur[r["study"]]), "change": i18n.pct(r["change"], 0, signed=True)
                  if np.isfinite(r["change"]) else "–"} for _, r in p.movers.iterrows()]
        series = trend_rows(p.trends, cur)
        page = render("portfolio.html.j2", labels=list(labels.values()), rows=shown, movers=moved, **_money_words(p),
                      trends=series, trend_labels=[labels[k] for k in TREND_METRICS], trend_runs=TREND_RUNS,
                      ranked=ranked, positions=[{"study": s, "cells": [grid.at[s, c] if isinstance(grid.at[s, c], str)
                                                                       else "–" for c in ranked]}
                                                for s in grid.index])
    html_path = fonts.write_page(page, out_dir / "portfolio.html")
    sheets = {"metrics": p.table.rename(columns=labels), "positions": pos, "movers": p.movers,
              "trends": p.trends.assign(metric=p.trends["metric"].map(labels))}
    return [html_path, xlsx.write_xlsx(sheets, out_dir / "portfolio.xlsx")]


def write_benchmark(b: Benchmark, key: bytes, out_dir: Path, language: str = "en") -> list[Path]:
    """The client's benchmark page and workbook: the other clients only as keyed pseudonyms."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = sorted(privacy.pseudonym_of(s, key) for s in b.peers)
    with i18n.speaking(language):
        labels = {k: i18n.t(f"portfolio.m_{k}") for k in DEFINITIONS}
        show = lambda v, m: _shown(v, m, b.currency)  # noqa: E731
        cells = [{"metric": labels[r.metric], "value": show(r.value, r.metric),
                  "p25": show(r.p25, r.metric), "median": show(r.median, r.metric), "p75": show(r.p75, r.metric),
                  "percentile": "–" if r.percentile is None else f"{r.percentile:.0f}", "shown": r.shown, "why": r.why}
                 for r in b.cells.itertuples()]
        note = i18n.t("portfolio.benchmark_currency", currency=b.currency) if b.mixed else ""
        page = render("benchmark.html.j2", study=b.study, group=b.group, cells=cells, peers=names, note=note)
    html_path = fonts.write_page(page, out_dir / f"benchmark-{b.study}.html")
    table = b.cells.assign(metric=b.cells["metric"].map(labels))
    hidden = ~table["shown"]
    table.loc[hidden, ["p25", "median", "p75", "percentile"]] = None
    sheets = {"benchmark": table, "peers": pd.DataFrame({"peer": names})}
    return [html_path, xlsx.write_xlsx(sheets, out_dir / f"benchmark-{b.study}.xlsx")]
