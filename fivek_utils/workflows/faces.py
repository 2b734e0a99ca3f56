"""Faces of a whole split, found once: the detector runs over every image with a progress bar and
its answers are cached in data/interim/faces/ (boxes, confidences, landmarks and the detector's
settings), keyed by the files and the settings. `fivek faces DIR` and notebook 01 use it; notebook
05 crops the faces it found for the face-crop mask model.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core.config import INTERIM_DATA_DIR, Config
from ..core.io import DiskFullError
from ..data.faces import (DetectionError, Detections, ImageFaces, cache_path, detections_key, file_stamp, read_cache,
                          write_cache)
from ..data.images import ImageReadError, image_info, open_rgb
from ..data.meta import load_meta, split_paths
from ..modeling.face_detector import OPTIONS, make_detector

FACES_DIR = INTERIM_DATA_DIR / "faces"
DEFAULT = "default"  # cache_dir: FACES_DIR as it is when called
# a detector option -> the config field that sets it (BlazeFace's tile overlap has none: its default)
CONFIG_FIELDS = {"upscale": "face_upscale", "model": "face_detector_model", "min_support": "face_min_support"}


@dataclass
class SplitFaces:
    """A split's detections and the cache key that names them (crops are keyed by it)."""

    detections: Detections
    key: str
    path: Path | None  # the cache file


def detector_settings(cfg: Config) -> dict[str, Any]:
    """The detector settings of a config, as `make_detector` takes them: the common ones, then the options
    of its detector (`face_detector.OPTIONS`) that a config sets."""
    out: dict[str, Any] = {"min_face_size": cfg.face_min_size, "min_confidence": cfg.face_min_confidence}
    own = OPTIONS.get(cfg.face_detector, ())
    out.update({option: getattr(cfg, field) for option, field in CONFIG_FIELDS.items() if option in own})
    return out


def detector_for(cfg_or_name: Config | str, data_dir: str | os.PathLike, split: str = "train", **settings):
    """The detector a config (face_detector and its settings) or a name asks for; `truth` reads the
    split's scenes.jsonl."""
    if isinstance(cfg_or_name, Config):
        name = cfg_or_name.face_detector
        settings = {**detector_settings(cfg_or_name), **settings}
    else:
        name = cfg_or_name
    return make_detector(name, scenes_path=Path(data_dir) / split / "scenes.jsonl", **settings)


def detect_images(paths: Sequence[str | os.PathLike], fnames: Sequence[str], detector, *, progress: bool = True,
                  desc: str = "faces") -> Detections:
    """Run `detector` on every image. An image that cannot be read, or that the detector cannot place,
    gets no faces and its error; it never stops the run. Any other error of the detector (a broken
    install, say) does, so that it is never cached as "no face"."""
    from tqdm.auto import tqdm

    images: dict[str, ImageFaces] = {}
    for path, fname in tqdm(list(zip(paths, fnames)), desc=f"{desc} ({detector.name})", disable=not progress, leave=False):
        try:
            info = image_info(path)
            width, height = info["width"], info["height"]
        except (ImageReadError, FileNotFoundError) as exc:
            images[fname] = ImageFaces(fname, 0, 0, [], str(exc))
            continue
        try:
            if detector.needs_pixels:  # a reduced decode of a big JPEG; boxes come back in the original's pixels
                image = open_rgb(path, max_side=getattr(detector, "max_side", None))
                faces = detector.detect(fname, image, (width, height))
            else:
                faces = detector.detect(fname)
                drawn = detector.size(fname)
                if drawn and drawn != (width, height):
                    raise DetectionError(f"{path} is {width}x{height} px but scenes.jsonl drew it {drawn[0]}x{drawn[1]}")
        except (ImageReadError, DetectionError) as exc:  # that image only; a broken detector stops the run
            images[fname] = ImageFaces(fname, width, height, [], f"{type(exc).__name__}: {exc}")
            continue
        images[fname] = ImageFaces(fname, width, height, faces)
    return Detections(detector.settings, images)


