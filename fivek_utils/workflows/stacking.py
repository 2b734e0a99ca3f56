"""Stacking in notebook 05 and at prediction time: the image models' out-of-fold probabilities, the
face models' out-of-fold bag probabilities and the people features feed one small scikit-learn model
per head (`modeling.stacker`), fitted on out-of-fold rows only, never on the hold-out.

Three answers are compared on the same rows, each at thresholds tuned jointly on its own out-of-fold
predictions: the image model alone, the face model (its bag probability as P(mask); distancing from
the image model, since faces alone carry no distancing head) and the stack. The stack's own
out-of-fold score is cross-validated (each fold answered by a stacker fitted on the other folds); the
hold-out rows, kept out of every fit and choice, score all three honestly. Images without a detected
face keep the image model's answer, and how many there are is reported.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.config import CACHE_DIR, Config, ConfigError
from ..core.io import atomic_write_json
from ..core.locks import holds_lock
from ..core.metrics import tune_thresholds
from ..data.crops import load_crops
from ..data.people import people_features
from ..modeling.face_model import bag_probabilities, predict_faces
from ..modeling.stacker import Stacker, cross_val_stack, fit_stacker, has_faces, stack_features
from .face_kfold import FaceData, FaceFoldResult, face_settings, load_face_models
from .faces import detect_split
from .kfold import KFoldData, KFoldResult, score_row

STACK_FILE = "stack.json"
VARIANTS = ("image model", "face model", "stack")


def with_face_mask(image_probs: np.ndarray, face_probs: np.ndarray) -> np.ndarray:
    """The face model's answer: its bag probability as P(mask) where the image has a face (else the
    image model's), and the image model's P(distancing)."""
    out = np.asarray(image_probs, dtype=float).copy()
    found = np.isfinite(face_probs)
    out[found, 0] = face_probs[found]
    return out


@dataclass
class StackResult:
    """The stacker fitted on every out-of-fold row, and each variant's probabilities and thresholds."""

    stacker: Stacker
    oof: dict[str, np.ndarray]  # variant -> (N, 2) out-of-fold probabilities
    holdout: dict[str, np.ndarray] | None  # variant -> (H, 2)
    thresholds: dict[str, dict]  # variant -> thresholds tuned on its out-of-fold probabilities
    fallback: dict[str, int]  # rows without a face (answered by the image model), per set

    def report(self) -> str:
        parts = [f"{n} of {t} {s} rows" for s, (n, t) in self.fallback_of.items()]
        return "images without a detected face keep the image model's answer: " + ", ".join(parts)

    @property
    def fallback_of(self) -> dict[str, tuple[int, int]]:
        sizes = {"out-of-fold": len(self.oof["stack"]), "hold-out": len(self.holdout["stack"]) if self.holdout else 0}
        return {s: (self.fallback[s], sizes[s]) for s in self.fallback}


def stack_kfold(split: KFoldData, result: KFoldResult, faces: FaceData, face_result: FaceFoldResult) -> StackResult:
    """Fit the stack on the out-of-fold rows and answer the hold-out with it (and with each model alone)."""
    labels, folds, ids = split.cv.labels, split.folds, split.cv.df["image_id"].astype(str).to_numpy()
    image_oof = result.oof.mean(axis=1)
    X = stack_features(image_oof, face_result.oof, faces.people_cv)
    oof = {"image model": image_oof, "face model": with_face_mask(image_oof, face_result.oof),
           "stack": cross_val_stack(X, labels, ids, folds, image_oof)}
    stacker = fit_stacker(X, labels, ids, folds)
    fallback = {"out-of-fold": int((~has_faces(X)).sum())}
    holdout = None
    if result.holdout is not None and face_result.holdout is not None:
        image_hold = result.holdout.mean(axis=(0, 1))  # the fold ensemble with its TTA
        face_hold = face_result.holdout  # the fold face models averaged per face, then the product: as at prediction
        X_hold = stack_features(image_hold, face_hold, faces.people_holdout)
        hold_ids = split.holdout.df["image_id"].astype(str).to_numpy()
        holdout = {"image model": image_hold, "face model": with_face_mask(image_hold, face_hold),
                   "stack": stacker.predict(X_hold, image_hold, hold_ids, unseen=True)}
        fallback["hold-out"] = int((~has_faces(X_hold)).sum())
    thresholds = {v: tune_thresholds(labels, p) for v, p in oof.items()}
    return StackResult(stacker, oof, holdout, thresholds, fallback)


