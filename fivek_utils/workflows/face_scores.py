"""The face model scored against annotated faces (a set with `train/faces.csv`), face by face.

The face stage learns from photo labels only, so the photo AUC mixes three things: how well the model
tells a mask from a face, which faces the detector missed, and the faces it found that nobody annotated
(a false detection, or a person in the background the annotators left out: an unmasked face there makes a
photo labelled "everyone masked" look unmasked to the model). Matching each crop to the annotated boxes
separates them: the per-face mask AUC (with_mask against without_mask and incorrect, by face height, and
against each of the two states), P(masked) by annotated state, the photo AUC of the photos labelled unmasked
by what makes them so (a bare face, or only masks worn below the nose) against the masked ones, the photo
AUC again with every unannotated detection answered "masked", which shows what those detections cost
against these labels, and the face-stage ceiling of the same photos:
the photo AUC of a model that knew every found face's state, which a photo labelled unmasked whose
unmasked faces were all missed caps (so a hold-out of a hundred photos can be told hard from unlucky).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.metrics import auc_or_nan
from ..core.plots import save_figure
from ..data.face_truth import HEIGHT_BINS, HEIGHT_LABELS, STATES, UNANNOTATED, crop_states
from ..data.faces import Detections
from ..modeling.face_model import bag_probabilities


@dataclass
class FaceScores:
    """Per-face and per-photo scores of one set of crop probabilities (see `score_face_model`)."""

    faces: pd.DataFrame  # one row per crop: row, fname, height, confidence, state, annotated_height, p (P(masked))
    by_height: pd.DataFrame  # per annotated height bin: faces, unmasked ones, face mask AUC (chance 0.5)
    summary: dict

    def __str__(self) -> str:
        s = self.summary
        return (f"{s['faces']} faces found and scored: {s['annotated']} annotated, face mask AUC {s['face_auc']:.3f} "
                f"(chance 0.5); {s['unannotated']} unannotated, {s['unannotated_called_unmasked']} of them called "
                f"unmasked (P < 0.5), in {s['masked_photos_with_unannotated_unmasked']} photos labelled masked. Photo "
                f"mask AUC {s['photo_auc']:.3f} on the {s['photos_scored']} photos with a face found "
                f"({s['photos_without_face']} without one left out), {s['photo_auc_unannotated_masked']:.3f} with "
                f"every unannotated face answered masked; face-stage ceiling {s['photo_auc_ceiling']:.3f} on those "
                f"photos (in {s['unmasked_photos_none_found']} of the {s['photos_unmasked']} labelled unmasked, no "
                "annotated unmasked face was found).\n"
                f"Face mask AUC against bare faces {s['face_auc_by_state']['without_mask']:.3f} "
                f"({s['faces_by_state']['without_mask']}), against masks worn wrong "
                f"{s['face_auc_by_state']['incorrect']:.3f} ({s['faces_by_state']['incorrect']}); photo mask AUC "
                f"against the masked photos: photos with a bare face {s['photo_auc_by_kind']['bare']:.3f} "
                f"({s['photos_by_kind']['bare']}), photos whose only unmasked faces wear the mask wrong "
                f"{s['photo_auc_by_kind']['incorrect_only']:.3f} ({s['photos_by_kind']['incorrect_only']})")


def score_face_model(detections: Detections, boxes: pd.DataFrame, fnames: Sequence[str], crop_probs: np.ndarray,
                     counts: np.ndarray, mask_labels: np.ndarray, *, max_faces: int | None = None) -> FaceScores:
    """Score P(masked) per crop (`crop_probs`, in the crops' order: each photo's faces largest first;
    NaN where a crop has none) against the annotated faces in `boxes`, for the photos `fnames` with
    `counts` crops each and photo mask labels `mask_labels` (-1: blank).

    Faces are binned by their annotated height (as `score_detections` bins recall). The photo AUCs are
    taken on the same photos: a known label and every crop scored; photos without a face found are left
    out (counted), since the face model has nothing to say about them."""
    faces = crop_states(detections, boxes, list(fnames), max_faces=max_faces)
    crop_probs, counts = np.asarray(crop_probs, float), np.asarray(counts, int)
    if len(counts) != len(fnames):
        raise ValueError(f"{len(counts)} crop counts for {len(fnames)} photos")
    # a photo whose faces were found but not cut (unreadable when cropping: FaceCrops.errors) has no crops
    faces = faces[counts[faces["row"].to_numpy()] > 0].reset_index(drop=True)
    if len(faces) != len(crop_probs) or not np.array_equal(np.bincount(faces["row"], minlength=len(counts)), counts):
        raise ValueError(f"{len(crop_probs)} crop probabilities for {len(faces)} detected faces (crops per photo "
                         "differ): pass the detections and the max_faces the crops were cut with")
    faces["p"] = crop_probs
    known_p = np.isfinite(crop_probs)
    unannotated = (faces["state"] == UNANNOTATED).to_numpy()
    scored = faces[known_p & ~unannotated]
    masked = (scored["state"] == "with_mask").to_numpy().astype(int)
    bins = pd.cut(scored["annotated_height"], HEIGHT_BINS, labels=HEIGHT_LABELS, right=False).to_numpy()
    p_scored = scored["p"].to_numpy()
    by_height = pd.DataFrame([{"height": str(b), "faces": int((bins == b).sum()),
                               "unmasked": int(((bins == b) & (masked == 0)).sum()),
                               "face_auc": auc_or_nan(masked[bins == b], p_scored[bins == b])} for b in HEIGHT_LABELS])
    state_of = scored["state"].to_numpy()
    by_state = {st: (state_of == "with_mask") | (state_of == st) for st in STATES[1:]}
    labels = np.asarray(mask_labels, float)
    other = faces[known_p & unannotated]
    low = other[other["p"] < 0.5]
    bags = bag_probabilities(crop_probs, counts)
    answered = bag_probabilities(np.where(known_p & unannotated, 1.0, crop_probs), counts)
    rows = (labels >= 0) & np.isfinite(bags)  # the same photos for every photo AUC
    # photos labelled unmasked of which a crop found an annotated unmasked (or incorrectly masked) face
    bare = faces.loc[known_p & ~unannotated & (faces["state"] != "with_mask").to_numpy(), "row"].unique()
    found_bare = np.isin(np.arange(len(counts)), bare)
    unmasked_rows, none_found = rows & (labels == 0), rows & (labels == 0) & ~found_bare
    knew_found = np.where(found_bare, 0.0, 1.0)  # a model that knew the state of every face found
    # what makes a photo labelled unmasked so, from all its annotated faces (found or not): a bare face, or
    # only masks worn wrong (the rarer state, and the nearer to a mask)
    has = {st: np.isin(np.asarray(fnames), boxes.loc[boxes["state"] == st, "fname"].unique()) for st in STATES[1:]}
    of_kind = {"bare": unmasked_rows & has["without_mask"],
               "incorrect_only": unmasked_rows & has["incorrect"] & ~has["without_mask"]}
    masked_rows = rows & (labels == 1)
    summary = {
        "faces": int(known_p.sum()), "annotated": int(len(scored)), "face_auc": auc_or_nan(masked, p_scored),
        "mean_p_by_state": faces[known_p].groupby("state")["p"].mean().reindex([*STATES, UNANNOTATED]).dropna()
                                         .round(3).to_dict(),
        "unannotated": int(len(other)), "unannotated_called_unmasked": int(len(low)),
        "masked_photos_with_unannotated_unmasked": int(low.loc[labels[low["row"].to_numpy()] == 1, "row"].nunique()),
        "photos_scored": int(rows.sum()), "photos_without_face": int(((labels >= 0) & (counts == 0)).sum()),
        "photo_auc": auc_or_nan(labels[rows], bags[rows]),
        "photo_auc_unannotated_masked": auc_or_nan(labels[rows], answered[rows]),
        # what `score_detections` calls face_mask_auc_ceiling, on these photos and their labels: a photo whose
        # unmasked faces were all missed ties with the masked ones (graded answers can rank it a little lower)
        "photos_unmasked": int(unmasked_rows.sum()), "unmasked_photos_none_found": int(none_found.sum()),
        "photo_auc_ceiling": auc_or_nan(labels[rows], knew_found[rows]),
        "faces_by_state": {st: int((state_of == st).sum()) for st in STATES[1:]},
        "face_auc_by_state": {st: auc_or_nan(masked[k], p_scored[k]) for st, k in by_state.items()},
        "photos_by_kind": {k: int(r.sum()) for k, r in of_kind.items()},
        "photo_auc_by_kind": {k: auc_or_nan(labels[r | masked_rows], bags[r | masked_rows])  # against the masked
                              for k, r in of_kind.items()},
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
        s = sc.summary
        ax.set_title(f"{title}: face mask AUC {s['face_auc']:.3f}\nphoto mask AUC {s['photo_auc']:.3f}, face-stage "
                     f"ceiling {s['photo_auc_ceiling']:.3f}", fontsize=10)
        ax.set_xlabel("P(masked)")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, name)
    return fig
