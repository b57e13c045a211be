"""The report language: the catalogues agree with each other and with the notebooks, formats per language,
Chinese in figures without box glyphs or warnings, warnings kept out of reports."""
from __future__ import annotations

import ast
import io as bytes_io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvlib import i18n, theme

ROOT = Path(__file__).resolve().parent.parent
KEY = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")


@pytest.fixture(autouse=True)
def english_after():
    yield
    i18n.use("en")


def flat(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def test_catalogues_have_the_same_messages_with_the_same_fields():
    en, zh = i18n.catalogue("en"), i18n.catalogue("zh")
    for section in ("text", "labels", "notebooks"):
        a, b = flat(en[section]), flat(zh[section])
        assert set(a) == set(b), (section, set(a) ^ set(b))
        for k in a:
            assert i18n.fields(a[k]) == i18n.fields(b[k]), (section, k)
    assert set(en["names"]) <= set(zh["names"])
    for v in flat(zh["text"]).values():  # every Chinese message has Chinese in it, or is only a number format
        bare = re.sub(r"\{\w+\}", "", v)
        assert re.search(r"[\u4e00-\u9fff]", bare) or not re.search(r"[a-z]{4,}", bare), v


def test_notebook_markdown_is_the_english_catalogue_and_every_key_used_exists():
    """JupyterLab shows the notebooks' own markdown: it must be the English catalogue's text (the runner puts
    the report language's text in its place). Every message key a notebook or a module names must exist."""
    used: set[str] = set()
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "markdown":
                key = cell["metadata"].get("cvlib_text")
                assert key, (nb_path.name, src[:40])
                assert src.rstrip("\n") == i18n.notebook_text(nb_path.stem, key, "en").rstrip("\n"), (nb_path.name, key)
            else:
                used |= {n.value for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Constant)
                         and isinstance(n.value, str) and KEY.match(n.value)}
    for py in (ROOT / "cvlib").glob("*.py"):
        tree = ast.parse(py.read_text(encoding="utf-8"))
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", "")) in ("t", "T", "text") \
                    and n.args and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str) \
                    and KEY.match(n.args[0].value):
                used.add(n.args[0].value)
    missing = sorted(k for k in used if not i18n.has(k, "en") and not k.startswith(("params.", "example.")))
    assert not [k for k in missing if "." in k and not k.endswith((".yaml", ".parquet", ".csv", ".json", ".html"))], missing


def test_formats_per_language():
    i18n.use("en")
    assert i18n.money(1234.5, "USD") == "1,234 USD" and i18n.money(12.345, "USD") == "12.35 USD"
    assert i18n.date("2024-05-01") == "2024-05-01"
    i18n.use("zh")
    assert i18n.money(1234.5, "CNY", decimals=2) == "¥1,234.50"
    assert i18n.money(12.5, "CNY") == "¥12.50"
    assert i18n.money(456_000, "CNY") == "¥45.60万"
    assert i18n.money(123_456_789, "CNY") == "¥1.23亿"
    assert i18n.money(-45_600, "CNY") == "-¥4.56万"
    assert i18n.money(20_000, "CHF") == "2.00万 CHF"  # no common symbol: the code
    assert i18n.date("2024-05-01") == "2024年5月1日" and i18n.month("2024-05-01") == "2024年5月"
    assert i18n.word(True) == "是" and i18n.label("churn_probability") == "流失概率"
    assert i18n.name("Champions") == "冠军客户" and i18n.name("我的细分") == "我的细分"  # names in params as written
    assert i18n.name("recent · frequent · high spend") == "近期活跃 · 高频 · 高消费"


def test_tables_use_labels_words_and_the_report_language():
    from cvlib import report
    from cvlib.params import load_study

    study = load_study(ROOT / "params" / "cdnow_zh.yaml")
    report.setup(study)
    df = pd.DataFrame({"customer_id": ["a"], "churn_probability": [0.25], "within_cycle": [True],
                       "revenue": [1234.5]})
    html = report.table(df, study, money=["revenue"], pct=["churn_probability"], caption="clv.fits_table").data
    assert "流失概率" in html and "是" in html and "True" not in html and "(¥)" in html
    assert "表 1" in html and "已拟合的模型" in html and "churn_probability" not in html
    assert "表 2" in report.table(df, study, caption="x").data  # numbered in order


def render(title: str, fonts: list[str] | None = None) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image


    theme.use_theme()
    if fonts:
        plt.rcParams["font.family"] = fonts
    fig, ax = plt.subplots(figsize=(4, 1))
    ax.set_axis_off()
    ax.text(0.02, 0.5, title, fontsize=20, va="center")
    buf = bytes_io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return np.asarray(Image.open(buf).convert("L"), dtype=float)


