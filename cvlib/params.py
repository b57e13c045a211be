"""Study parameters: one YAML file per study, validated before anything runs.

`load_study(path, overrides)` returns a `Study`; any problem raises `ParamError`
whose message names the key, the file and what is allowed.
"""
from __future__ import annotations

import codecs
import copy
import datetime as dt
import difflib
import reprlib
import typing
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cvlib.errors import ParamError
from cvlib.examples import agency_cache
from cvlib.expr import ExpressionError, check_names, parse
from cvlib.rules import RULE_COLUMNS, TEXT_RULE_COLUMNS, rule_categories
from cvlib.weights import ahp_weights

EXAMPLE_PREFIX = "example://"
DATA_DIR = Path(__file__).parent / "data"
MAX_ALIASES = 20  # YAML aliases a parameter file may use: k aliases expand a value at most e^(k/e) times
MAX_PARAMS_BYTES = 1_000_000


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data only, no tags that build objects) that refuses more than MAX_ALIASES
    aliases, so a small file cannot expand into an exponentially large value."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (*name), line {mark.line + 1}: parameter "
                                     "files do not need them; write the values out")
        return super().compose_node(parent, index)

    def construct_object(self, node, deep=False):  # type: ignore[no-untyped-def]
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # the date 2024-02-30, a number of thousands of digits
            value = node.value if isinstance(node.value, str) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {value[:40] + ('...' if len(value) > 40 else '')!r}: {str(exc)[:120]}",
                node.start_mark) from None


