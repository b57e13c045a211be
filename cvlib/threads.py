"""Thread counts of the numerical libraries (OpenMP, OpenBLAS, MKL).

On a small machine these libraries start as many threads as there are cores, and a busy core turns their
spin-waiting into stalls: on the 2-core development machine one gradient-boosting fit took 37 s with two
OpenMP threads while another process ran, and 0.2 s with one. cvlib therefore runs them single-threaded
unless ``CVLIB_THREADS`` says otherwise (a number, or ``auto`` to leave the libraries' defaults). One exception
by default: large batch predictions of studies too large for two kernels side by side (`batch_threads`).
"""
from __future__ import annotations

import os
from contextlib import contextmanager

_applied: object | None = None


def thread_cap(limit: int | str | None = None) -> int | None:
    """The threads each numerical library of a process may use: `limit`, else ``CVLIB_THREADS``, else 1
    (None for ``auto``: the libraries' own counts, as many as there are cores)."""
    value = limit if limit is not None else os.environ.get("CVLIB_THREADS", "1")
    return None if str(value).strip().lower() == "auto" else max(1, int(value))


def limit_threads(limit: int | str | None = None) -> int | None:
    """Cap the numerical libraries' thread pools (default: ``CVLIB_THREADS``, else 1). Returns the cap."""
    global _applied
    n = thread_cap(limit)
    if n is None:
        return None
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # libraries loaded later
        os.environ.setdefault(var, str(n))
    from threadpoolctl import threadpool_limits

    _applied = threadpool_limits(limits=n)  # libraries already loaded; kept for the life of the process
    return n


# The runner never runs two kernels side by side for a study with more clean transactions than this (runner.py).
SIDE_BY_SIDE_MAX_ROWS = 2_000_000
BATCH_MIN_ROWS = 200_000  # a batch prediction over this many rows keeps every thread of each parallel region busy


@contextmanager
def batch_threads(rows: int, study_rows: int):
    """Every core for one large batch computation (tree-ensemble predictions over `rows` rows) in a study of
    `study_rows` transactions, when the thread count is cvlib's default (``CVLIB_THREADS`` unset).

    Only where one-thread-per-library was not chosen for a reason that holds here: a prediction's parallel
    regions each cover hundreds of thousands of rows (no spin-waiting between tiny regions), and above
    `SIDE_BY_SIDE_MAX_ROWS` the runner runs one kernel at a time, so no other stage wants the cores. Predictions
    are the same with any number of threads (each row's trees are summed in the same order)."""
    cores = os.cpu_count() or 1
    wide = ("CVLIB_THREADS" not in os.environ and cores > 1 and rows >= BATCH_MIN_ROWS
            and study_rows > SIDE_BY_SIDE_MAX_ROWS)
    if not wide:
        yield 1
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=cores, user_api="openmp"):
        yield cores
