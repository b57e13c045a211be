"""Reference numbers of the example studies, and the check that a run still gives them (issue #15: making the
estimates cheap must not make them different). Each number is compared within its own reported uncertainty:
an estimate with a 95% interval must fall inside the reference interval, a model parameter within 1.96
reference standard errors, and every other number (deterministic) within a relative 1e-3.

Regenerate a reference only when a change of method is meant: `python -m tests.golden RUN_DIR OUT.json`."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd


def extract(run_dir: Path) -> dict:
    """The numbers a client acts on, from a run folder."""
    from cvlib.run.summary import figures

    j = lambda name: json.loads((run_dir / name).read_text(encoding="utf-8"))  # noqa: E731
    clv, drv, st, rfm = j("clv_model.json"), j("drivers.json"), j("strategy.json"), j("rfm.json")
    models = {name: {"params": m["params"], "se": m["std_errors"]} for name, m in clv["models"].items()
              if m.get("params") and m.get("usable")}  # a fit that is not usable has no meaningful parameters
    lo, hi = clv["total_clv_95pct_interval"] or (None, None)
    d = pd.read_parquet(run_dir / "drivers.parquet")
    return {
        "estimates": {"total_clv": [clv["total_clv"], lo, hi]} | {
            f"{r.method} | {r.driver}": [r.importance, r.ci_low, r.ci_high] for r in d.itertuples()},
        "models": models,
        "values": {f.key: f.value for f in figures(run_dir)} | {
            "churn_auc": drv.get("auc"), "churn_risk_auc": drv["churn_risk"]["auc"], "linear_r2": drv.get("linear_r2"),
            "plan_cost": st["total_cost"], "plan_value": st["expected_incremental_value"],
            "even_split_net_value": st["even_split_net_value"], "gini": rfm["concentration"]["gini"],
            "clusters": rfm["k"], "holdout_mae": (clv.get("holdout") or {}).get("errors", [{}])[0].get("mae")} | {
            f"{name} usable": float(bool(m.get("usable"))) for name, m in clv["models"].items()},
    }


def differences(new: dict, ref: dict) -> list[str]:
    """Every number of `new` outside the reference's uncertainty (empty: the same results)."""
    out = []
    for key, (est, lo, hi) in ref["estimates"].items():
        got = new["estimates"].get(key)
        if got is None:
            out.append(f"{key}: missing")
        elif lo is not None and not _nan(lo) and not (lo - 1e-9 <= got[0] <= hi + 1e-9):
            out.append(f"{key}: {got[0]:.6g} outside the reference interval [{lo:.6g}, {hi:.6g}]")
        elif (lo is None or _nan(lo)) and not _close(got[0], est):
            out.append(f"{key}: {got[0]:.6g} against {est:.6g}")
    for name, m in ref["models"].items():
        got = new["models"].get(name)
        for k, v in m["params"].items():
            if got is None:
                out.append(f"{name}: missing")
                break
            se = m["se"].get(k)
            tol = 1.96 * se if se is not None and not _nan(se) else 1e-3 * abs(v)
            if abs(got["params"][k] - v) > tol:
                out.append(f"{name}.{k}: {got['params'][k]:.6g} against {v:.6g} (tolerance {tol:.3g})")
    for k, v in ref["values"].items():
        if v is not None and not _close(new["values"].get(k), v):
            out.append(f"{k}: {new['values'].get(k)} against {v}")
    return out


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _close(a, b, rel: float = 1e-3) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-9)


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(json.dumps(extract(Path(sys.argv[1])), indent=1, default=float) + "\n")