def detect_split(paths: Sequence[str | os.PathLike], fnames: Sequence[str], detector, split: str, *,
                 cache_dir: str | os.PathLike | None = DEFAULT, progress: bool = True) -> SplitFaces:
    """`detect_images` for the images not yet in the cache of their folder and detector settings (an
    image whose file changed is looked at again); the answers for `fnames` in that order."""
    key = detections_key(paths, detector.settings)
    cache_dir = FACES_DIR if cache_dir == DEFAULT else cache_dir
    if cache_dir is None:
        return SplitFaces(detect_images(paths, fnames, detector, progress=progress, desc=split), key, None)
    folders = {str(Path(p).parent) for p in paths}
    folder = folders.pop() if len(folders) == 1 else os.path.commonpath(list(folders) or ["."])
    path = cache_path(cache_dir, split, detector.settings, folder)
    cached = read_cache(path, settings=detector.settings, folder=folder)
    stamps = [file_stamp(p) for p in paths]
    todo = [i for i, (f, st) in enumerate(zip(fnames, stamps)) if f not in cached or cached[f][0] != st]
    if todo:
        found = detect_images([paths[i] for i in todo], [fnames[i] for i in todo], detector, progress=progress, desc=split)
        cached.update({fnames[i]: (stamps[i], found[fnames[i]]) for i in todo})
        try:
            write_cache(path, detector.settings, cached, folder)
        except DiskFullError as exc:  # the detections are in memory: a cache that does not fit costs a detection next time
            warnings.warn(f"face detections not cached: {exc}", stacklevel=2)
    return SplitFaces(Detections(detector.settings, {f: cached[f][1] for f in fnames}), key, path)


def detect_dataset(data_dir: str | os.PathLike, split: str = "train", detector: str = "mtcnn", *, sample: int = 0,
                   progress: bool = True, cache_dir: str | os.PathLike | None = DEFAULT, **settings) -> SplitFaces:
    """The faces of one split of a dataset in the official layout (`fivek faces`, notebook 01); with
    `sample`, of that many of its images (seeded), the rest left for later."""
    root = Path(data_dir)
    split_paths(root, split)  # names the missing folder or meta file
    df = load_meta(root, split, check_files=False)
    if 0 < sample < len(df):
        df = df.sample(n=sample, random_state=0).sort_index()
    return detect_split(df["path"].tolist(), df["fname"].tolist(), detector_for(detector, root, split, **settings),
                        split, cache_dir=cache_dir, progress=progress)


def score_dataset(data_dir: str | os.PathLike, boxes_file: str | os.PathLike, split: str = "train",
                  detector: str = "blazeface", *, sample: int = 0, out: str | os.PathLike | None = None,
                  progress: bool = True, **settings) -> dict[str, Any]:
    """`fivek faces DIR --boxes FILE`: run the detector afresh on a split's photos (timed: the cache is
    neither read nor written) and score it against the annotated faces (`data.face_truth`)."""
    import time

    from ..core.io import atomic_write_json
    from ..data.face_truth import boxes_for, load_boxes, score_detections

    root = Path(data_dir)
    split_paths(root, split)
    df = load_meta(root, split, check_files=False)
    every = df["fname"].tolist()  # the boxes may cover photos a sample leaves out
    if 0 < sample < len(df):
        df = df.sample(n=sample, random_state=0).sort_index()
    boxes = load_boxes(boxes_file, every)
    unknown = sorted(set(boxes["fname"]) - set(every))
    if unknown:
        raise ValueError(f"{boxes_file} has boxes for {len(unknown)} photo(s) that are not in {root / split}, e.g. "
                         f"{unknown[:3]}: is it the boxes file of another set?")
    det = detector_for(detector, root, split, **settings)
    paths, fnames = df["path"].tolist(), df["fname"].tolist()
    if paths:  # one photo first: the model's first call pays for its set-up, not the timing
        detect_images(paths[:1], fnames[:1], det, progress=False)
    t0 = time.perf_counter()
    found = detect_images(paths, fnames, det, progress=progress, desc=f"{split} scored")
    scores = score_detections(found, boxes_for(boxes, fnames), seconds=time.perf_counter() - t0)
    scores["boxes_file"] = str(boxes_file)
    if out:
        atomic_write_json(out, scores)
    return scores


