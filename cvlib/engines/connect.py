"""Connections to the engines: the URL is read from an environment variable or a secrets file named in the
params (never from the params file itself) and kept out of every message and output."""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from cvlib.errors import InputDataError, ParamError
from cvlib.params import Study, TableInput
from cvlib.threads import engine_threads

SPARK_CONF = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
              "spark.sql.session.timeZone": "UTC", "spark.sql.shuffle.partitions": "4", "spark.driver.memory": "2g",
              "spark.sql.execution.arrow.pyspark.enabled": "true"}


def connection_url(study: Study, spec: TableInput, name: str) -> str | None:
    """The connection URL of an input table, from its environment variable or secrets file (None: none given)."""
    conn = spec.connection
    if conn is None:
        return None
    if conn.url_env is not None:
        url = os.environ.get(conn.url_env)
        if not url:
            raise ParamError(f"inputs.{name}.connection.url_env: the environment variable {conn.url_env} is not set. "
                             f"Set it to the {spec.engine} connection URL before running the study.")
        return url
    path = study.resolve(conn.secrets_file or "")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ParamError(f"inputs.{name}.connection.secrets_file: cannot read {path} ({type(exc).__name__}). It "
                         f"must be a YAML file with the URL under the key {conn.secrets_key!r}.") from None
    url = data.get(conn.secrets_key) if isinstance(data, dict) else None
    if not isinstance(url, str) or not url:
        raise ParamError(f"inputs.{name}.connection.secrets_file: {path} has no text under the key "
                         f"{conn.secrets_key!r} (the connection URL).")
    return url


def redact(text: str, url: str | None) -> str:
    """The text without the URL and without any password written in it (user:password@host)."""
    if url:
        text = text.replace(url, "<connection URL>")
        m = re.match(r"^[\w+.-]+://[^:/@]*:([^@]*)@", url)
        if m and m.group(1):
            text = text.replace(m.group(1), "***")
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


@contextmanager
def backend(spec: TableInput, url: str | None, base: Path, name: str) -> Iterator[Any]:
    """An Ibis backend for the table's engine (read-only where the engine allows it), closed afterwards."""
    import ibis

    try:
        if spec.engine == "duckdb":
            db = str((base / url).resolve()) if url and not url.startswith(("md:", ":memory:")) else ":memory:"
            con = duckdb(database=db, read_only=db != ":memory:")
        elif spec.engine == "spark":
            con = ibis.pyspark.connect(spark_session(url))
        else:
            con = ibis.connect(url)
    except Exception as exc:  # driver errors name the host and user: the URL itself is redacted
        raise InputDataError(f"inputs.{name}: cannot connect to {spec.engine}: "
                             f"{redact(str(exc), url)[:400]}. Check the connection URL and that the server is "
                             "reachable.") from None
    try:
        yield con
    finally:
        if spec.engine != "spark":  # the local Spark session is shared by the process (it takes seconds to start)
            con.disconnect()


def duckdb(**config: Any) -> Any:
    """An Ibis DuckDB connection (in memory unless `database` is given): `engine_threads` threads, no progress bar
    (it would be printed into the reports), at most ``CVLIB_ENGINE_MEMORY`` of memory (DuckDB's default: 80% of
    the machine) with anything beyond spilled to ``CVLIB_ENGINE_SPILL`` (default: the system's temporary folder)."""
    import ibis

    settings = {"threads": engine_threads(),
                "temp_directory": os.environ.get("CVLIB_ENGINE_SPILL") or tempfile.gettempdir()}
    if os.environ.get("CVLIB_ENGINE_MEMORY"):
        settings["memory_limit"] = os.environ["CVLIB_ENGINE_MEMORY"]
    import duckdb as duck

    con = ibis.duckdb.connect(**{**settings, **config})
    try:
        con.raw_sql("SET enable_progress_bar = false")  # a session option
    except duck.Error:  # in Jupyter without ipywidgets DuckDB draws no bar and refuses to be told so
        pass
    return con


@contextmanager
def duckdb_parquet(path: Path) -> Iterator[Any]:
    """A Parquet file as an Ibis table on a private in-memory DuckDB (threads: `engine_threads`)."""

    con = duckdb()
    try:
        yield con.read_parquet(str(path))
    finally:
        con.disconnect()


def spark_session(master: str | None) -> Any:
    """The process's Spark session (local[2] unless a master is given), with the settings the study needs."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master or "local[2]").appName("cvlib")
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def check_working_tables(con: Any, where: str) -> None:
    """Refuse, before any rule runs, a PostgreSQL session that may not create the temporary tables the pushed-down
    cleaning keeps its steps in (the TEMP privilege), with the two ways out."""
    if con.name != "postgres":
        return
    with con.raw_sql("SELECT current_user, current_database(), "
                     "has_database_privilege(current_database(), 'TEMP')") as cur:
        user, db, ok = cur.fetchone()
    if not ok:
        raise InputDataError(
            f"{where}: cleaning.engine is 'source', which keeps its working steps as temporary tables on the "
            f"server, but the role {user!r} may not create temporary tables in the database {db!r}. Ask the "
            f"database owner for GRANT TEMP ON DATABASE \"{db}\" TO \"{user}\", or set cleaning.engine: duckdb in "
            "the params file (the rows are then read once and cleaned by DuckDB on this machine).")


def upload(con: Any, name: str, df: pd.DataFrame) -> Any:
    """A small frame made a table of the connection's session (a temporary table; on Spark a temporary view)."""
    if con.name == "pyspark":
        import pyarrow as pa

        con._session.createDataFrame(pa.Table.from_pandas(df, preserve_index=False)).createOrReplaceTempView(name)
        return con.table(name)
    return con.create_table(name, df, temp=True)
