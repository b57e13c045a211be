"""Cleaning rules for client transactions, with an audit and a reconciliation.

Every input row ends in exactly one place: kept, quarantined (with a reason),
removed as an exact duplicate, or netted into its purchase (a return). Amounts
reconcile to the cent: see `reconciliation`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib import engines, i18n, io, reading
from cvlib.analysis import cleaning_engine, cleaning_outcome
from cvlib.analysis.cleaning_rules import (
    DUPLICATE,
    KEPT,
    NETTED,
    QUARANTINED,
    RULE_ORDER,
    Rows,
    _Book,
    _sum,
    reconciliation,
)
from cvlib.engines import aggregates
from cvlib.errors import InputDataError
from cvlib.io import ROW
from cvlib.params import Cleaning, Study
from cvlib.parsing import parse_amounts


@dataclass
class CleaningResult:
    """Clean transactions, quarantined rows and the bookkeeping that explains them."""

    clean: pd.DataFrame | None  # None when the engine wrote the kept rows straight to `clean_file`
    quarantine: pd.DataFrame
    audit: pd.DataFrame
    reconciliation: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    outlier_bounds: tuple[float, float] | None = None
    removed: pd.DataFrame | None = None  # duplicates and netted return rows: source_row, outcome, amount_value
    clean_file: Path | None = None  # transactions_clean.parquet, once written

    @property
    def balanced(self) -> bool:
        """True when rows and amounts reconcile (amounts to the cent)."""
        r = self.reconciliation.set_index("term")
        return bool(r.loc["difference", "rows"] == 0 and abs(r.loc["difference", "amount"]) < 0.005)

    def summary_rows(self, term: str) -> int:
        """The rows of one reconciliation term (input, kept, quarantined...)."""
        return int(self.reconciliation.set_index("term").loc[term, "rows"])

    def summary(self) -> dict:
        r = self.reconciliation.set_index("term")
        kept = int(r.loc["kept", "rows"])
        source = self.clean_file if self.clean_file is not None else self.clean
        c = coverage(source).iloc[0] if kept and source is not None else None
        return {
            "rows_in": int(r.loc["input", "rows"]),
            "rows_kept": int(r.loc["kept", "rows"]),
            "rows_quarantined": int(r.loc["quarantined", "rows"]),
            "rows_duplicates": int(r.loc["duplicates removed", "rows"]),
            "rows_netted": int(r.loc["returns netted into purchases", "rows"]),
            "amount_in": float(r.loc["input", "amount"]),
            "amount_kept": float(r.loc["kept", "amount"]),
            "customers": int(c["customers"]) if c is not None else 0,
            "first_date": str(c["first date"]) if c is not None else None,
            "last_date": str(c["last date"]) if c is not None else None,
            "balanced": self.balanced,
            "notes": self.notes,
        }


def clean_transactions(
    raw: pd.DataFrame,
    rules: Cleaning,
    malformed: pd.DataFrame | None = None,
    date_format: str | list[str] | None = None,
    decimal: str = ".",
    thousands: str | None = None,
    allow_exponent: bool = False,
    today: dt.date | None = None,
) -> CleaningResult:
    """Apply the cleaning rules (`cleaning_rules.RULE_ORDER`, each adding its audit rows) to raw (text) transactions
    in cvlib's column names; every row ends kept, quarantined, removed as a duplicate or netted into a purchase."""
    malformed = malformed if malformed is not None else pd.DataFrame(columns=["line", "text", "expected", "got"])
    rows = Rows.read(raw, rules, date_format, decimal, thousands, allow_exponent, today)
    for rule in RULE_ORDER:
        rows.book.audit += rule(rows)
    book, amount_raw = rows.book, rows.amount_raw
    clean = _clean_frame(rows, decimal, thousands)
    quarantine = _quarantine_frame(raw, book, amount_raw, rows.amount, malformed)
    audit = _malformed_audit(pd.DataFrame(book.audit), malformed)
    dup, net = book.outcome == DUPLICATE, book.outcome == NETTED
    q_amount = float(pd.to_numeric(quarantine["amount_value"], errors="coerce").sum())
    recon = reconciliation(raw_rows=len(raw) + len(malformed), amount_in=_sum(amount_raw),
                           kept=(len(clean), float(clean["amount"].sum())), quarantined=(len(quarantine), q_amount),
                           duplicates=(int(dup.sum()), _sum(amount_raw[dup])),
                           netted=(int(net.sum()), _sum(amount_raw[net]) - _sum(rows.adj_net[book.alive])),
                           capped=-_sum(rows.adj_cap[book.alive]))
    gone = np.flatnonzero(dup | net)
    removed = pd.DataFrame({ROW: raw[ROW].to_numpy()[gone],
                            "outcome": np.where(book.outcome[gone] == DUPLICATE, "duplicate", "netted"),
                            "amount_value": amount_raw[gone]})
    return CleaningResult(clean=clean, quarantine=quarantine, audit=audit, reconciliation=recon, notes=rows.notes,
                          outlier_bounds=rows.bounds, removed=removed)


