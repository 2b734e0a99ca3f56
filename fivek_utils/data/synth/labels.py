"""The labels: the official file's balance and blank rates, the rules that give a scene its `mask`
and `distancing` labels, and blanks as the official file leaves them."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from .scene import Person, Scene

# the official train_meta.csv (FACTS.md section 1): fully labelled (mask, distancing) counts, blank rates
PAIR_COUNTS = {(1, 1): 996, (1, 0): 502, (0, 0): 461, (0, 1): 209}
MASK_BLANK_RATE = 734 / 4175
DISTANCING_BLANK_RATE = 1273 / 4175

SAFE_WIDTHS = 2.5  # safe when centres are >= 2.5 mean shoulder widths apart on the ground
MIN_SEP_WIDTHS = 0.9  # closer than this, two bodies would stand inside each other
AMBIGUOUS_BAND = (0.85, 1.15)  # the sampler keeps pair distances out of this band (x the safe distance)
MASK_STATES = ("proper", "below_nose", "chin", "none")
LABELS = ("mask", "distancing", "5k")


def ground_distance(a: Person, b: Person) -> float:
    """Distance between two people on the ground plane, metres."""
    return math.hypot(a.x - b.x, a.z - b.z)


def safe_distance(a: Person, b: Person) -> float:
    """The distance a pair must keep: SAFE_WIDTHS of their mean shoulder width."""
    return SAFE_WIDTHS * (a.width + b.width) / 2


def wears_mask(person: Person) -> bool:
    """Only a mask over the nose counts; below the nose or on the chin is no mask."""
    return person.mask == "proper"


def scene_labels(scene: Scene) -> dict[str, int]:
    """The true `mask` and `distancing` labels, from the scene description only."""
    mask = all(wears_mask(p) for p in scene.people)
    distancing = all(ground_distance(a, b) >= safe_distance(a, b) for a, b in combinations(scene.people, 2))
    return {"mask": int(mask), "distancing": int(distancing)}


def blank_labels(labels_df, rng: np.random.Generator, mask_rate: float = MASK_BLANK_RATE,
                 distancing_rate: float = DISTANCING_BLANK_RATE):
    """Blank labels as the official file does: mask or distancing (never both), and then 5k.

    Exactly round(rate * n) rows lose each label, on disjoint random rows; `5k` is blank
    wherever either is, even where it is implied. Returns a copy with nullable Int64 columns.
    """
    if mask_rate + distancing_rate > 1:
        raise ValueError(f"mask_rate + distancing_rate = {mask_rate + distancing_rate:g} > 1: rows would lose both")
    df = labels_df.copy()
    for col in LABELS:
        df[col] = df[col].astype("Int64")
    order = rng.permutation(len(df))
    n_mask, n_dist = round(mask_rate * len(df)), round(distancing_rate * len(df))
    df.iloc[order[:n_mask], df.columns.get_loc("mask")] = None
    df.iloc[order[n_mask:n_mask + n_dist], df.columns.get_loc("distancing")] = None
    df.loc[df["mask"].isna() | df["distancing"].isna(), "5k"] = None
    return df