def safe_yaml(text: str) -> Any:
    """Parse YAML text as plain data with a bound on aliases (yaml.YAMLError otherwise, also for a value YAML cannot
    build: the date 2024-02-30, a number of thousands of digits)."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506  # a SafeLoader subclass
    except (ValueError, OverflowError) as exc:
        msg = str(exc)
        raise yaml.YAMLError(f"a value cannot be read: {msg[:200]}") from None


def short_repr(value: Any, width: int = 120) -> str:
    """repr of a value, cut to `width` characters without building the whole text of a huge value."""

    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlist, r.maxdict, r.maxlevel = width, width, 6, 6, 3
    text = r.repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- inputs
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


class TableInput(_Model):
    """How to read one client file."""

    path: str = Field(description="the file, relative to the params file; example://NAME is a bundled example file")
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
    duplicates: Toggle = Field(default_factory=Toggle)
    returns: ReturnsRule = Field(default_factory=ReturnsRule)
    dates: DatesRule = Field(default_factory=DatesRule)
    non_positive: NonPositiveRule = Field(default_factory=lambda: NonPositiveRule())
    window: WindowRule = Field(default_factory=WindowRule)
    test_ids: TestIdsRule = Field(default_factory=TestIdsRule)
    outliers: OutlierRule = Field(default_factory=OutlierRule)


# --------------------------------------------------------------------------- rfm
class SegmentRule(_Model):
    """A cell range of the R x F (or R x FM) grid on a 1-5 scale: the first rule that matches wins."""

    name: str = Field(description="segment name (any language)")
    r: tuple[int, int] = Field(description="recency score range [low, high] on the 1-5 scale")
    f: tuple[int, int] = Field(
        description="frequency score range [low, high] on the 1-5 scale (or the mean of F and M with segment_on: rfm)")

    @field_validator("r", "f")
    @classmethod
    def _range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1] <= 9:
            raise ValueError(f"score range {list(v)} must be [low, high] with 1 <= low <= high")
        return v


DEFAULT_SEGMENTS = [
    {"name": "Champions", "r": [5, 5], "f": [4, 5]},
    {"name": "Loyal", "r": [3, 4], "f": [4, 5]},
    {"name": "Potential Loyalist", "r": [4, 5], "f": [2, 3]},
    {"name": "New", "r": [5, 5], "f": [1, 1]},
    {"name": "Promising", "r": [4, 4], "f": [1, 1]},
    {"name": "Need Attention", "r": [3, 3], "f": [3, 3]},
    {"name": "About to Sleep", "r": [3, 3], "f": [1, 2]},
    {"name": "Can't Lose Them", "r": [1, 2], "f": [5, 5]},
    {"name": "At Risk", "r": [1, 2], "f": [3, 4]},
    {"name": "Lost", "r": [1, 1], "f": [1, 1]},
    {"name": "Hibernating", "r": [1, 2], "f": [1, 2]},
]


class BinEdges(_Model):
    """Fixed score bin edges (ascending values; scores 1..len+1); recency is reversed."""

    recency: list[float] | None = Field(
        None, description="fixed ascending edges for the recency score instead of quantiles (scores 1..len+1)")
    frequency: list[float] | None = Field(
        None, description="fixed ascending edges for the frequency score instead of quantiles")
    monetary: list[float] | None = Field(
        None, description="fixed ascending edges for the monetary score instead of quantiles")

    @field_validator("recency", "frequency", "monetary")
    @classmethod
    def _ascending(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (not v or any(b <= a for a, b in zip(v, v[1:]))):
            raise ValueError(f"bin edges {v} must be a non-empty list of strictly increasing values")
        return v


class Pyramid(_Model):
    cuts: list[float] = Field(default_factory=lambda: [0.01, 0.05, 0.20], description="cumulative customer shares")
    names: list[str] = Field(default_factory=lambda: ["Top 1%", "Next 4%", "Next 15%", "Other 80%"],
        description=(
            "names of the value pyramid tiers, top first (one more than cuts)"))

    @model_validator(mode="after")
    def _sizes(self) -> "Pyramid":
        if len(self.names) != len(self.cuts) + 1:
            raise ValueError(f"pyramid needs {len(self.cuts) + 1} names for {len(self.cuts)} cuts")
        if any(b <= a for a, b in zip(self.cuts, self.cuts[1:])) or not all(0 < c < 1 for c in self.cuts):
            raise ValueError("pyramid cuts must be increasing shares between 0 and 1")
        return self


class Clusters(_Model):
    enabled: bool = Field(True, description="k-means clusters on log, standardised R, F and M")
    k: int | None = Field(None, ge=2, le=20, description="fixed k; None: chosen by silhouette over k_range")
    k_range: tuple[int, int] = Field((2, 8), description="range of k tried when k is not fixed (chosen by silhouette)")
    seed: int = Field(0, description="random seed of k-means and of the silhouette sample")
    sample: int = Field(5_000, ge=500, description="customers sampled for silhouette scores")
    tree_depth: int = Field(3, ge=1, le=6, description="depth of the decision tree that explains the clusters in rules")


class Rfm(_Model):
    end_date: dt.date | None = Field(None, description="observation end; None: the last transaction date")
    frequency: Literal["auto", "orders", "days"] = Field("auto",
        description=(
            "purchase occasions: days (distinct days), orders (distinct order ids), auto (orders when an order id is "
            "mapped)"))
    time_unit: Literal["days", "weeks"] = Field("weeks", description="unit of the CLV model inputs x, t_x and T")
    calibration_end: dt.date | None = Field(
        None, description="end of the calibration period for validating the CLV models on a holdout (None: no holdout)")
    holdout_end: dt.date | None = Field(None, description="end of the holdout period (None: the data's last day)")
    n_bins: int = Field(5, ge=2, le=9, description="R, F and M scores 1..n (n best; recency reversed)")
    ties: Literal["shared", "first"] = Field(
        "shared", description="shared: equal values share a score; first: ties broken in data order")
    bin_edges: BinEdges = Field(
        default_factory=BinEdges, description="fixed score edges per measure instead of quantiles")
    segment_on: Literal["rf", "rfm"] = Field(
        "rf", description="the segment grid on R and F (rf), or on R and the mean of F and M (rfm)")
    segments: list[SegmentRule] = Field(default_factory=lambda: [SegmentRule(**s) for s in DEFAULT_SEGMENTS],
        description=(
            "the segment grid: a list of {name, r: [low, high], f: [low, high]}; the first matching rule wins"))
    abc: tuple[float, float] = Field((0.80, 0.95), description="cumulative revenue shares ending classes A and B")
    pyramid: Pyramid = Field(default_factory=Pyramid)
    clusters: Clusters = Field(default_factory=Clusters)

    @model_validator(mode="after")
    def _dates(self) -> "Rfm":
        if self.holdout_end and not self.calibration_end:
            raise ValueError("holdout_end needs calibration_end")
        if self.calibration_end and self.holdout_end and self.holdout_end <= self.calibration_end:
            raise ValueError("holdout_end must be after calibration_end")
        if not 0 < self.abc[0] < self.abc[1] < 1:
            raise ValueError("abc must be two increasing shares between 0 and 1, e.g. [0.8, 0.95]")
        return self


# --------------------------------------------------------------------------- clv
class FormulaClv(_Model):
    lifetime_years: float | None = Field(None, gt=0, description="None: 1 / (1 - yearly retention)")
    retention_rate: float | None = Field(None, gt=0, lt=1, description="yearly; None: measured from the data")
    acquisition_cost: float | dict[str, float] = Field(0.0, description="per customer, or per acquisition channel")
    channel_column: str | None = Field(None, description="attribute column (or 'channel' of the transactions)")
    acquisition_cost_column: str | None = Field(None, description="attribute column with each customer's cost")
    growth_rate: float | None = Field(None, gt=-1, description="yearly growth of a customer's profit for the "
                                      "retention-growth CLV; None: measured from the data")
    maintenance_cost_per_year: float = Field(0.0, ge=0, description="yearly cost of keeping a customer, for the "
                                             "discounted-profit CLV")


class Contracts(_Model):
    """Contractual clients: sBG retention fitted to contract periods."""

    enabled: bool = Field(False,
        description=(
            "value customers by their contracts with the shifted-beta-geometric retention model (needs contract "
            "columns in the customers table)"))
    start_column: str = Field("contract_start", description="column of the customers table")
    end_column: str = Field("contract_end", description="column of the customers table; empty = still active")
    period_months: int = Field(12, ge=1, le=60, description="length of one renewal period")
    value_column: str | None = Field(None, description="value per period; None: mean yearly revenue x period")


class ClvTiers(_Model):
    cuts: list[float] = Field(default_factory=lambda: [0.10, 0.30], description="cumulative customer shares")
    names: list[str] = Field(
        default_factory=lambda: ["High", "Medium", "Low"], description="names of the CLV tiers, highest first")

    @model_validator(mode="after")
    def _sizes(self) -> "ClvTiers":
        if len(self.names) != len(self.cuts) + 1:
            raise ValueError(f"clv tiers need {len(self.cuts) + 1} names for {len(self.cuts)} cuts")
        if any(b <= a for a, b in zip(self.cuts, self.cuts[1:])) or not all(0 < c < 1 for c in self.cuts):
            raise ValueError(f"clv tier cuts {self.cuts} must be increasing shares between 0 and 1")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"clv tier names {self.names} must differ")
        return self


class Clv(_Model):
    model: Literal["bgnbd", "paretonbd"] = Field("bgnbd", description="the purchase model used for per-customer CLV")
    compare_paretonbd: bool = Field(True, description="also fit Pareto/NBD and show it beside BG/NBD")
    horizon_months: int = Field(12, ge=1, le=120, description="months of future value counted in the CLV")
    margin: float = Field(1.0, gt=0, le=1, description="gross margin share of revenue")
    discount_rate: float = Field(0.10, ge=0, lt=1, description="annual, applied month by month")
    bootstrap: int = Field(100, ge=0, le=2000, description="resamples for the interval of total CLV (0: off)")
    bootstrap_max_customers: int = Field(50_000, ge=1000, description="above this many customers the interval of "
                                         "total CLV comes from the fits' Hessians (delta method), not from refits")
    seed: int = Field(0, description="random seed of the CLV bootstrap")
    max_fit_customers: int = Field(25_000, ge=1000, description="Pareto/NBD is fitted on a random sample above "
                                   "this (its likelihood costs a hypergeometric function per customer)")
    tiers: ClvTiers = Field(default_factory=ClvTiers)
    formula: FormulaClv = Field(default_factory=FormulaClv)
    variants: list[Literal["aov", "retention_growth", "discounted_profit", "contribution"]] = Field(
        default_factory=lambda: ["aov", "retention_growth", "discounted_profit", "contribution"],
        description="named CLV formulas shown beside the model CLV (cvlib.analysis.variants)")
    contracts: Contracts = Field(default_factory=Contracts)
    departed_p_alive: float | None = Field(0.1, gt=0, lt=1, description="a customer whose purchase-model P(alive) "
                                           "is below this has left (forward value 0); null: not used. The other "
                                           "tests: contract ended, no purchase for drivers.churn_days (cvlib.status)")


# --------------------------------------------------------------------------- value assessment
class CostToServe(_Model):
    per_year: float = Field(0.0, ge=0, description="yearly cost to serve every customer")
    by_column: str | None = Field(None, description="customers-table column (e.g. size_tier) to look costs up by")
    by_value: dict[str, float] = Field(default_factory=dict, description="yearly cost per value of by_column")


class Profitability(_Model):
    margin_by_line: dict[str, float] = Field(default_factory=dict,
                                             description="gross margin share per product / service line")
    cost_to_serve: CostToServe = Field(default_factory=CostToServe)
    retention_cost_per_year: float = Field(
        0.0, ge=0, description="yearly cost of keeping a customer, in the study currency (CLV with costs)")
    acquisition_cost: float = Field(
        0.0, ge=0, description="cost of acquiring a customer, in the study currency (CLV with costs)")
    horizon_years: int = Field(5, ge=1, le=30, description="horizon of the formula CLV with costs")


CATEGORIES = ("financial", "satisfaction", "loyalty", "relationship")
Category = Literal["financial", "satisfaction", "loyalty", "relationship"]


class Indicator(_Model):
    column: str = Field(description="a column of the customer table used as an indicator")
    group: Literal["current", "potential"] = Field(
        description="whether the indicator measures current or potential value")
    category: Category | None = Field(None, description="indicator group for two-level weights (value.weights.groups)")
    direction: Literal["higher", "lower"] = Field(
        "higher", description="higher: a higher value is better; lower: a lower value is better")
    normalisation: Literal["minmax", "rank"] | None = Field(None, description="None: value.normalisation")
    label: str | None = Field(None, description="the indicator's name in the reports (default: the column's label)")


def _default_indicators() -> list["Indicator"]:
    return [Indicator(column="revenue", group="current"), Indicator(column="profit", group="current"),
            Indicator(column="frequency", group="current"), Indicator(column="tenure", group="current"),
            Indicator(column="clv", group="potential"), Indicator(column="p_alive", group="potential"),
            Indicator(column="spend_trend", group="potential")]


class Ahp(_Model):
    matrix: list[list[float]] = Field(description="pairwise comparisons of the indicators, in their order (Saaty 1-9)")
    allow_inconsistent: bool = Field(False, description="go on when the consistency ratio is 0.1 or more")

    @field_validator("matrix", mode="before")
    @classmethod
    def _fractions(cls, m: object) -> object:
        """Accept Saaty's judgements written as fractions, e.g. 1/3."""

        if not isinstance(m, list):
            return m
        try:
            return [[float(Fraction(str(v).strip())) if isinstance(v, str) else v for v in row] if isinstance(row, list)
                    else row for row in m]
        except (ValueError, ZeroDivisionError):
            return m  # the number check then names the bad entry

    @field_validator("matrix")
    @classmethod
    def _square_reciprocal(cls, m: list[list[float]]) -> list[list[float]]:
        n = len(m)
        if any(len(row) != n for row in m):
            raise ValueError(f"the AHP matrix must be square; it has {n} rows of lengths {[len(r) for r in m]}")
        for i in range(n):
            if abs(m[i][i] - 1) > 1e-9:
                raise ValueError(f"the AHP matrix diagonal must be 1 (row {i + 1})")
            for j in range(n):
                if m[i][j] <= 0:
                    raise ValueError(f"AHP entries must be positive (row {i + 1}, column {j + 1})")
                if abs(m[i][j] * m[j][i] - 1) > 0.02:
                    raise ValueError(f"the AHP matrix must be reciprocal: entry ({i + 1},{j + 1}) = {m[i][j]:g} but "
                                     f"({j + 1},{i + 1}) = {m[j][i]:g}; it should be {1 / m[i][j]:.4g}")
        return m


