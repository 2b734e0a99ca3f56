"""Inference: predicting probabilities, test-time augmentation, the fold ensemble as one graph,
and predicting a test folder.

Each test image is decoded and letterboxed once; the ensemble graph runs every fold model on
every augmentation of the same in-memory batch and averages them inside the graph, so k models
with T augmentations cost k x T forward passes, one decode and one `predict` call.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from ..core.config import CACHE_DIR, ConfigError
from ..core.io import save_keras
from ..core.labels import HEADS, decide_5k
from ..data.images import load_images
from .layers import Mirror, ScheduledDropout, ViewMean  # noqa: F401  (ScheduledDropout: registered, so saved models load here)
from .pipeline import make_predict_dataset

TTA_NAMES = ("identity", "flip")


def predict_probs(model: keras.Model, images: np.ndarray, batch_size: int = 64, *, flip: bool = False) -> np.ndarray:
    """(N, 2) probabilities of (mask, distancing) for uint8 letterboxed images."""
    out = model.predict(make_predict_dataset(images, batch_size, flip=flip), verbose=0)
    return np.concatenate([np.asarray(out[h]).reshape(-1, 1) for h in HEADS], axis=1)


def check_tta(tta) -> list[str]:
    tta = [tta] if isinstance(tta, str) else list(tta or ["identity"])
    unknown = [t for t in tta if t not in TTA_NAMES]
    if unknown:
        raise ValueError(f"unknown test-time augmentation(s) {unknown}; choose from {TTA_NAMES}")
    return tta


def predict_tta(model: keras.Model, images: np.ndarray, tta=("identity", "flip"), batch_size: int = 64) -> np.ndarray:
    """(T, N, 2) probabilities of one model: one slice per augmentation (identity, horizontal flip)."""
    return np.stack([predict_probs(model, images, batch_size, flip=t == "flip") for t in check_tta(tta)])


# --- the ensemble as one graph ----------------------------------------------------------------
def ensemble_graph(models: list[keras.Model], tta=("identity", "flip"), name: str = "fivek_ensemble") -> keras.Model:
    """One Keras model that runs every member on every test-time view and averages them in the graph.

    The views (the images and, with "flip", their mirror images) go through each member as one
    batch, so a k-model ensemble with T views costs k forward passes of T x N images and one call,
    instead of k x T separate `predict` calls. Takes and returns what a fivek model does: pixels in
    [0, 255] in, {"mask", "distancing"} probabilities out.
    """
    tta = check_tta(tta)
    inputs = keras.Input(models[0].input.shape[1:], name="image")  # (None, None, 3) for fivek models
    views = [inputs if t == "identity" else Mirror(name=f"view_{t}")(inputs) for t in tta]
    batch = views[0] if len(views) == 1 else keras.layers.Concatenate(axis=0, name="views")(views)
    outputs = {h: [] for h in HEADS}
    for k, member in enumerate(models):
        out = keras.Model(member.input, member.output, name=f"member{k}")(batch)  # a uniquely named wrapper
        for h in HEADS:
            outputs[h].append(out[h])
    averaged = {h: ViewMean(len(views), name=h, dtype="float32")(outputs[h]) for h in HEADS}
    return keras.Model(inputs, averaged, name=name)


@dataclass
class Ensemble:
    """The run's model(s) as one graph, with the thresholds and settings that were chosen for them."""

    models: list[keras.Model]  # the members (fold models, or the run's one model)
    names: list[str]
    thresholds: dict
    image_size: int
    base_rates: dict  # training prevalence per head and of 5K
    source: Path
    tta: list[str] = field(default_factory=lambda: ["identity", "flip"])  # what the thresholds were tuned with
    fallback_5k: int = 1  # the 5K answer for an unreadable image (see metrics.fallback_5k)
    graphs: dict = field(default_factory=dict)  # tuple(tta) -> ensemble_graph, built once each

    def graph(self, tta=None) -> keras.Model:
        """The one-graph ensemble for `tta` (default: the run's)."""
        key = tuple(check_tta(tta or self.tta))
        if key not in self.graphs:
            self.graphs[key] = ensemble_graph(self.models, key)
        return self.graphs[key]

    def predict(self, images: np.ndarray, tta=None, batch_size: int = 64) -> np.ndarray:
        """(N, 2) probabilities averaged over every member and augmentation, in one graph."""
        return predict_probs(self.graph(tta), images, batch_size)


def fold_files(run_dir: str | os.PathLike, name: str) -> list[Path]:
    """`fold*/<name>` of a k-fold run, in fold order (fold10 after fold9)."""
    return sorted(Path(run_dir).glob(f"fold*/{name}"),
                  key=lambda p: int("".join(c for c in p.parent.name if c.isdigit()) or 0))


def find_models(models_dir: str | os.PathLike) -> list[Path]:
    """Fold models (`fold*/model.keras`) of a k-fold run, else the run's single `model.keras`."""
    d = Path(models_dir)
    folds = fold_files(d, "model.keras")
    if folds:
        return folds
    if (d / "model.keras").exists():
        return [d / "model.keras"]
    raise FileNotFoundError(f"no model in {d}: expected fold*/model.keras (notebook 05) or model.keras (notebooks 02-04)")


ENSEMBLE_FILE = "ensemble.keras"


def save_ensemble(models_dir: str | os.PathLike, tta) -> Path:
    """Write the run's models and TTA as one graph, `ensemble.keras`, beside them (atomically)."""
    d = Path(models_dir)
    models = [load_keras_file(p) for p in find_models(d)]
    return save_keras(ensemble_graph(models, tta), d / ENSEMBLE_FILE)


