"""A detector scored against annotated face boxes (`fivek faces DIR --boxes FILE`): matching, recall by
height and mask state, false detections, photos whose unmasked faces were all missed; a boxes file
that cannot be read names its row."""

from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fivek_utils.core.config import PHOTOS_DIR
from fivek_utils.data.face_truth import BoxesError, load_boxes, match, score_detections
from fivek_utils.data.faces import Detections, Face, ImageFaces
from fivek_utils.workflows.faces import score_dataset
from conftest import run_fivek
from test_face_detector import FACE


def write_boxes(path, rows) -> str:
    pd.DataFrame(rows, columns=["fname", "x0", "y0", "x1", "y1", "state"]).to_csv(path, index=False)
    return str(path)


def test_match_is_greedy_by_confidence_and_one_to_one():
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], float)
    found = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [100, 100, 110, 110]], float)
    assert match(truth, found, np.array([0.5, 0.9, 0.8])).tolist() == [1, -1]  # the surer one takes the face
    assert match(truth, found[:0], np.zeros(0)).tolist() == [-1, -1]
    assert match(truth, np.array([[0, 0, 10, 40]], float), np.ones(1)).tolist() == [-1, -1]  # IoU 0.25
    assert match(truth, np.array([[0, 0, 10, 25]], float), np.ones(1)).tolist() == [0, -1]  # IoU 0.4


def test_scores_by_height_state_false_detections_and_missed_unmasked_photos(tmp_path):
    boxes = load_boxes(write_boxes(tmp_path / "faces.csv", [
        ("a.jpg", 0, 0, 10, 10, "with_mask"),  # 10 px, found
        ("a.jpg", 50, 0, 70, 20, "without_mask"),  # 20 px, missed: photo a has an unmasked face, none found
        ("b.jpg", 0, 0, 40, 40, "with_mask"),  # 40 px, found
        ("b.jpg", 100, 0, 170, 70, "incorrect"),  # 70 px, found: photo b's unmasked face was found
        ("c.jpg", 0, 0, 30, 30, "with_mask"),  # 30 px, missed
    ]))
    det = Detections({"name": "test"}, {
        "a.jpg": ImageFaces("a.jpg", 200, 100, [Face((0, 0, 10, 10), 0.9), Face((150, 50, 170, 70), 0.8)]),
        "b.jpg": ImageFaces("b.jpg", 200, 100, [Face((1, 1, 40, 40), 0.9), Face((100, 0, 170, 72), 0.7)]),
        "c.jpg": ImageFaces("c.jpg", 200, 100, []),
        "d.jpg": ImageFaces("d.jpg", 200, 100, [Face((0, 0, 20, 20), 0.6)]),  # no boxes: a false detection
    })
    s = score_detections(det, boxes, seconds=2.0)
    assert s["faces"] == 5 and s["photos"] == 4 and s["photos_without_boxes"] == 1
    assert s["recall"] == pytest.approx(3 / 5, abs=1e-3)
    assert s["recall_16px_and_more"] == pytest.approx(2 / 4, abs=1e-3)
    assert s["recall_masked_16px_and_more"] == pytest.approx(1 / 2, abs=1e-3)
    by_height = {k: v["recall"] for k, v in s["recall_by_height"].items()}
    assert by_height == {"<12": 1.0, "12-16": None, "16-24": 0.0, "24-32": 0.0, "32-64": 1.0, ">=64": 1.0}
    assert s["recall_by_state"]["without_mask"]["recall"] == 0.0 and s["recall_by_state"]["incorrect"]["recall"] == 1.0
    assert s["false_detections"] == 2 and s["false_per_photo"] == 0.5
    assert s["photos_with_unmasked"] == 2 and s["unmasked_photos_none_found"] == 0.5
    # photo labels a 0, b 0, c 1; knowing each found face's state: a 1 (its unmasked face missed), b 0, c 1
    assert s["face_mask_auc_ceiling"] == pytest.approx(roc_auc_score([0, 0, 1], [1, 0, 1]))
    assert s["photos_per_s"] == 2.0


@pytest.mark.parametrize("row, message", [
    (("a.jpg", "left", 0, 10, 10, "with_mask"), "row 2: x0='left' is not a number"),
    (("a.jpg", 0, 0, 10, 10, "masked"), "row 2: state='masked'"),
    (("a.jpg", 10, 0, 10, 10, "with_mask"), "row 2: the box"),
])
def test_a_bad_boxes_file_names_its_row(tmp_path, row, message):
    with pytest.raises(BoxesError, match=message):
        load_boxes(write_boxes(tmp_path / "faces.csv", [row]))
    (tmp_path / "cols.csv").write_text("fname,x,y\na.jpg,1,2\n")
    with pytest.raises(BoxesError, match="missing"):
        load_boxes(tmp_path / "cols.csv")


