"""Cleaning speed and memory (issue #2). Run by hand: python benchmarks/bench_cleaning.py [--rows N]

1. `cvlib run params/cdnow.yaml` with only the cleaning notebook, kernel start included (target < 15 s).
2. The cleaning stage (read, clean, write) on a generated 10M-row messy CSV (target < 60 s, < 6 GB peak),
   each measurement in a fresh process.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, measure, messy_transactions, report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STAGE = """
import sys, time, yaml, tempfile
from cvlib import load_study
from cvlib.analysis import cleaning
study = load_study(sys.argv[1])
t0 = time.perf_counter()
r = cleaning.run_cleaning(study, tempfile.mkdtemp())
s = r.summary()
print(f"{time.perf_counter() - t0:.2f}s rows_in={s['rows_in']} kept={s['rows_kept']} quarantined={s['rows_quarantined']} balanced={s['balanced']}")
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    nb = tmp / "notebooks"
    nb.mkdir()
    shutil.copy(ROOT / "notebooks" / "01_cleaning.ipynb", nb)
    runs = []
    for _ in range(args.repeat):
        runs.append(measure([sys.executable, "-m", "cvlib", "run", str(ROOT / "params" / "cdnow.yaml"), "--force",
                             "--notebooks-dir", str(nb), "--reports-dir", str(tmp)]))
    report("cvlib run params/cdnow.yaml, cleaning notebook only (wall, kernel start and HTML included)",
           [{k: v for k, v in r.items() if k != "stdout"} for r in runs])
    csv = messy_transactions(args.rows, args.rows // 10, DATA / f"messy_{args.rows}.csv")
    params = tmp / "bench.yaml"
    params.write_text(f"""study: bench
client: benchmark
inputs:
  transactions:
    path: {csv}
    columns: {{customer_id: Customer ID, date: Order Date, amount: Amount, order_id: Order ID}}
""")
    rows = [measure([sys.executable, "-c", STAGE, str(params)]) for _ in range(args.repeat)]
    report(f"cleaning stage on {args.rows:,} rows ({csv.stat().st_size / 1e6:.0f} MB CSV), fresh process each", rows)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