class GroupWeights(_Model):
    """The upper level of two-level weights: one weight per indicator group (category)."""

    method: Literal["fixed", "ahp", "entropy"] = Field(
        "entropy", description="how the two groups (current, potential) are weighted: fixed, ahp or entropy")
    fixed: dict[Category, float] = Field(default_factory=dict, description="category -> weight")
    ahp: Ahp | None = Field(None, description="pairwise comparisons of the categories used, in the order financial, "
                                              "satisfaction, loyalty, relationship")


class Weights(_Model):
    method: Literal["fixed", "ahp", "entropy"] = Field("entropy",
        description=(
            "how indicators are weighted within a group: fixed, ahp (pairwise comparisons) or entropy"))
    fixed: dict[str, float] = Field(default_factory=dict, description="indicator column -> weight")
    ahp: Ahp | None = Field(None, description="the AHP pairwise comparison matrix and its indicators (method: ahp)")
    groups: GroupWeights | None = Field(None, description="two-level weights: categories weighted by this, the "
                                        "indicators within each category by `method` (None: one level)")


class ValueMatrix(_Model):
    size: Literal[2, 3] = Field(2, description="cells per axis of the current x potential value matrix (2x2 or 3x3)")
    current_cuts: list[float] | None = Field(None, description="score cut points (0-100); None: median or tertiles")
    potential_cuts: list[float] | None = Field(
        None, description="score cuts of the potential axis (None: the medians, or terciles for size 3)")
    names: dict[str, str] | None = Field(None, description="cell 'current/potential' (e.g. 'high/low') -> name")


