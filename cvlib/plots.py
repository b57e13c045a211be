"""Figures for the reports, all in one seaborn theme. Each returns a matplotlib Figure."""
from __future__ import annotations

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

PALETTE = "deep"


def _shown_once(fn):
    """Close the figure and return it: a notebook cell then shows it exactly once, as its value."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        fig = fn(*args, **kwargs)
        plt.close(fig)
        return fig

    return wrapper


def use_theme() -> None:
    """The one theme every cvlib figure uses."""
    sns.set_theme(style="whitegrid", context="notebook", palette=PALETTE)
    plt.rcParams.update({
        "figure.figsize": (8, 4.2), "figure.dpi": 100, "savefig.dpi": 100, "axes.titleweight": "bold",
        "axes.titlesize": 12, "text.parse_math": False, "figure.autolayout": True,
    })


def _money_axis(ax: plt.Axes, currency: str, axis: str = "y") -> None:
    fmt = mticker.FuncFormatter(lambda v, _: f"{v:,.0f}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)
    label = ax.get_ylabel() if axis == "y" else ax.get_xlabel()
    (ax.set_ylabel if axis == "y" else ax.set_xlabel)(f"{label} ({currency})")


@_shown_once
def monthly_activity(monthly: pd.DataFrame, currency: str) -> plt.Figure:
    """Monthly revenue (bars) and active customers (line)."""
    fig, ax = plt.subplots()
    ax.bar(monthly["month"], monthly["revenue"], width=20, color=sns.color_palette()[0], label="revenue")
    ax.set_ylabel("revenue")
    _money_axis(ax, currency)
    ax2 = ax.twinx()
    ax2.plot(monthly["month"], monthly["active_customers"], color=sns.color_palette()[3], marker="o", label="active customers")
    ax2.set_ylabel("active customers (count)")
    ax2.grid(False)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b\n%Y"))
    ax.set_title("Monthly revenue and active customers")
    fig.legend(loc="upper right", bbox_to_anchor=(0.9, 0.88))
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
    ax.set_xlabel(f"transaction amount ({currency}, log scale)")
    ax.set_ylabel("transactions (count)")
    if bounds:
        for b in bounds:
            if np.isfinite(b) and b > 0:
                ax.axvline(b, color=sns.color_palette()[3], ls="--")
    ax.set_title("Transaction amounts")
    return fig


@_shown_once
def segment_bars(table: pd.DataFrame) -> plt.Figure:
    """Share of customers against share of revenue per segment."""
    t = table.melt(id_vars="segment", value_vars=["share_of_customers", "share_of_revenue"], var_name="share",
                   value_name="value")
    t["segment"] = t["segment"].astype(str)
    t["share"] = t["share"].map({"share_of_customers": "customers", "share_of_revenue": "revenue"})
    t["value"] *= 100
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(table), 4) + 1))
    sns.barplot(data=t, y="segment", x="value", hue="share", ax=ax, orient="h")
    ax.set_xlabel("share (%)")
    ax.set_ylabel("")
    ax.set_title("Segments: share of customers and of revenue")
    return fig


@_shown_once
def heatmap(table: pd.DataFrame, title: str, fmt: str = ",.0f", cbar_label: str = "") -> plt.Figure:
    """A labelled heatmap of a small grid (e.g. R x F)."""
    fig, ax = plt.subplots(figsize=(max(6.5, 0.75 * table.shape[1] + 2.5), max(4.5, 0.4 * table.shape[0] + 1.5)))
    sns.heatmap(table.astype(float), annot=True, fmt=fmt, cmap="Blues", ax=ax, cbar_kws={"label": cbar_label})
    ax.set_title(title)
    return fig


@_shown_once
def pareto(curve: pd.DataFrame, top20: float) -> plt.Figure:
    """Cumulative revenue share against customer share, with the 20% line and equality diagonal."""
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.plot(curve["customer_share"] * 100, curve["revenue_share"] * 100, label="customers ranked by revenue")
    ax.plot([0, 100], [0, 100], ls=":", color="grey", label="equal spend")
    ax.axvline(20, ls="--", color=sns.color_palette()[3])
    ax.annotate(f"top 20% make {top20:.0%}", (20, top20 * 100), xytext=(30, top20 * 100 - 15),
                arrowprops={"arrowstyle": "->"})
    ax.set_xlabel("customers (cumulative %, highest revenue first)")
    ax.set_ylabel("revenue (cumulative %)")
    ax.set_title("Value concentration (Pareto curve)")
    ax.legend(loc="lower right")
    return fig


@_shown_once
def elbow_silhouette(scores: pd.DataFrame, chosen: int) -> plt.Figure:
    """Inertia (elbow) and mean silhouette against k, the chosen k marked."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    a1.plot(scores["k"], scores["inertia"], marker="o")
    a1.set_xlabel("k (clusters)")
    a1.set_ylabel("inertia (within-cluster sum of squares)")
    a1.set_title("Elbow")
    a2.plot(scores["k"], scores["silhouette"], marker="o", color=sns.color_palette()[1])
    a2.set_xlabel("k (clusters)")
    a2.set_ylabel("mean silhouette (-1 to 1)")
    a2.set_title("Silhouette")
    for a in (a1, a2):
        a.axvline(chosen, ls="--", color="grey")
    return fig


