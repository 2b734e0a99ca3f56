"""Image decoding that survives real photos, the letterbox resize policy, a decode cache and
near-duplicate groups.

Resize policy: keep the aspect ratio and pad (letterbox) to a square. Cropping could cut a
person out of the frame, and "everyone wears a mask" / "everyone keeps distance" are
statements about every person in it; stretching would distort the distances.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

from ..core.environment import cpu_count
from .cache_entries import DamagedEntry, check_meta, expect_array, load_arrays, load_or_make, meta_array

PAD_VALUE = 114  # neutral grey for letterbox padding
# Photos beyond this many pixels are refused as decompression bombs (PIL raises above 2x).
Image.MAX_IMAGE_PIXELS = 200_000_000


class ImageReadError(OSError):
    """An image that cannot be decoded; the message names the file."""


def open_rgb(path: str | os.PathLike, max_side: int | None = None) -> Image.Image:
    """Decode any JPEG/PNG/... (whatever its extension) to an upright RGB image.

    Applies EXIF orientation; turns grayscale, CMYK, RGBA, palette and 16-bit images into
    RGB (transparency over white); with `max_side`, large JPEGs are reduced while decoding
    (libjpeg DCT scaling), so a 50-megapixel photo costs little.
    """
    try:
        with Image.open(path) as im:
            if max_side and im.format == "JPEG":
                im.draft("RGB", (max_side, max_side))  # result stays >= max_side on both sides
            im = _upright(im, path)
            im.load()  # truncated files fail here, not later
            return _to_rgb(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc


def _upright(im: Image.Image, path: str | os.PathLike) -> Image.Image:
    """The image turned as its EXIF orientation says; a broken EXIF block (Pillow then raises whatever its
    parser met: struct.error, TypeError, AttributeError...) leaves it as stored, with a warning naming the
    file, since its pixels are still there."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception as exc:  # noqa: BLE001 - which error depends on the Pillow version and the damage
        warnings.warn(f"{path}: its EXIF block cannot be read ({type(exc).__name__}: {exc}); used as stored, not turned",
                      stacklevel=3)
        return im


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im.copy()
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey (Pillow opens such PNGs as "I" or "I;16"): scaled by the bit depth, as 8-bit images
        # keep theirs, so a dark photo stays dark (scaling by the image's own maximum would make it white)
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8), "L")
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, P without transparency


