"""Run integrity (issue #29): a finished run never changes because another one is edited, tampered files are never
reused or packaged, 'complete' is written last, and nothing in a run folder decides what code runs."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from cvlib.cli import main
from cvlib.errors import RunError
from cvlib.run import history as runs
from cvlib.run import pages
from cvlib.run.runner import run_study
from tests.conftest import ROOT, small_book

NB = ROOT / "notebooks"


def two_stages(tmp_path: Path, extra_cell: str = "") -> Path:
    """A notebooks folder with the cleaning and RFM stages (an extra code cell in RFM when given)."""
    d = tmp_path / ("nb-extra" if extra_cell else "nb")
    d.mkdir(exist_ok=True)
    shutil.copy(NB / "01_cleaning.ipynb", d)
    nb = nbformat.read(NB / "02_rfm.ipynb", as_version=4)
    if extra_cell:
        nb.cells.append(nbformat.v4.new_code_cell(extra_cell))
    nbformat.write(nb, d / "02_rfm.ipynb")
    return d


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One study with one complete two-stage run, made once; each test works on its own copy."""
    tmp = tmp_path_factory.mktemp("integrity")
    params = small_book(tmp, name="base")
    nb = two_stages(tmp)
    run_study(params, reports_dir=tmp / "r", notebooks_dir=nb)
    return tmp