class Fuzzy(_Model):
    """Fuzzy comprehensive evaluation beside the weighted score (see cvlib.fuzzy)."""

    enabled: bool = Field(True, description="also grade customers by fuzzy comprehensive evaluation")
    levels: list[str] = Field(default_factory=lambda: ["poor", "fair", "good", "excellent"],
                              description="graded levels, worst first")
    centres: list[float] = Field(default_factory=lambda: [0.0, 1 / 3, 2 / 3, 1.0],
                                 description="each level's centre on the 0-1 normalised scale (increasing)")
    level_scores: list[float] | None = Field(None, description="each level's score for the weighted-average "
                                             "grade; None: the centres x 100")

    @model_validator(mode="after")
    def _levels(self) -> "Fuzzy":
        if len(self.levels) < 2 or len(set(self.levels)) != len(self.levels):
            raise ValueError("fuzzy.levels needs at least two different level names")
        if len(self.centres) != len(self.levels):
            raise ValueError(f"fuzzy.centres has {len(self.centres)} values for {len(self.levels)} levels")
        increasing = all(a < b for a, b in zip(self.centres, self.centres[1:]))
        if not increasing or not 0 <= self.centres[0] <= self.centres[-1] <= 1:
            raise ValueError(f"fuzzy.centres must increase within 0-1, got {self.centres}")
        if self.level_scores is not None and len(self.level_scores) != len(self.levels):
            raise ValueError(f"fuzzy.level_scores has {len(self.level_scores)} values for {len(self.levels)} levels")
        return self


class Value(_Model):
    profitability: Profitability = Field(default_factory=Profitability)
    indicators: list[Indicator] = Field(default_factory=_default_indicators,
        description=(
            "the indicators of the value index: a list of {column, group, direction, label}"))
    normalisation: Literal["minmax", "rank"] = Field(
        "minmax", description="how indicators are put on one scale: minmax (0-1) or rank (percentile)")
    weights: Weights = Field(default_factory=Weights)
    matrix: ValueMatrix = Field(default_factory=ValueMatrix)
    fuzzy: Fuzzy = Field(default_factory=Fuzzy)

    @model_validator(mode="after")
    def _consistent(self) -> "Value":
        cols = [i.column for i in self.indicators]
        if len(set(cols)) != len(cols):
            raise ValueError("each indicator column may appear once")
        if {i.group for i in self.indicators} != {"current", "potential"}:
            raise ValueError("indicators need at least one 'current' and one 'potential' indicator")
        w = self.weights
        ranked = [i.column for i in self.indicators if (i.normalisation or self.normalisation) == "rank"]
        if w.method == "entropy" and ranked:
            raise ValueError(f"entropy weights need indicators that keep their spread, but {ranked} are rank-"
                             "normalised: percentile ranks are spread evenly by construction, so every entropy "
                             "weight would be the same. Use normalisation: minmax, or weights.method ahp or fixed")
        if w.groups is not None:
            missing = [i.column for i in self.indicators if i.category is None]
            if missing:
                raise ValueError(f"weights.groups needs a category for every indicator; {missing} have none "
                                 f"(category: one of {', '.join(CATEGORIES)})")
            used = [c for c in CATEGORIES if any(i.category == c for i in self.indicators)]
            g = w.groups
            if g.method == "fixed" and set(used) - set(g.fixed):
                raise ValueError(f"weights.groups.fixed needs a weight for {sorted(set(used) - set(g.fixed))}")
            if g.method == "ahp" and (g.ahp is None or len(g.ahp.matrix) != len(used)):
                raise ValueError(f"weights.groups.ahp.matrix must compare the {len(used)} categories used "
                                 f"({', '.join(used)}), in that order")
        if w.method == "ahp":
            if w.ahp is None:
                raise ValueError("weights.method is 'ahp' but weights.ahp.matrix is missing")
            if len(w.ahp.matrix) != len(cols):
                raise ValueError(f"the AHP matrix is {len(w.ahp.matrix)}x{len(w.ahp.matrix)} but there are "
                                 f"{len(cols)} indicators ({', '.join(cols)})")

            ahp = ahp_weights(w.ahp.matrix)
            if not ahp["consistent"] and not w.ahp.allow_inconsistent:
                raise ValueError(f"the AHP comparison matrix is inconsistent: consistency ratio {ahp['cr']:.3f} "
                                 "(must be below 0.10). Revise the judgements, or set "
                                 "value.weights.ahp.allow_inconsistent: true to go on anyway")
        if w.method == "fixed":
            missing = [c for c in cols if c not in w.fixed]
            if missing:
                raise ValueError(f"weights.fixed has no weight for {missing}")
        return self


