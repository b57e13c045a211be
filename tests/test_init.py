"""A new client's params file from its data file (`cvlib init`): the file sniffed, the columns proposed, the window
and currency read from the data, nothing taken from an example, and every value only the client knows refused
until it is filled in."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml

from cvlib import scaffold
from cvlib.cli import main
from cvlib.errors import ParamError
from cvlib.params import load_study
from tests.conftest import ROOT, write_study


def chinese_book(path, n=2000, seed=5) -> pd.DataFrame:
    """A Chinese retailer's export: GB18030, Chinese headers, ¥ amounts with grouping, dates as 2024/03/05."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n // 6):
        start = pd.Timestamp("2023-01-01") + pd.Timedelta(days=int(rng.integers(0, 300)))
        for d in np.sort(rng.integers(0, 420, rng.integers(1, 12))):
            rows.append({"订单编号": f"SO{len(rows):06d}", "客户编号": f"KH{c:04d}",
                         "下单日期": (start + pd.Timedelta(days=int(d))).strftime("%Y/%m/%d"),
                         "商品类别": rng.choice(["茶叶", "茶具", "礼盒"]), "实付金额": f"¥{rng.gamma(2, 150):,.2f}",
                         "渠道": rng.choice(["天猫", "门店", "微信"])})
    df = pd.DataFrame(rows[:n])
    df.to_csv(path, index=False, encoding="gb18030")
    return df


def fill(params, margin=0.4, budget=20_000, cost=10) -> None:
    text = params.read_text(encoding="utf-8").replace("margin: null", f"margin: {margin}")
    text = text.replace("budget: null", f"budget: {budget}").replace("cost_per_customer: null", f"cost_per_customer: {cost}")
    params.write_text(text, encoding="utf-8")


