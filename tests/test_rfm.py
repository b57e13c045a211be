"""RFM summary, CLV inputs, scores, segments, concentration and clusters against hand-computed values."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvlib import customers
from cvlib.analysis import rfm
from cvlib.params import DEFAULT_SEGMENTS, Rfm, SegmentRule


def tx(rows, cols=("customer_id", "date", "amount")) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(cols))
    df["date"] = pd.to_datetime(df["date"])
    df["customer_id"] = df["customer_id"].astype("string[pyarrow]")
    return df


T1 = tx([("a", "2024-01-01", 10.0), ("a", "2024-01-01", 5.0), ("a", "2024-01-08", 20.0), ("a", "2024-01-15", 30.0),
         ("b", "2024-01-10", 7.0)])


def test_summary_by_hand_same_day_merged_purchase_on_end_date():
    s = customers.customer_summary(T1).set_index("customer_id")
    a, b = s.loc["a"], s.loc["b"]
    assert (a["frequency"], a["monetary"], a["recency"], a["tenure"]) == (3, 65.0, 0, 14)
    assert a["monetary_mean"] == pytest.approx(65 / 3)
    assert (a["x"], a["t_x"], a["T"], a["monetary_value"]) == (2, 2.0, 2.0, 25.0)
    assert (b["frequency"], b["recency"], b["x"], b["t_x"], b["monetary_value"]) == (1, 5, 0, 0.0, 0.0)
    assert b["T"] == pytest.approx(5 / 7)
    assert str(a["first_purchase"].date()) == "2024-01-01" and str(a["last_purchase"].date()) == "2024-01-15"


def test_summary_in_days_and_explicit_end_ignores_later_purchases():
    s = customers.customer_summary(T1, end=pd.Timestamp("2024-01-10"), unit="days").set_index("customer_id")
    assert s.loc["a", "frequency"] == 2 and s.loc["a", "recency"] == 2 and s.loc["a", "T"] == 9.0
    assert s.loc["b", "recency"] == 0  # purchase on the end date counts


def test_summary_by_orders():
    t = tx([("a", "2024-01-01", 10.0, "o1"), ("a", "2024-01-01", 5.0, "o2"), ("a", "2024-01-03", 1.0, "o2")],
           ("customer_id", "date", "amount", "order_id"))
    s = customers.customer_summary(t, by="order", unit="days")
    assert s["frequency"].item() == 2 and s["x"].item() == 1 and s["t_x"].item() == 0.0  # o2 dated by its first row
    assert s["monetary_value"].item() in (6.0, 10.0)


def test_single_customer():
    s = customers.customer_summary(tx([("z", "2024-03-01", 9.0)]))
    assert len(s) == 1 and s["frequency"].item() == 1 and s["T"].item() == 0.0


def test_calibration_holdout_split():
    c = customers.calibration_holdout(T1, pd.Timestamp("2024-01-08").date(), pd.Timestamp("2024-01-15").date(),
                                unit="weeks").set_index("customer_id")
    assert list(c.index) == ["a"]  # b is first seen after the calibration end
    assert (c.loc["a", "x"], c.loc["a", "t_x"], c.loc["a", "T"]) == (1, 1.0, 1.0)
    assert (c.loc["a", "x_holdout"], c.loc["a", "spend_holdout"], c.loc["a", "duration_holdout"]) == (1, 30.0, 1.0)


def test_scores_with_heavy_ties():
    v = pd.Series([1] * 90 + [2] * 5 + [3] * 5)
    shared = rfm.score(v, 5)
    assert shared[v == 1].nunique() == 1 and shared[v == 1].iloc[0] == 1  # equal values share the lowest score
    assert shared[v == 3].iloc[0] == 5 and shared[v == 2].iloc[0] == 5  # both in the top quintile
    first = rfm.score(v, 5, ties="first")
    assert first.value_counts().sort_index().tolist() == [20] * 5  # equal-sized bins
    const = rfm.score(pd.Series([4.0] * 7), 5)
    assert const.nunique() == 1


def test_recency_reversed_and_fixed_edges():
    r = rfm.score(pd.Series([0, 10, 100, 1000, 5]), 5, reverse=True)
    assert r.iloc[0] == 5 and r.iloc[3] == 1
    e = rfm.score(pd.Series([0, 29, 30, 89, 90, 400]), reverse=True, edges=[30, 90, 365])
    assert e.tolist() == [4, 4, 3, 3, 2, 1]


def test_default_grid_covers_every_cell_once():
    grid = [SegmentRule(**g) for g in DEFAULT_SEGMENTS]
    cells = pd.DataFrame([(r, f) for r in range(1, 6) for f in range(1, 6)], columns=["r_score", "f_score"])
    cells["m_score"] = 3
    seg = rfm.assign_segments(cells, grid)
    assert "Other" not in set(seg)
    named = dict(zip(zip(cells["r_score"], cells["f_score"]), seg))
    assert named[(5, 5)] == "Champions" and named[(1, 1)] == "Lost" and named[(1, 5)] == "Can't Lose Them"
    assert named[(5, 1)] == "New" and named[(2, 2)] == "Hibernating" and named[(2, 4)] == "At Risk"
    assert set(seg) == {g["name"] for g in DEFAULT_SEGMENTS}


def test_custom_grid_any_language_and_other():
    grid = [SegmentRule(name="重要价值客户", r=(4, 5), f=(4, 5))]
    cells = pd.DataFrame({"r_score": [5, 1], "f_score": [5, 1], "m_score": [5, 1]})
    assert rfm.assign_segments(cells, grid).tolist() == ["重要价值客户", "Other"]
    three = pd.DataFrame({"r_score": [3], "f_score": [3], "m_score": [3]})  # 3-bin scale mapped onto 1-5
    assert rfm.assign_segments(three, [SegmentRule(**g) for g in DEFAULT_SEGMENTS], n_bins=3).item() == "Champions"


def test_gini_and_pareto_on_known_distributions():
    assert rfm.gini(np.full(10, 7.0)) == pytest.approx(0.0)
    assert rfm.gini([1, 2, 3, 4]) == pytest.approx(0.25)
    assert rfm.gini([0, 0, 0, 0, 100]) == pytest.approx(0.8)
    eq = rfm.concentration(pd.Series(np.full(100, 5.0)))
    assert eq["top20_revenue_share"] == pytest.approx(0.2) and eq["customer_share_for_80pct"] == pytest.approx(0.8)
    skew = rfm.concentration(pd.Series([80.0] + [20 / 9] * 9))
    assert skew["customer_share_for_80pct"] == pytest.approx(0.1)


def test_abc_and_pyramid():
    assert rfm.abc_classes(pd.Series([50.0, 5, 30, 10, 5])).tolist() == ["A", "B", "A", "B", "C"]
    tiers = rfm.value_tiers(pd.Series(np.arange(100, 0, -1, dtype=float)), [0.01, 0.05, 0.2], ["t1", "t2", "t3", "t4"])
    assert tiers.value_counts()[["t1", "t2", "t3", "t4"]].tolist() == [1, 4, 15, 80]


def random_tx(n_cust=300, seed=1):
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_cust):
        k = rng.geometric(0.3)
        days = rng.integers(0, 365, k)
        for d in days:
            rows.append((f"c{c:04d}", pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(d)), float(rng.lognormal(3, 1))))
    return tx(rows)


def test_clusters_reproducible_with_seed():
    t = random_tx()
    a = rfm.build_rfm(t, Rfm())
    b = rfm.build_rfm(t, Rfm())
    assert a.clusters.k is not None and 2 <= a.clusters.k <= 8
    assert a.rfm["cluster"].tolist() == b.rfm["cluster"].tolist()
    assert 0 <= a.clusters.tree_accuracy <= 1 and "class:" in a.clusters.rules
    assert a.clusters.profile["customers"].sum() == len(a.rfm)
    fixed = rfm.build_rfm(t, Rfm(clusters={"k": 3}))
    assert fixed.clusters.k == 3 and fixed.rfm["cluster"].nunique() == 3


@pytest.mark.parametrize("rows", [
    [("a", "2024-01-01", 5.0)],  # one customer
    [(f"c{i}", "2024-01-01", 5.0) for i in range(4)],  # every customer alike, fewer than bins
    [(f"c{i}", f"2024-01-{i + 1:02d}", float(i + 1)) for i in range(20)],  # one purchase each
])
def test_edge_cases_do_not_crash_and_say_why(rows):
    res = rfm.build_rfm(tx(rows), Rfm())
    assert len(res.rfm) == len({r[0] for r in rows})
    assert res.notes  # something is said about what could not be computed
    assert not res.rfm[["r_score", "f_score", "m_score", "segment", "abc_class", "value_tier"]].isna().any().any()
    required = {"customer_id", "recency", "frequency", "monetary", "tenure", "r_score", "f_score", "m_score",
                "segment", "cluster", "abc_class", "value_tier"}
    assert required <= set(res.rfm.columns)


@pytest.mark.parametrize("ids", [["10", "12", "12", "15"], ["007", "7", "7", "9"], ["A1", "B2", "B2", "C3"]])
def test_order_codes_numeric_leading_zero_and_text(ids):
    t = tx([("a", "2024-01-01", 1.0, ids[0]), ("a", "2024-01-02", 2.0, ids[1]), ("a", "2024-01-02", 3.0, ids[2]),
            ("b", "2024-01-05", 4.0, ids[3])], ("customer_id", "date", "amount", "order_id"))
    t["order_id"] = t["order_id"].astype("string[pyarrow]")
    s = customers.customer_summary(t, by="order", unit="days").set_index("customer_id")
    assert s.loc["a", "frequency"] == 2 and s.loc["b", "frequency"] == 1  # '007' and '7' are different orders
    assert s.loc["a", "monetary"] == 6.0 and s.loc["a", "monetary_value"] == 5.0  # the repeat order: 2 + 3


def reference_summary(t: pd.DataFrame) -> pd.DataFrame:
    """The day-basis summary the slow, obvious way: pandas groupby over (customer, day)."""
    occ = (t.assign(day=t["date"].dt.normalize(), customer_id=t["customer_id"].astype(str))
           .groupby(["customer_id", "day"], sort=True)["amount"].sum().reset_index())
    end = occ["day"].max()
    g = occ.groupby("customer_id")
    first_value = g["amount"].first()
    out = pd.DataFrame({"frequency": g.size(), "monetary": g["amount"].sum(),
                        "first_purchase": g["day"].min(), "last_purchase": g["day"].max()})
    out["recency"] = (end - out["last_purchase"]).dt.days
    out["x"] = out["frequency"] - 1
    out["monetary_value"] = np.where(out["x"] > 0, (out["monetary"] - first_value) / out["x"].clip(lower=1), 0.0)
    return out


ID_SHAPES = {
    "digits, one length": lambda i: f"{i:06d}",
    "digits with leading zeros, mixed lengths": lambda i: f"{i:03d}" if i % 2 else str(i),
    "fixed width text <= 8 bytes": lambda i: f"K{i:05d}é"[:7],
    "long text": lambda i: f"customer-{i}@example.org",
}


@pytest.mark.parametrize("shape", ID_SHAPES)
@pytest.mark.parametrize("dtype", ["string[pyarrow]", "category", "object"])
def test_summary_matches_groupby_reference_for_every_id_shape(shape, dtype):
    t = random_tx(400, seed=5)
    num = t["customer_id"].str[1:].astype(int)
    t["customer_id"] = num.map(ID_SHAPES[shape]).astype(dtype)
    if dtype == "category":  # unused categories must not become customers
        t["customer_id"] = t["customer_id"].cat.add_categories(["never-bought"])
    s = customers.customer_summary(t).set_index("customer_id")
    ref = reference_summary(t)
    assert s.index.is_unique and set(s.index) == set(ref.index) and len(s) == t["customer_id"].nunique()
    s = s.loc[ref.index]
    for col in ["frequency", "recency", "x"]:
        assert s[col].tolist() == ref[col].tolist(), col
    np.testing.assert_allclose(s["monetary"], ref["monetary"])
    np.testing.assert_allclose(s["monetary_value"], ref["monetary_value"])
    for col in ["first_purchase", "last_purchase"]:
        assert (s[col].to_numpy() == ref[col].to_numpy()).all(), col
    assert (s["frequency"] > 1).any()


@pytest.mark.parametrize("key32", [True, False])
@pytest.mark.parametrize("years", [0, -60])  # -60: dates before 1970, negative day numbers
def test_summary_matches_reference_for_both_key_widths_and_old_dates(monkeypatch, key32, years):
    if not key32:
        monkeypatch.setattr(customers, "KEY32_LIMIT", 0)
    t = random_tx(300, seed=9)
    t["date"] = t["date"] + pd.DateOffset(years=years)
    s = customers.customer_summary(t).set_index("customer_id").loc[lambda d: d.index.astype(str)]
    ref = reference_summary(t)
    s = s.loc[ref.index]
    assert s["frequency"].tolist() == ref["frequency"].tolist() and s["recency"].tolist() == ref["recency"].tolist()
    assert (s["first_purchase"].to_numpy() == ref["first_purchase"].to_numpy()).all()
    np.testing.assert_allclose(s["monetary_value"], ref["monetary_value"])


def test_summary_refuses_rows_without_customer_id():
    t = T1.copy()
    t["customer_id"] = pd.Series(["a", None, "a", "b", "b"], dtype=object)
    with pytest.raises(ValueError, match="customer id on every row"):
        customers.customer_summary(t)


def test_summary_lists_customers_in_order_of_first_appearance():
    t = tx([("30", "2024-01-02", 1.0), ("007", "2024-01-01", 1.0), ("7", "2024-01-03", 1.0), ("30", "2024-01-04", 1.0)])
    assert customers.customer_summary(t)["customer_id"].tolist() == ["30", "007", "7"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.from_regex(r"[0-9]{1,17}", fullmatch=True), st.text(min_size=1, max_size=8)),
                min_size=1, max_size=40))
def test_customer_codes_name_each_rows_own_id_in_order_of_first_appearance(values):
    codes, ids = customers.customer_codes(pd.Series(values, dtype="string[pyarrow]"))
    assert list(ids) == list(dict.fromkeys(values)) and [ids[c] for c in codes] == values


def test_silhouettes_equal_scikit_learns():
    """The per-sample silhouettes from one matrix product equal scikit-learn's, a cluster of one included."""
    from sklearn.metrics import pairwise_distances, silhouette_samples

    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(c, 0.5, size=(60, 3)) for c in (0, 3, 6)] + [[[20, 20, 20]]])
    labels = np.r_[np.repeat([2, 0, 5], 60), 7]  # codes need not be 0..k-1; the last cluster has one member
    dist = pairwise_distances(X)
    ours = rfm.silhouettes(dist, labels)
    np.testing.assert_allclose(ours, silhouette_samples(dist, labels, metric="precomputed"), atol=1e-12)
    assert ours[-1] == 0.0 and ours[:180].mean() > 0.5


