"""Client tables read where they live: PostgreSQL (a real server started by a fixture), DuckDB, a Parquet lake and
local Spark give the same cleaning as the same rows from a CSV file; queries are read-only; URLs never shown."""
from __future__ import annotations

import os

import duckdb
import pandas as pd
import pytest
import yaml

from cvlib import io, reading
from cvlib.analysis import cleaning
from cvlib.errors import InputDataError, ParamError
from cvlib.io import KEY_PREFIX
from cvlib.params import load_study
from tests.conftest import write_study
from tests.servers import pg_load

# a messy book: a duplicate, a return netted into its order, unreadable and missing values, a test id,
# a non-positive line, an outlier, a date outside the window
ROWS = [
    ("c1", "2023-01-05", "10.00", "o1"), ("c1", "2023-01-05", "10.00", "o1"), ("c1", "2023-02-01", "25.50", "o2"),
    ("c1", "2023-02-03", "-5.50", "o2"), ("c2", "2023-01-09", "12,5x", "o3"), ("", "2023-01-10", "8.00", "o4"),
    ("c3", "not a date", "9.00", "o5"), ("TEST", "2023-03-01", "4.00", "o6"), ("c3", "2023-03-02", "0", "o7"),
    ("c4", "2023-03-03", "99999.00", "o8"), ("c4", "2019-01-01", "7.00", "o9"), ("c5", "2023-04-01", "0.10", "o10"),
    ("c5", "2023-04-02", "0.20", "o11"), ("c2", "2023-04-04", "33.33", "o12"), ("c6", "2023-05-05", "14.99", "o13"),
] + [(f"n{i}", f"2023-0{1 + i % 6}-1{i % 9}", f"{20 + i}.00", f"p{i}") for i in range(40)]
COLUMNS = {"customer_id": "customer", "date": "date", "amount": "amount", "order_id": "order"}
CLEANING = {"cleaning": {"duplicates": {"enabled": True}, "test_ids": {"enabled": True, "ids": ["TEST"]},
                         "window": {"enabled": True, "start": "2020-01-01", "end": "2023-12-31"},
                         "outliers": {"enabled": True, "method": "iqr", "threshold": 3.0, "action": "drop"}}}


def book() -> pd.DataFrame:
    return pd.DataFrame(ROWS, columns=["customer", "date", "amount", "order"])


def engine_study(tmp, name: str, source: dict, extra: dict | None = None):
    """The CSV study's params with inputs.transactions read from `source` instead of the file."""
    csv = write_study(tmp, book(), name=name, columns=COLUMNS, extra={**CLEANING, **(extra or {})})
    data = yaml.safe_load(csv.read_text())
    tx = data["inputs"]["transactions"]
    for k in ("path", "encoding"):
        tx.pop(k)
    tx.update(source)
    path = csv.with_name(f"{name}_engine.yaml")
    path.write_text(yaml.safe_dump(data))
    return load_study(csv), load_study(path)


def clean(study):
    spec = study.inputs.transactions
    raw, bad = reading.read_transactions(study)
    return cleaning.clean_transactions(raw, study.cleaning, bad, spec.date_format, spec.decimal, spec.thousands)


def assert_same_cleaning(a, b) -> None:
    """Two cleanings are the same: kept rows, audit, reconciliation, quarantine (the key columns of a database row
    aside) and every count. Kept rows the engine wrote straight to the stage's file are read from it."""
    kept = lambda r: r.clean if r.clean is not None else io.read_stage(r.clean_file.parent, r.clean_file.name)  # noqa: E731
    pd.testing.assert_frame_equal(kept(a), kept(b))
    pd.testing.assert_frame_equal(a.audit, b.audit)
    pd.testing.assert_frame_equal(a.reconciliation, b.reconciliation)
    q = b.quarantine.drop(columns=[c for c in b.quarantine.columns if c.startswith(KEY_PREFIX)])
    pd.testing.assert_frame_equal(a.quarantine, q)
    sa, sb = a.summary(), b.summary()
    assert {k: v for k, v in sa.items() if k != "notes"} == {k: v for k, v in sb.items() if k != "notes"}
    assert sa["balanced"] and sa["rows_quarantined"] >= 5 and sa["rows_duplicates"] == 1 and sa["rows_netted"] == 1


