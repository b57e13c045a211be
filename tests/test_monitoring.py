"""KPI monitoring: status against targets by hand, the trend over a study's runs, refused KPI names."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cvlib.params import Kpi, Monitoring
from cvlib.run import monitoring


def fake_run(root: Path, name: str, churn: float, nps: float) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "drivers.json").write_text(json.dumps({"rates": [{"churn_rate": churn}], "nps": nps}))
    return d


def test_status_against_target_and_benchmark_by_hand():
    now = {"retention_rate": (0.62, "share", "retention rate"), "top20_share": (0.7, "share", "top 20%"),
           "nps": (28.0, "points", "NPS")}
    kpis = [Kpi(kpi="retention_rate", target=0.6, benchmark=0.65), Kpi(kpi="top20_share", target=0.6, direction="lower"),
            Kpi(kpi="nps"), Kpi(kpi="mean_clv", target=10)]
    t = monitoring.kpi_table(now, kpis).set_index("kpi")
    assert t.loc["retention_rate", "status"] == "met" and t.loc["retention_rate", "gap_to_target"] == pytest.approx(0.02)
    assert t.loc["retention_rate", "versus_benchmark"] == pytest.approx(-0.03)  # below the benchmark
    assert t.loc["top20_share", "status"] == "not_met" and t.loc["top20_share", "gap_to_target"] == pytest.approx(-0.1)
    assert t.loc["nps", "status"] == "no_target" and t.loc["mean_clv", "status"] == "not_available"


def test_the_trend_reads_every_earlier_complete_run_oldest_first(tmp_path):
    runs = [fake_run(tmp_path, f"2024010{i}-000000", churn=0.5 - 0.1 * i, nps=10.0 * i) for i in range(1, 4)]
    now = fake_run(tmp_path, "20240110-000000", churn=0.1, nps=45.0)
    history = [(d, {"status": "complete", "finished": d.name}) for d in reversed(runs)]  # newest first, as Runs gives
    kpis = [Kpi(kpi="retention_rate", target=0.8), Kpi(kpi="nps", benchmark=30)]
    tr = monitoring.trend(history, now, kpis)
    assert tr["run"].tolist() == [d.name for d in runs] + [now.name]
    assert tr["retention_rate"].to_numpy() == pytest.approx([0.6, 0.7, 0.8, 0.9])
    assert tr["nps"].tolist() == [10.0, 20.0, 30.0, 45.0]
    assert monitoring.trend(history, now, kpis, limit=1)["run"].tolist() == [runs[-1].name, now.name]
    view = monitoring.monitoring_view(now, history, kpis, "USD")
    assert view["runs"] == 4 and view["figure"].startswith("data:image/png;base64,")
    assert [r["status"] for r in view["rows"]] == ["met", "no_target"] and view["rows"][0]["actual"] == "90.0%"
    assert monitoring.monitoring_view(now, history, [], "USD") is None
    import matplotlib.pyplot as plt

    captured = []
    monkey = plt.Figure.savefig
    plt.Figure.savefig = lambda fig, *a, **k: (captured.append(fig), monkey(fig, *a, **k))[1]  # the figure drawn
    try:
        monitoring.trend_figure(tr.tail(1), kpis, monitoring.kpi_table(monitoring.values(now), kpis))
    finally:
        plt.Figure.savefig = monkey
    ticks = captured[0].axes[0].get_xticks()
    assert [t for t in ticks if 0.5 <= t <= 1.5] == [1.0]  # one run: the tick is run 1, not 0.95 .. 1.05
    assert np.isnan(monitoring.kpi_table({}, [Kpi(kpi="nps")])["actual"].iloc[0])


def test_an_unknown_kpi_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Monitoring(kpis=[{"kpi": "happiness", "target": 1}])
