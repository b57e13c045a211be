"""Parameters of the value assessment: profitability, the indicators of the value index, their weights, the
matrix and the fuzzy grades."""
from __future__ import annotations

from fractions import Fraction
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from cvlib.params.base import _Model
from cvlib.weights import ahp_weights


class CostToServe(_Model):
    per_year: float = Field(0.0, ge=0, description="yearly cost to serve every customer")
    by_column: str | None = Field(None, description="customers-table column (e.g. size_tier) to look costs up by")
    by_value: dict[str, float] = Field(default_factory=dict, description="yearly cost per value of by_column")


class Profitability(_Model):
    margin_by_line: dict[str, float] = Field(default_factory=dict,
                                             description="gross margin share per product / service line")
    cost_to_serve: CostToServe = Field(default_factory=CostToServe)
    retention_cost_per_year: float = Field(
        0.0, ge=0, description="yearly cost of keeping a customer, in the study currency (CLV with costs)")
    acquisition_cost: float = Field(
        0.0, ge=0, description="cost of acquiring a customer, in the study currency (CLV with costs)")
    horizon_years: int = Field(5, ge=1, le=30, description="horizon of the formula CLV with costs")


CATEGORIES = ("financial", "satisfaction", "loyalty", "relationship")
Category = Literal["financial", "satisfaction", "loyalty", "relationship"]


class Indicator(_Model):
    column: str = Field(description="a column of the customer table used as an indicator")
    group: Literal["current", "potential"] = Field(
        description="whether the indicator measures current or potential value")
    category: Category | None = Field(None, description="indicator group for two-level weights (value.weights.groups)")
    direction: Literal["higher", "lower"] = Field(
        "higher", description="higher: a higher value is better; lower: a lower value is better")
    normalisation: Literal["minmax", "rank"] | None = Field(None, description="None: value.normalisation")
    label: str | None = Field(None, description="the indicator's name in the reports (default: the column's label)")


def _default_indicators() -> list["Indicator"]:
    return [Indicator(column="revenue", group="current"), Indicator(column="profit", group="current"),
            Indicator(column="frequency", group="current"), Indicator(column="tenure", group="current"),
            Indicator(column="clv", group="potential"), Indicator(column="p_alive", group="potential"),
            Indicator(column="spend_trend", group="potential")]


class Ahp(_Model):
    matrix: list[list[float]] = Field(description="pairwise comparisons of the indicators, in their order (Saaty 1-9)")
    allow_inconsistent: bool = Field(False, description="go on when the consistency ratio is 0.1 or more")

    @field_validator("matrix", mode="before")
    @classmethod
    def _fractions(cls, m: object) -> object:
        """Accept Saaty's judgements written as fractions, e.g. 1/3."""

        if not isinstance(m, list):
            return m
        try:
            return [[float(Fraction(str(v).strip())) if isinstance(v, str) else v for v in row] if isinstance(row, list)
                    else row for row in m]
        except (ValueError, ZeroDivisionError):
            return m  # the number check then names the bad entry

    @field_validator("matrix")
    @classmethod
    def _square_reciprocal(cls, m: list[list[float]]) -> list[list[float]]:
        n = len(m)
        if any(len(row) != n for row in m):
            raise ValueError(f"the AHP matrix must be square; it has {n} rows of lengths {[len(r) for r in m]}")
        for i in range(n):
            if abs(m[i][i] - 1) > 1e-9:
                raise ValueError(f"the AHP matrix diagonal must be 1 (row {i + 1})")
            for j in range(n):
                if m[i][j] <= 0:
                    raise ValueError(f"AHP entries must be positive (row {i + 1}, column {j + 1})")
                if abs(m[i][j] * m[j][i] - 1) > 0.02:
                    raise ValueError(f"the AHP matrix must be reciprocal: entry ({i + 1},{j + 1}) = {m[i][j]:g} but "
                                     f"({j + 1},{i + 1}) = {m[j][i]:g}; it should be {1 / m[i][j]:.4g}")
        return m


class GroupWeights(_Model):
    """The upper level of two-level weights: one weight per indicator group (category)."""

    method: Literal["fixed", "ahp", "entropy"] = Field(
        "entropy", description="how the two groups (current, potential) are weighted: fixed, ahp or entropy")
    fixed: dict[Category, float] = Field(default_factory=dict, description="category -> weight")
    ahp: Ahp | None = Field(None, description="pairwise comparisons of the categories used, in the order financial, "
                                              "satisfaction, loyalty, relationship")


class Weights(_Model):
    method: Literal["fixed", "ahp", "entropy"] = Field("entropy",
        description=(
            "how indicators are weighted within a group: fixed, ahp (pairwise comparisons) or entropy"))
    fixed: dict[str, float] = Field(default_factory=dict, description="indicator column -> weight")
    ahp: Ahp | None = Field(None, description="the AHP pairwise comparison matrix and its indicators (method: ahp)")
    groups: GroupWeights | None = Field(None, description="two-level weights: categories weighted by this, the "
                                        "indicators within each category by `method` (None: one level)")


