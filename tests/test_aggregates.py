"""The CLV, value, journey, campaign and drivers stages read aggregates the engine wrote (cvlib.engines.aggregates), never the
clean transactions as rows: the aggregates give what the rows give, on hand-built books and on the agency example."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cvlib import customers, io
from cvlib.analysis import campaign, churn, drivers, journey, loyalty
from cvlib.engines import aggregates
from cvlib.params import Drivers

END = pd.Timestamp("2024-06-30")


def messy_book(seed: int = 3, n: int = 400) -> pd.DataFrame:
    """Rows with times of day, several rows on one day, products and channels (some missing), in file order."""
    rng = np.random.default_rng(seed)
    cust = rng.integers(0, 60, n)
    when = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 540 * 24, n), unit="h")
    return pd.DataFrame({
        "customer_id": [f"k{c:02d}" for c in cust], "date": when,
        "amount": np.round(rng.gamma(2.0, 20.0, n), 2),
        "product": rng.choice(["a", "b", "c", None], n, p=[0.4, 0.3, 0.2, 0.1]),
        "channel": rng.choice(["web", "store", None], n, p=[0.5, 0.4, 0.1])})


@pytest.fixture(scope="module")
def book_and_rows():
    tx = messy_book()
    with aggregates.frame_table(tx) as t:
        b = aggregates.book(t, "auto")
    return b, tx


def test_day_totals_give_the_cycles_and_lifecycle_the_rows_give(book_and_rows):
    b, tx = book_and_rows
    rows = customers.purchases(tx)
    assert list(b.p.ids) == list(rows.ids) and b.end == tx["date"].max().normalize() and b.occasion == "day"
    assert len(b.p.code) < len(tx)  # several rows on one day are one entry
    for occasion in ("day", "week", "month"):
        pd.testing.assert_frame_equal(journey.purchase_cycles(None, END, p=b.p, occasion=occasion),
                                      journey.purchase_cycles(None, END, p=rows, occasion=occasion))
    for at in (END, END - pd.Timedelta(days=200)):
        now_a, flow_a = journey.lifecycle_flow(None, at, 90, p=b.p)
        now_b, flow_b = journey.lifecycle_flow(None, at, 90, p=rows)
        pd.testing.assert_series_equal(now_a, now_b)
        pd.testing.assert_frame_equal(flow_a, flow_b)


def test_first_days_of_items_equal_those_of_the_rows(book_and_rows):
    b, tx = book_and_rows
    rows = customers.purchases(tx)
    item, items = customers.item_codes(tx["product"])
    expected = journey.first_days(rows.code, item, rows.day, len(rows.ids), len(items))
    got_item, got_items = b.items["item"].to_numpy(), b.item_names
    got = journey.first_days(b.items["code"].to_numpy(), got_item, b.items["day"].to_numpy(),
                             len(b.p.ids), len(got_items))
    assert list(got_items) == list(items) == ["a", "b", "c"]  # a row with no product is not an item
    np.testing.assert_array_equal(got, expected)


def test_first_and_last_channel_by_time_then_by_the_rows_place():
    tx = pd.DataFrame({"customer_id": ["x", "x", "x", "y", "y"],
                       "date": pd.to_datetime(["2024-01-02 09:00", "2024-01-02 09:00", "2024-01-01 18:00",
                                               "2024-02-01 10:00", "2024-02-01 08:00"]),
                       "amount": [1.0, 2.0, 3.0, 4.0, 5.0], "channel": ["store", "web", "phone", "web", None]})
    with aggregates.frame_table(tx) as t:
        b = aggregates.book(t, "day")
        first = aggregates.first_channel(t)  # the CLV stage's acquisition channel without a channel attribute
    assert first.to_dict() == {"x": "phone", "y": "unknown"}
    label = np.append(np.asarray(b.channel_names, dtype=object), None)  # code -1: no channel
    fl = b.first_last.set_axis(b.p.ids).apply(lambda c: label[c.to_numpy()])
    # x: the evening of 1 January first; two rows at the same time on 2 January: the later row is the last
    assert fl.loc["x", "first_channel"] == "phone" and fl.loc["x", "last_channel"] == "web"
    # y: 08:00 (no channel) before 10:00 on the same day
    assert pd.isna(fl.loc["y", "first_channel"]) and fl.loc["y", "last_channel"] == "web"
    rev = b.channels.assign(customer_id=b.p.ids[b.channels["code"]], channel=label[b.channels["channel"]]).set_index(
        ["customer_id", "channel"])["revenue"]
    assert rev[("x", "store")] == 1.0 and rev[("x", "web")] == 2.0 and rev[("x", "phone")] == 3.0
    from cvlib.analysis.channels import channel_mix_of

    m = channel_mix_of(b)["migration"]
    assert m.loc["phone", "web"] == 1 and m.loc["unknown", "web"] == 1  # 'unknown' for a row without a channel


def test_campaign_windows_from_day_totals_equal_those_from_rows(book_and_rows):
    _, tx = book_and_rows
    ids = sorted(tx["customer_id"].unique())
    assigned = pd.DataFrame({"customer_id": ids, "campaign": "spring",
                             "group": np.where(np.arange(len(ids)) % 2, "treatment", "control"),
                             "date": pd.Timestamp("2023-09-15")})
    with aggregates.frame_table(tx) as t:
        daily = aggregates.daily_spend(t, pd.Series(ids[:40]))
    assert set(daily["customer_id"]) <= set(ids[:40])  # only the asked customers come back
    ours = campaign.outcomes(daily, assigned.iloc[:40], 60)
    theirs = campaign.outcomes(tx, assigned.iloc[:40], 60)
    assert ours["bought"].sum() > 5 and ours["revenue_before"].gt(0).sum() > 5
    pd.testing.assert_frame_equal(ours, theirs)


def test_churn_risk_and_cohorts_from_day_totals_equal_those_from_rows(book_and_rows):
    b, tx = book_and_rows
    ours, theirs = churn.churn_risk(b.p, END, 60, Drivers()), churn.churn_risk(tx, END, 60, Drivers())
    assert ours.method == theirs.method and ours.scores["churned"].any()
    pd.testing.assert_frame_equal(ours.scores, theirs.scores, check_exact=False, rtol=1e-12)
    early = churn.churn_risk(b.p, END - pd.Timedelta(days=200), 60, Drivers())  # a cutoff before the last rows
    assert len(early.scores) == tx.loc[tx["date"] < END - pd.Timedelta(days=199), "customer_id"].nunique()
    for name, m in loyalty.cohort_matrices(b.p).items():
        pd.testing.assert_frame_equal(m, loyalty.cohort_matrices(tx)[name], check_exact=False, rtol=1e-12)


def test_early_behaviour_counts_from_the_first_purchases_time():
    """Hand-built: a first purchase at 15:00 opens a 30-day window that closes at 15:00 thirty days later."""
    tx = pd.DataFrame({"customer_id": ["a", "a", "a", "a", "a", "b"],
                       "date": pd.to_datetime(["2024-01-01 15:00", "2024-01-01 18:00", "2024-01-20 09:00",
                                               "2024-01-31 14:59", "2024-01-31 15:00", "2024-03-01 00:00"]),
                       "amount": [10.1, 20.2, 5.0, 7.0, 100.0, 3.0], "product": ["p", None, "q", "q", "r", None]})
    got = drivers.early_behaviour(tx, 30)
    assert list(got.index) == ["a", "b"]
    assert got.loc["a", "first_order_value"] == 30.3 and got.loc["b", "first_order_value"] == 3.0  # exact sum
    assert got.loc["a", "early_purchases"] == 3 and got.loc["b", "early_purchases"] == 1
    assert got.loc["a", "early_service_lines"] == 2 and got.loc["b", "early_service_lines"] == 0  # no 'r', no None
    no_product = drivers.early_behaviour(tx.drop(columns="product"), 30)
    assert "early_service_lines" not in no_product.columns


def test_repeat_tracking_counts_occasions_as_the_summary_does():
    """Hand-built: weekly occasions (a second purchase in the same week is not a repeat), orders (two orders on
    the first day: the second is a repeat occasion, but not after the first day), and the holdout end inclusive."""
    tx = pd.DataFrame({"customer_id": ["a", "a", "a", "a", "b", "b", "c"],
                       "date": pd.to_datetime(["2024-01-01 10:00", "2024-01-03 10:00", "2024-01-15 23:00", "2024-02-01 10:00",
                                               "2024-01-08 09:00", "2024-01-08 17:00", "2024-01-02 10:00"]),
                       "amount": 10.0, "order_id": ["o1", "o2", "o3", "o4", "o5", "o6", "o7"]})
    day = lambda s: (pd.Timestamp(s) - pd.Timestamp(0)).days  # noqa: E731
    with aggregates.frame_table(tx) as t:
        firsts, repeats = aggregates.repeat_tracking(t, pd.Series(["a", "b"]), pd.Timestamp("2024-01-15").date(),
                                                     "week")
        assert firsts.to_dict() == {day("2024-01-01"): 1, day("2024-01-08"): 1}  # c is not asked for
        assert repeats.to_dict() == {day("2024-01-15"): 1}  # 3 January is in a's first week; 1 February is after
        _, by_order = aggregates.repeat_tracking(t, pd.Series(["a", "b"]), pd.Timestamp("2024-02-01").date(), "order")
        assert by_order.to_dict() == {day("2024-01-03"): 1, day("2024-01-15"): 1, day("2024-02-01"): 1}


def test_profitability_sums_are_exact_so_equal_spend_ranks_equal():
    """0.1 + 0.2 and 0.3 are the same revenue (a float sum would make the first 0.30000000000000004 and rank it
    above the second in a rank-normalised value index)."""
    from cvlib.analysis import value_index
    from cvlib.params import Value

    tx = pd.DataFrame({"customer_id": ["a", "a", "b"], "amount": [0.1, 0.2, 0.3]})
    rfm = pd.DataFrame({"customer_id": ["a", "b"], "tenure": [100, 100]})
    p = value_index.profitability(tx, rfm, Value(), 0.3).set_index("customer_id")
    assert p.loc["a", "revenue"] == p.loc["b", "revenue"] == 0.3
    assert p.loc["a", "direct_cost"] == p.loc["b", "direct_cost"]


def same_clv(c, from_rows) -> None:
    pd.testing.assert_frame_equal(c.customers, from_rows.customers)
    if c.holdout is not None or from_rows.holdout is not None:
        pd.testing.assert_frame_equal(c.holdout.tracking, from_rows.holdout.tracking)
    if c.variants is not None or from_rows.variants is not None:
        pd.testing.assert_frame_equal(c.variants, from_rows.variants)
    assert c.retention == from_rows.retention and c.retention_how == from_rows.retention_how
    assert c.notes == from_rows.notes


def test_the_clv_and_value_stages_on_cdnow_validate_on_the_holdout_from_the_engines_counts(tmp_path, monkeypatch):
    """CDNOW sample, 39 + 39 weeks: the stage (engine aggregates only) gives the CLV, holdout tracking and
    variants the rows give; the tracking ends at every repeat purchase of the calibration customers."""
    from cvlib.analysis import cleaning, clv, rfm
    from cvlib.params import load_study

    study = load_study("params/cdnow_sample.yaml", {"clv.variants": ["aov", "retention_growth"], "clv.bootstrap": 0})
    cleaning.run_cleaning(study, tmp_path)
    rfm.run_rfm(study, tmp_path)
    real = io.read_stage
    tx, cal = real(tmp_path, "transactions_clean.parquet"), real(tmp_path, "clv_calibration.parquet")
    from_rows = clv.build_clv(study, tx, real(tmp_path, "rfm.parquet"), real(tmp_path, "clv_summary.parquet"), cal)
    monkeypatch.setattr(io, "read_stage", lambda run_dir, name, *a, **k: (
        pytest.fail("the CLV stage read the clean transactions as rows") if name == "transactions_clean.parquet"
        else real(run_dir, name, *a, **k)))
    c = clv.run_clv(study, tmp_path)
    assert c.holdout is not None and c.variants is not None and np.isfinite(c.retention)
    assert c.holdout.tracking["actual"].iloc[-1] == cal["x"].sum() + cal["x_holdout"].sum()
    same_clv(c, from_rows)
    # the value stage too: its validation as of the calibration end, against holdout revenue summed here by hand
    from cvlib.analysis import value

    v = value.run_value(study, tmp_path).validation
    cut, end = pd.Timestamp(study.rfm.calibration_end), pd.Timestamp(study.rfm.holdout_end)
    known = tx.loc[tx["date"] < cut + pd.Timedelta(days=1), "customer_id"].astype(str).unique()
    later = tx[(tx["date"] >= cut + pd.Timedelta(days=1)) & (tx["date"] < end + pd.Timedelta(days=1))]
    assert len(v.customers) == len(known) == len(cal)
    assert v.customers["holdout_revenue"].sum() == pytest.approx(
        later.loc[later["customer_id"].astype(str).isin(known), "amount"].sum(), rel=1e-12)


def test_the_clv_value_journey_campaign_and_drivers_stages_never_read_the_transactions_as_rows(tmp_path, monkeypatch):
    """On the agency example (products, channels, a campaign), with io.read_stage refusing the clean
    transactions: the stages run on the engine's aggregates and give what the rows give."""
    from cvlib import reading
    from cvlib.analysis import cleaning, clv, rfm
    from cvlib.params import load_study

    study = load_study("params/agency_demo.yaml", {"rfm.clusters.k_range": [2, 2]})
    cleaning.run_cleaning(study, tmp_path)
    rfm.run_rfm(study, tmp_path)
    tx = io.read_stage(tmp_path, "transactions_clean.parquet")
    real = io.read_stage
    from_rows = clv.build_clv(study, tx, real(tmp_path, "rfm.parquet"), real(tmp_path, "clv_summary.parquet"),
                              real(tmp_path, "clv_calibration.parquet", optional=True),
                              reading.read_attributes(study, "customers"))

    def refuse(run_dir, name, *a, **k):
        assert name != "transactions_clean.parquet", "a stage read the clean transactions as rows"
        return real(run_dir, name, *a, **k)

    monkeypatch.setattr(io, "read_stage", refuse)
    c = clv.run_clv(study, tmp_path)
    assert c.variants is not None and c.by_channel is not None and c.contracts  # holdout: see the CDNOW test
    same_clv(c, from_rows)
    from cvlib.analysis import value

    v = value.run_value(study, tmp_path)
    assert "service_lines_bought" in set(v.scores.weights["column"])
    assert not [n for n in v.scores.notes if "service lines" in n.lower()]  # not missing for anyone
    assert v.customers["revenue"].sum() == pytest.approx(tx["amount"].sum(), rel=1e-12)
    from cvlib.engines import duckdb_parquet

    with duckdb_parquet(tmp_path / "transactions_clean.parquet") as t:
        lines = aggregates.distinct_per_customer(t, "product")
    by_hand = tx.groupby(tx["customer_id"].astype(str))["product"].nunique()
    assert lines.max() > 1 and lines.set_axis(lines.index.astype(str)).to_dict() == by_hand.to_dict()
    res = journey.run_journey(study, tmp_path)
    camp = campaign.run_campaign(study, tmp_path)
    assert res.rules is not None and len(res.rules) and res.channels is not None and len(camp.outcomes)
    seg = io.by_customer(real(tmp_path, "rfm.parquet"))["segment"].astype(str)
    c = study.journey.cycles
    cyc = journey.purchase_cycles(None, res.end, seg, c.overdue_k, c.prior_gaps, p=customers.purchases(tx),
                                  occasion=res.occasion, lost=float(study.drivers.churn_days))
    got = res.customers.set_index("customer_id")
    assert list(got.index) == [str(i) for i in cyc.index] and got["overdue"].any() and got["lost"].any()
    for col in ("cycle_days", "recency_days", "lost", "overdue", "days_overdue"):
        np.testing.assert_allclose(got[col].to_numpy(dtype=float), cyc[col].to_numpy(dtype=float), rtol=1e-12)
    pd.testing.assert_frame_equal(camp.outcomes, campaign.outcomes(tx, camp.outcomes[
        ["customer_id", "campaign", "group", "date"]], study.campaign.window_days), check_exact=False, rtol=1e-12)
    # the drivers stage (run after the journey, which would otherwise take its churn flags as who is lost)
    d = drivers.run_drivers(study, tmp_path)
    assert d.risk.scores["churned"].any() and len(d.drivers)
    for name, m in loyalty.cohort_matrices(tx).items():
        pd.testing.assert_frame_equal(getattr(d, "cohorts" if name == "customers" else "revenue_cohorts"), m,
                                      check_exact=False, rtol=1e-12)
    risk_cycle = d.risk.scores.set_index("customer_id")["cycle_days"].reindex([str(i) for i in cyc.index])
    np.testing.assert_allclose(risk_cycle.to_numpy(dtype=float), cyc["cycle_days"].to_numpy(dtype=float), rtol=1e-12)


