"""People features: counts, face sizes, and gaps measured in face heights, so the same scene read at
another scale or depth gives the same gaps."""

import numpy as np

from fivek_utils.data.faces import Detections, Face, ImageFaces
from fivek_utils.data.people import GAP_CAP, PEOPLE_FEATURES, image_people_features, people_features


def faces(*boxes, size=(400, 200)):
    return ImageFaces("x.jpg", *size, [Face(b) for b in boxes])


def test_gaps_are_in_face_heights_whatever_the_scale():
    near = image_people_features(faces((0, 0, 20, 20), (100, 0, 120, 20)))
    far = image_people_features(faces((0, 0, 10, 10), (50, 0, 60, 10), size=(200, 100)))  # the same scene, half the size
    assert near["gap_min"] == far["gap_min"] == 5.0 and near["size_ratio_max"] == 1.0
    assert near["faces"] == 2 and near["single"] == 0 and np.isclose(near["face_min"], 20 / 400)
    close = image_people_features(faces((0, 0, 20, 20), (30, 0, 50, 20), (300, 0, 340, 40)))
    assert np.isclose(close["gap_min"], 1.5) and close["size_ratio_max"] == 2.0  # a depth cue: one face twice as large


def test_one_face_reads_as_far_apart_and_no_face_as_unknown():
    one = image_people_features(faces((0, 0, 20, 20)))
    assert one["single"] == 1 and one["gap_min"] == GAP_CAP and one["size_ratio_max"] == 1.0
    none = image_people_features(faces())
    assert none["faces"] == 0 and all(np.isnan(none[k]) for k in PEOPLE_FEATURES if k != "faces")
    table = people_features(Detections({}, {"a": faces((0, 0, 20, 20)), "b": faces()}), ["b", "a"])
    assert list(table.columns) == list(PEOPLE_FEATURES) and table["faces"].tolist() == [0.0, 1.0]
