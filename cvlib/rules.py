"""The vocabulary of the strategy's group rules: the columns of the customer table a rule can use, which of them
hold text, and the values each category column can take (checked when the parameters are loaded, before any
stage runs). A foundation module: it imports no stage."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cvlib.params import Study

CELL_NAMES_2 = {"high/high": "Keep and grow", "low/high": "Develop", "high/low": "Maintain",
                "low/low": "Reduce cost to serve"}
DEPARTED_REASONS = ("contract ended", "inactive", "p_alive")  # why a customer counts as departed (cvlib.status)
DEPARTED_CELL = "departed"  # the value cell of customers who have left (cvlib.status): not on the grid


def cell_names(size: int = 2, names: dict[str, str] | None = None) -> dict[str, str]:
    """Name of every cell 'current/potential' of the grid (the defaults, overridden by `names`)."""
    levels = ["low", "high"] if size == 2 else ["low", "medium", "high"]
    table = {f"{c}/{p}": f"current {c}, potential {p}" for c in levels for p in levels}
    return {**table, **(CELL_NAMES_2 if size == 2 else {}), **(names or {})}


# the columns of the customer table that group rules can use (a test checks customer_table makes exactly these)
RULE_COLUMNS = ("first_purchase", "last_purchase", "recency", "frequency", "monetary", "monetary_mean", "tenure",
                "x", "t_x", "T", "monetary_value", "r_score", "f_score", "m_score", "segment", "abc_class",
                "value_tier", "cluster", "p_alive", "expected_purchases", "expected_spend", "clv", "clv_tier",
                "churn_probability", "churned", "within_cycle", "cycle_days", "value_cell", "profit", "value_score",
                "trend",
                "value_at_risk", "lifecycle_stage", "overdue", "suggested_product", "cross_sell_rule",
                "clv_aov", "clv_retention_growth", "clv_discounted_profit", "profit_share", "profit_per_cost_to_serve",
                "departed", "departed_reason", "clv_before_status", "monthly_profit", "past_monthly_profit",
                "past_value_tier")


# columns of the customer table that hold text or dates besides the categories below (no arithmetic on them)
TEXT_RULE_COLUMNS = ("first_purchase", "last_purchase", "suggested_product", "cross_sell_rule")


def rule_categories(study: "Study") -> dict[str, set]:
    """The values each category column of the customer table can take, from the study's parameters."""
    m = study.value.matrix
    return {"segment": {s.name for s in study.rfm.segments} | {"Other"},
            "clv_tier": set(study.clv.tiers.names), "past_value_tier": set(study.clv.tiers.names),
            "departed_reason": {"", *DEPARTED_REASONS},
            "abc_class": {"A", "B", "C"},
            "value_tier": set(study.rfm.pyramid.names),
            "value_cell": set(cell_names(m.size, m.names).values()) | {"unknown", DEPARTED_CELL},
            "lifecycle_stage": {"acquisition", "growth", "maturity", "decline", "lapsed", "unknown"}}


def lapsing_valuable_segments(segments: list[dict]) -> list[str]:
    """The segments of a grid whose customers bought often but not lately (recency score at most 2, frequency
    score from 3): the ones a study's findings name, whatever the segments are called. Fewest purchases first."""
    lapsing = [s for s in segments if max(s["r"]) <= 2 and min(s["f"]) >= 3]
    return [s["name"] for s in sorted(lapsing, key=lambda s: min(s["f"]))]
