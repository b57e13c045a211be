"""A long table in a report: the consultant's page shows it as before, the client's rendering shows its first
rows with a sentence saying where every row is, and a workbook beside the page (in the client package) holds them."""
from __future__ import annotations

import zipfile

import openpyxl
import pandas as pd
from bs4 import BeautifulSoup

from cvlib import i18n, report
from cvlib.cli import main
from cvlib.run import pages
from cvlib.run.runner import run_study
from tests.conftest import small_book
from tests.test_integrity import two_stages

HOSTILE = "</script><script>alert(1)</script> & co"


def long_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"segment": [HOSTILE if i == 3 else f"group {i}" for i in range(n)],
                         "customers": range(n, 0, -1)})


def test_a_long_table_is_cut_for_the_client_with_every_row_in_a_workbook(tmp_path):
    html = report.table(long_frame(40), caption="Groups").data
    assert html.count("<tr>") == 41  # the consultant sees every row (up to max_rows)
    assert "<script>alert" not in html and "</script><script>" not in html  # the carried rows cannot close it
    tables: dict = {}
    client = BeautifulSoup(pages.client_page(f"<html><body>{html}</body></html>", "x-tables.xlsx", tables),
                           "html.parser")
    assert len(client.select("tbody tr")) == report.CLIENT_ROWS
    assert not client.select("script") and not client.select("script.cvlib-full-table")
    assert client.select_one("p.cvlib-cut").text == \
        'The first 15 of 40 rows; every row is in x-tables.xlsx, sheet "table 1".'
    full = tables["table 1"]
    assert len(full) == 40 and list(full.columns) == ["segment", "customers"]
    assert full.iloc[3, 0] == HOSTILE and full.iloc[39, 1] == "1"


def test_a_short_table_and_a_long_one_beyond_the_shown_rows(tmp_path):
    for n in (report.CLIENT_ROWS, 16, report.CUT_ABOVE):  # up to a few rows more than 15 are shown whole
        assert "cvlib-full-table" not in report.table(long_frame(n)).data
    html = report.table(long_frame(80), max_rows=50).data  # 50 shown to the consultant, 80 carried
    tables: dict = {}
    client = BeautifulSoup(pages.client_page(html, "y.xlsx", tables), "html.parser")
    assert len(client.select("tbody tr")) == 15 and not client.select("p.cvlib-more")
    assert len(tables["table 1"]) == 80
    with i18n.speaking("zh"):
        zh = report.table(long_frame(30)).data
    assert "仅显示 30 行中的前 15 行" in pages.client_page(zh, "z.xlsx")


def test_the_client_package_carries_the_workbook_of_a_cut_table(tmp_path):
    params = small_book(tmp_path, name="longt")
    nb = two_stages(tmp_path, "import pandas as pd\nfrom cvlib import report\n"
                              f"report.table(pd.DataFrame({{'segment': [{HOSTILE!r}] + [f'g{{i}}' for i in range(29)],"
                              " 'customers': range(30)}), caption='Thirty groups')")
    res = run_study(params, reports_dir=tmp_path / "r", notebooks_dir=nb, client=True)
    assert res.ok
    book = res.run_dir / "client" / "02_rfm-tables.xlsx"
    ws = openpyxl.load_workbook(book).worksheets[0]
    assert ws.max_row == 31 and ws.cell(2, 1).value == HOSTILE  # the header and every row
    assert not (res.run_dir / "client" / "01_cleaning-tables.xlsx").exists()
    assert main(["package", "longt", "--reports-dir", str(tmp_path / "r"), "--out", str(tmp_path / "p.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "p.zip") as z:
        names = z.namelist()
        page = next(z.read(n).decode("utf-8") for n in names if n.endswith("/02_rfm.html"))
    assert any(n.endswith("/02_rfm-tables.xlsx") for n in names)
    assert "02_rfm-tables.xlsx" in page and "cvlib-full-table" not in page
