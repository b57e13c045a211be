"""Cleaning rules for client transactions, with an audit and a reconciliation.

Every input row ends in exactly one place: kept, quarantined (with a reason),
removed as an exact duplicate, or netted into its purchase (a return). Amounts
reconcile to the cent: see `reconciliation`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cvlib import engines, io, reading
from cvlib.analysis.cleaning_rules import DUPLICATE, NETTED, RULE_ORDER, Rows, _Book, _sum
from cvlib.errors import InputDataError
from cvlib.io import ROW
from cvlib.params import Cleaning, Study
from cvlib.parsing import parse_amounts


@dataclass
class CleaningResult:
    """Clean transactions, quarantined rows and the bookkeeping that explains them."""

    clean: pd.DataFrame
    quarantine: pd.DataFrame
    audit: pd.DataFrame
    reconciliation: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    outlier_bounds: tuple[float, float] | None = None
    removed: pd.DataFrame | None = None  # duplicates and netted return rows: source_row, outcome, amount_value

    @property
    def balanced(self) -> bool:
        """True when rows and amounts reconcile (amounts to the cent)."""
        r = self.reconciliation.set_index("term")
        return bool(r.loc["difference", "rows"] == 0 and abs(r.loc["difference", "amount"]) < 0.005)

    def summary(self) -> dict:
        r = self.reconciliation.set_index("term")
        return {
            "rows_in": int(r.loc["input", "rows"]),
            "rows_kept": int(r.loc["kept", "rows"]),
            "rows_quarantined": int(r.loc["quarantined", "rows"]),
            "rows_duplicates": int(r.loc["duplicates removed", "rows"]),
            "rows_netted": int(r.loc["returns netted into purchases", "rows"]),
            "amount_in": float(r.loc["input", "amount"]),
            "amount_kept": float(r.loc["kept", "amount"]),
            "customers": int(self.clean["customer_id"].nunique()),
            "first_date": str(self.clean["date"].min().date()) if len(self.clean) else None,
            "last_date": str(self.clean["date"].max().date()) if len(self.clean) else None,
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
    audit = pd.DataFrame(book.audit)
    if len(malformed):
        audit = pd.concat([pd.DataFrame([book.row("malformed_line", True, "quarantined", len(malformed), 0.0)]),
                           audit], ignore_index=True)
    dup, net = book.outcome == DUPLICATE, book.outcome == NETTED
    recon = reconciliation(raw_rows=len(raw) + len(malformed), amount_in=_sum(amount_raw), clean=clean,
                           quarantine=quarantine, duplicates=(int(dup.sum()), _sum(amount_raw[dup])),
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


def reconciliation(raw_rows: int, amount_in: float, clean: pd.DataFrame, quarantine: pd.DataFrame,
                   duplicates: tuple[int, float], netted: tuple[int, float], capped: float) -> pd.DataFrame:
    """Rows and amounts of the input against the outputs.

    rows in = kept + quarantined + duplicates removed + returns netted;
    amount in = kept + quarantined + duplicates + netting effect + capping (to the cent).
    """
    rows = [
        ("input", raw_rows, amount_in, "rows read (malformed lines included); amounts as written in the file"),
        ("kept", len(clean), float(clean["amount"].sum()), "clean rows; amounts after netting and capping"),
        ("quarantined", len(quarantine), float(pd.to_numeric(quarantine["amount_value"], errors="coerce").sum()),
         "amounts as written in the file"),
        ("duplicates removed", duplicates[0], duplicates[1], "exact repeats of an earlier row"),
        ("returns netted into purchases", netted[0], netted[1],
         "return rows absorbed, less the reductions they made to kept purchases"),
        ("capping", 0, capped, "amount removed by capping outliers"),
    ]
    df = pd.DataFrame(rows, columns=["term", "rows", "amount", "note"])
    parts = df.iloc[1:]
    df.loc[len(df)] = ["difference", raw_rows - int(parts["rows"].sum()),
                       round(amount_in - float(parts["amount"].sum()), 6), "input minus the terms above: must be 0"]
    df["amount"] = df["amount"].round(2) + 0.0  # no "-0.00"
    return df


# --------------------------------------------------------------------------- the stage
def run_cleaning(study: Study, run_dir: str | Path) -> CleaningResult:
    """Read the study's transactions, clean them, write the stage outputs into run_dir."""
    raw, malformed = reading.read_transactions(study)
    if len(raw) == 0:
        raise InputDataError(f"inputs.transactions: {engines.describe(study, study.inputs.transactions)} has no "
                             "data rows.")
    spec = study.inputs.transactions
    result = clean_transactions(raw, study.cleaning, malformed, spec.date_format, spec.decimal, spec.thousands,
                                spec.allow_exponent)
    check_reconciliation(result)
    if len(result.clean) == 0:
        sample = result.quarantine.head(5).to_string()
        raise InputDataError(
            f"No rows survived cleaning of {engines.describe(study, spec)}. First quarantined rows:\n{sample}\n"
            "Check the column mapping, date_format, decimal/thousands and the analysis window in the params file."
        )
    run_dir = Path(run_dir)
    io.write_parquet(result.clean, run_dir / "transactions_clean.parquet")
    io.write_csv(result.quarantine, run_dir / "quarantine.csv")
    io.write_json({"summary": result.summary(), "audit": result.audit.to_dict("records"),
                   "reconciliation": result.reconciliation.to_dict("records")}, run_dir / "cleaning.json")
    return result


# --------------------------------------------------------------------------- profile of the clean data
def monthly_activity(clean: pd.DataFrame) -> pd.DataFrame:
    """Revenue, transactions and active customers per calendar month."""
    m = clean.assign(month=clean["date"].dt.to_period("M"))
    out = m.groupby("month").agg(revenue=("amount", "sum"), transactions=("amount", "size"),
                                 active_customers=("customer_id", "nunique")).reset_index()
    out["month"] = out["month"].dt.to_timestamp()
    return out


def coverage(clean: pd.DataFrame) -> pd.DataFrame:
    """One-row overview: dates covered, customers, transactions, revenue."""
    return pd.DataFrame([{
        "first date": clean["date"].min().date(), "last date": clean["date"].max().date(),
        "days covered": int((clean["date"].max() - clean["date"].min()).days) + 1,
        "customers": clean["customer_id"].nunique(), "transactions": len(clean),
        "revenue": clean["amount"].sum(), "mean transaction": clean["amount"].mean(),
    }])


def top_customers(clean: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The n customers with the highest revenue, with their share of the total."""
    g = clean.groupby("customer_id", observed=True).agg(revenue=("amount", "sum"), transactions=("amount", "size"),
                                                        first=("date", "min"), last=("date", "max"))
    g["share_of_revenue"] = g["revenue"] / clean["amount"].sum()
    return g.sort_values("revenue", ascending=False).head(n).reset_index()


def check_reconciliation(result: CleaningResult) -> None:
    """Raise if rows or amounts do not reconcile (the report must not go out then)."""
    if not result.balanced:
        raise AssertionError("Cleaning does not reconcile; do not use this run:\n" + result.reconciliation.to_string())


def quarantine_by_reason(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows and their amount (as written in the file) per rule."""
    if quarantine.empty:
        return pd.DataFrame({"rule": ["(none)"], "rows": [0], "amount": [0.0]})
    q = quarantine.assign(amount=pd.to_numeric(quarantine["amount_value"], errors="coerce"))
    return q.groupby("rule").agg(rows=("rule", "size"), amount=("amount", "sum")).reset_index().sort_values(
        "rows", ascending=False)

