"""The per-customer summary pushed down to an engine equals the pandas kernel (CDNOW, test books, hand-built
cases for time zones, cut-offs and the first occasion), on DuckDB, PostgreSQL and local Spark; the SQL each
dialect gets is pinned by golden files (an Ibis or sqlglot upgrade that changes it fails here)."""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest

from cvlib import customers, reading
from cvlib.analysis import cleaning
from cvlib.engines import summary as es
from cvlib.models.bgnbd import BetaGeoNBD
from cvlib.params import load_study
from tests.conftest import ROOT
from tests.servers import pg_load

GOLDEN = Path(__file__).parent / "fixtures" / "sql"
DIALECTS = ("duckdb", "postgres", "pyspark", "bigquery", "snowflake", "databricks")
ENGINE_OF = {"pyspark": "spark", "databricks": "spark"}


def duck(df: pd.DataFrame):
    return ibis.duckdb.connect().create_table("tx", df)


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal to the pandas kernel, customers in the same order (sums to 1e-9, their order of addition aside)."""
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)
    assert a.attrs["end"] == b.attrs["end"]


def tx(rows: list[tuple], orders: bool = False) -> pd.DataFrame:
    cols = ["customer_id", "date", "amount"] + (["order_id"] if orders else [])
    df = pd.DataFrame(rows, columns=cols)
    df["date"] = pd.to_datetime(df["date"], format="mixed")
    df.insert(0, "source_row", np.arange(1, len(df) + 1))
    return df


@pytest.fixture(scope="module")
def cdnow_clean() -> pd.DataFrame:
    study = load_study(ROOT / "params" / "cdnow.yaml")
    raw, bad = reading.read_transactions(study)
    return cleaning.clean_transactions(raw, study.cleaning, bad, "%Y%m%d").clean


def test_cdnow_summary_and_calibration_equal_the_pandas_kernel(cdnow_clean):
    t = duck(cdnow_clean)
    same(es.customer_summary(t, dt.date(1998, 6, 30)), customers.customer_summary(cdnow_clean, dt.date(1998, 6, 30)))
    for unit in ("weeks", "days"):
        same(es.calibration_holdout(t, dt.date(1997, 9, 30), dt.date(1998, 6, 30), unit=unit),
             customers.calibration_holdout(cdnow_clean, dt.date(1997, 9, 30), dt.date(1998, 6, 30), unit=unit))


def test_orders_book_with_ties_and_orders_over_two_days_equals_the_pandas_kernel():
    rng = np.random.default_rng(3)
    rows = []
    for i in range(600):
        c = f"c{rng.integers(0, 80):02d}"
        d = dt.date(2023, 1, 1) + dt.timedelta(days=int(rng.integers(0, 400)))
        rows.append((c, str(d), round(float(rng.gamma(2, 20)), 2), f"{c}-o{rng.integers(0, 6)}"))  # orders over days
    df = tx(rows, orders=True)
    t = duck(df)
    for by in ("day", "order", "week", "month"):
        end = dt.date(2023, 12, 31)
        same(es.customer_summary(t, end, by), customers.customer_summary(df, end, by))
        same(es.calibration_holdout(t, dt.date(2023, 9, 30), dt.date(2024, 2, 4), by),
             customers.calibration_holdout(df, dt.date(2023, 9, 30), dt.date(2024, 2, 4), by))


def test_hand_built_cut_off_first_occasion_and_order_owner():
    df = tx([("a", "2024-01-01 09:00", 10.0, "o1"), ("a", "2024-01-01 18:00", 5.0, "o2"),  # first day: 15
             ("a", "2024-01-08", 30.0, "o3"), ("a", "2024-01-31 23:59", 50.0, "o4"),   # the cut-off day: calibration
             ("a", "2024-02-01 00:00", 70.0, "o5"),                                    # the day after: holdout
             ("b", "2024-01-15", 20.0, "o6"), ("c", "2024-01-20", 8.0, "o7"), ("b", "2024-01-16", 1.0, "o7")],
            orders=True)
    s = es.calibration_holdout(duck(df), dt.date(2024, 1, 31), dt.date(2024, 2, 29), unit="days")
    s = s.set_index("customer_id")
    a = s.loc["a"]
    assert (a.x, a.t_x, a["T"], a.monetary) == (2, 30.0, 30.0, 95.0)  # 1 Jan, 8 Jan, 31 Jan (cut-off inclusive)
    assert a.monetary_value == pytest.approx((30 + 50) / 2)  # the first day's 15 is not in the mean
    assert (a.x_holdout, a.spend_holdout, a.duration_holdout) == (1, 70.0, 29.0)
    o = es.customer_summary(duck(df), dt.date(2024, 1, 31), by="order", unit="days").set_index("customer_id")
    assert o.loc["a", "x"] == 3 and o.loc["a", "monetary_value"] == pytest.approx((5 + 30 + 50) / 3)
    # order o7 belongs to the customer of its first row (c) and is dated by its first day
    assert o.loc["c", "monetary"] == 9.0 and o.loc["b", "monetary"] == 20.0


def test_occasions_by_month_and_week_are_dated_by_their_first_day_and_recency_by_the_last_purchase():
    """Monthly billing on several days: one occasion a month, dated by its first purchase day (x, t_x, the first
    occasion's value); recency and the last purchase from the last purchase day itself. Both engines agree."""
    rows = [("a", "2024-01-03", 10.0), ("a", "2024-01-10", 5.0), ("a", "2024-01-20", 1.0), ("a", "2024-02-05", 7.0),
            ("a", "2024-02-25", 3.0), ("a", "2024-03-02", 4.0), ("a", "2024-03-20", 6.0), ("b", "2024-03-30", 2.0)]
    df = tx(rows)
    end = dt.date(2024, 3, 31)
    m = customers.customer_summary(df, end, "month", "days").set_index("customer_id")
    assert m.loc["a", "frequency"] == 3 and m.loc["a", "x"] == 2 and m.loc["b", "frequency"] == 1
    assert m.loc["a", "t_x"] == (dt.date(2024, 3, 2) - dt.date(2024, 1, 3)).days  # occasions dated by first days
    assert m.loc["a", "T"] == (end - dt.date(2024, 1, 3)).days
    assert m.loc["a", "recency"] == 11 and m.loc["a", "last_purchase"] == pd.Timestamp("2024-03-20")
    assert m.loc["a", "monetary_value"] == (10.0 + 10.0) / 2 and m.loc["a", "monetary"] == 36.0  # Feb 10, Mar 10
    w = customers.customer_summary(df, end, "week", "days").set_index("customer_id")
    assert w.loc["a", "frequency"] == 7  # every purchase of a in its own week from Monday
    two = tx([("c", "2024-01-01", 1.0), ("c", "2024-01-07", 1.0), ("c", "2024-01-08", 1.0)])  # Mon, Sun, Mon
    assert customers.customer_summary(two, end, "week")["frequency"].item() == 2
    for by in ("week", "month"):
        same(es.customer_summary(duck(df), end, by, "days"), customers.customer_summary(df, end, by, "days"))


def test_local_day_of_a_zoned_timestamp():
    """23:30 UTC on 31 March is 1 April in Paris and Shanghai, 31 March in New York: the day (and so the
    occasions, x and the cut-off) follow the client's clock; a naive timestamp is taken as local time."""
    df = pd.DataFrame({"source_row": [1, 2, 3], "customer_id": ["a", "a", "b"], "amount": [10.0, 20.0, 5.0],
                       "date": pd.to_datetime(["2024-03-31 23:30", "2024-04-01 08:00", "2024-03-31 12:00"], utc=True)})
    t = duck(df)
    for zone, first_day, x in (("Europe/Paris", "2024-04-01", 0), ("America/New_York", "2024-03-31", 1),
                               (None, "2024-03-31", 1)):
        s = es.customer_summary(t, dt.date(2024, 4, 30), zone=zone).set_index("customer_id")
        assert str(s.loc["a", "first_purchase"].date()) == first_day and s.loc["a", "x"] == x, zone
    cut = es.calibration_holdout(t, dt.date(2024, 3, 31), dt.date(2024, 4, 30), zone="Asia/Shanghai")
    assert cut.set_index("customer_id").loc["b", "x"] == 0 and "a" not in set(cut["customer_id"])  # a starts 1 Apr
    naive = df.assign(date=df["date"].dt.tz_localize(None))
    s = es.customer_summary(duck(naive), dt.date(2024, 4, 30), zone="Europe/Paris").set_index("customer_id")
    assert str(s.loc["a", "first_purchase"].date()) == "2024-03-31"


def test_histories_with_counts_fit_the_same_model(cdnow_clean):
    t = duck(cdnow_clean)
    h = es.histories(es.summary_expr(es.days(t), dt.date(1997, 9, 30))).to_pandas()
    full = customers.customer_summary(cdnow_clean[cdnow_clean["date"] <= "1997-09-30"], dt.date(1997, 9, 30))
    assert int(h["customers"].sum()) == len(full) and len(h) < len(full) / 2
    a = BetaGeoNBD().fit(full)
    b = BetaGeoNBD().fit(h, weights=h["customers"].to_numpy())
    np.testing.assert_allclose(a.fitted_params(), b.fitted_params(), rtol=1e-6)


def test_postgres_summary_equals_the_pandas_kernel(postgres_url):
    df = tx([(f"c{i % 37}", str(dt.date(2023, 1, 1) + dt.timedelta(days=(i * 7919) % 500)), round(5 + i % 13 * 1.25, 2))
             for i in range(900)])
    pg_load(postgres_url, "clean_tx", "source_row bigint, customer_id text, date timestamp, amount double precision",
            df)
    con = ibis.connect(postgres_url)
    try:
        t = con.table("clean_tx")
        for by in ("day", "week", "month"):
            same(es.calibration_holdout(t, dt.date(2023, 9, 30), dt.date(2024, 5, 14), by, engine="postgres"),
                 customers.calibration_holdout(df, dt.date(2023, 9, 30), dt.date(2024, 5, 14), by))
    finally:
        con.disconnect()


@pytest.mark.spark
def test_spark_summary_equals_the_pandas_kernel(spark_master, tmp_path):
    from cvlib.engines.connect import spark_session

    day = [str(dt.date(2023, 1, 1) + dt.timedelta(days=(i * 104729) % 480)) for i in range(700)]
    df = tx([(f"c{i % 29}", day[i], round(3 + i % 11 * 2.5, 2)) for i in range(700)])
    df.to_parquet(tmp_path / "clean.parquet", index=False, coerce_timestamps="us")  # Spark reads no nanoseconds
    con = ibis.pyspark.connect(spark_session(spark_master))
    t = con.read_parquet(str(tmp_path / "clean.parquet"))
    for by in ("day", "month"):
        same(es.calibration_holdout(t, dt.date(2023, 8, 31), dt.date(2024, 4, 25), by, engine="spark"),
             customers.calibration_holdout(df, dt.date(2023, 8, 31), dt.date(2024, 4, 25), by))


# --------------------------------------------------------------------------- golden SQL
def compiled(dialect: str, by: str = "order") -> str:
    ibis.pyspark  # noqa: B018  (loading the backend registers the options its compiler reads)

    t = ibis.table({"source_row": "int64", "customer_id": "string", "date": "timestamp('UTC')", "amount": "float64",
                    "order_id": "string"}, name="transactions_clean")
    t = es.days(t, ENGINE_OF.get(dialect, dialect), "Europe/Paris", by)
    cal = es.summary_expr(t, dt.date(2024, 1, 31), by)
    hold = es.holdout_expr(t, dt.date(2024, 1, 31), dt.date(2024, 6, 30), by)
    return ibis.to_sql(cal.left_join(hold, "customer_id"), dialect=dialect) + "\n"


@pytest.mark.parametrize("by", ["order", "month"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_golden_sql(dialect, by):
    """The summary's SQL per dialect equals the committed file (CVLIB_UPDATE_GOLDEN_SQL=1 rewrites them after a
    deliberate upgrade: read the diff before committing it); occasions by order and by calendar month."""
    path = GOLDEN / (f"summary_{dialect}.sql" if by == "order" else f"summary_{by}_{dialect}.sql")
    sql = compiled(dialect, by)
    if os.environ.get("CVLIB_UPDATE_GOLDEN_SQL"):
        path.write_text(sql)
    assert path.read_text() == sql, f"the {dialect} SQL changed: compare with {path}"


def test_pinned_versions_work_together():
    """ibis-framework 12.0.0 with sqlglot newer than 30.17 emits a nameless DROP VIEW for Table.sql() on
    PostgreSQL: the pins in pyproject.toml keep the pair that works."""
    import sqlglot

    assert ibis.__version__ == "12.0.0" and sqlglot.__version__.startswith("30.17")
    text = (ROOT / "pyproject.toml").read_text()
    assert '"ibis-framework[duckdb,postgres]==12.0.0"' in text and '"sqlglot==30.17.0"' in text


@pytest.mark.parametrize("params", ["cdnow.yaml", "agency_demo.yaml", "small"])
def test_rfm_stage_outputs_equal_on_both_engines(params, tmp_path):
    """The RFM stage with rfm.summary_engine duckdb (the default) writes what the pandas path writes (scores, segments, clusters,
    the CLV inputs and the calibration split), on the example studies and a test book."""
    from cvlib.analysis import rfm
    from tests.conftest import small_book

    path = small_book(tmp_path, extra={"rfm": {"calibration_end": "2023-06-30"}}) if params == "small" \
        else ROOT / "params" / params
    run = tmp_path / "run"
    run.mkdir()
    cleaning.run_cleaning(load_study(path), run)
    files = ("rfm.parquet", "clv_summary.parquet", "clv_calibration.parquet")
    rfm.run_rfm(load_study(path, ["rfm.summary_engine=pandas"]), run)
    before = {f: pd.read_parquet(run / f) for f in files if (run / f).exists()}
    assert "clv_calibration.parquet" in before
    rfm.run_rfm(load_study(path, ["rfm.summary_engine=duckdb"]), run)
    for f, frame in before.items():
        pd.testing.assert_frame_equal(frame, pd.read_parquet(run / f), check_exact=False, rtol=1e-9, atol=1e-9)
