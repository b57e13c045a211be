"""The runner end to end through papermill and nbconvert (each run starts a kernel: a few seconds)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from cvlib.cli import main
from cvlib.run.pages import write_client_rendering
from cvlib.run.runner import run_study
from tests import golden
from tests.conftest import ROOT, notebooks_up_to, write_study
from tests.printing import CHROMIUM, a4_problems

HOSTILE = "<script>alert(1)</script>"


def golden_ref(name: str) -> dict:
    return json.loads((ROOT / "tests" / "fixtures" / f"golden_{name}.json").read_text())


def errors_in(ipynb: Path) -> list[str]:
    nb = nbformat.read(ipynb, as_version=4)
    return [o.get("ename", "") + ": " + o.get("evalue", "") for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.slow
def test_example_study_end_to_end(example_run):
    res = example_run("cdnow")
    assert res.ok
    run = res.run_dir
    assert (run.parent / "latest").resolve() == run.resolve()
    assert res.stage("campaign").status == "not_applicable" and not (run / "07_campaign.html").exists()
    m = json.loads((run / "metrics.json").read_text())["metrics"]  # the standard metrics agree with the stages
    conc = json.loads((run / "rfm.json").read_text())["concentration"]
    assert m["customers"]["value"] == json.loads((run / "cleaning.json").read_text())["summary"]["customers"]
    assert m["top20_revenue_share"]["value"] == pytest.approx(conc["top20_revenue_share"], abs=1e-6)
    assert m["gini"]["value"] == pytest.approx(conc["gini"], abs=1e-6)
    for sr in res.stages:
        if sr.status == "not_applicable":  # CDNOW has no campaigns table: no page
            continue
        nb = run / sr.stage.notebook
        assert errors_in(nb) == [], sr.stage.name
        page = (run / sr.html).read_text(encoding="utf-8")
        assert "data:image/png;base64," in page
        assert "cdnjs" not in page and "<script src=" not in page  # self-contained, no CDN
    cleaning = (run / "01_cleaning.html").read_text(encoding="utf-8")
    for section in ("Cleaning audit", "Reconciliation", "Quarantined rows", "Profile of the clean data"):
        assert section in cleaning
    assert "def " not in cleaning  # code hidden by default
    index = (run / "index.html").read_text(encoding="utf-8")
    assert "01_cleaning.html" in index and "sha256" in index and "pandas" in index
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["row_counts"]["rows_in"] == 69659
    clean = pd.read_parquet(run / "transactions_clean.parquet")
    assert clean["customer_id"].iloc[0] == "00001"
    # RFM stage
    rfm_page = (run / "02_rfm.html").read_text(encoding="utf-8")
    for section in ("Scores and named segments", "Value concentration", "Clusters", "Inputs of the lifetime value"):
        assert section in rfm_page
    rfm = pd.read_parquet(run / "rfm.parquet")
    assert len(rfm) == clean["customer_id"].nunique()
    assert {"customer_id", "recency", "frequency", "monetary", "tenure", "r_score", "f_score", "m_score", "segment",
            "cluster", "abc_class", "value_tier"} <= set(rfm.columns)
    cal = pd.read_parquet(run / "clv_calibration.parquet")
    assert {"x", "t_x", "T", "x_holdout", "spend_holdout"} <= set(cal.columns)
    # CLV stage
    clv_page = (run / "03_clv.html").read_text(encoding="utf-8")
    for section in ("Formula CLV", "Probabilistic models", "Validation on the holdout period", "beat the naive baseline"):
        assert section in clv_page
    clv = pd.read_parquet(run / "clv.parquet")
    assert {"customer_id", "p_alive", "expected_purchases", "expected_spend", "clv", "clv_tier"} <= set(clv.columns)
    assert len(clv) == len(rfm) and clv["clv"].notna().all() and (clv["clv"] >= 0).all()
    model = json.loads((run / "clv_model.json").read_text())
    assert model["used_for_customer_clv"] == "bgnbd" and model["models"]["bgnbd"]["converged"] is True
    assert model["assumptions"]["horizon_months"] == 12
    errors = {e["method"]: e["mae"] for e in model["holdout"]["errors"]}  # BG/NBD beats the naive rate on CDNOW
    assert model["holdout"]["beat_naive_baseline"] is True and errors["bgnbd"] < errors["naive baseline"]
    # drivers
    drivers_page = (run / "05_loyalty_drivers.html").read_text(encoding="utf-8")
    assert "Retention facts" in drivers_page and "No feedback table" in drivers_page
    risk = pd.read_parquet(run / "churn_risk.parquet")
    assert len(risk) == len(rfm) and risk["churn_probability"].between(0, 1).all()
    # strategy and the summary page
    strat = (run / "08_strategy.html").read_text(encoding="utf-8")
    for section in ("Strategic groups and playbook", "Budget allocation", "Target lists"):
        assert section in strat
    targets = pd.read_csv(run / "targets.csv", dtype={"customer_id": str})
    assert targets["customer_id"].is_unique and targets["customer_id"].isin(set(rfm["customer_id"])).all()
    groups = pd.read_parquet(run / "strategy_groups.parquet")
    assert len(groups) == len(rfm) and groups["group"].notna().all()
    assert "Headline figures" in index and "Key findings" in index and "08_strategy.html" in index
    # decisions checked against the data (issue #11)
    risk = risk.merge(rfm[["customer_id", "recency", "segment"]], on="customer_id")
    dec = pd.qcut(risk["recency"].rank(method="first"), 10, labels=False)
    by_dec = risk.groupby(dec)["churn_probability"].mean()
    assert by_dec.is_monotonic_increasing or by_dec.corr(pd.Series(range(10), index=by_dec.index),
                                                         method="spearman") > 0.95
    at_risk = groups[groups["group"] == "churn risk"].merge(risk, on="customer_id")
    assert len(at_risk) and not at_risk["within_cycle"].any()  # nobody inside their own purchase cycle
    assert (at_risk["recency"] > at_risk["cycle_days"]).all()
    st = json.loads((run / "strategy.json").read_text())
    assert targets["expected_gain"].sum() == pytest.approx(st["expected_incremental_value"], abs=0.005)
    assert (targets["expected_gain"] - targets["cost"]).sum() == pytest.approx(st["net_value"], abs=0.005)
    cells = pd.DataFrame(json.loads((run / "value.json").read_text())["churn_by_cell"]).set_index("value_cell")
    rate = cells["holdout_churn_rate"]  # the cells as of the calibration end, against churn in the holdout
    assert rate[["Keep and grow", "Develop"]].max() < rate[["Maintain", "Reduce cost to serve"]].min()
    assert rate["departed"] == rate.max()  # who had left by then mostly stayed away
    assert clv.loc[clv["customer_id"].isin(rfm.loc[rfm["x"] == 0, "customer_id"]), "p_alive"].isna().all()
    # value assessment
    value_page = (run / "04_value.html").read_text(encoding="utf-8")
    for section in ("Profitability", "Weighted value index", "AHP consistency ratio", "Value matrix"):
        assert section in value_page
    val = pd.read_parquet(run / "value.parquet")
    assert {"customer_id", "revenue", "profit", "current_value_score", "potential_value_score", "value_score",
            "value_cell"} <= set(val.columns) and len(val) == len(rfm)
    weights = json.loads((run / "value.json").read_text())
    assert weights["ahp"]["cr"] < 0.1 and abs(sum(w["weight"] for w in weights["weights"]) - 1) < 1e-9
    # every number as before the speed work (issue #15), within its own uncertainty
    assert golden.differences(golden.extract(run), golden_ref("cdnow")) == []


@pytest.mark.slow
def test_agency_example_study_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("CVLIB_CACHE", str(tmp_path / "cache"))
    res = run_study(ROOT / "params" / "agency_demo.yaml", reports_dir=tmp_path / "reports",
                    overrides=["drivers.bootstrap=10", "clv.bootstrap=10"])
    assert res.ok and [s.stage.name for s in res.stages] == ["cleaning", "rfm", "clv", "value", "drivers", "journey",
                                                            "campaign", "strategy"]
    assert all(s.status == "ok" for s in res.stages)  # the agency example has every table: every stage runs
    for sr in res.stages:
        assert errors_in(res.run_dir / sr.stage.notebook) == [], sr.stage.name
        page = (res.run_dir / sr.html).read_text(encoding="utf-8")
        assert "Warning" not in page, sr.stage.name  # no stray library warnings in a client report
    summary = json.loads((res.run_dir / "cleaning.json").read_text())["summary"]
    assert summary["balanced"] and summary["rows_duplicates"] > 0 and summary["rows_netted"] > 0
    assert any("%d/%m/%Y" in n for n in summary["notes"])
    clv_page = (res.run_dir / "03_clv.html").read_text(encoding="utf-8")
    assert "sBG parameters" in clv_page and "Formula CLV by acquisition channel" in clv_page
    drivers_page = (res.run_dir / "05_loyalty_drivers.html").read_text(encoding="utf-8")
    for section in ("What drives churn", "Satisfaction: NPS and CSAT", "Importance and performance"):
        assert section in drivers_page
    assert (res.run_dir / "drivers.parquet").exists() and (res.run_dir / "churn_risk.parquet").exists()
    st = json.loads((res.run_dir / "strategy.json").read_text())
    assert st["total_cost"] <= st["budget"] and st["net_value"] >= st["even_split_net_value"]
    index = (res.run_dir / "index.html").read_text(encoding="utf-8")
    assert "NPS" in index and "The strongest churn driver is responsiveness" in index
    targets = pd.read_csv(res.run_dir / "targets.csv")
    crossed = targets.dropna(subset=["suggested_product"])  # the journey's next best product reaches the CRM list
    assert len(crossed) and all(r.endswith(" -> " + p) for r, p in zip(crossed["cross_sell_rule"],
                                                                       crossed["suggested_product"]))
    journey_page = (res.run_dir / "06_journey.html").read_text(encoding="utf-8")
    assert "media buying" in journey_page and "client portal" in journey_page
    if CHROMIUM or os.environ.get("CI"):  # every client page printed at A4: nothing wider, no number like 1.2e-05
        assert a4_problems([write_client_rendering(res.run_dir).parent]) == {}
    # the decisions (issue #28): a client who has left is reached by win-back only and adds nothing to the value at
    # risk; the measured workshop (2,367 EUR gross profit per client against a 2,500 EUR cost) gets no budget
    from cvlib.params import load_study

    kind = {a.name: a.applies_to for a in load_study(res.run_dir / "params.yaml").strategy.actions}
    clv = pd.read_parquet(res.run_dir / "clv.parquet").astype({"customer_id": str}).set_index("customer_id")
    on_gone = clv["departed"].reindex(targets["customer_id"].astype(str)).to_numpy(dtype=bool)
    assert on_gone.any() and (targets.loc[on_gone, "action"].map(kind) == "win_back").all()
    assert not (targets.loc[~on_gone, "action"].map(kind) == "win_back").any()
    assert (clv.loc[clv["departed"], "clv"] == 0).all() and st["departed_in_targets"] == 0
    shares = {r["action"]: r["share_of_budget"] for r in st["budget_shares"]}
    assert shares["strategy workshop"] == 0 and max(shares.values()) <= 0.5 + 1e-9
    assert "booked once" in (res.run_dir / "08_strategy.html").read_text(encoding="utf-8")
    assert golden.differences(golden.extract(res.run_dir), golden_ref("agency")) == []


def test_cli_writes_the_agency_example(tmp_path, capsys):
    assert main(["example", "agency", str(tmp_path / "ex"), "--seed", "3"]) == 0
    assert {p.name for p in (tmp_path / "ex").iterdir()} == {"billings.csv", "clients.csv", "survey.csv",
                                                                 "campaigns.csv"}


def hostile_study(tmp_path: Path, pseudonymize: bool) -> Path:
    rows = [{"customer": HOSTILE, "date": "2024-01-0%d" % (i % 9 + 1), "amount": str(10 + i),
             "product": "<img src=x onerror=alert(2)>"} for i in range(30)]
    rows += [{"customer": f"00{i}", "date": "2024-02-01", "amount": "5", "product": "ok"} for i in range(5)]
    rows.append({"customer": "zz", "date": "<b>bad</b>", "amount": "1", "product": "p"})
    return write_study(tmp_path, rows, name="hostile",
                       columns={"customer_id": "customer", "date": "date", "amount": "amount", "product": "product"},
                       extra={"privacy": {"pseudonymize_ids": pseudonymize}})


def test_hostile_client_text_is_escaped(tmp_path):
    res = run_study(hostile_study(tmp_path, False), reports_dir=tmp_path / "reports",
                    notebooks_dir=notebooks_up_to(tmp_path, "cleaning"))
    page = (res.run_dir / "01_cleaning.html").read_text(encoding="utf-8")
    assert HOSTILE not in page and "<b>bad</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown as text
    assert "&lt;b&gt;bad&lt;/b&gt;" in page


def test_pseudonymized_ids_in_html_real_ids_in_exports(tmp_path, monkeypatch):
    monkeypatch.setenv("CVLIB_PSEUDONYM_KEY", "k" * 32)
    res = run_study(hostile_study(tmp_path, True), reports_dir=tmp_path / "reports",
                    notebooks_dir=notebooks_up_to(tmp_path, "cleaning"))
    page = (res.run_dir / "01_cleaning.html").read_text(encoding="utf-8")
    assert "alert(1)" not in page and "c_" in page
    assert HOSTILE in set(pd.read_parquet(res.run_dir / "transactions_clean.parquet")["customer_id"])


def test_failing_stage_exit_code_message_and_earlier_outputs_kept(tmp_path, capsys):
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    shutil.copy(ROOT / "notebooks" / "01_cleaning.ipynb", nb_dir)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("params_file = ''\nrun_dir = ''", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("raise ValueError('segment grid is empty')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nb_dir / "02_rfm.ipynb")
    shutil.copy(ROOT / "notebooks" / "03_clv.ipynb", nb_dir)  # never runs: rfm's report must not link to it
    params = write_study(tmp_path, [{"customer": "a", "date": "2024-01-01", "amount": "5"}] * 3, name="fails")
    code = main(["run", str(params), "--reports-dir", str(tmp_path / "reports"), "--notebooks-dir", str(nb_dir)])
    err = capsys.readouterr().err
    assert code == 1
    assert "Stage 'rfm' failed: ValueError: segment grid is empty" in err
    html = Path(err.split("shows the error: ")[1].split("\n")[0])
    assert html.name == "02_rfm.html" and "segment grid is empty" in html.read_text(encoding="utf-8")
    run = html.parent
    assert (run / "transactions_clean.parquet").exists() and (run / "01_cleaning.html").exists()
    manifest = json.loads((run / "run.json").read_text())
    assert [s["status"] for s in manifest["stages"]] == ["ok", "failed", "skipped"]
    page = html.read_text(encoding="utf-8")  # its header was made before the run stopped, and redone after
    assert 'href="01_cleaning.html" rel="prev"' in page and "03_clv.html" not in page


def test_no_rows_left_fails_the_cleaning_stage_clearly(tmp_path, capsys):
    params = write_study(tmp_path, [{"customer": "a", "date": "2024-01-01", "amount": "5"}], name="empty",
                         extra={"cleaning": {"window": {"start": "2025-01-01"}}})
    code = main(["run", str(params), "--reports-dir", str(tmp_path / "r"), "--notebooks-dir", str(ROOT / "notebooks")])
    err = capsys.readouterr().err
    assert code == 2 and "Stage 'cleaning' failed" in err and "No rows survived cleaning" in err


def test_a_named_stage_reruns_and_the_others_are_reused(tmp_path):
    params = write_study(tmp_path, [{"customer": f"c{i % 7}", "date": f"2024-01-{i % 28 + 1:02d}", "amount": str(5 + i)}
                                    for i in range(60)], name="partial")
    nb_dir = tmp_path / "nb"
    nb_dir.mkdir()
    for f in ("01_cleaning.ipynb", "02_rfm.ipynb"):
        shutil.copy(ROOT / "notebooks" / f, nb_dir)
    first = run_study(params, reports_dir=tmp_path / "r", notebooks_dir=nb_dir)
    second = run_study(params, reports_dir=tmp_path / "r", notebooks_dir=nb_dir, stages=["rfm"])
    assert second.ok and second.run_dir != first.run_dir
    assert [(s.stage.name, s.status) for s in second.stages] == [("cleaning", "reused"), ("rfm", "ok")]
    assert second.stage("rfm").reason == "named in --stages"
    assert (second.run_dir / "transactions_clean.parquet").exists() and (second.run_dir / "rfm.parquet").exists()
    assert errors_in(second.run_dir / "02_rfm.ipynb") == []


@pytest.mark.skipif(os.name != "posix", reason="IPC sockets are POSIX only; elsewhere kernels use TCP")
def test_kernels_talk_over_ipc_not_unencrypted_tcp(tmp_path, capfd):
    params = write_study(tmp_path, [{"customer": "a", "date": "2024-01-01", "amount": "5"}], name="ipc")
    code = main(["run", str(params), "--reports-dir", str(tmp_path / "r"),
                 "--notebooks-dir", str(notebooks_up_to(tmp_path, "cleaning"))])
    err = capfd.readouterr().err  # the kernel's own stderr included
    assert code == 0 and "cleaning: done" in err
    assert "without encryption" not in err and "Kernel is running over TCP" not in err
    # and the kernel really was started on IPC sockets, in the run's private folder (what the warnings' absence
    # alone cannot show)
    import unittest.mock

    from cvlib.run import kernel

    managers = []
    real = kernel.kernel_manager_class

    def recording(runtime_dir=None):
        base = real(runtime_dir)

        class Recorded(base):  # type: ignore[misc, valid-type]
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                managers.append(self)

        return Recorded

    with unittest.mock.patch.object(kernel, "kernel_manager_class", recording):
        run_study(params, reports_dir=tmp_path / "r2", notebooks_dir=notebooks_up_to(tmp_path, "cleaning"))
    assert managers and all(m.transport == "ipc" for m in managers)
    assert all(Path(m.connection_file).parent.name.startswith("cvlib-kernel-") for m in managers)


def test_missing_mapped_column_stops_the_run_before_anything_runs(tmp_path, capsys):
    params = write_study(tmp_path, [{"customer": "a", "date": "2024-01-01", "amount": "5"}], name="badmap",
                         columns={"customer_id": "customer", "date": "date", "amount": "Amount"})
    code = main(["run", str(params), "--reports-dir", str(tmp_path / "r"), "--notebooks-dir", str(ROOT / "notebooks")])
    err = capsys.readouterr().err
    assert code == 2 and "inputs.transactions.columns.amount" in err and "'Amount'" in err
    assert not (tmp_path / "r").exists()  # nothing ran


def test_unknown_stage_is_a_parameter_error(tmp_path, capsys):
    assert main(["run", str(ROOT / "params" / "cdnow.yaml"), "--stages", "rfn", "--reports-dir", str(tmp_path)]) == 2
    assert "unknown stage 'rfn'" in capsys.readouterr().err


@pytest.mark.slow
def test_last_notebook_runs_as_is_building_what_it_misses(tmp_path):
    """As in JupyterLab: cwd notebooks/, the default params_file, earlier outputs built when missing."""
    import papermill as pm

    out = tmp_path / "05.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "08_strategy.ipynb"), str(out), cwd=str(ROOT / "notebooks"),
                        parameters={"run_dir": str(tmp_path / "run"),
                                    "overrides": {"clv.bootstrap": 0, "clv.compare_paretonbd": False}},
                        kernel_name="python3", progress_bar=False)
    assert errors_in(out) == []
    for f in ("transactions_clean.parquet", "rfm.parquet", "clv.parquet", "targets.csv"):
        assert (tmp_path / "run" / f).exists(), f


def test_notebooks_are_clean_and_thin():
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert any("parameters" in c.metadata.get("tags", []) for c in code), nb_path.name
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), nb_path.name
        assert not any(line.lstrip().startswith(("def ", "class ")) for c in code for line in c.source.splitlines())
        assert nb.cells[0].cell_type == "markdown"


@pytest.mark.slow
def test_cdnow_sample_without_header_reproduces_published_bgnbd_through_cvlib_run(tmp_path, capsys):
    """FHL 2005 through the whole pipeline: a headerless file read with `header: false`, $0 purchases kept as
    purchase occasions, the calibration-period fit equal to the published estimates (3 s.f.)."""
    code = main(["run", str(ROOT / "params" / "cdnow_sample.yaml"), "--notebooks-dir",
                 str(notebooks_up_to(tmp_path, "clv")), "--reports-dir", str(tmp_path / "r")])
    assert code == 0, capsys.readouterr().err
    run = tmp_path / "r" / "cdnow_sample" / "latest"
    cleaning = json.loads((run / "cleaning.json").read_text())
    assert cleaning["summary"]["rows_in"] == 6919 and cleaning["summary"]["customers"] == 2357  # no row lost
    zero = [a for a in cleaning["audit"] if a["rule"] == "non_positive"][0]
    assert "written as 0 kept as purchase occasions" in zero["detail"]
    fit = json.loads((run / "clv_model.json").read_text())["holdout"]["calibration_fit"]["bgnbd"]
    for k, v in {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}.items():
        assert float(f"{fit['params'][k]:.3g}") == float(f"{v:.3g}"), (k, fit["params"][k])
    assert round(fit["loglik"], 1) == -9582.4


def test_a_headerless_file_read_with_a_header_is_refused_with_a_hint(tmp_path, capsys):
    params = write_study(tmp_path, [{"customer": "a", "date": "2024-01-01", "amount": "5"}], name="nohead")
    (tmp_path / "tx.csv").write_text("00001,2024-01-01,5\n00002,2024-01-02,7\n", encoding="utf-8")
    assert main(["validate", str(params)]) == 2
    assert "seems to have no header row. Set header: false" in capsys.readouterr().err


def test_reports_render_in_the_background_and_a_failed_render_fails_the_run(tmp_path):
    """The background renderer writes each report while the next stage runs; a report it could not render is an
    error of the run (named), never a missing page found later."""
    import nbformat

    from cvlib.errors import StageError
    from cvlib.run.render import Renders

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A rendered report")])
    nbformat.write(nb, tmp_path / "ok.ipynb")
    r = Renders()
    try:
        r.submit(tmp_path / "ok.ipynb", tmp_path / "ok.html", "ok")
        r.wait()
        assert "A rendered report" in (tmp_path / "ok.html").read_text(encoding="utf-8")
        r.submit(tmp_path / "missing.ipynb", tmp_path / "missing.html", "missing")
        r.submit(tmp_path / "ok.ipynb", tmp_path / "again.html", "again")  # the worker goes on after a failure
        with pytest.raises(StageError, match="rendering a report failed: .*missing.ipynb"):
            r.wait()
        assert (tmp_path / "again.html").exists()
    finally:
        r.close()


def fake_stage_notebooks(tmp_path: Path, seconds: dict[str, float], fail: str = "") -> Path:
    """The real cleaning notebook, then stand-ins for rfm, clv, value and drivers that write the files their
    stage declares, after `seconds[stage]`, and note their kernel's process and when they ran."""
    from cvlib.stages import by_name

    nb_dir = tmp_path / "nb"
    nb_dir.mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / "01_cleaning.ipynb", nb_dir)
    for name in ("rfm", "clv", "value", "drivers"):
        st = by_name(name)
        body = (f"import json, os, pathlib, time\nt0 = time.time()\ntime.sleep({seconds.get(name, 0)})\n"
                + (f"raise ValueError('{name} broke')\n" if name == fail else "")
                + f"for f in {list(st.writes)!r}:\n    (pathlib.Path(run_dir) / f).write_text('x')\n"
                f"(pathlib.Path(run_dir) / '{name}.ran').write_text(json.dumps([os.getpid(), t0, time.time(), "
                f"os.environ.get('OMP_NUM_THREADS')]))")
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_code_cell("params_file = ''\nrun_dir = ''", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(body)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nb_dir / st.notebook)
    return nb_dir


