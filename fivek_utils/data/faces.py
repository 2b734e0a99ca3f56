"""Where the faces are: one record per image (boxes, confidences, landmarks), the `truth` detector of
the synthetic data, and the on-disk cache of a dataset's detections.

Boxes are `[x0, y0, x1, y1]` in pixels of the upright original photo (EXIF orientation applied), so
they stay valid whatever size an image is later decoded at.

The `truth` detector is an oracle for *where* the faces are: it reads the generator's `head_box` of
every person from `scenes.jsonl` and nothing else (never a person's mask state). It exists only for
synthetic data, whose cartoon faces a real detector trained on photos does not find. Real photos
use `mtcnn` (`modeling.face_detector`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..core.io import _json_default, atomic_write_json

CACHE_VERSION = 2  # 2: photos with a broken EXIF block are looked at (they were errors), 16-bit grey by its bit depth


class DetectionError(ValueError):
    """An image a detector cannot place (missing from scenes.jsonl, drawn at another size): that image
    gets no faces and this error, counted; any other detector failure stops the run."""


@dataclass
class Face:
    """One detected face: its box in original-image pixels, the detector's confidence, landmarks."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    confidence: float = 1.0
    landmarks: dict[str, tuple[float, float]] | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"box": [round(float(v), 1) for v in self.box], "confidence": round(float(self.confidence), 4)}
        if self.landmarks:
            out["landmarks"] = {k: [round(float(x), 1), round(float(y), 1)] for k, (x, y) in self.landmarks.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Face":
        marks = d.get("landmarks")
        return cls(tuple(float(v) for v in d["box"]), float(d.get("confidence", 1.0)),
                   {k: (float(v[0]), float(v[1])) for k, v in marks.items()} if marks else None)


@dataclass
class ImageFaces:
    """The faces found in one image; `error` names why an image could not be looked at (no faces then)."""

    fname: str
    width: int
    height: int
    faces: list[Face] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"width": int(self.width), "height": int(self.height), "faces": [f.to_dict() for f in self.faces]}
        if self.error:
            out["error"] = self.error
        return out

    @classmethod
    def from_dict(cls, fname: str, d: dict[str, Any]) -> "ImageFaces":
        return cls(fname, int(d["width"]), int(d["height"]), [Face.from_dict(f) for f in d["faces"]], d.get("error"))


@dataclass
class Detections:
    """Every image's faces for one split, with the settings of the detector that found them."""

    detector: dict[str, Any]  # name and settings; "truth" marks the generator's boxes (an oracle)
    images: dict[str, ImageFaces]  # fname -> faces

    def __getitem__(self, fname: str) -> ImageFaces:
        return self.images[fname]

    def __len__(self) -> int:
        return len(self.images)

    def counts(self, fnames: Iterable[str] | None = None) -> np.ndarray:
        """Faces per image, in the order of `fnames` (default: every image)."""
        return np.array([len(self.images[f].faces) for f in (fnames if fnames is not None else self.images)], dtype=int)

    @property
    def errors(self) -> dict[str, str]:
        return {f: r.error for f, r in self.images.items() if r.error}

    def summary(self) -> dict[str, Any]:
        """Faces per image, images with none (and unreadable ones), face sizes in pixels and as a share
        of the image's longer side."""
        counts = self.counts()
        heights = np.array([f.height for r in self.images.values() for f in r.faces])
        share = np.array([f.height / max(r.width, r.height) for r in self.images.values() for f in r.faces])
        hist = {str(k): int(v) for k, v in zip(*np.unique(np.minimum(counts, 10), return_counts=True))}
        if "10" in hist:
            hist["10+"] = hist.pop("10")

        def pct(a: np.ndarray) -> dict[str, float] | None:
            if not len(a):
                return None
            p10, p50, p90 = np.percentile(a, [10, 50, 90])
            return {"p10": round(float(p10), 3), "median": round(float(p50), 3), "p90": round(float(p90), 3)}

        return {
            "detector": self.detector,
            "images": len(self.images),
            "faces": int(counts.sum()),
            "faces_per_image": hist,
            "mean_faces_per_image": round(float(counts.mean()), 3) if len(counts) else 0.0,
            "images_without_faces": int((counts == 0).sum()),
            "unreadable_images": len(self.errors),
            "face_height_px": pct(heights),
            "face_height_share_of_longer_side": pct(share),
        }