def test_chinese_in_figures_draws_real_glyphs_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph warns: here it fails
        cjk = render("客户价值")

    noto = crop(render("客户价值", [theme.cjk_font()]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boxes = crop(render("客户价值", ["DejaVu Sans"]))  # DejaVu has no CJK: four box glyphs
    cjk = crop(cjk)
    assert cjk.shape == noto.shape != boxes.shape  # the theme draws Noto Sans CJK's glyphs, not boxes
    assert np.corrcoef(cjk.ravel(), noto.ravel())[0, 1] > 0.9  # the same strokes (up to sub-pixel placement)


def crop(a: np.ndarray) -> np.ndarray:
    """The inked part of a rendering."""
    ink = a < 200
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def test_warnings_go_to_the_run_log_not_the_report(tmp_path):
    import logging

    from cvlib import report

    with warnings.catch_warnings():  # pytest records warnings itself: let them reach the handler here
        warnings.simplefilter("always")
        report.setup(None, tmp_path)
        warnings.warn("something odd", UserWarning)
        logging.getLogger("lifelines.fitters").warning("a library log message")
    log = (tmp_path / report.WARNINGS_LOG).read_text(encoding="utf-8")
    assert "something odd" in log and "a library log message" in log
    report.capture_warnings(None)


def test_cluster_rules_read_as_sentences():
    from sklearn.tree import DecisionTreeClassifier

    from cvlib.analysis import rfm

    X = pd.DataFrame({"recency": [10, 20, 300, 320, 15, 310], "frequency": [5, 6, 1, 2, 7, 1],
                      "monetary": [100.0, 120, 10, 12, 130, 9]})
    y = np.array([1, 1, 0, 0, 1, 0])
    tree = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, y)
    rules = rfm.tree_leaf_rules(tree, list(X.columns), pd.Series({0: "lapsed · rare", 1: "recent · frequent"}))
    text = rfm.rule_sentences(rules, "USD")
    assert len(text) == 2 and all("Cluster" in s for s in text)
    assert any("at most" in s for s in text) and any("over" in s or "more than" in s for s in text)
    assert not any("<=" in s or "|---" in s for s in text)
    i18n.use("zh")
    assert all("聚类" in s for s in rfm.rule_sentences(rules, "CNY"))


def test_unobserved_cohort_months_are_blank_not_zero():
    from cvlib.analysis.loyalty import cohort_matrix

    tx = pd.DataFrame({"customer_id": ["a", "a", "b", "c"],
                       "date": pd.to_datetime(["2024-01-05", "2024-03-01", "2024-02-10", "2024-03-20"]),
                       "amount": [1.0, 1.0, 1.0, 1.0]})
    m = cohort_matrix(tx)
    assert m.loc["2024-01", 2] == 1.0 and m.loc["2024-01", 1] == 0.0  # observed: a did not buy in February
    assert np.isnan(m.loc["2024-02", 2]) and np.isnan(m.loc["2024-03", 1])  # after the data's last month


def test_exports_are_rounded_with_english_names_and_the_workbook_in_the_report_language(tmp_path):
    from cvlib.analysis import strategy

    i18n.use("zh")
    t = pd.DataFrame({"customer_id": ["007"], "group": ["g"], "action": ["a"], "clv": [12.3456789],
                      "churn_probability": [0.123456789], "expected_gain": [1.005], "cost": [0.3], "reason": ["r"]})
    csv, xlsx = strategy.write_targets(t, tmp_path)
    back = pd.read_csv(csv, dtype={"customer_id": str})
    assert list(back.columns) == list(t.columns)  # stable identifiers
    assert back["clv"].iloc[0] == 12.35 and back["churn_probability"].iloc[0] == 0.1235
    sheet = pd.read_excel(xlsx, dtype=str)
    assert list(sheet.columns)[:3] == ["客户编号", "群组", "行动"]


def test_a_group_has_one_colour_whatever_else_is_in_the_figure():

    a = theme.group_colours(["Champions", "Lost", "my own group"])
    b = theme.group_colours(["my own group", "At Risk", "Champions"])
    assert a["Champions"] == b["Champions"] and a["my own group"] == b["my own group"]
    assert len(set(theme.group_colours(theme.FIXED_COLOURS[:11]).values())) == 11  # default segments all differ


def test_client_rendering_leaves_out_consultant_notes_empty_sections_and_parameter_keys(tmp_path):
    from bs4 import BeautifulSoup

    from cvlib.run.runner import run_study
    from tests.conftest import small_book

    params = small_book(tmp_path, name="voice", extra={"report": {"language": "zh"}})
    run_study(params, reports_dir=tmp_path / "c")
    again = run_study(params, reports_dir=tmp_path / "c", client=True)  # --client runs nothing again
    assert {s.status for s in again.stages} <= {"reused", "not_applicable"}
    consultant = again.run_dir
    client = consultant / "client"  # both renderings of one run
    key = re.compile(r"\b(inputs|cleaning|rfm|clv|value|drivers|strategy|report|privacy)\.[a-z_]+\b")

    def text(run: Path, page: str) -> str:
        soup = BeautifulSoup((run / page).read_text(encoding="utf-8"), "html.parser")
        for s in soup(["script", "style"]):
            s.decompose()
        return soup.get_text(" ")

    clv_c, clv_k = text(consultant, "03_clv.html"), text(client, "03_clv.html")
    assert "顾问备注" in clv_c and "合约" in clv_c  # the consultant sees why there is no contract section
    assert "顾问备注" not in clv_k and "## 合约" not in clv_k and "移位贝塔几何模型根据续约" not in clv_k
    for page in [p.name for p in client.glob("*.html")]:
        html = (client / page).read_text(encoding="utf-8")
        assert "cvlib-consultant" not in html, page
        assert not key.findall(text(client, page)), (page, key.findall(text(client, page))[:3])
    assert "使用的参数" in text(consultant, "index.html") and "使用的参数" not in text(client, "index.html")
    for page in ("index.html", "02_rfm.html"):  # run ids, stage times and reuse banners: the consultant's
        assert consultant.name in text(consultant, page) and consultant.name not in text(client, page), page
    assert "cvlib-reused" in (consultant / "02_rfm.html").read_text(encoding="utf-8")
    nav = BeautifulSoup((client / "02_rfm.html").read_text(encoding="utf-8"), "html.parser").select_one("nav.cvlib-nav")
    assert [a["href"] for a in nav.find_all("a")] == ["index.html", "01_cleaning.html", "03_clv.html"]
    english = run_study(small_book(tmp_path, name="voice_en"), reports_dir=tmp_path / "e", client=True).run_dir / "client"
    for page in [p.name for p in english.glob("*.html")]:
        assert not key.findall(text(english, page)), (page, key.findall(text(english, page))[:3])
        assert "For the consultant" not in text(english, page) and "True" not in text(english, page), page


def test_a_stage_speaks_its_studys_language_and_leaves_the_callers_as_it_was(tmp_path):
    """No module-level language: a stage words its notes in its own study's language whatever the caller was
    speaking, and the caller's language is unchanged afterwards (also when the stage fails)."""
    from cvlib.analysis import cleaning, rfm
    from cvlib.errors import InputDataError
    from cvlib.params import load_study
    from tests.conftest import ROOT

    zh, en = load_study(ROOT / "params" / "cdnow_zh.yaml"), load_study(ROOT / "params" / "cdnow_sample.yaml")
    (tmp_path / "zh").mkdir()
    (tmp_path / "en").mkdir()
    with i18n.speaking("en"):
        notes = cleaning.run_cleaning(zh, tmp_path / "zh").notes
        assert i18n.current() == "en"
    assert notes and all(re.search(r"[\u4e00-\u9fff]", n) for n in notes)
    with i18n.speaking("zh"):
        notes = cleaning.run_cleaning(en, tmp_path / "en").notes
        assert i18n.current() == "zh"
        with pytest.raises(InputDataError, match="transactions_clean.parquet"):
            rfm.run_rfm(en, tmp_path / "nothing")  # no cleaning output there
        assert i18n.current() == "zh"
    assert notes and not any(re.search(r"[\u4e00-\u9fff]", n) for n in notes)


def test_chinese_phrasing_names_a_segment_once_and_words_the_baseline():
    with i18n.speaking("zh"):
        sentence = i18n.t("summary.f_segment_value", seg=i18n.name("Loyal"), h=12, share="26%")
        assert "客户客户" not in sentence and "”客户" not in sentence and sentence.startswith(i18n.name("Loyal"))
        for value in ("naive baseline", "actual repeat purchases", "predicted (bgnbd)"):
            assert not re.search(r"[a-z]{3,}", i18n.name(value)), value  # acronyms (BG/NBD) aside
        assert i18n.name("predicted (bgnbd)") == "预测（BG/NBD 模型）"  # the model's key worded too
        assert "朴素" not in json.dumps(i18n.catalogue("zh"), ensure_ascii=False)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False))
