"""Reading the client's files: format, encoding, delimiter and header sniffed or given, malformed lines set aside
with their line numbers, the mapped columns checked with messages that name the file, the column and what to do."""
from __future__ import annotations

import csv
import difflib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib import engines
from cvlib.errors import InputDataError
from cvlib.io import KEY_PREFIX, ROW, STRING
from cvlib.params import (
    ATTRIBUTE_TABLES,
    AttributeInput,
    Study,
    TableInput,
    TransactionsInput,
)


def detect_format(path: Path, table: TableInput) -> str:
    """The file's format: from params, else from the extension, else sniffed."""
    if table.format != "auto":
        return table.format
    ext = path.suffix.lower()
    if ext in {".xlsx", ".xlsm", ".xls"}:
        return "excel"
    if ext in {".parquet", ".pq"}:
        return "parquet"
    if ext in {".tsv", ".tab"}:
        return "tsv"
    if ext == ".csv":
        return "csv"
    with open(path, "rb") as fh:
        head = fh.read(4096).decode(table.encoding, errors="replace").splitlines()[:1]
    first = head[0] if head else ""
    if "\t" in first:
        return "tsv"
    if "," in first or ";" in first:
        return "csv"
    return "whitespace"


def _delimiter(path: Path, table: TableInput, fmt: str) -> str:
    """The params' delimiter, else tab for TSV, else ',' (or ';' when the header has more of those)."""
    if table.delimiter:
        return table.delimiter
    if fmt == "tsv":
        return "\t"
    with open(path, "rb") as fh:
        first = fh.read(4096).decode(table.encoding, errors="replace").split("\n", 1)[0]
    return ";" if first.count(";") > first.count(",") else ","


