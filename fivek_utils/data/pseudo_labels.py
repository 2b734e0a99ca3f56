"""Pseudo-labels for self-training (Noisy Student): a teacher's probabilities fill the blank labels, and
how good those labels are where the truth is known.

A label the data states is never replaced: only blank heads (-1) are filled, so a known 0 still makes
5K = 0 whatever the other head's pseudo-label says. The teacher's probability itself is the target
(soft, as in Xie et al. 2020), or rounded to 0 / 1; a pseudo-label is kept where the teacher is sure
enough, |2p - 1| >= `min_confidence` (0 keeps every one).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from ..core.labels import HEADS, MISSING
from ..core.metrics import always_yes_f1, auc_or_nan


def confidence(probs: np.ndarray) -> np.ndarray:
    """|2p - 1|: 0 for a coin flip, 1 for a certain answer."""
    return np.abs(2.0 * np.asarray(probs, dtype=float) - 1.0)


def fill_blanks(labels: np.ndarray, probs: np.ndarray, *, min_confidence: float = 0.0,
                soft: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(labels with their blank heads filled from `probs`, which entries were filled). A stated label stays;
    a blank whose probability is missing (NaN) or below `min_confidence` stays blank."""
    labels = np.asarray(labels, dtype="float32")
    probs = np.asarray(probs, dtype=float)
    if labels.shape != probs.shape:
        raise ValueError(f"{labels.shape} labels but {probs.shape} teacher probabilities")
    finite = np.isfinite(probs)
    filled = (labels < 0) & finite & (confidence(np.where(finite, probs, 0.5)) >= min_confidence)
    values = probs if soft else np.round(probs)
    out = labels.copy()
    out[filled] = np.clip(values[filled], 0.0, 1.0)
    return out, filled


def truth_for(image_ids, table: pd.DataFrame | None) -> np.ndarray:
    """(N, 2) true labels of `image_ids` from a `data.scenes.read_scenes` table; -1 where unknown."""
    ids = [str(i) for i in image_ids]
    if table is None:
        return np.full((len(ids), len(HEADS)), MISSING, dtype="float32")
    known = table.drop_duplicates("image_id").set_index("image_id")[list(HEADS)]
    return known.reindex(ids).fillna(MISSING).to_numpy(dtype="float32")


def _ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the share-weighted gap between mean probability and the rate of 1s, in
    `bins` equal-width bins of probability."""
    edges = np.minimum((p * bins).astype(int), bins - 1)
    gaps = [abs(p[edges == b].mean() - y[edges == b].mean()) * (edges == b).mean() for b in range(bins) if (edges == b).any()]
    return float(np.sum(gaps))


def pseudo_label_quality(probs: np.ndarray, truth: np.ndarray, filled: np.ndarray) -> pd.DataFrame:
    """Per head, over the entries whose truth is known and that were blank: how many there are, the share
    kept as pseudo-labels, and the kept labels' accuracy (rounded at 0.5) beside what the more common
    label would score on them (`majority_accuracy`), F1 beside the always-"yes" F1 of the same entries, AUC (chance 0.5), Brier score and expected calibration error (ECE)."""
    probs, truth, filled = np.asarray(probs, float), np.asarray(truth, float), np.asarray(filled, bool)
    rows = {}
    for j, head in enumerate(HEADS):
        known = (truth[:, j] >= 0) & np.isfinite(probs[:, j])
        kept = known & filled[:, j]
        y, p = truth[kept, j], probs[kept, j]
        row = {"n": int(known.sum()), "kept": int(kept.sum()),
               "kept_share": float(kept.sum() / known.sum()) if known.any() else np.nan}
        if len(y):
            row |= {"accuracy": float(((p >= 0.5) == (y == 1)).mean()),
                    "majority_accuracy": float(max(y.mean(), 1.0 - y.mean())),
                    "f1": float(f1_score(y, p >= 0.5, zero_division=0)),
                    "f1_always_yes": always_yes_f1(len(y), int(y.sum())),
                    "auc": auc_or_nan(y, p),
                    "brier": float(np.mean((p - y) ** 2)), "ece": _ece(y, p)}
        rows[head] = row
    return pd.DataFrame(rows).T


def accuracy_by_confidence(probs: np.ndarray, truth: np.ndarray, levels=(0.0, 0.2, 0.4, 0.6, 0.8)) -> pd.DataFrame:
    """For each head and each `min_confidence` level: the share of the known entries a pseudo-label would
    be kept for, and those labels' accuracy; how a confidence rule trades coverage for accuracy."""
    probs, truth = np.asarray(probs, float), np.asarray(truth, float)
    rows = []
    for j, head in enumerate(HEADS):
        known = (truth[:, j] >= 0) & np.isfinite(probs[:, j])
        conf = confidence(np.where(known, probs[:, j], 0.5))
        for level in levels:
            kept = known & (conf >= level)
            acc = float(((probs[kept, j] >= 0.5) == (truth[kept, j] == 1)).mean()) if kept.any() else np.nan
            rows.append({"head": head, "min_confidence": level, "n": int(known.sum()),
                         "kept_share": float(kept.sum() / known.sum()) if known.any() else np.nan, "accuracy": acc})
    return pd.DataFrame(rows)
