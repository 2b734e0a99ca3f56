"""Inference: test-time augmentation, fold ensembles, and predicting a test folder.

Each test image is decoded and letterboxed once; every fold model and every augmentation
reads the same in-memory array, so an ensemble of k models with T augmentations costs
k x T forward passes and one decode.
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

from .config import CACHE_DIR, ConfigError
from .images import load_images
from .models import HEADS, decide_5k
from .training import predict_probs

TTA_NAMES = ("identity", "flip")


def check_tta(tta) -> list[str]:
    tta = [tta] if isinstance(tta, str) else list(tta or ["identity"])
    unknown = [t for t in tta if t not in TTA_NAMES]
    if unknown:
        raise ValueError(f"unknown test-time augmentation(s) {unknown}; choose from {TTA_NAMES}")
    return tta


def predict_tta(model: keras.Model, images: np.ndarray, tta=("identity", "flip"), batch_size: int = 64) -> np.ndarray:
    """(T, N, 2) probabilities: one slice per augmentation (identity, horizontal flip)."""
    return np.stack([predict_probs(model, images, batch_size, flip=t == "flip") for t in check_tta(tta)])


@dataclass
class Ensemble:
    """Fold models with the thresholds and settings that were chosen for them."""

    models: list[keras.Model]
    names: list[str]
    thresholds: dict
    image_size: int
    base_rates: dict  # training prevalence per head and of 5K
    source: Path
    tta: list[str] = field(default_factory=lambda: ["identity", "flip"])  # what the thresholds were tuned with
    fallback_5k: int = 1  # the 5K answer for an unreadable image (see metrics.fallback_5k)

    def predict(self, images: np.ndarray, tta=("identity", "flip"), batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """(k, T, N, 2) probabilities of every model and augmentation."""
        from tqdm.auto import tqdm

        out = []
        for model in tqdm(self.models, desc="models", disable=not progress, leave=False):
            out.append(predict_tta(model, images, tta, batch_size))
        return np.stack(out)


def find_models(models_dir: str | os.PathLike) -> list[Path]:
    """Fold models (`fold*/model.keras`) of a k-fold run, else the run's single `model.keras`."""
    d = Path(models_dir)
    folds = sorted(d.glob("fold*/model.keras"), key=lambda p: int("".join(c for c in p.parent.name if c.isdigit()) or 0))
    if folds:
        return folds
    if (d / "model.keras").exists():
        return [d / "model.keras"]
    raise FileNotFoundError(f"no model in {d}: expected fold*/model.keras (notebook 05) or model.keras (notebooks 02-04)")


def load_ensemble(models_dir: str | os.PathLike) -> Ensemble:
    """Load every model of a run with its thresholds.json and ensemble.json (config.yaml must be
    there too: notebook 06 records it beside the submission)."""
    d = Path(models_dir)
    paths = find_models(d)
    for name in ("thresholds.json", "config.yaml", "ensemble.json"):
        if not (d / name).exists():
            raise FileNotFoundError(f"{d / name} is missing: a run folder holds its models, thresholds.json, "
                                    "config.yaml and ensemble.json (written by the notebooks' Save step)")
    thresholds, info = _read_json(d / "thresholds.json"), _read_json(d / "ensemble.json")
    missing = [k for k in ("image_size", "tta", "base_rates", "fallback_5k") if k not in info]
    if missing:
        raise ConfigError(f"{d / 'ensemble.json'} lacks {missing}: re-run the notebook's Save step")
    models = []
    for p in paths:
        try:
            models.append(keras.saving.load_model(p, compile=False))
        except Exception as exc:  # Keras says "File not found" for a corrupt archive
            raise ConfigError(f"{p}: cannot load this Keras model ({type(exc).__name__}: {str(exc)[:300]}); "
                              "is it a complete .keras file saved by the kit?") from exc
    return Ensemble(models, [p.parent.name if p.parent != d else d.name for p in paths], thresholds,
                    int(info["image_size"]), info["base_rates"], d, check_tta(info["tta"]), int(info["fallback_5k"]))


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
        member_probs = ensemble.predict(decoded.images[ok], tta, batch_size, progress=progress)
        probs[ok] = member_probs.mean(axis=(0, 1))
    fallback = ~decoded.ok
    probs[fallback] = [ensemble.base_rates.get(h, 0.5) for h in HEADS]
    failed = {meta["fname"].iloc[i]: msg for i, msg in decoded.errors.items()}
    if failed:
        warnings.warn(f"{len(failed)} test image(s) unreadable, given the fallback prediction: {sorted(failed)[:5]}", stacklevel=2)
    t = ensemble.thresholds
    frame = pd.DataFrame({
        "image_id": meta["image_id"].to_numpy(),
        "fname": meta["fname"].to_numpy(),
        "p_mask": probs[:, 0],
        "p_distancing": probs[:, 1],
        "p_5k": probs[:, 0] * probs[:, 1],
        "5K": np.where(fallback, ensemble.fallback_5k, decide_5k(probs[:, 0], probs[:, 1], t.get("5k_mask", 0.5), t.get("5k_distancing", 0.5))),
        "fallback": fallback,
    })
    return TestPrediction(frame, failed, time.perf_counter() - t0)
