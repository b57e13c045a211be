"""Shared helpers: write a small client file and a study YAML around it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.servers import postgres_url, spark_master  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent


def write_study(tmp: Path, rows: list[dict] | pd.DataFrame, *, name: str = "t", encoding: str = "utf-8",
                sep: str = ",", columns: dict | None = None, extra: dict | None = None,
                file_name: str = "tx.csv", tx: dict | None = None) -> Path:
    """A CSV of `rows` and params/<name>.yaml mapping it; returns the params path."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    data_path = tmp / file_name
    if file_name.endswith(".xlsx"):
        df.to_excel(data_path, index=False)
    elif file_name.endswith(".parquet"):
        df.to_parquet(data_path, index=False)
    else:
        df.to_csv(data_path, index=False, sep=sep, encoding=encoding)
    params: dict[str, Any] = {
        "study": name, "client": "Test client", "currency": "EUR",
        "inputs": {"transactions": {"path": f"../{file_name}", "encoding": encoding,
                                    "columns": columns or {"customer_id": "customer", "date": "date", "amount": "amount"},
                                    **(tx or {})}},
    }
    for k, v in (extra or {}).items():
        params[k] = v
    pdir = tmp / "params"
    pdir.mkdir(exist_ok=True)
    path = pdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    return tmp_path


def run_notebook_inprocess(nb_path: Path, **parameters: Any) -> dict:
    """Execute a stage notebook's code cells in this process (no kernel), the parameters cell replaced by
    `parameters`: a fast check that every cell of the report runs on some data. Returns the namespace."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    ns: dict[str, Any] = {"__name__": "__main__"}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "parameters" in cell.metadata.get("tags", []):
            exec(compile(cell.source, f"{nb_path.name}:parameters", "exec"), ns)
            ns.update(parameters)
            continue
        exec(compile(cell.source, f"{nb_path.name}:cell", "exec"), ns)
        plt.close("all")
    return ns


def small_book(tmp: Path, name: str = "small", n_customers: int = 60, seed: int = 1,
               extra: dict | None = None) -> Path:
    """A seeded two-year purchase book of `n_customers` (1-7 purchases each) and its params file, with the
    slow estimates (bootstraps, the Pareto/NBD comparison) off: the smallest study every stage runs on."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_customers):
        for d in np.sort(rng.integers(0, 700, rng.integers(1, 8))):
            rows.append({"customer": f"c{c:03d}", "date": str((pd.Timestamp("2022-01-01") + pd.Timedelta(days=int(d))).date()),
                         "amount": f"{rng.gamma(2, 30):.2f}"})
    params = {"clv": {"bootstrap": 0, "compare_paretonbd": False}, "drivers": {"bootstrap": 0}}
    for k, v in (extra or {}).items():
        params[k] = {**params.get(k, {}), **v} if isinstance(v, dict) else v
    return write_study(tmp, rows, name=name, extra=params)


def notebooks_up_to(tmp: Path, last: str) -> Path:
    """A notebooks folder holding the stage notebooks up to stage `last` (a run then has those stages only)."""
    import shutil

    from cvlib.stages import STAGES, by_name

    folder = tmp / f"notebooks-to-{last}"
    folder.mkdir(exist_ok=True)
    for s in STAGES[:STAGES.index(by_name(last)) + 1]:
        shutil.copy(ROOT / "notebooks" / s.notebook, folder)
    return folder


@pytest.fixture(scope="session")
def example_run(tmp_path_factory):
    """Run a bundled example study once per test session (the runs are the slowest part of the suite) and
    return its RunResult: example_run("cdnow") or example_run("cdnow_zh")."""
    from cvlib.run.runner import run_study

    done: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in done:
            done[name] = run_study(ROOT / "params" / f"{name}.yaml", reports_dir=tmp_path_factory.mktemp(name))
        return done[name]

    return get
