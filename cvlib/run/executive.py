"""The executive summary of a complete run (`summary.html`): the headline figures, the findings with their
numbers, the CLV the study recommends, the recommended plan with its interval, and what to do next, on one
page in the study's language. Its tables and sentences are also the deck's (`cvlib.run.export`)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from cvlib import fonts, i18n, io, report
from cvlib.analysis.variants import recommendation
from cvlib.run import summary
from cvlib.run.pages import render
from cvlib.stages import SUMMARY_PAGE, html_of


def next_steps() -> list[str]:
    """What the client does with the study, in order."""
    return [i18n.t(f"deck.next_{i}") for i in range(1, 5)]


def plan_table(run_dir: Path, currency: str) -> pd.DataFrame | None:
    """The plan's allocation per group and action with its totals and ROI interval."""
    st = summary._json(run_dir, "strategy.json")
    if not st:
        return None
    m = lambda v: i18n.money(v, currency, decimals=0)  # noqa: E731
    rows = [[i18n.name(a["group"]), i18n.name(a["action"]), f"{a['customers_targeted']:,}", m(a["cost"]),
             m(a["expected_incremental_value"])] for a in st["allocation"] if a["customers_targeted"]]
    rows.append([i18n.t("deck.total"), "", f"{sum(a['customers_targeted'] for a in st['allocation']):,}",
                 m(st["total_cost"]), m(st["expected_incremental_value"])])
    return pd.DataFrame(rows, columns=[i18n.label("group"), i18n.label("action"), i18n.label("customers"),
                                       i18n.t("deck.cost"), i18n.t("deck.expected_value")])


def plan_sentence(run_dir: Path, currency: str) -> str:
    """The plan's net value and ROI with their interval, as the strategy report states them."""
    st = summary._json(run_dir, "strategy.json")
    if not st:
        return ""
    iv = st.get("interval") or {}
    m = lambda v: i18n.money(v, currency, decimals=0)  # noqa: E731
    if iv and iv.get("net_low") != iv.get("net_high"):
        return i18n.t("deck.plan_interval", net=m(st["net_value"]), low=m(iv["net_low"]), high=m(iv["net_high"]),
                      roi=i18n.pct(iv["roi"], 0))
    return i18n.t("deck.plan_point", net=m(st["net_value"]), roi=i18n.pct(iv.get("roi", 0.0), 0),
                  even=m(st["even_split_net_value"]))


def target_table(run_dir: Path) -> pd.DataFrame | None:
    """The size of each target list: customers per group and action."""
    p = run_dir / "targets.csv"
    if not p.is_file():
        return None
    t = pd.read_csv(p, dtype=str, encoding="utf-8-sig")
    if t.empty:
        return None
    g = t.groupby(["group", "action"], sort=False).size().reset_index(name="n").sort_values("n", ascending=False)
    return pd.DataFrame({i18n.label("group"): [i18n.name(v) for v in g["group"]],
                         i18n.label("action"): [i18n.name(v) for v in g["action"]],
                         i18n.label("customers"): [f"{n:,}" for n in g["n"]]})


def clv_sentence(run_dir: Path, currency: str) -> str:
    """The CLV the study uses and why, as the CLV report says it (`variants.recommendation`), as an HTML
    paragraph ('' without CLV)."""
    m, clv = summary._json(run_dir, "clv_model.json"), io.read_stage(run_dir, "clv.parquet", optional=True)
    if not m or clv is None:
        return ""
    hold = m.get("holdout") or {}
    key, fields = recommendation(m["used_for_customer_clv"], m.get("formula_fallback") or "",
                                 hold.get("beat_naive_baseline") if hold else None, clv["clv"], currency,
                                 m["assumptions"]["horizon_months"])
    return report.say(key, **fields).data


def _rows(df: pd.DataFrame | None) -> dict | None:
    return None if df is None else {"columns": list(df.columns), "rows": df.astype(str).values.tolist()}


def write_summary(run_dir: Path, study: str, client: str, currency: str,
                  scrub: Callable[[str], str] = lambda t: t) -> Path:
    """The run's executive summary page, in the study's language, pseudonymised by `scrub` like every page."""
    with i18n.speaking(summary.run_language(run_dir)):
        head = summary.headline(run_dir, currency)
        rendered = {p.name for p in run_dir.glob("*.html")}
        page = render("summary.html.j2", study=study, client=client, headline=head,
                      findings=[{"text": t, "link": link if link.split("#")[0] in rendered else ""}
                                for t, link in summary.findings(run_dir, currency)],
                      clv=clv_sentence(run_dir, currency), plan=plan_sentence(run_dir, currency),
                      plan_table=_rows(plan_table(run_dir, currency)), targets=_rows(target_table(run_dir)),
                      steps=next_steps(), strategy=html_of("strategy"))
    return fonts.write_page(scrub(page), run_dir / SUMMARY_PAGE)