def test_report_numbers_are_never_in_scientific_notation(v):
    from cvlib import report

    for kind in ("auto", "num"):
        text = report._fmt(v, kind, "")
        assert "e" not in text.lower() and "E" not in text, (v, text)
        if abs(v) >= 5e-7:
            assert abs(float(text.replace(",", "")) - v) <= max(abs(v) * 0.01, 0.5 if abs(v) >= 100 else 0), (v, text)


# proper names, model and method names, file kinds and mathematical symbols a Chinese business report keeps in Latin
# script; acronyms (two or more capitals) and single letters (model parameters such as r, α, x) are allowed too
LATIN_ALLOWED = {"Gamma-Gamma", "Gamma", "Beta", "Pareto", "Johnson", "Fader", "Hardie", "Lee", "Hessian",
                 "Spearman", "Shapley", "Kaplan-Meier", "Excel", "t_x", "max", "xlsx", "csv"}
LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z_\-']*[A-Za-z]")


def latin_words(html_text: str, allowed: set[str]) -> set[str]:
    """The Latin-script words of a page's visible text that are not numbers, units, acronyms, file names, allowed names or
    the study's own values."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html_text, "html.parser")
    for t in soup(["script", "style"]):
        t.decompose()
    text = re.sub(r"[\w\-]+\.(?:csv|xlsx|html|pdf|pptx|parquet|json|yaml)\b", " ", soup.get_text(" "))  # file names
    words = set(LATIN_WORD.findall(text))
    return {w for w in words if w not in allowed and not re.fullmatch(r"[A-Z][A-Z0-9/\-]+", w)}


@pytest.mark.slow
def test_chinese_client_pages_have_no_english_words(example_run):
    """Every page of the Chinese study's client rendering speaks Chinese: a Latin-script word is a number, a unit,
    an acronym (CLV, RFM), a proper name (Pareto, Spearman), the study's own name or a value of the data."""
    from cvlib.run import pages

    run = example_run("cdnow_zh").run_dir
    client = pages.write_client_rendering(run).parent
    allowed = LATIN_ALLOWED | {"cdnow_zh", "CDNOW", "zh"}
    found = {p.name: sorted(w) for p in sorted(client.glob("*.html"))
             if (w := latin_words(p.read_text(encoding="utf-8"), allowed))}
    assert not found, found