def test_stages_run_in_order_in_one_kernel_with_its_threads_capped_and_a_failure_stops_the_run(tmp_path, capsys):
    """Every stage runs in the one kernel of the run, one after the other (a stage starts after the one before has
    finished), with the numerical libraries' thread cap set when the kernel starts; the runner's own process is
    left as it was. A failed stage stops the run: later stages are skipped, 'latest' does not move."""
    params = write_study(tmp_path, [{"customer": "a", "date": "2024-01-01", "amount": "5"}] * 3, name="lanes")
    nb_dir = fake_stage_notebooks(tmp_path, {"value": 0.3, "drivers": 0.3})

    def ran(res, name):
        return json.loads((res.run_dir / f"{name}.ran").read_text())

    cwd, env_before = os.getcwd(), os.environ.get("OMP_NUM_THREADS")
    res = run_study(params, reports_dir=tmp_path / "r", notebooks_dir=nb_dir)
    assert res.ok and [s.status for s in res.stages] == ["ok"] * 5
    assert os.getcwd() == cwd and os.environ.get("OMP_NUM_THREADS") == env_before
    runs = [ran(res, n) for n in ("rfm", "clv", "value", "drivers")]
    assert len({r[0] for r in runs}) == 1  # one kernel process
    assert all(a[2] <= b[1] for a, b in zip(runs, runs[1:]))  # one after the other
    assert all(r[3] == "1" for r in runs)  # the kernel's thread cap (cvlib.threads.thread_env)
    page = (res.run_dir / "05_loyalty_drivers.html").read_text(encoding="utf-8")
    assert 'href="04_value.html" rel="prev"' in page
    from cvlib import io as cio

    for st in json.loads((res.run_dir / "run.json").read_text())["stages"]:  # digests of the files each stage read
        assert st["depends"]["files"] == {f: cio.sha256_file(res.run_dir / f) for f in st["depends"]["files"]}, st["name"]

    nb_fail = fake_stage_notebooks(tmp_path / "f", {}, fail="value")
    code = main(["run", str(params), "--reports-dir", str(tmp_path / "r2"), "--notebooks-dir", str(nb_fail)])
    err = capsys.readouterr().err
    assert code == 1 and "Stage 'value' failed: ValueError: value broke" in err
    run = Path(err.split("shows the error: ")[1].split("\n")[0]).parent
    manifest = json.loads((run / "run.json").read_text())
    assert [s["status"] for s in manifest["stages"]] == ["ok", "ok", "ok", "failed", "skipped"]
    assert not (run / "drivers.json").exists() and "value broke" in (run / "04_value.html").read_text(encoding="utf-8")
    assert not (run.parent / "latest").exists() or (run.parent / "latest").resolve() != run


def test_a_terminal_shows_one_named_progress_bar_at_a_time(tmp_path, capfd):
    """On a terminal papermill's bar carries the stage's name and is cleared when the stage ends (no unnamed
    'Executing' bars left interleaved with the runner's lines); a log file gets no bar."""
    from cvlib.run.kernel import StageKernel, progress_bar

    assert progress_bar("02_rfm", False) is False
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("y = 2")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "02_rfm.ipynb")
    k = StageKernel(tmp_path)
    try:
        k.execute(tmp_path / "02_rfm.ipynb", tmp_path / "out.ipynb", {}, tmp_path, tty=True)
    finally:
        k.close()
    err = capfd.readouterr().err
    assert "02_rfm" in err and "Executing" not in err
    assert err.split("\r")[-1].strip() == ""  # cleared: the last thing written blanks the bar's line