# --------------------------------------------------------------------------- loyalty drivers
class FeedbackColumns(_Model):
    nps: str | None = Field("nps", description="0-10 likelihood to recommend")
    csat: str | None = Field("csat", description="satisfaction on a 1..csat_scale scale")
    csat_scale: int = Field(5, ge=3, le=10, description="the top of the CSAT scale (5 for 1-5)")
    complaints: str | None = Field("complaints", description="complaints counted in the survey period")
    ratings: list[str] | None = Field(None, description="attribute ratings; None: every other numeric column")


class Drivers(_Model):
    churn: Literal["inactivity", "contracts"] = Field("inactivity", description="how churn is defined")
    churn_days: int = Field(365, ge=7, description="inactivity: no purchase for this many days before the end")
    outcome: Literal["retained", "nps", "clv"] = Field("retained",
        description=(
            "the outcome of the linear driver analysis: retained, nps (mean NPS per customer) or clv"))
    early_days: int = Field(90, ge=1, description="behaviour in each customer's first N days")
    group_by: str = Field("segment", description="KM curves and rates by this: an RFM segment or an attribute column")
    drivers: list[str] | None = Field(None, description="driver names to use; None: every usable one")
    exclude: list[str] = Field(default_factory=list, description="attribute columns never used as drivers")
    churn_reason_column: str = Field("churn_reason", description="column of the customers (or feedback) table with "
                                     "the reason a customer left, coded or free text; never a driver")

    def never_used(self) -> list[str]:
        """Columns never used as drivers or churn features: `exclude`, and the churn reason (known only for
        customers who left, so it would 'predict' churn perfectly)."""
        return [*self.exclude, self.churn_reason_column]
    max_exact: int = Field(12, ge=2, le=16, description="LMG exact up to this many drivers, sampled beyond")
    permutations: int = Field(300, ge=10, description="sampled orderings for LMG beyond max_exact")
    bootstrap: int = Field(100, ge=0, le=2000, description="resamples for the importance intervals")
    test_size: float = Field(0.3, gt=0.05, lt=0.9, description="held-out share for the driver classifier")
    min_class: int = Field(20, ge=5, description="fewest churners (and stayers) to fit a classifier")
    max_model_customers: int = Field(100_000, ge=1000, description="classifiers are trained and validated on a "
                                     "stratified random sample of this many customers at most (every customer is "
                                     "scored)")
    seed: int = Field(0, description="random seed of the bootstrap and the classifiers")
    feedback: FeedbackColumns = Field(default_factory=FeedbackColumns)


# --------------------------------------------------------------------------- journey
class Lifecycle(_Model):
    period_days: int = Field(90, ge=7, description="the period of acquisition and of the spend comparison (days)")
    growth: float = Field(0.25, gt=0, description="growth: last period's spend at least 1 + this times the "
                          "customer's own mean spend per earlier period")
    decline: float = Field(0.25, gt=0, lt=1, description="decline: at most 1 - this times it")
    lapsed_factor: float = Field(2.0, gt=0, description="lapsed: days since the last purchase over this many of "
                                 "the customer's own cycles")


class Cycles(_Model):
    overdue_k: float = Field(2.0, gt=0, description="overdue: days since the last purchase over k own cycles")
    prior_gaps: float = Field(2.0, ge=0, description="shrinkage: the segment's cycle counts as this many gaps")
    occasion: Literal["day", "week", "month"] = Field(
        "day", description="a purchase occasion: a day (retail), a week, or a calendar month (monthly billing, "
                           "where service lines are invoiced on different days of the month)")


class CrossSell(_Model):
    """Directed cross-sell rules 'A -> B': customers bought B after A, on a later day (cvlib.analysis.journey)."""

    min_support: float = Field(0.02, gt=0, le=1, description="share of customers who bought B after A")
    min_confidence: float = Field(0.3, gt=0, le=1, description="share of A's buyers who went on to buy B")
    min_lift: float = Field(1.2, gt=0, description="how much likelier A's buyers hold B than customers holding as "
                            "many products without A")
    max_p_value: float = Field(0.05, gt=0, lt=1, description="one-sided tests: A's buyers hold B more often than "
                               "the matched baseline, and more of those who hold both bought A first")
    max_len: int = Field(2, ge=2, le=2, description="items in a rule: one antecedent and one consequent")
    holdout_days: int = Field(180, ge=0, description="rules are mined before the last this-many days and kept "
                              "when A's buyers who lacked B then bought it in these days more often than the "
                              "matched baseline (0: no holdout check)")


class Journey(_Model):
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)
    cycles: Cycles = Field(default_factory=Cycles)
    cross_sell: CrossSell = Field(default_factory=CrossSell)


# --------------------------------------------------------------------------- strategy
class GroupRule(_Model):
    """A strategic group: customers for whom `when` (a rule in cvlib.expr over the customer table) is true.
    Rules are tried in order; the first that matches wins."""

    name: str = Field(description="the strategic group's name")
    objective: Literal["wider", "longer", "deeper"] = Field(
        description="wider (more products), longer (keep them) or deeper (spend more)")
    when: str = Field(description="a rule in cvlib's expression language (see cvlib.expr), e.g. "
                                  "\"churn_probability >= 0.5 and past_value_tier != 'Low'\"")

    @field_validator("when")
    @classmethod
    def _safe(cls, v: str) -> str:
        parse(v)  # ExpressionError is a ValueError: pydantic names the key
        return v


