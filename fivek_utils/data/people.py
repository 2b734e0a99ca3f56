"""What the face boxes say about distancing: how many people, how large their faces are, and how far
apart they stand measured in face sizes.

A gap in pixels means nothing without a scale: two people a metre apart are 200 px apart near the
camera and 40 px far from it. Faces are about the same size on everyone, so the distance between two
face centres divided by their mean face height is a distance in "faces" whatever the depth, and the
ratio of two face heights says how differently far from the camera they stand (a depth cue).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .faces import Detections, ImageFaces

# features of every image; for an image with one face the pair features take the "far apart" values
PEOPLE_FEATURES = ("faces", "single", "face_min", "face_max", "gap_min", "gap_median", "size_ratio_max")
GAP_CAP = 12.0  # gaps beyond this many face heights all read as "far apart"


def image_people_features(record: ImageFaces) -> dict[str, float]:
    """The people features of one image (NaN everywhere when it has no face)."""
    faces = record.faces
    n = len(faces)
    if n == 0:
        return {k: (0.0 if k == "faces" else np.nan) for k in PEOPLE_FEATURES}
    longer = float(max(record.width, record.height, 1))
    heights = np.array([max(f.height, 1e-6) for f in faces])
    centres = np.array([f.centre for f in faces])
    out = {"faces": float(n), "single": float(n == 1), "face_min": heights.min() / longer, "face_max": heights.max() / longer}
    if n == 1:
        return {**out, "gap_min": GAP_CAP, "gap_median": GAP_CAP, "size_ratio_max": 1.0}
    i, j = np.triu_indices(n, k=1)
    gaps = np.hypot(*(centres[i] - centres[j]).T) / ((heights[i] + heights[j]) / 2)
    ratios = np.maximum(heights[i], heights[j]) / np.minimum(heights[i], heights[j])
    return {**out, "gap_min": float(min(gaps.min(), GAP_CAP)), "gap_median": float(min(np.median(gaps), GAP_CAP)),
            "size_ratio_max": float(ratios.max())}


def people_features(detections: Detections, fnames: Sequence[str]) -> pd.DataFrame:
    """One row of `PEOPLE_FEATURES` per image of `fnames`, in that order."""
    return pd.DataFrame([image_people_features(detections[f]) for f in fnames], columns=list(PEOPLE_FEATURES))