def _check_header(names: list[str], path: Path, name: str) -> None:
    """InputDataError when the file's column names repeat (the columns could not be told apart)."""
    seen: dict[str, list[int]] = {}
    for i, n in enumerate(names, 1):
        seen.setdefault(n, []).append(i)
    if any("\ufffd" in n for n in names):
        raise InputDataError(f"inputs.{name}: the first line of {path} holds bytes that are not valid in the encoding "
                             f"given. The file is probably in another encoding: set inputs.{name}.encoding "
                             "(gb18030 or gbk for Chinese "
                             "files from Excel, latin-1 or cp1252 for Western European ones, utf-16 for some exports).")
    empty = [i for i, n in enumerate(names, 1) if n.strip() in {"", "nan", "None", "NaN"} or n.startswith("Unnamed:")]
    if names and len(empty) >= max(1, len(names) // 2):
        raise InputDataError(f"inputs.{name}: the first row of {path} has {len(empty)} empty cells of {len(names)} "
                             f"(columns {', '.join(map(str, empty[:8]))}): it looks like a title or a note above the "
                             "table, not the column names. Delete the rows above the header (or save the table on its "
                             "own), then run again.")
    dups = {n: pos for n, pos in seen.items() if len(pos) > 1}
    if dups:
        listed = "; ".join(f"{n!r} in columns {', '.join(map(str, pos))}" for n, pos in dups.items())
        raise InputDataError(f"inputs.{name}: the header of {path} repeats column names ({listed}). Rename the "
                             "columns in the file so that each name is unique, then run again.")


def _arrow_csv(path: Path, table: TableInput, delimiter: str, names: list[str], codec: str, bad: list[dict]) -> Any:
    """The file as an Arrow table of text columns, malformed lines appended to `bad` with their line numbers; None
    when a line cannot be read as part of the file (an unbalanced quote made one value take in the lines after
    it, or a line is longer than a parse block)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    def on_invalid(row: Any) -> str:
        bad.append({"line": row.number, "text": row.text, "expected": row.expected_columns, "got": row.actual_columns})
        return "skip"

    def read(threads: bool) -> Any:
        opts = pacsv.ReadOptions(encoding=codec, block_size=1 << 24, use_threads=threads,
                                 column_names=None if table.header else names)
        convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False,
                                       quoted_strings_can_be_null=False, null_values=[])
        parse = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid, newlines_in_values=False)
        return pacsv.read_csv(path, read_options=opts, parse_options=parse, convert_options=convert)

    try:
        tbl = read(True)
        if any(b["line"] is None for b in bad):  # threaded parsing does not know line numbers: find them
            bad.clear()
            tbl = read(False)
    except pa.ArrowInvalid as exc:
        if "straddl" in str(exc) or "block" in str(exc):
            return None
        raise
    return None if any(pc.any(pc.match_substring(tbl[c], "\n")).as_py() for c in tbl.column_names) else tbl


def _read_delimited(path: Path, table: TableInput, fmt: str, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CSV/TSV through pyarrow (fast), capturing malformed lines instead of failing."""
    import pyarrow as pa

    delimiter = _delimiter(path, table, fmt)
    bad: list[dict[str, Any]] = []
    encoding = table.encoding.lower().replace("_", "-")
    codec = "utf8" if encoding in {"utf-8", "utf8", "utf-8-sig"} else table.encoding
    try:
        if table.header:
            with open(path, "rb") as fh:
                header = fh.readline()
            header_text = header.decode(table.encoding, errors="replace").lstrip("\ufeff").rstrip("\r\n")
            names = [h.strip().strip('"') for h in header_text.split(delimiter)]
            _check_header(names, path, name)
        else:
            names = list(table.names or [])

        tbl = _arrow_csv(path, table, delimiter, names, codec, bad)
        if tbl is None:  # a line pyarrow cannot take as part of the file: read line by line instead
            return _read_lines(path, table, delimiter, names, name)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise InputDataError(
            f"Cannot read inputs.{name} file {path} as {fmt.upper()} (encoding {table.encoding!r}, delimiter "
            f"{delimiter!r}): {exc}. Check the encoding (utf-8, utf-8-sig, gbk, gb18030, latin-1), the delimiter and "
            f"the header option in the params file."
        ) from None
    tbl = tbl.rename_columns([c.strip().lstrip("\ufeff") for c in tbl.column_names])
    df = tbl.to_pandas(types_mapper=lambda t: STRING if t == pa.string() else None)
    malformed = pd.DataFrame(bad, columns=["line", "text", "expected", "got"])
    # best-effort fields of each malformed line (a plain split), so its customer id can be shown or hidden
    malformed["fields"] = [str(t).split(delimiter) for t in malformed["text"]]
    malformed.attrs["names"] = names
    first = 2 if table.header else 1  # the file row number of the first data row (pyarrow skips empty lines)
    malformed[ROW] = (malformed["line"] - (first - 1)).astype("int64")
    if len(malformed):
        rows = np.arange(first, first + len(df) + len(malformed))
        good = rows[~np.isin(rows, malformed["line"].to_numpy())] - (first - 1)
        df.insert(0, ROW, good.astype("int64"))
    return df, malformed


def _read_lines(path: Path, table: TableInput, delimiter: str, names: list[str], name: str
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CSV read one line at a time (the fallback when a line cannot be parsed as part of the file: an unbalanced
    quote, a line longer than a parse block). A line with an odd number of quotes or the wrong number of fields is
    malformed, with its line number; every other line is read as usual. Empty lines are skipped."""

    csv.field_size_limit(1 << 31 - 1)  # a field as long as the line (the value is quarantined by cleaning, not here)
    rows: list[list[str]] = []
    bad: list[dict[str, Any]] = []
    lines = []
    number = 0
    with open(path, encoding=table.encoding, newline="") as fh:
        for raw in fh:
            text = raw.rstrip("\r\n")
            if not text.strip():
                continue
            number += 1
            if number == 1 and table.header:
                continue
            fields = next(csv.reader([text], delimiter=delimiter)) if text.count('"') % 2 == 0 else None
            if fields is None or len(fields) != len(names):
                bad.append({"line": number, "text": text, "expected": len(names),
                            "got": len(fields) if fields is not None else 0})
            else:
                rows.append(fields)
                lines.append(number)
    first = 2 if table.header else 1
    df = pd.DataFrame(rows, columns=[n.strip().lstrip("\ufeff") for n in names], dtype=object).astype(STRING)
    df.insert(0, ROW, np.asarray(lines, dtype="int64") - (first - 1))
    malformed = pd.DataFrame(bad, columns=["line", "text", "expected", "got"])
    malformed["fields"] = [str(t).split(delimiter) for t in malformed["text"]]
    malformed.attrs["names"] = names
    malformed[ROW] = (malformed["line"] - (first - 1)).astype("int64")
    return df, malformed


def read_raw(study: Study, table: TableInput, name: str, nrows: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a client file with every column as text. Returns (rows, malformed lines).

    `source_row` numbers the data rows of the file from 1 (the header row not counted, nor empty lines); a table on
    an engine (`cvlib.engines`) is numbered in its key order and has no malformed lines."""
    if not table.is_file:
        return engines.read_table(study, table, name, nrows), engines.empty_malformed()
    df, bad = _read_file(study.resolve(table.path or ""), table, name, nrows)
    df.columns = [str(c).strip() for c in df.columns]
    if ROW not in df.columns:
        df.insert(0, ROW, np.arange(1, len(df) + 1, dtype="int64"))
    return df, bad


def _read_file(path: Path, table: TableInput, name: str, nrows: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A client file read as text by its format (see `read_raw`)."""
    fmt = detect_format(path, table)
    empty_bad = pd.DataFrame(columns=["line", "text", "expected", "got", ROW])
    header = 0 if table.header else None
    names = None if table.header else table.names
    try:
        if fmt in {"csv", "tsv"} and nrows is not None:  # a sample: no need to parse the whole file
            sep = _delimiter(path, table, fmt)
            if table.header:
                _check_header(_header_names(path, table, sep), path, name)
            df = pd.read_csv(path, sep=sep, dtype=str, encoding=table.encoding, nrows=nrows, header=header,
                             names=names, keep_default_na=False, na_values=[], on_bad_lines="skip").astype(STRING)
            df.columns = [str(c).lstrip("\ufeff") for c in df.columns]
            bad = empty_bad
        elif fmt in {"csv", "tsv"}:
            df, bad = _read_delimited(path, table, fmt, name)
            if len(bad) and table.bad_lines == "refuse":
                shown = ", ".join(str(x) for x in bad["line"].head(5))
                raise InputDataError(f"inputs.{name}: {len(bad):,} line(s) of {path} cannot be read (line {shown}"
                                     f"{', ...' if len(bad) > 5 else ''}: wrong number of fields or an unbalanced "
                                     f"quote), and inputs.{name}."
                                     "bad_lines is 'refuse'. Fix those lines, or set bad_lines: quarantine to set them "
                                     "aside (counted and listed in the cleaning report).")
        elif fmt == "whitespace":
            if table.header:
                _check_header(_header_names(path, table, None), path, name)
            df = pd.read_csv(path, sep=r"\s+", dtype=str, encoding=table.encoding, nrows=nrows, header=header,
                             names=names, keep_default_na=False, na_values=[])
            df = df.astype(STRING)
            bad = empty_bad
        elif fmt == "excel":
            if table.header:
                head = pd.read_excel(path, sheet_name=table.sheet or 0, dtype=str, nrows=1, header=None)
                _check_header([str(v).strip() for v in head.iloc[0].tolist()] if len(head) else [], path, name)
            df = pd.read_excel(path, sheet_name=table.sheet or 0, dtype=str, nrows=nrows, keep_default_na=False,
                               header=header, names=names)
            df = df.astype(STRING)
            bad = empty_bad
        else:
            df = pd.read_parquet(path)
            _check_header([str(c) for c in df.columns], path, name)
            if nrows is not None:
                df = df.head(nrows)
            bad = empty_bad
    except InputDataError:
        raise
    except (UnicodeDecodeError, ValueError, OSError) as exc:
        raise InputDataError(
            f"Cannot read inputs.{name} file {path} as {fmt}: {exc}. "
            f"Check inputs.{name}.format, .encoding and .header in the params file."
        ) from None
    return df, bad


def _header_names(path: Path, table: TableInput, sep: str | None) -> list[str]:
    """The column names in the first line of a text file (split on sep, or on white space)."""
    with open(path, "rb") as fh:
        first = fh.readline().decode(table.encoding, errors="replace").lstrip("\ufeff").strip("\r\n")
    parts = first.split() if sep is None else first.split(sep)
    return [p.strip().strip('"') for p in parts]


def check_columns(df: pd.DataFrame, wanted: dict[str, str], path: str, key: str) -> None:
    """Raise InputDataError naming each mapped column missing from the table (`path`: "the file ...")."""
    missing = {field: col for field, col in wanted.items() if col not in df.columns}
    if not missing:
        return
    available = [c for c in df.columns if c != ROW and not c.startswith(KEY_PREFIX)]
    lines = [f"Column mapping does not match {path}:"]
    for field, col in missing.items():
        close = difflib.get_close_matches(col, available, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        lines.append(f"  - {key}.columns.{field}: column {col!r} is not in the file.{hint}")
    if available and all(re.fullmatch(r"[\d.,:/ +-]+", str(c)) for c in available):
        # the first row is data (it may hold a customer id): its values are not repeated here
        lines.append(f"  The file's first row has {len(available)} values that look like data, not column names: "
                     "the file seems to have no header row. Set header: false and give the columns in order under "
                     "names (its first row is then read as data, not lost).")
    else:
        lines.append(f"  Columns in the file: {', '.join(map(repr, available))}.")
    lines.append("  Fix the mapping in the params file (names are case- and space-sensitive).")
    raise InputDataError("\n".join(lines))


def _attribute_mapping(spec: AttributeInput) -> dict[str, str]:
    """cvlib name -> file column for an attribute or feedback table (the columns of the mapping only)."""
    wanted = {"customer_id": spec.customer_id, **(spec.columns or {})}
    if spec.date:
        wanted["date"] = spec.date
    return wanted


def check_inputs(study: Study) -> None:
    """Read a sample of every input table and check that each mapped column is there and that it has data
    rows (InputDataError if not)."""
    tx, _ = read_transactions(study, nrows=50)
    tables = [("transactions", tx)]
    for name in ATTRIBUTE_TABLES:
        spec = getattr(study.inputs, name)
        if spec is not None:
            df, _ = read_raw(study, spec, name, nrows=50)
            check_columns(df, _attribute_mapping(spec), engines.describe(study, spec), f"inputs.{name}")
            tables.append((name, df))
    for name, df in tables:
        if len(df) == 0:
            spec = getattr(study.inputs, name)
            raise InputDataError(f"inputs.{name}: {engines.describe(study, spec)} has a header but no data rows. "
                                 "Check that the export is complete (and the path points at the right file).")


def read_transactions(study: Study, nrows: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Client transactions with columns renamed to cvlib's names (all text). Returns (rows, malformed)."""
    spec: TransactionsInput = study.inputs.transactions
    df, bad = read_raw(study, spec, "transactions", nrows)
    mapping = {k: v for k, v in spec.columns.model_dump().items() if v}
    check_columns(df, mapping, engines.describe(study, spec), "inputs.transactions")
    keys = [c for c in df.columns if c.startswith(KEY_PREFIX)]
    out = df[[ROW, *mapping.values(), *keys]].copy()
    out.columns = [ROW, *mapping.keys(), *keys]
    names = bad.attrs.get("names") or []
    if len(bad) and "fields" in bad.columns and spec.columns.customer_id in names:
        k = names.index(spec.columns.customer_id)
        bad["customer_id"] = [f[k].strip().strip('"') if len(f) > k else "" for f in bad["fields"]]
    return out, bad


def read_attributes(study: Study, name: str) -> pd.DataFrame | None:
    """Customer attribute or feedback table keyed by text customer_id; numeric columns typed."""
    spec: AttributeInput | None = getattr(study.inputs, name)
    if spec is None:
        return None
    df, _ = read_raw(study, spec, name)
    wanted = _attribute_mapping(spec)
    check_columns(df, wanted, engines.describe(study, spec), f"inputs.{name}")
    if spec.columns is None:
        keep = {c: c for c in df.columns if c not in {ROW, spec.customer_id, spec.date}}
        wanted = {"customer_id": spec.customer_id, **keep, **({"date": spec.date} if spec.date else {})}
    out = pd.DataFrame({new: df[old] for new, old in wanted.items()})
    out["customer_id"] = out["customer_id"].astype(str).str.strip()
    for col in out.columns:
        if col in {"customer_id"}:
            continue
        if col == "date":
            out[col] = pd.to_datetime(out[col], errors="coerce", format="mixed")
            continue
        text = out[col].astype("string").str.strip().replace("", pd.NA)
        num = pd.to_numeric(text, errors="coerce")
        out[col] = num if num.notna().sum() == text.notna().sum() else text.astype(object).where(text.notna(), None)
    return out
