"""The journey stage's computation at scale (issue #16: within 60 s at 10M rows, 1M customers). Run by hand:

    python benchmarks/bench_journey.py [--rows 10000000] [--repeat 2]

Builds in memory about --rows purchases of rows/10 customers who buy and drop out as BG/NBD assumes
(benchmarks/common.py), each with a product (8 products; buyers of product 0 favour product 1, a planted
cross-sell) and a channel (3 channels), writes them as the stage finds them (a Parquet file), and times the stage's
work: the engine's aggregates of the file (DuckDB: spend per customer and day, first day per product, spend and
first and last channel per customer) and `cvlib.analysis.journey.build_journey` with every part on: cycles,
lifecycle stages and flow, channel mix and cross-sell rules with the holdout check. Prints seconds (aggregates and
the rest apart) and the process's peak RSS.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import buying_customers, report  # noqa: E402

from cvlib.analysis import journey  # noqa: E402
from cvlib.engines import aggregates, duckdb_parquet  # noqa: E402
from cvlib.params import Study  # noqa: E402


def book(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    cust, days = buying_customers(rows, rows // 10, rng)
    n = len(cust)
    product = rng.integers(0, 8, n)
    fan = np.isin(cust, np.flatnonzero(rng.random(rows // 10) < 0.3))  # buyers who also take product 1
    product[fan & (rng.random(n) < 0.4)] = 1
    product[fan & (rng.random(n) < 0.2)] = 0
    ids = pd.array(np.char.zfill(cust.astype(str), 7), dtype="string[pyarrow]")
    tx = pd.DataFrame({"customer_id": ids,
                       "date": np.datetime64("2021-01-01") + days.astype("timedelta64[D]"),
                       "amount": np.round(rng.lognormal(3.5, 1.0, n), 2),
                       "product": pd.Categorical.from_codes(product, [f"product {i}" for i in range(8)]),
                       "channel": pd.Categorical.from_codes(rng.integers(0, 3, n), ["web", "store", "phone"])})
    uniq = pd.unique(ids)
    rfm = pd.DataFrame({"customer_id": uniq, "segment": rng.choice(["A", "B", "C"], len(uniq))})
    return tx, rfm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    tx, rfm = book(a.rows)
    study = Study.model_validate({"study": "bench", "client": "benchmark", "inputs": {"transactions": {
        "path": "unused.csv", "columns": {"customer_id": "id", "date": "date", "amount": "amount"}}}})
    path = Path(__file__).parent / "_data" / f"journey_{a.rows}.parquet"
    path.parent.mkdir(exist_ok=True)
    tx.assign(source_row=np.arange(1, len(tx) + 1)).to_parquet(path)
    del tx
    out = []
    for i in range(a.repeat):
        t0 = time.perf_counter()
        with duckdb_parquet(path) as t:
            b = aggregates.book(t, "day")
        t1 = time.perf_counter()
        res = journey.build_journey(study, b, rfm, None)
        out.append({"run": i + 1, "rows": a.rows, "customers": len(rfm), "customer_days": len(b.p.code),
                    "aggregates_s": round(t1 - t0, 1), "journey_s": round(time.perf_counter() - t1, 1),
                    "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
                    "rules": 0 if res.rules is None else len(res.rules)})
    report("journey stage (build_journey)", out)


if __name__ == "__main__":
    main()