@_shown_once
def silhouette(samples: pd.DataFrame) -> plt.Figure:
    """Silhouette values of the sampled customers, grouped by cluster."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    y = 0
    for c, g in samples.groupby("cluster"):
        v = np.sort(g["silhouette"].to_numpy())
        ax.fill_betweenx(np.arange(y, y + len(v)), 0, v, alpha=0.8, label=f"cluster {c}")
        y += len(v) + 20
    ax.axvline(samples["silhouette"].mean(), ls="--", color="grey")
    ax.set_xlabel("silhouette value (-1 to 1)")
    ax.set_ylabel("sampled customers")
    ax.set_yticks([])
    ax.set_title("Silhouette by cluster")
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
    ax.set_xlabel(f"{horizon_months}-month CLV per customer ({currency}, log scale)")
    ax.set_ylabel("customers (count)")
    ax.set_title("Distribution of customer lifetime value")
    return fig


@_shown_once
def bars(table: pd.DataFrame, x: str, y: str, title: str, xlabel: str, ylabel: str) -> plt.Figure:
    """A simple horizontal bar chart of one value per group."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(table), 4) + 1))
    t = table.assign(**{x: table[x].astype(str)})
    sns.barplot(data=t, y=x, x=y, ax=ax, orient="h", color=sns.color_palette()[0])
    ax.set_xlabel(ylabel)
    ax.set_ylabel(xlabel)
    ax.set_title(title)
    return fig


@_shown_once
def actual_vs_predicted(table: pd.DataFrame, x: str, xlabel: str, ylabel: str, title: str) -> plt.Figure:
    """Grouped bars of `actual` and `predicted` per value of x."""
    t = table.melt(id_vars=x, value_vars=["actual", "predicted"], var_name="series", value_name="value")
    fig, ax = plt.subplots()
    sns.barplot(data=t, x=x, y="value", hue="series", ax=ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


@_shown_once
def tracking(track: pd.DataFrame, split_week: float | None, unit_label: str = "week") -> plt.Figure:
    """Cumulative actual and predicted repeat purchases over time, the calibration end marked."""
    fig, ax = plt.subplots()
    ax.plot(track["week"], track["actual"], label="actual")
    ax.plot(track["week"], track["predicted"], ls="--", label="model")
    if split_week:
        ax.axvline(split_week, color="grey", ls=":")
        ax.annotate("end of calibration", (split_week, ax.get_ylim()[1] * 0.05), rotation=90, ha="right")
    ax.set_xlabel(f"{unit_label} since the start of the data")
    ax.set_ylabel("cumulative repeat purchases (count)")
    ax.set_title("Tracking: cumulative repeat purchases")
    ax.legend()
    return fig


@_shown_once
def survival_curve(curve: pd.DataFrame, period_months: int) -> plt.Figure:
    """Projected share of a cohort still under contract (sBG)."""
    fig, ax = plt.subplots()
    ax.plot(curve["period"], curve["survival"] * 100, marker="o")
    ax.set_xlabel(f"renewal periods ({period_months} months each)")
    ax.set_ylabel("contracts still active (%)")
    ax.set_title("Projected contract survival (shifted-beta-geometric)")
    return fig


@_shown_once
def whale_curve(curve: pd.DataFrame, facts: dict) -> plt.Figure:
    """Cumulative profit (% of total) against customers ranked by profit, the peak marked."""
    fig, ax = plt.subplots()
    ax.plot(curve["customer_share"] * 100, curve["cumulative_profit_pct"])
    ax.axhline(100, ls=":", color="grey")
    ax.scatter([facts["peak_at_customer_share"] * 100], [facts["peak_pct_of_total"]], color=sns.color_palette()[3],
               zorder=3)
    ax.annotate(f"peak: {facts['peak_pct_of_total']:.0f}% of total profit", (facts["peak_at_customer_share"] * 100,
                                                                            facts["peak_pct_of_total"]),
                xytext=(10, -25), textcoords="offset points")
    ax.set_xlabel("customers (cumulative %, most profitable first)")
    ax.set_ylabel("cumulative profit (% of total)")
    ax.set_title("Profitability (whale) curve")
    return fig


@_shown_once
def value_matrix(df: pd.DataFrame, cuts_x: list[float], cuts_y: list[float], sample: int = 5000) -> plt.Figure:
    """Scatter of current against potential value score with the grid lines, coloured by cell."""
    d = df.sample(min(sample, len(df)), random_state=0) if len(df) > sample else df
    fig, ax = plt.subplots(figsize=(7, 6))
    sns.scatterplot(data=d, x="current_value_score", y="potential_value_score", hue="value_cell", s=12,
                    alpha=0.6, ax=ax, linewidth=0)
    for c in cuts_x:
        ax.axvline(c, color="grey", ls="--")
    for c in cuts_y:
        ax.axhline(c, color="grey", ls="--")
    ax.set_xlabel("current value score (0-100)")
    ax.set_ylabel("potential value score (0-100)")
    ax.set_title("Customer value matrix")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), title="cell")
    return fig