def stack_gain_table(split: KFoldData, stack: StackResult) -> pd.DataFrame:
    """Image model, face model and stack on the out-of-fold rows and on the hold-out, each at the
    thresholds tuned on its own out-of-fold probabilities; every F1 beside always-yes, AUC beside 0.5."""
    rows = {f"OOF: {v}": score_row(split.cv.labels, stack.oof[v], stack.thresholds[v]) for v in VARIANTS}
    if stack.holdout is not None:
        for v in VARIANTS:
            rows[f"hold-out: {v}"] = score_row(split.holdout.labels, stack.holdout[v], stack.thresholds[v])
    return pd.DataFrame(rows).T


# --- saved with the run, used at prediction time -------------------------------------------------
def save_kfold_with_stack(cfg: Config, split: KFoldData, result: KFoldResult, stack: StackResult, faces: FaceData,
                          face_result: FaceFoldResult, metrics: pd.DataFrame, gains: pd.DataFrame) -> dict[str, Path]:
    """Notebook 05's Save step with the face stage: `kfold.save_kfold` with the stack's out-of-fold
    probabilities and thresholds, and stack.json, replaced together or (a full disk) not at all, so
    thresholds.json never holds the stack's thresholds beside another stack or none."""
    from ..core.io import atomic_group
    from .kfold import save_kfold

    columns = {"face_crops": faces.cv.counts, "p_face_mask": face_result.oof}
    with atomic_group():
        paths = save_kfold(cfg, split, result, stack.thresholds["stack"], metrics, gains, probs=stack.oof["stack"],
                           columns=columns)
        paths["stack"] = save_stack(cfg, stack, faces)
    return paths


@holds_lock(lambda a: a["run_dir"] or a["cfg"].run_dir)
def save_stack(cfg: Config, stack: StackResult, faces: FaceData, run_dir: Path | None = None) -> Path:
    """stack.json: the stacker, the detector's settings and the crops' settings, beside the fold face models."""
    run_dir = Path(run_dir or cfg.run_dir)
    return atomic_write_json(run_dir / STACK_FILE, {
        "stacker": stack.stacker.to_json(), "detector": faces.detections.detector, "face": face_settings(cfg),
        "thresholds": stack.thresholds, "fallback_rows": stack.fallback,
        "fallback": "images without a detected face keep the image model's probabilities",
    })


@dataclass
class StackBundle:
    """What a run folder holds for the face stage at prediction time."""

    stacker: Stacker
    face_models: list
    detector: dict
    face: dict
    source: Path


def has_stack(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / STACK_FILE).exists()


def load_stack(run_dir: str | os.PathLike) -> StackBundle:
    """The stacker, the fold face models and their settings of a run folder with a face stage."""
    run_dir = Path(run_dir)
    path = run_dir / STACK_FILE
    try:
        data = json.loads(path.read_text())
        stacker = Stacker.from_json(data["stacker"])
        detector, face = data["detector"], data["face"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a stack written by notebook 05 ({type(exc).__name__}: {exc}); "
                          "re-run its Save step") from None
    return StackBundle(stacker, load_face_models(run_dir), detector, face, run_dir)


def make_run_detector(bundle: StackBundle, test_dir: str | os.PathLike):
    """The detector the run was made with, for a test folder (`truth` reads its scenes.jsonl)."""
    from ..modeling.face_detector import PACKAGES, make_detector, saved_settings

    d = bundle.detector
    settings = saved_settings(d)
    package = PACKAGES.get(d["name"])
    if package:
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version(package)
        except PackageNotFoundError:
            installed = None  # make_detector names the missing package
        if installed and d.get("version") not in (None, installed):
            warnings.warn(f"{bundle.source} found its training faces with {package} {d['version']}; {package} "
                          f"{installed} is installed, so test faces may be found differently", stacklevel=2)
    try:
        return make_detector(d["name"], scenes_path=Path(test_dir) / "scenes.jsonl", **settings)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{bundle.source} found its faces with the 'truth' detector (the synthetic generator's head boxes, "
            f"synthetic data only), and {test_dir} has no scenes.jsonl: to predict real photos, train notebook 05 "
            "with face_detector='retinaface' (or 'blazeface', 'mtcnn')") from None