def copy_of(base: Path, tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """(params, reports, notebooks, the complete run): the base study's data and notebooks (read only), and a
    private copy of its reports folder."""
    shutil.copytree(base / "r", tmp_path / "r", symlinks=True)
    return base / "params" / "base.yaml", tmp_path / "r", base / "nb", (tmp_path / "r" / "base" / "latest").resolve()


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def zip_contents(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def tamper(run_dir: Path) -> None:
    """Edit, truncate and replace every kind of file a run holds."""
    with open(run_dir / "quarantine.csv", "a", encoding="utf-8") as fh:
        fh.write("999999,injected,row\n")  # appended
    (run_dir / "rfm.parquet").write_bytes((run_dir / "rfm.parquet").read_bytes()[:100])  # truncated
    (run_dir / "01_cleaning.html").write_text("<html><body>replaced</body></html>")  # replaced
    nb = nbformat.read(run_dir / "02_rfm.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("edited"))
    nbformat.write(nb, run_dir / "02_rfm.ipynb")  # edited
    c = json.loads((run_dir / "cleaning.json").read_text())
    c["summary"]["rows_in"] += 1
    (run_dir / "cleaning.json").write_text(json.dumps(c))


def test_reused_files_are_copies_and_editing_an_old_run_changes_no_other_run(base, tmp_path):
    params, reports, nb, a_dir = copy_of(base, tmp_path)
    b = run_study(params, reports_dir=reports, notebooks_dir=nb)
    assert {s.status for s in b.stages} == {"reused"}
    for f in b.run_dir.iterdir():
        if f.is_file():
            assert f.stat().st_nlink == 1, f.name  # a copy of its own, never a hard link
            assert not os.access(f, os.W_OK) or os.geteuid() == 0  # read-only once complete
            assert f.stat().st_mode & 0o222 == 0, f.name
    assert main(["package", "base", "--reports-dir", str(reports), "--out", str(tmp_path / "before.zip")]) == 0
    tamper(a_dir)
    assert runs.tampered(b.run_dir, record(b.run_dir)) == []  # the later run, its files and its zip unchanged
    assert (reports / "base" / "latest").resolve() == b.run_dir
    assert main(["package", "base", "--reports-dir", str(reports), "--out", str(tmp_path / "after.zip")]) == 0
    assert zip_contents(tmp_path / "before.zip") == zip_contents(tmp_path / "after.zip")
    # the tampered run is neither packaged nor compared with
    assert main(["package", "base", a_dir.name, "--reports-dir", str(reports)]) == 2
    assert sorted(runs.tampered(a_dir, record(a_dir))) == sorted(
        ["quarantine.csv", "rfm.parquet", "01_cleaning.html", "02_rfm.ipynb", "cleaning.json"])


def test_a_tampered_earlier_run_is_never_reused_and_the_stage_says_why(base, tmp_path):
    params, reports, nb, a_dir = copy_of(base, tmp_path)
    tamper(a_dir)
    b = run_study(params, reports_dir=reports, notebooks_dir=nb)
    for s in b.stages:
        assert s.status == "ok" and "changed since they were recorded" in s.reason, (s.stage.name, s.reason)
    assert "01_cleaning.html" in b.stage("cleaning").reason and "rfm.parquet" in b.stage("rfm").reason
    assert b.ok and (reports / "base" / "latest").resolve() == b.run_dir
    # an edited report alone is enough: reports are checked like data
    c_html = b.run_dir / "02_rfm.html"
    c_html.chmod(0o644)
    c_html.write_text(c_html.read_text().replace("</body>", "<p>edited</p></body>"))
    c = run_study(params, reports_dir=reports, notebooks_dir=nb)
    assert c.stage("cleaning").status == "reused" and c.stage("rfm").status == "ok"
    assert "02_rfm.html" in c.stage("rfm").reason


def test_complete_is_written_last_and_a_failure_while_finishing_records_the_run_as_failed(base, tmp_path,
                                                                                          monkeypatch):
    params, reports, nb, good_dir = copy_of(base, tmp_path)
    seen: list[str] = []
    real = pages.write_index

    def full_disk(ctx, result, *a, **k):
        seen.append(record(result.run_dir)["status"])  # what run.json says while the index is written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pages, "write_index", full_disk)
    with pytest.raises(RunError, match="No space left on device"):
        run_study(params, reports_dir=reports, notebooks_dir=nb)
    assert seen == ["running"]  # never 'complete' before the index and every file are there
    failed = max(d for d in (reports / "base").iterdir() if d.is_dir() and not d.is_symlink())
    rec = record(failed)
    assert rec["status"] == "failed" and "No space left on device" in rec["reason"]
    assert (reports / "base" / "latest").resolve() == good_dir

    def loses_a_file(ctx, result, *a, **k):
        out = real(ctx, result, *a, **k)
        (result.run_dir / "rfm.parquet").unlink()  # as if the disk lost it
        return out

    monkeypatch.setattr(pages, "write_index", loses_a_file)
    with pytest.raises(RunError, match="rfm.parquet"):
        run_study(params, reports_dir=reports, notebooks_dir=nb)
    monkeypatch.setattr(pages, "write_index", lambda *a, **k: 1 / 0)  # any other error while writing the index
    assert main(["run", str(params), "--reports-dir", str(reports), "--notebooks-dir", str(nb)]) == 1
    statuses = [record(d)["status"] for d in (reports / "base").iterdir() if d.is_dir() and not d.is_symlink()]
    assert statuses.count("complete") == 1 and (reports / "base" / "latest").resolve() == good_dir


def test_a_corrupt_earlier_run_does_not_stop_the_next_one(base, tmp_path):
    params, reports, nb, a_dir = copy_of(base, tmp_path)
    (a_dir / "rfm.json").write_text("{not json")
    b = run_study(params, reports_dir=reports, notebooks_dir=nb)
    assert b.ok and record(b.run_dir)["status"] == "complete" and b.stage("rfm").status == "ok"


def test_nothing_in_a_run_folder_chooses_the_notebooks(tmp_path, capsys):
    params = small_book(tmp_path, name="code")
    reports = tmp_path / "r"
    project = two_stages(tmp_path).rename(tmp_path / "notebooks")  # tmp_path is the project: its notebooks/
    a = run_study(params, reports_dir=reports, notebooks_dir=project)
    # a run.json edited to name a folder of foreign notebooks: never used
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    marker = tmp_path / "ran-foreign-code"
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"open({str(marker)!r}, 'w').write('x')")])
    nbformat.write(bad, foreign / "01_cleaning.ipynb")
    rec = record(a.run_dir)
    rec["notebooks_dir"] = str(foreign)
    (a.run_dir / "run.json").chmod(0o644)
    (a.run_dir / "run.json").write_text(json.dumps(rec))
    code = main(["run", str(a.run_dir / "params.yaml"), "--stages", "cleaning"])
    assert code == 0, capsys.readouterr().err
    assert not marker.exists()  # the project's notebooks ran, which are the ones that made the run
    # a run made by other notebooks: a rerun from its params.yaml is refused (exit 2), not run with these
    b = run_study(params, reports_dir=reports, notebooks_dir=two_stages(tmp_path, extra_cell="x = 1"))
    capsys.readouterr()
    assert main(["run", str(b.run_dir / "params.yaml")]) == 2
    err = capsys.readouterr().err
    assert "02_rfm.ipynb changed" in err and "--notebooks-dir" in err


