"""What a run leaves behind, in one place: model, config, thresholds, predictions, metrics.

    models/<run>/model.keras          the best model (by validation 5K F1)
    models/<run>/config.yaml          the resolved Config that made it
    models/<run>/thresholds.json      thresholds chosen on validation data
    models/<run>/val_predictions.csv  image_id, fname, labels and probabilities
    models/<run>/ensemble.json        what `fivek predict` needs: image size, TTA, fallback
    reports/<run>/metrics.csv         the metrics table; history.csv the per-epoch log
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import yaml

from ..core.config import REPORTS_DIR, SKIPPED_FILE, Config
from ..core.io import atomic_group, atomic_write_csv, atomic_write_json, save_keras
from ..core.labels import HEADS, combine_5k
from ..core.locks import holds_lock
from ..core.metrics import base_rates, fallback_5k
from ..data.folds import duplicate_group_ids, fold_table, holdout_split
from ..modeling.training import TrainingData, load_training_data


def predictions_frame(df: pd.DataFrame, labels: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """image_id, fname, the labels (blank = NaN) and the predicted probabilities per row."""
    out = df[["image_id", "fname"]].copy()
    for i, h in enumerate(HEADS):
        out[h] = np.where(labels[:, i] >= 0, labels[:, i], np.nan)
    for i, h in enumerate(HEADS):
        out[f"p_{h}"] = probs[:, i]
    out["p_5k"] = combine_5k(probs[:, 0], probs[:, 1])
    return out


def write_inference_info(run: Path, *, image_size: int, tta: list[str], train_labels: np.ndarray, thresholds: dict, **extra) -> Path:
    """ensemble.json: the image size the model(s) expect, the TTA the thresholds were tuned with,
    and the fallback for unreadable test images (training base rates, F1-optimal 5K answer)."""
    rates = base_rates(train_labels)
    return atomic_write_json(Path(run) / "ensemble.json", {
        "image_size": int(image_size), "tta": list(tta), "base_rates": rates,
        "fallback_5k": fallback_5k(rates, thresholds), **extra,
    })


@holds_lock(lambda a: a["cfg"].run_dir)
@atomic_group()  # all of the run's files are replaced, or none (a full disk keeps the previous ones)
def save_run(
    cfg: Config,
    model: keras.Model | None,
    *,
    val_df: pd.DataFrame,
    val_labels: np.ndarray,
    val_probs: np.ndarray,
    thresholds: dict,
    metrics: pd.DataFrame,
    train_labels: np.ndarray,
    image_size: int | None = None,
    tta: list[str] = ("identity",),
    history: pd.DataFrame | None = None,
    extra: dict | None = None,
    inference_info: dict | None = None,
) -> dict[str, Path]:
    """Write a run's outputs (atomically) and return their paths.

    `image_size` is the size the model was last trained and validated at (the last stage's
    for progressive runs), `tta` the augmentations the thresholds were tuned with;
    `train_labels` give the fallback for unreadable test images; `inference_info` adds to
    ensemble.json (the k-fold run's folds and recipe).
    """
    run, rep = cfg.run_dir, cfg.report_dir
    paths = {
        "config": cfg.save(run / "config.yaml"),
        "thresholds": atomic_write_json(run / "thresholds.json", thresholds),
        "ensemble": write_inference_info(run, image_size=image_size or cfg.image_size, tta=list(tta),
                                         train_labels=train_labels, thresholds=thresholds, backbone=cfg.backbone,
                                         **(inference_info or {})),
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


def record_skipped(cfg: Config, data: TrainingData) -> Path | None:
    """List a run's unreadable training images, with why, in `reports/<run>/skipped_images.csv`, which
    `fivek run`'s line for the notebook counts; a load that skips none removes an earlier list. A list
    that cannot be written (a read-only or full disk) is a warning: the skip itself was already said."""
    path = cfg.report_dir / SKIPPED_FILE
    try:
        if not data.skipped:
            path.unlink(missing_ok=True)
            return None
        return atomic_write_csv(path, pd.DataFrame({"fname": list(data.skipped), "why": list(data.skipped.values())}))
    except OSError as exc:
        warnings.warn(f"could not list the {len(data.skipped)} skipped training image(s) in {path}: {exc}", stacklevel=2)
        return None


def load_metrics(run_name: str) -> pd.DataFrame | None:
    """A finished run's metrics table, or None when that run has not been made."""
    path = REPORTS_DIR / run_name / "metrics.csv"
    return pd.read_csv(path).set_index("target") if path.exists() else None


def compare_runs(tables: dict[str, pd.DataFrame | None],
                 columns=("f1", "f1_always_yes", "precision", "recall", "auc")) -> pd.DataFrame:
    """Side-by-side metrics of several runs (runs not made yet are left out), each F1 beside the
    always-"yes" F1 of the same rows."""
    parts = {name: t.reindex(columns=list(columns)).astype(float) for name, t in tables.items() if t is not None}
    return pd.concat(parts, axis=1) if parts else pd.DataFrame()


UNKNOWN = "unknown"  # a setting a run's files do not record


def compare_settings(run_names: list[str], by_design: tuple[str, ...] = ()) -> pd.DataFrame:
    """What made each run, beside its metrics in `compare_runs`: backbone, weights, the image size it
    ended at, the epochs it trained (early stopping included) and their seconds, its validation rows
    and whether they are the first run's. Runs not made yet are left out. `alike` says whether the runs
    agree on a row, so a comparison that is not like for like says where; rows in `by_design` (what the
    comparison is about, such as notebook 03's backbone and weights) say "by design" instead, and a
    setting a run's files do not record (an older run, a run saved without its history) is "unknown"."""
    cols: dict[str, dict] = {}
    first_ids, same_key = None, None
    for name in run_names:
        made = Config(run_name=name)
        run, rep = made.run_dir, made.report_dir
        if not (run / "config.yaml").exists():
            continue
        cfg = yaml.safe_load((run / "config.yaml").read_text()) or {}
        info = json.loads((run / "ensemble.json").read_text()) if (run / "ensemble.json").exists() else {}
        history = pd.read_csv(rep / "history.csv") if (rep / "history.csv").exists() else None
        preds = run / "val_predictions.csv"
        ids = set(pd.read_csv(preds, dtype={"image_id": str})["image_id"]) if preds.exists() else None
        if same_key is None:
            first_ids, same_key, same = ids, f"validation rows as {name}'s", "-"
        elif ids is None or first_ids is None:
            same = UNKNOWN
        else:
            same = "yes" if ids == first_ids else f"no ({len(ids & first_ids)} shared)"
        cols[name] = {
            "data_dir": cfg.get("data_dir"), "seed": cfg.get("seed"),
            "backbone": cfg.get("backbone"), "weights": cfg.get("weights"),
            "image size at the end": info.get("image_size", cfg.get("image_size", UNKNOWN)),
            "epochs trained": len(history) if history is not None else UNKNOWN,
            "training seconds": (round(float(history["train_seconds"].sum()), 1)
                                 if history is not None and "train_seconds" in history else UNKNOWN),
            "validation rows": len(ids) if ids is not None else UNKNOWN,
            same_key: same,
        }
    table = pd.DataFrame(cols).astype(object)
    if len(table.columns) > 1:

        def verdict(key: str, values: list) -> bool | str:
            if key in by_design:
                return "by design"
            if key == "training seconds":
                return "-"  # never alike, and a difference says nothing about the comparison
            if UNKNOWN in values:
                return UNKNOWN
            if key == same_key:
                return all(v in ("-", "yes") for v in values)
            return len({str(v) for v in values}) == 1

        table["alike"] = pd.Series({key: verdict(key, list(row)) for key, row in table.iterrows()}, dtype=object)
    return table


def unlike_settings(table: pd.DataFrame) -> str:
    """One line on a `compare_settings` table: where its runs differ, or that they do not; what they
    differ in by design, and what their files do not say."""
    if "alike" not in table:
        return "nothing to compare with: " + (f"only {', '.join(table.columns)} made" if len(table.columns) else "no run made yet")
    alike = table["alike"]
    differ = [key for key, v in alike.items() if v is False]
    unknown = [key for key, v in alike.items() if v == UNKNOWN]
    design = [key for key, v in alike.items() if v == "by design"]
    parts = ["not like for like in: " + ", ".join(differ) if differ
             else f"like for like in every setting {'known' if unknown else 'listed'}"]
    if design:
        parts.append("compared by design: " + ", ".join(design))
    if unknown:
        parts.append("unknown (a run's files do not record it): " + ", ".join(unknown))
    return "; ".join(parts)


@dataclass
class Holdout:
    """The decoded training rows and their stratified, duplicate-aware hold-out split."""

    data: TrainingData
    train: TrainingData
    val: TrainingData

    def table(self) -> pd.DataFrame:
        """Rows per stratum on each side: shows the split kept the label mix."""
        is_val = np.isin(self.data.df["image_id"], self.val.df["image_id"]).astype(int)
        return fold_table(self.data.df, is_val).rename(index={0: "train", 1: "validation"})

    def __str__(self) -> str:
        return (f"train {len(self.train)} rows, validation {len(self.val)} rows, "
                f"skipped {len(self.data.skipped)} unreadable")


def holdout_data(cfg: Config, size: int | None = None, *, progress: bool = True) -> Holdout:
    """Decode the training split at `size` (default `cfg.image_size`) and hold out `cfg.val_fraction`
    of it, stratified on the joint label with blanks and with near-duplicates kept on one side.
    Notebooks 02-04 call it with the same seed, so they share one split."""
    data = load_training_data(cfg, size, progress=progress)
    record_skipped(cfg, data)
    groups = duplicate_group_ids(data.df, progress=progress)
    train_rows, val_rows = holdout_split(data.df, cfg.val_fraction, cfg.seed, groups)
    return Holdout(data, data.subset(train_rows), data.subset(val_rows))
