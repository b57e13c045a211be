"""Why customers left: churn reasons from the customers or the feedback table (coded or free text), tabulated by
segment and by the value that left with them (drivers stage), and the win-back action the study's action library
gives each reason (strategy stage).

Free text is grouped by its normalised form (white space collapsed, case ignored) and shown in its most frequent
spelling; beyond `MAX_REASONS` distinct reasons the rarest are put together as 'other'. The reason column is never
a driver of churn: it is only known for customers who left.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cvlib.params import Action

MAX_REASONS = 12
NOT_RECORDED = "(not recorded)"
OTHER = "(other reasons)"


def key(text: pd.Series) -> pd.Series:
    """The grouping form of a reason: white space collapsed, case ignored; empty text is missing."""
    s = text.astype("string").str.replace(r"\s+", " ", regex=True).str.strip().str.casefold()
    return s.mask(s == "")


def churn_reasons(attrs: pd.DataFrame | None, fb: pd.DataFrame | None, column: str) -> pd.Series | None:
    """Each customer's churn reason (index: customer id as text) as its most frequent spelling: from the
    customers table when it has the column, else the feedback table's latest reason; None when neither has it."""
    if attrs is not None and column in attrs.columns:
        d = attrs[["customer_id", column]]
    elif fb is not None and column in fb.columns:
        d = fb.sort_values("date", kind="stable") if "date" in fb.columns else fb
        d = d[["customer_id", column]]
    else:
        return None
    d = d.assign(customer_id=d["customer_id"].astype(str), k=key(d[column])).dropna(subset=["k"])
    d = d.drop_duplicates("customer_id", keep="last")
    spelling = (d.assign(t=d[column].astype("string").str.replace(r"\s+", " ", regex=True).str.strip())
                .groupby("k")["t"].agg(lambda s: s.value_counts().index[0]))
    return d.set_index("customer_id")["k"].map(spelling).rename("churn_reason")


def reason_tables(reasons: pd.Series, churned: pd.Series, segment: pd.Series, revenue: pd.Series,
                  years: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Among the customers who left (`churned`, per customer id): per reason, customers, share and the revenue
    they brought (in total and per year as customers), and the customers by reason (rows) and segment (columns)."""
    gone = churned[churned.astype(bool)].index.astype(str)
    r = reasons.reindex(gone).fillna(NOT_RECORDED)
    counts = r.value_counts()
    if len(counts) > MAX_REASONS:
        keep = [c for c in counts.index if c != NOT_RECORDED][:MAX_REASONS - 1]
        r = r.where(r.isin(keep) | (r == NOT_RECORDED), OTHER)
    d = pd.DataFrame({"churn_reason": r.to_numpy(), "segment": segment.reindex(gone).fillna("unknown").to_numpy(),
                      "revenue": revenue.reindex(gone).fillna(0.0).to_numpy(),
                      "years": np.maximum(years.reindex(gone).fillna(1.0).to_numpy(dtype=float), 1.0)})
    d["revenue_per_year"] = d["revenue"] / d["years"]
    t = d.groupby("churn_reason").agg(customers=("revenue", "size"), revenue=("revenue", "sum"),
                                      revenue_per_year=("revenue_per_year", "sum"))
    t["share"] = t["customers"] / max(len(d), 1)
    t = t.sort_values(["customers", "revenue"], ascending=False, kind="stable").reset_index()
    by_segment = pd.crosstab(d["churn_reason"], d["segment"]).reindex(t["churn_reason"].tolist())
    by_segment.index.name, by_segment.columns.name = "churn_reason", "segment"
    return t[["churn_reason", "customers", "share", "revenue", "revenue_per_year"]], by_segment


def win_back(table: pd.DataFrame, actions: list[Action], plan: dict[str, str]) -> pd.DataFrame:
    """The reason table with the win-back action of the library for each reason (`plan`: reason -> action name,
    reasons matched ignoring case and spacing): its name, cost per customer and channel (empty without one)."""
    by_name = {a.name: a for a in actions}
    wanted = {key(pd.Series([k])).iloc[0]: by_name.get(v) for k, v in plan.items()}
    act = [wanted.get(key(pd.Series([r])).iloc[0]) for r in table["churn_reason"]]
    return table.assign(win_back_action=[a.name if a else None for a in act],
                        cost_per_customer=[a.cost_per_customer if a else np.nan for a in act],
                        channel=[a.channel if a else None for a in act])


def unanswered(table: pd.DataFrame) -> list[str]:
    """Recorded reasons that no win-back action answers."""
    return [r for r, a in zip(table["churn_reason"], table["win_back_action"])
            if a is None and r not in (NOT_RECORDED, OTHER)]
