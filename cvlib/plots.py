"""Figures for the reports, all in one seaborn theme. Each returns a matplotlib Figure."""
from __future__ import annotations

import functools
import textwrap
from typing import Any

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

from cvlib.i18n import currency_unit, label, name
from cvlib.i18n import text as T
from cvlib.theme import group_colours, number


def _shown_once(fn):
    """Close the figure and return it: a notebook cell then shows it exactly once, as its value."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        fig = fn(*args, **kwargs)
        number(fig)
        plt.close(fig)
        return fig

    return wrapper


def _money_axis(ax: plt.Axes, currency: str, axis: str = "y", text: str | None = None) -> None:
    """Plain money ticks (thousands separators, no offset or 1e6) and the currency in the axis label."""
    fmt = mticker.FuncFormatter(lambda v, _: f"{v:,.0f}")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(fmt)
    if axis == "x":  # long amounts side by side: fewer ticks, so their labels never touch
        target.set_major_locator(mticker.MaxNLocator(nbins=5))
    text = text if text is not None else ax.get_ylabel() if axis == "y" else ax.get_xlabel()
    (ax.set_ylabel if axis == "y" else ax.set_xlabel)(T("plots.with_currency", text=text,
                                                        currency=currency_unit(currency)))


@_shown_once
def monthly_activity(monthly: pd.DataFrame, currency: str) -> plt.Figure:
    """Monthly revenue (bars) and active customers (line)."""
    fig, ax = plt.subplots()
    ax.bar(monthly["month"], monthly["revenue"], width=20, color=sns.color_palette()[0], label=T("plots.revenue"))
    ax.set_ylabel(T("plots.revenue"))
    _money_axis(ax, currency)
    ax2 = ax.twinx()
    ax2.plot(monthly["month"], monthly["active_customers"], color=sns.color_palette()[3], marker="o",
             label=T("plots.active_customers"))
    ax2.set_ylabel(T("plots.active_customers_count"))
    ax2.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax2.grid(False)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b\n%Y"))
    ax.set_title(T("plots.monthly_title"))
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.set_ylim(0, ax.get_ylim()[1] * 1.2)  # room for the legend above the bars
    ax2.set_ylim(0, ax2.get_ylim()[1] * 1.2)
    ax.legend(handles=handles, loc="upper right", framealpha=0.9)
    return fig


@_shown_once
def amount_distribution(amounts: pd.Series, currency: str, bounds: tuple[float, float] | None = None) -> plt.Figure:
    """Histogram of transaction amounts on a log axis, with outlier bounds if given."""
    fig, ax = plt.subplots()
    a = amounts[amounts > 0]
    bins = np.logspace(np.log10(a.min()), np.log10(a.max()), 50) if len(a) and a.min() < a.max() else 20
    ax.hist(a, bins=bins, color=sns.color_palette()[0])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.set_xlabel(T("plots.amount_axis", currency=currency_unit(currency)))
    ax.set_ylabel(T("plots.transactions_count"))
    if bounds:
        for b in bounds:
            if np.isfinite(b) and b > 0:
                ax.axvline(b, color=sns.color_palette()[3], ls="--")
    ax.set_title(T("plots.amounts_title"))
    return fig


@_shown_once
def segment_bars(table: pd.DataFrame) -> plt.Figure:
    """Share of customers against share of revenue per segment."""
    t = table.melt(id_vars="segment", value_vars=["share_of_customers", "share_of_revenue"], var_name="share",
                   value_name="value")
    t["segment"] = t["segment"].astype(str).map(name)
    t["share"] = t["share"].map({"share_of_customers": T("plots.customers"), "share_of_revenue": T("plots.revenue")})
    t["value"] *= 100
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(table), 4) + 1))
    sns.barplot(data=t, y="segment", x="value", hue="share", ax=ax, orient="h")
    ax.set_xlabel(T("plots.share_pct"))
    ax.set_ylabel("")
    ax.set_title(T("plots.segments_title"))
    return fig


@_shown_once
def heatmap(table: pd.DataFrame, title: str, fmt: str = ",.0f", cbar_label: str = "") -> plt.Figure:
    """A labelled heatmap of a small grid (e.g. R x F)."""
    fig, ax = plt.subplots(figsize=(max(6.5, 0.75 * table.shape[1] + 2.5), max(4.5, 0.4 * table.shape[0] + 1.5)))
    sns.heatmap(table.astype(float), annot=True, fmt=fmt, cmap="Blues", ax=ax, cbar_kws={"label": label(T(cbar_label))})
    ax.set_ylabel(label(str(table.index.name or "")))
    ax.set_xlabel(label(str(table.columns.name or "")))
    ax.set_xticklabels([name(str(c)) for c in table.columns])
    ax.set_yticklabels([name(str(i)) for i in table.index], rotation=0)
    if max((len(name(str(c))) for c in table.columns), default=0) > 5:  # long column names side by side: slant them
        ax.tick_params(axis="x", labelrotation=30)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
    ax.set_title(textwrap.fill(T(title), 45), pad=14)  # clear of the colour bar's top label
    return fig


@_shown_once
def pareto(curve: pd.DataFrame, top20: float) -> plt.Figure:
    """Cumulative revenue share against customer share, with the 20% line and equality diagonal."""
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.plot(curve["customer_share"] * 100, curve["revenue_share"] * 100, label=T("plots.pareto_curve"))
    ax.plot([0, 100], [0, 100], ls=":", color="grey", label=T("plots.equal_spend"))
    ax.axvline(20, ls="--", color=sns.color_palette()[3])
    ax.annotate(T("plots.top20", share=f"{top20:.0%}"), (20, top20 * 100), xytext=(30, max(top20 * 100 - 15, 5)),
                arrowprops={"arrowstyle": "->"})
    ax.set_xlabel(T("plots.pareto_x"))
    ax.set_ylabel(T("plots.pareto_y"))
    ax.set_title(T("plots.pareto_title"))
    ax.legend(loc="lower right")
    return fig


@_shown_once
def elbow_silhouette(scores: pd.DataFrame, chosen: int) -> plt.Figure:
    """Inertia (elbow) and mean silhouette against k, the chosen k marked."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    a1.plot(scores["k"], scores["inertia"], marker="o")
    a1.set_xlabel(T("plots.k"))
    a1.set_ylabel(T("plots.inertia"))
    a1.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    a1.set_title(T("plots.elbow"))
    a2.plot(scores["k"], scores["silhouette"], marker="o", color=sns.color_palette()[1])
    a2.set_xlabel(T("plots.k"))
    a2.set_ylabel(T("plots.mean_silhouette"))
    a2.set_title(T("plots.silhouette"))
    for a in (a1, a2):
        a.axvline(chosen, ls="--", color="grey")
        a.set_xticks(scores["k"].to_numpy())
    return fig


