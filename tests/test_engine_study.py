"""A whole study whose transactions live in PostgreSQL, DuckDB or a Parquet lake read by local Spark gives the
same reports and outputs as the same rows in a CSV file (every stage through papermill: marked slow)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml
from bs4 import BeautifulSoup

from cvlib.io import KEY_PREFIX
from cvlib.run.runner import run_study
from tests.conftest import small_book
from tests.servers import pg_load

pytestmark = pytest.mark.slow
VOLATILE = {"run.json", "params.yaml", "index.html", "warnings.log"}  # run ids, times, the inputs' description


def report_text(path: Path) -> str:
    text = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser").get_text("\n")
    text = re.sub(r"run \d{8}-\d{6}(-\d+)?", "run <id>", text)
    return "\n".join(line for line in text.splitlines() if not line.startswith("key:"))  # a database row's key


def assert_same_run(a: Path, b: Path) -> None:
    """Every file of run `a` is in run `b` with the same content: data files equal, reports' text equal (their run
    ids aside), the quarantine equal once the key columns of database rows are set aside."""
    names = sorted(p.name for p in a.iterdir() if p.is_file() and p.suffix != ".ipynb" and p.name not in VOLATILE)
    assert names == sorted(p.name for p in b.iterdir() if p.is_file() and p.suffix != ".ipynb"
                           and p.name not in VOLATILE)
    for name in names:
        fa, fb = a / name, b / name
        if name.endswith(".parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(fa), pd.read_parquet(fb), obj=name)
        elif name.endswith(".csv"):
            qb = pd.read_csv(fb, dtype=str)
            qb = qb.drop(columns=[c for c in qb.columns if c.startswith(KEY_PREFIX)])
            pd.testing.assert_frame_equal(pd.read_csv(fa, dtype=str), qb, obj=name)
        elif name.endswith(".json"):
            assert json.loads(fa.read_text()) == json.loads(fb.read_text()), name
        elif name.endswith(".html"):
            assert report_text(fa) == report_text(fb), name
        elif name.endswith(".xlsx"):
            pd.testing.assert_frame_equal(pd.read_excel(fa), pd.read_excel(fb), obj=name)


def engine_params(csv_params: Path, name: str, source: dict) -> Path:
    data = yaml.safe_load(csv_params.read_text())
    tx = data["inputs"]["transactions"]
    for k in ("path", "encoding"):
        tx.pop(k, None)
    tx.update(source)
    out = csv_params.with_name(f"{name}.yaml")
    out.write_text(yaml.safe_dump(data))
    return out


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine_study")
    params = small_book(tmp, name="book")
    rows = pd.read_csv(tmp / "tx.csv", dtype=str)
    rows.insert(0, "line_no", range(1, len(rows) + 1))
    # the reference: cleaning and summary by pandas (the engine studies run the default, DuckDB, or their engine)
    pandas = ["cleaning.engine=pandas", "rfm.summary_engine=pandas"]
    return tmp, params, rows, run_study(params, reports_dir=tmp / "reports", overrides=pandas).run_dir


@pytest.mark.parametrize("cleaning", ["duckdb", "source"])  # rows fetched and cleaned by DuckDB, or cleaned in place
def test_postgres_study_equals_the_csv_study(csv_run, postgres_url, monkeypatch, cleaning):
    tmp, params, rows, expected = csv_run
    # typed as a client database would hold them: dates as DATE, amounts as NUMERIC
    pg_load(postgres_url, "book_tx", "line_no int primary key, customer text, date date, amount numeric(12,2)", rows)
    monkeypatch.setenv("CVLIB_TEST_PG", postgres_url)
    p = engine_params(params, "book_pg", {"engine": "postgres", "table": "book_tx", "key": ["line_no"],
                                          "connection": {"url_env": "CVLIB_TEST_PG"}})
    run = run_study(p, reports_dir=tmp / f"reports_pg_{cleaning}", overrides=[f"cleaning.engine={cleaning}"])
    assert_same_run(expected, run.run_dir)


def test_duckdb_study_equals_the_csv_study(csv_run, monkeypatch):
    tmp, params, rows, expected = csv_run
    con = duckdb.connect(str(tmp / "book.duckdb"))
    con.execute("CREATE TABLE sales AS SELECT line_no, customer, CAST(date AS DATE) AS date, "
                "CAST(amount AS DECIMAL(12, 2)) AS amount FROM rows")
    con.close()
    monkeypatch.setenv("CVLIB_TEST_DUCKDB", str(tmp / "book.duckdb"))
    p = engine_params(params, "book_duck", {"engine": "duckdb", "table": "sales", "key": ["line_no"],
                                            "connection": {"url_env": "CVLIB_TEST_DUCKDB"}})
    data = yaml.safe_load(p.read_text())
    data["rfm"] = {**data.get("rfm", {}), "summary_engine": "duckdb"}  # the cleaning and the summary pushed down
    data["cleaning"] = {**data.get("cleaning", {}), "engine": "duckdb"}
    p.write_text(yaml.safe_dump(data))
    assert_same_run(expected, run_study(p, reports_dir=tmp / "reports_duck").run_dir)


@pytest.mark.spark
def test_spark_lake_study_equals_the_csv_study(csv_run, spark_master):
    tmp, params, rows, expected = csv_run
    lake = tmp / "lake"
    lake.mkdir(exist_ok=True)
    half = len(rows) // 2
    rows.iloc[:half].to_parquet(lake / "part-0.parquet", index=False)
    rows.iloc[half:].to_parquet(lake / "part-1.parquet", index=False)
    p = engine_params(params, "book_spark", {"engine": "spark", "path": "../lake", "key": ["line_no"]})
    run = run_study(p, reports_dir=tmp / "reports_spark", overrides=["cleaning.engine=source"])  # Spark cleans
    assert_same_run(expected, run.run_dir)
