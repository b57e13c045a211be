"""An example portfolio: nine small client books of three industries with planted differences, and their params.

Planted (fixed seed): fashion retail keeps its customers best (3% leave a month), grocery delivery next (6%),
consumer electronics worst (12%), so every fashion client's 12-month retention is above every grocery client's,
and every grocery client's above every electronics client's. Grocery 3 declines: its second export adds a year
in which three times as many customers leave, so its latest run shows the largest fall since the previous one."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

# industry: (share of active customers leaving each month, purchases per active month, mean order value)
INDUSTRIES: dict[str, tuple[float, float, float]] = {
    "fashion retail": (0.03, 0.6, 60.0),
    "grocery delivery": (0.06, 1.5, 45.0),
    "consumer electronics": (0.12, 0.3, 240.0),
}
DECLINING = "grocery_3"
START = pd.Timestamp("2022-01-01")


def book(industry: str, n: int, months: int, seed: int, worse_from: int | None = None) -> pd.DataFrame:
    """One client's transactions: customers join over the first year, buy a Poisson number of times each month
    they are active and leave with the industry's monthly rate (tripled from month `worse_from`)."""
    churn, rate, value = INDUSTRIES[industry]
    rows = []
    for c in range(n):
        rng = np.random.default_rng([seed, c])  # per customer: a longer export extends the shorter one exactly
        month, joined = int(rng.integers(0, 12)), True
        while month < months:
            for _ in range(rng.poisson(rate) + joined):  # a customer joins with a purchase
                day = START + pd.DateOffset(months=month) + pd.Timedelta(days=int(rng.integers(0, 28)))
                rows.append((f"k{c:04d}", day.date().isoformat(), round(float(rng.gamma(2.0, value / 2)), 2)))
            joined = False
            if rng.random() < churn * (3 if worse_from is not None and month >= worse_from else 1):
                break
            month += 1
    return pd.DataFrame(rows, columns=["customer", "date", "amount"])


def clients() -> list[tuple[str, str, int]]:
    """(study, industry, seed) of the nine clients."""
    return [(f"{ind.split()[0]}_{i}", ind, 100 * k + i) for k, ind in enumerate(INDUSTRIES) for i in (1, 2, 3)]


def write_study(directory: Path, study: str, industry: str, tx: pd.DataFrame) -> Path:
    """The client's transactions file and a params file that maps it (the bundled defaults otherwise)."""
    (directory / "data").mkdir(parents=True, exist_ok=True)
    (directory / "params").mkdir(parents=True, exist_ok=True)
    tx.to_csv(directory / "data" / f"{study}.csv", index=False)
    params = {"study": study, "client": f"{industry.title()} client {study[-1]}", "currency": "EUR",
              "industry": industry,
              "inputs": {"transactions": {"path": f"../data/{study}.csv", "columns": {
                  "customer_id": "customer", "date": "date", "amount": "amount"}}},
              "clv": {"bootstrap": 0, "compare_paretonbd": False}, "drivers": {"bootstrap": 0}}
    path = directory / "params" / f"{study}.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def write_portfolio(directory: str | Path, n: int = 150, months: int = 24) -> dict[str, Path]:
    """Every client's first export and params file (study -> params path)."""
    d = Path(directory)
    return {s: write_study(d, s, ind, book(ind, n, months, seed)) for s, ind, seed in clients()}


def second_export(directory: str | Path, n: int = 150, months: int = 24) -> Path:
    """The declining client's next export: a year more, in which three times as many customers leave."""
    study, ind, seed = next(c for c in clients() if c[0] == DECLINING)
    return write_study(Path(directory), study, ind, book(ind, n, months + 12, seed, worse_from=months))
