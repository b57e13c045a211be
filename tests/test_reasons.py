"""Churn reasons: grouping free text, tables by hand, win-back actions, and never a driver."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cvlib.analysis import reasons
from cvlib.params import Action, Drivers, Strategy

ACTIONS = [Action(name="call back", groups=[], cost_per_customer=50, uplift=0.1, channel="phone"),
           Action(name="discount", groups=[], cost_per_customer=20, uplift=0.1, channel="email")]


def test_free_text_is_grouped_ignoring_case_and_spacing_and_tabulated_by_hand():
    attrs = pd.DataFrame({"customer_id": list("abcdefg"),
                          "churn_reason": ["Slow service", "slow  service ", "SLOW SERVICE", "price", " Price", "", None]})
    why = reasons.churn_reasons(attrs, None, "churn_reason")
    assert why.to_dict() == {"a": "Slow service", "b": "Slow service", "c": "Slow service", "d": "price", "e": "price"}
    churned = pd.Series({"a": True, "b": True, "c": False, "d": True, "e": True, "f": True, "g": False})
    seg = pd.Series({k: "S1" if k in "abd" else "S2" for k in "abcdefg"})
    revenue = pd.Series({"a": 100.0, "b": 50.0, "c": 999.0, "d": 30.0, "e": 20.0, "f": 10.0, "g": 5.0})
    years = pd.Series({"a": 2.0, "b": 0.5, "c": 1.0, "d": 1.0, "e": 4.0, "f": 1.0, "g": 1.0})
    t, by_seg = reasons.reason_tables(why, churned, seg, revenue, years)
    t = reasons.win_back(t, ACTIONS, {"SLOW service": "call back", "price": "discount"}).set_index("churn_reason")
    assert t.loc["Slow service", "customers"] == 2 and t.loc["Slow service", "revenue"] == 150.0  # c did not leave
    assert t.loc["Slow service", "revenue_per_year"] == pytest.approx(100 / 2 + 50 / 1)  # under a year counts one
    assert t.loc["price", "revenue_per_year"] == pytest.approx(30 + 5) and t.loc["price", "share"] == pytest.approx(2 / 5)
    assert t.loc[reasons.NOT_RECORDED, "customers"] == 1  # f left without a reason
    assert t.loc["Slow service", "win_back_action"] == "call back" and t.loc["price", "cost_per_customer"] == 20
    assert t.loc[reasons.NOT_RECORDED, "win_back_action"] is None
    assert by_seg.loc["Slow service", "S1"] == 2 and by_seg.loc["price"].tolist() == [1, 1]
    assert reasons.unanswered(t.reset_index()) == []  # "(not recorded)" is not a reason to answer
    assert reasons.unanswered(reasons.win_back(t.reset_index()[["churn_reason"]], ACTIONS, {})) == ["Slow service", "price"]


def test_the_latest_reason_in_the_feedback_table_and_rare_reasons_as_other():
    fb = pd.DataFrame({"customer_id": ["a", "a", "b"], "date": pd.to_datetime(["2024-01-01", "2024-06-01", "2024-02-01"]),
                       "churn_reason": ["price", "moved", "price"]})
    assert reasons.churn_reasons(None, fb, "churn_reason").to_dict() == {"a": "moved", "b": "price"}
    assert reasons.churn_reasons(None, fb, "no_such_column") is None
    many = pd.Series({f"c{i}": f"reason {i % 20}" for i in range(200)})
    t, _ = reasons.reason_tables(many, pd.Series(True, index=many.index), pd.Series("s", index=many.index),
                                 pd.Series(1.0, index=many.index), pd.Series(1.0, index=many.index))
    assert len(t) == reasons.MAX_REASONS and t.set_index("churn_reason").loc[reasons.OTHER, "customers"] == 9 * 10


def test_a_churn_reason_is_never_a_driver():
    """It is known only for customers who left: as a driver it would 'explain' churn perfectly."""
    from cvlib.analysis.drivers import driver_set

    ids = pd.Index([f"c{i}" for i in range(100)])
    attrs = pd.DataFrame({"customer_id": ids, "region": np.where(np.arange(100) % 2, "N", "S"),
                          "churn_reason": np.where(np.arange(100) < 30, "price", None)})
    ds = driver_set(ids, attrs, None, pd.DataFrame(index=ids), Drivers())
    assert "region" in ds.groups and "churn_reason" not in ds.groups
    assert not any(c.startswith("churn_reason") for c in ds.X.columns)


def test_a_win_back_action_must_be_in_the_library():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="'no such action' for the reason 'price' is not in the action library"):
        Strategy(win_back={"price": "no such action"})


def test_the_agency_example_plants_slow_responses_as_the_main_reason():
    from cvlib.examples import agency_book

    c = agency_book()["clients"].assign(customer_id=lambda d: d["client_id"])
    why = reasons.churn_reasons(c, None, "churn_reason")
    left = pd.Series(c["contract_end"].fillna("").ne("").to_numpy(), index=c["client_id"])
    one = pd.Series("all", index=c["client_id"])
    t, _ = reasons.reason_tables(why, left, one, one.map(lambda _: 1.0), one.map(lambda _: 1.0))
    assert t["churn_reason"].iloc[0] == "slow responses" and t["share"].iloc[0] > 0.35
    assert set(t["churn_reason"]) >= {"price", "budget cut", "Moved in-house", "lost a pitch", reasons.NOT_RECORDED}
