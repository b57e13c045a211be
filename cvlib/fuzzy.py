"""Fuzzy comprehensive evaluation of customer value, beside the weighted-sum score.

Each normalised indicator (0-1, 1 best) belongs to graded levels (e.g. poor, fair, good, excellent) by
triangular membership functions peaked at each level's centre: at a centre the indicator is fully that level,
between two centres it belongs to both in proportion to its distance, below the first and above the last it is
fully the end level (the memberships of one indicator add up to 1). A customer's fuzzy vector is the weighted
average of their indicators' memberships (the weighted-average operator M(., +); weights rescaled over the
indicators the customer has), and their level is the one of maximum membership; the weighted-average grade is
the level scores weighted by that vector.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def memberships(x: np.ndarray, centres: list[float]) -> np.ndarray:
    """Membership of each value in each level (rows: values, columns: levels); a missing value gives a row of
    NaN. `centres` must increase."""
    x = np.asarray(x, dtype=float)
    c = np.asarray(centres, dtype=float)
    out = np.zeros((len(x), len(c)))
    clipped = np.clip(x, c[0], c[-1])
    j = np.clip(np.searchsorted(c, clipped, side="right") - 1, 0, len(c) - 2)  # the centres either side
    upper = (clipped - c[j]) / (c[j + 1] - c[j])
    rows = np.arange(len(x))
    out[rows, j] = 1 - upper
    out[rows, j + 1] += upper
    out[np.isnan(x)] = np.nan
    return out


def evaluate(norm: pd.DataFrame, weights: pd.Series, levels: list[str], centres: list[float],
             level_scores: list[float] | None = None) -> pd.DataFrame:
    """Per customer (rows of `norm`: normalised indicators): the fuzzy vector (one column per level, adding up
    to 1), `fuzzy_level` (maximum membership; the better level on a tie) and `fuzzy_grade` (the level scores,
    default the centres x 100, weighted by the vector). Customers with no indicator get no level."""
    w = weights.reindex(norm.columns).astype(float).to_numpy()
    total = np.zeros((len(norm), len(levels)))
    weight_present = np.zeros(len(norm))
    for k, col in enumerate(norm.columns):
        m = memberships(norm[col].to_numpy(), centres)
        have = ~np.isnan(m[:, 0])
        total[have] += w[k] * m[have]
        weight_present += np.where(have, w[k], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        vector = total / weight_present[:, None]
    out = pd.DataFrame(vector, index=norm.index, columns=list(levels))
    none = weight_present <= 0
    best = len(levels) - 1 - np.argmax(vector[:, ::-1], axis=1)  # argmax from the top: ties go to the better level
    out["fuzzy_level"] = np.where(none, None, np.asarray(levels, dtype=object)[best])
    s = np.asarray(level_scores if level_scores is not None else [100 * c for c in centres], dtype=float)
    out["fuzzy_grade"] = np.where(none, np.nan, np.nan_to_num(vector) @ s)
    return out
