"""Fuzzy comprehensive evaluation against a worked example computed by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cvlib import fuzzy
from cvlib.analysis import value_index

LEVELS = ["poor", "fair", "good", "excellent"]
CENTRES = [0.0, 1 / 3, 2 / 3, 1.0]


def test_memberships_are_triangles_between_centres():
    m = fuzzy.memberships(np.array([0.0, 0.5, 0.9, 1.0, -0.2, np.nan]), CENTRES)
    assert m[0].tolist() == [1, 0, 0, 0] and m[3].tolist() == [0, 0, 0, 1] and m[4].tolist() == [1, 0, 0, 0]
    assert m[1] == pytest.approx([0, 0.5, 0.5, 0])      # halfway between fair and good
    assert m[2] == pytest.approx([0, 0, 0.3, 0.7])      # 0.9: (1 - 0.9) / (1/3) = 0.3 good, 0.7 excellent
    assert np.isnan(m[5]).all()


def test_a_worked_example_by_hand():
    """Weights 0.6 and 0.4; a customer at 0.5 and 0.9.
    R = [[0, .5, .5, 0], [0, 0, .3, .7]];  B = 0.6 R1 + 0.4 R2 = [0, .30, .42, .28]  -> good (maximum membership);
    with level scores 40, 60, 75, 90 the weighted-average grade is .30 x 60 + .42 x 75 + .28 x 90 = 74.7.
    A second customer misses the second indicator: the first one alone decides (weights rescaled), and a third
    with no indicator gets no level."""
    norm = pd.DataFrame({"revenue": [0.5, 0.1, np.nan], "clv": [0.9, np.nan, np.nan]}, index=["a", "b", "c"])
    out = fuzzy.evaluate(norm, pd.Series({"revenue": 0.6, "clv": 0.4}), LEVELS, CENTRES, [40, 60, 75, 90])
    assert out.loc["a", LEVELS].tolist() == pytest.approx([0, 0.30, 0.42, 0.28])
    assert out.loc["a", "fuzzy_level"] == "good" and out.loc["a", "fuzzy_grade"] == pytest.approx(74.7)
    assert out.loc["b", LEVELS].tolist() == pytest.approx([0.7, 0.3, 0, 0]) and out.loc["b", "fuzzy_level"] == "poor"
    assert out.loc["c", "fuzzy_level"] is None and np.isnan(out.loc["c", "fuzzy_grade"])


def test_with_the_centres_as_level_scores_the_grade_is_the_weighted_score():
    """Triangles that add up to 1 interpolate linearly, so the weighted-average grade on the centres' scale is
    exactly the weighted-sum value score: the two methods agree where they should."""
    rng = np.random.default_rng(0)
    norm = pd.DataFrame(rng.random((200, 3)), columns=list("xyz"))
    norm.iloc[::7, 1] = np.nan
    w = pd.Series({"x": 0.5, "y": 0.3, "z": 0.2})
    out = fuzzy.evaluate(norm, w, LEVELS, CENTRES)
    assert out["fuzzy_grade"].to_numpy() == pytest.approx(value_index.weighted_score(norm, w).to_numpy())
    assert out[LEVELS].sum(axis=1).to_numpy() == pytest.approx(np.ones(200))


def test_level_parameters_are_checked():
    from pydantic import ValidationError

    from cvlib.params import Fuzzy

    with pytest.raises(ValidationError, match="must increase"):
        Fuzzy(centres=[0.0, 0.6, 0.4, 1.0])
    with pytest.raises(ValidationError, match="3 values for 4 levels"):
        Fuzzy(centres=[0.0, 0.5, 1.0])
    with pytest.raises(ValidationError, match="level_scores"):
        Fuzzy(level_scores=[1, 2])