def test_compare_and_package_take_run_ids_never_paths(base, tmp_path, capsys):
    params, reports, nb, a_dir = copy_of(base, tmp_path)
    for bad in ("../other/20240101-000000", "..", "a/b"):
        assert main(["package", "base", bad, "--reports-dir", str(reports)]) == 2
        assert "never a path" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_killed_at_random_points_is_never_recorded_complete_without_its_files(tmp_path):
    params = small_book(tmp_path, name="kill")
    reports, nb = tmp_path / "r", two_stages(tmp_path)
    cmd = [sys.executable, "-m", "cvlib", "run", str(params), "--reports-dir", str(reports), "--notebooks-dir",
           str(nb), "--force"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    whole = time.perf_counter() - t0
    rng = random.Random(29)
    for _ in range(10):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0.5, whole))
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    for d in (reports / "kill").iterdir():
        if d.is_dir() and not d.is_symlink() and (d / "run.json").exists():
            rec = record(d)
            if rec["status"] == "complete":
                assert (d / "index.html").is_file() and runs.tampered(d, rec) == [], d.name
    latest = (reports / "kill" / "latest").resolve()
    assert record(latest)["status"] == "complete" and runs.tampered(latest, record(latest)) == []


def _mount_tmpfs(where: Path, size: str) -> None:
    """A small file system of our own (a real full or read-only disk); skipped where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8): CI runs as root, so it runs there")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {done.stderr.decode(errors='replace').strip()}")


def test_a_full_or_read_only_disk_fails_the_run_with_a_message_and_a_record(base, tmp_path):
    params, nb = base / "params" / "base.yaml", base / "nb"
    cmd = [sys.executable, "-m", "cvlib", "run", str(params), "--notebooks-dir", str(nb), "--reports-dir"]
    full = tmp_path / "full"
    _mount_tmpfs(full, "700k")  # room for the first stage's report, not for the second's
    try:
        p = subprocess.run(cmd + [str(full), "--force"], capture_output=True, text=True)
        assert p.returncode == 1 and "Traceback" not in p.stderr and "No space left on device" in p.stderr, p.stderr
        run = next(d for d in (full / "base").iterdir() if d.is_dir())
        rec = record(run)
        assert rec["status"] == "failed" and "No space left on device" in rec["reason"]
        assert not (full / "base" / "latest").exists()
    finally:
        subprocess.run(["umount", str(full)], check=False)
    ro = tmp_path / "ro"
    _mount_tmpfs(ro, "50m")
    try:
        shutil.copytree(base / "r", ro, dirs_exist_ok=True, symlinks=True)
        before = (ro / "base" / "latest").resolve()
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        p = subprocess.run(cmd + [str(ro)], capture_output=True, text=True)
        assert p.returncode == 1 and "Traceback" not in p.stderr and "Read-only file system" in p.stderr, p.stderr
        assert (ro / "base" / "latest").resolve() == before and record(before)["status"] == "complete"
    finally:
        subprocess.run(["umount", str(ro)], check=False)
