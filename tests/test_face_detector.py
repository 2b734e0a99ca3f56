"""MTCNN, the pretrained face detector for photos, on real public-domain photos (fivek_utils/resources/photos): it finds
the face, with and without a mask drawn over mouth and nose, honours its minimum size and confidence at
any photo size, and its crops hold the face."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fivek_utils.core.config import PHOTOS_DIR
from fivek_utils.data.crops import crop_square
from fivek_utils.data.images import open_rgb
from fivek_utils.modeling.face_detector import MTCNNDetector, make_detector

DATA = PHOTOS_DIR
# the astronaut's face, drawn by hand on the 512 px photo: x0, y0, x1, y1
FACE = (180, 60, 268, 172)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def detector() -> MTCNNDetector:
    return MTCNNDetector(min_face_size=20, min_confidence=0.9)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return open_rgb(DATA / "astronaut.jpg")


def masked(image: Image.Image) -> Image.Image:
    """A light-blue surgical mask drawn over the lower face (nose tip to chin)."""
    out = image.copy()
    x0, y0, x1, y1 = FACE
    ImageDraw.Draw(out).rounded_rectangle((x0 + 6, y0 + 0.55 * (y1 - y0), x1 - 6, y1 - 2), radius=10, fill=(170, 200, 230))
    return out


def test_finds_the_astronauts_face_and_its_landmarks(detector, astronaut):
    faces = detector.detect("astronaut.jpg", astronaut)
    assert len(faces) == 1
    f = faces[0]
    assert iou(f.box, FACE) > 0.6 and f.confidence > 0.95
    assert set(f.landmarks) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    x, y = f.landmarks["nose"]
    assert FACE[0] < x < FACE[2] and FACE[1] < y < FACE[3]


def test_finds_a_masked_face_and_the_crop_holds_it(detector, astronaut):
    faces = detector.detect("masked.jpg", masked(astronaut))
    assert len(faces) == 1 and iou(faces[0].box, FACE) > 0.5
    crop = crop_square(masked(astronaut), faces[0].box, 48, margin=1.3)
    assert crop.shape == (48, 48, 3)
    lower = crop[30:40, 16:32].reshape(-1, 3).mean(axis=0)  # the mask's light blue fills the lower middle
    assert lower[2] > 200 and lower[2] > lower[0] + 30


def test_min_face_size_and_confidence_at_any_photo_size(astronaut):
    # mtcnn 1.0.0 itself reports no face when asked for a minimum above about 24 px; the kit reduces the photo instead
    assert len(MTCNNDetector(min_face_size=60).detect("a", astronaut)) == 1
    assert MTCNNDetector(min_face_size=150).detect("a", astronaut) == []  # the face is about 110 px tall
    big = astronaut.resize((2048, 2048))  # reduced to max_side before the pyramid; boxes come back in its pixels
    faces = MTCNNDetector(max_side=640).detect("big", big)
    assert len(faces) == 1 and iou(faces[0].box, [4 * v for v in FACE]) > 0.6
    strict = MTCNNDetector(min_confidence=0.99999999).detect("a", astronaut)
    assert all(f.confidence >= 0.99999999 for f in strict)


def test_greyscale_photo_and_blank_image(detector):
    camera = open_rgb(DATA / "camera.jpg")  # greyscale, made RGB by open_rgb
    assert len(detector.detect("camera.jpg", camera)) == 1
    assert detector.detect("grey.jpg", Image.new("RGB", (300, 200), (128, 128, 128))) == []
    assert detector.detect("tiny.jpg", Image.new("RGB", (20, 12), (128, 128, 128))) == []


def test_settings_are_checked_and_named():
    from fivek_utils.core.config import ConfigError

    with pytest.raises(ConfigError, match="face_min_confidence"):
        make_detector("mtcnn", min_confidence=1.5)
    with pytest.raises(ConfigError, match="truth"):
        make_detector("yolo")
    settings = MTCNNDetector(min_face_size=30).settings
    assert settings["name"] == "mtcnn" and settings["min_face_size"] == 30 and settings["version"]


def test_a_big_rotated_jpeg_gives_boxes_and_crops_in_the_original_photos_pixels(astronaut, tmp_path):
    """A 4096 px phone photo stored sideways with EXIF orientation 6: decoded reduced (JPEG draft) and
    upright, its face found, its box in the upright original's pixels, its crop holding the face."""
    from fivek_utils.data.crops import extract_crops
    from fivek_utils.workflows.faces import detect_images

    upright = astronaut.resize((4096, 4096), Image.Resampling.BICUBIC)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what exif_transpose turns back for orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    stored.save(path, quality=90, exif=exif.tobytes())
    for min_face in (20, 600):  # in the original's pixels: the face is about 880 px tall there
        found = detect_images([path], ["phone.jpg"], MTCNNDetector(min_face_size=min_face), progress=False)
        record = found["phone.jpg"]
        assert (record.width, record.height) == (4096, 4096) and len(record.faces) == 1, min_face
        assert iou(record.faces[0].box, [8 * v for v in FACE]) > 0.6
    assert detect_images([path], ["phone.jpg"], MTCNNDetector(min_face_size=1200), progress=False)["phone.jpg"].faces == []
    crop = extract_crops([path], ["phone.jpg"], found, 48, progress=False).crops[0]
    reference = crop_square(astronaut, [v / 8 for v in found["phone.jpg"].faces[0].box], 48)
    assert np.abs(crop.astype(int) - reference.astype(int)).mean() < 12  # the same face, upright