def _default_groups() -> list[GroupRule]:
    return [
        GroupRule(name="churn risk", objective="longer",
                  when="churn_probability >= 0.5 and past_value_tier != 'Low' and not within_cycle and not churned"),
        GroupRule(name="high value", objective="longer", when="clv_tier == 'High'"),
        GroupRule(name="growth potential", objective="deeper", when="value_cell == 'Develop' or trend > 0.25"),
        GroupRule(name="stable", objective="deeper", when="clv_tier == 'Medium'"),
    ]


class Action(_Model):
    """An action of the library and how its expected gain per customer is counted (cvlib.analysis.strategy.gains):
    - ``applies_to: clv`` (a revenue effect): uplift x the customer's expected gross profit per month (their CLV
      spread over the horizon) x the months the effect lasts (``effect_months``, each month keeping
      ``effect_decay`` of the month before), so a one-off effect is booked once, not over the whole horizon;
    - ``applies_to: value_at_risk`` (a retention effect): the CLV difference when the action keeps ``uplift`` of
      the customers who would leave: uplift x churn probability x CLV;
    - ``applies_to: win_back``: for departed customers only: uplift (the share won back) x their past gross profit
      per month x ``effect_months``.

    A campaign named in ``strategy.measured_uplift`` replaces the assumed uplift by its measured absolute revenue
    uplift per treated customer x the gross margin, with its interval, over the campaign's window."""

    name: str = Field(description="the action's name (named by win_back and measured_uplift)")
    groups: list[str] = Field(description="strategic groups the action is for")
    cost_per_customer: float = Field(ge=0, allow_inf_nan=False,
        description=(
            "cost of the action per targeted customer, in the study currency (required)"))
    uplift: float = Field(ge=0, le=5, description="expected relative gain on the value it acts on")
    applies_to: Literal["clv", "value_at_risk", "win_back"] = Field("clv", description="value the uplift applies "
                                                                    "to (see the class doc)")
    effect_months: float = Field(12.0, gt=0, le=120, allow_inf_nan=False,
                                 description="months a revenue or win-back effect lasts")
    effect_decay: float = Field(1.0, gt=0, le=1, description="share of the effect left after each month (1: none "
                                "lost until effect_months)")
    max_budget_share: float | None = Field(None, gt=0, le=1, description="most of the budget this action may take; "
                                           "None: strategy.max_action_share")
    lever: str | None = Field(None, description="the churn or outcome driver the action works on (e.g. "
                              "price_fairness); an action with no groups whose lever is a top churn driver is offered "
                              "to the retention groups")
    channel: str = Field("", description="the channel the action goes through (shown in the playbook)")
    priority: int = Field(2, ge=1, le=5, description="1 (first) to 5: order of the actions in the playbook")


def _default_actions() -> list[Action]:
    return [
        Action(name="win-back offer", groups=["churn risk"], cost_per_customer=15, uplift=0.25,
               applies_to="value_at_risk",
               channel="email + call", priority=1),
        Action(name="dedicated account team", groups=["high value"], cost_per_customer=40, uplift=0.08,
               channel="account manager", priority=1),
        Action(name="loyalty programme", groups=["high value", "stable"], cost_per_customer=5, uplift=0.05,
               channel="CRM programme", priority=2),
        Action(name="cross-sell of a new line", groups=["growth potential", "stable"], cost_per_customer=8, uplift=0.10,
               channel="email", priority=2),
        Action(name="lower cost to serve", groups=["low value"], cost_per_customer=0.5, uplift=0.02,
               channel="self-service", priority=3),
    ]


class Strategy(_Model):
    groups: list[GroupRule] = Field(default_factory=_default_groups,
        description=(
            "strategic groups: a list of {name, objective, when}; when is a rule over the customer table; the first "
            "match wins"))
    default_group: str = Field("low value", description="customers no rule matched")
    default_objective: Literal["wider", "longer", "deeper"] = Field(
        "wider", description="objective of the customers no rule matched")
    actions: list[Action] = Field(default_factory=_default_actions, min_length=1,
        description=(
            "the action library: a list of {name, groups, cost_per_customer, uplift, applies_to, effect_months, ...}"))
    budget: float = Field(50_000.0, gt=0, allow_inf_nan=False,
                          description="total budget for the actions, in the study currency")
    sensitivity: list[float] = Field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5],
                                     description="multipliers of every uplift for the sensitivity chart")
    win_back: dict[str, str] = Field(default_factory=dict, description="churn reason -> the action of the library "
                                     "that answers it (reasons matched ignoring case and spacing)")
    measured_uplift: dict[str, str] = Field(default_factory=dict, description="action -> campaign: the campaign's "
                                            "measured revenue uplift per treated customer (x gross margin, over the "
                                            "campaign window) replaces the action's assumed uplift")
    max_action_share: float = Field(0.5, gt=0, le=1, description="most of the budget one action may take "
                                    "(diminishing returns); 1: no limit")
    max_group_share: float = Field(1.0, gt=0, le=1, description="most of the budget spent on one strategic group; "
                                   "1: no limit")
    departed_group: str = Field("departed", description="the group of customers who have left (cvlib.status): "
                                "only win_back actions reach it")

    @model_validator(mode="after")
    def _known_groups(self) -> "Strategy":
        names = {g.name for g in self.groups} | {self.default_group, self.departed_group}
        if self.departed_group in {g.name for g in self.groups} | {self.default_group}:
            raise ValueError(f"departed_group {self.departed_group!r} is also the name of a group rule or the default "
                             "group: customers who have left are put in it before any rule")
        for a in self.actions:
            unknown = [g for g in a.groups if g not in names]
            if unknown:
                raise ValueError(f"action {a.name!r} is for unknown group(s) {unknown}; groups are {sorted(names)}")
            if a.applies_to == "win_back" and any(g != self.departed_group for g in a.groups):
                raise ValueError(f"action {a.name!r} is a win-back action: it can only be for the group "
                                 f"{self.departed_group!r} (customers who have left), not {a.groups}")
            if a.applies_to != "win_back" and self.departed_group in a.groups:
                raise ValueError(f"action {a.name!r} is for the group {self.departed_group!r} of customers who have "
                                 "left: set applies_to: win_back (their forward value is 0)")
        actions = {a.name for a in self.actions}
        for action in self.measured_uplift:
            if action not in actions:
                raise ValueError(f"measured_uplift: {action!r} is not in the action library; actions are "
                                 f"{sorted(actions)}")
        for reason, action in self.win_back.items():
            if action not in actions:
                raise ValueError(f"win_back: the action {action!r} for the reason {reason!r} is not in the action "
                                 f"library; actions are {sorted(actions)}")
        return self


