"""The two heads and the 5K rule: what the task's labels are, in one place (no Keras here).

`5k = mask AND distancing` on every fully labelled row of the official file, so the kit
predicts the two heads and derives 5K from them.
"""

from __future__ import annotations

import numpy as np

HEADS = ("mask", "distancing")
MISSING = -1  # how a blank label is encoded in label arrays


def combine_5k(p_mask, p_distancing):
    """P(5K) = P(mask) * P(distancing): both must hold; the heads are treated as independent."""
    return np.asarray(p_mask, dtype="float64") * np.asarray(p_distancing, dtype="float64")


def decide_5k(p_mask, p_distancing, t_mask: float = 0.5, t_distancing: float = 0.5) -> np.ndarray:
    """5K = 1 exactly when both heads clear their thresholds, as 5k = mask AND distancing."""
    return ((np.asarray(p_mask) >= t_mask) & (np.asarray(p_distancing) >= t_distancing)).astype("int64")