def with_line(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(line_no=range(1, len(df) + 1))[["line_no", *df.columns]]


# --------------------------------------------------------------------------- PostgreSQL
def test_postgres_text_table_cleans_like_the_csv(tmp_path, postgres_url, monkeypatch):
    pg_load(postgres_url, "tx_text", "line_no int primary key, customer text, date text, amount text, \"order\" text",
            with_line(book()))
    monkeypatch.setenv("CVLIB_TEST_PG", postgres_url)
    a, b = engine_study(tmp_path, "pgtext", {"engine": "postgres", "table": "public.tx_text", "key": ["line_no"],
                                             "connection": {"url_env": "CVLIB_TEST_PG"}})
    ra, rb = clean(a), clean(b)
    assert_same_cleaning(ra, rb)
    # a database row has no line number: the quarantine names it by its key
    q = rb.quarantine.set_index("rule")
    assert q.loc["unparseable_amount", KEY_PREFIX + "line_no"] == "5"


def test_postgres_typed_columns_numeric_exact_and_local_day(tmp_path, postgres_url, monkeypatch):
    """NUMERIC comes back as its exact digits (cast in SQL), a timestamptz counts on the client's local day."""
    df = pd.DataFrame({"id": [1, 2, 3], "customer": ["a", "a", "b"],
                       "ts": ["2024-03-31 22:30:00+00", "2024-03-31 21:30:00+00", "2024-06-30 23:59:59+00"],
                       "amount": ["0.10", "1234567890123.45", "19.99"], "order": ["x", "y", "z"]})
    pg_load(postgres_url, "tx_typed", "id int, customer text, ts timestamptz, amount numeric(18,2), \"order\" text", df)
    monkeypatch.setenv("CVLIB_TEST_PG", postgres_url)
    src = {"engine": "postgres", "table": "tx_typed", "key": ["id"], "connection": {"url_env": "CVLIB_TEST_PG"},
           "columns": {**COLUMNS, "date": "ts"}}
    _, paris = engine_study(tmp_path, "pgtz", src, extra={"timezone": "Europe/Paris", "cleaning": {}})
    raw, _ = reading.read_transactions(paris)
    assert raw["amount"].tolist() == ["0.10", "1234567890123.45", "19.99"]
    # 22:30 UTC on 31 March is 00:30 on 1 April in Paris (summer time); 21:30 UTC is 23:30 on 31 March
    assert raw["date"].tolist() == ["2024-04-01 00:30:00", "2024-03-31 23:30:00", "2024-07-01 01:59:59"]
    _, utc = engine_study(tmp_path, "pgutc", src, extra={"cleaning": {}})
    assert reading.read_transactions(utc)[0]["date"].tolist()[0] == "2024-03-31 22:30:00"
    days = clean(paris).clean["date"].dt.date.astype(str).tolist()
    assert days == ["2024-04-01", "2024-03-31", "2024-07-01"]


def test_postgres_query_is_read_only_and_checked(tmp_path, postgres_url, monkeypatch):
    pg_load(postgres_url, "tx_q", "line_no int, customer text, date text, amount text, \"order\" text",
            with_line(book()))
    monkeypatch.setenv("CVLIB_TEST_PG", postgres_url)
    conn = {"engine": "postgres", "key": ["line_no"], "connection": {"url_env": "CVLIB_TEST_PG"}}
    query = "SELECT * FROM tx_q WHERE customer IS DISTINCT FROM 'TEST'"
    _, ok = engine_study(tmp_path, "pgq", {**conn, "query": query})
    raw, _ = reading.read_transactions(ok)
    assert len(raw) == len(ROWS) - 1 and "TEST" not in set(raw["customer_id"])
    for bad in ("DELETE FROM tx_q", "SELECT 1; DROP TABLE tx_q", "CREATE TABLE x AS SELECT * FROM tx_q"):
        _, study = engine_study(tmp_path, "pgbad", {**conn, "query": bad})
        with pytest.raises(ParamError, match="one SELECT statement"):
            reading.read_transactions(study)
    # a SELECT that writes (a function with side effects) fails in the read-only transaction
    _, sneaky = engine_study(tmp_path, "pgsneaky", {**conn, "query": "SELECT *, nextval('s') AS n FROM tx_q"})
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as c:
        c.execute("CREATE SEQUENCE IF NOT EXISTS s")
    with pytest.raises(InputDataError, match="read-only"):
        reading.read_transactions(sneaky)
    with psycopg.connect(postgres_url) as c:
        assert c.execute("SELECT count(*) FROM tx_q").fetchone()[0] == len(ROWS)


def test_connection_url_from_secrets_file_never_shown(tmp_path, postgres_url):
    bad_url = postgres_url.replace("cvlib@", "cvlib:Sup3rSecret@").replace("/postgres", "/no_such_db")
    (tmp_path / "secrets.yaml").write_text(yaml.safe_dump({"client_db": bad_url}))
    _, study = engine_study(tmp_path, "pgsecret", {"engine": "postgres", "table": "tx_text", "key": ["line_no"],
                                                   "connection": {"secrets_file": "../secrets.yaml",
                                                                  "secrets_key": "client_db"}})
    with pytest.raises(InputDataError) as err:
        reading.read_transactions(study)
    assert "no_such_db" in str(err.value) and "Sup3rSecret" not in str(err.value)
    assert "Sup3rSecret" not in study.to_yaml(resolved=True)
    _, unset = engine_study(tmp_path, "pgunset", {"engine": "postgres", "table": "t", "key": ["id"],
                                                 "connection": {"url_env": "CVLIB_NO_SUCH_VARIABLE"}})
    with pytest.raises(ParamError, match="CVLIB_NO_SUCH_VARIABLE is not set"):
        reading.read_transactions(unset)


def test_key_must_identify_a_row(tmp_path, postgres_url, monkeypatch):
    pg_load(postgres_url, "tx_nokey", "line_no int, customer text, date text, amount text, \"order\" text",
            with_line(book()).assign(line_no=1))
    monkeypatch.setenv("CVLIB_TEST_PG", postgres_url)
    _, study = engine_study(tmp_path, "pgnokey", {"engine": "postgres", "table": "tx_nokey", "key": ["line_no"],
                                                  "connection": {"url_env": "CVLIB_TEST_PG"}})
    with pytest.raises(InputDataError, match="does not identify a row"):
        reading.read_transactions(study)
    _, study = engine_study(tmp_path, "pgbadkey", {"engine": "postgres", "table": "tx_nokey", "key": ["line"],
                                                   "connection": {"url_env": "CVLIB_TEST_PG"}})
    with pytest.raises(InputDataError, match="key column"):
        reading.read_transactions(study)


# --------------------------------------------------------------------------- DuckDB
def test_duckdb_table_and_parquet_lake_clean_like_the_csv(tmp_path, monkeypatch):
    df = with_line(book())
    con = duckdb.connect(str(tmp_path / "client.duckdb"))
    con.execute("CREATE TABLE sales AS SELECT * FROM df")
    con.close()
    monkeypatch.setenv("CVLIB_TEST_DUCKDB", str(tmp_path / "client.duckdb"))
    a, b = engine_study(tmp_path, "duck", {"engine": "duckdb", "table": "sales", "key": ["line_no"],
                                           "connection": {"url_env": "CVLIB_TEST_DUCKDB"}})
    assert_same_cleaning(clean(a), clean(b))
    lake = tmp_path / "lake"
    lake.mkdir()
    for i, part in enumerate((df.iloc[:20], df.iloc[20:41], df.iloc[41:])):  # a lake of three files
        part.drop(columns="line_no").to_parquet(lake / f"part-{i}.parquet", index=False)
    _, c = engine_study(tmp_path, "lake", {"engine": "duckdb", "path": "../lake"})
    rc = clean(c)
    assert_same_cleaning(clean(a), rc)
    assert {KEY_PREFIX + "filename", KEY_PREFIX + "file_row_number"} <= set(rc.quarantine.columns)
    # the rules run by DuckDB on the lake itself (nothing fetched) write what the pandas path writes for the CSV
    ref, pushed = tmp_path / "ref", tmp_path / "pushed"
    ref.mkdir(), pushed.mkdir()
    _, c = engine_study(tmp_path, "lake_pushed", {"engine": "duckdb", "path": "../lake"},
                        extra={"cleaning": {**CLEANING["cleaning"], "engine": "duckdb"}})
    on_lake = cleaning.run_cleaning(c, pushed)
    assert on_lake.clean is None  # DuckDB wrote the kept rows itself: none came to Python
    assert_same_cleaning(cleaning.run_cleaning(a, ref), on_lake)
    pd.testing.assert_frame_equal(pd.read_parquet(ref / "transactions_clean.parquet"),
                                  pd.read_parquet(pushed / "transactions_clean.parquet"))
    assert not list(pushed.glob(".*part*"))  # the engine's file was moved into place, nothing left beside it


def test_pushed_down_cleaning_counts_zoned_timestamps_on_the_clients_day(tmp_path, monkeypatch):
    """A TIMESTAMPTZ column read in place by DuckDB: the rules see the client's wall clock, as the fetch path does."""
    con = duckdb.connect(str(tmp_path / "tz.duckdb"))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE tx AS SELECT * FROM (VALUES (1, 'a', TIMESTAMPTZ '2024-03-31 22:30:00+00', 10.0, 'o1'), "
                "(2, 'a', TIMESTAMPTZ '2024-03-31 21:30:00+00', 20.0, 'o2'), "
                "(3, 'b', TIMESTAMPTZ '2024-06-30 23:59:59+00', 5.5, 'o3')) t(id, customer, ts, amount, \"order\")")
    con.close()
    monkeypatch.setenv("CVLIB_TEST_DUCKDB", str(tmp_path / "tz.duckdb"))
    src = {"engine": "duckdb", "table": "tx", "key": ["id"], "connection": {"url_env": "CVLIB_TEST_DUCKDB"},
           "columns": {**COLUMNS, "date": "ts"}}
    _, fetched = engine_study(tmp_path, "tzf", src, extra={"timezone": "Europe/Paris", "cleaning": {}})
    _, pushed = engine_study(tmp_path, "tzp", src, extra={"timezone": "Europe/Paris", "cleaning": {"engine": "duckdb"}})
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    cleaning.run_cleaning(fetched, a), cleaning.run_cleaning(pushed, b)  # DuckDB writes the kept rows
    ka, kb = (io.read_stage(d, "transactions_clean.parquet") for d in (a, b))
    assert ka["date"].astype(str).tolist() == ["2024-04-01 00:30:00", "2024-03-31 23:30:00", "2024-07-01 01:59:59"]
    pd.testing.assert_frame_equal(ka, kb)


# --------------------------------------------------------------------------- Spark
@pytest.mark.spark
def test_local_spark_lake_cleans_like_the_csv(tmp_path, spark_master):
    lake = tmp_path / "lake"
    lake.mkdir()
    df = with_line(book())
    df.iloc[:30].to_parquet(lake / "a.parquet", index=False)
    df.iloc[30:].to_parquet(lake / "b.parquet", index=False)
    a, b = engine_study(tmp_path, "spark", {"engine": "spark", "path": "../lake", "key": ["line_no"]})
    assert_same_cleaning(clean(a), clean(b))


def test_params_refuse_incomplete_sources(tmp_path):
    for source, message in (({"engine": "postgres", "table": "t", "connection": {"url_env": "X"}}, "needs key"),
                            ({"table": "t", "key": ["id"]}, "needs an engine"),
                            ({"engine": "postgres", "table": "t", "key": ["id"]}, "needs connection"),
                            ({"engine": "postgres", "path": "x.csv"}, "reads a table or query"),
                            ({"engine": "postgres", "table": "t", "key": ["id"],
                              "connection": {"url_env": "X", "secrets_file": "s.yaml"}}, "one of the two")):
        with pytest.raises(ParamError, match=message):
            engine_study(tmp_path, "refused", source)
    assert os.environ.get("CVLIB_NO_SUCH_VARIABLE") is None


@pytest.mark.parametrize("engine", ["bigquery", "snowflake"])
def test_live_warehouse_table_reads_when_credentials_are_given(engine, tmp_path, monkeypatch):
    """Opt-in: with CVLIB_TEST_<ENGINE>_URL (an Ibis URL) and CVLIB_TEST_<ENGINE>_TABLE (a table with the book's
    columns and a line_no key) set, the warehouse table cleans like the CSV. Without them only the compiled SQL
    is tested (tests/test_engine_summary.py)."""
    url, table = (os.environ.get(f"CVLIB_TEST_{engine.upper()}_{k}") for k in ("URL", "TABLE"))
    if not (url and table):
        pytest.skip(f"no {engine} credentials: set CVLIB_TEST_{engine.upper()}_URL and _TABLE to run it live")
    monkeypatch.setenv("CVLIB_TEST_WAREHOUSE", url)
    a, b = engine_study(tmp_path, engine, {"engine": engine, "table": table, "key": ["line_no"],
                                           "connection": {"url_env": "CVLIB_TEST_WAREHOUSE"}})
    assert_same_cleaning(clean(a), clean(b))


def test_a_pseudonymised_lake_study_learns_its_ids_from_the_engine(tmp_path, monkeypatch):
    """The pseudonymiser needs every id; for a table on an engine it asks the engine for the distinct ids (a lake
    is not loaded to learn them), and they are the ids the CSV gives."""
    from cvlib import privacy

    lake = tmp_path / "lake"
    lake.mkdir()
    book().to_parquet(lake / "part-0.parquet", index=False)
    monkeypatch.setenv("CVLIB_PSEUDONYM_KEY", "k" * 40)
    a, b = engine_study(tmp_path, "pseudo", {"engine": "duckdb", "path": "../lake"},
                        extra={"privacy": {"pseudonymize_ids": True}})
    from_csv = privacy.study_ids(a)
    calls = []
    monkeypatch.setattr(reading, "read_transactions", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(
        AssertionError("the lake was read whole")))
    assert privacy.study_ids(b) == from_csv and "c1" in from_csv and not calls


def test_an_empty_lake_cleaned_in_place_stops_with_a_message(tmp_path):
    lake = tmp_path / "lake"
    lake.mkdir()
    book().iloc[:0].to_parquet(lake / "part-0.parquet", index=False)
    _, study = engine_study(tmp_path, "empty", {"engine": "duckdb", "path": "../lake"},
                            extra={"cleaning": {"engine": "duckdb"}})
    with pytest.raises(InputDataError, match="has no data rows"):
        cleaning.run_cleaning(study, tmp_path)