def predict_stack(bundle: StackBundle, meta: pd.DataFrame, image_probs: np.ndarray, readable: np.ndarray,
                  test_dir: str | os.PathLike, *, progress: bool = True) -> tuple[np.ndarray, dict]:
    """(N, 2) stacked probabilities for a test meta table (rows in its order), and what happened: faces
    found, rows answered by the image model for want of a face. Unreadable rows keep `image_probs`."""
    paths, fnames = meta["path"].tolist(), meta["fname"].tolist()
    detector = make_run_detector(bundle, test_dir)
    found = detect_split(paths, fnames, detector, Path(test_dir).name, progress=progress)
    f = bundle.face
    crops = load_crops(paths, fnames, found.detections, int(f["face_crop_size"]), detections_key=found.key,
                       margin=float(f["face_margin"]), max_faces=int(f["face_max_per_image"]), cache_dir=CACHE_DIR,
                       progress=progress)
    face_probs = bag_probabilities(predict_faces(bundle.face_models, crops.crops), crops.counts)
    face_probs[~readable] = np.nan
    X = stack_features(image_probs, face_probs, people_features(found.detections, fnames))
    probs = bundle.stacker.predict(X, image_probs)
    probs[~readable] = image_probs[~readable]
    answered = has_faces(X)
    problems = {**found.detections.errors, **{fnames[i]: m for i, m in crops.errors.items()}}
    problems = {f: m for f, m in problems.items() if readable[fnames.index(f)]}  # unreadable ones: the fallback already
    if problems:
        warnings.warn(f"{len(problems)} test photo(s) could not be looked at for faces and keep the image model's "
                      f"answer: {'; '.join(f'{f}: {m}' for f, m in list(problems.items())[:3])}", stacklevel=2)
    return probs, {"detector": detector.name, "faces": int(crops.counts.sum()),
                   "rows_answered_by_the_stack": int(answered.sum()),
                   "rows_without_a_face_answered_by_the_image_model": int((~answered & readable).sum()),
                   "rows_not_looked_at_for_faces": sorted(problems)}


def plot_stack_gains(table: pd.DataFrame, name: str | None = None, title: str = ""):
    """Image model, face model and stack side by side: mask and distancing AUC (chance 0.5) and 5K F1
    (beside always-yes), on the out-of-fold rows and on the hold-out."""
    import matplotlib.pyplot as plt

    from ..core.plots import save_figure

    sets = [s for s in ("OOF", "hold-out") if any(i.startswith(f"{s}: ") for i in table.index)]
    fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets) + 1.6, 3.6), squeeze=False)
    metrics = [("AUC mask", "mask AUC"), ("AUC distancing", "distancing AUC"), ("F1 5K", "5K F1")]
    colours = {"image model": "#8d99ae", "face model": "#e9c46a", "stack": "#2a9d8f"}
    for ax, where in zip(axes[0], sets):
        x = np.arange(len(metrics))
        for k, variant in enumerate(VARIANTS):
            row = table.loc[f"{where}: {variant}"]
            ax.bar(x + (k - 1) * 0.26, [float(row[m]) for m, _ in metrics], 0.26, label=variant, color=colours[variant])
        yes = float(table.loc[f"{where}: stack", "always-yes F1 5K"])
        ax.hlines(0.5, -0.45, 1.45, colors="grey", linestyles="-.", lw=0.8, label="AUC chance")
        ax.hlines(yes, 1.55, 2.45, colors="black", linestyles=":", lw=1.2, label="5K F1 always-yes")
        ax.set_xticks(x, [label for _, label in metrics])
        ax.set_ylim(0, 1.05)
        ax.set_title(where)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title or "image model, face model and stack")
    fig.tight_layout()
    save_figure(fig, name)
    return fig
