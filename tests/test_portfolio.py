"""`cvlib portfolio`: the studies' standard metrics side by side, each study's position in its peer group and the
largest moves since its previous run (hand-made metrics, then a real run through the command line)."""
from __future__ import annotations

import zipfile

import pytest

from cvlib import cli
from cvlib.errors import ParamError
from cvlib.run import metrics, portfolio, portfolio_pages


def run_of(client: str, industry: str, run: str, **values) -> dict:
    return {"schema": 1, "client": client, "industry": industry, "currency": "EUR", "run": run,
            "metrics": {k: {"value": values.get(k)} for k in metrics.DEFINITIONS}}


def found() -> dict[str, list[dict]]:
    return {
        "a": [run_of("Alpha <script>", "retail", "r2", retention_12m=0.2, churn_rate=0.5, customers=100),
              run_of("Alpha <script>", "retail", "r1", retention_12m=0.4, churn_rate=0.5, customers=100)],
        "b": [run_of("Beta", "retail", "r1", retention_12m=0.4, churn_rate=0.1, customers=300)],
        "c": [run_of("Gamma", "retail", "r1", retention_12m=0.6, churn_rate=0.3, customers=200)],
        "d": [run_of("Delta", "media", "r1", retention_12m=0.9, customers=50)],
    }


def test_positions_are_percentiles_and_quartiles_within_each_peer_group():
    p = portfolio.build(found(), "industry")
    pos = p.positions.set_index(["study", "metric"])
    assert ("a", "customers") not in pos.index  # the book's size is shown, never ranked
    assert [pos.loc[(s, "retention_12m"), "percentile"] for s in "abc"] == [0.0, 50.0, 100.0]
    assert [pos.loc[(s, "retention_12m"), "quartile"] for s in "abc"] == [4, 2, 1]
    # churn: lower is better, so the lowest churn (b) is at the top of the group
    assert [pos.loc[(s, "churn_rate"), "percentile"] for s in "abc"] == [0.0, 100.0, 50.0]
    # a study alone in its group (media) is its group's only member, not ranked against retail
    assert pos.loc[("d", "retention_12m"), "peers"] == 1 and pos.loc[("b", "retention_12m"), "peers"] == 3
    assert ("d", "churn_rate") not in pos.index  # not measured: no position, never 0
    one = portfolio.build(found(), None).positions.set_index(["study", "metric"])
    assert one.loc[("d", "retention_12m"), "percentile"] == 100.0 and one.loc[("d", "retention_12m"), "peers"] == 4


def test_movers_are_the_largest_relative_changes_since_the_previous_run():
    m = portfolio.build(found()).movers
    assert m[["study", "metric"]].values.tolist() == [["a", "retention_12m"]]
    assert m.loc[0, "change"] == pytest.approx(-0.5)


def test_trends_follow_each_study_over_all_its_runs(tmp_path):
    three = {**found(), "a": [run_of("Alpha", "retail", r, retention_12m=v, customers=100)
                              for r, v in (("r3", 0.1), ("r2", 0.2), ("r1", 0.4))]}
    p = portfolio.build(three)
    a = p.trends.query("study == 'a' and metric == 'retention_12m'")
    assert a["run"].tolist() == ["r1", "r2", "r3"] and a["value"].tolist() == [0.4, 0.2, 0.1]  # oldest first
    rows = portfolio_pages.trend_rows(p.trends, {})
    assert [r["study"] for r in rows] == ["a"] and rows[0]["runs"] == 3  # one run is no trend
    assert rows[0]["cells"][0] == "40.0% → 20.0% → 10.0%"
    page = portfolio_pages.write(p, tmp_path)[0].read_text(encoding="utf-8")
    assert "40.0% → 20.0% → 10.0%" in page


def test_the_page_escapes_client_names_and_the_workbook_holds_every_table(tmp_path):
    html_path, xlsx_path = portfolio_pages.write(portfolio.build(found()), tmp_path, "zh")
    page = html_path.read_text(encoding="utf-8")
    assert "<script>" not in page and "Alpha &lt;script&gt;" in page
    assert "客户价值研究组合" in page and "12 个月留存率" in page
    with zipfile.ZipFile(xlsx_path) as z:
        assert sum(n.startswith("xl/worksheets/sheet") for n in z.namelist()) == 4