def test_init_writes_a_chinese_clients_study_from_the_data_and_refuses_it_until_filled(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    df = chinese_book(tmp_path / "华东茶业_交易.csv")
    assert main(["init", "华东茶业", "华东茶业_交易.csv", "--study", "huadong"]) == 0
    out = capsys.readouterr().out
    params = tmp_path / "params" / "huadong.yaml"
    data = yaml.safe_load(params.read_text(encoding="utf-8"))
    tx = data["inputs"]["transactions"]
    assert tx["encoding"] == "gb18030" and tx["format"] == "csv" and tx["path"] == "../华东茶业_交易.csv"
    assert tx["columns"] == {"customer_id": "客户编号", "date": "下单日期", "amount": "实付金额", "order_id": "订单编号",
                             "product": "商品类别", "channel": "渠道"}
    assert data["currency"] == "CNY" and data["report"]["language"] == "zh" and data["client"] == "华东茶业"
    days = pd.to_datetime(df["下单日期"], format="%Y/%m/%d")
    assert data["cleaning"]["window"] == {"enabled": True, "start": days.min().date(), "end": days.max().date()}
    assert days.min().date() < data["rfm"]["calibration_end"] < days.max().date()
    # nothing from an example: not CDNOW's window, costs, actions or targets
    text = params.read_text(encoding="utf-8")
    assert not re.search(r"1997|1998|genre|USD|mean_clv, target", text) and data["monitoring"]["kpis"] == []
    # what only the client knows is empty, and validate names all of it at once
    assert "clv.margin" in out and "strategy.budget" in out
    assert main(["validate", str(params)]) == 2
    err = capsys.readouterr().err
    assert "clv.margin" in err and "strategy.budget" in err
    assert all(f"strategy.actions.{i}.cost_per_customer" in err for i in range(len(data["strategy"]["actions"])))
    fill(params)
    assert main(["validate", str(params)]) == 0
    study = load_study(params)
    assert study.clv.margin == 0.4 and study.strategy.budget == 20_000 and study.currency == "CNY"


def test_init_refuses_to_overwrite_a_study(tmp_path, capsys):
    chinese_book(tmp_path / "tx.csv", n=50)
    args = ["init", "Acme", str(tmp_path / "tx.csv"), "--params-dir", str(tmp_path / "params")]
    assert main(args) == 0 and (tmp_path / "params" / "acme.yaml").exists()
    assert main(args) == 2 and "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0


def test_sniffs_semicolons_decimal_commas_western_encoding_and_a_file_without_header(tmp_path):
    rng = np.random.default_rng(1)
    n = 300
    df = pd.DataFrame({"Kunde": [f"{i % 40:05d}" for i in range(n)],
                       "Datum": [f"{1 + i % 28:02d}.{1 + i % 12:02d}.2024" for i in range(n)],
                       "Betrag": [f"{v:.2f} €".replace(".", ",") for v in rng.gamma(2, 40, n)],
                       "Bemerkung": ["Grüße"] * n})
    df.to_csv(tmp_path / "export.csv", sep=";", index=False, header=False, encoding="cp1252")
    s = scaffold.sniff(tmp_path / "export.csv")
    assert (s.encoding, s.delimiter, s.header) == ("cp1252", ";", False)
    mapping, how = scaffold.propose_mapping(s.sample)
    assert mapping == {"customer_id": "column_1", "date": "column_2", "amount": "column_3"}
    assert all("content" in how[k] for k in mapping)
    assert scaffold.currency_of(s.sample["column_3"]) == "EUR" and scaffold.decimal_of(s.sample["column_3"]) == ","
    params = scaffold.init("Müller GmbH", tmp_path / "export.csv", tmp_path / "params")
    fill(params)
    study = load_study(params)
    assert study.study == "m_ller_gmbh" and study.inputs.transactions.decimal == ","
    assert not study.inputs.transactions.header and study.inputs.transactions.names[:3] == ["column_1", "column_2",
                                                                                             "column_3"]
    assert main(["validate", str(params)]) == 0


def test_without_a_currency_symbol_the_currency_is_a_value_to_fill(tmp_path, capsys):
    pd.DataFrame({"customer_id": ["a", "b", "a"], "order_date": ["2024-01-01", "2024-02-01", "2024-03-01"],
                  "revenue": ["10.50", "20.00", "7.25"]}).to_excel(tmp_path / "tx.xlsx", index=False)
    params = scaffold.init("Acme", tmp_path / "tx.xlsx", tmp_path / "params")
    fill(params)
    with pytest.raises(ParamError, match=r"currency: currency code"):
        load_study(params)
    assert main(["init", "Acme", str(tmp_path / "tx.xlsx"), "--params-dir", str(tmp_path / "p2"),
                 "--currency", "GBP"]) == 0
    fill(tmp_path / "p2" / "acme.yaml")
    assert load_study(tmp_path / "p2" / "acme.yaml").currency == "GBP"


@pytest.mark.parametrize("extra, named", [
    ({"monitoring": {"kpis": [{"kpi": "mean_clv", "target": None}]}}, ["monitoring.kpis.0.target"]),
    ({"strategy": {"budget": None, "actions": [{"name": "a", "groups": ["churn risk"], "cost_per_customer": None,
                                               "uplift": 0.1}]}},
     ["strategy.budget", "strategy.actions.0.cost_per_customer"]),
    ({"clv": {"margin": None}}, ["clv.margin"]),
])
def test_a_value_written_empty_is_refused_never_defaulted(tmp_path, extra, named):
    p = write_study(tmp_path, [{"customer": "1", "date": "2024-01-05", "amount": "10.00"}], extra=extra)
    with pytest.raises(ParamError) as e:
        load_study(p)
    assert all(n in str(e.value) for n in named) and "empty" in str(e.value)


def test_the_example_studies_need_no_filling():
    for name in ("cdnow", "cdnow_zh", "agency_demo"):
        load_study(ROOT / "params" / f"{name}.yaml")


@pytest.mark.slow
def test_the_new_client_path_from_a_chinese_file_to_a_client_package(tmp_path, capsys):
    """`cvlib init` on a new Chinese client's file, the values filled in, the study run once with both renderings,
    and the client package: every page in Chinese, none with consultant content."""
    import zipfile

    from cvlib.run import pages
    from cvlib.run.runner import run_study

    chinese_book(tmp_path / "交易.csv")
    assert main(["init", "华东茶业", str(tmp_path / "交易.csv"), "--study", "tea", "--params-dir",
                 str(tmp_path / "params")]) == 0
    fill(tmp_path / "params" / "tea.yaml")
    res = run_study(tmp_path / "params" / "tea.yaml", reports_dir=tmp_path / "reports", client=True,
                    notebooks_dir=ROOT / "notebooks")
    assert res.ok and (res.run_dir / "client" / "index.html").is_file()
    assert main(["package", "tea", "--reports-dir", str(tmp_path / "reports"), "--out", str(tmp_path / "c.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "c.zip") as z:
        html = {n: z.read(n).decode("utf-8") for n in z.namelist() if n.endswith(".html")}
    assert len(html) >= 7 and all(not pages.consultant_content(h) for h in html.values())
    assert all("客户" in h and "顾问备注" not in h for h in html.values())
