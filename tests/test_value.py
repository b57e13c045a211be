"""Value assessment: AHP (Saaty's examples), entropy weights, whale curve, value matrix, profitability."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cvlib import ParamError, weights
from cvlib.analysis import value, value_index
from cvlib.params import Value


def test_ahp_perfectly_consistent_matrix_gives_cr_zero_and_the_weights():
    w = np.array([0.5, 0.3, 0.2])
    r = weights.ahp_weights(w[:, None] / w[None, :])
    assert r["cr"] == pytest.approx(0, abs=1e-9) and r["consistent"]
    assert r["weights"] == pytest.approx(w)  # proportional to any column of the matrix


def test_ahp_textbook_example():
    # Saaty's 3x3 example: weights 0.637, 0.258, 0.105; lambda_max 3.039; CR 0.033
    r = weights.ahp_weights([[1, 3, 5], [1 / 3, 1, 3], [1 / 5, 1 / 3, 1]])
    assert r["weights"] == pytest.approx([0.637, 0.258, 0.105], abs=5e-4)
    assert r["lambda_max"] == pytest.approx(3.039, abs=5e-4) and r["cr"] == pytest.approx(0.033, abs=5e-4)


def test_ahp_inconsistent_matrix_is_flagged_and_stops_unless_allowed():
    circular = [[1, 9, 1 / 9], [1 / 9, 1, 9], [9, 1 / 9, 1]]
    assert not weights.ahp_weights(circular)["consistent"]
    ind = pd.DataFrame({"a": [1.0, 2, 3, 4], "b": [4.0, 1, 2, 3], "c": [2.0, 2, 1, 5]})
    spec = {"indicators": [{"column": "a", "group": "current"}, {"column": "b", "group": "current"},
                           {"column": "c", "group": "potential"}],
            "weights": {"method": "ahp", "ahp": {"matrix": circular}}}
    with pytest.raises(ValueError, match="consistency ratio"):  # refused when the parameters are read
        Value.model_validate(spec)
    spec["weights"]["ahp"]["allow_inconsistent"] = True
    cfg = Value.model_validate(spec)
    s = value_index.score_customers(ind, cfg)
    assert any("inconsistent" in n for n in s.notes)


def test_ahp_matrix_validation_accepts_fractions_rejects_non_reciprocal():
    ok = Value.model_validate({"weights": {"method": "ahp", "ahp": {"matrix": [["1", "1/3"], ["3", "1"]]}},
                               "indicators": [{"column": "a", "group": "current"}, {"column": "b", "group": "potential"}]})
    assert ok.weights.ahp.matrix[0][1] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="reciprocal"):
        Value.model_validate({"weights": {"method": "ahp", "ahp": {"matrix": [[1, 3], [3, 1]]}},
                              "indicators": [{"column": "a", "group": "current"}, {"column": "b", "group": "potential"}]})


def test_entropy_weights_constant_indicator_gets_zero():
    norm = pd.DataFrame({"const": [0.5] * 6, "x": [0, 0.2, 0.4, 0.6, 0.8, 1.0], "y": [1.0, 0.8, 0.6, 0.4, 0.2, 0]})
    w = weights.entropy_weights(norm)
    assert w["const"] == 0 and w["x"] == pytest.approx(w["y"]) and w.sum() == pytest.approx(1)
    skew = pd.DataFrame({"spread": [0, 0, 0, 0, 0, 1.0], "even": [0.5, 0.6, 0.5, 0.6, 0.5, 0.6]})
    w2 = weights.entropy_weights(skew)
    assert w2["spread"] > w2["even"]  # more dispersion, more information, more weight


def test_whale_curve_by_hand():
    curve, f = value.whale_curve(pd.Series([-20.0, 100.0, -30.0, 50.0]))
    assert f["total_profit"] == 100 and f["peak_profit"] == 150 and f["peak_pct_of_total"] == pytest.approx(150)
    assert f["peak_at_customer_share"] == 0.5 and f["destroyed_by_loss_makers"] == 50 and f["loss_making_customers"] == 2
    assert curve["cumulative_profit_pct"].tolist() == pytest.approx([100, 150, 130, 100])


def test_value_cells_2x2_and_3x3():
    cur = pd.Series([10.0, 90, 10, 90])
    pot = pd.Series([10.0, 90, 90, 10])
    cells = value_index.value_cells(cur, pot, 2, [50], [50])
    assert cells.tolist() == ["Reduce cost to serve", "Keep and grow", "Develop", "Maintain"]
    med = value_index.value_cells(pd.Series([1.0, 2, 3, 4]), pd.Series([4.0, 3, 2, 1]))
    assert med.tolist() == ["Develop", "Develop", "Maintain", "Maintain"]
    nine = value_index.value_cells(pd.Series([5.0, 50, 95]), pd.Series([95.0, 50, 5]), 3, [33, 66], [33, 66],
                             names={"high/low": "Harvest"})
    assert nine.tolist() == ["current low, potential high", "current medium, potential medium", "Harvest"]
    with pytest.raises(ParamError):
        value_index.value_cells(cur, pot, 3, [50], [50])


def test_profitability_costs_and_cost_to_serve_by_tier():
    tx = pd.DataFrame({"customer_id": ["a", "a", "b"], "amount": [100.0, 50, 80], "product": ["media", "pr", "media"]})
    rfm = pd.DataFrame({"customer_id": ["a", "b"], "tenure": [365, 730]})
    attrs = pd.DataFrame({"customer_id": ["a", "b"], "size": ["small", "large"]})
    cfg = Value.model_validate({"profitability": {"margin_by_line": {"media": 0.1, "pr": 0.5},
                                                  "cost_to_serve": {"per_year": 10, "by_column": "size",
                                                                    "by_value": {"large": 20}}}})
    p = value_index.profitability(tx, rfm, cfg, 0.3, attrs).set_index("customer_id")
    assert p.loc["a", "direct_cost"] == pytest.approx(90 + 25) and p.loc["b", "direct_cost"] == pytest.approx(72)
    assert p.loc["a", "cost_to_serve"] == pytest.approx(10) and p.loc["b", "cost_to_serve"] == pytest.approx(60)
    assert p.loc["b", "profit"] == pytest.approx(80 - 72 - 60) and p.loc["b", "margin_pct"] < 0
    with_cost = value_index.profitability(tx.assign(cost=[60.0, None, 40]), rfm, cfg, 0.3, attrs).set_index("customer_id")
    assert with_cost["direct_cost"].tolist() == [60 + 50 * 0.7, 40]  # a missing cost: the default margin's
    with_margin = value_index.profitability(tx.assign(margin=[30.0, None, 8]), rfm, cfg, 0.3, attrs).set_index("customer_id")
    assert with_margin["direct_cost"].tolist() == [70 + 50 * 0.7, 72]


def test_scores_range_groups_and_direction():
    ind = pd.DataFrame({"rev": [1.0, 2, 3, 4], "risk": [4.0, 3, 2, 1], "pot": [1.0, 2, 3, 4]},
                       index=["a", "b", "c", "d"])
    cfg = Value.model_validate({"indicators": [{"column": "rev", "group": "current"},
                                              {"column": "risk", "group": "current", "direction": "lower"},
                                              {"column": "pot", "group": "potential"}],
                                "weights": {"method": "fixed", "fixed": {"rev": 1, "risk": 1, "pot": 2}},
                                "normalisation": "minmax"})
    s = value_index.score_customers(ind, cfg)
    assert s.customers.loc["d", "current_value_score"] == 100 and s.customers.loc["a", "value_score"] == 0
    assert s.weights["weight"].tolist() == pytest.approx([0.25, 0.25, 0.5])
    assert s.customers.loc["d", "value_rank"] == 1
    per = Value.model_validate({"indicators": [{"column": "rev", "group": "current", "normalisation": "rank"},
                                              {"column": "pot", "group": "potential"}],
                                "normalisation": "minmax", "weights": {"method": "fixed", "fixed": {"rev": 1, "pot": 1}}})
    skewed = pd.DataFrame({"rev": [1.0, 2, 3, 1000], "pot": [1.0, 2, 3, 1000]}, index=list("abcd"))
    sc = value_index.score_customers(skewed, per)
    assert sc.weights.set_index("column")["normalisation"].to_dict() == {"rev": "rank", "pot": "minmax"}
    assert sc.customers.loc["b", "current_value_score"] == pytest.approx(100 / 3)  # rank: evenly spaced
    assert sc.customers.loc["b", "potential_value_score"] < 1  # min-max: squashed by the outlier


def test_entropy_on_rank_normalised_indicators_is_refused():
    spec = {"indicators": [{"column": "rev", "group": "current"}, {"column": "pot", "group": "potential"}],
            "normalisation": "rank", "weights": {"method": "entropy"}}
    with pytest.raises(ValueError, match="spread evenly by construction"):
        Value.model_validate(spec)
    # on min-max indicators entropy weights follow the spread: the more dispersed indicator weighs more
    cfg = Value.model_validate({**spec, "normalisation": "minmax"})
    ind = pd.DataFrame({"rev": [1.0, 1, 1, 1, 1, 1, 1, 50], "pot": [1.0, 2, 3, 4, 5, 6, 7, 8]})
    w = value_index.score_customers(ind, cfg).weights.set_index("column")["weight"]
    assert w["rev"] > w["pot"] and w.sum() == pytest.approx(1.0)


def test_missing_indicator_is_left_out_with_weights_rescaled():
    cfg = Value.model_validate({"indicators": [{"column": "a", "group": "current"}, {"column": "b", "group": "potential"},
                                              {"column": "p", "group": "potential"}],
                                "normalisation": "minmax", "weights": {"method": "fixed",
                                                                       "fixed": {"a": 1, "b": 1, "p": 3}}})
    ind = pd.DataFrame({"a": [0.0, 1, 2], "b": [0.0, 1, 2], "p": [np.nan, 0.0, 1.0]}, index=list("xyz"))
    s = value_index.score_customers(ind, cfg).customers
    # x has no p: its potential score is b alone (0), not b and a filled-in p
    assert s.loc["x", "potential_value_score"] == pytest.approx(0.0)
    assert s.loc["y", "potential_value_score"] == pytest.approx(100 * (0.5 * 1 + 0 * 3) / 4)


def two_level(method: str, groups: dict, **weights) -> Value:
    return Value.model_validate({
        "indicators": [{"column": "a", "group": "current", "category": "financial"},
                       {"column": "b", "group": "potential", "category": "financial"},
                       {"column": "c", "group": "current", "category": "loyalty"},
                       {"column": "d", "group": "potential", "category": "satisfaction"}],
        "weights": {"method": method, "groups": groups, **weights}})


def test_two_level_weights_by_hand():
    rng = np.random.default_rng(3)
    ind = pd.DataFrame(rng.random((50, 4)), columns=list("abcd"))
    # fixed at both levels: within financial a:b = 1:3, the groups 0.5 / 0.3 / 0.2
    cfg = two_level("fixed", {"method": "fixed", "fixed": {"financial": 0.5, "loyalty": 0.3, "satisfaction": 0.2}},
                    fixed={"a": 1, "b": 3, "c": 7, "d": 1})
    w = value_index.score_customers(ind, cfg).weights.set_index("column")
    assert w["weight"].to_dict() == pytest.approx({"a": 0.125, "b": 0.375, "c": 0.3, "d": 0.2})
    assert w.loc["a", "category_weight"] == 0.5 and w.loc["c", "category"] == "loyalty"
    # AHP within a group uses that group's rows and columns of the matrix; AHP over the groups used, in the
    # order financial, satisfaction, loyalty
    full = [[1, 2, 4, 4], [1 / 2, 1, 2, 2], [1 / 4, 1 / 2, 1, 1], [1 / 4, 1 / 2, 1, 1]]
    top = [[1, 3, 3], [1 / 3, 1, 1], [1 / 3, 1, 1]]
    cfg = two_level("ahp", {"method": "ahp", "ahp": {"matrix": top}}, ahp={"matrix": full})
    w = value_index.score_customers(ind, cfg).weights.set_index("column")["weight"]
    assert w["a"] / w["b"] == pytest.approx(2.0)  # the 2x2 block [[1, 2], [1/2, 1]]
    assert w["a"] + w["b"] == pytest.approx(0.6) and w["c"] == pytest.approx(0.2) and w["d"] == pytest.approx(0.2)
    # entropy of the groups' scores: the group that spreads customers more weighs more
    cfg = two_level("entropy", {"method": "entropy"})
    norm = ind.apply(lambda s: value_index.normalise(s, "minmax"))
    within = weights.entropy_weights(norm[["a", "b"]])
    scores = pd.DataFrame({"financial": value_index.weighted_score(norm[["a", "b"]], within) / 100,
                           "satisfaction": norm["d"], "loyalty": norm["c"]})
    g = weights.entropy_weights(scores)
    w = value_index.score_customers(ind, cfg).weights.set_index("column")["weight"]
    assert w["a"] == pytest.approx(within["a"] * g["financial"]) and w["c"] == pytest.approx(g["loyalty"])
    assert w.sum() == pytest.approx(1.0)


def test_two_level_parameters_are_checked():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs a category for every indicator"):
        Value.model_validate({"weights": {"groups": {"method": "entropy"}}})
    with pytest.raises(ValidationError, match="needs a weight for"):
        two_level("entropy", {"method": "fixed", "fixed": {"financial": 1}})
    with pytest.raises(ValidationError, match="must compare the 3 categories used"):
        two_level("entropy", {"method": "ahp", "ahp": {"matrix": [[1, 2], [1 / 2, 1]]}})


def test_survey_service_line_and_contract_indicators_by_hand():
    from cvlib.params import Study

    study = Study.model_validate({"study": "x", "client": "c", "inputs": {"transactions": {
        "path": "u.csv", "columns": {"customer_id": "id", "date": "d", "amount": "a"}}},
        "clv": {"contracts": {"enabled": True}}})
    end = pd.Timestamp("2024-12-31")
    tx = pd.DataFrame({"customer_id": ["a", "a", "b"], "date": pd.to_datetime(["2024-01-01"] * 3),
                       "amount": [1.0, 1.0, 1.0], "product": ["PR", "media", "PR"]})
    fb = pd.DataFrame({"customer_id": ["a", "a", "b", "b"], "date": pd.to_datetime(["2023-06-01", "2024-06-01",
                                                                                     "2024-06-01", "2025-02-01"]),
                       "nps": [6, 10, 9, 0], "csat": [3, 5, 4, 1], "complaints": [2, 0, 1, 5]})
    attrs = pd.DataFrame({"customer_id": ["a", "b"], "contract_start": ["2022-12-31", "2024-07-01"],
                          "contract_end": ["2023-12-31", "2026-01-01"]})
    x = value_index.extra_indicators(study, tx, fb, attrs, end)
    assert x.loc["a", "nps"] == 8 and x.loc["b", "nps"] == 9  # b's answer after the end is not counted
    assert x.loc["a", "complaints_per_survey"] == 1 and x.loc["a", "csat"] == 4
    assert x.loc["a", "service_lines_bought"] == 2 and x.loc["b", "service_lines_bought"] == 1
    assert x.loc["a", "contract_years"] == pytest.approx(365 / 365.25)  # ended after a year
    assert x.loc["b", "contract_years"] == pytest.approx(183 / 365.25)  # still running at the end: counted to it
