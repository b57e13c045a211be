"""Parameters of the drivers, the journey, the strategy (groups, actions, budget), the campaign, the report and
the monitoring KPIs."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from cvlib.expr import parse
from cvlib.params.base import _Model


class FeedbackColumns(_Model):
    nps: str | None = Field("nps", description="0-10 likelihood to recommend")
    csat: str | None = Field("csat", description="satisfaction on a 1..csat_scale scale")
    csat_scale: int = Field(5, ge=3, le=10, description="the top of the CSAT scale (5 for 1-5)")
    complaints: str | None = Field("complaints", description="complaints counted in the survey period")
    ratings: list[str] | None = Field(None, description="attribute ratings; None: every other numeric column")


class Drivers(_Model):
    churn: Literal["inactivity", "contracts"] = Field("inactivity", description="how churn is defined")
    churn_days: int = Field(365, ge=7, description="inactivity: no purchase for this many days before the end")
    outcome: Literal["retained", "nps", "clv"] = Field("retained",
        description=(
            "the outcome of the linear driver analysis: retained, nps (mean NPS per customer) or clv"))
    early_days: int = Field(90, ge=1, description="behaviour in each customer's first N days")
    group_by: str = Field("segment", description="KM curves and rates by this: an RFM segment or an attribute column")
    drivers: list[str] | None = Field(None, description="driver names to use; None: every usable one")
    exclude: list[str] = Field(default_factory=list, description="attribute columns never used as drivers")
    churn_reason_column: str = Field("churn_reason", description="column of the customers (or feedback) table with "
                                     "the reason a customer left, coded or free text; never a driver")

    def never_used(self) -> list[str]:
        """Columns never used as drivers or churn features: `exclude`, and the churn reason (known only for
        customers who left, so it would 'predict' churn perfectly)."""
        return [*self.exclude, self.churn_reason_column]
    max_exact: int = Field(12, ge=2, le=16, description="LMG exact up to this many drivers, sampled beyond")
    permutations: int = Field(300, ge=10, description="sampled orderings for LMG beyond max_exact")
    bootstrap: int = Field(100, ge=0, le=2000, description="resamples for the importance intervals")
    test_size: float = Field(0.3, gt=0.05, lt=0.9, description="held-out share for the driver classifier")
    min_class: int = Field(20, ge=5, description="fewest churners (and stayers) to fit a classifier")
    max_model_customers: int = Field(100_000, ge=1000, description="classifiers are trained and validated on a "
                                     "stratified random sample of this many customers at most (every customer is "
                                     "scored)")
    seed: int = Field(0, description="random seed of the bootstrap and the classifiers")
    feedback: FeedbackColumns = Field(default_factory=FeedbackColumns)


# --------------------------------------------------------------------------- journey
class Lifecycle(_Model):
    period_days: int = Field(90, ge=7, description="the period of acquisition and of the spend comparison (days)")
    growth: float = Field(0.25, gt=0, description="growth: last period's spend at least 1 + this times the "
                          "customer's own mean spend per earlier period")
    decline: float = Field(0.25, gt=0, lt=1, description="decline: at most 1 - this times it")
    lapsed_factor: float = Field(2.0, gt=0, description="lapsed: days since the last purchase over this many of "
                                 "the customer's own cycles")


class Cycles(_Model):
    overdue_k: float = Field(2.0, gt=0, description="overdue: days since the last purchase over k own cycles")
    prior_gaps: float = Field(2.0, ge=0, description="shrinkage: the segment's cycle counts as this many gaps")


class CrossSell(_Model):
    """Directed cross-sell rules 'A -> B': customers bought B after A, on a later day (cvlib.analysis.journey)."""

    min_support: float = Field(0.02, gt=0, le=1, description="share of customers who bought B after A")
    min_confidence: float = Field(0.3, gt=0, le=1, description="share of A's buyers who went on to buy B")
    min_lift: float = Field(1.2, gt=0, description="how much likelier A's buyers hold B than customers holding as "
                            "many products without A")
    max_p_value: float = Field(0.05, gt=0, lt=1, description="one-sided tests: A's buyers hold B more often than "
                               "the matched baseline, and more of those who hold both bought A first")
    max_len: int = Field(2, ge=2, le=2, description="items in a rule: one antecedent and one consequent")
    holdout_days: int = Field(180, ge=0, description="rules are mined before the last this-many days and kept "
                              "when A's buyers who lacked B then bought it in these days more often than the "
                              "matched baseline (0: no holdout check)")


class Journey(_Model):
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)
    cycles: Cycles = Field(default_factory=Cycles)
    cross_sell: CrossSell = Field(default_factory=CrossSell)


# --------------------------------------------------------------------------- strategy
class GroupRule(_Model):
    """A strategic group: customers for whom `when` (a rule in cvlib.expr over the customer table) is true.
    Rules are tried in order; the first that matches wins."""

    name: str = Field(description="the strategic group's name")
    objective: Literal["wider", "longer", "deeper"] = Field(
        description="wider (more products), longer (keep them) or deeper (spend more)")
    when: str = Field(description="a rule in cvlib's expression language (see cvlib.expr), e.g. "
                                  "\"churn_probability >= 0.5 and past_value_tier != 'Low'\"")

    @field_validator("when")
    @classmethod
    def _safe(cls, v: str) -> str:
        parse(v)  # ExpressionError is a ValueError: pydantic names the key
        return v


def _default_groups() -> list[GroupRule]:
    return [
        GroupRule(name="churn risk", objective="longer",
                  when="churn_probability >= 0.5 and past_value_tier != 'Low' and not within_cycle and not churned"),
        GroupRule(name="high value", objective="longer", when="clv_tier == 'High'"),
        GroupRule(name="growth potential", objective="deeper", when="value_cell == 'Develop' or trend > 0.25"),
        GroupRule(name="stable", objective="deeper", when="clv_tier == 'Medium'"),
    ]


class Action(_Model):
    """An action of the library and how its expected gain per customer is counted (cvlib.analysis.allocation.gains):
    - ``applies_to: clv`` (a revenue effect): uplift x the customer's expected gross profit per month (their CLV
      spread over the horizon) x the months the effect lasts (``effect_months``, each month keeping
      ``effect_decay`` of the month before), so a one-off effect is booked once, not over the whole horizon;
    - ``applies_to: value_at_risk`` (a retention effect): the CLV difference when the action keeps ``uplift`` of
      the customers who would leave: uplift x churn probability x CLV;
    - ``applies_to: win_back``: for departed customers only: uplift (the share won back) x their past gross profit
      per month x ``effect_months``.

    A campaign named in ``strategy.measured_uplift`` replaces the assumed uplift by its measured absolute revenue
    uplift per treated customer x the gross margin, with its interval, over the campaign's window."""

    name: str = Field(description="the action's name (named by win_back and measured_uplift)")
    groups: list[str] = Field(description="strategic groups the action is for")
    cost_per_customer: float = Field(ge=0, allow_inf_nan=False,
        description=(
            "cost of the action per targeted customer, in the study currency (required)"))
    uplift: float = Field(ge=0, le=5, description="expected relative gain on the value it acts on")
    applies_to: Literal["clv", "value_at_risk", "win_back"] = Field("clv", description="value the uplift applies "
                                                                    "to (see the class doc)")
    effect_months: float = Field(12.0, gt=0, le=120, allow_inf_nan=False,
                                 description="months a revenue or win-back effect lasts")
    effect_decay: float = Field(1.0, gt=0, le=1, description="share of the effect left after each month (1: none "
                                "lost until effect_months)")
    max_budget_share: float | None = Field(None, gt=0, le=1, description="most of the budget this action may take; "
                                           "None: strategy.max_action_share")
    lever: str | None = Field(None, description="the churn or outcome driver the action works on (e.g. "
                              "price_fairness); an action with no groups whose lever is a top churn driver is offered "
                              "to the retention groups")
    channel: str = Field("", description="the channel the action goes through (shown in the playbook)")
    priority: int = Field(2, ge=1, le=5, description="1 (first) to 5: order of the actions in the playbook")