def _clean_frame(rows: Rows, decimal: str, thousands: str | None) -> pd.DataFrame:
    """The kept rows in cvlib's columns: amounts after netting and capping, optional columns parsed."""
    raw, keep, has = rows.raw, rows.book.alive, set(rows.raw.columns)
    clean = pd.DataFrame({ROW: raw[ROW].to_numpy()[keep], "customer_id": rows.cust.to_numpy()[keep],
                          "date": rows.dates.to_numpy()[keep], "amount": rows.amount[keep]})
    clean["customer_id"] = clean["customer_id"].astype(io.STRING)
    for col in ("quantity", "cost", "margin"):
        if col in has:
            clean[col] = parse_amounts(raw[col], decimal, thousands).to_numpy()[keep]
    for col in ("order_id", "product", "channel"):
        if col in has:
            clean[col] = raw[col].astype(io.STRING).str.strip().to_numpy()[keep]
            clean[col] = clean[col].astype(io.STRING)
    if (rows.adj_net[keep] != 0).any() or (rows.adj_cap[keep] != 0).any():
        clean["amount_original"] = rows.amount_raw[keep]
    if rows.rules.outliers.enabled and rows.rules.outliers.action == "flag":
        clean["is_outlier"] = rows.is_outlier[keep]
    return clean


def _quarantine_frame(raw: pd.DataFrame, book: _Book, amount_raw: np.ndarray, amount: np.ndarray,
                      malformed: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in raw.columns]
    if book.parts:
        parts = pd.concat(book.parts, ignore_index=True).sort_values("_pos")
        pos = parts["_pos"].to_numpy()
        q = raw.iloc[pos][cols].reset_index(drop=True).astype({c: "string" for c in cols if c != ROW})
        q.insert(1, "rule", parts["rule"].to_numpy())
        q.insert(2, "reason", parts["reason"].to_numpy())
        q["amount_value"] = amount_raw[pos]
        q["amount_after_netting"] = amount[pos]
    else:
        q = pd.DataFrame(columns=[ROW, "rule", "reason", *[c for c in cols if c != ROW], "amount_value",
                                  "amount_after_netting"])
    return _with_malformed(q, malformed)


def _with_malformed(q: pd.DataFrame, malformed: pd.DataFrame) -> pd.DataFrame:
    """The quarantine with the file's malformed lines added, in row order."""
    if len(malformed):
        rows = malformed[ROW] if ROW in malformed.columns else pd.Series(pd.NA, index=malformed.index)
        m = pd.DataFrame({ROW: rows.to_numpy(), "rule": "malformed_line",
                          "reason": [f"file row {ln}: expected {e} fields, found {g}" for ln, e, g in
                                     zip(malformed["line"], malformed["expected"], malformed["got"])],
                          "raw_line": malformed["text"].astype(str).to_numpy()})
        if "customer_id" in malformed.columns:
            m["customer_id"] = malformed["customer_id"].astype(str).to_numpy()
        q = pd.concat([m, q], ignore_index=True).sort_values(ROW, kind="stable", na_position="first")
        q = q.reset_index(drop=True)
    return q


def _malformed_audit(audit: pd.DataFrame, malformed: pd.DataFrame) -> pd.DataFrame:
    """The audit with a first row for the malformed lines, when there are any."""
    if not len(malformed):
        return audit
    first = pd.DataFrame([_Book.row("malformed_line", True, "quarantined", len(malformed), 0.0)])
    return pd.concat([first, audit], ignore_index=True)


