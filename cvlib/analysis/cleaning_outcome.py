"""What the pushed-down cleaning (`cleaning_engine`) ends with: the totals of one pass over the rows, the audit
rows read off them, the kept rows (written by the engine or fetched) and the quarantined rows."""
from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from cvlib import i18n, io
from cvlib.analysis.cleaning_engine import NUMERIC_COLUMNS, TEXT_COLUMNS, Pushed, strip
from cvlib.analysis.cleaning_rules import KEPT, QUARANTINED
from cvlib.engines.fetch import arrow_batches, to_pandas
from cvlib.io import ROW


def totals(p: Pushed) -> tuple[pd.DataFrame, dict[str, float]]:
    """One pass over the final rows: count and amount (as written) per rule and outcome, and the sums the audit and
    the reconciliation need."""
    import ibis

    t = p.t
    raw = t._amount_raw.fill_null(0.0)
    alive = t._out == KEPT
    per = t.group_by(["_rule", "_out"]).agg(n=t.count(), raw=raw.sum(), amount=t._amount.sum()).to_pandas()
    per = per.astype({"n": "int64", "raw": "float64", "amount": "float64"})  # Spark sums literals as decimals
    one = t.aggregate(rows_in=t.count(), amount_in=raw.sum(), changed=(t._red > 0).sum(),
                      kept_zero=t._kept_zero.sum(), capped_rows=t._is_out.sum(), capped=t._adj_cap.sum(),
                      flagged_rows=t._is_outlier.sum(), flagged=ibis.ifelse(t._is_outlier, t._amount, 0.0).sum(),
                      adj_net=ibis.ifelse(alive, t._adj_net, 0.0).sum(),
                      adj_cap=ibis.ifelse(alive, t._adj_cap, 0.0).sum(),
                      adjusted=(alive & ((t._adj_net != 0) | (t._adj_cap != 0))).sum(),
                      customers=t._cust.nunique(where=alive), first=t._date.min(where=alive),
                      last=t._date.max(where=alive)).to_pandas().iloc[0].to_dict()
    one = {k: float(v) if isinstance(v, Decimal) else v for k, v in one.items()}
    return per, {k: (0 if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in one.items()}


def _value(spec: Any, per: pd.DataFrame, one: dict, k_q: Any) -> Any:
    """An audit row's value from the totals: a count or amount of a rule's rows, or a named sum."""
    if not isinstance(spec, tuple):
        return spec
    kind = spec[0]
    if kind in ("n", "raw"):
        hit = per[(per["_rule"] == spec[1]) & (per["_out"] == spec[2])]
        return int(hit["n"].sum()) if kind == "n" else float(hit["raw"].sum())
    if kind == "netted":
        return i18n.t("cleaning.netted", changed=f"{int(one['changed']):,}", unmatched=f"{k_q('returns'):,}")
    if kind == "kept_zero":
        return i18n.t("cleaning.kept_zero", n=f"{int(one['kept_zero']):,}") if one["kept_zero"] else ""
    if kind == "capped_rows":
        return int(one["capped_rows"]) + k_q("outliers")
    if kind == "cap_detail":
        absurd = float(per[(per["_rule"] == "outliers") & (per["_out"] == QUARANTINED)]["raw"].sum())
        return spec[1] + (f"; {absurd:,.2f} above the ceiling quarantined" if k_q("outliers") else "")
    return int(one[kind]) if kind.endswith("_rows") else float(one[kind])


def audit(p: Pushed, pending: list[dict], per: pd.DataFrame, one: dict) -> pd.DataFrame:
    """The audit rows of `cleaning_rules`, their numbers read off the totals."""
    def k_q(rule: str) -> int:
        return int(per[(per["_rule"] == rule) & (per["_out"] == QUARANTINED)]["n"].sum())

    rows = []
    for r in pending:
        r = {k: _value(v, per, one, k_q) for k, v in r.items()}
        rows.append({**r, "rows_affected": int(r["rows_affected"]),
                     "amount_affected": round(float(r["amount_affected"]), 2)})
    k = k_q("implausible_date")
    if k:
        p.notes.append(i18n.t("cleaning.implausible_note", n=f"{k:,}", span=p.spans["implausible_date"]))
    return pd.DataFrame(rows)


def clean_expr(p: Pushed, any_adjusted: bool) -> Any:
    """The kept rows in cvlib's columns (as `cleaning._clean_frame`), in row order."""
    t = p.t.filter(p.t._out == KEPT)
    cols = {ROW: t[ROW], "customer_id": t._cust, "date": t._date, "amount": t._amount}
    cols.update({c: t[f"_{c}"] for c in NUMERIC_COLUMNS if c in p.raw_columns})
    cols.update({c: strip(t[c]) for c in TEXT_COLUMNS if c in p.raw_columns})
    if any_adjusted:
        cols["amount_original"] = t._amount_raw
    if p.rules.outliers.enabled and p.rules.outliers.action == "flag":
        cols["is_outlier"] = t._is_outlier
    return t.select(**cols).order_by(ROW)


def quarantine_frame(p: Pushed) -> pd.DataFrame:
    """The quarantined rows (as `cleaning._quarantine_frame`): the raw text, rule, reason and amounts."""
    t = p.t.filter(p.t._out == QUARANTINED)
    q = to_pandas(p.con, t.select(ROW, "_rule", "_reason", *p.raw_columns, "_amount_raw", "_amount").order_by(ROW),
                  ROW)
    q = q.rename(columns={"_rule": "rule", "_reason": "reason", "_amount_raw": "amount_value",
                          "_amount": "amount_after_netting"})
    if q.empty:  # as the pandas path leaves it
        return pd.DataFrame(columns=list(q.columns))
    q[ROW] = q[ROW].astype("int64")
    return q.astype({c: "string" for c in p.raw_columns})


def write_clean(con: Any, expr: Any, out: Path) -> None:
    """The clean rows written to the Parquet file `out` as the pandas path writes them (its types and pandas
    metadata: Arrow text, nanosecond dates, 64-bit row numbers), in row order, streamed from the engine in Arrow
    batches of a million rows: never held whole in Python."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    casts = {c: expr[c].cast("string") for c in expr.columns if c in ("customer_id", *TEXT_COLUMNS)}
    if "date" in expr.columns:
        casts["date"] = expr.date.cast("timestamp(9)")
    casts[ROW] = expr[ROW].cast("int64")
    reader = arrow_batches(con, expr.mutate(**casts).order_by(ROW))
    shape = pa.Table.from_batches([], schema=reader.schema).to_pandas()
    shape = shape.astype({c: io.STRING for c in casts if c not in ("date", ROW)})
    schema = pa.Schema.from_pandas(shape, preserve_index=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(str(out), schema) as w:
        for batch in reader:
            w.write_table(pa.Table.from_batches([batch]).cast(schema))


def as_pandas_clean(con: Any, expr: Any) -> pd.DataFrame:
    """The clean rows fetched with the pandas path's types (Arrow text, nanosecond dates)."""
    df = to_pandas(con, expr, ROW)
    for c in df.columns:
        if c in ("customer_id", *TEXT_COLUMNS):
            df[c] = df[c].astype(io.STRING)
        elif c == "date":
            df[c] = df[c].astype("datetime64[ns]")
        elif c == ROW:
            df[c] = df[c].astype("int64")
    return df.reset_index(drop=True)


