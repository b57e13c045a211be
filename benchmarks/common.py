"""Helpers for the hand-run benchmarks: synthetic client files, timing and peak memory of a child process."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

DATA = Path(__file__).parent / "_data"


def buying_customers(n_rows: int, n_customers: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(customer, day) of about n_rows purchases by n_customers who behave as BG/NBD assumes: each joins on a
    day of the first year, buys at a Gamma-distributed rate (mean n_rows / n_customers purchases a year) and
    after each purchase drops out with a Beta-distributed probability, over three years. The purchase models
    are identified on it (on uniformly random purchases they are not), so the CLV stage does its full work."""
    per_year = n_rows / n_customers
    lam = rng.gamma(0.8, per_year / 0.8 / 365.0 * 0.75, n_customers)  # purchases a day
    p = rng.beta(0.5, 7.0, n_customers)
    now = rng.uniform(0, 365, n_customers)
    cust_parts, day_parts = [np.arange(n_customers)], [now.copy()]
    active = np.arange(n_customers)
    while len(active):
        alive = rng.random(len(active)) >= p[active]  # after each purchase, drop out with probability p
        active = active[alive]
        now[active] += rng.exponential(1 / np.maximum(lam[active], 1e-6))
        active = active[now[active] < 3 * 365]
        cust_parts.append(active)
        day_parts.append(now[active].copy())
    return np.concatenate(cust_parts), np.concatenate(day_parts).astype(np.int64)


def messy_transactions(n_rows: int, n_customers: int, path: Path, seed: int = 0, behaviour: str = "uniform") -> Path:
    """A client-style CSV: text ids, ISO dates, amounts with 2 decimals, order ids, ~1% mess
    (unreadable dates and amounts, missing ids, exact duplicates, returns). `behaviour`: "uniform" (random
    customer and day per row) or "bgnbd" (customers who buy and drop out, `buying_customers`)."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    if behaviour == "bgnbd":
        cust, days = buying_customers(n_rows, n_customers, rng)
        n_rows = len(cust)
    else:
        cust = rng.integers(0, n_customers, n_rows)
        days = rng.integers(0, 3 * 365, n_rows)
    dates = (np.datetime64("2021-01-01") + days.astype("timedelta64[D]")).astype(str).astype(object)
    amount = np.round(rng.lognormal(3.5, 1.0, n_rows), 2)
    order = np.arange(n_rows)
    ret = rng.random(n_rows) < 0.01  # returns: a second row of the same order, negative
    ids = np.char.zfill(cust.astype(str), 7).astype(object)
    amt_text = amount.astype(str).astype(object)
    bad = rng.random(n_rows)
    ids[bad < 0.002] = ""
    dates[(bad >= 0.002) & (bad < 0.004)] = "31/02/2022"
    amt_text[(bad >= 0.004) & (bad < 0.006)] = "n/a"
    r_idx = np.flatnonzero(ret)
    dup_idx = rng.choice(n_rows, n_rows // 200, replace=False)
    all_ids = np.concatenate([ids, ids[r_idx], ids[dup_idx]])
    all_dates = np.concatenate([dates, dates[r_idx], dates[dup_idx]])
    all_amt = np.concatenate([amt_text, ("-" + (amount[r_idx] / 2).round(2).astype(str)).astype(object), amt_text[dup_idx]])
    all_order = np.concatenate([order, order[r_idx], order[dup_idx]]).astype(str)
    table = pa.table({"Customer ID": all_ids.astype(str), "Order Date": all_dates.astype(str),
                      "Order ID": all_order, "Amount": all_amt.astype(str)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, path)
    return path


# Runs the command and prints, as its last stderr line, the largest max RSS (kB) of its descendants.
# On Linux a process's ru_maxrss starts from the high-water mark of the image it exec'd from, so a
# command spawned straight from this (large, data-generating) process would report this process's peak;
# spawned from this small launcher it reports its own.
LAUNCH = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
          "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")


def measure(cmd: list[str]) -> dict:
    """Wall time and peak RSS (GB) of one command: the max RSS of its largest process (kernels included)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", LAUNCH, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{proc.stderr[-3000:]}")
    err_lines = proc.stderr.strip().splitlines()
    return {"seconds": round(wall, 2), "peak_gb": round(int(err_lines[-1]) / 1e6, 2), "stdout": proc.stdout.strip()}


def report(name: str, rows: list[dict]) -> None:
    print(f"\n== {name}")
    for r in rows:
        print(json.dumps(r))
    sys.stdout.flush()