# --- the truth detector (synthetic data only) ---------------------------------------------------
class TruthDetector:
    """The generator's head boxes from `scenes.jsonl`: an oracle for where the faces are, and only that.

    Each person's `head_box` is read, clipped to the photo, and kept when at least half of it is inside;
    nothing else about the person (mask state, clothes, position on the ground) is read.
    """

    name = "truth"
    needs_pixels = False

    def __init__(self, scenes_path: str | os.PathLike):
        self.path = Path(scenes_path)
        if not self.path.exists():
            raise FileNotFoundError(
                f"{self.path} does not exist: the 'truth' detector reads the synthetic generator's head boxes, "
                "which only synthetic data has; use face_detector='mtcnn' for real photos")
        self.boxes: dict[str, tuple[int, int, list[tuple[float, ...]]]] = {}
        text = self.path.read_bytes()
        self.digest = hashlib.sha1(text).hexdigest()[:16]  # the boxes' identity: another scenes.jsonl, other detections
        for line_no, line in enumerate(text.decode("utf-8", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                scene = record["scene"]
                heads = [tuple(float(v) for v in person["head_box"]) for person in scene["people"]]
                self.boxes[str(record["fname"])] = (int(scene["width"]), int(scene["height"]), heads)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{self.path}, line {line_no}: not a scene record with head boxes ({exc})") from None

    @property
    def settings(self) -> dict[str, Any]:
        return {"name": "truth", "source": "scenes.jsonl head_box (generator's oracle, synthetic data only)",
                "scenes_sha1": self.digest}

    def size(self, fname: str) -> tuple[int, int] | None:
        """The photo's (width, height) as the generator drew it, or None if the image is not in the file."""
        entry = self.boxes.get(fname)
        return (entry[0], entry[1]) if entry else None

    def detect(self, fname: str, image=None) -> list[Face]:
        """The head boxes of `fname` (no pixels needed); an image missing from scenes.jsonl is an error."""
        if fname not in self.boxes:
            raise DetectionError(f"{fname} is not in {self.path}")
        width, height, heads = self.boxes[fname]
        faces = []
        for x0, y0, x1, y1 in heads:
            c = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
            inside = max(0.0, c[2] - c[0]) * max(0.0, c[3] - c[1])
            if inside >= 0.5 * max((x1 - x0) * (y1 - y0), 1e-9):
                faces.append(Face(c, 1.0))
        return faces


# --- the cache of a split's detections ---------------------------------------------------------
def file_stamp(path: str | os.PathLike) -> str:
    """Size and modification time of a file ('missing' when there is none): a cached answer is reused
    only for the same file."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}-{st.st_mtime_ns}"


def detections_key(paths: Sequence[str | os.PathLike], settings: dict[str, Any]) -> str:
    """A digest of the files (path, size, modification time) and the detector's settings."""
    h = hashlib.sha1(f"faces-v{CACHE_VERSION}|{json.dumps(settings, sort_keys=True)}".encode())
    for p in paths:
        h.update(f"{os.path.abspath(p)}|{file_stamp(p)}\n".encode())
    return h.hexdigest()[:16]


def cache_path(cache_dir: str | os.PathLike, split: str, settings: dict[str, Any], images_dir: str | os.PathLike) -> Path:
    """One cache file per images folder and detector settings; it grows as more of the folder is seen."""
    digest = hashlib.sha1(f"{os.path.abspath(images_dir)}|{json.dumps(settings, sort_keys=True)}".encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{split}-{settings['name']}-{digest}.json"


def _digest(images: dict) -> str:
    return hashlib.sha1(json.dumps(images, sort_keys=True).encode()).hexdigest()


def read_cache(path: str | os.PathLike, *, settings: dict[str, Any] | None = None,
               folder: str | os.PathLike | None = None) -> dict[str, tuple[str, ImageFaces]]:
    """fname -> (file stamp, faces) from a cache file; empty when it is missing, damaged or of another version.

    A damaged file (unreadable, its digest not matching its records: a flipped byte that still parses)
    or one of other detector settings or another folder (another file's bytes) is named in one line and
    made again, never trusted. Files written before the digest and folder were recorded are read as before."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("version") != CACHE_VERSION:
            return {}  # another version of the kit's: made again, nothing wrong with it
        images = data["images"]
        if "digest" in data and data["digest"] != _digest(images):
            raise ValueError("its records do not match its digest")
        want = None if settings is None else json.loads(json.dumps(settings))
        if want is not None and data.get("detector") != want:
            got = data.get("detector") if isinstance(data.get("detector"), dict) else {}
            diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            raise ValueError(f"it holds detections of other detector settings ({', '.join(diff)} differ)")
        if folder is not None and data.get("folder") not in (None, os.path.abspath(folder)):
            raise ValueError(f"it holds the detections of {data.get('folder')}, not {os.path.abspath(folder)}")
        return {f: (r["stamp"], ImageFaces.from_dict(f, r)) for f, r in images.items()}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError, OSError) as exc:
        from .cache_entries import say

        say(f"detections cache {path} is damaged ({type(exc).__name__}: {exc}); detecting its faces again")
        return {}  # a damaged cache is made again, never trusted


def write_cache(path: str | os.PathLike, settings: dict[str, Any], entries: dict[str, tuple[str, ImageFaces]],
                folder: str | os.PathLike | None = None) -> Path:
    images = {f: {"stamp": stamp, **record.to_dict()} for f, (stamp, record) in sorted(entries.items())}
    images = json.loads(json.dumps(images, default=_json_default))  # the digest is of what is read back (tuples become lists)
    record = {"version": CACHE_VERSION, "detector": settings, "digest": _digest(images), "images": images}
    if folder is not None:  # `fivek cache` tells a stale file by it
        record["folder"] = os.path.abspath(folder)
    return atomic_write_json(path, record)
