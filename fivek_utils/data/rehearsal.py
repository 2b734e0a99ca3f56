"""The rehearsal's dataset (`fivek rehearse`): synthetic photos of the `realistic` profile plus a few real
photos with faces, in the official Zalo layout and without the generator's `scenes.jsonl`, so the run
sees what a real one sees: photos, labels and nothing else.

Why the real photos: configs/full.yaml finds faces with a detector for photos (RetinaFace), which finds almost none of the generator's
cartoon faces, and the face stage stops when no training photo has a face. The package ships two
public-domain photos with one face each (`resources/photos`); variants of them (mirrored, cropped,
rescaled, lighter or darker) give it faces to find in every split. Their labels are their truth: one
person, no mask (mask 0, distancing 1, 5K 0).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageOps

from ..core.config import PHOTOS_DIR
from ..core.io import atomic_write_json
from ..core.locks import hold_lock
from .synth import META_FILES, generate_dataset

MANIFEST = "rehearsal.json"
VERSION = 1  # bump when a change alters the written bytes
# (file under resources/photos, mask, distancing): one unmasked person each
PHOTOS = (("astronaut.jpg", 0, 1), ("camera.jpg", 0, 1))


def photo_variant(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One variant of a real photo: maybe mirrored, cropped to 80-100% of each side, rescaled to 60-100%
    and made 25% lighter or darker at most. The face stays large enough for a photo detector (face_min_size 12-20)."""
    image = image.convert("RGB")
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    w, h = image.size
    cw, ch = (int(s * rng.uniform(0.8, 1.0)) for s in (w, h))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = image.crop((x0, y0, x0 + cw, y0 + ch))
    scale = rng.uniform(0.6, 1.0)
    image = image.resize((max(64, round(cw * scale)), max(64, round(ch * scale))), Image.Resampling.BILINEAR)
    return ImageEnhance.Brightness(image).enhance(rng.uniform(0.75, 1.25))


def _add_photos(split_dir: Path, split: str, n: int, first_id: int, seed: int) -> list[int]:
    """Append `n` photo variants (cycling through PHOTOS) to a split's images and meta file."""
    rng = np.random.default_rng([seed, 7, 0 if split == "train" else 1])
    meta_path = split_dir / META_FILES[split]
    meta = pd.read_csv(meta_path)
    rows = []
    for i in range(n):
        name, mask, distancing = PHOTOS[i % len(PHOTOS)]
        with Image.open(PHOTOS_DIR / name) as src:
            variant = photo_variant(src, rng)
        image_id = first_id + i
        fname = f"{image_id}.jpg"
        variant.save(split_dir / "images" / fname, "JPEG", quality=90)
        row: dict[str, Any] = {"image_id": image_id, "fname": fname}
        if split == "train":
            row.update(mask=mask, distancing=distancing, **{"5k": mask & distancing})
        rows.append(row)
    out = pd.concat([meta, pd.DataFrame(rows)], ignore_index=True)
    for col in ("mask", "distancing", "5k"):
        if col in out:
            out[col] = out[col].astype("Int64")  # blanks stay blank, labels stay integers
    out.to_csv(meta_path, index=False, lineterminator="\n")
    return [r["image_id"] for r in rows]


def _spec(n_train: int, n_test: int, photos_train: int, photos_test: int, seed: int) -> dict[str, Any]:
    return {"generator": __name__, "version": VERSION, "n_train": n_train, "n_test": n_test,
            "photos_train": photos_train, "photos_test": photos_test, "seed": seed,
            "photos": [p[0] for p in PHOTOS]}


def ensure_rehearsal_dataset(out_dir: str | os.PathLike, n_train: int = 40, n_test: int = 10, *,
                             photos_train: int = 10, photos_test: int = 4, seed: int = 0) -> dict[str, Any]:
    """Write the rehearsal dataset to `out_dir` unless it already holds one made with these settings.

    `n_train` / `n_test` synthetic `realistic` photos, then `photos_train` / `photos_test` variants of
    the shipped real photos. Built in a temporary folder beside `out_dir` and swapped in whole.
    """
    out = Path(out_dir)
    spec = _spec(n_train, n_test, photos_train, photos_test, seed)
    with hold_lock(out, wait=True):
        try:
            if json.loads((out / MANIFEST).read_text()) == spec:
                return {**spec, "out_dir": str(out), "reused": True}
        except (OSError, ValueError):
            pass
        if out.exists() and not (out / MANIFEST).exists():
            raise FileExistsError(f"{out} exists and was not written by the rehearsal; refusing to replace it")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            summary = generate_dataset(tmp, n_train, n_test, seed, profile="realistic", progress=False)
            first = n_train + n_test + 1  # ids continue after the synthetic ones: unique across splits
            ids_train = _add_photos(tmp / "train", "train", photos_train, first, seed)
            ids_test = _add_photos(tmp / "public_test", "public_test", photos_test, first + photos_train, seed)
            for split in META_FILES:  # real data has no scenes: nothing may lean on the generator's truth
                (tmp / split / "scenes.jsonl").unlink(missing_ok=True)
            (tmp / "synth.json").unlink(missing_ok=True)
            atomic_write_json(tmp / MANIFEST, spec)
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {**spec, "out_dir": str(out), "reused": False, "photo_ids": {"train": ids_train, "public_test": ids_test},
            "seconds": summary["seconds"]}
