"""BG/NBD + Gamma-Gamma fit speed on 1M simulated customers, with parameter recovery (issue #4).

Run by hand: python benchmarks/bench_clv.py [--customers N]
Target: both fitted in <= 5 s on the 2-core machine; every parameter within 5% of the truth.
Peer in the same runs, interleaved, if installed (`pip install -e ".[bench]"`): lifetimes' BetaGeoFitter and
GammaGammaFitter on the same data.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

from cvlib.models import BetaGeoNBD, GammaGamma, simulate_bgnbd, simulate_spend  # noqa: E402

TRUE_BG = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
TRUE_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n = args.customers
    T = np.random.default_rng(1).uniform(10, 78, n)  # weeks observed, as in a 78-week study
    d = simulate_bgnbd(n, **TRUE_BG, T=T, seed=1)
    d["monetary_value"] = simulate_spend(d["x"].to_numpy(), **TRUE_GG, seed=2)
    rows = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        bg = BetaGeoNBD().fit(d)
        t1 = time.perf_counter()
        gg = GammaGamma().fit(d)
        t2 = time.perf_counter()
        err = {k: round(abs(v / TRUE_BG[k] - 1) * 100, 2) for k, v in bg.params_.items()}
        err.update({k: round(abs(v / TRUE_GG[k] - 1) * 100, 2) for k, v in gg.params_.items()})
        rows.append({"bgnbd_s": round(t1 - t0, 2), "gammagamma_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2),
                     "max_param_error_pct": max(err.values()), "param_error_pct": err})
        try:  # the peer in the same repeat, interleaved
            from lifetimes import BetaGeoFitter, GammaGammaFitter

            t0 = time.perf_counter()
            BetaGeoFitter().fit(d["x"], d["t_x"], d["T"])
            t1 = time.perf_counter()
            rep = d[d["x"] > 0]
            GammaGammaFitter().fit(rep["x"], rep["monetary_value"])
            t2 = time.perf_counter()
            rows.append({"peer": "lifetimes BetaGeoFitter + GammaGammaFitter", "bgnbd_s": round(t1 - t0, 2),
                         "gammagamma_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2),
                         "ratio_to_ours": round((t2 - t0) / rows[-1]["total_s"], 1)})
        except Exception as exc:  # not installed (pip install -e ".[bench]"), or broken with this numpy/pandas
            rows.append({"peer": "lifetimes", "not_run": f"{type(exc).__name__}: {str(exc)[:120]}"})
    report(f"BG/NBD + Gamma-Gamma on {n:,} simulated customers ({(d['x'] > 0).sum():,} with repeat purchases)", rows)


if __name__ == "__main__":
    main()
