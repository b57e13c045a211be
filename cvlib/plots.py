"""Figures for the reports, all in one seaborn theme. Each returns a matplotlib Figure."""
from __future__ import annotations

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

PALETTE = "deep"


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
