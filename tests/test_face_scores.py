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
        # (its annotated face is 30 px high, the detector's box 34: faces are binned by the annotated height)
        "c.jpg": ImageFaces("c.jpg", 200, 100, [Face((0, 0, 30, 34), 0.95), Face((120, 20, 140, 40), 0.6)]),
    })
    return load_boxes(tmp_path / "faces.csv"), det


def test_crop_states_follow_the_crops_order_largest_face_first(tmp_path):
    boxes, det = make_set(tmp_path)
    states = crop_states(det, boxes, ["a.jpg", "b.jpg", "c.jpg"])
    assert states["state"].tolist() == ["without_mask", "with_mask", "incorrect", "with_mask", "with_mask", UNANNOTATED]
    assert states["row"].tolist() == [0, 0, 1, 1, 2, 2] and states["height"].tolist() == [40, 10, 72, 39, 34, 20]
    assert states["annotated_height"].tolist()[:5] == [40, 10, 70, 40, 30] and np.isnan(states["annotated_height"].iloc[5])
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
    assert s.summary["unannotated_called_unmasked"] == 1 and s.summary["masked_photos_with_unannotated_unmasked"] == 1
    assert s.summary["photos_scored"] == 3 and s.summary["photos_without_face"] == 0
    # photo c (labelled masked) looks unmasked only through its unannotated face: answered masked, it ranks first
    bags = np.array([0.2 * 0.9, 0.6 * 0.7, 0.95 * 0.1])
    assert s.summary["photo_auc"] == pytest.approx(roc_auc_score(labels, bags))
    assert s.summary["photo_auc"] == 0.0 and s.summary["photo_auc_unannotated_masked"] == 1.0
    assert s.summary["mean_p_by_state"] == {"with_mask": pytest.approx(0.85, abs=1e-3), "without_mask": 0.2,
                                            "incorrect": 0.6, UNANNOTATED: 0.1}
    by_height = s.by_height.set_index("height")
    assert by_height.loc["32-64", "faces"] == 2 and by_height.loc["32-64", "unmasked"] == 1
    assert by_height.loc["32-64", "face_auc"] == 1.0  # without_mask 0.2 below with_mask 0.7
    assert by_height.loc["24-32", "faces"] == 1  # photo c's face: 30 px annotated (its box 34 px)
    assert np.isnan(by_height.loc["<12", "face_auc"])  # one class only: no AUC
    assert "face mask AUC" in str(s) and "face-stage ceiling 1.000" in str(s)
    assert s.summary["photos_unmasked"] == 2 and s.summary["unmasked_photos_none_found"] == 0
    fig = plot_face_scores({"out-of-fold": s})
    assert len(fig.axes) == 1 and "ceiling 1.000" in fig.axes[0].get_title()


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


def test_unscored_crops_and_photos_without_a_face_stay_out_of_every_count(tmp_path):
    boxes, det = make_set(tmp_path)
    det.images["c.jpg"].faces.append(Face((150, 20, 170, 40), 0.7))  # a second unannotated face in photo c
    det.images["d.jpg"] = ImageFaces("d.jpg", 200, 100, [])  # no face found
    fnames = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    labels = np.array([0, 1, 1, 1])
    p = np.array([0.2, 0.9, 0.6, 0.7, 0.95, 0.1, 0.3])
    s = score_face_model(det, boxes, fnames, p, np.array([2, 2, 3, 0]), labels)
    assert s.summary["unannotated_called_unmasked"] == 2 and s.summary["masked_photos_with_unannotated_unmasked"] == 1
    assert s.summary["photos_scored"] == 3 and s.summary["photos_without_face"] == 1
    # a crop without a probability (its fold not predicted) counts nowhere, and its photo leaves both photo AUCs
    p[5] = np.nan
    s = score_face_model(det, boxes, fnames, p, np.array([2, 2, 3, 0]), labels)
    assert s.summary["faces"] == 6 and s.summary["annotated"] + s.summary["unannotated"] == 6
    assert s.summary["photos_scored"] == 2 and s.summary["photo_auc"] == s.summary["photo_auc_unannotated_masked"] == 1.0
    # no face found anywhere: nothing to score, no error
    empty = score_face_model(det, boxes, ["d.jpg"], np.zeros(0), np.array([0]), np.array([1]))
    assert empty.summary["faces"] == 0 and np.isnan(empty.summary["face_auc"]) and np.isnan(empty.summary["photo_auc"])
    assert "0 faces found" in str(empty)


