"""One client table read by its engine: a table, a read-only SELECT or a Parquet lake, its columns as exact text
(NUMERIC cast in SQL), timestamps on the client's local clock, rows numbered by the engine in key order."""
from __future__ import annotations

import tempfile
from typing import Any

import numpy as np
import pandas as pd

from cvlib.engines.connect import backend, connection_url, redact
from cvlib.engines.summary import local_time
from cvlib.errors import InputDataError, ParamError
from cvlib.io import KEY_PREFIX, ROW, STRING
from cvlib.params import Study, TableInput

DIALECTS = {"duckdb": "duckdb", "postgres": "postgres", "spark": "spark", "bigquery": "bigquery",
            "snowflake": "snowflake"}


def describe(study: Study, spec: TableInput) -> str:
    """Where a table is read from, for messages: a file, a lake, a table or a query on an engine."""
    if spec.path is not None:
        kind = "the file" if spec.engine == "pandas" else f"the {spec.engine} Parquet lake"
        return f"{kind} {study.resolve(spec.path)}"
    return f"the {spec.engine} table {spec.table}" if spec.table else f"the {spec.engine} query"


def check_select(query: str, engine: str, name: str) -> None:
    """Refuse anything but one SELECT (or set operation of SELECTs): a params file never changes a database."""
    import sqlglot
    from sqlglot import exp

    try:
        parsed = [p for p in sqlglot.parse(query, read=DIALECTS[engine]) if p is not None]
    except sqlglot.errors.ParseError as exc:
        raise ParamError(f"inputs.{name}.query cannot be parsed as {engine} SQL: {str(exc)[:300]}") from None
    bad = len(parsed) != 1 or not isinstance(parsed[0], exp.Query) or any(
        isinstance(n, (exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Alter, exp.Command, exp.Merge))
        for n in parsed[0].walk())
    if bad:
        raise ParamError(f"inputs.{name}.query must be one SELECT statement (it is run read-only); found "
                         f"{len(parsed)} statement(s) starting {query.strip()[:60]!r}.")


def source(con: Any, study: Study, spec: TableInput, name: str) -> Any:
    """The table as an (unexecuted) Ibis expression on the backend."""
    if spec.query is not None:
        check_select(spec.query, spec.engine, name)
        return con.sql(spec.query)
    if spec.table is not None:
        *db, table = spec.table.split(".")
        return con.table(table, database=".".join(db) or None)
    path = study.resolve(spec.path or "")
    if spec.engine == "duckdb":  # the file and the row within it are the key of a lake row
        files = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
        return con.read_parquet(files, filename=True, file_row_number=True)
    return con.read_parquet(str(path))  # Spark reads a folder's files itself


LAKE_KEY = ["filename", "file_row_number"]


def row_key(spec: TableInput, where: str) -> list[str]:
    """The columns rows are numbered by: the given key, else a DuckDB lake's file and row within it."""
    key = spec.key or (LAKE_KEY if spec.engine == "duckdb" else [])
    if not key:
        raise ParamError(f"{where}: a Parquet lake read by {spec.engine} needs key: the columns that identify a row "
                         "(rows are numbered in key order)")
    return key


def text_expr(t: Any, key: list[str], where: str, nrows: int | None) -> Any:
    """Every column as text except dates and timestamps; the engine numbers the rows in key order."""
    import ibis

    missing = [k for k in key if k not in t.columns]
    if missing:
        raise InputDataError(f"{where}: key column(s) {', '.join(map(repr, missing))} are not in the table. Columns: "
                             f"{', '.join(map(repr, t.columns))}. Fix key in the params file.")
    cols = {c: (t[c] if t[c].type().is_temporal() or t[c].type().is_string() else t[c].cast("string"))
            for c in t.columns}
    out = t.select(**{ROW: ibis.row_number().over(order_by=[t[k] for k in key]) + 1}, **cols)
    out = out.order_by(ROW)
    return out.limit(nrows) if nrows is not None else out


def fetch(con: Any, expr: Any, spec: TableInput, url: str | None) -> Any:
    """The expression's result as an Arrow table: through ADBC on PostgreSQL (in a read-only transaction), as
    Parquet written by the engine on Spark (never collected row by row on the driver), else Ibis's Arrow export."""
    if spec.engine == "postgres":
        import adbc_driver_postgresql.dbapi as adbc

        with adbc.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute(con.compile(expr))
            return cur.fetch_arrow_table()
    if spec.engine == "spark":
        return to_arrow(con, expr).sort_by(ROW)
    return expr.to_pyarrow()


def to_arrow(con: Any, expr: Any) -> Any:
    """An expression's result as an Arrow table; on Spark written as Parquet by the engine and read back (never
    collected row by row on the driver), so in no particular order."""
    import pyarrow.parquet as pq

    if con.name != "pyspark":
        return expr.to_pyarrow()
    with tempfile.TemporaryDirectory(prefix="cvlib-spark-") as tmp:
        con._session.sql(con.compile(expr)).write.parquet(f"{tmp}/out")
        return pq.read_table(f"{tmp}/out")