def faces_table(detections: Detections) -> pd.DataFrame:
    """One row per face: fname, its box, height in pixels and as a share of the photo's longer side."""
    rows = [{"fname": r.fname, "x0": f.box[0], "y0": f.box[1], "x1": f.box[2], "y1": f.box[3], "confidence": f.confidence,
             "height_px": f.height, "height_share": f.height / max(r.width, r.height, 1)}
            for r in detections.images.values() for f in r.faces]
    return pd.DataFrame(rows, columns=["fname", "x0", "y0", "x1", "y1", "confidence", "height_px", "height_share"])


# --- figures ------------------------------------------------------------------------------------
def show_photo(ax, path: str | os.PathLike, fname: str, record: ImageFaces, side: int) -> float | None:
    """Draw a photo reduced to `side` on `ax`; the factor from its original pixels (the boxes') to the
    drawing, or None when it cannot be read (the axis then says so)."""
    try:
        image = open_rgb(path, max_side=side)
    except ImageReadError:
        ax.set_title(f"{fname}: unreadable", fontsize=8)
        return None
    image.thumbnail((side, side))
    ax.imshow(image)
    return image.width / max(record.width, 1)


def plot_faces(paths: Sequence[str | os.PathLike], fnames: Sequence[str], detections: Detections, *,
               ncols: int = 4, side: int = 320, boxes: pd.DataFrame | None = None, name: str | None = None,
               title: str = ""):
    """Photos with their detected face boxes drawn (and the confidence above each box); with `boxes`
    (annotated faces, `data.face_truth.load_boxes`), those too, dashed: a face with a dashed box only
    is one the detector missed."""
    from matplotlib.patches import Rectangle

    from ..core.plots import image_grid, save_figure

    fig, axes = image_grid(len(paths), ncols, (3.2, 2.9))
    for ax, path, fname in zip(axes, paths, fnames):
        record = detections[fname]
        scale = show_photo(ax, path, fname, record, side)
        if scale is None:
            continue
        if boxes is not None:
            for _, b in boxes[boxes["fname"] == fname].iterrows():
                colour = "#38b000" if b["state"] == "with_mask" else "#e63946"
                ax.add_patch(Rectangle((b["x0"] * scale, b["y0"] * scale), (b["x1"] - b["x0"]) * scale,
                                       (b["y1"] - b["y0"]) * scale, fill=False, ec=colour, lw=1.0, ls="--"))
        for f in record.faces:
            x0, y0, x1, y1 = (v * scale for v in f.box)
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="#ffd000", lw=1.6))
            if detections.detector.get("name") != "truth":
                ax.text(x0, y0 - 2, f"{f.confidence:.2f}", color="#ffd000", fontsize=6, va="bottom")
        ax.set_title(f"{fname}: {len(record.faces)} face(s)", fontsize=8)
    fig.suptitle(title or f"faces found by {detections.detector.get('name')}"
                 + (" (dashed: annotated, green masked, red not)" if boxes is not None else ""))
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_face_counts(detections: Detections, name: str | None = None, title: str = ""):
    """Histogram of faces per image and of face heights (share of the photo's longer side)."""
    import matplotlib.pyplot as plt

    from ..core.plots import save_figure

    counts = detections.counts()
    table = faces_table(detections)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    top = int(max(counts.max(initial=0), 1))
    a.hist(counts, bins=np.arange(-0.5, top + 1.5), color="#457b9d", rwidth=0.85)
    a.set_xlabel("faces in the image")
    a.set_ylabel("images")
    a.set_title(f"faces per image ({int((counts == 0).sum())} of {len(counts)} with none)")
    if len(table):
        b.hist(table["height_share"] * 100, bins=30, color="#2a9d8f")
    b.set_xlabel("face height, % of the photo's longer side")
    b.set_title(f"{len(table)} faces")
    fig.suptitle(title or f"detector: {detections.detector.get('name')}")
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def summarise(split_faces: SplitFaces) -> dict[str, Any]:
    """What `fivek faces` prints: the summary and where the cache lives."""
    out = split_faces.detections.summary()
    errors = split_faces.detections.errors
    if errors:
        out["unreadable_or_unplaced"] = dict(list(errors.items())[:10])
    out["cache"] = str(split_faces.path) if split_faces.path else None
    return out