def test_the_latin_word_check_finds_english_left_in_a_page():
    page = "<p>客户数 23,570；CLV 与 RFM；Pareto/NBD 模型 r = 0.24</p><p>predicted (bgnbd)</p>"
    assert latin_words(page, LATIN_ALLOWED) == {"predicted", "bgnbd"}
    assert latin_words("<p>目标名单（targets.csv、targets.xlsx）见 summary.html；targets 名单</p>", LATIN_ALLOWED) == {"targets"}


def test_the_compare_page_speaks_the_studys_language(tmp_path):
    from cvlib.run import history, pages

    with i18n.speaking("zh"):  # as `cvlib compare` builds it: in the study's language
        c = history.Comparison(study="s", currency="CNY", run_a="20260101-000000", run_b="20260102-000000",
                               params=[("clv.margin", 0.3, 0.35)],
                               figures=[{"key": "customers", "label": i18n.t("summary.customers"), "kind": "count",
                                         "a": 10, "b": 12, "difference": 2}],
                               stages=[("cleaning", "reused", "ok")])
        html_text = pages.write_compare(c, tmp_path / "c.html").read_text(encoding="utf-8")
    text = re.sub(r"<code>.*?</code>", "", html_text)  # parameter keys are shown as written
    assert latin_words(text, LATIN_ALLOWED) == set(), latin_words(text, LATIN_ALLOWED)
    assert "研究 s：运行 20260101-000000 与运行 20260102-000000 的比较" in html_text


def test_why_a_stage_ran_is_worded_in_the_report_language():
    from cvlib.run import reuse
    from cvlib.run.pages import reason_text

    new = {"notebook": "n2", "cvlib": "c2", "context": "x2", "params": {"clv": 1}, "files": {"tx.csv": "b"},
           "tables": {"sales": "t2"}}
    old = {"notebook": "n1", "cvlib": "c1", "context": "x1", "params": {"clv": 0}, "files": {"tx.csv": "a"},
           "tables": {"sales": "t1"}}
    reasons = [reuse.explain_change(new, None), reuse.explain_change(new, old), reuse.explain_change(new, new),
               "reused from run 20260101-000000", "forced (--force)", "named in --stages",
               "no campaigns table (inputs.campaigns)"]
    with i18n.speaking("zh"):
        worded = [reason_text(r) for r in reasons]
    leftover = {w for r in worded for w in latin_words(f"<p>{r}</p>", LATIN_ALLOWED)}
    assert leftover <= {"cvlib", "clv", "tx", "sales", "campaigns", "inputs", "force", "stages"}, worded
    assert reason_text(reasons[0]) == "no earlier run"  # English stays as recorded


def test_a_column_in_days_shows_whole_days():
    from cvlib import report

    html_text = report.table(pd.DataFrame({"median_cycle": [3.991, 29.62], "share": [0.5, 0.25]}),
                             units={"median_cycle": "days"}, pct=["share"]).data
    assert ">4<" in html_text and ">30<" in html_text and "3.991" not in html_text and ">50.0%<" in html_text