@_shown_once
def silhouette(samples: pd.DataFrame) -> plt.Figure:
    """Silhouette values of the sampled customers, grouped by cluster."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    y = 0
    for c, g in samples.groupby("cluster"):
        v = np.sort(g["silhouette"].to_numpy())
        ax.fill_betweenx(np.arange(y, y + len(v)), 0, v, alpha=0.8, label=T("plots.cluster", c=c))
        y += len(v) + 20
    ax.axvline(samples["silhouette"].mean(), ls="--", color="grey")
    ax.set_xlabel(T("plots.silhouette_value"))
    ax.set_ylabel(T("plots.sampled_customers"))
    ax.set_yticks([])
    ax.set_title(T("plots.silhouette_title"))
    ax.legend(loc="lower right")
    return fig


@_shown_once
def clv_distribution(clv: pd.Series, currency: str, horizon_months: int) -> plt.Figure:
    """Histogram of per-customer CLV (log axis)."""
    fig, ax = plt.subplots()
    v = clv[clv > 0.01]
    bins = np.logspace(np.log10(v.min()), np.log10(v.max()), 50) if len(v) and v.min() < v.max() else 20
    ax.hist(v, bins=bins, color=sns.color_palette()[2])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda x, _: f"{x:,.0f}" if x >= 1 else f"{x:g}"))
    ax.set_xlabel(T("plots.clv_axis", h=horizon_months, currency=currency_unit(currency)))
    ax.set_ylabel(T("plots.customers_count"))
    ax.set_title(T("plots.clv_title"))
    return fig


@_shown_once
def bars(table: pd.DataFrame, x: str, y: str, title: str, xlabel: str, ylabel: str) -> plt.Figure:
    """A simple horizontal bar chart of one value per group."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(table), 4) + 1))
    t = table.assign(**{x: table[x].astype(str).map(name)})
    sns.barplot(data=t, y=x, x=y, ax=ax, orient="h", color=sns.color_palette()[0])
    ax.set_xlabel(T(ylabel))
    ax.set_ylabel(T(xlabel))
    ax.set_title(T(title))
    return fig


