"""Each cleaning rule on small hand-made frames, and the reconciliation as a property."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvlib.analysis.cleaning import clean_transactions
from cvlib.analysis.cleaning import clean_transactions as pandas_cleaning
from cvlib.analysis.cleaning_rules import exact_moments, outlier_bounds
from cvlib.io import ROW, STRING
from cvlib.params import Cleaning
from cvlib.parsing import parse_amounts, parse_dates


def raw(rows: list[tuple], cols=("customer_id", "date", "amount")) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(cols)).astype(STRING)
    df.insert(0, ROW, np.arange(1, len(df) + 1))
    return df


def rules(**kw) -> Cleaning:
    base = {"outliers": {"enabled": False}}
    for k, v in kw.items():
        base[k] = v
    return Cleaning.model_validate(base)


def audit_row(res, rule):
    return res.audit.set_index("rule").loc[rule]


@pytest.fixture(autouse=True)
def both_engines(monkeypatch):
    """Every hand-made case also runs on the rules pushed down to DuckDB, which must give the same kept rows,
    quarantine, audit and reconciliation (`test_cleaning_engine.same_cleaning`); the pandas result is checked."""
    from tests.test_cleaning_engine import cleaned_both_ways

    monkeypatch.setitem(globals(), "clean_transactions", cleaned_both_ways)


def test_parse_amounts_symbols_separators_negatives():
    s = pd.Series(["$1,234.50", "€ 12", "(3.00)", "4.5-", "abc", "", "1 000,5", "12.345,60"], dtype="string")
    out = parse_amounts(s)
    assert out.iloc[:4].tolist() == [1234.5, 12.0, -3.0, -4.5]
    assert out.iloc[4:6].isna().all()
    eu = parse_amounts(pd.Series(["1 000,5", "12.345,60", "7,25"], dtype="string"), decimal=",")
    assert eu.tolist() == [1000.5, 12345.6, 7.25]


def test_parse_dates_inferred_mixed_and_reported():
    s = pd.Series(["2024-01-31", "2024-02-01", "15/03/2024", "20240401", "not a date", None])
    out, notes = parse_dates(s)
    assert out.iloc[:4].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-31", "2024-02-01", "2024-03-15", "2024-04-01"]
    assert out.iloc[4:].isna().all()
    assert any("%Y-%m-%d (inferred) read 2 rows" in n for n in notes)
    assert any("%d/%m/%Y" in n for n in notes)


def test_parse_dates_ambiguous_day_month_is_reported():
    _, notes = parse_dates(pd.Series(["01/02/2024", "03/04/2024"]))
    assert any("also fits" in n for n in notes)


def test_given_format_is_used_and_others_fail():
    out, notes = parse_dates(pd.Series(["05/01/2024", "2024-01-05"]), "%m/%d/%Y")
    assert str(out.iloc[0].date()) == "2024-05-01" and pd.isna(out.iloc[1])
    assert notes == ["date format %m/%d/%Y (given) read 1 rows"]


def test_unparseable_rows_are_quarantined_with_raw_value():
    res = clean_transactions(raw([("a", "2024-01-01", "10"), ("b", "yesterday", "5"), ("c", "2024-01-02", "ten")]),
                             rules(), date_format="%Y-%m-%d")
    q = res.quarantine.set_index("customer_id")
    assert q.loc["b", "rule"] == "unparseable_date" and "yesterday" in q.loc["b", "reason"]
    assert q.loc["c", "rule"] == "unparseable_amount" and "ten" in q.loc["c", "reason"]
    assert res.clean["customer_id"].tolist() == ["a"] and res.balanced


def test_missing_customer_id():
    res = clean_transactions(raw([("", "2024-01-01", "10"), ("  ", "2024-01-01", "11"), (None, "2024-01-01", "12"),
                                  ("x", "2024-01-01", "13")]), rules())
    assert audit_row(res, "missing_customer_id")["rows_affected"] == 3
    assert audit_row(res, "missing_customer_id")["amount_affected"] == 33
    assert res.clean["customer_id"].tolist() == ["x"]


def test_duplicates_removed_and_counted_or_kept_when_off():
    rows = [("a", "2024-01-01", "10"), ("a", "2024-01-01", "10"), ("a", "2024-01-01", "10"), ("a", "2024-01-02", "10")]
    res = clean_transactions(raw(rows), rules())
    assert len(res.clean) == 2 and audit_row(res, "duplicates")["rows_affected"] == 2
    assert audit_row(res, "duplicates")["amount_affected"] == 20 and res.quarantine.empty and res.balanced
    off = clean_transactions(raw(rows), rules(duplicates={"enabled": False}))
    assert len(off.clean) == 4


def test_returns_netted_against_their_order():
    cols = ("customer_id", "date", "amount", "order_id")
    rows = [("a", "2024-01-01", "100", "o1"), ("a", "2024-01-03", "-30", "o1"), ("b", "2024-01-01", "50", "o2"),
            ("b", "2024-01-02", "-20", "o9"), ("c", "2024-01-05", "40", "o3"), ("c", "2024-01-06", "-40", "o3")]
    res = clean_transactions(raw(rows, cols), rules())
    clean = res.clean.set_index("order_id")
    assert clean.loc["o1", "amount"] == 70 and clean.loc["o1", "amount_original"] == 100
    assert "o3" not in clean.index  # netted to zero, then quarantined as non-positive
    q = res.quarantine.set_index("order_id")
    assert q.loc["o9", "rule"] == "returns" and "no matching purchase" in q.loc["o9", "reason"]
    assert q.loc["o3", "rule"] == "non_positive" and "after netting" in q.loc["o3", "reason"]
    assert res.balanced
    assert res.clean["amount"].sum() == 70 + 50


def test_return_larger_than_purchase_and_several_purchases():
    cols = ("customer_id", "date", "amount", "product")
    rows = [("a", "2024-01-01", "30", "p"), ("a", "2024-01-02", "50", "p"), ("a", "2024-01-03", "-60", "p")]
    res = clean_transactions(raw(rows, cols), rules())
    # latest purchase absorbs first: 50 -> 0 (quarantined), then 30 -> 20
    assert res.clean["amount"].tolist() == [20.0] and res.balanced
    big = clean_transactions(raw([("a", "2024-01-01", "30", "p"), ("a", "2024-01-03", "-45", "p")], cols), rules())
    assert big.clean.empty and big.quarantine["rule"].tolist() == ["non_positive"] and big.balanced


def test_return_before_any_purchase_is_unmatched():
    res = clean_transactions(raw([("a", "2024-01-01", "-10"), ("a", "2024-02-01", "20")]), rules())
    assert res.quarantine["rule"].tolist() == ["returns"] and res.clean["amount"].tolist() == [20.0]


def test_returns_dropped_and_flag_and_invoice_prefix():
    cols = ("customer_id", "date", "amount", "order_id", "return_flag")
    rows = [("a", "2024-01-01", "100", "1001", ""), ("a", "2024-01-02", "25", "C1001", ""),
            ("b", "2024-01-01", "80", "1002", ""), ("b", "2024-01-02", "10", "1002", "R")]
    r = rules(returns={"action": "net", "invoice_prefix": "C", "flag_values": ["R"]})
    res = clean_transactions(raw(rows, cols), r)
    assert res.clean.set_index("order_id")["amount"].to_dict() == {"1001": 75.0, "1002": 70.0} and res.balanced
    dropped = clean_transactions(raw(rows, cols), rules(returns={"action": "drop", "invoice_prefix": "C",
                                                                 "flag_values": ["R"]}))
    assert dropped.clean["amount"].tolist() == [100.0, 80.0]
    assert (dropped.quarantine["rule"] == "returns").sum() == 2 and dropped.balanced


def test_non_positive_window_and_test_ids():
    rows = [("a", "2024-01-01", "0"), ("b", "2023-12-31", "5"), ("c", "2024-02-01", "5"), ("TEST1", "2024-01-10", "9"),
            ("d", "2024-01-31", "7")]
    r = rules(returns={"enabled": False}, window={"start": "2024-01-01", "end": "2024-01-31"},
              test_ids={"ids": ["TEST1"]}, non_positive={"keep_zero": False})
    res = clean_transactions(raw(rows), r)
    assert res.quarantine.set_index("customer_id")["rule"].to_dict() == {
        "a": "non_positive", "b": "window", "c": "window", "TEST1": "test_ids"}
    assert res.clean["customer_id"].tolist() == ["d"] and res.balanced
    # by default a purchase written as 0 stays, as a purchase occasion with no revenue
    kept = clean_transactions(raw(rows), rules(returns={"enabled": False}, window={"start": "2024-01-01",
                                                                                    "end": "2024-01-31"},
                                               test_ids={"ids": ["TEST1"]}))
    assert kept.clean["customer_id"].tolist() == ["a", "d"] and kept.clean["amount"].tolist() == [0.0, 7.0]
    assert kept.balanced


@pytest.mark.parametrize("method,threshold", [("iqr", 1.5), ("zscore", 2.0), ("quantile", 0.9)])
def test_outlier_methods_and_actions(method, threshold):
    amounts = [10, 11, 12, 9, 10, 11, 10, 12, 9, 10, 5000]
    rows = [(f"c{i}", "2024-01-01", str(a)) for i, a in enumerate(amounts)]
    o = {"enabled": True, "method": method, "threshold": threshold}
    flag = clean_transactions(raw(rows), rules(outliers={**o, "action": "flag"}))
    assert flag.clean.loc[flag.clean["is_outlier"], "amount"].tolist() == [5000.0]
    cap = clean_transactions(raw(rows), rules(outliers={**o, "action": "cap"}))
    lo, hi = cap.outlier_bounds
    assert cap.clean["amount"].max() == pytest.approx(hi) and hi < 5000 and cap.balanced
    drop = clean_transactions(raw(rows), rules(outliers={**o, "action": "drop"}))
    assert drop.quarantine["rule"].tolist() == ["outliers"] and drop.balanced


def test_outlier_bounds_iqr_by_hand():
    lo, hi = outlier_bounds(np.array([1.0, 2, 3, 4, 5]), "iqr", 1.5, log_scale=False)
    assert (lo, hi) == (-1.0, 7.0)


def test_zscore_moments_are_exact_and_ignore_row_order():
    """The z-score bounds come from the distinct amounts and their counts (all an engine sends back), computed
    exactly: the same in any row order and equal to the correctly rounded mean and deviation."""
    import statistics

    rng = np.random.default_rng(7)
    x = rng.lognormal(3, 1.2, 5000).round(2)
    v, c = np.unique(x, return_counts=True)
    mean, sd = exact_moments(v, c)
    assert mean == float(statistics.mean(map(Fraction, x.tolist())))
    assert sd == pytest.approx(statistics.pstdev(x.tolist()), rel=1e-15)
    assert exact_moments(v[::-1], c[::-1]) == (mean, sd)
    # a sum in float arithmetic depends on its order: the bounds must not
    assert outlier_bounds(x, "zscore", 2.5) == outlier_bounds(x[rng.permutation(len(x))], "zscore", 2.5)
    assert outlier_bounds(v, "zscore", 2.5, counts=c) == outlier_bounds(x, "zscore", 2.5)
    lo, hi = outlier_bounds(np.array([1.0, 2, 3, 4, 5]), "zscore", 1.0, log_scale=False)
    assert (lo, hi) == pytest.approx((3 - 2 ** 0.5, 3 + 2 ** 0.5), rel=1e-15)


def test_malformed_lines_are_counted_in_reconciliation():
    bad = pd.DataFrame({"line": [3], "text": ["x,y,z,w"], "expected": [3], "got": [4]})
    res = clean_transactions(raw([("a", "2024-01-01", "10")]), rules(), malformed=bad)
    r = res.reconciliation.set_index("term")
    assert r.loc["input", "rows"] == 2 and r.loc["quarantined", "rows"] == 1 and res.balanced
    assert res.quarantine["raw_line"].iloc[0] == "x,y,z,w"


# ---------------------------------------------------------------------- property: nothing is lost
ids = st.sampled_from(["a", "b", "c", "007", "", " ", None])
dates = st.sampled_from(["2024-01-01", "2024-01-15", "2024-03-02", "2023-12-31", "bad", "", "2024-02-30"])
amounts = st.one_of(st.decimals(min_value=-500, max_value=5000, places=2).map(str),
                    st.sampled_from(["0", "x", "", "1,234.56", "$12.30", "(5.00)"]))
orders = st.sampled_from(["o1", "o2", "o3", None])
row = st.tuples(ids, dates, amounts, orders)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row, min_size=1, max_size=40), dup_idx=st.lists(st.integers(0, 39), max_size=8),
       action=st.sampled_from(["net", "drop"]), outlier=st.sampled_from(["flag", "cap", "drop"]),
       window=st.booleans())
def test_every_row_and_cent_is_accounted_for(rows, dup_idx, action, outlier, window):
    rows = rows + [rows[i % len(rows)] for i in dup_idx]
    frame = raw(rows, ("customer_id", "date", "amount", "order_id"))
    r = rules(returns={"action": action}, outliers={"enabled": True, "method": "iqr", "threshold": 1.0,
                                                    "action": outlier},
              window={"start": "2024-01-01", "end": "2024-02-28"} if window else {"enabled": False})
    res = pandas_cleaning(frame, r, date_format="%Y-%m-%d")
    # every input row is in exactly one place
    places = pd.concat([p[ROW].astype("Int64") for p in (res.clean, res.quarantine, res.removed) if len(p)]).astype(int)
    assert sorted(places) == list(range(1, len(frame) + 1))
    # amounts: computed independently of cvlib's own bookkeeping
    independent = parse_amounts(frame["amount"]).fillna(0).sum()
    recon = res.reconciliation.set_index("term")
    assert recon.loc["input", "amount"] == pytest.approx(independent, abs=0.005)
    assert recon.loc["kept", "amount"] == pytest.approx(res.clean["amount"].sum(), abs=0.005)
    assert recon.loc["kept", "rows"] == len(res.clean) and recon.loc["quarantined", "rows"] == len(res.quarantine)
    assert res.balanced
    zero_rows = set(frame.loc[parse_amounts(frame["amount"]) == 0, ROW])
    assert ((res.clean["amount"] > 0) | res.clean[ROW].isin(zero_rows)).all()  # $0 purchases: occasions, kept
    assert (res.clean.loc[res.clean[ROW].isin(zero_rows), "amount"] == 0).all()
    assert set(res.quarantine["rule"]) <= {"unparseable_date", "unparseable_amount", "missing_customer_id",
                                           "returns", "non_positive", "window", "outliers"}


def test_exact_duplicates_compare_full_text_not_just_the_fingerprint():
    from cvlib.analysis.cleaning_rules import exact_duplicates

    long_a, long_b = "a" * 20, "b" + "a" * 19  # same length and last 8 bytes
    frame = raw([(long_a, "2024-01-01", "10"), (long_b, "2024-01-01", "10"), (long_a, "2024-01-01", "10"),
                 (None, "2024-01-01", "10"), (None, "2024-01-01", "10"), ("", "2024-01-01", "10")])
    dup = exact_duplicates(frame, ["customer_id", "date", "amount"])
    assert dup.tolist() == [False, False, True, False, True, False]


def test_blank_date_with_inferred_formats_is_quarantined_not_a_crash():
    """A blank date among dates whose format is inferred (no date_format given) used to make the format sample
    larger than the values it was drawn from."""
    res = clean_transactions(raw([("a", "2024-01-01", "10"), ("b", "", "5"), ("c", "2024-02-01", "7")]), rules())
    assert audit_row(res, "unparseable_date")["rows_affected"] == 1 and len(res.clean) == 2
