"""Figures are written to reports/figures/ (atomically) and draw what they are given."""

import numpy as np
import pandas as pd
import pytest

from fivek_utils.core import metrics, plots


@pytest.fixture
def figures(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "FIGURES_DIR", tmp_path)
    return tmp_path


def test_history_marks_the_always_yes_bar_and_chance(figures):
    history = pd.DataFrame({"epoch": [1, 2, 3], "loss": [1.2, 1.0, 0.9], "val_f1_5k": [0.6, 0.7, 0.75],
                            "val_auc_5k": [0.55, 0.7, 0.8], "val_f1_5k_always_yes": [0.62] * 3, "phase": ["a", "b", "b"]})
    fig = plots.plot_history(history, name="h")
    lines = {line.get_label(): line for line in fig.axes[1].get_lines()}
    assert lines["5K F1 always-yes"].get_ydata()[0] == pytest.approx(0.62)
    assert lines["AUC chance"].get_ydata()[0] == pytest.approx(0.5)
    assert (figures / "h.png").stat().st_size > 1000


def test_confusions_show_the_counts_of_the_table(figures):
    labels = np.array([[1, 1], [0, 1], [1, 0], [0, 0]], float)
    probs = np.array([[0.9, 0.8], [0.2, 0.7], [0.8, 0.3], [0.6, 0.1]])
    table = metrics.evaluate(labels, probs)
    fig = plots.plot_confusions(table, name="c")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(texts) == sorted(str(int(table.loc["mask", k])) for k in ("tn", "fp", "fn", "tp"))
    assert (figures / "c.png").exists()


def test_no_name_writes_nothing(figures):
    plots.plot_gallery(np.zeros((2, 8, 8, 3), np.uint8), ["a", "b"])
    assert list(figures.iterdir()) == []
