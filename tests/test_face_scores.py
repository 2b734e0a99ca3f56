"""The face model scored face by face against annotated boxes (notebook 05 on a set with a faces.csv):
crops matched in the order they are cut, the per-face AUC, unannotated detections and what they cost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fivek_utils.data.face_truth import UNANNOTATED, crop_states, load_boxes
from fivek_utils.data.faces import Detections, Face, ImageFaces
from fivek_utils.workflows.face_scores import plot_face_scores, score_face_model


def make_set(tmp_path):
    boxes = pd.DataFrame([
        ("a.jpg", 0, 0, 10, 10, "with_mask"), ("a.jpg", 50, 0, 90, 40, "without_mask"),
        ("b.jpg", 0, 0, 40, 40, "with_mask"), ("b.jpg", 100, 0, 170, 70, "incorrect"),
        ("c.jpg", 0, 0, 30, 30, "with_mask"),
    ], columns=["fname", "x0", "y0", "x1", "y1", "state"])
    boxes.to_csv(tmp_path / "faces.csv", index=False)
    det = Detections({"name": "test"}, {
        # the detector's order is small face first; crops are cut largest first
        "a.jpg": ImageFaces("a.jpg", 200, 100, [Face((0, 0, 10, 10), 0.9), Face((50, 0, 90, 40), 0.8)]),
        "b.jpg": ImageFaces("b.jpg", 200, 100, [Face((1, 1, 40, 40), 0.9), Face((100, 0, 170, 72), 0.7)]),
        # an unannotated face (a false detection, or one the annotators left out) beside the annotated one
        "c.jpg": ImageFaces("c.jpg", 200, 100, [Face((0, 0, 30, 30), 0.95), Face((120, 20, 140, 40), 0.6)]),
    })
    return load_boxes(tmp_path / "faces.csv"), det


def test_crop_states_follow_the_crops_order_largest_face_first(tmp_path):
    boxes, det = make_set(tmp_path)
    states = crop_states(det, boxes, ["a.jpg", "b.jpg", "c.jpg"])
    assert states["state"].tolist() == ["without_mask", "with_mask", "incorrect", "with_mask", "with_mask", UNANNOTATED]
    assert states["row"].tolist() == [0, 0, 1, 1, 2, 2] and states["height"].tolist() == [40, 10, 72, 39, 30, 20]
    assert crop_states(det, boxes, ["a.jpg"], max_faces=1)["state"].tolist() == ["without_mask"]  # the n largest only


def test_face_auc_unannotated_detections_and_what_they_cost(tmp_path):
    boxes, det = make_set(tmp_path)
    # crop order: a (without, with), b (incorrect, with), c (with, unannotated)
    p = np.array([0.2, 0.9, 0.6, 0.7, 0.95, 0.1])
    labels = np.array([0, 0, 1])
    s = score_face_model(det, boxes, ["a.jpg", "b.jpg", "c.jpg"], p, np.array([2, 2, 2]), labels)
    annotated = [0, 1, 2, 3, 4]
    y = np.array([0, 1, 0, 1, 1])
    assert s.summary["face_auc"] == pytest.approx(roc_auc_score(y, p[annotated]))
    assert s.summary["annotated"] == 5 and s.summary["unannotated"] == 1
    assert s.summary["unannotated_called_unmasked"] == 1 and s.summary["unannotated_called_unmasked_in_masked_photos"] == 1
    # photo c (labelled masked) looks unmasked only through its unannotated face: answered masked, it ranks first
    bags = np.array([0.2 * 0.9, 0.6 * 0.7, 0.95 * 0.1])
    assert s.summary["photo_auc"] == pytest.approx(roc_auc_score(labels, bags))
    assert s.summary["photo_auc"] == 0.0 and s.summary["photo_auc_unannotated_masked"] == 1.0
    assert s.summary["mean_p_by_state"] == {"with_mask": pytest.approx(0.85, abs=1e-3), "without_mask": 0.2,
                                            "incorrect": 0.6, UNANNOTATED: 0.1}
    by_height = s.by_height.set_index("height")
    assert by_height.loc["32-64", "faces"] == 2 and by_height.loc["32-64", "unmasked"] == 1
    assert by_height.loc["32-64", "face_auc"] == 1.0  # without_mask 0.2 below with_mask 0.7
    assert np.isnan(by_height.loc["<12", "face_auc"])  # one class only: no AUC
    assert "face mask AUC" in str(s)
    fig = plot_face_scores({"out-of-fold": s})
    assert len(fig.axes) == 1


def test_probabilities_that_do_not_fit_the_crops_are_refused(tmp_path):
    boxes, det = make_set(tmp_path)
    with pytest.raises(ValueError, match="crop probabilities"):
        score_face_model(det, boxes, ["a.jpg", "b.jpg", "c.jpg"], np.full(5, 0.5), np.array([2, 2, 1]), np.array([0, 0, 1]))


def test_a_photo_whose_faces_were_found_but_not_cut_is_left_out(tmp_path):
    boxes, det = make_set(tmp_path)
    # photo b could not be read when the crops were cut: no crops, so no probabilities for its two faces
    p = np.array([0.2, 0.9, 0.95, 0.1])
    s = score_face_model(det, boxes, ["a.jpg", "b.jpg", "c.jpg"], p, np.array([2, 0, 2]), np.array([0, 0, 1]))
    assert s.summary["faces"] == 4 and s.summary["annotated"] == 3
    assert s.faces["fname"].tolist() == ["a.jpg", "a.jpg", "c.jpg", "c.jpg"]
    with pytest.raises(ValueError, match="crop counts"):
        score_face_model(det, boxes, ["a.jpg", "b.jpg", "c.jpg"], p, np.array([2, 2]), np.array([0, 0, 1]))