@_shown_once
def actual_vs_predicted(table: pd.DataFrame, x: str, xlabel: str, ylabel: str, title: str) -> plt.Figure:
    """Grouped bars of `actual` and `predicted` per value of x."""
    t = table.melt(id_vars=x, value_vars=["actual", "predicted"], var_name="series", value_name="value")
    t["series"] = t["series"].map({"actual": T("plots.actual"), "predicted": T("plots.model")})
    fig, ax = plt.subplots()
    sns.barplot(data=t, x=x, y="value", hue="series", ax=ax)
    ax.legend(title="")
    ax.set_xlabel(T(xlabel))
    ax.set_ylabel(T(ylabel))
    ax.set_title(T(title))
    return fig


@_shown_once
def tracking(track: pd.DataFrame, split_week: float | None, unit_label: str = "week") -> plt.Figure:
    """Cumulative actual and predicted repeat purchases over time, the calibration end marked."""
    fig, ax = plt.subplots()
    ax.plot(track["week"], track["actual"], label=T("plots.actual"))
    ax.plot(track["week"], track["predicted"], ls="--", label=T("plots.model"))
    if split_week:
        ax.axvline(split_week, color="grey", ls=":")
        ax.annotate(T("plots.end_of_calibration"), (split_week, ax.get_ylim()[1] * 0.05), rotation=90, ha="right")
    ax.set_xlabel(T("plots.since_start", unit=label(unit_label)))
    ax.set_ylabel(T("plots.cumulative_repeat"))
    ax.set_title(T("plots.tracking_title"))
    ax.legend()
    return fig


@_shown_once
def survival_curve(curve: pd.DataFrame, period_months: int) -> plt.Figure:
    """Projected share of a cohort still under contract (sBG)."""
    fig, ax = plt.subplots()
    ax.plot(curve["period"], curve["survival"] * 100, marker="o")
    ax.set_xlabel(T("plots.renewal_periods", m=period_months))
    ax.set_ylabel(T("plots.contracts_active"))
    ax.set_title(T("plots.survival_title"))
    return fig


@_shown_once
def whale_curve(curve: pd.DataFrame, facts: dict) -> plt.Figure:
    """Cumulative profit (% of total) against customers ranked by profit, the peak marked."""
    fig, ax = plt.subplots()
    ax.plot(curve["customer_share"] * 100, curve["cumulative_profit_pct"])
    ax.axhline(100, ls=":", color="grey")
    ax.scatter([facts["peak_at_customer_share"] * 100], [facts["peak_pct_of_total"]], color=sns.color_palette()[3],
               zorder=3)
    right = facts["peak_at_customer_share"] > 0.6  # keep the note inside the axes
    ax.annotate(T("plots.whale_peak", pct=f"{facts['peak_pct_of_total']:.0f}"),
                (facts["peak_at_customer_share"] * 100, facts["peak_pct_of_total"]),
                xytext=(-10 if right else 10, -25), textcoords="offset points", ha="right" if right else "left")
    ax.set_xlabel(T("plots.whale_x"))
    ax.set_ylabel(T("plots.whale_y"))
    ax.set_title(T("plots.whale_title"))
    return fig


@_shown_once
def cycle_distribution(customers: pd.DataFrame, sample: int = 20000) -> plt.Figure:
    """Each segment's distribution of purchase cycles (days, log scale; repeat buyers, whose cycle is their own),
    segments in order of their median cycle; a seeded sample above `sample` customers."""
    d = customers[customers["occasions"] > 1]
    d = d.sample(sample, random_state=0) if len(d) > sample else d
    d = d.assign(segment=d["segment"].astype(str).map(name), cycle=d["cycle_days"].clip(lower=1))
    order = d.groupby("segment")["cycle"].median().sort_values().index.tolist()
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(order), 4) + 1.2))
    if len(d):
        sns.boxplot(data=d, y="segment", x="cycle", order=order, ax=ax, orient="h", showfliers=False, log_scale=True)
        ax.xaxis.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    ax.set_xlabel(T("plots.cycle_x"))
    ax.set_ylabel("")
    ax.set_title(T("plots.cycle_title"))
    return fig


