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
from .cache_entries import DamagedEntry, check_meta, expect_array, load_arrays, load_or_make, meta_array
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

    def concat(self, other: "FaceCrops") -> "FaceCrops":
        """These images' crops followed by `other`'s (same crop size), re-indexed as one list of images."""
        if len(self.crops) and len(other.crops) and self.crops.shape[1:] != other.crops.shape[1:]:
            raise ValueError(f"crops of {self.crops.shape[1:]} and {other.crops.shape[1:]} cannot share a list")
        n = len(self)
        crops = np.concatenate([self.crops, other.crops.astype(self.crops.dtype)]) if len(other.crops) else self.crops
        return FaceCrops(crops, np.concatenate([self.image_index, other.image_index + n]).astype(int),
                         np.concatenate([self.counts, other.counts]),
                         {**self.errors, **{n + i: m for i, m in other.errors.items()}})


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
    cache_max_gb: float | None = None,
) -> FaceCrops:
    """`extract_crops` with an on-disk cache keyed by the detections, the images' order, size and margin
    (kept beside the decoded images, in `core.config.CACHE_DIR`: a temporary folder on Kaggle). An entry
    is checked when read and made again when damaged; the cache keeps within `cache_max_gb` (as
    `images.load_images`)."""
    if cache_dir is None:
        return extract_crops(paths, fnames, detections, size, margin=margin, max_faces=max_faces,
                             num_workers=num_workers, progress=progress)
    from ..core.config import cache_max_gb_default

    # v2: the photos decode as data.images' letterbox-v2 does (16-bit grey, broken EXIF blocks)
    h = hashlib.sha1(f"crops-v2|{detections_key}|{size}|{margin}|{max_faces}|{PAD_VALUE}".encode())
    h.update("\n".join(map(str, fnames)).encode())
    key = h.hexdigest()[:16]
    cache = Path(cache_dir) / f"crops-{key}_{size}.npz"

    def make() -> FaceCrops:
        meta = meta_array("crops", key, size, paths, detections_key=detections_key)
        made = extract_crops(paths, fnames, detections, size, margin=margin, max_faces=max_faces,
                             num_workers=num_workers, progress=progress)
        try:
            with atomic_path(cache) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, crops=made.crops, image_index=made.image_index, counts=made.counts,
                             err_rows=np.array(list(made.errors), dtype=np.int64),
                             err_msgs=np.array(list(made.errors.values()), dtype=str), meta=meta)
        except DiskFullError as exc:  # the crops are in memory: a cache that does not fit costs a crop next time
            warnings.warn(f"face crops not cached: {exc}", stacklevel=3)
        return made

    # two runs at once: one crops, the other waits and reads its file
    return load_or_make(cache, lambda c: _read(c, key=key, size=size, n=len(fnames)), make, what="face-crops cache entry",
                        max_gb=cache_max_gb_default() if cache_max_gb is None else cache_max_gb)


def _read(cache: Path, *, key: str, size: int, n: int) -> FaceCrops:
    """A crops entry, checked: `DamagedEntry` unless it is readable, its crops are size px, it has a count
    for each of the n images, the counts add up to its crops and each crop's image row follows from them."""
    z = load_arrays(cache, ["crops", "image_index", "counts", "err_rows", "err_msgs"])
    check_meta(z, kind="crops", key=key, size=size, n=n)
    counts = z["counts"]
    if counts.dtype.kind not in "iu" or counts.shape != (n,) or (n and counts.min() < 0):
        raise DamagedEntry(f"array 'counts' is {counts.dtype} {counts.shape}, expected {n} counts of at least 0")
    total = int(counts.sum())
    crops = expect_array(z, "crops", np.uint8, (total, size, size, 3))
    index = z["image_index"]
    if index.dtype.kind not in "iu" or not np.array_equal(index, np.repeat(np.arange(n), counts)):
        raise DamagedEntry("its image_index does not follow from its counts")
    rows = expect_array(z, "err_rows", np.int64, (None,))
    msgs = expect_array(z, "err_msgs", str, (len(rows),))
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        raise DamagedEntry("its error rows are outside its images")
    return FaceCrops(crops, index, counts, {int(k): str(v) for k, v in zip(rows, msgs)})
