"""Client tables where they live: a table or query on DuckDB, PostgreSQL, Spark, BigQuery or Snowflake, or a
Parquet lake, read through one Ibis expression per table (`fetch`), and the per-customer summary computed by the
engine (`summary`). The connection URL comes from an environment variable or a secrets file (`connect`)."""
from cvlib.engines.connect import (  # noqa: F401
    backend,
    check_working_tables,
    connection_url,
    duckdb,
    duckdb_parquet,
    redact,
)
from cvlib.engines.fetch import (  # noqa: F401
    describe,
    distinct_values,
    empty_malformed,
    raw_expr,
    read_table,
    to_pandas,
)