# --------------------------------------------------------------------------- study
class Report(_Model):
    top_n: int = Field(10, ge=1, le=100, description="rows shown in 'top' tables")
    language: Literal["en", "zh"] = Field("en", description="language of the reports: en (English) or zh "
                                          "(简体中文); exported files keep English column names")


class CampaignParams(_Model):
    """Campaign evaluation (cvlib.analysis.campaign), when inputs.campaigns is given."""

    window_days: int = Field(90, ge=1, le=730, description="outcomes are measured this many days after the date")
    bootstrap: int = Field(1000, ge=0, le=20000, description="resamples for the uplift intervals")
    seed: int = Field(0, description="random seed of the campaign bootstrap")
    costs: dict[str, float] = Field(default_factory=dict, description="campaign -> total cost")
    cost_per_customer: dict[str, float] = Field(default_factory=dict, description="campaign -> cost per treated "
                                                "customer (when no total cost is given)")
    treatment_share: dict[str, float] = Field(default_factory=dict, description="campaign -> planned treatment share")
    default_treatment_share: float = Field(0.5, gt=0, lt=1, description="planned share when not given per campaign")


KPI_KEYS = ("customers", "revenue", "top20_share", "mean_clv", "churn_rate", "retention_rate", "value_at_risk",
            "plan_net_value", "nps")


class Kpi(_Model):
    """A KPI to monitor: one of the headline figures, with an optional target and industry benchmark."""

    kpi: Literal["customers", "revenue", "top20_share", "mean_clv", "churn_rate", "retention_rate", "value_at_risk",
                 "plan_net_value", "nps"] = Field(

        description=(
            "the KPI: customers, revenue, top20_share, mean_clv, churn_rate, retention_rate, value_at_risk, "
            "plan_net_value or nps"))
    target: float | None = Field(None, allow_inf_nan=False, description="in the KPI's unit (shares as 0-1)")
    benchmark: float | None = Field(None, allow_inf_nan=False, description="an industry benchmark, same unit")
    direction: Literal["higher", "lower"] = Field("higher", description="which way is better")


class Monitoring(_Model):
    kpis: list[Kpi] = Field(default_factory=list, description="KPIs shown against target and benchmark, with their "
                                                               "trend over the study's runs, on the index page")
    history: int = Field(20, ge=1, le=200, description="earlier complete runs in the trend")


class Study(_Model):
    study: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$",
                       description="short plain name (letters, digits, _ . -; not starting with '.'), "
                                   "used for the report folder")
    client: str = Field(description="client name shown in the reports")
    currency: str = Field("USD", description="currency code shown with every amount (e.g. USD, CNY, EUR)")
    inputs: Inputs
    privacy: Privacy = Field(default_factory=Privacy)
    report: Report = Field(default_factory=Report)
    cleaning: Cleaning = Field(default_factory=Cleaning)
    rfm: Rfm = Field(default_factory=Rfm)
    clv: Clv = Field(default_factory=Clv)
    value: Value = Field(default_factory=Value)
    drivers: Drivers = Field(default_factory=Drivers)
    journey: Journey = Field(default_factory=Journey)
    strategy: Strategy = Field(default_factory=Strategy)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    campaign: CampaignParams = Field(default_factory=CampaignParams)

    # where the YAML file was; input paths are relative to it
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _cross_checks(self) -> "Study":
        """Checks that span sections: everything that does not need the data is refused before a run."""
        if self.rfm.frequency == "orders" and not self.inputs.transactions.columns.order_id:
            raise ValueError("rfm.frequency is 'orders' but inputs.transactions.columns.order_id is not mapped; "
                             "map the order id column or use frequency: days")

        categories = rule_categories(self)
        for i, g in enumerate(self.strategy.groups):
            rule = parse(g.when)
            try:
                check_names(rule, RULE_COLUMNS)
            except ExpressionError as exc:
                raise ValueError(f"strategy.groups.{i}.when (group {g.name!r}): {exc}") from None
            text = sorted(rule.arithmetic_names & (set(categories) | set(TEXT_RULE_COLUMNS)))
            if text:
                raise ValueError(f"strategy.groups.{i}.when (group {g.name!r}) does arithmetic on {', '.join(text)}, "
                                 "which hold text or dates: compare them instead (==, !=, in [...])")
            for col, value in rule.literals():
                allowed = categories.get(col)
                if allowed is not None and value not in allowed:
                    raise ValueError(f"strategy.groups.{i}.when (group {g.name!r}) tests {col} == {value!r}, but "
                                     f"no customer can have that {col}: the names are {sorted(allowed)}")
        return self

    def resolve(self, path: str) -> Path:
        """Absolute path of an input file (relative paths are relative to the params file)."""
        if path.startswith(EXAMPLE_PREFIX):
            rest = path[len(EXAMPLE_PREFIX):]
            if rest.startswith("agency/"):  # generated on first use (deterministic)

                return agency_cache() / rest[len("agency/"):]
            return DATA_DIR / rest
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def input_tables(self) -> dict[str, TableInput]:
        tables = {"transactions": self.inputs.transactions}
        for name in ATTRIBUTE_TABLES:
            t = getattr(self.inputs, name)
            if t is not None:
                tables[name] = t
        return tables

    def resolved(self) -> dict[str, Any]:
        """The study as plain data with every file path absolute (dates as ISO text): what a run used,
        re-runnable from any folder."""
        data = self.model_dump(mode="json")
        for name in self.input_tables():
            path = data["inputs"][name]["path"]
            if not path.startswith(EXAMPLE_PREFIX):
                data["inputs"][name]["path"] = str(self.resolve(path))
        if data["privacy"].get("key_file"):
            data["privacy"]["key_file"] = str(self.resolve(data["privacy"]["key_file"]))
        return data

    def to_yaml(self, resolved: bool = False) -> str:
        data = self.resolved() if resolved else self.model_dump(mode="json")
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------- loading
def parse_override(text: str) -> tuple[str, Any]:
    """'cleaning.outliers.method=iqr' -> ('cleaning.outliers.method', 'iqr'), value typed by YAML."""
    if "=" not in text:
        raise ParamError(f"--set {text!r}: expected KEY=VALUE, e.g. --set cleaning.outliers.method=iqr")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ParamError(f"--set {text!r}: the key is empty")
    try:
        parsed = safe_yaml(value) if value.strip() else None
    except yaml.YAMLError as exc:
        if "aliases" in str(exc):
            raise ParamError(f"--set {key}: {exc}") from None
        parsed = value  # kept as text: validation then says what the key allows
    return key, parsed