@_shown_once
def gains(curve: pd.DataFrame) -> plt.Figure:
    """Share of holdout revenue captured against the share of customers, ranked by each column of `curve`
    (besides `customer_share`), with a random ranking's diagonal."""
    fig, ax = plt.subplots()
    x = curve["customer_share"] * 100
    ax.plot([0, 100], [0, 100], ls=":", color="grey", label=T("plots.gains_random"))
    for i, col in enumerate(curve.columns.drop("customer_share")):
        ax.plot(x, curve[col] * 100, label=label(col), color=sns.color_palette()[i])
    ax.set_xlabel(T("plots.gains_x"))
    ax.set_ylabel(T("plots.gains_y"))
    ax.set_title(T("plots.gains_title"))
    ax.legend(loc="lower right")
    return fig


@_shown_once
def value_matrix(df: pd.DataFrame, cuts_x: list[float], cuts_y: list[float], sample: int = 5000) -> plt.Figure:
    """Scatter of current against potential value score with the grid lines, coloured by cell."""
    d = df.sample(min(sample, len(df)), random_state=0) if len(df) > sample else df
    colours = {name(k): v for k, v in group_colours(d["value_cell"].astype(str).unique()).items()}
    d = d.assign(value_cell=d["value_cell"].astype(str).map(name))
    fig, ax = plt.subplots(figsize=(8, 5.5))
    sns.scatterplot(data=d, x="current_value_score", y="potential_value_score", hue="value_cell", palette=colours, s=12,
                    alpha=0.6, ax=ax, linewidth=0)
    for c in cuts_x:
        ax.axvline(c, color="grey", ls="--")
    for c in cuts_y:
        ax.axhline(c, color="grey", ls="--")
    ax.set_xlabel(T("plots.current_score"))
    ax.set_ylabel(T("plots.potential_score"))
    ax.set_title(T("plots.matrix_title"))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), title=T("plots.cell"))
    return fig


@_shown_once
def cohort_heatmap(table: pd.DataFrame, title: str, cbar_label: str) -> plt.Figure:
    """Cohort x months-since heatmap in % (annotated when small enough to read)."""
    t = table.astype(float) * 100
    annot = t.shape[0] * t.shape[1] <= 200
    fig, ax = plt.subplots(figsize=(max(7, 0.4 * t.shape[1] + 2), max(4, 0.25 * t.shape[0] + 1.5)))
    sns.heatmap(t, annot=annot, fmt=".0f", cmap="Blues", ax=ax, cbar_kws={"label": T(cbar_label)}, vmin=0,
                vmax=min(100, float(np.nanmax(t.iloc[:, 1:].to_numpy())) if t.shape[1] > 1 else 100))
    ax.set_ylabel(T("plots.cohort"))
    ax.set_xlabel(T("plots.months_since"))
    ax.set_title(T(title))
    return fig


@_shown_once
def km_plot(curves: pd.DataFrame, test: dict) -> plt.Figure:
    """Kaplan-Meier retention curves by group, with the log-rank p-value."""
    fig, ax = plt.subplots()
    colours = group_colours(curves["group"].unique())
    for g, d in curves.groupby("group"):
        ax.step(d["days"], d["survival"] * 100, where="post", color=colours[str(g)],
                label=f"{name(str(g))} (n={int(d['customers'].iloc[0]):,})")
    ax.set_xlabel(T("plots.days_since_first"))
    ax.set_ylabel(T("plots.not_churned"))
    p = test.get("p_value")
    ax.set_title(T("plots.km_title") + (T("plots.logrank_p", p=f"{p:.3g}") if p == p and p is not None else ""))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower left")
    return fig


@_shown_once
def importance(d: pd.DataFrame, title: str, xlabel: str) -> plt.Figure:
    """Driver importance with its interval, largest first."""
    d = d.assign(order=d["importance"].abs(), driver=d["driver"].astype(str).map(label))
    d = d.sort_values("order", ascending=True)
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(d), 4) + 1.2))
    ax.barh(d["driver"], d["importance"], color=sns.color_palette()[0])
    if d["ci_low"].notna().any():
        err = np.vstack([(d["importance"] - d["ci_low"]).clip(lower=0), (d["ci_high"] - d["importance"]).clip(lower=0)])
        ax.errorbar(d["importance"], d["driver"], xerr=np.nan_to_num(err), fmt="none", color="black", capsize=2)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel(T(xlabel))
    ax.set_title(T(title))
    return fig


