"""The stack: a small scikit-learn model per head on what the other models and the face boxes say.

Its inputs per image are the whole-image model's two probabilities, the face-crop model's bag
probability of mask = 1 and the people features (`data.people`); its outputs are P(mask) and
P(distancing). It is a standardised logistic regression per head: a few weights, fitted on out-of-fold
rows only (every input there comes from models that never trained on the row), so it cannot learn
what a model remembers of its own training rows, and it reads and travels well (saved as JSON,
loadable under any scikit-learn the kit supports, unlike a pickle).

Images without a detected face have no face or people features: they keep the image model's
probabilities (the fallback), counted by `fallback_rows`.

Each head reads the inputs that help it out of fold: fitted on every input, without the image model's two
probabilities, without the people features other than the face count, and on the face model's bag and
the face count alone, each scored by cross-validated log loss over the folds it is given (`choose_inputs`),
it keeps the best. An image model at chance (from scratch on a small set of real photos) gives every fold
its own constant, and a stacker fitted on them learns noise that costs the face model's signal; the gaps
and sizes are there for distancing, and on a few hundred photos a mask head fitted on them too learns
noise as well (real development set, seed 42: cross-validated log loss 0.267 on the bag and the count,
0.277 with the gaps and sizes too).

Two guards keep the hold-out honest: `fit_stacker` refuses rows marked as hold-out (fold -1), and
`Stacker.predict(..., unseen=True)` refuses to score rows it was fitted on (`LeakageError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import PredefinedSplit, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ..core.labels import HEADS
from ..data.people import PEOPLE_FEATURES

STACK_FEATURES = ("image_mask", "image_distancing", "face_mask", *PEOPLE_FEATURES)
IMAGE_INPUTS = ("image_mask", "image_distancing")  # what a head may leave out (`choose_inputs`)
FACE_INPUTS = ("face_mask", "faces")  # what every head reads: the face model's bag and the face count
SPACING_INPUTS = tuple(f for f in PEOPLE_FEATURES if f not in FACE_INPUTS)  # the other people features
_LOG_FEATURES = ("faces", "face_min", "face_max", "gap_min", "gap_median", "size_ratio_max")


class LeakageError(ValueError):
    """A stacker about to be fitted on, or scored on, rows it must not see."""


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def stack_features(image_probs: np.ndarray, face_probs: np.ndarray, people: pd.DataFrame) -> pd.DataFrame:
    """The stack's inputs per image: probabilities as logits, counts, sizes, gaps and ratios as logs
    (NaN where the image has no face)."""
    X = pd.DataFrame({"image_mask": _logit(image_probs[:, 0]), "image_distancing": _logit(image_probs[:, 1]),
                      "face_mask": _logit(face_probs)})
    for name in PEOPLE_FEATURES:
        values = people[name].to_numpy(dtype=float)
        X[name] = np.log(np.maximum(values, 1e-4)) if name in _LOG_FEATURES else values
    no_face = ~np.isfinite(np.asarray(face_probs, dtype=float))
    X.loc[no_face, ["face_mask", *PEOPLE_FEATURES]] = np.nan
    return X[list(STACK_FEATURES)]


def has_faces(X: pd.DataFrame) -> np.ndarray:
    """Rows the stacker answers (every input known); the others fall back to the image model."""
    return np.isfinite(X.to_numpy(dtype=float)).all(axis=1)


def _pipeline(C: float) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("logreg", LogisticRegression(C=C, max_iter=2000))])


@dataclass
class Stacker:
    """One fitted scikit-learn pipeline (standardise, logistic regression) per head."""

    heads: dict[str, Pipeline | None]  # None: too few rows of one class to fit; that head keeps the image model's
    features: list[str] = field(default_factory=lambda: list(STACK_FEATURES))
    fitted_ids: set[str] = field(default_factory=set)  # image ids it was fitted on
    inputs: dict[str, list[str]] = field(default_factory=dict)  # the features each head reads (default: all)

    def inputs_of(self, head: str) -> list[str]:
        return list(self.inputs.get(head, self.features))

    def predict(self, X: pd.DataFrame, image_probs: np.ndarray, ids: Sequence | None = None, *,
                unseen: bool = False) -> np.ndarray:
        """(N, 2) P(mask), P(distancing): the stack where the image has faces, else the image model's.

        With `unseen`, `ids` must hold none of the rows the stacker was fitted on (scoring a hold-out)."""
        if unseen:
            if ids is None:
                raise ValueError("unseen=True needs the rows' image ids")
            seen = sorted(set(map(str, ids)) & self.fitted_ids)
            if seen:
                raise LeakageError(f"{len(seen)} of the {len(ids)} rows to score were used to fit the stacker "
                                   f"(e.g. image_id {seen[:5]}): a hold-out must stay out of every fit")
        out = np.asarray(image_probs, dtype=float).copy()
        rows = has_faces(X)
        if rows.any():
            for i, h in enumerate(HEADS):
                if self.heads.get(h) is not None:
                    out[rows, i] = self.heads[h].predict_proba(X.loc[rows, self.inputs_of(h)].to_numpy(dtype=float))[:, 1]
        return out

    def coefficients(self) -> pd.DataFrame:
        """Weights per feature and head (on standardised features; blank: an input the head leaves out)
        and each head's intercept."""
        fitted = {h: p for h, p in self.heads.items() if p is not None}
        table = {h: pd.Series(p.named_steps["logreg"].coef_[0], index=self.inputs_of(h)) for h, p in fitted.items()}
        out = pd.DataFrame(table).reindex(self.features)
        out.loc["(intercept)"] = [float(p.named_steps["logreg"].intercept_[0]) for p in fitted.values()]
        return out

    # --- JSON, so a run folder loads under any supported scikit-learn --------------------------
    def to_json(self) -> dict[str, Any]:
        heads = {}
        for h, p in self.heads.items():
            if p is None:
                heads[h] = None
                continue
            scale, logreg = p.named_steps["scale"], p.named_steps["logreg"]
            heads[h] = {"inputs": self.inputs_of(h), "mean": scale.mean_.tolist(), "scale": scale.scale_.tolist(),
                        "coef": logreg.coef_[0].tolist(), "intercept": float(logreg.intercept_[0]), "C": float(logreg.C)}
        return {"kind": "standardised logistic regression per head", "features": self.features, "heads": heads,
                "fitted_rows": len(self.fitted_ids), "fitted_ids": sorted(self.fitted_ids)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Stacker":
        if list(data.get("features", [])) != list(STACK_FEATURES):
            raise ValueError(f"this stacker reads {data.get('features')}, the kit's stack features are "
                             f"{list(STACK_FEATURES)}: re-run notebook 05 (its stack and Save step) with this kit")
        heads, inputs = {}, {}
        for h, d in data["heads"].items():
            if d is None:
                heads[h] = None
                continue
            inputs[h] = list(d.get("inputs", data["features"]))  # stack.json files before inputs were chosen: all
            pipe = _pipeline(d.get("C", 1.0))
            scale, logreg = pipe.named_steps["scale"], pipe.named_steps["logreg"]
            scale.mean_, scale.scale_ = np.array(d["mean"]), np.array(d["scale"])
            scale.var_, scale.n_features_in_, scale.n_samples_seen_ = scale.scale_ ** 2, len(d["mean"]), 1
            logreg.coef_, logreg.intercept_ = np.array([d["coef"]]), np.array([d["intercept"]])
            logreg.classes_, logreg.n_features_in_ = np.array([0, 1]), len(d["coef"])
            if len(d["coef"]) != len(inputs[h]):
                raise ValueError(f"stack head {h!r} has {len(d['coef'])} weights for inputs {inputs[h]}: the file is damaged")
            heads[h] = pipe
        return cls(heads, list(data["features"]), set(map(str, data.get("fitted_ids", []))), inputs)


def _cv_log_loss(x: np.ndarray, y: np.ndarray, folds: np.ndarray, C: float) -> float:
    """Log loss of each fold's rows answered by a pipeline fitted on the other folds' rows."""
    p = cross_val_predict(_pipeline(C), x, y, cv=PredefinedSplit(folds), method="predict_proba")[:, 1]
    return float(log_loss(y, p, labels=[0, 1]))


def input_sets() -> dict[str, list[str]]:
    """The inputs a head may read, most first: every feature; without the image model's; without the
    people features other than the face count; the face model's bag and the face count alone."""
    every = list(STACK_FEATURES)
    return {"every input": every,
            "without the image model": [f for f in every if f not in IMAGE_INPUTS],
            "without the gaps and sizes": [f for f in every if f not in SPACING_INPUTS],
            "the bag and the face count": [f for f in every if f in FACE_INPUTS]}


def choose_inputs(X: pd.DataFrame, y: np.ndarray, folds: np.ndarray, *,
                  C: float = 1.0) -> tuple[str, list[str], dict[str, float]]:
    """The name and inputs of the set of `input_sets` whose pipeline predicts the held-out folds best
    (lowest cross-validated log loss; a tie keeps the larger set), and every set's loss. With fewer than
    two folds, or a fold whose other folds hold one class only, every feature is kept."""
    sets = input_sets()
    folds = np.asarray(folds)
    if len(np.unique(folds)) < 2 or any(len(np.unique(y[folds != k])) < 2 for k in np.unique(folds)):
        return "every input", sets["every input"], {}
    losses = {name: _cv_log_loss(X[cols].to_numpy(dtype=float), y, folds, C) for name, cols in sets.items()}
    best = min(losses, key=lambda name: (round(losses[name], 12), -len(sets[name])))
    return best, sets[best], losses


def fit_stacker(X: pd.DataFrame, labels: np.ndarray, ids: Sequence, folds: np.ndarray, *, C: float = 1.0,
                verbose: bool = True) -> Stacker:
    """Fit one pipeline per head on the out-of-fold rows that have faces and a known label, on the inputs
    `choose_inputs` keeps for that head (cross-validated over `folds`).

    `folds` is each row's fold; a row of the hold-out (fold -1) must never be among them."""
    folds = np.asarray(folds)
    if (folds < 0).any():
        raise LeakageError(f"{int((folds < 0).sum())} hold-out row(s) (fold -1) passed to fit_stacker: "
                           "the stacker is fitted on out-of-fold rows only")
    rows = has_faces(X)
    heads, inputs = {}, {}
    for i, h in enumerate(HEADS):
        use = rows & (labels[:, i] >= 0)
        y = labels[use, i].astype(int)
        if min(np.bincount(y, minlength=2)) < 2:  # a logistic regression needs both classes
            if verbose:
                print(f"stacker: {h} has {np.bincount(y, minlength=2).tolist()} rows of (0, 1) with faces; "
                      "that head keeps the image model's answer")
            heads[h] = None
            continue
        Xh = X.loc[use].reset_index(drop=True)
        chosen, inputs[h], losses = choose_inputs(Xh, y, folds[use], C=C)
        if verbose and losses and len(inputs[h]) < len(STACK_FEATURES):
            others = ", ".join(f"{name} {loss:.3f}" for name, loss in losses.items() if name != chosen)
            print(f"stacker: the {h} head reads {', '.join(inputs[h])} ({chosen}: cross-validated log loss "
                  f"{losses[chosen]:.3f}; {others})")
        heads[h] = _pipeline(C).fit(Xh[inputs[h]].to_numpy(dtype=float), y)
    return Stacker(heads, list(STACK_FEATURES), set(map(str, np.asarray(ids)[rows])), inputs)


def cross_val_stack(X: pd.DataFrame, labels: np.ndarray, ids: Sequence, folds: np.ndarray, image_probs: np.ndarray,
                    *, C: float = 1.0) -> np.ndarray:
    """Out-of-fold stacked probabilities: each fold's rows answered by a stacker fitted on the other folds'
    rows (so the stack's own OOF score is as honest as the models' beneath it)."""
    out = np.asarray(image_probs, dtype=float).copy()
    ids = np.asarray(ids)
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        stacker = fit_stacker(X[train].reset_index(drop=True), labels[train], ids[train], folds[train], C=C,
                              verbose=False)
        out[test] = stacker.predict(X[test].reset_index(drop=True), image_probs[test], ids[test], unseen=True)
    return out
