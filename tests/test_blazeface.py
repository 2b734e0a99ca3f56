"""BlazeFace, the kit's detector for street photos, on the real public-domain photos the package ships:
it finds the astronaut's face bare and masked, its tiles find a face too small for the whole-photo pass,
its anchors match the models' outputs, and its settings fail by name."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fivek_utils.core.config import PHOTOS_DIR, ConfigError
from fivek_utils.data.face_truth import box_iou
from fivek_utils.data.images import open_rgb
from fivek_utils.modeling.blazeface import MODELS, BlazeFaceDetector, tile_origins, weighted_nms
from fivek_utils.modeling.face_detector import make_detector
from test_face_detector import FACE, masked


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return open_rgb(PHOTOS_DIR / "astronaut.jpg")


def small_face(astronaut: Image.Image, height: int) -> tuple[Image.Image, tuple[float, ...]]:
    """The astronaut reduced until her face is `height` px, pasted into a 640 x 480 grey photo."""
    k = height / (FACE[3] - FACE[1])
    canvas = Image.new("RGB", (640, 480), (120, 120, 120))
    canvas.paste(astronaut.resize((round(512 * k), round(512 * k))), (300, 200))
    return canvas, (300 + FACE[0] * k, 200 + FACE[1] * k, 300 + FACE[2] * k, 200 + FACE[3] * k)


def best_iou(faces, box) -> float:
    return float(box_iou(np.array([f.box for f in faces]).reshape(-1, 4), np.array(box)).max(initial=0.0))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_anchors_match_every_models_outputs(model):
    det = BlazeFaceDetector(model=model)
    outputs = {tuple(d["shape"]) for d in det._interp.get_output_details()}
    n = len(MODELS[model].anchors())
    assert outputs == {(1, n, 16), (1, n, 1)}
    assert det._interp.get_input_details()[0]["shape"].tolist() == [1, MODELS[model].side, MODELS[model].side, 3]


def test_finds_the_astronauts_face_bare_and_masked(astronaut):
    det = BlazeFaceDetector(min_confidence=0.5, model="back")
    for image in (astronaut, masked(astronaut)):
        faces = det.detect("a.jpg", image)
        assert best_iou(faces, FACE) > 0.5
        top = max(faces, key=lambda f: f.confidence)
        x, y = top.landmarks["nose"]
        assert FACE[0] < x < FACE[2] and FACE[1] < y < FACE[3]
    assert det.detect("grey.jpg", Image.new("RGB", (300, 200), (128, 128, 128))) == []


@pytest.mark.parametrize("height", [16, 24])
def test_tiles_find_a_face_the_whole_photo_pass_misses(astronaut, height):
    photo, box = small_face(astronaut, height)
    assert best_iou(BlazeFaceDetector(model="full_range", upscale=0, min_support=1).detect("p", photo), box) < 0.3
    assert best_iou(BlazeFaceDetector(model="full_range", upscale=1, min_support=1).detect("p", photo), box) > 0.5


def test_boxes_come_back_in_the_original_photos_pixels(astronaut):
    photo, box = small_face(astronaut, 32)
    det = BlazeFaceDetector(model="full_range", upscale=1, min_support=1)
    reduced = photo.resize((320, 240))  # a reduced decode of the same photo: boxes still in 640 x 480 pixels
    assert best_iou(det.detect("p", reduced, (640, 480)), box) > 0.5
    assert det.detect("p", photo, None) and all(f.box[2] <= 640 and f.box[3] <= 480 for f in det.detect("p", photo))


def test_min_face_size_and_support(astronaut):
    assert BlazeFaceDetector(min_face_size=150).detect("a", astronaut) == []  # the face is about 110 px tall
    photo, box = small_face(astronaut, 24)
    found = [BlazeFaceDetector(model="back", upscale=1, min_confidence=0.3, min_support=k).detect("p", photo)
             for k in (1, 3, 10_000)]
    assert len(found[0]) >= len(found[1]) and best_iou(found[1], box) > 0.5  # a real face: many anchors agree
    assert found[2] == []  # no face has that many


def test_tile_origins_cover_with_overlap():
    assert tile_origins(100, 192, 0.25) == [0]
    for length in (193, 400, 601, 1000):
        starts = tile_origins(length, 192, 0.25)
        assert starts[0] == 0 and starts[-1] + 192 == length
        assert all(b - a <= 192 * 0.75 + 1 for a, b in zip(starts, starts[1:]))


def test_weighted_nms_merges_a_cluster_and_keeps_apart_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    merged, scores, members = weighted_nms(boxes, np.array([0.9, 0.6, 0.7]))
    assert len(merged) == 2 and scores.tolist() == [0.9, 0.7]
    assert sorted(len(m) for m in members) == [1, 2]
    np.testing.assert_allclose(merged[0], (boxes[0] * 0.9 + boxes[1] * 0.6) / 1.5)


def test_settings_fail_by_name():
    with pytest.raises(ConfigError, match="blazeface_model='tiny'"):
        BlazeFaceDetector(model="tiny")
    with pytest.raises(ConfigError, match="face_upscale"):
        BlazeFaceDetector(upscale=-1)
    with pytest.raises(ConfigError, match="unknown blazeface setting"):
        make_detector("blazeface", tiles=3)
    det = make_detector("blazeface", min_face_size=10, min_confidence=0.6, model="full_range", upscale=2)
    assert det.settings["model"] == "full_range" and det.settings["upscale"] == 2.0 and det.settings["min_face_size"] == 10