# notebook 05's self-training writes this into the teacher's run folder: its students' folders, the last first
STUDENTS_FILE = "self_training.json"


def last_student(models_dir: str | os.PathLike) -> Path | None:
    """The folder of a self-trained run's last student (`<run>/student<r>/`, a complete run of its own), or
    None for a run without students."""
    d = Path(models_dir)
    pointer = d / STUDENTS_FILE
    if not pointer.exists():
        return None
    record = _read_json(pointer)
    folder = d / str(record.get("last", ""))
    if not record.get("last") or not (folder / "thresholds.json").exists():
        raise ConfigError(f"{pointer} names the student {record.get('last')!r}, but {folder} holds no finished run: "
                          "re-run notebook 05 to finish self-training, or delete that file to use the teacher")
    return folder


def load_ensemble(models_dir: str | os.PathLike, *, student: bool = True) -> Ensemble:
    """Load a run's models with its thresholds.json and ensemble.json (config.yaml must be there
    too: the submission records it). `ensemble.keras` (the one-graph ensemble notebook 05 saves)
    is used when it matches the run's TTA; otherwise the graph is built from the fold models.

    A self-trained run (notebook 05 with `self_training_rounds`) answers with its last student unless
    `student` is False (the teacher); a student's own folder can be given too."""
    d = Path(models_dir)
    if student and (found := last_student(d)) is not None:
        d = found  # `Ensemble.source` says which
    paths = find_models(d)
    for name in ("thresholds.json", "config.yaml", "ensemble.json"):
        if not (d / name).exists():
            raise FileNotFoundError(f"{d / name} is missing: a run folder holds its models, thresholds.json, "
                                    "config.yaml and ensemble.json (written by the notebooks' Save step)")
    thresholds, info = _read_json(d / "thresholds.json"), _read_json(d / "ensemble.json")
    missing = [k for k in ("image_size", "tta", "base_rates", "fallback_5k") if k not in info]
    if missing:
        raise ConfigError(f"{d / 'ensemble.json'} lacks {missing}: re-run the notebook's Save step")
    tta = check_tta(info["tta"])
    graphs = {}
    if (d / ENSEMBLE_FILE).exists():
        graph = load_keras_file(d / ENSEMBLE_FILE)
        members = [layer for layer in graph.layers if isinstance(layer, keras.Model)]
        if len(members) != len(paths):
            raise ConfigError(f"{d / ENSEMBLE_FILE} holds {len(members)} model(s) but the run has {len(paths)}: "
                              "re-run notebook 05's Save step")
        graphs[tuple(tta)] = graph
    else:
        members = [load_keras_file(p) for p in paths]
    names = [p.parent.name if p.parent != d else d.name for p in paths]
    return Ensemble(members, names, thresholds, int(info["image_size"]), info["base_rates"], d, tta,
                    int(info["fallback_5k"]), graphs)


def load_keras_file(path: Path) -> keras.Model:
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras says "File not found" for a corrupt archive
        raise ConfigError(f"{path}: cannot load this Keras model ({type(exc).__name__}: {str(exc)[:300]}); "
                          "is it a complete .keras file saved by the kit?") from exc


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


@dataclass
class TestPrediction:
    """Per-row probabilities and 5K decisions for one test split."""

    frame: pd.DataFrame  # image_id, fname, p_mask, p_distancing, p_5k, 5K, fallback
    failed: dict[str, str]  # fname -> why it got the fallback
    seconds: float


def predict_split(
    ensemble: Ensemble,
    meta: pd.DataFrame,
    *,
    tta=("identity", "flip"),
    batch_size: int = 64,
    cache: bool = False,
    progress: bool = True,
) -> TestPrediction:
    """Predict every row of a test meta table; unreadable or missing images get the fallback.

    The fallback gives such a row the training base rates as its probabilities and the
    ensemble's `fallback_5k` as its answer; it keeps one row per test image and is reported,
    never silent.
    """
    t0 = time.perf_counter()
    decoded = load_images(meta["path"].tolist(), ensemble.image_size, cache_dir=CACHE_DIR if cache else None,
                          progress=progress, desc="test")
    probs = np.full((len(meta), 2), np.nan)
    ok = np.flatnonzero(decoded.ok)
    if len(ok):
        probs[ok] = ensemble.predict(decoded.images[ok], tta, batch_size)
    fallback = ~decoded.ok
    probs[fallback] = [ensemble.base_rates.get(h, 0.5) for h in HEADS]
    failed = {meta["fname"].iloc[i]: msg for i, msg in decoded.errors.items()}
    if failed:
        warnings.warn(f"{len(failed)} test image(s) unreadable, given the fallback prediction: {sorted(failed)[:5]}", stacklevel=2)
    return TestPrediction(answer_frame(ensemble, meta, probs, fallback), failed, time.perf_counter() - t0)


def answer_frame(ensemble: Ensemble, meta: pd.DataFrame, probs: np.ndarray, fallback: np.ndarray) -> pd.DataFrame:
    """image_id, fname, the probabilities and the 5K answer at the run's thresholds; `fallback` rows
    (unreadable images) get the run's fallback answer."""
    t = ensemble.thresholds
    return pd.DataFrame({
        "image_id": meta["image_id"].to_numpy(),
        "fname": meta["fname"].to_numpy(),
        "p_mask": probs[:, 0],
        "p_distancing": probs[:, 1],
        "p_5k": probs[:, 0] * probs[:, 1],
        "5K": np.where(fallback, ensemble.fallback_5k, decide_5k(probs[:, 0], probs[:, 1], t.get("5k_mask", 0.5), t.get("5k_distancing", 0.5))),
        "fallback": fallback,
    })