def _place_labels(fig: plt.Figure, ax: plt.Axes, points: list[tuple[str, float, float]]) -> None:
    """Label each point at the first of eight positions around it whose text overlaps no label placed before
    (nor another point's marker); the last position when none is free."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    placed: list[Any] = []
    offsets = [(5, 5, "left", "bottom"), (5, -5, "left", "top"), (-5, 5, "right", "bottom"), (-5, -5, "right", "top"),
               (0, 9, "center", "bottom"), (0, -9, "center", "top"), (9, 0, "left", "center"),
               (-9, 0, "right", "center")]
    for text, x, y in sorted(points, key=lambda p: (p[1], p[2])):
        for dx, dy, ha, va in offsets:
            a = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=8.5)
            box = a.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in placed):
                break
            if (dx, dy) != offsets[-1][:2]:
                a.remove()
        placed.append(box)


@_shown_once
def ipa_chart(d: pd.DataFrame, scale_label: str, scale: tuple[float, float] | None = None) -> plt.Figure:
    """Importance-performance chart with its four named quadrants; the rating axis spans the whole `scale` and is
    split where `drivers.ipa` splits it (its `performance_cut`)."""
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    ax.scatter(d["mean_rating"], d["importance"], s=50)
    mx = float(d["performance_cut"].iloc[0]) if "performance_cut" in d.columns else d["mean_rating"].mean()
    my = d["importance"].mean()
    ax.axvline(mx, color="grey", ls="--")
    ax.axhline(my, color="grey", ls="--")
    pad_x, pad_y = np.ptp(ax.get_xlim()) * 0.15, np.ptp(ax.get_ylim()) * 0.15
    ax.set_xlim(*(scale if scale else (ax.get_xlim()[0] - pad_x, ax.get_xlim()[1] + pad_x)))
    ax.set_ylim(ax.get_ylim()[0] - pad_y, ax.get_ylim()[1] + pad_y)
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    _place_labels(fig, ax, [(label(str(r["driver"])), r["mean_rating"], r["importance"]) for _, r in d.iterrows()])
    for x, y, key in ((x1, y1, "plots.ipa_keep"), (x0, y1, "plots.ipa_concentrate"), (x0, y0, "plots.ipa_low"),
                      (x1, y0, "plots.ipa_overkill")):
        ax.text(x, y, T(key), ha="right" if x == x1 else "left", va="top" if y == y1 else "bottom", color="grey",
                fontsize=9, style="italic")
    ax.set_xlabel(T("plots.ipa_x", scale=scale_label))
    ax.set_ylabel(T("plots.importance"))
    ax.set_title(T("plots.ipa_title"))
    return fig


@_shown_once
def calibration(cal: pd.DataFrame) -> plt.Figure:
    """Predicted against observed churn by probability bin."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label=T("plots.perfect_calibration"))
    ax.plot(cal["predicted"], cal["observed"], marker="o", label=T("plots.model"))
    ax.set_xlabel(T("plots.predicted_churn"))
    ax.set_ylabel(T("plots.observed_churn"))
    ax.set_title(T("plots.calibration_title"))
    ax.legend()
    return fig


@_shown_once
def allocation(opt: pd.DataFrame, even: pd.DataFrame, currency: str) -> plt.Figure:
    """Expected net value per group and action: optimised plan against the even split."""
    t = pd.concat([opt.assign(plan=T("plots.optimised")), even.assign(plan=T("plots.even_split"))])
    t["option"] = t["group"].astype(str).map(name) + ": " + t["action"].astype(str).map(name)
    fig, ax = plt.subplots(figsize=(8, 0.5 * max(t["option"].nunique(), 4) + 1.2))
    sns.barplot(data=t, y="option", x="net_value", hue="plan", ax=ax, orient="h")
    ax.axvline(0, color="grey", lw=0.8)
    ax.legend(title="")
    _money_axis(ax, currency, "x", T("plots.net_value_axis"))
    ax.set_ylabel("")
    ax.set_title(T("plots.allocation_title"))
    return fig


@_shown_once
def sensitivity(sens: pd.DataFrame, currency: str) -> plt.Figure:
    """Net value of the optimised and even plans when every uplift assumption moves."""
    fig, ax = plt.subplots()
    x = (sens["uplift_multiplier"] - 1) * 100
    ax.plot(x, sens["optimised_net_value"], marker="o", label=T("plots.optimised_plan"))
    ax.plot(x, sens["even_split_net_value"], marker="s", ls="--", label=T("plots.even_split"))
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel(T("plots.uplift_change"))
    _money_axis(ax, currency, "y", T("plots.expected_net_value"))
    ax.set_title(T("plots.sensitivity_title"))
    ax.legend()
    return fig
