"""The face model scored against annotated faces (a set with `train/faces.csv`), face by face.

The face stage learns from photo labels only, so the photo AUC mixes three things: how well the model
tells a mask from a face, which faces the detector missed, and the faces it found that nobody annotated
(a false detection, or a person in the background the annotators left out: an unmasked face there makes a
photo labelled "everyone masked" look unmasked to the model). Matching each crop to the annotated boxes
separates them: the per-face mask AUC (with_mask against without_mask and incorrect, by face height),
P(masked) by annotated state, and the photo AUC again with every unannotated detection answered "masked",
which shows what those detections cost against these labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ..core.plots import save_figure
from ..data.face_truth import HEIGHT_BINS, HEIGHT_LABELS, STATES, UNANNOTATED, crop_states
from ..data.faces import Detections
from ..modeling.face_model import bag_probabilities


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def _photo_auc(labels: np.ndarray, bags: np.ndarray) -> float:
    known = (labels >= 0) & np.isfinite(bags)
    return _auc(labels[known].astype(int), bags[known])


@dataclass
class FaceScores:
    """Per-face and per-photo scores of one set of crop probabilities (see `score_face_model`)."""

    faces: pd.DataFrame  # one row per crop: row, fname, height, confidence, state, p (P(masked))
    by_height: pd.DataFrame  # per height bin: annotated faces, unmasked ones, face mask AUC (chance 0.5)
    summary: dict

    def __str__(self) -> str:
        s = self.summary
        return (f"{s['faces']} faces found: {s['annotated']} annotated, face mask AUC {s['face_auc']:.3f} (chance 0.5); "
                f"{s['unannotated']} unannotated, {s['unannotated_called_unmasked']} of them called unmasked "
                f"(P < 0.5), {s['unannotated_called_unmasked_in_masked_photos']} in photos labelled masked; photo mask "
                f"AUC {s['photo_auc']:.3f}, {s['photo_auc_unannotated_masked']:.3f} with every unannotated face "
                "answered masked")


def score_face_model(detections: Detections, boxes: pd.DataFrame, fnames: Sequence[str], crop_probs: np.ndarray,
                     counts: np.ndarray, mask_labels: np.ndarray, *, max_faces: int | None = None) -> FaceScores:
    """Score P(masked) per crop (`crop_probs`, in the crops' order: each photo's faces largest first;
    NaN where a crop has none) against the annotated faces in `boxes`, for the photos `fnames` with
    `counts` crops each and photo mask labels `mask_labels` (-1: blank)."""
    faces = crop_states(detections, boxes, list(fnames), max_faces=max_faces or None)
    crop_probs, counts = np.asarray(crop_probs, float), np.asarray(counts, int)
    if len(counts) != len(fnames):
        raise ValueError(f"{len(counts)} crop counts for {len(fnames)} photos")
    # a photo whose faces were found but not cut (unreadable when cropping: FaceCrops.errors) has no crops
    faces = faces[counts[faces["row"].to_numpy()] > 0].reset_index(drop=True)
    if len(faces) != len(crop_probs) or not np.array_equal(np.bincount(faces["row"], minlength=len(counts)), counts):
        raise ValueError(f"{len(crop_probs)} crop probabilities for {len(faces)} detected faces (crops per photo "
                         "differ): pass the detections and the max_faces the crops were cut with")
    faces["p"] = crop_probs
    scored = faces[np.isfinite(faces["p"]) & (faces["state"] != UNANNOTATED)]
    masked = (scored["state"] == "with_mask").to_numpy().astype(int)
    bins = pd.cut(scored["height"], HEIGHT_BINS, labels=HEIGHT_LABELS, right=False)
    by_height = pd.DataFrame([{"height": str(b), "faces": int((bins == b).sum()),
                               "unmasked": int(((bins == b) & (masked == 0)).sum()),
                               "face_auc": _auc(masked[(bins == b).to_numpy()], scored["p"].to_numpy()[(bins == b).to_numpy()])}
                              for b in HEIGHT_LABELS])
    labels = np.asarray(mask_labels, float)
    other = faces[(faces["state"] == UNANNOTATED) & np.isfinite(faces["p"])]
    low = other[other["p"] < 0.5]
    answered = np.where((faces["state"] == UNANNOTATED).to_numpy(), 1.0, crop_probs)
    summary = {
        "faces": int(len(faces)), "annotated": int(len(scored)), "face_auc": _auc(masked, scored["p"].to_numpy()),
        "mean_p_by_state": {s: round(float(faces.loc[faces["state"] == s, "p"].mean()), 3)
                            for s in (*STATES, UNANNOTATED) if (faces["state"] == s).any()},
        "unannotated": int(len(other)), "unannotated_called_unmasked": int(len(low)),
        "unannotated_called_unmasked_in_masked_photos": int((labels[low["row"].to_numpy()] == 1).sum()),
        "photo_auc": _photo_auc(labels, bag_probabilities(crop_probs, counts)),
        "photo_auc_unannotated_masked": _photo_auc(labels, bag_probabilities(answered, counts)),
    }
    return FaceScores(faces, by_height, summary)


def plot_face_scores(scores: dict[str, FaceScores], name: str | None = None):
    """P(masked) of the faces found, by annotated state (and unannotated), one panel per set of rows."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scores), figsize=(5.2 * len(scores), 3.4), squeeze=False)
    colours = {"with_mask": "#2a9d8f", "without_mask": "#e76f51", "incorrect": "#f4a261", UNANNOTATED: "#777777"}
    edges = np.linspace(0, 1, 21)
    for ax, (title, sc) in zip(axes[0], scores.items()):
        for state, colour in colours.items():
            p = sc.faces.loc[sc.faces["state"] == state, "p"].dropna()
            if len(p):
                ax.hist(p, bins=edges, histtype="step", lw=1.8, color=colour, density=True, label=f"{state} ({len(p)})")
        ax.set_title(f"{title}: face mask AUC {sc.summary['face_auc']:.3f}")
        ax.set_xlabel("P(masked)")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, name)
    return fig
