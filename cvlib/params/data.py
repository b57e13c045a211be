"""Parameters of the client's files (inputs, column mapping, reading options), privacy and the cleaning rules."""
from __future__ import annotations

import codecs
import datetime as dt
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from cvlib.params.base import _Model


class TransactionColumns(_Model):
    """Which column of the client's file holds each field (None: not in the file)."""

    customer_id: str = Field(description="column holding the customer id (read as text: leading zeros kept)")
    date: str = Field(description="column holding the transaction date (or date and time)")
    amount: str = Field(description="column holding the amount in the study currency (read strictly; unreadable "
                                    "values are quarantined)")
    order_id: str | None = Field(None,
        description=(
            "column holding the order or invoice id (purchase occasions by order; returns matched to orders)"))
    quantity: str | None = Field(None, description="column holding the quantity")
    product: str | None = Field(
        None, description="column holding the product or category (cross-sell, returns matched by product)")
    channel: str | None = Field(None, description="column holding the sales channel (channel mix in the journey stage)")
    cost: str | None = Field(
        None, description="column holding the direct cost of the line (profitability; else the margin is used)")
    margin: str | None = Field(
        None, description="column holding the gross margin of the line as a share (profitability)")
    return_flag: str | None = Field(
        None, description="column marking returns and cancellations (its values in cleaning.returns.flag_values)")


ENGINES = ("duckdb", "postgres", "spark", "bigquery", "snowflake")  # where a table or query is read


class Connection(_Model):
    """Where the connection URL of a database or warehouse is kept: an environment variable or a secrets file.
    The URL itself is never in the params file nor written into any output (the rule of the pseudonym key)."""

    url_env: str | None = Field(
        None, description="environment variable holding the connection URL, e.g. postgresql://user:pw@host:5432/db "
                          "(duckdb: a database file; spark: a master such as local[2])")
    secrets_file: str | None = Field(
        None, description="YAML file holding the URL (relative to the params file; keep it out of git)")
    secrets_key: str = Field("url", description="key of the URL in the secrets file")

    @model_validator(mode="after")
    def _one_place(self) -> "Connection":
        if (self.url_env is None) == (self.secrets_file is None):
            raise ValueError("give the connection URL's place as url_env (an environment variable) or secrets_file "
                             "(a YAML file), one of the two")
        return self


class TableInput(_Model):
    """How to read one client table: a file, or a table or query on a database or warehouse."""

    path: str | None = Field(None, description="the file, relative to the params file; example://NAME is a bundled "
                                               "example file; with engine duckdb or spark also a folder or glob of "
                                               "Parquet files (a lake)")
    engine: Literal["pandas", "duckdb", "postgres", "spark", "bigquery", "snowflake"] = Field(
        "pandas", description="what reads the table: pandas (files), duckdb, postgres, spark, bigquery, snowflake")
    table: str | None = Field(None, description="a table (or view) on the engine's connection, e.g. sales.orders")
    query: str | None = Field(None, description="one SELECT statement run read-only on the engine's connection")
    key: list[str] | None = Field(
        None, description="columns identifying a row of a table or query (a database has no row order): rows are "
                          "numbered in key order and quarantined rows carry the key")
    connection: Connection | None = Field(None, description="where the connection URL is kept (never the URL)")
    format: Literal["auto", "csv", "tsv", "whitespace", "excel", "parquet"] = Field(
        "auto", description="file format; auto: from the extension, else sniffed")
    encoding: str = Field("utf-8", description="text encoding, e.g. utf-8-sig, gbk, gb18030, latin-1")
    delimiter: str | None = Field(None, description="None: ',' for csv, tab for tsv")
    decimal: str = Field(".", description="decimal separator (',' for most of Europe)")
    thousands: str | None = Field(
        None, description="thousands separator; None still reads grouped values such as 1,234.50")
    sheet: str | int | None = Field(None, description="Excel sheet name or number (default: the first sheet)")
    date_format: str | list[str] | None = Field(
        None, description="strftime format(s) tried in order; None: inferred and reported"
    )
    header: bool = Field(True, description="the first row holds the column names; false: give them in `names`")
    bad_lines: Literal["quarantine", "refuse"] = Field(
        "quarantine", description="a line that cannot be read (wrong number of fields, an unbalanced quote): set "
                                  "aside with its line number, or refuse the file (exit 2) naming the lines")
    names: list[str] | None = Field(None, description="column names of a file without a header row")

    @model_validator(mode="after")
    def _source(self) -> "TableInput":
        given = [k for k in ("path", "table", "query") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give one of path (a file), table or query (on an engine's connection); "
                             f"found {', '.join(given) or 'none'}")
        if self.path is None:
            if self.engine == "pandas":
                raise ValueError(f"a {given[0]} needs an engine: one of {', '.join(ENGINES)}")
            if not self.key:
                raise ValueError(f"a {given[0]} needs key: the columns identifying a row (a database table has no "
                                 "row order, so quarantined rows are named by their key)")
            if self.connection is None and self.engine != "spark":
                raise ValueError(f"engine {self.engine} needs connection: url_env or secrets_file")
        elif self.engine not in ("pandas", "duckdb", "spark"):
            raise ValueError(f"engine {self.engine} reads a table or query, not a path; files are read by pandas, "
                             "duckdb or spark")
        return self

    @property
    def is_file(self) -> bool:
        """True when the table is a file read by pandas (the only kind with a fingerprint of its bytes)."""
        return self.path is not None and self.engine == "pandas"

    @model_validator(mode="after")
    def _names(self) -> "TableInput":
        if not self.header and not self.names:
            raise ValueError("header is false, so the column names must be given in `names` (in file order)")
        if self.names is not None and len(set(self.names)) != len(self.names):
            raise ValueError(f"names {self.names} repeat a column name")
        return self

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r}; use e.g. utf-8, utf-8-sig, gbk, gb18030, latin-1") from None
        return v

    @field_validator("decimal")
    @classmethod
    def _one_char(cls, v: str) -> str:
        if len(v) != 1:
            raise ValueError("decimal separator must be one character, e.g. '.' or ','")
        return v