def _default_actions() -> list[Action]:
    return [
        Action(name="win-back offer", groups=["churn risk"], cost_per_customer=15, uplift=0.25,
               applies_to="value_at_risk",
               channel="email + call", priority=1),
        Action(name="dedicated account team", groups=["high value"], cost_per_customer=40, uplift=0.08,
               channel="account manager", priority=1),
        Action(name="loyalty programme", groups=["high value", "stable"], cost_per_customer=5, uplift=0.05,
               channel="CRM programme", priority=2),
        Action(name="cross-sell of a new line", groups=["growth potential", "stable"], cost_per_customer=8, uplift=0.10,
               channel="email", priority=2),
        Action(name="lower cost to serve", groups=["low value"], cost_per_customer=0.5, uplift=0.02,
               channel="self-service", priority=3),
    ]


class Strategy(_Model):
    groups: list[GroupRule] = Field(default_factory=_default_groups,
        description=(
            "strategic groups: a list of {name, objective, when}; when is a rule over the customer table; the first "
            "match wins"))
    default_group: str = Field("low value", description="customers no rule matched")
    default_objective: Literal["wider", "longer", "deeper"] = Field(
        "wider", description="objective of the customers no rule matched")
    actions: list[Action] = Field(default_factory=_default_actions, min_length=1,
        description=(
            "the action library: a list of {name, groups, cost_per_customer, uplift, applies_to, effect_months, ...}"))
    budget: float = Field(50_000.0, gt=0, allow_inf_nan=False,
                          description="total budget for the actions, in the study currency")
    sensitivity: list[float] = Field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5],
                                     description="multipliers of every uplift for the sensitivity chart")
    win_back: dict[str, str] = Field(default_factory=dict, description="churn reason -> the action of the library "
                                     "that answers it (reasons matched ignoring case and spacing)")
    measured_uplift: dict[str, str] = Field(default_factory=dict, description="action -> campaign: the campaign's "
                                            "measured revenue uplift per treated customer (x gross margin, over the "
                                            "campaign window) replaces the action's assumed uplift")
    max_action_share: float = Field(0.5, gt=0, le=1, description="most of the budget one action may take "
                                    "(diminishing returns); 1: no limit")
    max_group_share: float = Field(1.0, gt=0, le=1, description="most of the budget spent on one strategic group; "
                                   "1: no limit")
    departed_group: str = Field("departed", description="the group of customers who have left (cvlib.status): "
                                "only win_back actions reach it")

    @model_validator(mode="after")
    def _known_groups(self) -> "Strategy":
        names = {g.name for g in self.groups} | {self.default_group, self.departed_group}
        if self.departed_group in {g.name for g in self.groups} | {self.default_group}:
            raise ValueError(f"departed_group {self.departed_group!r} is also the name of a group rule or the default "
                             "group: customers who have left are put in it before any rule")
        for a in self.actions:
            unknown = [g for g in a.groups if g not in names]
            if unknown:
                raise ValueError(f"action {a.name!r} is for unknown group(s) {unknown}; groups are {sorted(names)}")
            if a.applies_to == "win_back" and any(g != self.departed_group for g in a.groups):
                raise ValueError(f"action {a.name!r} is a win-back action: it can only be for the group "
                                 f"{self.departed_group!r} (customers who have left), not {a.groups}")
            if a.applies_to != "win_back" and self.departed_group in a.groups:
                raise ValueError(f"action {a.name!r} is for the group {self.departed_group!r} of customers who have "
                                 "left: set applies_to: win_back (their forward value is 0)")
        actions = {a.name for a in self.actions}
        for action in self.measured_uplift:
            if action not in actions:
                raise ValueError(f"measured_uplift: {action!r} is not in the action library; actions are "
                                 f"{sorted(actions)}")
        for reason, action in self.win_back.items():
            if action not in actions:
                raise ValueError(f"win_back: the action {action!r} for the reason {reason!r} is not in the action "
                                 f"library; actions are {sorted(actions)}")
        return self