class ValueMatrix(_Model):
    size: Literal[2, 3] = Field(2, description="cells per axis of the current x potential value matrix (2x2 or 3x3)")
    current_cuts: list[float] | None = Field(None, description="score cut points (0-100); None: median or tertiles")
    potential_cuts: list[float] | None = Field(
        None, description="score cuts of the potential axis (None: the medians, or terciles for size 3)")
    names: dict[str, str] | None = Field(None, description="cell 'current/potential' (e.g. 'high/low') -> name")


class Fuzzy(_Model):
    """Fuzzy comprehensive evaluation beside the weighted score (see cvlib.fuzzy)."""

    enabled: bool = Field(True, description="also grade customers by fuzzy comprehensive evaluation")
    levels: list[str] = Field(default_factory=lambda: ["poor", "fair", "good", "excellent"],
                              description="graded levels, worst first")
    centres: list[float] = Field(default_factory=lambda: [0.0, 1 / 3, 2 / 3, 1.0],
                                 description="each level's centre on the 0-1 normalised scale (increasing)")
    level_scores: list[float] | None = Field(None, description="each level's score for the weighted-average "
                                             "grade; None: the centres x 100")

    @model_validator(mode="after")
    def _levels(self) -> "Fuzzy":
        if len(self.levels) < 2 or len(set(self.levels)) != len(self.levels):
            raise ValueError("fuzzy.levels needs at least two different level names")
        if len(self.centres) != len(self.levels):
            raise ValueError(f"fuzzy.centres has {len(self.centres)} values for {len(self.levels)} levels")
        increasing = all(a < b for a, b in zip(self.centres, self.centres[1:]))
        if not increasing or not 0 <= self.centres[0] <= self.centres[-1] <= 1:
            raise ValueError(f"fuzzy.centres must increase within 0-1, got {self.centres}")
        if self.level_scores is not None and len(self.level_scores) != len(self.levels):
            raise ValueError(f"fuzzy.level_scores has {len(self.level_scores)} values for {len(self.levels)} levels")
        return self


class Value(_Model):
    profitability: Profitability = Field(default_factory=Profitability)
    indicators: list[Indicator] = Field(default_factory=_default_indicators,
        description=(
            "the indicators of the value index: a list of {column, group, direction, label}"))
    normalisation: Literal["minmax", "rank"] = Field(
        "minmax", description="how indicators are put on one scale: minmax (0-1) or rank (percentile)")
    weights: Weights = Field(default_factory=Weights)
    matrix: ValueMatrix = Field(default_factory=ValueMatrix)
    fuzzy: Fuzzy = Field(default_factory=Fuzzy)

    @model_validator(mode="after")
    def _consistent(self) -> "Value":
        cols = [i.column for i in self.indicators]
        if len(set(cols)) != len(cols):
            raise ValueError("each indicator column may appear once")
        if {i.group for i in self.indicators} != {"current", "potential"}:
            raise ValueError("indicators need at least one 'current' and one 'potential' indicator")
        w = self.weights
        ranked = [i.column for i in self.indicators if (i.normalisation or self.normalisation) == "rank"]
        if w.method == "entropy" and ranked:
            raise ValueError(f"entropy weights need indicators that keep their spread, but {ranked} are rank-"
                             "normalised: percentile ranks are spread evenly by construction, so every entropy "
                             "weight would be the same. Use normalisation: minmax, or weights.method ahp or fixed")
        if w.groups is not None:
            missing = [i.column for i in self.indicators if i.category is None]
            if missing:
                raise ValueError(f"weights.groups needs a category for every indicator; {missing} have none "
                                 f"(category: one of {', '.join(CATEGORIES)})")
            used = [c for c in CATEGORIES if any(i.category == c for i in self.indicators)]
            g = w.groups
            if g.method == "fixed" and set(used) - set(g.fixed):
                raise ValueError(f"weights.groups.fixed needs a weight for {sorted(set(used) - set(g.fixed))}")
            if g.method == "ahp" and (g.ahp is None or len(g.ahp.matrix) != len(used)):
                raise ValueError(f"weights.groups.ahp.matrix must compare the {len(used)} categories used "
                                 f"({', '.join(used)}), in that order")
        if w.method == "ahp":
            if w.ahp is None:
                raise ValueError("weights.method is 'ahp' but weights.ahp.matrix is missing")
            if len(w.ahp.matrix) != len(cols):
                raise ValueError(f"the AHP matrix is {len(w.ahp.matrix)}x{len(w.ahp.matrix)} but there are "
                                 f"{len(cols)} indicators ({', '.join(cols)})")

            ahp = ahp_weights(w.ahp.matrix)
            if not ahp["consistent"] and not w.ahp.allow_inconsistent:
                raise ValueError(f"the AHP comparison matrix is inconsistent: consistency ratio {ahp['cr']:.3f} "
                                 "(must be below 0.10). Revise the judgements, or set "
                                 "value.weights.ahp.allow_inconsistent: true to go on anyway")
        if w.method == "fixed":
            missing = [c for c in cols if c not in w.fixed]
            if missing:
                raise ValueError(f"weights.fixed has no weight for {missing}")
        return self


# --------------------------------------------------------------------------- loyalty drivers
