"""Hostile parameters and client files (issue #12): no code execution, no silently wrong numbers, no leaked
ids, runs that cannot collide or mix, and small data that never crashes."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cvlib import expr, privacy, reading
from cvlib.analysis.cleaning import clean_transactions
from cvlib.cli import main
from cvlib.params import Cleaning, load_study
from cvlib.parsing import parse_amounts_explained
from tests.conftest import ROOT, notebooks_up_to, run_notebook_inprocess, write_study

NB = ROOT / "notebooks"
CDNOW = ROOT / "params" / "cdnow.yaml"
ACTIONS = [{"name": "call", "groups": ["g"], "cost_per_customer": 1, "uplift": 0.1}]


def _group(when: str) -> list[str]:
    return ["--set", f"strategy.groups=[{{name: g, objective: wider, when: {json.dumps(when)}}}]",
            "--set", f"strategy.actions={json.dumps(ACTIONS)}"]


# --------------------------------------------------------------------------- 1. the expression language
PAYLOADS = [
    "@pd.io.common.os.system('touch a-file') == 0",
    "clv.to_csv('a-file')",
    "__import__('os').system('touch a-file')",
    "clv.__class__ == 1",
    "(lambda: 1)() == 1",
    "clv[0] > 1",
    "[c for c in clv] == 1",
    "_x > 1",
    "clv > 1 & recency < 3",
    "open('a-file', 'w')",
    "clv if 1 else 2",
    "clv is None",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_code_in_a_rule_is_refused_at_validate_and_runs_nothing(payload, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["validate", str(CDNOW), *_group(payload)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "strategy.groups.0.when" in err
    assert not (tmp_path / "a-file").exists() and list(tmp_path.iterdir()) == []


def test_rules_naming_unknown_columns_or_categories_are_refused(capsys):
    assert main(["validate", str(CDNOW), *_group("clvv > 10")]) == 2
    assert "unknown column(s) 'clvv' (did you mean 'clv'?)" in capsys.readouterr().err
    assert main(["validate", str(CDNOW), *_group("clv_tier == 'Hi'")]) == 2
    assert "no customer can have that clv_tier" in capsys.readouterr().err
    assert main(["validate", str(CDNOW), *_group("segment in ['Lost', 'Sleepers']")]) == 2
    assert "'Sleepers'" in capsys.readouterr().err


def test_the_rule_language_evaluates_like_pandas_on_allowed_rules():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"clv": rng.normal(50, 30, 500), "recency": rng.integers(0, 400, 500),
                       "segment": pd.array(rng.choice(["Lost", "Champions", "New"], 500), dtype="string[pyarrow]"),
                       "p": rng.random(500)})
    df.loc[::7, "clv"] = np.nan
    cases = {
        "clv >= 40 and recency < 100": (df["clv"] >= 40) & (df["recency"] < 100),
        "segment == 'Lost' or not p > 0.5": (df["segment"] == "Lost").fillna(False) | ~(df["p"] > 0.5),
        "segment in ['Lost', 'New'] and 10 < recency <= 200":
            df["segment"].isin(["Lost", "New"]) & (df["recency"] > 10) & (df["recency"] <= 200),
        "segment not in ['Lost']": ~df["segment"].isin(["Lost"]),
        "clv * p - 3 > recency / 100": (df["clv"] * df["p"] - 3) > df["recency"] / 100,
        "-clv < -60": -df["clv"] < -60,
    }
    for rule, want in cases.items():
        got = expr.evaluate(rule, df)
        assert got.dtype == bool
        assert got.tolist() == want.fillna(False).astype(bool).tolist(), rule


def test_a_rule_over_columns_the_table_lacks_is_an_error_not_a_guess():
    with pytest.raises(expr.ExpressionError, match="unknown column"):
        expr.evaluate("nothing > 1", pd.DataFrame({"clv": [1.0]}))


# --------------------------------------------------------------------------- 2. amounts read strictly
BAD_AMOUNTS = ["1e15", "abc1", "3 items @ 4.50", "<img src=x onerror=alert(1)>", "12.3.4", "1,23", "(-3)",
               "12 34", "$$5", "5 EUR USD", "1234567890123456", "NaN", "inf", "--5", "5-5", "0x1F", "½"]
GOOD_AMOUNTS = {"$1,234.50": 1234.5, "(12.50)": -12.5, "12.50-": -12.5, "EUR 12": 12.0, "12 EUR": 12.0,
                "-¥3": -3.0, "¥-3": -3.0, "US$ 10": 10.0, "12,34,567.89": 1234567.89, "1 234.50": 1234.5,
                "+5": 5.0, "5元": 5.0, "RMB100": 100.0, ".5": 0.5, "−7.5": -7.5, "115": 115.0}


def test_amounts_that_cannot_be_read_exactly_are_quarantined_with_reason_and_raw_text():
    rows = [("a", "2024-01-01", v) for v in BAD_AMOUNTS] + [("b", "2024-01-02", "10")]
    raw = pd.DataFrame(rows, columns=["customer_id", "date", "amount"], dtype="string")
    raw.insert(0, "source_row", np.arange(1, len(raw) + 1))
    res = clean_transactions(raw, Cleaning(), date_format="%Y-%m-%d", today=dt.date(2025, 1, 1))
    q = res.quarantine[res.quarantine["rule"] == "unparseable_amount"]
    assert sorted(q["amount"].tolist()) == sorted(BAD_AMOUNTS)
    assert all(repr(a) in r for a, r in zip(q["amount"], q["reason"]))
    assert res.clean["amount"].tolist() == [10.0] and res.balanced
    assert "exponent" in q.set_index("amount").loc["1e15", "reason"]
    assert "15 significant digits" in q.set_index("amount").loc["1234567890123456", "reason"]


def test_plain_amount_forms_are_read():
    values, reasons = parse_amounts_explained(pd.Series(list(GOOD_AMOUNTS), dtype="string"))
    assert values.tolist() == list(GOOD_AMOUNTS.values()) and (reasons == "").all()
    eu, _ = parse_amounts_explained(pd.Series(["1.234,50", "12,5", "€ 3,00", "1.234.567"]), decimal=",")
    assert eu.tolist() == [1234.5, 12.5, 3.0, 1234567.0]
    exp, _ = parse_amounts_explained(pd.Series(["1e3", "2.5E-2"]), allow_exponent=True)
    assert exp.tolist() == [1000.0, 0.025]


def test_absurd_amounts_are_flagged_never_rewritten():
    rows = [("a", "2024-01-0%d" % (i % 9 + 1), str(10 + i)) for i in range(30)] + [("z", "2024-01-05", "5000000000000")]
    raw = pd.DataFrame(rows, columns=["customer_id", "date", "amount"], dtype="string")
    raw.insert(0, "source_row", np.arange(1, len(raw) + 1))
    for action in ("flag", "cap", "drop"):
        res = clean_transactions(raw, Cleaning(outliers={"action": action}), date_format="%Y-%m-%d",
                                 today=dt.date(2025, 1, 1))
        assert res.balanced
        z = res.clean[res.clean["customer_id"] == "z"]
        if action == "flag":
            assert z["amount"].tolist() == [5e12] and z["is_outlier"].all()
        else:  # capping would rewrite it: it is quarantined instead
            assert z.empty and (res.quarantine["customer_id"] == "z").sum() == 1


# --------------------------------------------------------------------------- 6. implausible dates
def test_a_far_future_date_is_quarantined_and_does_not_move_the_observation_end(tmp_path):
    rows = [{"customer": f"c{i % 20}", "date": f"2024-{i % 12 + 1:02d}-{i % 27 + 1:02d}", "amount": "10"}
            for i in range(400)]
    rows += [{"customer": "c1", "date": "2099-01-01", "amount": "10"}, {"customer": "c2", "date": "1901-01-01",
                                                                           "amount": "10"}]
    params = write_study(tmp_path, rows, name="future")
    study = load_study(params)
    from cvlib import io
    from cvlib.analysis.cleaning import run_cleaning

    res = run_cleaning(study, tmp_path / "run")
    q = res.quarantine.set_index("date")
    assert q.loc["2099-01-01", "rule"] == "implausible_date" and q.loc["1901-01-01", "rule"] == "implausible_date"
    assert res.clean["date"].max() <= pd.Timestamp("2024-12-31")
    audit = res.audit.set_index("rule")
    assert audit.loc["implausible_date", "rows_affected"] == 2
    assert any("plausible range" in n for n in res.notes)
    assert io.read_json(tmp_path / "run" / "cleaning.json")["summary"]["balanced"]


# --------------------------------------------------------------------------- 5. everything checked at validate
INVALID = {
    "budget inf": ["--set", "strategy.budget=.inf"],
    "budget zero": ["--set", "strategy.budget=0"],
    "no actions": ["--set", "strategy.actions=[]"],
    "descending bin edges": ["--set", "rfm.bin_edges.recency=[90, 30]"],
    "tier cuts out of order": ["--set", "clv.tiers.cuts=[0.3, 0.1]"],
    "pyramid cuts out of order": ["--set", "rfm.pyramid.cuts=[0.2, 0.05, 0.01]"],
    "inconsistent AHP": ["--set", "value.weights.ahp.matrix=" + json.dumps(
        [[1, 9, 9, 9, 9, 9, 1 / 9], [1 / 9, 1, 9, 9, 9, 9, 9], [1 / 9, 1 / 9, 1, 9, 9, 9, 9],
         [1 / 9, 1 / 9, 1 / 9, 1, 9, 9, 9], [1 / 9, 1 / 9, 1 / 9, 1 / 9, 1, 9, 9],
         [1 / 9, 1 / 9, 1 / 9, 1 / 9, 1 / 9, 1, 9], [9, 1 / 9, 1 / 9, 1 / 9, 1 / 9, 1 / 9, 1]])],
    "orders without an order id": ["--set", "occasion=order"],
    "the occasion said twice, differently": ["--set", "rfm.frequency=orders"],
    "unknown tier name in a rule": _group("clv_tier == 'Gold'"),
    "study name ..": ["--set", "study=.."],
    "study name .": ["--set", "study=."],
    "study name with a separator": ["--set", "study=a/b"],
    "salt in params": ["--set", "privacy.salt=abc"],
    "header false without names": ["--set", "inputs.transactions.header=false"],
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_parameters_that_cannot_work_exit_2_at_validate(case, capsys):
    assert main(["validate", str(CDNOW), *INVALID[case]]) == 2, case
    err = capsys.readouterr().err
    assert "Invalid study parameters" in err and "Traceback" not in err


def test_pseudonymising_without_a_key_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CVLIB_PSEUDONYM_KEY", raising=False)
    params = write_study(tmp_path, [{"customer": "a", "date": "2024-01-01", "amount": "5"}], name="nokey",
                         extra={"privacy": {"pseudonymize_ids": True}})
    assert main(["validate", str(params)]) == 2
    assert "no key was found" in capsys.readouterr().err
    monkeypatch.setenv("CVLIB_PSEUDONYM_KEY", "short")
    assert main(["validate", str(params)]) == 2
    assert "at least 16" in capsys.readouterr().err


# --------------------------------------------------------------------------- input data problems: exit 2
def _csv(tmp_path: Path, text: str, name: str, **tx) -> Path:
    (tmp_path / f"{name}.csv").write_text(text, encoding="utf-8")
    params = {"study": name, "client": "c", "inputs": {"transactions": {
        "path": f"{name}.csv", "columns": {"customer_id": "customer", "date": "date", "amount": "amount"}, **tx}}}
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(params), encoding="utf-8")
    return p


@pytest.mark.parametrize("name,text,message", [
    ("headeronly", "customer,date,amount\n", "has a header but no data rows"),
    ("dupheader", "customer,date,amount,amount\na,2024-01-01,5,6\n", "repeats column names ('amount' in columns 3, 4)"),
    ("noamounts", "customer,date,amount\na,2024-01-01,\nb,2024-01-02,\n", "none of the first 2 amounts"),
    ("letters", "customer,date,amount\na,2024-01-01,ten\nb,2024-01-02,five\n", "none of the first 2 amounts"),
])
def test_unusable_files_exit_2_at_validate_naming_the_file(tmp_path, capsys, name, text, message):
    params = _csv(tmp_path, text, name)
    assert main(["validate", str(params)]) == 2
    err = capsys.readouterr().err
    assert message in err and f"{name}.csv" in err and "Traceback" not in err


def test_a_file_without_header_is_read_with_the_given_names(tmp_path):
    params = _csv(tmp_path, "a,2024-01-01,5\nb,2024-01-02,7\n", "nohead", header=False,
                  names=["customer", "date", "amount"])

    raw, _ = reading.read_transactions(load_study(params))
    assert raw["customer_id"].tolist() == ["a", "b"] and raw["amount"].tolist() == ["5", "7"]


def test_source_rows_stay_right_after_a_malformed_line(tmp_path):
    text = "customer,date,amount\na,2024-01-01,5\nb,2024-01-02\nc,2024-01-03,7\nd,2024-01-04,8,extra\ne,2024-01-05,9\n"
    params = _csv(tmp_path, text, "malformed")

    raw, bad = reading.read_transactions(load_study(params))
    assert dict(zip(raw["customer_id"], raw["source_row"])) == {"a": 1, "c": 3, "e": 5}
    assert bad["source_row"].tolist() == [2, 4] and bad["customer_id"].tolist() == ["b", "d"]
    from cvlib.analysis.cleaning import run_cleaning

    res = run_cleaning(load_study(params), tmp_path / "run")
    m = res.quarantine[res.quarantine["rule"] == "malformed_line"]
    assert m["source_row"].tolist() == [2, 4] and "None" not in " ".join(m["reason"])


def test_all_returns_stop_the_run_with_exit_2(tmp_path, capsys):
    params = write_study(tmp_path, [{"customer": "a", "date": "2024-01-01", "amount": "-5"}] * 3, name="allreturns")
    code = main(["run", str(params), "--reports-dir", str(tmp_path / "r"),
                 "--notebooks-dir", str(NB)])
    err = capsys.readouterr().err
    assert code == 2 and "No rows survived cleaning" in err and "tx.csv" in err


# --------------------------------------------------------------------------- 3. privacy that holds
REAL_IDS = ["CUST-4711", "8812345", "ACME_0042", "K-99-Z"]
KEY = "a-secret-key-of-some-length-123456"


def _private_study(tmp_path: Path, all_bad: bool = False) -> Path:
    rows = []
    for i in range(120):
        cid = REAL_IDS[i % len(REAL_IDS)] if i % 5 else f"P{i:04d}X"
        rows.append(f"{cid},2024-{i % 12 + 1:02d}-{i % 27 + 1:02d},{'x' if all_bad else 10 + i % 13}")
    rows.insert(7, "CUST-4711,2024-01-01")  # malformed lines that carry real ids
    rows.insert(30, "8812345,2024-02-02,5,too,many")
    rows.insert(31, "LONELY-777,2024-02-02,5,a,b")  # an id seen only on a malformed line
    (tmp_path / "tx.csv").write_text("customer,date,amount\n" + "\n".join(rows) + "\n", encoding="utf-8")
    params = {"study": "private", "client": "c", "inputs": {"transactions": {
        "path": "../tx.csv", "columns": {"customer_id": "customer", "date": "date", "amount": "amount"}}},
        "privacy": {"pseudonymize_ids": True}, "clv": {"bootstrap": 0, "compare_paretonbd": False},
        "drivers": {"bootstrap": 0}}
    (tmp_path / "params").mkdir(exist_ok=True)
    p = tmp_path / "params" / "private.yaml"
    p.write_text(yaml.safe_dump(params), encoding="utf-8")
    return p


def _leaks(texts: list[str]) -> list[str]:
    ids = REAL_IDS + ["LONELY-777"] + [f"P{i:04d}X" for i in range(0, 120, 5)]
    return [i for i in ids if any(i in t for t in texts)] + (["KEY"] if any(KEY in t for t in texts) else [])


@pytest.mark.slow
def test_no_real_id_or_key_in_any_report_notebook_or_message(tmp_path, monkeypatch):
    monkeypatch.setenv("CVLIB_PSEUDONYM_KEY", KEY)
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "cvlib", "run", str(_private_study(tmp_path)), "--reports-dir",
                           str(reports), "--notebooks-dir", str(NB)], capture_output=True, text=True,
                          env={**os.environ, "CVLIB_PSEUDONYM_KEY": KEY})
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = next(d for d in (reports / "private").iterdir() if d.is_dir() and not d.is_symlink())
    shown = [p.read_text(encoding="utf-8") for p in run.iterdir() if p.suffix in {".html", ".ipynb"}]
    assert len(shown) >= 7
    assert _leaks(shown + [proc.stderr, proc.stdout]) == []
    assert privacy.pseudonym_of("CUST-4711", KEY.encode()) in "".join(shown)  # pseudonyms shown instead
    assert privacy.pseudonym_of("LONELY-777", KEY.encode()) in "".join(shown)
    # exported files keep the real ids; no file holds the key
    assert "CUST-4711" in set(pd.read_parquet(run / "transactions_clean.parquet")["customer_id"])
    everything = [p.read_bytes().decode("utf-8", "replace") for p in run.iterdir() if p.is_file()]
    assert not any(KEY in t for t in everything)


def test_an_all_quarantined_pseudonymised_file_leaks_no_id(tmp_path):
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "cvlib", "run", str(_private_study(tmp_path, all_bad=True)),
                           "--reports-dir", str(reports), "--notebooks-dir", str(NB)], capture_output=True, text=True,
                          env={**os.environ, "CVLIB_PSEUDONYM_KEY": KEY})
    assert proc.returncode == 2 and "No rows survived cleaning" in proc.stderr
    run = next(d for d in (reports / "private").iterdir() if d.is_dir() and not d.is_symlink())
    shown = [p.read_text(encoding="utf-8") for p in run.iterdir() if p.suffix in {".html", ".ipynb", ".json"}
             and p.name != "run.json" or p.name == "index.html"]
    assert _leaks(shown + [proc.stderr, proc.stdout]) == []
    assert not (reports / "private" / "latest").exists()  # a failed run never becomes latest


def test_pseudonyms_are_keyed_hmac_of_64_bits():
    import hashlib
    import hmac

    p = privacy.pseudonym_of("00042", b"k" * 20)
    assert p == "c_" + hmac.new(b"k" * 20, b"00042", hashlib.sha256).hexdigest()[:16]
    assert p != privacy.pseudonym_of("00042", b"j" * 20)
    s = privacy.Scrubber(["CUST 7", "00042", "A-1"], b"k" * 20)
    text = s.scrub("line 3: 00042,2024-01-01,5 for A-1. and CUST 7; not 000420 nor A-12")
    assert "00042," not in text and "A-1." not in text and "CUST 7" not in text
    assert "000420" in text and "A-12" in text


# --------------------------------------------------------------------------- 4. concurrent runs
@pytest.mark.slow
def test_four_concurrent_runs_of_two_studies_all_succeed(tmp_path):
    paths = []
    for name in ("alpha", "beta"):
        d = tmp_path / name
        d.mkdir()
        paths.append(write_study(d, [{"customer": f"c{i % 9}", "date": f"2024-01-{i % 28 + 1:02d}",
                                      "amount": str(5 + i)} for i in range(80)], name=name))
    reports = tmp_path / "reports"
    nb = notebooks_up_to(tmp_path, "rfm")
    procs = [subprocess.Popen([sys.executable, "-m", "cvlib", "run", str(p), "--reports-dir", str(reports),
                               "--notebooks-dir", str(nb)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for p in paths * 2]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [o[1][-1500:] for o in outs]
    for name in ("alpha", "beta"):
        runs = [d for d in (reports / name).iterdir() if d.is_dir() and not d.is_symlink()]
        assert len(runs) == 2
        for r in runs:
            assert json.loads((r / "run.json").read_text())["status"] == "complete"
            assert (r / "02_rfm.html").exists() and len(pd.read_parquet(r / "rfm.parquet")) == 9
    assert not list(nb.glob("kernel-*")) and not list(nb.glob("*.json"))  # no sockets left beside the notebooks


# --------------------------------------------------------------------------- 7. runs that cannot mix
# (reuse only from runs with the same inputs and parameters: tests/test_runs.py)


# --------------------------------------------------------------------------- 8. small data never crashes
@pytest.mark.parametrize("n_customers", [1, 2, 3, 10])
def test_every_stage_finishes_on_tiny_books(tmp_path, n_customers):
    rows = [{"customer": f"k{c}", "date": (pd.Timestamp("2023-01-01") + pd.Timedelta(days=37 * j + 11 * c)).strftime(
        "%Y-%m-%d"), "amount": str(20 + 3 * c + j)} for c in range(n_customers) for j in range(1 + c % 3)]
    params = write_study(tmp_path, rows, name=f"tiny{n_customers}")
    run_dir = tmp_path / "run"
    from cvlib.stages import STAGES

    done = {s.name: run_notebook_inprocess(NB / s.notebook, params_file=str(params), run_dir=str(run_dir),
                                           build_missing=False, overrides={}) for s in STAGES}  # in run order
    ns = done["strategy"]
    from cvlib.analysis.strategy import RULE_COLUMNS

    # the rule language's column list is what the customer table really has
    assert set(ns["result"].customers.columns) - {"customer_id", "group", "objective"} == set(RULE_COLUMNS)
    for f in ("rfm.parquet", "clv.parquet", "value.parquet", "churn_risk.parquet", "targets.csv"):
        assert (run_dir / f).exists(), f
    assert len(pd.read_parquet(run_dir / "clv.parquet")) == n_customers