def test_a_boxes_fname_spelt_otherwise_takes_the_meta_spelling_and_says_so(tmp_path):
    nfc, nfd = "kh\u1ea3i.jpg", "kha\u0309i.jpg"  # "khải": one character, or "a" and a combining hook (macOS)
    path = write_boxes(tmp_path / "faces.csv", [(nfd, 0, 0, 10, 10, "with_mask"), (" b.jpg ", 0, 0, 20, 20, "incorrect"),
                                                ("c.jpg", 0, 0, 30, 30, "without_mask"), ("zz.jpg", 0, 0, 9, 9, "with_mask")])
    with pytest.warns(UserWarning, match=r"2 fname\(s\) of .*faces.csv are spelt otherwise"):
        boxes = load_boxes(path, [nfc, "b.jpg", "c.jpg"])
    assert boxes["fname"].tolist() == [nfc, "b.jpg", "c.jpg", "zz.jpg"]  # a photo the meta lacks keeps its name
    assert load_boxes(path)["fname"].tolist()[0] == nfd  # without the meta's fnames: as written
    # two meta fnames of the same key: which is meant cannot be told, so the boxes keep their spelling
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_boxes(path, [nfc, nfd + " "])["fname"].tolist()[0] == nfd


def astronaut_set(tmp_path):
    root = tmp_path / "set"
    (root / "train" / "images").mkdir(parents=True)
    for name in ("astro.jpg", "copy.jpg"):  # copy.jpg: the same face, not annotated there
        shutil.copy(PHOTOS_DIR / "astronaut.jpg", root / "train" / "images" / name)
    pd.DataFrame({"image_id": [0, 1], "fname": ["astro.jpg", "copy.jpg"], "mask": [0, 0], "distancing": [1, 1],
                  "5k": [0, 0]}).to_csv(root / "train" / "train_meta.csv", index=False)
    return root, write_boxes(tmp_path / "faces.csv", [("astro.jpg", *FACE, "without_mask")])


@pytest.mark.parametrize("detector", ["retinaface", "blazeface"])
def test_fivek_faces_boxes_scores_a_photo_detector_on_real_photos(tmp_path, detector):
    root, boxes = astronaut_set(tmp_path)
    s = score_dataset(root, boxes, detector=detector, out=tmp_path / "score.json", progress=False)
    assert s["recall"] == 1.0 and s["recall_by_state"]["without_mask"]["recall"] == 1.0
    assert s["unmasked_photos_none_found"] == 0.0 and s["photos"] == 2 and s["photos_per_s"] > 0
    assert s["false_detections"] >= 1 and s["photos_without_boxes"] == 1  # the copy's face has no box: false
    assert json.loads((tmp_path / "score.json").read_text())["recall"] == 1.0
    other = write_boxes(tmp_path / "other.csv", [("nowhere.jpg", *FACE, "with_mask")])
    with pytest.raises(ValueError, match="nowhere.jpg"):
        score_dataset(root, other, detector=detector, progress=False)


@pytest.mark.slow
@pytest.mark.compat  # a fivek command, about 7 s: not in make test-fast
def test_the_command_line_scores_a_detector(tmp_path):
    root, boxes = astronaut_set(tmp_path)
    done = run_fivek("faces", str(root), "--boxes", boxes, "--detector", "mtcnn", "--min-confidence", "0.9", "--quiet")
    s = json.loads(done.stdout)
    assert s["detector"]["name"] == "mtcnn" and s["recall"] == 1.0 and s["photos"] == 2
    bad = run_fivek("faces", str(root), "--boxes", str(tmp_path / "missing.csv"), "--quiet", check=False)
    assert bad.returncode == 2 and "missing.csv" in bad.stderr and "Traceback" not in bad.stderr  # one line, a bad file
    (tmp_path / "nocols.csv").write_text("fname,x0,y0\n1.jpg,1,2\n")
    bad = run_fivek("faces", str(root), "--boxes", str(tmp_path / "nocols.csv"), "--quiet", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"fivek faces: {tmp_path / 'nocols.csv'}: columns ['x1', 'y1', 'state'] are missing (expected fname,x0,y0,x1,y1,state)"]


@pytest.mark.slow  # two fresh interpreters loading TensorFlow: about 9 s
def test_fivek_faces_scores_the_default_detector_at_its_tuned_settings_and_names_a_wrong_flag(tmp_path):
    """`fivek faces DIR --boxes FILE` with no detector named: the configs' default, at its settings
    chosen on real photos; a flag the detector does not take stops with its name."""
    from fivek_utils.core.config import Config
    from fivek_utils.modeling.face_detector import TUNED

    root, boxes = astronaut_set(tmp_path)
    env = {**os.environ, "FIVEK_ROOT": str(tmp_path / "project")}
    s = json.loads(run_fivek("faces", str(root), "--boxes", str(boxes), "--quiet", env=env).stdout)
    assert s["detector"]["name"] == Config.face_detector == "retinaface"
    assert {k: s["detector"][k] for k in TUNED["retinaface"]} == TUNED["retinaface"]
    assert s["recall"] == 1.0 and s["photos_without_boxes"] == 1
    bad = run_fivek("faces", str(root), "--detector", "mtcnn", "--upscale", "2", "--quiet", env=env, check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == "fivek faces: --upscale is not a setting of the mtcnn detector"