@_shown_once
def cohort_heatmap(table: pd.DataFrame, title: str, cbar_label: str) -> plt.Figure:
    """Cohort x months-since heatmap in % (annotated when small enough to read)."""
    t = table.astype(float) * 100
    annot = t.shape[0] * t.shape[1] <= 200
    fig, ax = plt.subplots(figsize=(max(7, 0.4 * t.shape[1] + 2), max(4, 0.25 * t.shape[0] + 1.5)))
    sns.heatmap(t, annot=annot, fmt=".0f", cmap="Blues", ax=ax, cbar_kws={"label": cbar_label}, vmin=0,
                vmax=min(100, float(np.nanmax(t.iloc[:, 1:].to_numpy())) if t.shape[1] > 1 else 100))
    ax.set_ylabel("cohort (month of first purchase)")
    ax.set_title(title)
    return fig


@_shown_once
def km_plot(curves: pd.DataFrame, test: dict) -> plt.Figure:
    """Kaplan-Meier retention curves by group, with the log-rank p-value."""
    fig, ax = plt.subplots()
    for g, d in curves.groupby("group"):
        ax.step(d["days"], d["survival"] * 100, where="post", label=f"{g} (n={int(d['customers'].iloc[0]):,})")
    ax.set_xlabel("days since first purchase")
    ax.set_ylabel("customers not yet churned (%)")
    p = test.get("p_value")
    ax.set_title("Kaplan-Meier retention" + (f" (log-rank p = {p:.3g})" if p == p and p is not None else ""))
    ax.legend(fontsize=8, loc="lower left")
    return fig


@_shown_once
def importance(d: pd.DataFrame, title: str, xlabel: str) -> plt.Figure:
    """Driver importance with its interval, largest first."""
    d = d.assign(order=d["importance"].abs()).sort_values("order", ascending=True)
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(d), 4) + 1.2))
    ax.barh(d["driver"], d["importance"], color=sns.color_palette()[0])
    if d["ci_low"].notna().any():
        err = np.vstack([(d["importance"] - d["ci_low"]).clip(lower=0), (d["ci_high"] - d["importance"]).clip(lower=0)])
        ax.errorbar(d["importance"], d["driver"], xerr=np.nan_to_num(err), fmt="none", color="black", capsize=2)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return fig


@_shown_once
def ipa_chart(d: pd.DataFrame, scale_label: str) -> plt.Figure:
    """Importance-performance chart with its four named quadrants."""
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    ax.scatter(d["mean_rating"], d["importance"], s=50)
    for _, r in d.iterrows():
        ax.annotate(str(r["driver"]), (r["mean_rating"], r["importance"]), xytext=(4, 4), textcoords="offset points",
                    fontsize=9)
    mx, my = d["mean_rating"].mean(), d["importance"].mean()
    ax.axvline(mx, color="grey", ls="--")
    ax.axhline(my, color="grey", ls="--")
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    for x, y, label in ((x1, y1, "keep up the good work"), (x0, y1, "concentrate here"), (x0, y0, "low priority"),
                        (x1, y0, "possible overkill")):
        ax.text(x, y, label, ha="right" if x == x1 else "left", va="top" if y == y1 else "bottom", color="grey",
                fontsize=9, style="italic")
    ax.set_xlabel(f"performance: mean rating ({scale_label})")
    ax.set_ylabel("importance")
    ax.set_title("Importance-performance")
    return fig


@_shown_once
def calibration(cal: pd.DataFrame) -> plt.Figure:
    """Predicted against observed churn by probability bin."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfect calibration")
    ax.plot(cal["predicted"], cal["observed"], marker="o", label="model")
    ax.set_xlabel("predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.set_title("Calibration of the churn probabilities")
    ax.legend()
    return fig


@_shown_once
def allocation(opt: pd.DataFrame, even: pd.DataFrame, currency: str) -> plt.Figure:
    """Expected net value per group and action: optimised plan against the even split."""
    t = pd.concat([opt.assign(plan="optimised"), even.assign(plan="even split")])
    t["option"] = t["group"] + ": " + t["action"]
    fig, ax = plt.subplots(figsize=(8, 0.5 * max(t["option"].nunique(), 4) + 1.2))
    sns.barplot(data=t, y="option", x="net_value", hue="plan", ax=ax, orient="h")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"expected net value (incremental value - cost, {currency})")
    ax.set_ylabel("")
    ax.set_title("Budget allocation: optimised against even split")
    return fig


@_shown_once
def sensitivity(sens: pd.DataFrame, currency: str) -> plt.Figure:
    """Net value of the optimised and even plans when every uplift assumption moves."""
    fig, ax = plt.subplots()
    x = (sens["uplift_multiplier"] - 1) * 100
    ax.plot(x, sens["optimised_net_value"], marker="o", label="optimised plan")
    ax.plot(x, sens["even_split_net_value"], marker="s", ls="--", label="even split")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("change in every uplift assumption (%)")
    ax.set_ylabel(f"expected net value ({currency})")
    ax.set_title("Sensitivity to the uplift assumptions")
    ax.legend()
    return fig