def letterbox(im: Image.Image, size: int, pad_value: int = PAD_VALUE) -> np.ndarray:
    """Resize keeping the aspect ratio so the longer side is `size`, pad to size x size (centred)."""
    w, h = im.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0)
    canvas = Image.new("RGB", (size, size), (pad_value,) * 3)
    canvas.paste(resized, ((size - nw) // 2, (size - nh) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def read_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """One image as a (size, size, 3) uint8 letterboxed array."""
    return letterbox(open_rgb(path, max_side=size), size)


def image_info(path: str | os.PathLike) -> dict:
    """Format, mode, upright size of an image without decoding its pixels."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
            if orientation in (5, 6, 7, 8):
                w, h = h, w
            return {"format": im.format, "mode": im.mode, "width": w, "height": h}
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc


@dataclass
class DecodedImages:
    """Letterboxed images of a list of paths; `ok[i]` is False where decoding failed."""

    images: np.ndarray  # (N, size, size, 3) uint8
    ok: np.ndarray  # (N,) bool
    errors: dict[int, str]  # row -> message naming the file

    @property
    def n_failed(self) -> int:
        return int((~self.ok).sum())

    def report(self, what: str = "images") -> str:
        if not self.errors:
            return f"decoded {len(self.ok)} {what}, none unreadable"
        first = "; ".join(list(self.errors.values())[:3])
        return f"{self.n_failed} of {len(self.ok)} {what} unreadable (skipped): {first}"


def _workers(num_workers: int) -> int:
    return num_workers if num_workers > 0 else cpu_count()


def decode_images(
    paths: Sequence[str | os.PathLike],
    size: int,
    *,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "decode",
) -> DecodedImages:
    """Decode and letterbox many images in parallel; unreadable files are counted, not fatal."""
    from tqdm.auto import tqdm

    n = len(paths)
    images = np.full((n, size, size, 3), PAD_VALUE, dtype=np.uint8)
    ok = np.ones(n, dtype=bool)
    errors: dict[int, str] = {}

    def work(i: int) -> None:
        try:
            images[i] = read_image(paths[i], size)
        except ImageReadError as exc:
            ok[i] = False
            errors[i] = str(exc)

    # PIL releases the GIL while decoding and resizing, so threads scale across cores.
    with ThreadPoolExecutor(_workers(num_workers)) as pool:
        list(tqdm(pool.map(work, range(n)), total=n, desc=f"{desc} {size}px", disable=not progress, leave=False))
    if errors:
        warnings.warn(f"{len(errors)} of {n} images unreadable; first: {next(iter(errors.values()))}", stacklevel=2)
    return DecodedImages(images, ok, dict(sorted(errors.items())))


def _cache_key(paths: Sequence[str | os.PathLike], size: int) -> str:
    # v2: 16-bit grey scaled by its bit depth and photos with a broken EXIF block decoded (v1 caches are not reused)
    h = hashlib.sha1(f"letterbox-v2|{size}|{PAD_VALUE}".encode())
    for p in paths:
        st = os.stat(p) if os.path.exists(p) else None
        h.update(f"{os.path.abspath(p)}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}\n".encode())
    return h.hexdigest()[:16]


def load_images(
    paths: Sequence[str | os.PathLike],
    size: int,
    *,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "decode",
    cache_max_gb: float | None = None,
) -> DecodedImages:
    """`decode_images` with an on-disk cache keyed by the files (path, size, mtime) and the size.

    Every notebook of a run, every fold and every progressive stage at the same size reuse
    one decode. Two processes filling the same entry at once: one decodes, the other waits for
    it (the entry's lock) and reads its cache. An entry is checked when read and made again
    when damaged (`cache_entries`); after a new entry the cache is kept within `cache_max_gb`
    (default: `core.config.cache_max_gb_default()`; 0 = no bound).
    """
    if cache_dir is None:
        return decode_images(paths, size, num_workers=num_workers, progress=progress, desc=desc)
    from ..core.config import cache_max_gb_default

    key = _cache_key(paths, size)
    cache = Path(cache_dir) / f"{key}_{size}.npz"
    return load_or_make(
        cache, lambda c: _read_cache(c, key=key, size=size, n=len(paths)),
        lambda: _decode_to_cache(paths, size, cache, key=key, num_workers=num_workers, progress=progress, desc=desc),
        what="decode cache entry", max_gb=cache_max_gb_default() if cache_max_gb is None else cache_max_gb)


def _read_cache(cache: Path, *, key: str, size: int, n: int) -> DecodedImages:
    """A decode entry, checked: `DamagedEntry` unless it is readable and holds n images of size px."""
    z = load_arrays(cache, ["images", "ok", "err_rows", "err_msgs"])
    check_meta(z, kind="decode", key=key, size=size, n=n)
    images = expect_array(z, "images", np.uint8, (n, size, size, 3))
    ok = expect_array(z, "ok", np.bool_, (n,))
    rows = expect_array(z, "err_rows", np.int64, (None,))
    msgs = expect_array(z, "err_msgs", str, (len(rows),))
    if len(rows) and (rows.min() < 0 or rows.max() >= n or ok[rows].any()):
        raise DamagedEntry("its unreadable-image rows do not fit its ok flags")
    return DecodedImages(images, ok, {int(k): str(v) for k, v in zip(rows, msgs)})


def _decode_to_cache(paths, size: int, cache: Path, *, key: str, **kwargs) -> DecodedImages:
    from ..core.io import DiskFullError, atomic_path

    meta = meta_array("decode", key, size, paths)  # the stamps the key saw, before decoding
    decoded = decode_images(paths, size, **kwargs)
    try:
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    images=decoded.images,
                    ok=decoded.ok,
                    err_rows=np.array(list(decoded.errors), dtype=np.int64),
                    err_msgs=np.array(list(decoded.errors.values()), dtype=str),
                    meta=meta,
                )
    except DiskFullError as exc:  # the decode is in memory: a cache that does not fit costs a decode next time
        warnings.warn(f"decoded images not cached: {exc}", stacklevel=3)
    return decoded


# --- near-duplicates ---------------------------------------------------------------------------
HASH_SIDE = 128  # images are hashed from a decode at about this size


def phash(image: Image.Image) -> np.uint64:
    """64-bit perceptual hash of a decoded image, as a number (see `duplicate_groups`)."""
    import imagehash

    return np.uint64(int(str(imagehash.phash(image)), 16))


def perceptual_hashes(paths: Sequence[str | os.PathLike], *, num_workers: int = 0, progress: bool = True) -> np.ndarray:
    """64-bit pHash per image as uint64 (0 with a warning for unreadable files)."""
    from tqdm.auto import tqdm

    out = np.zeros(len(paths), dtype=np.uint64)
    bad = np.zeros(len(paths), dtype=bool)

    def work(i: int) -> None:
        try:
            out[i] = phash(open_rgb(paths[i], max_side=HASH_SIDE))
        except ImageReadError:
            bad[i] = True

    with ThreadPoolExecutor(_workers(num_workers)) as pool:
        list(tqdm(pool.map(work, range(len(paths))), total=len(paths), desc="phash", disable=not progress, leave=False))
    out[bad] = 0
    if bad.any():
        warnings.warn(f"{int(bad.sum())} images unreadable while hashing; they get no duplicate group", stacklevel=2)
    return out


def duplicate_groups(hashes: np.ndarray, max_distance: int = 4) -> np.ndarray:
    """Group ids of images whose pHashes differ by <= max_distance bits (connected components).

    Every image gets a group id (the smallest row in its group). Hash 0 (unreadable) never
    joins a group.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    h = np.asarray(hashes, dtype=np.uint64)
    uniq, inverse = np.unique(h, return_inverse=True)  # exact copies are one node
    rows, cols = [], []
    for start in range(0, len(uniq), 1024):  # chunks keep the distance matrix small
        dist = np.bitwise_count(uniq[start : start + 1024, None] ^ uniq[None, :])
        ii, jj = np.nonzero(dist <= max_distance)
        rows.append(ii + start)
        cols.append(jj)
    r, c = np.concatenate(rows), np.concatenate(cols)
    keep = (uniq[r] != 0) & (uniq[c] != 0)
    graph = coo_matrix((np.ones(int(keep.sum())), (r[keep], c[keep])), shape=(len(uniq), len(uniq)))
    _, label = connected_components(graph, directed=False)
    comp = label[inverse]
    comp = np.where(h == 0, -1 - np.arange(len(h)), comp)  # unreadable: each alone
    # name each group by its first row, so ids are stable and readable
    first = {}
    return np.array([first.setdefault(g, i) for i, g in enumerate(comp)])
