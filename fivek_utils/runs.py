"""What a run leaves behind, in one place: model, config, thresholds, predictions, metrics.

    models/<run>/model.keras          the best model (by validation 5K F1)
    models/<run>/config.yaml          the resolved Config that made it
    models/<run>/thresholds.json      thresholds chosen on validation data
    models/<run>/val_predictions.csv  image_id, fname, labels and probabilities
    reports/<run>/metrics.csv         the metrics table; history.csv the per-epoch log
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from .config import MODELS_DIR, REPORTS_DIR, Config
from .io import atomic_write_csv, atomic_write_json, save_keras
from .models import HEADS, combine_5k


def predictions_frame(df: pd.DataFrame, labels: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """image_id, fname, the labels (blank = NaN) and the predicted probabilities per row."""
    out = df[["image_id", "fname"]].copy()
    for i, h in enumerate(HEADS):
        out[h] = np.where(labels[:, i] >= 0, labels[:, i], np.nan)
    for i, h in enumerate(HEADS):
        out[f"p_{h}"] = probs[:, i]
    out["p_5k"] = combine_5k(probs[:, 0], probs[:, 1])
    return out


def save_run(
    cfg: Config,
    model: keras.Model | None,
    *,
    val_df: pd.DataFrame,
    val_labels: np.ndarray,
    val_probs: np.ndarray,
    thresholds: dict,
    metrics: pd.DataFrame,
    history: pd.DataFrame | None = None,
    extra: dict | None = None,
) -> dict[str, Path]:
    """Write a run's outputs (atomically) and return their paths."""
    run, rep = cfg.run_dir, cfg.report_dir
    paths = {
        "config": cfg.save(run / "config.yaml"),
        "thresholds": atomic_write_json(run / "thresholds.json", thresholds),
        "val_predictions": atomic_write_csv(run / "val_predictions.csv", predictions_frame(val_df, val_labels, val_probs)),
        "metrics": atomic_write_csv(rep / "metrics.csv", metrics.reset_index()),
    }
    if model is not None:
        paths["model"] = save_keras(model, run / "model.keras")
    if history is not None and len(history):
        paths["history"] = atomic_write_csv(rep / "history.csv", history)
    if extra:
        paths["extra"] = atomic_write_json(rep / "extra.json", extra)
    return paths


def load_metrics(run_name: str) -> pd.DataFrame | None:
    """A finished run's metrics table, or None when that run has not been made."""
    path = REPORTS_DIR / run_name / "metrics.csv"
    return pd.read_csv(path).set_index("target") if path.exists() else None


def load_thresholds(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "thresholds.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: train the run first (it writes its thresholds there)")
    return json.loads(path.read_text())


def compare_runs(tables: dict[str, pd.DataFrame | None], columns=("f1", "precision", "recall", "auc")) -> pd.DataFrame:
    """Side-by-side metrics of several runs (runs not made yet are left out)."""
    parts = {name: t[list(columns)].astype(float) for name, t in tables.items() if t is not None}
    return pd.concat(parts, axis=1) if parts else pd.DataFrame()


def run_dir(run_name: str) -> Path:
    return MODELS_DIR / run_name
