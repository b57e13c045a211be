"""Weights of the value index's indicators: AHP (pairwise comparisons, Saaty's consistency ratio) and entropy
weights. A foundation module: the parameters check an AHP matrix when they are loaded."""
from __future__ import annotations

import numpy as np
import pandas as pd

# Saaty's random consistency index by matrix size
RANDOM_INDEX = {1: 0.0, 2: 0.0, 3: 0.58, 4: 0.90, 5: 1.12, 6: 1.24, 7: 1.32, 8: 1.41, 9: 1.45, 10: 1.49,
                11: 1.51, 12: 1.48, 13: 1.56, 14: 1.57, 15: 1.59}


def ahp_weights(matrix: np.ndarray | list[list[float]]) -> dict[str, object]:
    """Principal-eigenvector weights, lambda_max, consistency index and ratio (Saaty's random index)."""
    a = np.asarray(matrix, dtype=float)
    n = a.shape[0]
    vals, vecs = np.linalg.eig(a)
    i = int(np.argmax(vals.real))
    w = np.abs(vecs[:, i].real)
    w = w / w.sum()
    lam = float(vals[i].real)
    ci = (lam - n) / (n - 1) if n > 2 else 0.0
    ri = RANDOM_INDEX.get(n, 1.59)
    cr = ci / ri if ri else 0.0
    return {"weights": w, "lambda_max": lam, "ci": max(ci, 0.0), "cr": max(cr, 0.0), "consistent": cr < 0.1}


def entropy_weights(normalised: pd.DataFrame) -> pd.Series:
    """Entropy weights: indicators that vary more across customers weigh more; a constant one weighs 0."""
    x = normalised.astype(float).clip(lower=0)
    n = len(x)
    col_sum = x.sum()
    p = x / col_sum.replace(0, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = -(p * np.log(p)).fillna(0).sum() / np.log(n) if n > 1 else pd.Series(1.0, index=x.columns)
    const = x.nunique() <= 1
    d = (1 - e).where(~const, 0.0).clip(lower=0)
    return d / d.sum() if d.sum() > 0 else pd.Series(1 / len(d), index=d.index)
