"""Thread counts of the numerical libraries (OpenMP, OpenBLAS, MKL).

On a small machine these libraries start as many threads as there are cores, and a busy core turns their
spin-waiting into stalls: on the 2-core development machine one gradient-boosting fit took 37 s with two
OpenMP threads while another process ran, and 0.2 s with one. cvlib therefore runs them single-threaded
unless ``CVLIB_THREADS`` says otherwise (a number, or ``auto`` to leave the libraries' defaults).
"""
from __future__ import annotations

import os

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
