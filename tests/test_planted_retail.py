"""A second synthetic client book, with other planted drivers than the agency example (issue #11): a retailer
whose churn is driven by delivery speed and loyalty membership and whose NPS by product range and app usability.
Every method must rank the planted drivers first, with no other driver's interval overlapping theirs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from cvlib.analysis import clv, drivers, rfm
from cvlib.analysis.cleaning import run_cleaning
from cvlib.params import load_study

RATINGS = ["delivery_speed", "product_range", "app_usability", "price"]


def retail_book(tmp, n: int = 2500, seed: int = 3):
    rng = np.random.default_rng(seed)
    start, end = pd.Timestamp("2021-01-01"), pd.Timestamp("2024-06-30")
    latent = {r: np.clip(rng.normal(3.2, 0.8, n), 1, 5) for r in RATINGS}
    member = rng.random(n) < 0.45
    region = rng.choice(["north", "south", "east"], n)
    age = rng.integers(18, 75, n)
    # planted churn: quitting hazard per day
    hazard = np.exp(-6.3 - 1.1 * (latent["delivery_speed"] - 3.2) - 1.0 * member)
    tx, survey = [], []
    for i in range(n):
        cid = f"R{i:05d}"
        first = start + pd.Timedelta(days=int(rng.integers(0, 500)))
        quit_at = first + pd.Timedelta(days=float(rng.exponential(1 / hazard[i])))
        t = first
        while t <= min(quit_at, end):
            tx.append((cid, t.date().isoformat(), round(float(rng.gamma(3, 15)), 2)))
            t = t + pd.Timedelta(days=max(1.0, float(rng.exponential(18))))
        for year in range(2021, 2025):
            when = pd.Timestamp(f"{year}-03-15")
            if first <= when <= min(quit_at, end) and rng.random() < 0.7:
                nps = 6.0 + 1.6 * (latent["product_range"][i] - 3.2) + 1.4 * (latent["app_usability"][i] - 3.2)
                row = {"customer_id": cid, "survey_date": when.date().isoformat(),
                       "nps": int(np.clip(round(nps + rng.normal(0, 1.2)), 0, 10))}
                row.update({r: int(np.clip(round(latent[r][i] + rng.normal(0, 0.5)), 1, 5)) for r in RATINGS})
                survey.append(row)
    pd.DataFrame(tx, columns=["customer", "date", "amount"]).to_csv(tmp / "orders.csv", index=False)
    pd.DataFrame({"customer_id": [f"R{i:05d}" for i in range(n)], "loyalty_member": np.where(member, "yes", "no"),
                  "region": region, "age": age}).to_csv(tmp / "customers.csv", index=False)
    pd.DataFrame(survey).to_csv(tmp / "survey.csv", index=False)
    params = {"study": "retail", "client": "synthetic retailer", "inputs": {
        "transactions": {"path": "orders.csv", "columns": {"customer_id": "customer", "date": "date", "amount": "amount"}},
        "customers": {"path": "customers.csv", "customer_id": "customer_id"},
        "feedback": {"path": "survey.csv", "customer_id": "customer_id", "date": "survey_date"}},
        "clv": {"bootstrap": 0, "compare_paretonbd": False},
        "drivers": {"churn_days": 120, "outcome": "nps", "bootstrap": 60}}
    (tmp / "retail.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return tmp / "retail.yaml"


@pytest.fixture(scope="module")
def retail(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retail")
    study = load_study(retail_book(tmp))
    run = tmp / "run"
    run_cleaning(study, run)
    rfm.run_rfm(study, run)
    clv.run_clv(study, run)
    return drivers.run_drivers(study, run)


def _separated(rows: pd.DataFrame, planted: set[str]) -> None:
    rows = rows.assign(a=rows["importance"].abs()).sort_values("a", ascending=False)
    assert set(rows["driver"].head(len(planted))) == planted, rows[["driver", "importance"]].head(5)
    if rows["ci_low"].notna().any():
        top, rest = rows[rows["driver"].isin(planted)], rows[~rows["driver"].isin(planted)]
        assert rest["ci_high"].max() < top["ci_low"].min(), rows[["driver", "importance", "ci_low", "ci_high"]].head(5)


@pytest.mark.parametrize("method", ["permutation", "logistic", "churn LMG", "churn relative weight"])
def test_planted_churn_drivers_first_by_every_method(retail, method):
    rows = drivers.by_method(retail.drivers, method)
    assert len(rows), method
    # logistic coefficients are signed: the planted ones lower churn (faster delivery, members)
    planted = {"delivery_speed", "loyalty_member"}
    _separated(rows, planted)


@pytest.mark.parametrize("method", ["LMG", "relative weight"])
def test_planted_nps_drivers_first_by_every_method(retail, method):
    rows = drivers.by_method(retail.drivers, method)
    _separated(rows, {"product_range", "app_usability"})