def test_the_aggregates_are_the_same_bytes_whatever_order_the_engines_threads_finish_in():
    """Sums exact (decimals) and rows in code order: two fetches of a book large enough for several threads give
    identical arrays, so a rerun writes identical files."""
    tx = messy_book(seed=5, n=300_000)
    tx["amount"] = tx["amount"] + 0.1  # cents that are not exact in binary
    got = []
    for _ in range(2):
        with aggregates.frame_table(tx) as t:
            got.append(aggregates.book(t, "day"))
    a, b = got
    for x, y in ((a.p.code, b.p.code), (a.p.day, b.p.day), (a.p.amount, b.p.amount)):
        assert x.tobytes() == y.tobytes()
    pd.testing.assert_frame_equal(a.channels, b.channels, check_exact=True)
    pd.testing.assert_frame_equal(a.items, b.items, check_exact=True)
    assert np.all(np.diff(a.p.code) >= 0)  # in customer order
    rows = customers.purchases(tx)
    np.testing.assert_allclose(np.bincount(a.p.code, weights=a.p.amount), np.bincount(rows.code, weights=rows.amount))


def test_yearly_retention_by_hand_with_the_window_edges():
    """A year's window ending at the last purchase's time: (end - 2y, end - 1y] against (end - 1y, end]. d's
    purchase exactly one year before the end is in the earlier window; e's exactly two years before is in none."""
    from cvlib.analysis import clv

    end = pd.Timestamp("2024-12-31 12:00")
    y = pd.Timedelta(days=365)
    rows = [("a", end - 1.5 * y), ("a", end - 0.5 * y), ("b", end - 1.2 * y), ("c", end - 0.2 * y),
            ("d", end - y), ("d", end), ("e", end - 2 * y), ("e", end - 0.1 * y), ("f", end - 2.1 * y)]
    tx = pd.DataFrame(rows, columns=["customer_id", "date"]).assign(amount=1.0)
    r, how = clv.yearly_retention(tx)
    assert r == pytest.approx(2 / 3) and "2 of 3" in how


def test_the_rfm_stage_on_the_engine_counts_late_rows_without_reading_them(book_and_rows):
    """An observation end before the last purchase: the engine path (no rows) names the same late transactions
    (every row dated after the end's day, times of day included) as the pandas path."""
    from cvlib.analysis import rfm
    from cvlib.params import Rfm

    _, tx = book_and_rows
    rules = Rfm.model_validate({"end_date": "2024-03-31", "clusters": {"enabled": False}})
    late = int((tx["date"] >= pd.Timestamp("2024-04-01")).sum())
    assert late > 10
    with aggregates.frame_table(tx) as t:
        engine = rfm.build_rfm(None, rules, t, "day")
    rows = rfm.build_rfm(tx, rules, occasion="day")
    assert engine.notes == rows.notes and any(f"{late:,} transactions" in n for n in engine.notes)
    pd.testing.assert_frame_equal(engine.rfm, rows.rfm, check_exact=False, rtol=1e-9)
