"""Value monitoring across reruns: the study's KPIs against their targets and industry benchmarks, and each
KPI's trend over the study's earlier complete runs (from their run folders), on the run's index page.

A KPI is one of the headline figures (`cvlib.run.summary.figures`: customers, revenue, top-20% revenue share, mean
CLV, churn and retention rate, value at risk, the plan's net value, NPS), with an optional target, benchmark and
direction (whether higher is better).
"""
from __future__ import annotations

import base64
import io as _io
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib import i18n, theme
from cvlib.params import Kpi
from cvlib.run.summary import figures, format_figure


def values(run_dir: Path) -> dict[str, tuple[float, str, str]]:
    """key -> (value, kind, label) of a run folder's headline figures."""

    return {f.key: (f.value, f.kind, f.label) for f in figures(run_dir)}


def kpi_table(now: dict[str, tuple[float, str, str]], kpis: list[Kpi]) -> pd.DataFrame:
    """Per KPI: its label and kind, the actual value, target, benchmark, the gap to the target (positive: better
    than the target, in the KPI's direction) and the status: met, not met, no target, or not available."""
    rows = []
    for k in kpis:
        value, kind, label = now.get(k.kpi, (np.nan, "count", i18n.label(k.kpi)))
        sign = 1 if k.direction == "higher" else -1
        gap = sign * (value - k.target) if k.target is not None and value == value else np.nan
        status = ("not_available" if value != value else "no_target" if k.target is None
                  else "met" if gap >= 0 else "not_met")
        vs_bench = sign * (value - k.benchmark) if k.benchmark is not None and value == value else np.nan
        rows.append({"kpi": k.kpi, "label": label, "kind": kind, "actual": value, "target": k.target,
                     "benchmark": k.benchmark, "gap_to_target": gap, "versus_benchmark": vs_bench, "status": status})
    return pd.DataFrame(rows)


def trend(history: list[tuple[Path, dict]], run_dir: Path, kpis: list[Kpi], limit: int = 20) -> pd.DataFrame:
    """Each KPI in the study's earlier complete runs (oldest first, at most `limit`) and in this run: one row
    per run (run id, finished time), one column per KPI."""
    runs = [(d, r.get("finished") or r.get("started") or "") for d, r in history[:limit]][::-1]
    runs.append((run_dir, "now"))
    rows = []
    for d, when in runs:
        try:
            v = values(d)
        except Exception:  # noqa: BLE001  # an earlier run whose files are gone or from an older cvlib: skipped
            continue
        rows.append({"run": d.name, "finished": when, **{k.kpi: v.get(k.kpi, (np.nan,))[0] for k in kpis}})
    return pd.DataFrame(rows)


def trend_figure(tr: pd.DataFrame, kpis: list[Kpi], table: pd.DataFrame) -> str:
    """The trend as a PNG data URL: one small chart per KPI, its target dashed and benchmark dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    theme.use_theme()
    n = len(kpis)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
    x = np.arange(1, len(tr) + 1)
    labels, kinds = table.set_index("kpi")["label"], table.set_index("kpi")["kind"]
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    for ax, k in zip(axes.ravel(), kpis):
        ax.plot(x, tr[k.kpi].to_numpy(dtype=float), marker="o")
        if k.target is not None:
            ax.axhline(k.target, ls="--", color="grey", label=i18n.t("monitoring.target"))
        if k.benchmark is not None:
            ax.axhline(k.benchmark, ls=":", color="grey", label=i18n.t("monitoring.benchmark"))
        ax.set_title(str(labels.get(k.kpi, k.kpi)), fontsize=9)
        ax.set_xlim(0.5, len(tr) + 0.5)  # whole run numbers only, one run included (no 0.95 .. 1.05 ticks)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True, min_n_ticks=1))
        if kinds.get(k.kpi) == "share":
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel(i18n.t("monitoring.run_number"), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def monitoring_view(run_dir: Path, history: list[tuple[Path, dict]], kpis: list[Kpi], currency: str,
                    limit: int = 20) -> dict | None:
    """What the index page shows: the KPI table formatted, the trend figure and the number of runs in it."""
    if not kpis:
        return None
    table = kpi_table(values(run_dir), kpis)
    tr = trend(history, run_dir, kpis, limit)
    fmt = lambda v, kind, signed=False: format_figure(v, kind, currency, signed)  # noqa: E731
    rows = [{"label": r.label, "actual": fmt(r.actual, r.kind), "target": fmt(r.target, r.kind),
             "benchmark": fmt(r.benchmark, r.kind), "gap": fmt(r.gap_to_target, r.kind, True),
             "status": r.status, "status_text": i18n.t(f"monitoring.{r.status}")} for r in table.itertuples()]
    figure = trend_figure(tr, kpis, table)
    return {"rows": rows, "figure": figure, "runs": len(tr), "table": table, "trend": tr}
