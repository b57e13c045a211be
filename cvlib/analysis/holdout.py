"""The purchase model checked on a holdout it did not see: totals and errors against a naive baseline, weekly
tracking, and the P(alive) matrix by purchases and recency."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cvlib.engines import aggregates

UNIT_DAYS = {"days": 1.0, "weeks": 7.0}


# --------------------------------------------------------------------------- holdout validation
@dataclass
class Holdout:
    totals: pd.DataFrame
    by_frequency: pd.DataFrame
    tracking: pd.DataFrame
    errors: pd.DataFrame
    beat_baseline: bool
    model: str


def validate_holdout(cal: pd.DataFrame, tx: pd.DataFrame | Any, model, name: str, unit: str,
                     calibration_end, holdout_end, by: str = "day") -> Holdout:
    """Predicted against actual repeat purchases in the holdout, by calibration frequency, week by week,
    and per-customer error against the naive baseline (each customer repeats their calibration rate)."""
    dur = cal["duration_holdout"].to_numpy()
    pred = model.predict(cal, dur)
    actual = cal["x_holdout"].to_numpy()
    naive = np.where(cal["T"] > 0, cal["x"] / cal["T"].replace(0, np.nan), 0.0) * dur
    naive = np.nan_to_num(naive)
    totals = pd.DataFrame({"measure": ["actual repeat purchases", f"predicted ({name})", "naive baseline"],
                           "holdout_total": [actual.sum(), pred.sum(), naive.sum()]})
    k = np.minimum(cal["x"].to_numpy(), 7)
    byf = pd.DataFrame({"calibration_repeat_purchases": k, "actual": actual, "predicted": pred}).groupby(
        "calibration_repeat_purchases").agg(customers=("actual", "size"), actual=("actual", "mean"),
                                            predicted=("predicted", "mean")).reset_index()
    byf["calibration_repeat_purchases"] = byf["calibration_repeat_purchases"].map(lambda v: "7+" if v == 7 else str(v))
    errors = pd.DataFrame({"method": [name, "naive baseline"],
                           "mae": [np.mean(np.abs(pred - actual)), np.mean(np.abs(naive - actual))],
                           "rmse": [np.sqrt(np.mean((pred - actual) ** 2)), np.sqrt(np.mean((naive - actual) ** 2))]})
    tracking = weekly_tracking(cal, tx, model, unit, holdout_end, by)
    return Holdout(totals, byf, tracking, errors, bool(errors["mae"].iloc[0] < errors["mae"].iloc[1]), name)


def weekly_tracking(cal: pd.DataFrame, tx: pd.DataFrame | Any, model, unit: str, holdout_end,
                    by: str = "day") -> pd.DataFrame:
    """Cumulative repeat purchases (occasions `by`, as the model counts them) per week, actual against the model,
    for the calibration customers (`tx`: a frame of transactions or an engine's table of them)."""

    with aggregates.table_of(tx) as t:
        firsts, repeats = aggregates.repeat_tracking(t, cal["customer_id"], pd.Timestamp(holdout_end).date(), by)
    start_day = int(firsts.index.min())
    end_day = int(np.datetime64(pd.Timestamp(holdout_end).date(), "D").astype(np.int64))
    weeks = np.arange(1, int(np.ceil((end_day - start_day + 1) / 7)) + 1)
    before = np.searchsorted(repeats.index.to_numpy(), start_day + 7 * weeks)  # repeat days before each week's end
    actual = np.r_[0, np.cumsum(repeats.to_numpy())][before]
    exp = np.zeros(len(weeks))
    for d0, n in firsts.items():
        age = (start_day + 7 * weeks - d0 - 1) / UNIT_DAYS[unit]  # time since acquisition at the week's end
        exp += n * np.where(age > 0, model.expected_new(np.maximum(age, 0)), 0.0)
    return pd.DataFrame({"week": weeks, "actual": actual, "predicted": exp})


def p_alive_matrix(model, max_x: int, T: float, steps: int = 20) -> pd.DataFrame:
    """P(alive) of a customer aged T on a grid of repeat purchases x (rows) and recency t_x (columns)."""
    xs = np.arange(0, max_x + 1)
    txs = np.linspace(0, T, steps + 1)
    X, TX = np.meshgrid(xs, txs, indexing="ij")
    grid = pd.DataFrame({"x": X.ravel(), "t_x": np.where(X.ravel() == 0, 0, TX.ravel()), "T": T})
    p = model.p_alive(grid).reshape(X.shape)
    return pd.DataFrame(p, index=pd.Index(xs, name="repeat purchases x"),
                        columns=pd.Index(np.round(txs, 1), name="time of last purchase t_x"))
