"""The cleaning rules pushed down to DuckDB (`cleaning.clean_on_engine`) give what the pandas rules give: the kept
rows, the quarantine with its reasons, the audit, the reconciliation and the notes, on hand-made cases (every
case of test_cleaning.py runs both ways), on random messy frames, and on the example books."""
from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvlib import reading
from cvlib.analysis import cleaning
from cvlib.io import ROW, STRING
from cvlib.params import Cleaning, load_study
from tests.conftest import ROOT


def same_cleaning(a, b) -> None:
    for part in ("clean", "quarantine", "audit", "reconciliation", "removed"):
        pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part), obj=part)
    assert a.notes == b.notes and a.outlier_bounds == b.outlier_bounds and a.summary() == b.summary()


def on_duckdb(raw: pd.DataFrame, rules: Cleaning, malformed=None, **kw):
    con = ibis.duckdb.connect()
    try:
        return cleaning.clean_on_engine(con, con.create_table("raw", raw), rules, malformed, **kw)
    finally:
        con.disconnect()


def cleaned_both_ways(raw: pd.DataFrame, rules: Cleaning, malformed=None, **kw):
    """The pandas result, once checked equal to the DuckDB one."""
    a = cleaning.clean_transactions(raw, rules, malformed, **kw)
    same_cleaning(a, on_duckdb(raw, rules, malformed, **kw))
    return a


ids = st.sampled_from(["a", "b", "c", "007", "", " ", " a\u00a0", None])
dates = st.sampled_from([None, "2024-01-01", "2024-01-15", " 2024-03-02", "2023-12-31", "bad", "", "2024-02-30",
                         "2019-05-05", "2024-01-15 10:30:00"])
amounts = st.one_of(st.decimals(min_value=-500, max_value=5000, places=2).map(str),
                    st.sampled_from(["0", "x", "", "1,234.56", "$12.30", "(5.00)", "1e3", "2000000000"]))
orders = st.sampled_from(["o1", "o2", "Co1", " o3", "", None])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(ids, dates, amounts, orders), min_size=1, max_size=40),
       dup_idx=st.lists(st.integers(0, 39), max_size=8), action=st.sampled_from(["net", "drop"]),
       outlier=st.sampled_from(["flag", "cap", "drop"]), method=st.sampled_from(["iqr", "zscore", "quantile"]),
       window=st.booleans(), keep_zero=st.booleans())
def test_random_messy_frames_clean_the_same_on_duckdb(rows, dup_idx, action, outlier, method, window, keep_zero):
    rows = rows + [rows[i % len(rows)] for i in dup_idx]
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "amount", "order_id"]).astype(STRING)
    frame.insert(0, ROW, range(1, len(frame) + 1))
    r = Cleaning.model_validate({
        "returns": {"action": action, "invoice_prefix": "C"}, "test_ids": {"ids": ["007"]},
        "non_positive": {"keep_zero": keep_zero}, "dates": {"after_bulk_days": 30},
        "outliers": {"method": method, "threshold": 0.9 if method == "quantile" else 1.0, "action": outlier,
                     "ceiling": 1e9},
        "window": {"start": "2024-01-01", "end": "2024-02-28"} if window else {"enabled": False}})
    cleaned_both_ways(frame, r, date_format=None, today=dt.date(2024, 6, 1))


@pytest.mark.parametrize("params", ["cdnow.yaml", "agency_demo.yaml", "cdnow_zh.yaml"])
def test_example_books_clean_the_same_on_duckdb(params):
    study = load_study(ROOT / "params" / params)
    spec = study.inputs.transactions
    raw, bad = reading.read_transactions(study)
    cleaned_both_ways(raw, study.cleaning, bad, date_format=spec.date_format, decimal=spec.decimal,
                      thousands=spec.thousands, allow_exponent=spec.allow_exponent)