def test_no_study_with_metrics_is_said(tmp_path):
    assert cli.main(["portfolio", "--reports-dir", str(tmp_path)]) == 2


@pytest.mark.slow
def test_the_portfolio_of_real_runs(example_run, tmp_path):
    run = example_run("cdnow").run_dir
    assert cli.main(["portfolio", "cdnow", "--reports-dir", str(run.parent.parent), "--out", str(tmp_path)]) == 0
    page = (tmp_path / "portfolio.html").read_text(encoding="utf-8")
    assert "CDNOW" in page and "23,570" in page


def peers(n: int, dominant: bool = False) -> dict[str, list[dict]]:
    """Client 'me' and n other retail clients (one holding most customers when dominant)."""
    out = {"me": [run_of("Me Ltd", "retail", "r1", retention_12m=0.5, churn_rate=0.2, customers=100)]}
    for i in range(n):
        out[f"peer{i}"] = [run_of(f"Secret Client {i}", "retail", "r1", retention_12m=0.1 * (i + 1), churn_rate=0.3,
                                  customers=10_000 if dominant and i == 0 else 100)]
    return out


def test_a_benchmark_cell_needs_five_peers_and_none_above_a_quarter_of_their_customers():
    few = portfolio.benchmark(portfolio.build(peers(4)), "me").cells.set_index("metric")
    assert not few.at["retention_12m", "shown"] and "4 peer studies" in few.at["retention_12m", "why"]
    assert few.at["retention_12m", "median"] is None
    dominated = portfolio.benchmark(portfolio.build(peers(6, dominant=True)), "me").cells.set_index("metric")
    assert not dominated.at["retention_12m", "shown"] and "one peer study holds" in dominated.at["retention_12m", "why"]
    ok = portfolio.benchmark(portfolio.build(peers(6)), "me").cells.set_index("metric")
    assert ok.at["retention_12m", "shown"] and ok.at["retention_12m", "peers"] == 6
    assert ok.at["retention_12m", "median"] == pytest.approx(0.35)  # peers 0.1 .. 0.6
    assert ok.at["retention_12m", "percentile"] == 75  # 0.5: above 4 of the 6 peers, level with one ((4 + 0.5) / 6)
    assert ok.at["churn_rate", "percentile"] == 100  # lower churn than every peer: the top
    assert not ok.at["nps", "shown"]  # nobody measured it: hidden with the reason, never 0


def money_book() -> dict[str, list[dict]]:
    """Three retail studies: two in EUR, one in CNY whose CLV is the largest number but the smallest value."""
    def run(study: str, currency: str, clv: float, retention: float) -> dict:
        r = run_of(study.upper(), "retail", "r1", mean_clv=clv, revenue_per_customer=clv / 2, retention_12m=retention,
                   customers=100)
        return {**r, "currency": currency}
    return {"e1": [run("e1", "EUR", 100.0, 0.2)], "e2": [run("e2", "EUR", 200.0, 0.3)],
            "c1": [run("c1", "CNY", 500.0, 0.4)]}


def test_money_is_never_ranked_across_currencies_without_a_rate_table(tmp_path):
    p = portfolio.build(money_book())
    pos = p.positions.set_index(["study", "metric"])
    # CLV: the CNY study is alone in its currency, the EUR studies ranked between themselves
    assert pos.loc[("c1", "mean_clv"), "peers"] == 1 and pos.loc[("e2", "mean_clv"), "peers"] == 2
    assert pos.loc[("e2", "mean_clv"), "percentile"] == 100.0 and pos.loc[("e1", "mean_clv"), "percentile"] == 0.0
    assert pos.loc[("c1", "retention_12m"), "peers"] == 3  # a share is compared across currencies
    page = portfolio_pages.write(p, tmp_path)[0].read_text(encoding="utf-8")
    assert "ranked only against the studies of their group in the same currency" in page
    b = portfolio.benchmark(p, "c1")
    assert b.mixed and b.cells.set_index("metric").at["mean_clv", "peers"] == 0


