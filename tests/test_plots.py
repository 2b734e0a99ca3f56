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


def test_image_grid_has_a_cell_per_image_in_rows_and_no_axes(figures):
    fig, axes = plots.image_grid(5, 2, (1.0, 2.0))
    assert len(axes) == 6 and not any(ax.axison for ax in axes)
    assert tuple(fig.get_size_inches()) == (2.0, 6.0)


def test_face_gallery_draws_each_box_scaled_to_the_thumbnail_and_names_unreadable_photos(figures, tmp_path):
    from matplotlib.patches import Rectangle
    from PIL import Image

    from fivek_utils.data.faces import Detections, Face, ImageFaces
    from fivek_utils.workflows.faces import plot_faces

    Image.new("RGB", (640, 320), (90, 90, 90)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"broken")
    det = Detections({"name": "mtcnn"}, {
        "a.png": ImageFaces("a.png", 640, 320, [Face((64, 32, 128, 96), 0.93), Face((320, 0, 640, 320), 0.81)]),
        "b.png": ImageFaces("b.png", 640, 320, [Face((0, 0, 10, 10))]),
    })
    fig = plot_faces([tmp_path / "a.png", tmp_path / "b.png"], ["a.png", "b.png"], det, ncols=2, side=160,
                     name="faces")
    first, second = fig.axes[:2]
    boxes = [(p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in first.patches if isinstance(p, Rectangle)]
    assert boxes == [(16.0, 8.0, 16.0, 16.0), (80.0, 0.0, 80.0, 80.0)]  # 640 px drawn at 160: a quarter
    assert [t.get_text() for t in first.texts] == ["0.93", "0.81"] and first.get_title() == "a.png: 2 face(s)"
    assert second.get_title() == "b.png: unreadable" and not second.patches
    assert (figures / "faces.png").exists()


def test_faces_per_image_histogram_counts_every_image(figures):
    from fivek_utils.data.faces import Detections, Face, ImageFaces
    from fivek_utils.workflows.faces import plot_face_counts

    det = Detections({"name": "truth"}, {
        "a.jpg": ImageFaces("a.jpg", 100, 100, [Face((0, 0, 10, 10)), Face((20, 0, 40, 20))]),
        "b.jpg": ImageFaces("b.jpg", 100, 100, []),
        "c.jpg": ImageFaces("c.jpg", 100, 100, [Face((0, 0, 50, 50))]),
    })
    fig = plot_face_counts(det, name="counts")
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert sum(heights) == 3 and heights[:3] == [1, 1, 1]  # one image each with 0, 1 and 2 faces
    assert (figures / "counts.png").exists()


def test_f1_thresholds_draw_the_always_yes_lines_and_the_tuned_5k_pair(figures):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (80, 2)).astype(float)
    probs = np.clip(labels * 0.5 + rng.random((80, 2)) * 0.5, 0, 1)
    curves = metrics.f1_curves(labels, probs)
    thresholds = metrics.tune_thresholds(labels, probs)
    fig = plots.plot_f1_thresholds(curves, thresholds, name="f")
    ax = fig.axes[0]
    flat = [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--" and len(line.get_ydata())]
    expected = curves.groupby("target")["f1_always_yes"].first()
    assert sorted(flat) == pytest.approx(sorted(expected))
    star = [line for line in ax.get_lines() if line.get_marker() == "*"]
    assert len(star) == 1
    assert star[0].get_xdata()[0] == thresholds["5k_mask"] and star[0].get_ydata()[0] == thresholds["f1_5K"]
    assert f"{thresholds['f1_5K']:.3f}" in star[0].get_label()
    assert (figures / "f.png").exists()
