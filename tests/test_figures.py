"""Figures are legible: once drawn, no two texts of a figure overlap (titles, axis and tick labels,
annotations, legends), on the agency example, whose figures are the fullest (survey ratings, contracts,
channels, long amounts)."""
from __future__ import annotations

import pytest

from cvlib import theme
from tests.conftest import ROOT, run_notebook_inprocess


@pytest.mark.slow
def test_no_overlapping_labels_in_any_figure_of_the_agency_example(tmp_path, monkeypatch):
    from cvlib import plots, theme

    monkeypatch.setenv("CVLIB_CACHE", str(tmp_path / "cache"))
    figures = []
    numbered = theme.number
    monkeypatch.setattr(plots, "number", lambda fig: (numbered(fig), figures.append(fig)))
    for nb in sorted((ROOT / "notebooks").glob("0*.ipynb")):
        run_notebook_inprocess(nb, params_file=str(ROOT / "params" / "agency_demo.yaml"), run_dir=str(tmp_path / "run"),
                               build_missing=True, overrides={})
    assert len(figures) >= 15
    bad = {f.axes[0].get_title() or "?": theme.label_overlaps(f) for f in figures if theme.label_overlaps(f)}
    assert not bad, bad


def test_the_overlap_check_finds_overlapping_labels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, ax = plt.subplots()
    ax.text(0.5, 0.5, "one label")
    ax.text(0.5, 0.5, "another label")
    assert theme.label_overlaps(fig) == [("one label", "another label")]
    plt.close(fig)