def arrow_batches(con: Any, expr: Any, rows: int = 1_000_000) -> Any:
    """An expression's result on DuckDB as a stream of Arrow record batches of `rows` rows (Ibis 12's own
    `to_pyarrow_batches` calls a method DuckDB 2 no longer has)."""
    return con.con.sql(str(con.compile(expr))).to_arrow_reader(rows)


def to_pandas(con: Any, expr: Any, order: str | None = None) -> pd.DataFrame:
    """An expression's result as pandas in the types Ibis gives; on Spark through `to_arrow` and put back in the
    order of column `order` (the expression's own order_by is lost in the files)."""
    if con.name != "pyspark":
        return expr.to_pandas()
    from ibis.formats.pandas import PandasData

    df = PandasData.convert_table(to_arrow(con, expr).to_pandas(), expr.schema())
    return df.sort_values(order, kind="stable").reset_index(drop=True) if order else df


def as_text(arrow: Any, zone: str | None) -> pd.DataFrame:
    """Arrow columns as pandas text (NULL -> ''), timestamps carrying a zone on the client's local clock."""
    import pyarrow as pa

    out = {}
    for name in arrow.column_names:
        col = arrow.column(name)
        if name == ROW:
            out[name] = col.to_numpy().astype("int64")
            continue
        if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
            s = pd.Series(col.to_pandas(), copy=False)
            if pa.types.is_timestamp(col.type) and col.type.tz is not None:
                s = s.dt.tz_convert(zone or "UTC").dt.tz_localize(None)
            s = pd.to_datetime(s)
            midnight = bool((s.dropna() == s.dropna().dt.normalize()).all())
            out[name] = s.dt.strftime("%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M:%S").fillna("").astype(STRING)
        else:
            out[name] = pd.Series(col.cast(pa.large_string()).fill_null("").to_pandas(), dtype=STRING)
    return pd.DataFrame(out)


def read_table(study: Study, spec: TableInput, name: str, nrows: int | None = None) -> pd.DataFrame:
    """A client table read by its engine, every column as text, `source_row` numbering the rows in key order (a
    lake: file order), the key columns also given as `key:<column>`."""
    url = connection_url(study, spec, name)
    where = f"inputs.{name} ({describe(study, spec)})"
    with backend(spec, url, study.base_dir, name) as con:
        try:
            t = source(con, study, spec, name)
            key = row_key(spec, where)
            expr = text_expr(t, key, where, nrows)
            df = as_text(fetch(con, expr, spec, url), study.timezone)
        except (InputDataError, ParamError):
            raise
        except Exception as exc:
            raise InputDataError(f"{where}: the engine could not read it: {redact(str(exc), url)[:500]}") from None
    for k in key:
        df[KEY_PREFIX + k] = df[k]
    if key and len(df):
        dup = df.duplicated([KEY_PREFIX + k for k in key], keep=False).to_numpy()
        if dup.any():
            sample = df.loc[dup, key].head(5).to_string(index=False)
            raise InputDataError(f"{where}: key {key} does not identify a row: {int(dup.sum()):,} rows share a key, "
                                 f"e.g.\n{sample}\nName columns that together are unique (add a line number).")
    return df


def empty_malformed() -> pd.DataFrame:
    """An engine has no malformed lines (its rows are typed): the empty table of them."""
    return pd.DataFrame({"line": np.zeros(0, "int64"), "text": [], "expected": [], "got": [],
                         ROW: np.zeros(0, "int64")})


def raw_expr(con: Any, study: Study, spec: TableInput, mapping: dict[str, str], name: str) -> Any:
    """The table on its engine as raw text in cvlib's column names (`mapping`: cvlib name -> column), numbered in
    key order, its key columns as `key:<column>`, dates on the client's clock: nothing is fetched."""
    t = source(con, study, spec, name)
    where = f"inputs.{name} ({describe(study, spec)})"
    key = row_key(spec, where)
    missing = [c for c in [*mapping.values(), *key] if c not in t.columns]
    if missing:
        raise InputDataError(f"{where}: column(s) {', '.join(map(repr, missing))} are not in the table. Columns: "
                             f"{', '.join(map(repr, t.columns))}. Fix the column mapping or key in the params file.")
    t = text_expr(t, key, where, None)
    cols = {new: local_time(t[old], spec.engine, study.timezone) for new, old in mapping.items()}
    cols.update({KEY_PREFIX + k: t[k].cast("string") for k in key})
    return t.select(ROW, **{k: v.cast("string").fill_null("") for k, v in cols.items()})  # as `as_text` reads NULL


def distinct_values(study: Study, spec: TableInput, column: str, name: str) -> set[str]:
    """The distinct values of one column of a table on its engine (the pseudonymiser's list of ids), computed by
    the engine: the rows are not fetched."""
    url = connection_url(study, spec, name)
    with backend(spec, url, study.base_dir, name) as con:
        t = source(con, study, spec, name)
        if column not in t.columns:
            raise InputDataError(f"inputs.{name} ({describe(study, spec)}): column {column!r} is not in the table")
        values = t.select(v=t[column].cast("string")).distinct().to_pyarrow().column("v").to_pylist()
    return {v.strip() for v in values if v is not None}
