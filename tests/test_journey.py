"""The customer journey module against hand-built cases: cycles and overdue customers, lifecycle stages and
their transitions, directed cross-sell rules against counts by hand and on a planted sequence."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cvlib import customers
from cvlib.analysis import channels, journey

END = pd.Timestamp("2024-12-31")


def tx_of(rows: dict[str, list[tuple[str, float]]]) -> pd.DataFrame:
    out = [{"customer_id": c, "date": pd.Timestamp(d), "amount": a} for c, buys in rows.items() for d, a in buys]
    return pd.DataFrame(out)


def every(days: int, last: pd.Timestamp, n: int, amount: float = 10.0) -> list[tuple[str, float]]:
    return [(str((last - pd.Timedelta(days=days * i)).date()), amount) for i in range(n)][::-1]


def test_a_customer_buying_every_30_days_last_seen_100_days_ago_is_overdue_at_k_2():
    tx = tx_of({"late": every(30, END - pd.Timedelta(days=100), 8),
                "fresh": every(30, END - pd.Timedelta(days=1), 8),   # bought yesterday: not overdue
                "once": [("2024-12-01", 5.0)]})
    c = journey.purchase_cycles(tx, END, k=2.0)
    assert c.loc["late", "median_gap_days"] == 30 and c.loc["late", "recency_days"] == 100
    assert abs(c.loc["late", "cycle_days"] - 30) < 1e-9  # 7 gaps of 30 shrunk toward a group cycle of 30
    assert bool(c.loc["late", "overdue"]) and c.loc["late", "days_overdue"] == pytest.approx(40)
    assert not c.loc["fresh", "overdue"] and c.loc["fresh", "expected_next"] == END - pd.Timedelta(days=1) + pd.Timedelta(days=30)
    assert c.loc["once", "cycle_days"] == 30 and not c.loc["once", "overdue"]  # the group's cycle; 30 days ago


def test_few_gaps_are_shrunk_toward_the_groups_cycle():
    tx = tx_of({"a": every(10, END, 21), "b": every(100, END, 2), "c": every(10, END, 21)})
    groups = pd.Series({"a": "g", "b": "g", "c": "g"})
    c = journey.purchase_cycles(tx, END, groups, prior_gaps=2.0)
    typical = 10.0  # the group's cycle: the median of its customers' own medians (10, 100, 10)
    assert c.loc["b", "cycle_days"] == pytest.approx((100 * 1 + typical * 2) / 3)
    assert c.loc["a", "cycle_days"] == pytest.approx(10.0)


def test_lifecycle_stages_and_transitions_on_a_small_book_with_known_histories():
    period = 90
    books = {
        "new": [("2024-12-01", 50.0)],                                           # first purchase this period
        "grower": every(30, pd.Timestamp("2024-09-15"), 10, 10.0) + every(15, END, 6, 40.0),
        "steady": every(30, END, 24, 20.0),
        "decliner": every(30, pd.Timestamp("2024-10-01"), 20, 50.0) + [("2024-12-20", 5.0)],
        "gone": every(20, pd.Timestamp("2024-03-01"), 10, 20.0),                  # cycle 20, silent since March
    }
    tx = tx_of(books)
    now, table = journey.lifecycle_flow(tx, END, period)
    assert now.to_dict() == {"decliner": "decline", "gone": "lapsed", "grower": "growth", "new": "acquisition",
                             "steady": "maturity"}
    assert table.loc[journey.NOT_YET, "acquisition"] == 1  # 'new' was not a customer a period ago
    assert table.loc["maturity", "maturity"] == 1  # steady stayed steady
    assert table.loc["lapsed", "lapsed"] == 1  # gone was already past its cycle in September
    assert int(table.to_numpy().sum()) == len(books)


def first_days_of(rows: list[tuple[str, str, int]]) -> tuple[np.ndarray, pd.Index, pd.Index]:
    """(customer, item, day) rows as journey.first_days' matrix, its customers and its items."""
    d = pd.DataFrame(rows, columns=["customer_id", "product", "day"])
    cust, ids = pd.factorize(d["customer_id"], sort=True)
    item, items = customers.item_codes(d["product"])
    return journey.first_days(cust, item, d["day"].to_numpy(), len(ids), len(items)), pd.Index(ids), items


