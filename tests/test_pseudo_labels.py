"""Pseudo-labels for self-training: only blank heads are filled, by the confidence rule, soft or hard; and
their quality measured against the truth (accuracy, F1 beside always-yes, AUC, calibration)."""

import json

import numpy as np
import pytest

from fivek_utils.data.pseudo_labels import (accuracy_by_confidence, confidence, fill_blanks, pseudo_label_quality,
                                            truth_for)
from fivek_utils.data.scenes import read_scenes


def test_a_stated_label_is_never_replaced_and_only_sure_blanks_are_filled():
    labels = np.array([[1, -1], [0, -1], [-1, -1], [-1, 1]], "float32")
    probs = np.array([[0.1, 0.9], [0.9, 0.55], [0.2, np.nan], [0.95, 0.0]])
    soft, filled = fill_blanks(labels, probs)
    assert soft[0, 0] == 1 and soft[1, 0] == 0 and soft[3, 1] == 1  # stated: kept whatever the teacher says
    assert soft[0, 1] == pytest.approx(0.9) and soft[1, 1] == pytest.approx(0.55) and soft[2, 0] == pytest.approx(0.2)
    assert soft[2, 1] == -1 and not filled[2, 1]  # no probability: stays blank
    assert filled.tolist() == [[False, True], [False, True], [True, False], [True, False]]
    sure, kept = fill_blanks(labels, probs, min_confidence=0.5)  # |2p - 1| >= 0.5: p <= 0.25 or >= 0.75
    assert sure[1, 1] == -1 and kept.sum() == 3
    hard, _ = fill_blanks(labels, probs, soft=False)
    assert set(np.unique(hard[filled])) <= {0.0, 1.0} and hard[1, 1] == 1.0
    with pytest.raises(ValueError, match="teacher probabilities"):
        fill_blanks(labels, probs[:2])


def test_quality_is_measured_where_the_truth_is_known_beside_always_yes():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, (400, 2)).astype("float32")
    truth[:50, 1] = -1  # unknown truth: not scored
    good = np.clip(truth * 0.7 + 0.15 + rng.normal(0, 0.1, truth.shape), 0.01, 0.99)
    noise = rng.uniform(size=truth.shape)  # a teacher that knows nothing: the negative control
    filled = np.ones(truth.shape, bool)
    q_good, q_noise = pseudo_label_quality(good, truth, filled), pseudo_label_quality(noise, truth, filled)
    assert q_good.loc["distancing", "n"] == 350 and q_good.loc["mask", "n"] == 400
    assert q_good.loc["mask", "accuracy"] > 0.9 and q_good.loc["mask", "auc"] > 0.95
    assert abs(q_noise.loc["mask", "auc"] - 0.5) < 0.1 and abs(q_noise.loc["mask", "accuracy"] - 0.5) < 0.1
    assert q_good.loc["mask", "f1_always_yes"] == pytest.approx(2 * truth[:, 0].mean() / (1 + truth[:, 0].mean()))
    share = truth[filled[:, 0], 0].mean()  # every known entry of this table was filled
    assert q_good.loc["mask", "majority_accuracy"] == pytest.approx(max(share, 1 - share))
    assert q_good.loc["mask", "accuracy"] > q_good.loc["mask", "majority_accuracy"] >= q_noise.loc["mask", "accuracy"] - 0.1
    assert q_good.loc["mask", "brier"] < q_noise.loc["mask", "brier"]
    calibrated = rng.uniform(size=5000)
    outcome = (rng.uniform(size=5000) < calibrated).astype(float)
    q = pseudo_label_quality(np.c_[calibrated, calibrated], np.c_[outcome, outcome], np.ones((5000, 2), bool))
    overconfident = pseudo_label_quality(np.c_[np.round(calibrated), calibrated], np.c_[outcome, outcome], np.ones((5000, 2), bool))
    assert q.loc["mask", "ece"] < 0.05 < overconfident.loc["mask", "ece"]


def test_a_stricter_confidence_rule_keeps_fewer_and_surer_labels():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, (2000, 2)).astype("float32")
    probs = np.clip(truth + rng.normal(0, 0.35, truth.shape), 0.0, 1.0)
    curve = accuracy_by_confidence(probs, truth)
    mask = curve[curve["head"] == "mask"]
    assert np.all(np.diff(mask["kept_share"]) <= 0) and mask["kept_share"].iloc[0] == 1.0
    assert mask["accuracy"].iloc[-1] > mask["accuracy"].iloc[0] + 0.05
    assert confidence(np.array([0.5, 0.0, 0.9])) == pytest.approx([0.0, 1.0, 0.8])


def test_the_synthetic_truth_behind_blanks_and_test_photos(tmp_path):
    split = tmp_path / "public_test"
    split.mkdir()
    people = [{"mask": "proper"}, {"mask": "chin"}]
    rows = [{"image_id": 7, "mask": 1, "distancing": 0, "5k": 0, "scene": {"people": people[:1]}},
            {"image_id": "9", "mask": 0, "distancing": 1, "scene": {"people": people}}]
    (split / "scenes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = read_scenes(tmp_path, "public_test")
    assert truth_for(["9", 7, "8"], table).tolist() == [[0, 1], [1, 0], [-1, -1]]
    assert table["mask_state"].tolist() == ["proper", "chin"] and table["people"].tolist() == [1, 2]
    assert read_scenes(tmp_path, "private_test") is None and (truth_for(["1"], None) == -1).all()
    (split / "scenes.jsonl").write_text('{"image_id": 1, "mask": 1, "scene": {"people": []}}\n')
    with pytest.raises(ValueError, match=r"scenes.jsonl: line 1: .*distancing"):
        read_scenes(tmp_path, "public_test")