@pytest.mark.parametrize("ids", [["007", "7", "007", "12", "7"], ["b", "a", "b", "c", "a"]])
def test_customer_sums_equal_a_groupby(ids):
    """Sums per customer in id order, as a groupby gives: '007' and '7' stay two customers, a missing value is 0."""
    s = pd.Series(pd.array(ids, dtype="string[pyarrow]"))
    amount = pd.Series([1.0, 2.0, np.nan, 4.0, 8.0])
    got = customers.customer_sums(s, amount=amount, twice=2 * amount)
    want = amount.groupby(s).sum()
    pd.testing.assert_series_equal(got["amount"], want.rename("amount").rename_axis("customer_id"), check_index_type=False)
    assert got["twice"].tolist() == (2 * want).tolist()


CODING_SHAPES = {  # text keys of varying length, some non-ASCII, one empty; then the shapes coded by integer keys
    "hashed text": lambda i: "" if i == 3 else f"u{(i * 2654435761) % 2**40:x}" if i % 7 else f"kü{i}",
    "digits with leading zeros": lambda i: f"{i:03d}" if i % 2 else str(i),
    "prefix and digits": lambda i: f"CUST-{i}",
    "fixed width": lambda i: f"K{i:05d}",
}


@pytest.mark.parametrize("shape", CODING_SHAPES)
def test_summary_for_every_id_shape_equals_plain_pandas(shape):
    """Every id shape (text of varying length and script, leading zeros, prefixes) gives the customers of a plain
    pandas groupby, with the same occasions, and codes that name each row's own id."""
    rng = np.random.default_rng(4)
    t = random_tx(3000, seed=12)
    num = t["customer_id"].str[1:].astype(int).to_numpy()
    names = np.array([CODING_SHAPES[shape](i) for i in range(num.max() + 1)])
    t["customer_id"] = pd.array(names[num], dtype="string[pyarrow]")
    t["amount"] = rng.lognormal(3, 1, len(t))
    summary = customers.customer_summary(t)
    ref = reference_summary(t)
    assert sorted(summary["customer_id"]) == sorted(ref.index)
    got = summary.set_index("customer_id").loc[ref.index]
    assert got["frequency"].tolist() == ref["frequency"].tolist()
    np.testing.assert_allclose(got["monetary"].to_numpy(), t.groupby("customer_id")["amount"].sum().loc[ref.index])
    codes, distinct = customers.customer_codes(t["customer_id"])
    assert distinct[codes].tolist() == t["customer_id"].tolist()
    assert len(set(distinct)) == len(distinct) == t["customer_id"].nunique()
