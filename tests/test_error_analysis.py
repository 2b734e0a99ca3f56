"""Error analysis: the most confident mistakes, and accuracy by the synthetic scenes' truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fivek_utils.core.labels import MISSING
from fivek_utils.data import synth
from fivek_utils.data.scenes import read_scenes
from fivek_utils.workflows import error_analysis as errors


@pytest.fixture(scope="module")
def closeups(tmp_path_factory):
    root = tmp_path_factory.mktemp("closeup") / "data"
    synth.generate_dataset(root, n_train=40, n_test=0, seed=2, workers=1, progress=False)
    return root


def test_confident_mistakes_are_the_wrong_answers_farthest_from_the_truth():
    df = pd.DataFrame({"image_id": ["1", "2", "3", "4", "5"], "fname": [f"{i}.jpg" for i in range(1, 6)]})
    labels = np.array([[1, 1], [0, MISSING], [1, 0], [0, 0], [MISSING, 1]], float)
    probs = np.array([[0.9, 0.8], [0.95, 0.1], [0.2, 0.7], [0.6, 0.2], [0.01, 0.3]])
    table = errors.prediction_table(df, labels, probs, {"mask": 0.5, "distancing": 0.5})
    assert table["correct_mask"].tolist()[:4] == [1, 0, 0, 0] and np.isnan(table["correct_mask"].iloc[4])
    worst = errors.confident_mistakes(table, "mask", k=2)
    assert worst["image_id"].tolist() == ["2", "3"]  # 0.95 for a 0, then 0.2 for a 1; not the blank row 5
    assert errors.confident_mistakes(table, "distancing", k=5)["image_id"].tolist() == ["3", "5"]


def test_breakdown_counts_every_known_label_once_per_factor(closeups):
    scenes = read_scenes(closeups)
    meta = pd.read_csv(closeups / "train" / "train_meta.csv", dtype={"image_id": str})
    labels = meta[["mask", "distancing"]].fillna(MISSING).to_numpy(float)
    probs = np.random.default_rng(0).uniform(size=(len(meta), 2))
    table = errors.prediction_table(meta, labels, probs, {})
    breakdown = errors.error_breakdown(table, scenes, image_size=64)
    for factor, part in breakdown.groupby("factor"):
        for head, rows in part.groupby("head"):
            assert rows["n"].sum() == (labels[:, ["mask", "distancing"].index(head)] >= 0).sum(), (factor, head)
    people = breakdown[(breakdown["factor"] == "people") & (breakdown["head"] == "mask")].set_index("group")["n"]
    known = scenes.assign(known=labels[:, 0] >= 0)  # meta and scenes.jsonl share the image order
    assert people.to_dict() == known[known.known].groupby(known.people.astype(str)).size().to_dict()
    # accuracy is the share of right answers
    right = breakdown[(breakdown["factor"] == "mask_state") & (breakdown["head"] == "distancing")]
    assert ((right["accuracy"] >= 0) & (right["accuracy"] <= 1)).all()
    # beside each accuracy, what the group's more common label would score: from the labels, not the answers
    for _, row in breakdown[breakdown["factor"] == "people"].iterrows():
        i = ["mask", "distancing"].index(row["head"])
        rows = (scenes["people"].astype(str) == row["group"]).to_numpy() & (labels[:, i] >= 0)
        share = labels[rows, i].mean()
        assert row["majority_accuracy"] == pytest.approx(max(share, 1 - share)) and row["majority_accuracy"] >= 0.5
    proper = breakdown[(breakdown["factor"] == "mask_state") & (breakdown["group"] == "proper") & (breakdown["head"] == "mask")]
    assert proper["majority_accuracy"].iloc[0] > 0.9  # a properly masked photo is nearly always labelled masked
    states = set(breakdown[breakdown.factor == "mask_state"]["group"])
    assert "proper" in states and states <= {"proper", "none", "below_nose", "chin", "mixed"}


def test_figures_are_written(closeups, tmp_path, monkeypatch):
    from fivek_utils.core import plots

    monkeypatch.setattr(plots, "FIGURES_DIR", tmp_path)
    scenes = read_scenes(closeups)
    meta = pd.read_csv(closeups / "train" / "train_meta.csv", dtype={"image_id": str})
    labels = meta[["mask", "distancing"]].fillna(MISSING).to_numpy(float)
    probs = np.random.default_rng(1).uniform(size=(len(meta), 2))
    table = errors.prediction_table(meta, labels, probs, {})
    errors.plot_error_breakdown(errors.error_breakdown(table, scenes, 64), name="breakdown")
    images = np.zeros((len(meta), 32, 32, 3), np.uint8)
    errors.plot_mistakes(images, table, k=3, name="mistakes")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["breakdown.png", "mistakes.png"]
    assert read_scenes(tmp_path) is None  # real data has no scenes.jsonl