class TransactionsInput(TableInput):
    columns: TransactionColumns
    allow_exponent: bool = Field(False, description="read amounts written in exponent notation (1.5e3)")


class AttributeInput(TableInput):
    """A customer attribute or feedback table, joined on customer id."""

    customer_id: str = Field(description="column holding the customer id")
    columns: dict[str, str] | None = Field(
        None, description="name in the study -> column in the file; None: all columns"
    )
    date: str | None = Field(None, description="survey date column (feedback tables)")


ATTRIBUTE_TABLES = ("customers", "feedback", "campaigns")  # the input tables joined on customer id


class Inputs(_Model):
    transactions: TransactionsInput
    customers: AttributeInput | None = None
    feedback: AttributeInput | None = None
    campaigns: AttributeInput | None = Field(None, description="campaign assignments: customer_id, `date` (the "
                                             "campaign date) and columns {group: ..., campaign: ...}")

    @model_validator(mode="after")
    def _campaign_columns(self) -> "Inputs":
        c = self.campaigns
        if c is not None and (not c.date or not c.columns or {"group", "campaign"} - set(c.columns)):
            raise ValueError("inputs.campaigns needs date: <the campaign date column> and columns: {group: <treatment "
                             "or control column>, campaign: <campaign name column>}")
        return self


# --------------------------------------------------------------------------- privacy
class Privacy(_Model):
    """Pseudonyms are keyed HMAC-SHA256 of each id; the key is read from an environment variable or a key
    file and is never written into any output."""

    pseudonymize_ids: bool = Field(
        False, description="show keyed pseudonyms instead of customer ids in every report, notebook and message")
    key_env: str = Field("CVLIB_PSEUDONYM_KEY", description="environment variable holding the key")
    key_file: str | None = Field(None, description="file holding the key (relative to the params file)")

    @model_validator(mode="before")
    @classmethod
    def _no_salt(cls, data: Any) -> Any:
        if isinstance(data, dict) and "salt" in data:
            raise ValueError("privacy.salt is no longer used: a salt written in the params file (and shown in the "
                             "reports) lets anyone reverse the pseudonyms. Put a secret key in the environment "
                             "variable named by privacy.key_env (default CVLIB_PSEUDONYM_KEY) or in a file named by "
                             "privacy.key_file, and remove privacy.salt")
        return data


# --------------------------------------------------------------------------- cleaning
class Toggle(_Model):
    enabled: bool = Field(True, description="whether the rule runs")


class ReturnsRule(_Model):
    enabled: bool = Field(True,
        description=(
            "handle returns and cancellations (negative amounts, a return_flag value, an order id with the invoice "
            "prefix)"))
    action: Literal["net", "drop"] = Field("net",
        description=(
            "net: each return reduces its purchases (same customer and order, else product, else customer), latest "
            "first; a return with no such purchase is quarantined. drop: returns are quarantined"))
    flag_values: list[str] = Field(default_factory=list, description="values of columns.return_flag that mark a return")
    invoice_prefix: str | None = Field(None, description="order ids starting with this mark a return, e.g. 'C'")


