"""Customer summary speed and memory (issue #3). Run by hand: python benchmarks/bench_rfm.py [--rows N] [--ids ...]

10M transactions of 1M customers, occasions by distinct days and by distinct orders (target: <= 5 s,
<= 3 GB peak), beside a DuckDB GROUP BY on the same parquet file in the same run (peer; `pip install
duckdb` first). Customer ids come in four shapes, because each takes its own encoding path:
`numeric` (7 digits, zero-padded: read as numbers), `code` (8 characters such as C0012345: packed
bytes), `text` (CUST-12345 of varying length: the digits after the prefix read as numbers) and `hash`
(u3f2a9c01 of varying length: Arrow's dictionary encoding). Each measurement runs in
a fresh process; peak memory is the process's max RSS, the loaded data included.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, measure, report  # noqa: E402

OURS = """
import sys, time, numpy as np, pandas as pd
from pathlib import Path
from cvlib import io
from cvlib.customers import customer_summary
by = sys.argv[2]
tx = io.read_stage(Path(sys.argv[1]).parent, Path(sys.argv[1]).name)  # as the RFM stage reads its input
if by == "order":  # every row its own order: the most orders there can be
    tx["order_id"] = pd.array(np.arange(len(tx)).astype(str), dtype="string[pyarrow]")
t0 = time.perf_counter()
s = customer_summary(tx, by=by, unit="weeks")
dt = time.perf_counter() - t0
print(f"summary by {by} {dt:.2f}s customers={len(s)} id_dtype={tx['customer_id'].dtype}")
"""
DUCK = """
import sys, time, duckdb
con = duckdb.connect()
con.execute('SET enable_progress_bar = false')
t0 = time.perf_counter()
df = con.execute('''
  WITH occ AS (SELECT customer_id, CAST(date AS DATE) AS day, SUM(amount) AS value
               FROM read_parquet(?) GROUP BY 1, 2),
  end_ AS (SELECT MAX(day) AS e FROM occ)
  SELECT customer_id, COUNT(*) AS frequency, SUM(value) AS monetary, MIN(day) AS first, MAX(day) AS last,
         (SELECT e FROM end_) - MAX(day) AS recency, ((SELECT e FROM end_) - MIN(day)) / 7.0 AS T,
         (MAX(day) - MIN(day)) / 7.0 AS t_x
  FROM occ GROUP BY customer_id''', [sys.argv[1]]).df()
dt = time.perf_counter() - t0
print(f"duckdb {dt:.2f}s customers={len(df)}")
"""


ID_SHAPES = {"numeric": lambda c: np.char.zfill(c.astype(str), 7),
             "code": lambda c: np.char.add("C", np.char.zfill(c.astype(str), 7)),
             "text": lambda c: np.char.add("CUST-", c.astype(str)),
             # hashed ids of several lengths (web or CRM keys): no integer key, Arrow's dictionary encoding
             "hash": lambda c: np.char.add("u", np.char.mod("%x", (c * 2654435761) % 2**40))}


def make(rows: int, customers: int, ids: str = "numeric") -> Path:
    path = DATA / f"tx_{rows}_{ids}.parquet"
    if not path.exists():
        rng = np.random.default_rng(0)
        ids = ID_SHAPES[ids](rng.integers(0, customers, rows))
        day = rng.integers(0, 3 * 365, rows).astype("timedelta64[D]") + np.datetime64("2021-01-01")
        DATA.mkdir(exist_ok=True)
        pd.DataFrame({"customer_id": pd.array(ids, dtype="string[pyarrow]"), "date": day.astype("datetime64[ns]"),
                      "amount": np.round(rng.lognormal(3.5, 1, rows), 2)}).to_parquet(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ids", nargs="+", choices=list(ID_SHAPES), default=list(ID_SHAPES))
    args = ap.parse_args()
    paths = {shape: make(args.rows, args.rows // 10, shape) for shape in args.ids}
    out = []
    for _ in range(args.repeat):
        for shape, path in paths.items():
            bases = ["day", "order"] if shape == "numeric" else ["day"]
            for by in bases:
                m = measure([sys.executable, "-c", OURS, str(path), by])
                out.append({"ids": shape, "run": m["stdout"], "peak_gb": m["peak_gb"]})
            try:
                m = measure([sys.executable, "-c", DUCK, str(path)])
                out.append({"ids": shape, "run": m["stdout"], "peak_gb": m["peak_gb"]})
            except SystemExit as exc:
                out.append({"ids": shape, "run": f"duckdb not run: {str(exc)[-200:]}"})
    report(f"customer summary, {args.rows:,} transactions of {args.rows // 10:,} customers", out)


if __name__ == "__main__":
    main()