def test_a_rate_table_converts_money_to_one_currency_and_ranks_it(tmp_path):
    rates = tmp_path / "rates.yaml"
    rates.write_text("base: EUR\nrates: {CNY: 0.13}\n", encoding="utf-8")
    p = portfolio.build(money_book(), rates=portfolio.read_rates(rates))
    t = p.table.set_index("study")
    assert t.at["c1", "mean_clv"] == pytest.approx(65.0) and t.at["c1", "currency"] == "EUR"
    assert t.at["c1", "own_currency"] == "CNY" and t.at["e2", "mean_clv"] == 200.0
    assert t.at["c1", "revenue_per_customer"] == pytest.approx(32.5)
    pos = p.positions.set_index(["study", "metric"])
    assert pos.loc[("c1", "mean_clv"), "peers"] == 3 and pos.loc[("c1", "mean_clv"), "percentile"] == 0.0
    page = portfolio_pages.write(p, tmp_path / "out")[0].read_text(encoding="utf-8")
    assert "1 CNY = 0.13 EUR" in page and "ranked only" not in page
    # a currency without a rate, and a rate that is not a positive number, are refused by name
    rates.write_text("base: EUR\nrates: {USD: 0.9}\n", encoding="utf-8")
    with pytest.raises(ParamError, match="no rate for 'CNY'.*c1"):
        portfolio.build(money_book(), rates=portfolio.read_rates(rates))
    rates.write_text("base: EUR\nrates: {CNY: -1}\n", encoding="utf-8")
    with pytest.raises(ParamError, match="rate of 'CNY' is -1"):
        portfolio.read_rates(rates)
    rates.write_text("base: EUR\nrates: !!python/object/apply:os.system [echo]\n", encoding="utf-8")
    with pytest.raises(ParamError, match="cannot read"):  # the rate table runs no code
        portfolio.read_rates(rates)


def test_a_benchmark_page_names_no_other_client(tmp_path, monkeypatch):
    monkeypatch.setenv("CVLIB_PSEUDONYM_KEY", "k" * 32)
    assert cli.main(["portfolio", "--reports-dir", str(tmp_path)]) == 2  # (no runs: said, exit 2)
    p = portfolio.build(peers(6))
    files = portfolio_pages.write_benchmark(portfolio.benchmark(p, "me"), portfolio.benchmark_key("CVLIB_PSEUDONYM_KEY"),
                                      tmp_path, "en")
    text = files[0].read_text(encoding="utf-8")
    with zipfile.ZipFile(files[1]) as z:
        text += "".join(z.read(n).decode("utf-8") for n in z.namelist())
    assert "Secret Client" not in text and "peer0" not in text
    assert text.count("c_") >= 6  # the peers' keyed pseudonyms
    monkeypatch.setenv("CVLIB_PSEUDONYM_KEY", "short")
    with pytest.raises(ParamError, match="at least"):
        portfolio.benchmark_key("CVLIB_PSEUDONYM_KEY")