# --------------------------------------------------------------------------- study
class Report(_Model):
    top_n: int = Field(10, ge=1, le=100, description="rows shown in 'top' tables")
    language: Literal["en", "zh"] = Field("en", description="language of the reports: en (English) or zh "
                                          "(简体中文); exported files keep English column names")


class CampaignParams(_Model):
    """Campaign evaluation (cvlib.analysis.campaign), when inputs.campaigns is given."""

    window_days: int = Field(90, ge=1, le=730, description="outcomes are measured this many days after the date")
    bootstrap: int = Field(1000, ge=0, le=20000, description="resamples for the uplift intervals")
    seed: int = Field(0, description="random seed of the campaign bootstrap")
    costs: dict[str, float] = Field(default_factory=dict, description="campaign -> total cost")
    cost_per_customer: dict[str, float] = Field(default_factory=dict, description="campaign -> cost per treated "
                                                "customer (when no total cost is given)")
    treatment_share: dict[str, float] = Field(default_factory=dict, description="campaign -> planned treatment share")
    default_treatment_share: float = Field(0.5, gt=0, lt=1, description="planned share when not given per campaign")


KPI_KEYS = ("customers", "revenue", "top20_share", "mean_clv", "churn_rate", "retention_rate", "value_at_risk",
            "plan_net_value", "nps")


class Kpi(_Model):
    """A KPI to monitor: one of the headline figures, with an optional target and industry benchmark (a target
    written empty is a value to fill, not 'no target': leave the key out for none)."""

    FILL_WHEN_EMPTY: ClassVar[tuple[str, ...]] = ("target",)

    kpi: Literal["customers", "revenue", "top20_share", "mean_clv", "churn_rate", "retention_rate", "value_at_risk",
                 "plan_net_value", "nps"] = Field(

        description=(
            "the KPI: customers, revenue, top20_share, mean_clv, churn_rate, retention_rate, value_at_risk, "
            "plan_net_value or nps"))
    target: float | None = Field(None, allow_inf_nan=False, description="the KPI's target, in its unit (shares as 0-1)")
    benchmark: float | None = Field(None, allow_inf_nan=False, description="an industry benchmark, same unit")
    direction: Literal["higher", "lower"] = Field("higher", description="which way is better")


class Monitoring(_Model):
    kpis: list[Kpi] = Field(default_factory=list, description="KPIs shown against target and benchmark, with their "
                                                               "trend over the study's runs, on the index page")
    history: int = Field(20, ge=1, le=200, description="earlier complete runs in the trend")
    benchmarks: Literal["params", "portfolio"] = Field(
        "params", description="where a KPI's benchmark comes from: params (the numbers given) or portfolio (the median "
                              "of the other studies of the same industry beside this one in the reports folder, "
                              "shown only with at least 5 of them and none above 25% of their customers; a number "
                              "given still wins)")
