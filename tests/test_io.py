"""Reading client exports: encodings, formats, separators, text ids."""
from __future__ import annotations

import pandas as pd
import pytest

from cvlib import io, load_study, reading
from tests.conftest import write_study

CN = [{"customer": "00042", "date": "2024-01-05", "amount": "￥1,234.50", "product": "广告投放"},
      {"customer": "00043", "date": "2024-02-05", "amount": "￥ 99", "product": "创意设计"}]


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-8-sig", "utf-8", "latin-1"])
def test_encodings(tmp_path, encoding):
    rows = CN if encoding != "latin-1" else [{**r, "amount": "1234.50", "product": "Crème brûlée"} for r in CN]
    p = write_study(tmp_path, rows, encoding=encoding,
                    columns={"customer_id": "customer", "date": "date", "amount": "amount", "product": "product"})
    raw, bad = reading.read_transactions(load_study(p))
    assert list(raw["customer_id"]) == ["00042", "00043"]  # leading zeros kept
    assert raw["product"].iloc[0] == rows[0]["product"]
    assert bad.empty


def test_semicolon_decimal_comma_and_malformed_lines(tmp_path):
    text = "kunde;datum;betrag\n001;05.01.2024;1.234,50\n002;06.01.2024;12,00;extra\n003;07.01.2024;7,5\n"
    (tmp_path / "tx.csv").write_text(text, encoding="utf-8")
    p = write_study(tmp_path, [{"a": 1}], file_name="other.csv", columns={"customer_id": "kunde", "date": "datum",
                                                                          "amount": "betrag"},
                    tx={"path": "../tx.csv", "decimal": ",", "thousands": "."})
    study = load_study(p)
    raw, bad = reading.read_transactions(study)
    assert list(raw["customer_id"]) == ["001", "003"]
    assert len(bad) == 1 and "extra" in bad["text"].iloc[0]


@pytest.mark.parametrize("file_name", ["tx.xlsx", "tx.parquet"])
def test_excel_and_parquet(tmp_path, file_name):
    p = write_study(tmp_path, CN, file_name=file_name)
    raw, _ = reading.read_transactions(load_study(p))
    assert len(raw) == 2 and raw["customer_id"].iloc[0] == "00042"


def test_whitespace_example_file():
    from tests.conftest import ROOT

    study = load_study(ROOT / "params" / "cdnow.yaml")
    raw, _ = reading.read_transactions(study, nrows=5)
    assert raw["customer_id"].iloc[0] == "00001"
    assert set(raw.columns) >= {"customer_id", "date", "amount", "quantity"}


def test_attribute_table_joined_on_text_ids(tmp_path):
    pd.DataFrame({"cid": ["007", "008"], "region": ["North", "South"], "size": ["1", "2"]}).to_csv(
        tmp_path / "cust.csv", index=False)
    p = write_study(tmp_path, CN, extra={})
    import yaml

    data = yaml.safe_load(p.read_text())
    data["inputs"]["customers"] = {"path": "../cust.csv", "customer_id": "cid"}
    p.write_text(yaml.safe_dump(data, allow_unicode=True))
    t = reading.read_attributes(load_study(p), "customers")
    assert list(t["customer_id"]) == ["007", "008"]
    assert t["size"].dtype.kind in "if" and t["region"].iloc[1] == "South"


def test_atomic_write_leaves_no_temp_files(tmp_path):
    io.write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "x.parquet")
    assert [f.name for f in tmp_path.iterdir()] == ["x.parquet"]