def test_the_portfolio_feeds_a_studys_kpi_benchmarks_with_its_peers_median(tmp_path, monkeypatch):
    """monitoring.benchmarks: portfolio: six other retail studies beside this one; churn and retention take the
    peers' median, CLV only from peers in the same currency over the same horizon (four: hidden, said why), NPS
    measured by nobody is hidden, a size has none, a number given in params wins; no other study is named."""
    import json

    from cvlib.params import Kpi

    def run(client, churn, currency="EUR", horizon=12, **more):
        r = run_of(client, "retail", "r1", churn_rate=churn, customers=100, mean_clv=50.0 * churn, **more)
        return {**r, "currency": currency, "clv_horizon_months": horizon}

    others = {f"peer{i}": [run(f"Secret Client {i}", 0.1 * (i + 1), *(("USD", 12) if i == 4 else ("EUR", 24)
                                                                       if i == 5 else ()))] for i in range(6)}
    for name in others:
        (tmp_path / name / "latest").mkdir(parents=True)
    monkeypatch.setattr(portfolio, "study_runs", lambda folder: others[folder.name])
    run_dir = tmp_path / "me" / "20261206-000000"
    run_dir.mkdir(parents=True)
    (run_dir / metrics.METRICS_FILE).write_text(json.dumps({**run("Me", 0.3), "run": None}), encoding="utf-8")
    kpis = [Kpi(kpi="churn_rate", direction="lower"), Kpi(kpi="retention_rate"), Kpi(kpi="mean_clv"),
            Kpi(kpi="nps"), Kpi(kpi="customers"), Kpi(kpi="top20_share", benchmark=0.5)]
    got, note = portfolio.kpi_benchmarks(run_dir, kpis)
    bench = {k.kpi: k.benchmark for k in got}
    assert bench["churn_rate"] == pytest.approx(0.35)  # peers 0.1 .. 0.6
    assert bench["retention_rate"] == pytest.approx(0.65)
    assert bench["mean_clv"] is None and bench["nps"] is None and bench["customers"] is None
    assert bench["top20_share"] == 0.5  # given in params: kept
    assert "6 other studies of the industry retail" in note and "2 KPI(s)" in note
    assert "mean CLV: hidden: 4 peer studies" in note and "NPS: hidden: 0 peer studies" in note
    assert "Secret" not in note and "peer0" not in note
    # a study without an industry tag has no peers: said, nothing filled in
    (run_dir / metrics.METRICS_FILE).write_text(json.dumps({**run("Me", 0.3), "industry": None}), encoding="utf-8")
    got, note = portfolio.kpi_benchmarks(run_dir, kpis)
    assert [k.benchmark for k in got] == [k.benchmark for k in kpis] and "industry tag" in note


def test_the_example_portfolio_plants_its_industry_order_and_a_declining_client(tmp_path):
    """The generated books (as `cvlib example portfolio` writes them) hold the planted ordering: every fashion
    client retains more than every grocery client, and every grocery client more than every electronics client;
    the declining client's next export extends the first exactly and retains fewer. The portfolio built from their
    metrics ranks them in that order."""
    import pandas as pd

    from cvlib import portfolio_example as pe

    written = pe.write_portfolio(tmp_path, n=120)
    assert len(written) == 9 and all(p.is_file() for p in written.values())

    def metrics_of(path):
        tx = pd.read_csv(path, dtype={"customer": str}).rename(columns={"customer": "customer_id"})
        return metrics.purchase_metrics(tx.assign(date=pd.to_datetime(tx["date"])))

    m = {s: metrics_of(tmp_path / "data" / f"{s}.csv") for s in written}
    by = {ind: [m[s]["retention_12m"] for s, i, _ in pe.clients() if i == ind] for ind in pe.INDUSTRIES}
    assert min(by["fashion retail"]) > max(by["grocery delivery"]) > 0
    assert min(by["grocery delivery"]) > max(by["consumer electronics"]) > 0
    first = pd.read_csv(tmp_path / "data" / f"{pe.DECLINING}.csv", dtype=str)
    pe.second_export(tmp_path, n=120)
    later = pd.read_csv(tmp_path / "data" / f"{pe.DECLINING}.csv", dtype=str)
    assert later[later["date"] < "2024-01-01"].reset_index(drop=True).equals(first)
    assert metrics_of(tmp_path / "data" / f"{pe.DECLINING}.csv")["retention_12m"] < m[pe.DECLINING]["retention_12m"]
    found = {s: [run_of(s, "all", "r1", retention_12m=v["retention_12m"])] for s, v in m.items()}
    order = portfolio.build(found, None).positions.query("metric == 'retention_12m'").sort_values("percentile")
    assert [s.split("_")[0] for s in order["study"]] == ["consumer"] * 3 + ["grocery"] * 3 + ["fashion"] * 3
