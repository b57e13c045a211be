"""The target-list workbook writer (cvlib.xlsx): what openpyxl and pandas read back is what was written."""
from __future__ import annotations

import hashlib

import numpy as np
import openpyxl
import pandas as pd
import pytest

from cvlib import xlsx


def test_written_cells_read_back_exactly_with_openpyxl_and_pandas(tmp_path):
    df = pd.DataFrame({
        "customer_id": pd.array(["00042", "<b>&co</b>", " lead space", None], dtype="string"),
        "clv": [1.5, np.nan, 1e-7, 123456789.125],
        "customers": [1, 2, 3, 4],
        "flag": [True, False, True, False],
        "reason": ["ctl\x01char ok", "中文 客户", "", "quote \" and ' fine"],
        "day": pd.to_datetime(["2024-01-02", None, "2024-03-04", "2024-12-31"]),
    })
    path = xlsx.write_xlsx({"win-back": df, "empty": df.iloc[:0]}, tmp_path / "t.xlsx",
                           headers={"win-back": ["客户", "CLV", "n", "flag", "reason", "day"]})
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["win-back", "empty"]
    rows = list(wb["win-back"].iter_rows(values_only=True))
    assert rows[0] == ("客户", "CLV", "n", "flag", "reason", "day")
    assert rows[1] == ("00042", 1.5, 1, True, "ctlchar ok", "2024-01-02")  # ids stay text: no lost zeros
    assert rows[2][:2] == ("<b>&co</b>", None) and rows[2][4] == "中文 客户" and rows[2][5] is None
    assert rows[3][0] == " lead space" and rows[3][1] == 1e-7
    assert rows[4][0] is None and rows[4][1] == 123456789.125 and rows[4][4] == "quote \" and ' fine"
    assert list(wb["empty"].iter_rows(values_only=True)) == [tuple(str(c) for c in df.columns)]
    back = pd.read_excel(path, sheet_name="win-back", dtype={"客户": str})
    assert back["CLV"].iloc[0] == 1.5 and back["n"].tolist() == [1, 2, 3, 4]


def test_the_same_table_gives_the_same_bytes(tmp_path):
    df = pd.DataFrame({"a": ["x", "y"], "b": [1.0, 2.0]})
    h = [hashlib.sha256(xlsx.write_xlsx({"s": df}, tmp_path / f"{i}.xlsx").read_bytes()).hexdigest() for i in range(2)]
    assert h[0] == h[1]


def test_a_sheet_excel_cannot_open_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx, "MAX_ROWS", 3)
    with pytest.raises(ValueError, match="use the CSV"):
        xlsx.write_xlsx({"s": pd.DataFrame({"a": range(3)})}, tmp_path / "big.xlsx")