def clean_on_engine(con: Any, t: Any, rules: Cleaning, malformed: pd.DataFrame | None = None,
                    date_format: str | list[str] | None = None, decimal: str = ".", thousands: str | None = None,
                    allow_exponent: bool = False, today: dt.date | None = None,
                    out: Path | None = None) -> CleaningResult:
    """`clean_transactions` run by the engine of Ibis table `t` (raw text in cvlib's column names and
    `source_row`): the same rules, audit, reconciliation, kept and quarantined rows (`cleaning_engine`). With
    `out` (DuckDB only) the engine writes the kept rows there as Parquet, in the pandas path's types, and they
    never come to Python (`clean` is then None)."""
    malformed = malformed if malformed is not None else pd.DataFrame(columns=["line", "text", "expected", "got"])
    p = cleaning_engine.push_cleaning(con, t, rules, date_format, decimal, thousands, allow_exponent, today)
    per, one = cleaning_outcome.totals(p)
    audit = _malformed_audit(cleaning_outcome.audit(p, p.audit, per, one), malformed)
    kept = cleaning_outcome.clean_expr(p, one["adjusted"] > 0)
    clean = cleaning_outcome.as_pandas_clean(con, kept) if out is None else cleaning_outcome.write_clean(con, kept, out)
    quarantine = _with_malformed(cleaning_outcome.quarantine_frame(p), malformed)

    def part(out: int, col: str = "raw") -> tuple[int, float]:
        hit = per[per["_out"] == out]
        return int(hit["n"].sum()), float(hit[col].sum())

    q_n, q_amount = part(QUARANTINED)
    recon = reconciliation(raw_rows=int(one["rows_in"]) + len(malformed), amount_in=float(one["amount_in"]),
                           kept=part(KEPT, "amount"), quarantined=(q_n + len(malformed), q_amount),
                           duplicates=part(DUPLICATE), netted=(part(NETTED)[0], part(NETTED)[1] - one["adj_net"]),
                           capped=-one["adj_cap"])
    removed = engines.to_pandas(con, p.t.filter(p.t._out.isin([DUPLICATE, NETTED])).select(
        ROW, outcome=(p.t._out == DUPLICATE).ifelse("duplicate", "netted"), amount_value=p.t._amount_raw
    ).order_by(ROW), ROW)
    return CleaningResult(clean=clean, quarantine=quarantine, audit=audit, reconciliation=recon, notes=p.notes,
                          outlier_bounds=p.bounds, removed=removed)


# --------------------------------------------------------------------------- the stage
@i18n.in_study_language
def run_cleaning(study: Study, run_dir: str | Path) -> CleaningResult:
    """Read the study's transactions, clean them (`cleaning.engine`: pandas or DuckDB), write the stage outputs
    (the kept rows written by DuckDB itself when it cleaned them: they never come to Python)."""
    spec = study.inputs.transactions
    run_dir = Path(run_dir)
    written = run_dir / ".transactions_clean.parquet.part"  # the engine's kept rows, until they are checked
    try:
        result = _cleaned(study, written)
        check_reconciliation(result)
        if result.summary_rows("kept") == 0:
            sample = result.quarantine.head(5).to_string()
            raise InputDataError(
                f"No rows survived cleaning of {engines.describe(study, spec)}. First quarantined rows:\n{sample}\n"
                "Check the column mapping, date_format, decimal/thousands and the analysis window in the params "
                "file.")
        final = run_dir / "transactions_clean.parquet"
        if result.clean is None:
            io.place_file(written, final)
        else:
            io.write_parquet(result.clean, final)
        result.clean_file = final
    finally:
        written.unlink(missing_ok=True)
    io.write_csv(result.quarantine, run_dir / "quarantine.csv")
    io.write_json({"summary": result.summary(), "audit": result.audit.to_dict("records"),
                   "reconciliation": result.reconciliation.to_dict("records")}, run_dir / "cleaning.json")
    return result


def _cleaned(study: Study, out: Path) -> CleaningResult:
    """The study's transactions cleaned by the engine `cleaning.engine` resolves to (DuckDB writes its kept rows
    to `out`)."""
    spec = study.inputs.transactions
    if study.cleaning.engine_for(spec.engine) != "pandas":
        return _clean_on_engine(study, out)
    raw, malformed = reading.read_transactions(study)
    _check_rows(study, len(raw))
    return clean_transactions(raw, study.cleaning, malformed, spec.date_format, spec.decimal, spec.thousands,
                              spec.allow_exponent)


def _check_rows(study: Study, n: int) -> None:
    if n == 0:
        raise InputDataError(f"inputs.transactions: {engines.describe(study, study.inputs.transactions)} has no "
                             "data rows.")