def apply_overrides(data: dict, overrides: dict[str, Any] | list[str] | None) -> dict:
    """Set dotted keys in a nested dict (a copy); lists of 'k=v' strings are parsed first."""
    if not overrides:
        return data
    if isinstance(overrides, list):
        overrides = dict(parse_override(o) for o in overrides)

    out = copy.deepcopy(data)
    for key, value in overrides.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.get(part) if isinstance(node, dict) else None
            if nxt is None:
                nxt = {}
                node[part] = nxt
            if not isinstance(nxt, dict):
                raise ParamError(f"--set {key}: {part!r} is a value, not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """Field names of the model found by walking `loc` (for 'did you mean')."""

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return list(current.model_fields)
        ann = field.annotation
        candidates = [ann, *typing.get_args(ann)]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [n for n, f in current.model_fields.items() if not f.exclude]
    return None


def format_validation_error(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    """One readable line per problem: key, what is wrong, what is allowed."""
    lines = [f"Invalid study parameters in {source}:"]
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
        # pydantic adds the union member's class name to loc; drop those
        loc = tuple(p for p in loc if not (isinstance(p, str) and p[:1].isupper()))
        key = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            valid = _fields_at(model, loc[:-1]) or []
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            lines.append(f"  - {key}: unknown key.{hint} Allowed here: {', '.join(valid)}.")
        elif e["type"] == "missing":
            lines.append(f"  - {key}: required but missing.")
        else:
            allowed = ""
            ctx = e.get("ctx") or {}
            if "expected" in ctx:
                allowed = f" Allowed: {ctx['expected']}."
            msg = e["msg"].removeprefix("Value error, ")
            got = short_repr(e.get("input"))  # bounded: the value may be huge
            got = f" (got {got})" if not isinstance(e.get("input"), dict) else ""
            lines.append(f"  - {key}: {msg}{got}.{allowed}" if key else f"  - {msg}.")
    return "\n".join(lines)


def load_study(path: str | Path, overrides: dict[str, Any] | list[str] | None = None,
               check_files: bool = True) -> Study:
    """Read, override and validate a study YAML file; check that the input files exist."""
    path = Path(path)
    if "\x00" in str(path):
        raise ParamError(f"Study parameters file name holds a NUL character: {short_repr(str(path))}")
    if not path.is_file():
        raise ParamError(f"Study parameters file not found: {path}. Copy params/cdnow.yaml to start a new study.")
    if path.stat().st_size > MAX_PARAMS_BYTES:
        raise ParamError(f"{path} has {path.stat().st_size:,} bytes; a parameter file has at most "
                         f"{MAX_PARAMS_BYTES:,}. Is it the right file?")
    try:
        data = safe_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ParamError(f"{path} is not UTF-8 text (byte {exc.start}): save the parameter file as UTF-8.") from None
    except yaml.YAMLError as exc:
        text = str(exc)
        raise ParamError(f"{path} is not valid YAML: {text[:400] + ('...' if len(text) > 400 else '')}") from None
    if not isinstance(data, dict):
        raise ParamError(f"{path}: expected a mapping of keys (study, client, inputs, ...) at the top level")
    data = apply_overrides(data, overrides)
    data.pop("base_dir", None)
    try:
        study = Study.model_validate({**data, "base_dir": path.resolve().parent})
    except ValidationError as err:
        src = f"{path}" + (" (with --set overrides)" if overrides else "")
        raise ParamError(format_validation_error(err, src, Study)) from None
    if check_files:
        for name, table in study.input_tables().items():
            if "\x00" in table.path:
                raise ParamError(f"Invalid study parameters in {path}:\n  - inputs.{name}.path holds a NUL character: "
                                 f"{short_repr(table.path)}")
            resolved = study.resolve(table.path)
            if not resolved.is_file():
                raise ParamError(
                    f"Invalid study parameters in {path}:\n  - inputs.{name}.path: file not found: {resolved}. "
                    "Paths are relative to the params file; example data is 'example://CDNOW_master.txt'."
                )
    return study