def test_sequence_rule_counts_by_hand():
    rows = [("a", "media", 1), ("a", "analytics", 5), ("b", "media", 2), ("b", "analytics", 9), ("c", "media", 3),
            ("c", "analytics", 3),  # the same day: no order, counts for neither direction
            ("d", "analytics", 1), ("d", "media", 4), ("e", "media", 2), ("f", "print", 1)]
    first, ids, items = first_days_of(rows)
    assert first[list(ids).index("c"), list(items).index("analytics")] == 3
    got = journey.sequence_rules(first, items, min_support=0.1, min_confidence=0.1, min_lift=0.0, max_p_value=1.0)
    r = got.set_index(got["antecedent"].map(lambda a: a[0]) + ">" + got["consequent"])
    # media buyers: a, b, c, d, e (5); analytics after media: a, b (2); media after analytics: d (1)
    assert r.loc["media>analytics", ["a_first", "b_first"]].tolist() == [2, 1]
    assert r.loc["media>analytics", "support"] == pytest.approx(2 / 6)
    assert r.loc["media>analytics", "confidence"] == pytest.approx(2 / 5)
    assert "analytics>media" not in r.index  # fewer bought media after analytics than before: never backwards


def planted_sequence_book(seed: int = 4, n: int = 3000) -> tuple[np.ndarray, pd.Index]:
    """Customers buying up to six products on random days; B follows A for half of A's buyers, some 150 days
    later on average (a planted sequence); N ('noise') is bought at random, mostly by heavy buyers, in no relation
    to anything."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n):
        heavy = rng.random() < 0.3
        for item, p in zip("ACDE", (0.4, 0.3, 0.3, 0.2)):
            if rng.random() < (p + 0.4 if heavy else p):
                rows.append((f"c{c}", item, int(rng.integers(0, 600))))
        a = [r for r in rows if r[0] == f"c{c}" and r[1] == "A"]
        if a and rng.random() < 0.5:
            rows.append((f"c{c}", "B", a[0][2] + 1 + int(rng.exponential(150))))
        elif rng.random() < 0.1:
            rows.append((f"c{c}", "B", int(rng.integers(0, 600))))
        if rng.random() < (0.7 if heavy else 0.05):
            rows.append((f"c{c}", "N", int(rng.integers(0, 600))))
    first, _, items = first_days_of(rows)
    return first, items


def test_a_planted_sequence_gives_a_to_b_never_b_to_a_and_a_noise_product_gets_no_rule():
    first, items = planted_sequence_book()
    rules = journey.sequence_rules(first, items, 0.02, 0.2, 1.2, 0.05)
    pairs = set(zip(rules["antecedent"].map(lambda a: a[0]), rules["consequent"]))
    assert ("A", "B") in pairs and ("B", "A") not in pairs
    assert not any("N" in p for p in pairs), pairs  # heavy buyers hold it with everything: no lift once matched
    # the symmetric whole-history lift that was used before would have passed the noise product
    held = first < journey.NEVER
    col = {c: i for i, c in enumerate(items)}
    n_, c_ = held[:, col["N"]], held[:, col["C"]]
    assert (n_ & c_).mean() / (n_.mean() * c_.mean()) > 1.2
    # forward in time: mined before day 500, checked on the rest
    mined = np.where(first <= 500, first, journey.NEVER)
    kept = journey.holdout_rules(journey.sequence_rules(mined, items, 0.02, 0.2, 1.2, 0.05), first, items, 500, 1.2)
    assert ("A", "B") in set(zip(kept["antecedent"].map(lambda a: a[0]), kept["consequent"]))
    assert (kept["holdout_lift"] >= 1.2).all()


def test_the_next_best_product_is_one_they_lack_in_the_direction_observed():
    cal = pd.DataFrame({"media": [1, 1, 1, 1, 0, 0], "analytics": [1, 1, 1, 0, 0, 1], "print": [0, 0, 1, 1, 1, 0]},
                       index=list("abcdef")).astype(bool)
    rules = pd.DataFrame({"antecedent": [("media",)], "consequent": ["analytics"]})
    nb = journey.next_best_product(cal, rules).set_index("customer_id")
    assert nb.loc["d", "suggested_product"] == "analytics" and nb.loc["d", "rule"] == "media -> analytics"
    assert "f" not in nb.index  # holds analytics without media: the rule is never read backwards
    for cust, row in nb.iterrows():
        assert not cal.loc[cust, row["suggested_product"]]  # never a product they already have


def test_channel_mix_recovers_a_planted_channel_difference_by_hand():
    rows = []
    for i in range(40):  # web customers: two visits, 100 each; store customers: one visit of 50
        c = f"w{i}"
        rows += [(c, "2024-01-05", 100.0, "web"), (c, "2024-03-05", 100.0, "web" if i % 4 else "store")]
    for i in range(20):
        rows.append((f"s{i}", "2024-02-01", 50.0, "store"))
    tx = pd.DataFrame(rows, columns=["customer_id", "date", "amount", "channel"]).assign(date=lambda d: pd.to_datetime(d["date"]))
    clv = pd.Series({**{f"w{i}": 300.0 for i in range(40)}, **{f"s{i}": 60.0 for i in range(20)}})
    churned = pd.Series({**{f"w{i}": False for i in range(40)}, **{f"s{i}": True for i in range(20)}})
    mix = channels.channel_mix(tx, clv, churned, cac={"web": 30.0, "store": 20.0})
    acq = mix["acquisition"].set_index("channel")
    assert acq.loc["web", "customers"] == 40 and acq.loc["store", "customers"] == 20
    assert acq.loc["web", "conversion"] == 1.0 and acq.loc["store", "conversion"] == 0.0
    assert acq.loc["web", "clv_to_cac"] == pytest.approx(10.0) and acq.loc["store", "clv_to_cac"] == pytest.approx(3.0)
    assert acq.loc["web", "roi"] == pytest.approx((40 * 300 - 40 * 30) / (40 * 30))
    used = mix["used"].set_index("channel")
    assert used.loc["store", "customers"] == 30 and used.loc["store", "revenue"] == 10 * 100 + 20 * 50
    multi = mix["multi"].set_index("reach")
    assert multi.loc["multi-channel", "customers"] == 10 and multi.loc["multi-channel", "retention_rate"] == 1.0
    assert multi.loc["single channel", "retention_rate"] == pytest.approx(30 / 50)
    assert mix["migration"].loc["web", "store"] == 10 and mix["migration"].loc["web", "web"] == 30
    assert used.loc["store", "clv_to_cac"] == pytest.approx((10 * 300 + 20 * 60) / 30 / ((10 * 30 + 20 * 20) / 30))
    # an acquisition channel and cost per customer (a customer table) take the place of the first purchase's
    acquired = pd.Series({**{f"w{i}": "partner" for i in range(40)}, **{f"s{i}": "store" for i in range(20)}})
    own = channels.channel_mix(tx, clv, churned, acquired, pd.Series(15.0, index=clv.index))["acquisition"]
    assert own.set_index("channel").loc["partner", "clv_to_cac"] == pytest.approx(20.0)


def test_the_agency_example_recovers_its_planted_cross_sell_and_channel_patterns(tmp_path):
    """cvlib.examples plants 'media buying -> analytics', pitch winning the largest clients, referrals the
    cheapest, multi-channel clients worth more and a one-way move from the account team to the client portal."""
    from cvlib import io
    from cvlib.analysis import cleaning, rfm
    from cvlib.params import load_study

    study = load_study("params/agency_demo.yaml", {"rfm.clusters.k_range": [2, 2]})
    cleaning.run_cleaning(study, tmp_path)
    rfm.run_rfm(study, tmp_path)
    res = journey.run_journey(study, tmp_path)
    rules = res.rules.assign(a=res.rules["antecedent"].map(tuple))
    hit = rules[(rules["a"] == ("media buying",)) & (rules["consequent"] == "analytics")]
    assert len(hit) == 1 and hit["lift"].iloc[0] > 1.4 and hit["holdout_lift"].iloc[0] > 1.2
    assert not ((rules["a"] == ("creative",)) & (rules["consequent"] == "analytics")).any()  # nothing planted there
    assert not ((rules["a"] == ("analytics",)) & (rules["consequent"] == "media buying")).any()  # never backwards
    suggested = res.customers.dropna(subset=["suggested_product"])
    assert len(suggested) and "analytics" in set(suggested["suggested_product"])
    acq = res.channels["acquisition"].set_index("channel")
    assert acq["revenue"].div(acq["customers"]).idxmax() == "pitch"  # revenue: CLV needs the CLV stage
    assert acq["cac"].idxmin() == "referral" and acq["cac"].idxmax() == "pitch"
    multi = res.channels["multi"].set_index("reach")
    assert multi.loc["multi-channel", "mean_revenue"] > 1.5 * multi.loc["single channel", "mean_revenue"]
    m = res.channels["migration"]
    assert m.loc["account team", "client portal"] > 3 * m.loc["client portal", "account team"]
    # monthly billing (occasion: month): a client invoiced within the last month is never overdue,
    # and a client already lost is not overdue either; counted by purchase day, active clients would be
    c = res.customers
    assert study.occasion == "month" and c["lost"].sum() > 0
    assert not c.loc[c["recency_days"] <= 31, "overdue"].any() and not c.loc[c["lost"], "overdue"].any()
    by_day = journey.purchase_cycles(None, res.end, k=2.0, p=customers.purchases(io.read_stage(tmp_path, "transactions_clean.parquet")))
    assert by_day.loc[by_day["recency_days"] <= 31, "overdue"].any()
    # the drivers stage's cycle (within_cycle, the strategy rules' cycle_days) is this very cycle
    from cvlib.analysis.drivers import study_cycles
    from cvlib.engines import aggregates, duckdb_parquet

    with duckdb_parquet(tmp_path / "transactions_clean.parquet") as t:
        b = aggregates.daily(t, study.occasion)
    theirs = study_cycles(study, b, io.read_stage(tmp_path, "rfm.parquet"), res.end)
    ours = c.set_index("customer_id")["cycle_days"]
    assert np.allclose(theirs.set_axis(theirs.index.astype(str)).reindex(ours.index).to_numpy(), ours.to_numpy())


def test_the_lapsed_rule_uses_the_cycle_shrinkage_it_is_given():
    """Lapsed compares recency with the same shrunk cycle the report shows (`journey.cycles.prior_gaps`)."""
    d = lambda n: str((END - pd.Timedelta(days=n)).date())  # noqa: E731
    rows = {"a": [(d(60), 10.0), (d(50), 10.0)]}  # own gap 10 days, last purchase 50 days ago
    rows |= {f"b{i}": [(d(210), 10.0), (d(110), 10.0), (d(10), 10.0)] for i in range(5)}  # every 100 days
    tx = tx_of(rows)
    own_only = journey.lifecycle_stage(tx, END, period_days=30, prior_gaps=0.0)
    shrunk = journey.lifecycle_stage(tx, END, period_days=30, prior_gaps=50.0)
    assert own_only["a"] == "lapsed"  # 50 days > 2 x 10
    assert shrunk["a"] != "lapsed"  # 50 days < 2 x (10 + 50 x 100) / 51


def monthly_billing(last: pd.Timestamp, months: int, lines: tuple[int, ...] = (3, 12, 21)) -> list[tuple[str, float]]:
    """A retainer client billed every month, one invoice per service line on its own day of the month."""
    out = []
    for m in range(months):
        month = (last - pd.DateOffset(months=m)).to_period("M")
        out += [(str(month.to_timestamp() + pd.Timedelta(days=d - 1))[:10], 1000.0) for d in lines]
    return sorted(o for o in out if pd.Timestamp(o[0]) <= last)


def test_monthly_billing_is_one_occasion_a_month_so_an_active_client_is_not_overdue():
    """Three service lines invoiced on the 3rd, 12th and 21st: counted by purchase day the cycle is 9 days and a
    client billed 20 days ago looks overdue at k = 2; counted by billing month it is a month, and only the
    client silent for three months is overdue."""
    tx = tx_of({"active": monthly_billing(pd.Timestamp("2024-12-21"), 24),   # last invoice 10 days before END
                "between": monthly_billing(pd.Timestamp("2024-12-12"), 24, (3, 12)),
                "silent": monthly_billing(pd.Timestamp("2024-09-21"), 24)})  # nothing since September
    by_day = journey.purchase_cycles(tx, END, k=2.0, occasion="day")
    assert by_day.loc["between", "cycle_days"] < 15 and by_day.loc["between", "overdue"]  # the wrong call
    by_month = journey.purchase_cycles(tx, END, k=2.0, occasion="month")
    assert by_month["cycle_days"].round(2).eq(round(365.25 / 12, 2)).all()
    assert by_month.loc["active", "recency_days"] == 10 and by_month.loc["between", "recency_days"] == 19
    assert not by_month.loc["active", "overdue"] and not by_month.loc["between", "overdue"]
    assert by_month.loc["silent", "overdue"] and by_month.loc["silent", "days_overdue"] == pytest.approx(101 - 2 * 365.25 / 12)
    weekly = journey.purchase_cycles(tx_of({"w": every(7, END, 10)}), END, occasion="week")
    assert weekly.loc["w", "cycle_days"] == 7.0


@pytest.mark.parametrize("occasion", ["day", "week", "month"])
def test_the_clv_summary_and_the_journey_count_the_same_occasions(occasion):
    """One occasion per study: the CLV models' frequency (x + 1), RFM recency and the journey's occasions and
    recency agree customer by customer, on a random book with several purchases a week and a month."""
    rng = np.random.default_rng(7)
    days = pd.to_datetime("2023-01-01") + pd.to_timedelta(rng.integers(0, 700, 3000), unit="D")
    tx = pd.DataFrame({"customer_id": [f"c{i}" for i in rng.integers(0, 150, 3000)], "date": days,
                       "amount": rng.gamma(2, 10, 3000).round(2)})
    s = customers.customer_summary(tx, END, occasion).set_index("customer_id")
    j = journey.purchase_cycles(tx, END, occasion=occasion)
    assert len(j) == len(s) == 150
    assert (s.loc[j.index, "frequency"].to_numpy() == j["occasions"].to_numpy()).all()
    assert (s.loc[j.index, "recency"].to_numpy() == j["recency_days"].to_numpy()).all()
    if occasion != "day":
        assert (s["frequency"] < customers.customer_summary(tx, END, "day").set_index("customer_id")["frequency"]
                .loc[s.index]).any()


def test_a_lost_customer_is_a_win_back_case_not_overdue():
    tx = tx_of({"late": every(30, END - pd.Timedelta(days=100), 8), "gone": every(30, END - pd.Timedelta(days=400), 8),
                "ended": every(30, END - pd.Timedelta(days=70), 8)})
    by_silence = journey.purchase_cycles(tx, END, k=2.0, lost=365)
    assert by_silence["overdue"].to_dict() == {"ended": True, "gone": False, "late": True}
    assert by_silence["lost"].to_dict() == {"ended": False, "gone": True, "late": False}
    assert by_silence.loc["gone", "days_overdue"] == 0
    flags = pd.Series({"ended": True, "late": False})  # the drivers stage's churn flags (a contract that ended)
    by_flag = journey.purchase_cycles(tx, END, k=2.0, lost=flags)
    assert by_flag["overdue"].to_dict() == {"ended": False, "gone": True, "late": True}
