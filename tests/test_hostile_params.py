"""Hostile inputs, second pass (issue #29): ids with HTML-special characters never leak when pseudonymised, a
parameter file cannot exhaust the machine (alias bombs, rule payloads), missing values never make a rule true,
and odd values give a clear exit-2 message instead of a traceback."""
from __future__ import annotations

import html
import json
import shutil
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cvlib import expr, privacy, reading
from cvlib.cli import main
from tests.conftest import ROOT

KEY = "another-secret-key-for-these-tests-42"
ODD_IDS = ["A&B Ltd", "<script>x</script>", "O'Brien", 'say "hi"', "José Müller", "Ünïcode-7", "P&G's <b>"]
TEST_ID = "TEST'n&RUN"


def spellings(i: str) -> set[str]:
    return {i, html.escape(i), html.escape(i, quote=False), i.replace("'", "&#39;"), i.replace("'", "&#x27;"),
            i.replace("&", "&amp;")}


def leaks(texts: list[str], ids: list[str]) -> list[str]:
    return [f"{i!r} as {s!r}" for i in ids for s in spellings(i) for t in texts if s in t]


def private_study(tmp_path: Path) -> Path:
    rows = []
    for k in range(90):
        cid = ODD_IDS[k % len(ODD_IDS)]
        amount = "not a number" if k % 9 == 0 else f"{10 + k % 13}"  # quarantined rows carry the ids too
        rows.append({"customer": cid, "date": f"2024-{k % 12 + 1:02d}-{k % 27 + 1:02d}", "amount": amount})
    rows.append({"customer": TEST_ID, "date": "2024-03-03", "amount": "1"})
    pd.DataFrame(rows).to_csv(tmp_path / "tx.csv", index=False)
    params = {"study": "odd", "client": "c", "inputs": {"transactions": {
        "path": "../tx.csv", "columns": {"customer_id": "customer", "date": "date", "amount": "amount"}}},
        "privacy": {"pseudonymize_ids": True}, "cleaning": {"test_ids": {"enabled": True, "ids": [TEST_ID]}}}
    (tmp_path / "params").mkdir(exist_ok=True)
    (tmp_path / "params" / "odd.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return tmp_path / "params" / "odd.yaml"


def test_ids_with_html_special_characters_never_leak_in_any_page_message_comparison_or_zip(tmp_path, monkeypatch,
                                                                                          capsys):
    monkeypatch.setenv("CVLIB_PSEUDONYM_KEY", KEY)
    params = private_study(tmp_path)
    nb = tmp_path / "nb"
    nb.mkdir()
    shutil.copy(ROOT / "notebooks" / "01_cleaning.ipynb", nb)
    reports = tmp_path / "r"
    for extra in ([], ["--set", "cleaning.outliers.threshold=3.5"]):
        assert main(["run", str(params), "--reports-dir", str(reports), "--notebooks-dir", str(nb), *extra]) == 0
    assert main(["compare", "odd", "--reports-dir", str(reports), "--out", str(tmp_path / "cmp.html")]) == 0
    assert main(["package", "odd", "--reports-dir", str(reports), "--out", str(tmp_path / "client.zip")]) == 0
    out = capsys.readouterr()
    shown = [out.out, out.err, (tmp_path / "cmp.html").read_text(encoding="utf-8")]
    for run in (d for d in (reports / "odd").iterdir() if d.is_dir() and not d.is_symlink()):
        shown += [p.read_text(encoding="utf-8") for p in run.iterdir() if p.suffix in {".html", ".ipynb"}]
    with zipfile.ZipFile(tmp_path / "client.zip") as z:
        shown += [z.read(n).decode("utf-8") for n in z.namelist() if n.endswith(".html")]
    assert leaks(shown, ODD_IDS + [TEST_ID]) == []
    page = "".join(shown)
    assert privacy.pseudonym_of("O'Brien", KEY.encode()) in page  # the quarantine table shows pseudonyms
    assert privacy.pseudonym_of(TEST_ID, KEY.encode()) in page  # the id written in the params, too


def test_a_mapping_error_on_a_file_without_header_shows_no_data(tmp_path, capsys):
    (tmp_path / "noheader.csv").write_text("00042,19970101,29.33\n00043,19970102,11.50\n", encoding="utf-8")
    params = {"study": "nh", "client": "c", "inputs": {"transactions": {
        "path": "noheader.csv", "columns": {"customer_id": "customer", "date": "date", "amount": "amount"}}}}
    p = tmp_path / "nh.yaml"
    p.write_text(yaml.safe_dump(params), encoding="utf-8")
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert "no header row" in err and "header: false" in err and "00042" not in err


# --------------------------------------------------------------------------- the parameter file as input
BOMB = "\n".join([f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdefgh", "bcdefghi")])


@pytest.mark.parametrize("text", [
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + BOMB + "\nstudy: *i\nclient: x\n",
    'a: &a [1,2,3]\n' + "\n".join(f"k{i}: [*a, *a, *a]" for i in range(10)) + "\nstudy: x\n",  # many, flat
])
def test_an_alias_bomb_is_refused_in_a_second(tmp_path, capsys, text):
    p = tmp_path / "bomb.yaml"
    p.write_text(text)
    t0 = time.perf_counter()
    assert main(["validate", str(p)]) == 2
    assert time.perf_counter() - t0 < 5
    err = capsys.readouterr().err
    assert "aliases" in err and len(err) < 1000


def test_a_huge_bad_value_is_cut_in_the_message(tmp_path, capsys):
    p = tmp_path / "big.yaml"
    p.write_text(yaml.safe_dump({"study": "x", "client": "c", "currency": ["EUR"] * 100_000}))
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert "currency" in err and len(err) < 3000


@pytest.mark.parametrize("payload,start", [
    ("'x' * 2000000000 == segment", "text cannot take part in arithmetic"),
    ("segment == ('x' * 100000) * 100000", "text cannot take part in arithmetic"),
    ("clv / 0 > 1", "division by zero"),
    ("clv > 5 // (3 - 3)", "division by zero"),
    ("clv > 99999999999999999999999", "constant"),
    ("clv > 1e308 * 10", "constant"),
    ("clv > 10000000000 * 10000000000", "a number beyond"),
    ("-" * 200 + "1 < clv", "nested more than"),
    ("(" * 300 + "clv" + ")" * 300 + " > 1", "nested"),
    ("segment * 1000000000 == 'x'", "does arithmetic on segment"),
    ("frequency in [" + ",".join(["1"] * 300) + "]", "a list of more than"),
    ("segment == '" + "x" * 500 + "'", "constant"),
])
def test_rule_payloads_are_refused_at_validate_with_exit_2(tmp_path, capsys, payload, start):
    params = yaml.safe_load((ROOT / "params" / "cdnow.yaml").read_text())
    params["strategy"]["groups"][0]["when"] = payload
    p = tmp_path / "rule.yaml"
    p.write_text(yaml.safe_dump(params), encoding="utf-8")
    t0 = time.perf_counter()
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert start in err and "strategy.groups.0.when" in err and "Traceback" not in err, err[:500]
    assert time.perf_counter() - t0 < 10


def test_missing_values_never_make_a_rule_true():
    df = pd.DataFrame({"p": [0.9, None, 0.1], "rule": ["a -> b", None, ""], "ok": pd.array([True, None, False])})
    cases = {"rule != ''": [True, False, False], "not rule == ''": [True, False, False],
             "rule not in ['x']": [True, False, True], "not (p > 0.5)": [False, False, True],
             "p > 0.5 or rule == ''": [True, False, True], "not ok": [False, False, True],
             "ok or p < 0.5": [True, False, True], "ok and p > 0.5": [True, False, False]}
    for rule, want in cases.items():
        assert expr.evaluate(rule, df).tolist() == want, rule


def test_odd_values_in_parameters_give_a_clear_message_not_a_traceback(tmp_path, capsys, monkeypatch):
    good = yaml.safe_load((ROOT / "params" / "cdnow.yaml").read_text())
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(good))
    for args, start in (([str(p), "--set", "cleaning.window.start=2024-02-30"], "cleaning.window.start"),
                        ([str(p), "--set", "rfm.n_bins=" + "5" * 5000], "rfm.n_bins"),
                        ([str(p) + "\x00x"], "NUL")):
        assert main(["validate", *args]) == 2
        err = capsys.readouterr().err
        assert start in err and "Traceback" not in err, err[:300]
    for text, where in (("study: x\nclient: y\nrfm: {end_date: 2024-02-30}\n", "line 3, column"),
                        ("study: x\nclient: y\nrfm: {n_bins: " + "5" * 5000 + "}\n", "line 3, column")):
        p.write_text(text)
        assert main(["validate", str(p)]) == 2
        err = capsys.readouterr().err
        assert where in err and len(err) < 1500
    bad_path = dict(good, inputs={**good["inputs"], "transactions": {**good["inputs"]["transactions"],
                                                                      "path": "data\x00.csv"}})
    p.write_text(yaml.safe_dump(bad_path))
    assert main(["validate", str(p)]) == 2 and "NUL" in capsys.readouterr().err
    # a binary key file
    (tmp_path / "key.bin").write_bytes(bytes(range(256)))
    keyed = dict(good, privacy={"pseudonymize_ids": True, "key_file": "key.bin"})
    p.write_text(yaml.safe_dump(keyed))
    monkeypatch.delenv("CVLIB_PSEUDONYM_KEY", raising=False)
    assert main(["validate", str(p)]) == 2 and "is not text" in capsys.readouterr().err


def test_scrubber_finds_every_spelling_of_an_id():
    s = privacy.Scrubber(ODD_IDS, KEY.encode())
    for i in ODD_IDS:
        for t in spellings(i):
            out = s.scrub(f"<td>{t}</td>, {t}.")
            assert privacy.pseudonym_of(i, KEY.encode()) in out and leaks([out], [i]) == [], (i, t, out)
    assert s.scrub("a&b ltd, o'brien") == "a&b ltd, o'brien"  # another case is another id
    assert json.dumps(s.scrub("plain text")) == '"plain text"'


def test_a_file_in_another_encoding_or_with_a_title_row_is_named_as_such(tmp_path, capsys):
    df = pd.DataFrame({"客户编号": ["A1", "A2"], "日期": ["2024-01-01", "2024-01-02"], "金额": ["10", "20"]})
    df.to_csv(tmp_path / "gbk.csv", index=False, encoding="gbk")
    with pd.ExcelWriter(tmp_path / "title.xlsx") as w:
        pd.DataFrame([["Sales report 2024", None, None], ["customer", "date", "amount"],
                      ["A1", "2024-01-01", "10"]]).to_excel(w, index=False, header=False)
    for file, cols, want in (("gbk.csv", ["客户编号", "日期", "金额"], "encoding"),
                             ("title.xlsx", ["customer", "date", "amount"], "title or a note above the table")):
        params = {"study": "x", "client": "c", "inputs": {"transactions": {
            "path": file, "columns": dict(zip(["customer_id", "date", "amount"], cols))}}}
        p = tmp_path / "p.yaml"
        p.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
        assert main(["validate", str(p)]) == 2
        err = capsys.readouterr().err
        assert want in err and "repeats column names" not in err, err


def test_a_line_with_an_unbalanced_quote_is_set_aside_with_its_number_and_the_rest_is_read(tmp_path, capsys):
    from cvlib.analysis import cleaning
    from cvlib.params import load_study

    text = "customer,date,amount\nA1,2024-01-01,10\nA2,2024-01-02,\"11\nA3,2024-01-03,12\nA4,2024-01-04,13\n"
    (tmp_path / "q.csv").write_text(text)
    params = {"study": "q", "client": "c", "inputs": {"transactions": {
        "path": "q.csv", "columns": {"customer_id": "customer", "date": "date", "amount": "amount"}}}}
    p = tmp_path / "q.yaml"
    p.write_text(yaml.safe_dump(params))
    cleaning.run_cleaning(load_study(p), tmp_path / "run")
    kept = pd.read_parquet(tmp_path / "run" / "transactions_clean.parquet")
    q = pd.read_csv(tmp_path / "run" / "quarantine.csv", dtype=str)
    assert sorted(kept["customer_id"]) == ["A1", "A3", "A4"]  # before, A3 and A4 vanished into A2's amount
    assert len(q) == 1 and q["source_row"].tolist() == ["2"]
    summary = json.loads((tmp_path / "run" / "cleaning.json").read_text())["summary"]
    assert summary["rows_in"] == 4 and summary["balanced"]
    params["inputs"]["transactions"]["bad_lines"] = "refuse"
    p.write_text(yaml.safe_dump(params))
    from cvlib.errors import InputDataError

    with pytest.raises(InputDataError, match="line 3"):
        reading.read_transactions(load_study(p))


def test_a_20_mb_line_is_read_and_its_value_quarantined_without_flooding_messages_or_reports(tmp_path, capsys):
    from cvlib import report
    from cvlib.params import load_study

    with open(tmp_path / "big.csv", "w") as fh:
        fh.write("customer,date,amount\nA1,2024-01-01,10\nA2,2024-01-02,")
        fh.write("9" * 20_000_000 + "x\nA3,2024-01-03,12\n")  # longer than a parse block (16 MB)
    params = {"study": "big", "client": "c", "inputs": {"transactions": {
        "path": "big.csv", "columns": {"customer_id": "customer", "date": "date", "amount": "amount"}}}}
    p = tmp_path / "big.yaml"
    p.write_text(yaml.safe_dump(params))
    assert main(["validate", str(p)]) == 0
    out = capsys.readouterr()
    assert len(out.out) + len(out.err) < 5000
    from cvlib.analysis import cleaning

    cleaning.run_cleaning(load_study(p), tmp_path / "run")
    q = pd.read_csv(tmp_path / "run" / "quarantine.csv", dtype=str)
    assert len(q) == 1 and len(pd.read_parquet(tmp_path / "run" / "transactions_clean.parquet")) == 2
    shown = report.table(q, None).data
    assert len(shown) < 10_000 and "characters" in shown


def test_missing_values_that_became_text_are_shown_as_missing_not_nan():
    from cvlib import report

    shown = report.table(pd.DataFrame({"reason": ["nan", None, "price", "<NA>"], "n": [1, 2, 3, 4]}), None).data
    assert ">nan<" not in shown and ">&lt;NA&gt;<" not in shown and shown.count(">–<") == 3
