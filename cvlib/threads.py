"""Thread counts of the numerical libraries (OpenMP, OpenBLAS, MKL), and memory given back between stages.

On a small machine these libraries start as many threads as there are cores, and a busy core turns their
spin-waiting into stalls: on the 2-core development machine one gradient-boosting fit took 37 s with two
OpenMP threads while another process ran, and 0.2 s with one. cvlib therefore runs them single-threaded
unless ``CVLIB_THREADS`` says otherwise (a number, or ``auto`` to leave the libraries' defaults): the runner starts
its kernel with the cap (`thread_env`) and every notebook applies it (`limit_threads`, called by `report.setup`);
importing cvlib changes nothing. One exception by default: large batch predictions (`batch_threads`).
"""
from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

_applied: object | None = None
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def thread_cap(limit: int | str | None = None) -> int | None:
    """The threads each numerical library of a process may use: `limit`, else ``CVLIB_THREADS``, else 1
    (None for ``auto``: the libraries' own counts, as many as there are cores)."""
    value = limit if limit is not None else os.environ.get("CVLIB_THREADS", "1")
    return None if str(value).strip().lower() == "auto" else max(1, int(value))


def thread_env(limit: int | str | None = None) -> dict[str, str]:
    """The environment variables that cap the thread pools of libraries a new process loads (empty for auto)."""
    n = thread_cap(limit)
    return {} if n is None else {var: str(n) for var in THREAD_VARIABLES}


def limit_threads(limit: int | str | None = None) -> int | None:
    """Cap the numerical libraries' thread pools (default: ``CVLIB_THREADS``, else 1). Returns the cap."""
    global _applied
    n = thread_cap(limit)
    if n is None:
        return None
    for var in THREAD_VARIABLES:  # libraries loaded later
        os.environ.setdefault(var, str(n))
    _applied = threadpool_limits(limits=n)  # libraries already loaded; kept for the life of the process
    return n


def engine_threads() -> int:
    """Threads of an embedded engine (DuckDB): ``CVLIB_ENGINE_THREADS``, else one per core. Its scheduler hands
    out morsels of work rather than spin-waiting at barriers, so the OpenMP stalls above do not apply."""
    return max(1, int(os.environ.get("CVLIB_ENGINE_THREADS") or os.cpu_count() or 1))


BATCH_MIN_ROWS = 200_000  # a batch prediction over this many rows keeps every thread of each parallel region busy


@contextmanager
def batch_threads(rows: int):
    """Every core for one large batch computation (tree-ensemble predictions over `rows` rows) when the thread
    count is cvlib's default (``CVLIB_THREADS`` unset): a prediction's parallel regions each cover hundreds of
    thousands of rows (no spin-waiting between tiny regions), and the runner runs one stage at a time, so no
    other stage wants the cores. Predictions are the same with any number of threads (each row's trees are
    summed in the same order)."""
    cores = os.cpu_count() or 1
    if "CVLIB_THREADS" in os.environ or cores == 1 or rows < BATCH_MIN_ROWS:
        yield 1
        return
    with threadpool_limits(limits=cores, user_api="openmp"):
        yield cores


def release_memory() -> None:
    """Give memory freed by the previous stage back to the system (glibc's and Arrow's allocators keep it
    otherwise), so one kernel's peak is the largest stage's, not the sum of what the stages left behind."""
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except Exception:  # an allocator without the call
        pass
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