def _clean_on_engine(study: Study, out: Path | None = None) -> CleaningResult:
    """The rules run where the rows are: by the engine the transactions are read by when it is DuckDB or when
    `cleaning.engine` is source (nothing loaded whole), else by DuckDB on the rows read as for the pandas path."""
    spec = study.inputs.transactions
    args = (spec.date_format, spec.decimal, spec.thousands, spec.allow_exponent)
    if spec.engine == "duckdb" or study.cleaning.engine == "source":
        mapping = {k: v for k, v in spec.columns.model_dump().items() if v}
        url = engines.connection_url(study, spec, "transactions")
        with engines.backend(spec, url, study.base_dir, "transactions") as con:
            if study.cleaning.engine == "source":
                engines.check_working_tables(con, f"inputs.transactions ({engines.describe(study, spec)})")
            t = engines.raw_expr(con, study, spec, mapping, "transactions")
            result = clean_on_engine(con, t, study.cleaning, None, *args,
                                     out=out if con.name == "duckdb" else None)
        _check_rows(study, result.summary_rows("input"))  # counted by the cleaning: the table is not read twice
        return result
    raw, malformed = reading.read_transactions(study)
    _check_rows(study, len(raw))
    con = engines.duckdb()
    try:
        return clean_on_engine(con, con.create_table("raw", raw), study.cleaning, malformed, *args, out=out)
    finally:
        con.disconnect()


# --------------------------------------------------------------------------- profile of the clean data
def monthly_activity(clean: pd.DataFrame | Path) -> pd.DataFrame:
    """Revenue, transactions and active customers per calendar month (`clean`: the clean rows or their file)."""
    with aggregates.table_of(clean) as t:
        m = t.mutate(month=t.date.truncate("M"))
        out = m.group_by("month").agg(revenue=aggregates.exact_sum(m.amount), transactions=m.count(),
                                      active_customers=m.customer_id.nunique()).order_by("month").to_pandas()
    out["month"] = pd.to_datetime(out["month"]).astype("datetime64[ns]")
    return out.astype({"transactions": "int64", "active_customers": "int64"})


def coverage(clean: pd.DataFrame | Path) -> pd.DataFrame:
    """One-row overview: dates covered, customers, transactions, revenue (`clean`: the clean rows or their file)."""
    with aggregates.table_of(clean) as t:
        r = t.aggregate(first=t.date.min(), last=t.date.max(), customers=t.customer_id.nunique(),
                        transactions=t.count(), revenue=aggregates.exact_sum(t.amount)).to_pandas().iloc[0]
    first, last, n = pd.Timestamp(r["first"]), pd.Timestamp(r["last"]), int(r["transactions"])
    return pd.DataFrame([{
        "first date": first.date(), "last date": last.date(), "days covered": int((last - first).days) + 1,
        "customers": int(r["customers"]), "transactions": n,
        "revenue": float(r["revenue"]), "mean transaction": float(r["revenue"]) / n if n else np.nan,
    }])


def top_customers(clean: pd.DataFrame | Path, n: int = 10) -> pd.DataFrame:
    """The n customers with the highest revenue, with their share of the total (ties: by customer id)."""
    with aggregates.table_of(clean) as t:
        total = float(t.aggregate(total=aggregates.exact_sum(t.amount)).to_pandas()["total"].iloc[0])
        g = t.group_by("customer_id").agg(revenue=aggregates.exact_sum(t.amount), transactions=t.count(),
                                          first=t.date.min(), last=t.date.max())
        g = g.order_by([g.revenue.desc(), g.customer_id]).limit(n).to_pandas()
    g["customer_id"] = g["customer_id"].astype(io.STRING)
    g["share_of_revenue"] = g["revenue"] / total
    return g.astype({"transactions": "int64", "first": "datetime64[ns]", "last": "datetime64[ns]"})


def amounts(clean: pd.DataFrame | Path) -> pd.Series:
    """Every clean amount (for their histogram), read as one column."""
    with aggregates.table_of(clean) as t:
        return pd.Series(t.select("amount").to_pyarrow()["amount"].to_numpy(zero_copy_only=False), name="amount")


def check_reconciliation(result: CleaningResult) -> None:
    """Raise if rows or amounts do not reconcile (the report must not go out then)."""
    if not result.balanced:
        raise AssertionError("Cleaning does not reconcile; do not use this run:\n" + result.reconciliation.to_string())


def quarantine_by_reason(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows and their amount (as written in the file) per rule."""
    if quarantine.empty:
        return pd.DataFrame({"rule": [i18n.t("common.none")], "rows": [0], "amount": [0.0]})
    q = quarantine.assign(amount=pd.to_numeric(quarantine["amount_value"], errors="coerce"))
    return q.groupby("rule").agg(rows=("rule", "size"), amount=("amount", "sum")).reset_index().sort_values(
        "rows", ascending=False)

