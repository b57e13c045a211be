"""Runner 2 through papermill: the resolved parameter snapshot, reruns of only what changed, complete
run folders, `latest`, run comparison and the client package."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest
import yaml

from cvlib.cli import main
from cvlib.run import pages
from cvlib.run.runner import run_study
from tests.conftest import ROOT, small_book

NB = ROOT / "notebooks"
STAGE_NAMES = ["cleaning", "rfm", "clv", "value", "drivers", "journey", "strategy"]
NO_CAMPAIGNS = {"campaign": "not_applicable"}  # these studies have no campaigns table


def statuses(run_dir: Path) -> dict[str, str]:
    return {s["name"]: s["status"] for s in json.loads((run_dir / "run.json").read_text())["stages"]}


def outputs(run_dir: Path) -> dict[str, str]:
    return {f: sha for s in json.loads((run_dir / "run.json").read_text())["stages"]
            for f, sha in s["outputs"].items()}


def latest(reports: Path, study: str) -> Path:
    return (reports / study / "latest").resolve()


@pytest.mark.slow
def test_snapshot_reuse_compare_and_package(tmp_path, capsys):
    params = small_book(tmp_path, name="rerun")
    reports = tmp_path / "reports"
    sets = ["cleaning.window.start=2022-01-02", "rfm.abc=[0.7, 0.9]", "cleaning.outliers.threshold=3.5"]
    a = run_study(params, overrides=sets, reports_dir=reports, notebooks_dir=NB)  # a date, a list, a nested key
    assert a.ok and set(statuses(a.run_dir).values()) == {"ok", "not_applicable"}
    snap = yaml.safe_load((a.run_dir / "params.yaml").read_text())
    assert Path(snap["inputs"]["transactions"]["path"]).is_absolute()
    assert snap["cleaning"]["window"]["start"] == "2022-01-02" and snap["rfm"]["abc"] == [0.7, 0.9]

    # a budget-only change reruns only strategy; the upstream outputs are the same files
    b = run_study(params, overrides=sets + ["strategy.budget=50"], reports_dir=reports, notebooks_dir=NB)
    assert statuses(b.run_dir) == {**{n: "reused" for n in STAGE_NAMES[:-1]}, "strategy": "ok", **NO_CAMPAIGNS}
    up = {f: sha for f, sha in outputs(a.run_dir).items() if f not in b.stage("strategy").outputs}
    assert up and all(outputs(b.run_dir)[f] == sha for f, sha in up.items())
    assert latest(reports, "rerun") == b.run_dir
    for s in (s for s in b.stages if s.status != "not_applicable"):  # a complete package, reused reports included
        page = (b.run_dir / s.stage.html).read_text(encoding="utf-8")
        assert ("Reused from run " + a.run_dir.name in page) == (s.stage.name != "strategy")
        assert all((b.run_dir / f).exists() for f in s.stage.writes)
    index = (b.run_dir / "index.html").read_text(encoding="utf-8")
    assert f"reused from run {a.run_dir.name}" in index and str(tmp_path) not in index

    # an outlier threshold that flags the same rows reruns cleaning only: its outputs did not change
    c = run_study(params, overrides=sets[:2] + ["cleaning.outliers.threshold=3.51"], reports_dir=reports,
                  notebooks_dir=NB)
    assert statuses(c.run_dir) == {"cleaning": "ok", **{n: "reused" for n in STAGE_NAMES[1:]}, **NO_CAMPAIGNS}
    assert c.stage("strategy").reused_from == a.run_dir.name  # the same budget as run A again

    # the snapshot reruns the same study, from anywhere, with identical outputs
    assert main(["run", str(a.run_dir / "params.yaml"), "--force"]) == 0
    d = latest(reports, "rerun")
    assert d not in {a.run_dir, b.run_dir, c.run_dir} and set(statuses(d).values()) == {"ok", "not_applicable"}
    assert outputs(d) == outputs(a.run_dir)
    capsys.readouterr()

    # compare: the changed parameter and the changed figure
    assert main(["compare", "rerun", a.run_dir.name, b.run_dir.name, "--reports-dir", str(reports)]) == 0
    out = capsys.readouterr().out
    assert "strategy.budget  50000.0  ->  50.0" in out
    net = next(line for line in out.splitlines() if line.strip().startswith("plan net value"))
    assert net.split()[-2] not in {"0", "+0"}, net
    html = next(reports.glob("rerun/compare-*.html")).read_text(encoding="utf-8")
    assert "strategy.budget" in html and "plan net value" in html
    assert main(["compare", "rerun", "--reports-dir", str(reports)]) == 0  # the two newest complete runs

    # the package: reports, target lists and quarantine, nothing else
    newest = latest(reports, "rerun")
    assert main(["package", "rerun", b.run_dir.name, "--reports-dir", str(reports)]) == 0
    z = zipfile.ZipFile(next(reports.glob(f"rerun/rerun-{b.run_dir.name}.zip")))
    names = {Path(n).name for n in z.namelist()}
    assert {"index.html", "targets.csv", "targets.xlsx", "quarantine.csv", "playbook.csv", "MANIFEST.txt"} <= names
    assert {s.stage.html for s in b.stages if s.status != "not_applicable"} <= names
    assert "07_campaign.html" not in names  # a stage that does not apply has no report
    assert not any(n.endswith((".parquet", ".ipynb", ".json", ".yaml")) for n in names)
    # the client's rendering of run B, made from B's own pages: no consultant content, no run id, no reuse banner
    for n in (n for n in z.namelist() if n.endswith(".html")):
        page = z.read(n).decode("utf-8")
        assert not pages.consultant_content(page) and b.run_dir.name not in page.split("</style>")[-1], n
        assert "Reused from run" not in page and "Parameters used" not in page, n
    assert (b.run_dir / "client" / "index.html").is_file() and latest(reports, "rerun") == newest  # not a run
    # a client page that still holds a consultant's note is refused, with the reason
    planted = b.run_dir / "client" / "03_clv.html"
    planted.write_text(planted.read_text(encoding="utf-8").replace(
        "</body>", "<div class='cvlib-consultant'>For the consultant: set clv.margin</div></body>"), encoding="utf-8")
    capsys.readouterr()
    assert main(["package", "rerun", b.run_dir.name, "--reports-dir", str(reports), "--out",
                 str(tmp_path / "refused.zip")]) == 2
    assert "03_clv.html" in capsys.readouterr().err and not (tmp_path / "refused.zip").exists()
    assert main(["render", "rerun", b.run_dir.name, "--client", "--reports-dir", str(reports)]) == 0
    assert main(["package", "rerun", b.run_dir.name, "--reports-dir", str(reports), "--out",
                 str(tmp_path / "again.zip")]) == 0


def _notebooks(tmp_path: Path, failing_rfm: bool) -> Path:
    nb_dir = tmp_path / ("nb-fail" if failing_rfm else "nb")
    nb_dir.mkdir(exist_ok=True)
    shutil.copy(NB / "01_cleaning.ipynb", nb_dir)
    if failing_rfm:
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_code_cell("params_file = ''\nrun_dir = ''", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("raise ValueError('segment grid is empty')")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nb_dir / "02_rfm.ipynb")
    return nb_dir


def test_a_failed_run_leaves_latest_where_it_was(tmp_path, capsys):
    params = small_book(tmp_path, name="keep")
    reports = tmp_path / "r"
    good = run_study(params, reports_dir=reports, notebooks_dir=_notebooks(tmp_path, False))
    assert good.ok and latest(reports, "keep") == good.run_dir
    code = main(["run", str(params), "--reports-dir", str(reports), "--notebooks-dir",
                 str(_notebooks(tmp_path, True))])
    err = capsys.readouterr().err
    assert code == 1 and "latest' still points to the last complete run" in err
    assert latest(reports, "keep") == good.run_dir
    failed = max(d for d in (reports / "keep").iterdir() if d.is_dir() and not d.is_symlink())
    rec = json.loads((failed / "run.json").read_text())
    assert rec["status"] == "failed" and statuses(failed) == {"cleaning": "reused", "rfm": "failed"}
    assert main(["package", "keep", failed.name, "--reports-dir", str(reports)]) == 2
    assert "not a complete run" in capsys.readouterr().err


def test_never_reused_from_other_input_or_a_killed_run(tmp_path):
    params = small_book(tmp_path, name="mix")
    reports, nb = tmp_path / "r", _notebooks(tmp_path, False)
    first = run_study(params, reports_dir=reports, notebooks_dir=nb)
    assert run_study(params, reports_dir=reports, notebooks_dir=nb).stage("cleaning").status == "reused"
    # the client sends a new file: the old clean data is not used
    small_book(tmp_path, name="mix", n_customers=59)
    new = run_study(params, reports_dir=reports, notebooks_dir=nb).stage("cleaning")
    assert new.status == "ok" and "input tables changed: transactions" in new.reason
    # back to the old file, but every run that had it is marked as killed: nothing to reuse
    small_book(tmp_path, name="mix")
    for d in (reports / "mix").iterdir():
        if d.is_dir() and not d.is_symlink():
            rec = json.loads((d / "run.json").read_text())
            rec["status"] = "running"
            (d / "run.json").write_text(json.dumps(rec))
    assert run_study(params, reports_dir=reports, notebooks_dir=nb).stage("cleaning").status == "ok"
    assert first.run_dir.exists()