def test_the_ceiling_counts_photos_labelled_unmasked_whose_unmasked_faces_were_all_missed(tmp_path):
    boxes, det = make_set(tmp_path)
    labels = np.array([0, 0, 1])
    # photo a's unmasked face not found: only its masked face is cut, so a perfect face model ties a with c
    det.images["a.jpg"].faces.pop(1)
    p = np.array([0.9, 0.6, 0.7, 0.95, 0.1])  # crops: a (with), b (incorrect, with), c (with, unannotated)
    s = score_face_model(det, boxes, ["a.jpg", "b.jpg", "c.jpg"], p, np.array([1, 2, 2]), labels)
    assert s.summary["photos_unmasked"] == 2 and s.summary["unmasked_photos_none_found"] == 1
    oracle = np.array([1.0, 0.0, 1.0])  # every found face's state known, unannotated ones masked
    assert s.summary["photo_auc_ceiling"] == pytest.approx(roc_auc_score(labels, oracle)) == 0.75
    assert "in 1 of the 2 labelled unmasked" in str(s)
    # an unannotated face does not count as a found unmasked one, and a photo without a face is left out
    det.images["b.jpg"] = ImageFaces("b.jpg", 200, 100, [Face((120, 20, 140, 40), 0.6)])
    s = score_face_model(det, boxes, ["a.jpg", "b.jpg", "c.jpg"], np.array([0.9, 0.1, 0.95, 0.1]), np.array([1, 1, 2]),
                         labels)
    assert s.summary["unmasked_photos_none_found"] == 2 and s.summary["photo_auc_ceiling"] == 0.5
    det.images["b.jpg"] = ImageFaces("b.jpg", 200, 100, [])
    s = score_face_model(det, boxes, ["a.jpg", "b.jpg", "c.jpg"], np.array([0.9, 0.95, 0.1]), np.array([1, 0, 2]), labels)
    assert s.summary["photos_unmasked"] == 1 and s.summary["photo_auc_ceiling"] == 0.5
    # one class of photos only: no ceiling, as no AUC
    s = score_face_model(det, boxes, ["a.jpg", "c.jpg"], np.array([0.9, 0.95, 0.1]), np.array([1, 2]), np.array([0, 0]))
    assert np.isnan(s.summary["photo_auc_ceiling"])


def test_bare_faces_and_masks_worn_wrong_are_scored_apart_face_by_face_and_photo_by_photo(tmp_path):
    boxes, det = make_set(tmp_path)
    more = pd.read_csv(tmp_path / "faces.csv")
    more = pd.concat([more, pd.DataFrame([
        ("d.jpg", 0, 0, 30, 30, "with_mask"),
        # photo e is unmasked through a bare face the detector missed: its kind comes from the boxes, not the crops
        ("e.jpg", 0, 0, 30, 30, "with_mask"), ("e.jpg", 100, 0, 112, 12, "without_mask"),
    ], columns=more.columns)])
    more.to_csv(tmp_path / "faces.csv", index=False)
    boxes = load_boxes(tmp_path / "faces.csv")
    det.images["d.jpg"] = ImageFaces("d.jpg", 200, 100, [Face((0, 0, 30, 30), 0.9)])
    det.images["e.jpg"] = ImageFaces("e.jpg", 200, 100, [Face((0, 0, 30, 30), 0.9)])
    fnames = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    labels = np.array([0, 0, 1, 1, 0])
    # crops: a (without, with), b (incorrect, with), c (with, unannotated), d (with), e (with)
    p = np.array([0.2, 0.9, 0.8, 0.7, 0.95, 0.9, 0.5, 0.6])
    s = score_face_model(det, boxes, fnames, p, np.array([2, 2, 2, 1, 1]), labels)
    assert s.summary["faces_by_state"] == {"without_mask": 1, "incorrect": 1}
    # masked faces 0.9, 0.7, 0.95, 0.5, 0.6: all above the bare face's 0.2, two of five above the worn-wrong 0.8
    assert s.summary["face_auc_by_state"] == {"without_mask": 1.0, "incorrect": pytest.approx(0.4)}
    # bags: a 0.18, b 0.56, c 0.855, d 0.5, e 0.6; the masked photos c and d against each kind
    assert s.summary["photos_by_kind"] == {"bare": 2, "incorrect_only": 1}
    assert s.summary["photo_auc_by_kind"]["bare"] == pytest.approx(roc_auc_score([1, 1, 0, 0], [0.855, 0.5, 0.18, 0.6]))
    assert s.summary["photo_auc_by_kind"]["incorrect_only"] == pytest.approx(0.5)
    assert "against masks worn wrong 0.400 (1)" in str(s) and "wear the mask wrong 0.500 (1)" in str(s)