class WindowRule(_Model):
    enabled: bool = Field(True, description="quarantine dates outside the analysis window (inclusive)")
    start: dt.date | None = Field(None, description="first day of the analysis window (None: no lower bound)")
    end: dt.date | None = Field(None, description="last day of the analysis window (None: no upper bound)")

    @model_validator(mode="after")
    def _ordered(self) -> "WindowRule":
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"window start {self.start} is after end {self.end}")
        return self


class TestIdsRule(_Model):
    enabled: bool = Field(True, description="quarantine the test or internal customer ids listed in ids")
    ids: list[str] = Field(default_factory=list, description="test or internal customer ids to quarantine")


class NonPositiveRule(_Model):
    """Amounts that are zero or negative after netting are quarantined, except (with keep_zero) amounts written
    as zero: a $0 purchase (a free item, a voucher) is a purchase occasion for the purchase models, though it
    adds nothing to revenue."""

    enabled: bool = Field(True, description="quarantine zero or negative amounts left after netting returns")
    keep_zero: bool = Field(True,
        description=(
            "keep purchases written as 0 (a free item, a voucher) as purchase occasions that add nothing to revenue"))


class DatesRule(_Model):
    """Dates outside the plausible range are quarantined: before `earliest`, after `latest` (default: the run
    date), or more than `after_bulk_days` after the 99th percentile of the file's dates."""

    enabled: bool = Field(True,
        description=(
            "quarantine implausible dates (before earliest, after latest or far after the bulk of the file)"))
    earliest: dt.date = Field(dt.date(1980, 1, 1), description="dates before this day are quarantined")
    latest: dt.date | None = Field(None, description="None: the day the study runs")
    after_bulk_days: int | None = Field(365, ge=1, description="None: no check against the bulk of the data")


class OutlierRule(_Model):
    enabled: bool = Field(True, description="look for outlying transaction amounts")
    method: Literal["iqr", "zscore", "quantile"] = Field("iqr",
        description=(
            "iqr: outside Q1 - k*IQR, Q3 + k*IQR; zscore: |z| > k; quantile: above the upper quantile given by "
            "threshold"))
    threshold: float = Field(3.0, gt=0, description="iqr: k x IQR; zscore: |z|; quantile: upper quantile in (0.5, 1)")
    action: Literal["flag", "cap", "drop"] = Field(
        "flag", description="flag (column is_outlier), cap (set to the bound) or drop (quarantine)")
    log_scale: bool = Field(True, description="judge amounts on the log scale (amounts are right-skewed)")
    ceiling: float | None = Field(1e9, gt=0, allow_inf_nan=False,
                                  description="amounts above this are outliers whatever the method says")

    @model_validator(mode="after")
    def _quantile_range(self) -> "OutlierRule":
        if self.method == "quantile" and not 0.5 < self.threshold < 1:
            raise ValueError("with method 'quantile' the threshold is an upper quantile between 0.5 and 1, e.g. 0.995")
        return self


class Cleaning(_Model):
    engine: Literal["auto", "pandas", "duckdb", "source"] = Field(
        "auto", description="what runs the rules: auto (the default): duckdb for transactions read by an engine, "
                            "pandas for a file read by pandas (its rows are in memory already: copying them into "
                            "DuckDB took 2x the time and 3x the memory at 10M rows); duckdb where the rows are (a "
                            "Parquet lake or DuckDB table is never loaded whole; rows of another engine are fetched "
                            "first), source (the engine the transactions are read by, e.g. PostgreSQL or Spark: only "
                            "the kept and quarantined rows leave it), or pandas in memory; the same audit and outputs, "
                            "tested")

    def engine_for(self, reader: str) -> str:
        """The engine that runs the rules when the transactions are read by `reader` ('auto' resolved)."""
        if self.engine != "auto":
            return self.engine
        return "pandas" if reader == "pandas" else "duckdb"
    duplicates: Toggle = Field(default_factory=Toggle)
    returns: ReturnsRule = Field(default_factory=ReturnsRule)
    dates: DatesRule = Field(default_factory=DatesRule)
    non_positive: NonPositiveRule = Field(default_factory=lambda: NonPositiveRule())
    window: WindowRule = Field(default_factory=WindowRule)
    test_ids: TestIdsRule = Field(default_factory=TestIdsRule)
    outliers: OutlierRule = Field(default_factory=OutlierRule)


# --------------------------------------------------------------------------- rfm
