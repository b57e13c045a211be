"""The cleaning rules pushed down to DuckDB (`cleaning.clean_on_engine`) give what the pandas rules give: the kept
rows, the quarantine with its reasons, the audit, the reconciliation and the notes, on hand-made cases (every
case of test_cleaning.py runs both ways), on random messy frames, and on the example books."""
from __future__ import annotations

import datetime as dt
import json

import ibis
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvlib import reading
from cvlib.analysis import cleaning
from cvlib.errors import InputDataError, ParamError
from cvlib.io import ROW, STRING
from cvlib.params import Cleaning, load_study
from tests.conftest import ROOT
from tests.servers import pg_load


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


# --------------------------------------------------------------------------- pushed to the table's own engine
def book_on(engine: str, params: str, tmp_path, url: str | None = None):
    """The example book's rows as a table of text columns on PostgreSQL or Spark (a `line_no` key in file order),
    and its study reading that table with `cleaning.engine: source`."""
    study = load_study(ROOT / "params" / params)
    raw, malformed = reading.read_transactions(study)  # the file's cells as text, in cvlib's column names
    assert malformed.empty and (raw[ROW] == range(1, len(raw) + 1)).all()
    rows = raw.rename(columns={ROW: "line_no"})
    data = yaml.safe_load((ROOT / "params" / params).read_text(encoding="utf-8"))
    tx = {k: v for k, v in data["inputs"]["transactions"].items() if k not in ("path", "format", "encoding")}
    tx["columns"] = {c: c for c in rows.columns[1:]}
    if engine == "postgres":
        ddl = ", ".join(["line_no int primary key", *(f'"{c}" text' for c in rows.columns[1:])])
        pg_load(url, "book", ddl, rows.replace("", None))  # empty cells as NULL: read back as empty text
        tx.update(engine="postgres", table="book", connection={"url_env": "CVLIB_TEST_PG"})
    else:
        rows.to_parquet(tmp_path / "book.parquet", index=False)
        tx.update(engine="spark", path=str(tmp_path / "book.parquet"))
    data["inputs"]["transactions"] = {**tx, "key": ["line_no"]}
    data["cleaning"] = {**data.get("cleaning", {}), "engine": "source"}
    out = ROOT / "params" / f"_{engine}_{params}"  # beside the example, so its other relative paths hold
    out.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    try:
        return study, load_study(out)
    finally:
        out.unlink()


def same_as_the_file(study, pushed, tmp_path) -> None:
    """The stage outputs of the pushed-down cleaning equal the pandas path's on the file (the key column aside)."""
    a, b = tmp_path / "file", tmp_path / "pushed"
    cleaning.run_cleaning(study.model_copy(update={"cleaning": study.cleaning.model_copy(
        update={"engine": "pandas"})}), a)
    cleaning.run_cleaning(pushed, b)
    pd.testing.assert_frame_equal(pd.read_parquet(a / "transactions_clean.parquet"),
                                  pd.read_parquet(b / "transactions_clean.parquet"))
    qa, qb = (pd.read_csv(d / "quarantine.csv", dtype=str) for d in (a, b))
    pd.testing.assert_frame_equal(qa, qb.drop(columns=[c for c in qb.columns if c.startswith("key:")]))
    assert json.loads((a / "cleaning.json").read_text()) == json.loads((b / "cleaning.json").read_text())


@pytest.mark.parametrize("params", ["agency_demo.yaml", "cdnow_zh.yaml"])
def test_example_books_clean_the_same_on_postgres(params, postgres_url, tmp_path, monkeypatch):
    monkeypatch.setenv("CVLIB_TEST_PG", postgres_url)
    study, pushed = book_on("postgres", params, tmp_path, postgres_url)
    same_as_the_file(study, pushed, tmp_path)


def test_source_cleaning_without_the_temp_privilege_is_refused_with_the_fix(postgres_url, tmp_path, monkeypatch):
    """A read-only analyst role (no TEMP on its database) gets a message naming the role, the grant and the
    duckdb alternative before any rule runs; with the grant the same study cleans."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS notemp")
        conn.execute("CREATE DATABASE notemp")
        conn.execute("REVOKE TEMP ON DATABASE notemp FROM PUBLIC")
        conn.execute("DO $$ BEGIN CREATE ROLE analyst LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    db_url = postgres_url.rsplit("/", 1)[0] + "/notemp"
    study, pushed = book_on("postgres", "agency_demo.yaml", tmp_path, db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("GRANT SELECT ON book TO analyst")
    monkeypatch.setenv("CVLIB_TEST_PG", db_url.replace("cvlib@", "analyst@"))
    with pytest.raises(InputDataError, match=r"role 'analyst' may not create temporary tables in the database "
                                             r"'notemp'.*GRANT TEMP ON DATABASE \"notemp\" TO \"analyst\".*"
                                             r"cleaning.engine: duckdb"):
        cleaning.run_cleaning(pushed, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute('GRANT TEMP ON DATABASE notemp TO analyst')
    assert cleaning.run_cleaning(pushed, tmp_path / "granted").balanced


@pytest.mark.spark
@pytest.mark.parametrize("params", ["agency_demo.yaml", "cdnow_zh.yaml"])
def test_example_books_clean_the_same_on_spark(params, spark_master, tmp_path):
    study, pushed = book_on("spark", params, tmp_path)
    same_as_the_file(study, pushed, tmp_path)


def test_source_cleaning_needs_an_engine():
    with pytest.raises(ParamError, match="cleaning.engine is 'source'"):
        load_study(ROOT / "params" / "cdnow.yaml", ["cleaning.engine=source"])


def test_auto_cleans_a_file_pandas_read_in_pandas_and_an_engines_rows_on_duckdb():
    """`cleaning.engine: auto` (the default): a file's rows are in pandas already (copying them into DuckDB cost 2x
    the time and 3x the memory at 10M rows); a lake's or a database's rows are cleaned by DuckDB where they are."""
    from cvlib.params import Cleaning

    auto = Cleaning()
    assert auto.engine == "auto" and auto.engine_for("pandas") == "pandas"
    assert auto.engine_for("duckdb") == "duckdb" and auto.engine_for("postgres") == "duckdb"
    assert Cleaning(engine="duckdb").engine_for("pandas") == "duckdb"  # asked for: kept
    assert Cleaning(engine="source").engine_for("spark") == "source"


def test_the_cleaning_stage_on_a_csv_runs_the_pandas_path_by_default(tmp_path, monkeypatch):
    from cvlib.analysis import cleaning
    from tests.conftest import small_book

    params = small_book(tmp_path)
    monkeypatch.setattr(cleaning, "_clean_on_engine", lambda *a: pytest.fail("a CSV was copied into DuckDB"))
    res = cleaning.run_cleaning(load_study(params), tmp_path / "run")
    assert res.balanced and len(res.clean)
    monkeypatch.undo()
    called = []
    monkeypatch.setattr(cleaning, "_clean_on_engine", lambda *a: called.append(1) or res)
    cleaning.run_cleaning(load_study(params, ["cleaning.engine=duckdb"]), tmp_path / "run")
    assert called  # asked for by name, DuckDB cleans it
