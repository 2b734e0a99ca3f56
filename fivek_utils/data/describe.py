"""`fivek describe`: a JSON summary of a dataset in the official layout."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.environment import cpu_count
from .images import HASH_SIDE, ImageReadError, duplicate_groups, image_info, open_rgb, phash
from .meta import SPLITS, available_splits, files_not_in_meta, label_counts, load_meta, split_paths


def _size_summary(infos: list[dict]) -> dict:
    if not infos:
        return {}
    w = np.array([i["width"] for i in infos], dtype=float)
    h = np.array([i["height"] for i in infos], dtype=float)
    ar = w / h

    def q(a):
        return {k: round(float(v), 3) for k, v in zip(("min", "p25", "median", "p75", "max"), np.percentile(a, [0, 25, 50, 75, 100]))}

    return {
        "width": q(w),
        "height": q(h),
        "aspect_w_over_h": q(ar),
        "orientation": {
            "landscape": int((ar > 1.05).sum()),
            "square": int(((ar >= 0.95) & (ar <= 1.05)).sum()),
            "portrait": int((ar < 0.95).sum()),
        },
        "formats": dict(Counter(i["format"] for i in infos)),
        "modes": dict(Counter(i["mode"] for i in infos)),
    }


def image_table(df: pd.DataFrame, num_workers: int = 0, *, hashes: bool = False, progress: bool = False) -> pd.DataFrame:
    """Per row: whether the file exists and decodes, its format, mode and size, and with
    `hashes` its perceptual hash (0 where it does not decode). Each image is decoded once, small (JPEGs reduced while
    decoding), which still reads every byte and so catches truncated files."""
    from tqdm.auto import tqdm

    none = {"phash": np.uint64(0)} if hashes else {}  # 0: no duplicate group (see duplicate_groups)

    def info(p: str) -> dict:
        if not os.path.isfile(p):  # a blank fname points at the folder itself
            return {"status": "missing", **none}
        try:
            row = {"status": "ok", **image_info(p)}
            image = open_rgb(p, max_side=HASH_SIDE)
            return {**row, "phash": phash(image)} if hashes else row
        except ImageReadError as exc:
            return {"status": "unreadable", "error": str(exc), **none}

    with ThreadPoolExecutor(num_workers or cpu_count()) as pool:
        rows = list(tqdm(pool.map(info, df["path"]), total=len(df), desc="images", disable=not progress, leave=False))
    return pd.DataFrame(rows, index=df.index)


def describe_split(root: str | os.PathLike, split: str, *, duplicates: bool = True, progress: bool = False,
                   table: pd.DataFrame | None = None) -> dict:
    """Summary of one split: labels (train), images found/missing/unreadable, sizes, duplicates.

    `table` is this split's `image_table` when the caller has made it already (notebook 01 does,
    for its own plots): each image is then decoded once, not twice.
    """
    df = load_meta(root, split, check_files=False, strict=False)
    problems = df.attrs["problems"]
    out: dict = {"rows": len(df), "meta_file": df.attrs["meta_path"]}
    if split == "train":
        out["labels"] = label_counts(df)
    out["problems"] = {p.kind: len(p.rows) for p in problems}
    if problems:
        out["problem_details"] = [p.describe(Path(df.attrs["meta_path"]), df) for p in problems]
    contradictions = next((p for p in problems if p.kind == "contradiction"), None)
    out["contradictions"] = len(contradictions.rows) if contradictions else 0

    images_dir = split_paths(root, split)[0]
    if not images_dir.is_dir():
        out["images"] = {"found": 0, "missing": len(df), "unreadable": 0, "note": f"no images folder at {images_dir}"}
        return out
    reusable = table is not None and table.index.equals(df.index) and (not duplicates or "phash" in table)
    table = table if reusable else image_table(df, hashes=duplicates, progress=progress)
    status = table["status"]
    unreadable = table.loc[status == "unreadable", "error"].tolist() if "error" in table else []
    out["images"] = {
        "found": int((status != "missing").sum()),
        "missing": int((status == "missing").sum()),
        "unreadable": int((status == "unreadable").sum()),
        "first_missing": df.loc[status == "missing", "fname"].head(5).tolist(),
        "first_unreadable": unreadable[:5],
        "extra_files_not_in_meta": len(files_not_in_meta(images_dir, df["fname"])),
    }
    readable = table[status == "ok"]
    out["image_sizes"] = _size_summary(readable.to_dict("records"))
    if duplicates and len(readable):
        groups = duplicate_groups(readable["phash"].to_numpy(dtype=np.uint64))
        sizes = Counter(groups)
        multi = {g: n for g, n in sizes.items() if n > 1}
        out["duplicates"] = {
            "groups": len(multi),
            "images_in_groups": int(sum(multi.values())),
            "redundant_images": int(sum(n - 1 for n in multi.values())),
            "largest_group": int(max(multi.values(), default=1)),
        }
    return out


def describe_dataset(root: str | os.PathLike, *, duplicates: bool = True, progress: bool = False,
                     tables: dict[str, pd.DataFrame] | None = None) -> dict:
    """Summary of every split found under `root` (the official layout); `tables` holds image tables
    already made, by split (see `describe_split`)."""
    root = Path(root)
    splits = available_splits(root)
    if not splits:
        raise FileNotFoundError(
            f"no split found under {root}: expected {root}/train/train_meta.csv and/or "
            f"{root}/public_test/public_test_meta.csv (see data/README.md)"
        )
    tables = tables or {}
    out = {"root": str(root), "splits": {s: describe_split(root, s, duplicates=duplicates, progress=progress,
                                                          table=tables.get(s)) for s in splits}}
    orphans = [s for s in SPLITS if s not in splits and split_paths(root, s)[0].is_dir()]
    if orphans:
        out["warnings"] = [f"{split_paths(root, s)[0]} exists but {split_paths(root, s)[1].name} does not: "
                           f"the {s} split is left out" for s in orphans]
    return out
