"""Square face crops: a margin around each detected face, cut from the photo at full detail and
resized to a small side, for the face-crop mask model.

A crop is `margin` times the longer side of the face box, centred on the box, so the chin, the nose
and whatever covers them are inside; parts of the square beyond the photo are filled with the
letterbox grey. Crops are cut from the photo itself, never from the small letterboxed training
images; a JPEG larger than `DECODE_SIDE` is reduced while decoding (libjpeg's draft mode, by 2, 4
or 8), so a face of a few dozen pixels in a very large photo is cut from a reduced copy.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..core.environment import cpu_count
from ..core.io import DiskFullError, atomic_path
from .faces import Detections, Face
from .images import PAD_VALUE, ImageReadError, open_rgb

DECODE_SIDE = 1600  # photos are decoded with their longer side reduced to about this much at most


def square_box(box: Sequence[float], margin: float) -> tuple[float, float, float, float]:
    """The square of side `margin` x the box's longer side, centred on the box."""
    x0, y0, x1, y1 = box
    side = margin * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def crop_square(image: Image.Image, box: Sequence[float], size: int, margin: float = 1.3) -> np.ndarray:
    """One (size, size, 3) uint8 crop of `image` around `box` (pixels of `image`)."""
    sx0, sy0, sx1, sy1 = square_box(box, margin)
    side = max(1, round(sx1 - sx0))
    left, top = round(sx0), round(sy0)
    canvas = Image.new("RGB", (side, side), (PAD_VALUE,) * 3)
    inside = (max(0, left), max(0, top), min(image.width, left + side), min(image.height, top + side))
    if inside[2] > inside[0] and inside[3] > inside[1]:
        canvas.paste(image.crop(inside), (inside[0] - left, inside[1] - top))
    return np.asarray(canvas.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.uint8)


@dataclass
class FaceCrops:
    """Every face crop of a list of images, in image order, and which image each one belongs to."""

    crops: np.ndarray  # (F, size, size, 3) uint8
    image_index: np.ndarray  # (F,) row of the image in the list the crops were made for
    counts: np.ndarray  # (N,) crops per image (0: no face found, or the image could not be read)
    errors: dict[int, str] = field(default_factory=dict)  # row -> why it has no crops although faces were found

    @property
    def size(self) -> int:
        return int(self.crops.shape[1])

    def __len__(self) -> int:
        return len(self.counts)

    def subset(self, rows: np.ndarray) -> "FaceCrops":
        """The crops of the images at `rows`, re-indexed to that order."""
        rows = np.asarray(rows, dtype=int)
        starts = np.concatenate([[0], np.cumsum(self.counts)])
        take = np.concatenate([np.arange(starts[r], starts[r + 1]) for r in rows]) if len(rows) else np.zeros(0, int)
        counts = self.counts[rows]
        index = np.repeat(np.arange(len(rows)), counts)
        errors = {i: self.errors[r] for i, r in enumerate(rows) if r in self.errors}
        return FaceCrops(self.crops[take.astype(int)], index, counts, errors)


def ordered_faces(faces: list[Face], max_faces: int | None) -> list[Face]:
    """Largest faces first (the detector's order is arbitrary); at most `max_faces`."""
    faces = sorted(faces, key=lambda f: -f.height)
    return faces[:max_faces] if max_faces else faces


def extract_crops(
    paths: Sequence[str | os.PathLike],
    fnames: Sequence[str],
    detections: Detections,
    size: int,
    *,
    margin: float = 1.3,
    max_faces: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> FaceCrops:
    """Cut every detected face of `fnames` (largest first, at most `max_faces` per image) out of its photo.

    An image that cannot be read now gets no crops and is named in `errors`; its row stays.
    """
    from tqdm.auto import tqdm

    per_image: list[np.ndarray] = [np.zeros((0, size, size, 3), np.uint8)] * len(paths)
    errors: dict[int, str] = {}

    def work(i: int) -> None:
        record = detections[fnames[i]]
        faces = ordered_faces(record.faces, max_faces)
        if not faces:
            return
        try:
            image = open_rgb(paths[i], max_side=DECODE_SIDE)
        except ImageReadError as exc:
            errors[i] = str(exc)
            return
        scale = image.width / max(record.width, 1)  # boxes are in original pixels
        per_image[i] = np.stack([crop_square(image, [v * scale for v in f.box], size, margin) for f in faces])

    with ThreadPoolExecutor(num_workers if num_workers > 0 else cpu_count()) as pool:
        list(tqdm(pool.map(work, range(len(paths))), total=len(paths), desc=f"face crops {size}px",
                  disable=not progress, leave=False))
    counts = np.array([len(c) for c in per_image], dtype=int)
    crops = np.concatenate(per_image) if counts.sum() else np.zeros((0, size, size, 3), np.uint8)
    return FaceCrops(crops, np.repeat(np.arange(len(paths)), counts), counts, dict(sorted(errors.items())))


def load_crops(
    paths: Sequence[str | os.PathLike],
    fnames: Sequence[str],
    detections: Detections,
    size: int,
    *,
    detections_key: str,
    margin: float = 1.3,
    max_faces: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> FaceCrops:
    """`extract_crops` with an on-disk cache keyed by the detections, the images' order, size and margin
    (kept beside the decoded images, in `core.config.CACHE_DIR`: a temporary folder on Kaggle)."""
    if cache_dir is None:
        return extract_crops(paths, fnames, detections, size, margin=margin, max_faces=max_faces,
                             num_workers=num_workers, progress=progress)
    from ..core.locks import hold_lock

    h = hashlib.sha1(f"crops-v1|{detections_key}|{size}|{margin}|{max_faces}|{PAD_VALUE}".encode())
    h.update("\n".join(map(str, fnames)).encode())
    cache = Path(cache_dir) / f"crops-{h.hexdigest()[:16]}_{size}.npz"
    if cache.exists():
        return _read(cache)
    with hold_lock(cache, wait=True):  # two runs at once: one crops, the other waits and reads its file
        if cache.exists():
            return _read(cache)
        made = extract_crops(paths, fnames, detections, size, margin=margin, max_faces=max_faces,
                             num_workers=num_workers, progress=progress)
        try:
            with atomic_path(cache) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, crops=made.crops, image_index=made.image_index, counts=made.counts,
                             err_rows=np.array(list(made.errors), dtype=np.int64),
                             err_msgs=np.array(list(made.errors.values()), dtype=str))
        except DiskFullError as exc:  # the crops are in memory: a cache that does not fit costs a crop next time
            warnings.warn(f"face crops not cached: {exc}", stacklevel=2)
        return made


def _read(cache: Path) -> FaceCrops:
    with np.load(cache, allow_pickle=False) as z:
        errors = {int(k): str(v) for k, v in zip(z["err_rows"], z["err_msgs"])}
        return FaceCrops(z["crops"], z["image_index"], z["counts"], errors)
