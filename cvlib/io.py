"""Reading client files and writing stage outputs.

Client files are read with every column as text, so nothing is coerced before
the cleaning stage can record it. Stage outputs are written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib.errors import InputDataError

STRING = pd.StringDtype("pyarrow")


def as_ids(ids: pd.Series) -> pd.Series:
    """Customer ids as Arrow-backed text: a no-op for the stage files' ids, no Python string per row
    (`astype(str)` on 10M transactions makes 10M of them: seconds and gigabytes)."""
    return ids if ids.dtype == STRING else ids.astype(str).astype(STRING)


def by_customer(df: pd.DataFrame) -> pd.DataFrame:
    """A per-customer table indexed by its customer id as text (the key every stage joins on)."""
    return df.assign(customer_id=df["customer_id"].astype(str)).set_index("customer_id")


def first_per_customer(df: pd.DataFrame) -> pd.DataFrame:
    """An attribute table indexed by customer id as text, the first row of an id given twice kept."""
    return df.assign(customer_id=df["customer_id"].astype(str)).drop_duplicates("customer_id").set_index("customer_id")


ROW = "source_row"  # 1-based data row number in the client's file (header excluded), or in a table's key order
KEY_PREFIX = "key:"  # a database row's key columns, carried into the quarantine (not compared as content)


# --------------------------------------------------------------------------- reading
def arrow_strings(s: pd.Series):
    """The column as one pyarrow string array, without a detour through Python objects."""
    import pyarrow as pa

    values = s.array
    if isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow":
        arr = values._pa_array
    else:
        arr = pa.array(s.astype(STRING).array._pa_array)
    return pa.chunked_array(arr).combine_chunks()


def string_buffers(arr) -> tuple[np.ndarray, np.ndarray]:
    """A pyarrow string array's value offsets (int64, len + 1) and its UTF-8 bytes, read without copying text.

    Value i is ``data[offsets[i]:offsets[i + 1]]``."""
    import pyarrow as pa

    if arr.type not in (pa.string(), pa.large_string()):
        arr = arr.cast(pa.large_string())
    _, off_buf, data_buf = arr.buffers()
    off_type = np.int64 if arr.type == pa.large_string() else np.int32
    offsets = np.frombuffer(off_buf, dtype=off_type)[arr.offset: arr.offset + len(arr) + 1].astype(np.int64, copy=False)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None and data_buf.size else np.zeros(1, np.uint8)
    return offsets, data


# --------------------------------------------------------------------------- writing
#: while `track_files()` is active: every run-folder file a stage reads or writes, as (action, path)
_ACCESS: list[tuple[str, str]] | None = None


@contextmanager
def track_files() -> Iterator[list[tuple[str, str]]]:
    """Record the files read through `stage_file`/`read_stage` and written through the writers below
    (the stage registry's check: every stage reads and writes exactly what it declares)."""
    global _ACCESS
    previous, _ACCESS = _ACCESS, []
    try:
        yield _ACCESS
    finally:
        _ACCESS = previous


def _note(action: str, path: Path) -> None:
    if _ACCESS is not None:
        _ACCESS.append((action, str(Path(path).resolve())))


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    _note("write", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def place_file(src: Path, path: str | Path) -> Path:
    """Put a file another writer made (an engine's Parquet file) at `path` atomically, as the writers here do."""
    return _atomic(Path(path), lambda p: os.replace(src, p))


def write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame to parquet atomically (temp file, then rename); in-memory attrs are not stored."""
    if df.attrs:
        df = df.copy(deep=False)
        df.attrs = {}
    return _atomic(Path(path), lambda p: df.to_parquet(p, index=False))


RATIO_WORDS = ("probability", "rate", "share", "uplift", "roi", "p_alive", "weight")


def rounded_for_export(df: pd.DataFrame) -> pd.DataFrame:
    """A copy for a file a person opens (target lists, playbook): amounts to the cent, probabilities, rates
    and shares to 4 decimals, instead of every float digit."""
    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].round(4 if any(w in str(c) for w in RATIO_WORDS) else 2)
    return out


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame to UTF-8 CSV (with BOM, so Excel opens non-ASCII text) atomically."""
    return _atomic(Path(path), lambda p: df.to_csv(p, index=False, encoding="utf-8-sig"))


def write_json(obj: Any, path: str | Path) -> Path:
    """Write JSON atomically; numpy and pandas scalars are converted."""

    def default(o: Any) -> Any:
        if isinstance(o, np.bool_):
            return bool(o)
        if isinstance(o, (np.integer,)):
            return int(o)
        if isinstance(o, (np.floating,)):
            return None if np.isnan(o) else float(o)
        if isinstance(o, (pd.Timestamp, np.datetime64)):
            return str(o)
        if hasattr(o, "isoformat"):
            return o.isoformat()
        if isinstance(o, Path):
            return str(o)
        return str(o)

    text = json.dumps(obj, indent=2, default=default, ensure_ascii=False)
    return _atomic(Path(path), lambda p: p.write_text(text, encoding="utf-8"))


def write_text(text: str, path: str | Path) -> Path:
    """Write a text file atomically."""
    return _atomic(Path(path), lambda p: p.write_text(text, encoding="utf-8"))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def stage_file(run_dir: str | Path, name: str) -> Path:
    """Path of a stage output in the run folder; a clear error when an earlier stage has not written it."""
    path = Path(run_dir) / name
    _note("read", path)
    if not path.exists():
        raise InputDataError(
            f"{path} does not exist: the stage that writes {name} has not run in this run folder. "
            "Run the earlier stages first (cvlib run PARAMS), or open this notebook with build_missing=True."
        )
    return path


def read_stage(run_dir: str | Path, name: str, optional: bool = False,
               columns: list[str] | None = None) -> pd.DataFrame | None:
    """A stage output (parquet) from the run folder, its text columns Arrow-backed (no Python string
    objects: 10M customer ids stay compact and take the fast paths). None if optional and not written."""
    if optional and not (Path(run_dir) / name).exists():
        _note("read", Path(run_dir) / name)
        return None
    with pd.option_context("mode.string_storage", "pyarrow"):
        return pd.read_parquet(stage_file(run_dir, name), columns=columns)


def read_stage_json(run_dir: str | Path, name: str, optional: bool = False) -> Any:
    """A stage's JSON output from the run folder (None if optional and not written)."""
    if optional and not (Path(run_dir) / name).exists():
        _note("read", Path(run_dir) / name)
        return None
    return read_json(stage_file(run_dir, name))


def sha256_file(path: str | Path) -> str | None:
    """sha256 of a file, read in chunks (None when there is no such file)."""
    p = Path(path)
    if not p.exists():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: str | Path) -> dict[str, Any]:
    """sha256 and size of a file, for the run's index page."""
    p = Path(path)
    return {"path": str(p), "sha256": sha256_file(p), "bytes": p.stat().st_size}
