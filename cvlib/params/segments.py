"""Parameters of the RFM scores and segments, the clusters and the lifetime-value models."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from cvlib.params.base import _Model


class SegmentRule(_Model):
    """A cell range of the R x F (or R x FM) grid on a 1-5 scale: the first rule that matches wins."""

    name: str = Field(description="segment name (any language)")
    r: tuple[int, int] = Field(description="recency score range [low, high] on the 1-5 scale")
    f: tuple[int, int] = Field(
        description="frequency score range [low, high] on the 1-5 scale (or the mean of F and M with segment_on: rfm)")

    @field_validator("r", "f")
    @classmethod
    def _range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1] <= 9:
            raise ValueError(f"score range {list(v)} must be [low, high] with 1 <= low <= high")
        return v


DEFAULT_SEGMENTS = [
    {"name": "Champions", "r": [5, 5], "f": [4, 5]},
    {"name": "Loyal", "r": [3, 4], "f": [4, 5]},
    {"name": "Potential Loyalist", "r": [4, 5], "f": [2, 3]},
    {"name": "New", "r": [5, 5], "f": [1, 1]},
    {"name": "Promising", "r": [4, 4], "f": [1, 1]},
    {"name": "Need Attention", "r": [3, 3], "f": [3, 3]},
    {"name": "About to Sleep", "r": [3, 3], "f": [1, 2]},
    {"name": "Can't Lose Them", "r": [1, 2], "f": [5, 5]},
    {"name": "At Risk", "r": [1, 2], "f": [3, 4]},
    {"name": "Lost", "r": [1, 1], "f": [1, 1]},
    {"name": "Hibernating", "r": [1, 2], "f": [1, 2]},
]


class BinEdges(_Model):
    """Fixed score bin edges (ascending values; scores 1..len+1); recency is reversed."""

    recency: list[float] | None = Field(
        None, description="fixed ascending edges for the recency score instead of quantiles (scores 1..len+1)")
    frequency: list[float] | None = Field(
        None, description="fixed ascending edges for the frequency score instead of quantiles")
    monetary: list[float] | None = Field(
        None, description="fixed ascending edges for the monetary score instead of quantiles")

    @field_validator("recency", "frequency", "monetary")
    @classmethod
    def _ascending(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (not v or any(b <= a for a, b in zip(v, v[1:]))):
            raise ValueError(f"bin edges {v} must be a non-empty list of strictly increasing values")
        return v


class Pyramid(_Model):
    cuts: list[float] = Field(default_factory=lambda: [0.01, 0.05, 0.20], description="cumulative customer shares")
    names: list[str] = Field(default_factory=lambda: ["Top 1%", "Next 4%", "Next 15%", "Other 80%"],
        description=(
            "names of the value pyramid tiers, top first (one more than cuts)"))

    @model_validator(mode="after")
    def _sizes(self) -> "Pyramid":
        if len(self.names) != len(self.cuts) + 1:
            raise ValueError(f"pyramid needs {len(self.cuts) + 1} names for {len(self.cuts)} cuts")
        if any(b <= a for a, b in zip(self.cuts, self.cuts[1:])) or not all(0 < c < 1 for c in self.cuts):
            raise ValueError("pyramid cuts must be increasing shares between 0 and 1")
        return self


class Clusters(_Model):
    enabled: bool = Field(True, description="k-means clusters on log, standardised R, F and M")
    k: int | None = Field(None, ge=2, le=20, description="fixed k; None: chosen by silhouette over k_range")
    k_range: tuple[int, int] = Field((2, 8), description="range of k tried when k is not fixed (chosen by silhouette)")
    seed: int = Field(0, description="random seed of k-means and of the silhouette sample")
    sample: int = Field(5_000, ge=500, description="customers sampled for silhouette scores")
    tree_depth: int = Field(3, ge=1, le=6, description="depth of the decision tree that explains the clusters in rules")


class Rfm(_Model):
    end_date: dt.date | None = Field(None, description="observation end; None: the last transaction date")
    time_unit: Literal["days", "weeks"] = Field("weeks", description="unit of the CLV model inputs x, t_x and T")
    summary_engine: Literal["pandas", "duckdb"] = Field(
        "duckdb", description="what computes the per-customer summary: duckdb (the default) reading the clean Parquet "
                              "file and returning one row per customer, or pandas in memory (the same numbers, tested)")
    calibration_end: dt.date | None = Field(
        None, description="end of the calibration period for validating the CLV models on a holdout (None: no holdout)")
    holdout_end: dt.date | None = Field(None, description="end of the holdout period (None: the data's last day)")
    n_bins: int = Field(5, ge=2, le=9, description="R, F and M scores 1..n (n best; recency reversed)")
    ties: Literal["shared", "first"] = Field(
        "shared", description="shared: equal values share a score; first: ties broken in data order")
    bin_edges: BinEdges = Field(
        default_factory=BinEdges, description="fixed score edges per measure instead of quantiles")
    segment_on: Literal["rf", "rfm"] = Field(
        "rf", description="the segment grid on R and F (rf), or on R and the mean of F and M (rfm)")
    segments: list[SegmentRule] = Field(default_factory=lambda: [SegmentRule(**s) for s in DEFAULT_SEGMENTS],
        description=(
            "the segment grid: a list of {name, r: [low, high], f: [low, high]}; the first matching rule wins"))
    abc: tuple[float, float] = Field((0.80, 0.95), description="cumulative revenue shares ending classes A and B")
    pyramid: Pyramid = Field(default_factory=Pyramid)
    clusters: Clusters = Field(default_factory=Clusters)

    @model_validator(mode="after")
    def _dates(self) -> "Rfm":
        if self.holdout_end and not self.calibration_end:
            raise ValueError("holdout_end needs calibration_end")
        if self.calibration_end and self.holdout_end and self.holdout_end <= self.calibration_end:
            raise ValueError("holdout_end must be after calibration_end")
        if not 0 < self.abc[0] < self.abc[1] < 1:
            raise ValueError("abc must be two increasing shares between 0 and 1, e.g. [0.8, 0.95]")
        return self


# --------------------------------------------------------------------------- clv
class FormulaClv(_Model):
    lifetime_years: float | None = Field(None, gt=0, description="None: 1 / (1 - yearly retention)")
    retention_rate: float | None = Field(None, gt=0, lt=1, description="yearly; None: measured from the data")
    acquisition_cost: float | dict[str, float] = Field(0.0, description="per customer, or per acquisition channel")
    channel_column: str | None = Field(None, description="attribute column (or 'channel' of the transactions)")
    acquisition_cost_column: str | None = Field(None, description="attribute column with each customer's cost")
    growth_rate: float | None = Field(None, gt=-1, description="yearly growth of a customer's profit for the "
                                      "retention-growth CLV; None: measured from the data")
    maintenance_cost_per_year: float = Field(0.0, ge=0, description="yearly cost of keeping a customer, for the "
                                             "discounted-profit CLV")


class Contracts(_Model):
    """Contractual clients: sBG retention fitted to contract periods."""

    enabled: bool = Field(False,
        description=(
            "value customers by their contracts with the shifted-beta-geometric retention model (needs contract "
            "columns in the customers table)"))
    start_column: str = Field("contract_start", description="column of the customers table")
    end_column: str = Field("contract_end", description="column of the customers table; empty = still active")
    period_months: int = Field(12, ge=1, le=60, description="length of one renewal period")
    value_column: str | None = Field(None, description="value per period; None: mean yearly revenue x period")


class ClvTiers(_Model):
    cuts: list[float] = Field(default_factory=lambda: [0.10, 0.30], description="cumulative customer shares")
    names: list[str] = Field(
        default_factory=lambda: ["High", "Medium", "Low"], description="names of the CLV tiers, highest first")

    @model_validator(mode="after")
    def _sizes(self) -> "ClvTiers":
        if len(self.names) != len(self.cuts) + 1:
            raise ValueError(f"clv tiers need {len(self.cuts) + 1} names for {len(self.cuts)} cuts")
        if any(b <= a for a, b in zip(self.cuts, self.cuts[1:])) or not all(0 < c < 1 for c in self.cuts):
            raise ValueError(f"clv tier cuts {self.cuts} must be increasing shares between 0 and 1")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"clv tier names {self.names} must differ")
        return self


class Clv(_Model):
    model: Literal["bgnbd", "paretonbd"] = Field("bgnbd", description="the purchase model used for per-customer CLV")
    compare_paretonbd: bool = Field(True, description="also fit Pareto/NBD and show it beside BG/NBD")
    horizon_months: int = Field(12, ge=1, le=120, description="months of future value counted in the CLV")
    margin: float = Field(1.0, gt=0, le=1, description="gross margin share of revenue")
    discount_rate: float = Field(0.10, ge=0, lt=1, description="annual, applied month by month")
    bootstrap: int = Field(100, ge=0, le=2000, description="resamples for the interval of total CLV (0: off)")
    bootstrap_max_customers: int = Field(50_000, ge=1000, description="above this many customers the interval of "
                                         "total CLV comes from the fits' Hessians (delta method), not from refits")
    seed: int = Field(0, description="random seed of the CLV bootstrap")
    max_fit_customers: int = Field(25_000, ge=1000, description="Pareto/NBD is fitted on a random sample above "
                                   "this (its likelihood costs a hypergeometric function per customer)")
    tiers: ClvTiers = Field(default_factory=ClvTiers)
    formula: FormulaClv = Field(default_factory=FormulaClv)
    variants: list[Literal["aov", "retention_growth", "discounted_profit", "contribution"]] = Field(
        default_factory=lambda: ["aov", "retention_growth", "discounted_profit", "contribution"],
        description="named CLV formulas shown beside the model CLV (cvlib.analysis.variants)")
    contracts: Contracts = Field(default_factory=Contracts)
    departed_p_alive: float | None = Field(0.1, gt=0, lt=1, description="a customer whose purchase-model P(alive) "
                                           "is below this has left (forward value 0); null: not used. The other "
                                           "tests: contract ended, no purchase for drivers.churn_days (cvlib.status)")


# --------------------------------------------------------------------------- value assessment
