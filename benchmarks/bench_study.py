"""Whole-study speed and memory (issue #15). Run by hand:

    python benchmarks/bench_study.py cdnow [--repeat 3] [--threads 1 auto]
    python benchmarks/bench_study.py generated --rows 1000000 [--repeat 2]
    python benchmarks/bench_study.py profile --rows 1000000      # cProfile of each stage function, in-process
    python benchmarks/bench_study.py stages --rows 10000000      # each stage alone in a fresh process: time, memory

`cdnow` and `generated` time `cvlib run` (kernel start and HTML included, `--force` so nothing is reused) in a
fresh process each, with the peak RSS of its largest process, and print each stage's seconds from run.json.
`generated` writes a messy client CSV of about --rows transactions of rows/10 customers who buy and drop out as
BG/NBD assumes (benchmarks/common.py), so the purchase models are fitted and bootstrapped.
`--threads` runs each measurement with CVLIB_THREADS set to each value (`default`: unset, cvlib's choice: one
thread per library, large batch predictions of large studies on every core; 1: one thread everywhere; auto: the
libraries' own thread counts), interleaved. `profile` prints the 12 most expensive functions of each stage.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, measure, messy_transactions, report  # noqa: E402

from cvlib.stages import STAGES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def generated_params(rows: int, folder: Path) -> Path:
    csv = messy_transactions(rows, rows // 10, DATA / f"buyers_{rows}.csv", behaviour="bgnbd")
    params = folder / f"generated_{rows}.yaml"
    params.write_text(f"""study: generated_{rows}
client: benchmark
inputs:
  transactions:
    path: {csv}
    columns: {{customer_id: Customer ID, date: Order Date, amount: Amount, order_id: Order ID}}
""")
    return params


def stage_seconds(reports: Path, study: str) -> dict[str, float]:
    run = (reports / study / "latest").resolve()
    rec = json.loads((run / "run.json").read_text())
    return {s["name"]: s["seconds"] for s in rec["stages"]}


def time_runs(params: Path, study: str, repeat: int, threads: list[str]) -> None:
    rows = []
    for _ in range(repeat):
        for th in threads:
            reports = Path(tempfile.mkdtemp())
            os.environ.pop("CVLIB_THREADS", None)
            if th != "default":  # default: unset, cvlib's own choice (one thread, large batch predictions wider)
                os.environ["CVLIB_THREADS"] = th
            r = measure([sys.executable, "-m", "cvlib", "run", str(params), "--force", "--reports-dir", str(reports)])
            rows.append({"threads": th, "seconds": r["seconds"], "peak_gb": r["peak_gb"],
                         "stages": stage_seconds(reports, study)})
            shutil.rmtree(reports, ignore_errors=True)
    os.environ.pop("CVLIB_THREADS", None)
    report(f"cvlib run {params.name} (wall, kernel start and HTML included; fresh process each)", rows)


PROFILE = """
import cProfile, io as _io, pstats, sys, tempfile, time
from cvlib import load_study
from cvlib.stages import STAGES
study = load_study(sys.argv[1])
run_dir = tempfile.mkdtemp()
for s in STAGES:
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    s.build()(study, run_dir)
    pr.disable()
    out = _io.StringIO()
    pstats.Stats(pr, stream=out).sort_stats("cumulative").print_stats(12)
    lines = [l for l in out.getvalue().splitlines() if l.strip()][-13:]
    print(f"== {s.name}: {time.perf_counter() - t0:.2f} s")
    print("\\n".join(lines))
"""


STAGE = """
import sys
from cvlib import load_study
from cvlib.stages import STAGES
study = load_study(sys.argv[1])
for s in STAGES:
    if s.name in sys.argv[3:]:
        s.build()(study, sys.argv[2])
"""


def stage_runs(params: Path, folder: Path) -> None:
    """Each stage alone in a fresh process on one run folder (the stages before it have run): seconds and peak
    RSS. Set PYTHONPATH to another checkout to measure its code on the same data, e.g. before and after a change."""
    run = folder / "run"
    run.mkdir()
    rows = []
    for s in STAGES:
        r = measure([sys.executable, "-c", STAGE, str(params), str(run), s.name])
        rows.append({"stage": s.name, "seconds": r["seconds"], "peak_gb": r["peak_gb"]})
    report(f"each stage of {params.name} in a fresh process (import and data reading included)", rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["cdnow", "generated", "stages", "profile"])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", nargs="+", default=["default"])
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    if args.what == "cdnow":
        time_runs(ROOT / "params" / "cdnow.yaml", "cdnow", args.repeat, args.threads)
    else:
        params = generated_params(args.rows, tmp)
        if args.what == "generated":
            time_runs(params, f"generated_{args.rows}", args.repeat, args.threads)
        elif args.what == "stages":
            stage_runs(params, tmp)
        else:
            r = measure([sys.executable, "-c", PROFILE, str(params)])
            print(r["stdout"])
            print(f"peak {r['peak_gb']} GB, {r['seconds']} s")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
