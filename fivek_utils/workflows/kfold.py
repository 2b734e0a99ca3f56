"""K-fold training with out-of-fold predictions, and the measurements a competitor trusts.

Each fold trains a fresh model with the configured recipe (two-phase or progressive),
reloads its best checkpoint and predicts its validation fold (the out-of-fold rows) with
every test-time augmentation. Finished folds are not retrained when a run is resumed.

Out-of-fold rows measure a single model and TTA (slightly optimistically: each fold's best
epoch is chosen on its own OOF rows). They cannot measure the fold ensemble (every other fold
model trained on them), so an optional hold-out set, kept out of every fold and out of every
choice, measures the ensemble's gain.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from ..core.config import PROCESSED_DATA_DIR, Config, ConfigError
from ..core.io import atomic_group, atomic_path, atomic_remove, atomic_write_csv, save_keras
from ..core.labels import HEADS
from ..core.locks import holds_lock
from ..core.metrics import evaluate, tune_thresholds
from ..data.folds import duplicate_group_ids, holdout_split, make_folds, save_folds
from ..modeling.backbones import KERAS_DROP_CONNECT_RATE, set_stochastic_depth
from ..modeling.inference import STUDENTS_FILE, check_tta, predict_tta, save_ensemble
from ..modeling.models import build_model
from ..modeling.training import TrainingData, check_run_key, ids_digest, load_training_data, train_two_phase
from .runs import record_skipped, save_run


class FoldError(RuntimeError):
    """Training or predicting one fold failed; the message names the fold."""


@dataclass
class KFoldResult:
    """Out-of-fold and hold-out predictions of a k-fold run."""

    oof: np.ndarray  # (N, T, 2): each row predicted by the model that did not train on it
    folds: np.ndarray  # (N,)
    holdout: np.ndarray | None  # (k, T, H, 2): every fold model on the hold-out rows
    tta: list[str]
    histories: dict[int, pd.DataFrame]
    seconds: dict[int, float]


def train_size(cfg: Config) -> int:
    """The image size fold models are evaluated and used at (progressive: the last stage's)."""
    if cfg.fold_recipe == "progressive":
        from ..modeling.progressive import make_schedule

        return make_schedule(cfg)[-1].image_size
    return cfg.image_size


def fold_model(cfg: Config, dropout: float) -> keras.Model:
    """A fresh fold model: the configured backbone and weights, its stochastic depth set to `drop_connect_rate`."""
    model = build_model(cfg.backbone, cfg.weights, dropout)
    if cfg.drop_connect_rate != KERAS_DROP_CONNECT_RATE:
        set_stochastic_depth(model, cfg.drop_connect_rate)
    return model


def _train_one(cfg: Config, train: TrainingData, val: TrainingData, fold_dir: Path,
               shared: keras.Model | None = None) -> tuple[keras.Model, pd.DataFrame]:
    """Train one fold from a fresh model's initial weights. With `shared` (the previous fold's model)
    those weights go into it, so the fold reuses its traced train step (`modeling.compiled`) instead
    of tracing its own: 30-40 s a fold for EfficientNetV2-B0 on 2 CPU cores."""
    from ..modeling.progressive import make_schedule, train_progressive

    stages = make_schedule(cfg) if cfg.fold_recipe == "progressive" else None
    model = fold_model(cfg, stages[0].dropout if stages else cfg.dropout)
    if shared is not None:
        shared.set_weights(model.get_weights())
        model = shared
    if stages:
        return model, train_progressive(model, train, val, cfg, stages, fold_dir)
    return model, train_two_phase(model, train, val, cfg, fold_dir)


def _check_finished_fold(cfg: Config, fold_dir: Path, data: TrainingData, train_rows: np.ndarray, val_rows: np.ndarray) -> None:
    """A finished fold is reused only if the same settings and rows made it (its run_key.json)."""
    if not (fold_dir / "run_key.json").exists():
        return

    def ids_only(rows):  # the key needs the ids, not a copy of the images
        return TrainingData(data.df.iloc[rows].reset_index(drop=True), data.images[:0], data.labels[rows])

    train, val = ids_only(train_rows), ids_only(val_rows)
    if cfg.fold_recipe == "progressive":
        from dataclasses import asdict

        from ..modeling.progressive import make_schedule

        check_run_key(fold_dir, cfg, train, val, recipe="progressive", stages=[asdict(s) for s in make_schedule(cfg)])
    else:
        check_run_key(fold_dir, cfg, train, val, recipe="two_phase")


@holds_lock(lambda a: a["run_dir"] or a["cfg"].run_dir)
def run_kfold(
    cfg: Config,
    data: TrainingData,
    folds: np.ndarray,
    holdout: TrainingData | None = None,
    run_dir: Path | None = None,
    *,
    val_labels: np.ndarray | None = None,
    fold_labels: np.ndarray | None = None,
) -> KFoldResult:
    """Train every fold (skipping finished ones) and collect OOF and hold-out predictions.

    Rows with fold -1 train in every fold and are never validated on; a row with no known label in a
    fold (both heads blank) trains nothing there and is left out of it (with MixUp it would blank its
    partner's labels). `val_labels` (default the rows'
    labels) are what validation scores and chooses the best epoch by: self-training's students train on
    pseudo-labels and validate on the stated ones. `fold_labels` (K, N, 2), when given, are the labels
    fold k trains on (default the rows' labels in every fold): a student's fold k learns from teacher
    fold k's pseudo-labels only."""
    run_dir = Path(run_dir or cfg.run_dir)
    tta = check_tta(cfg.tta)
    n_folds = int(folds.max()) + 1
    if fold_labels is not None and np.shape(fold_labels) != (n_folds, len(data), 2):
        raise ValueError(f"fold_labels has shape {np.shape(fold_labels)}, expected {(n_folds, len(data), 2)} "
                         "(folds, rows, heads)")
    oof = np.full((len(data), len(tta), 2), np.nan)
    hold = np.full((n_folds, len(tta), len(holdout), 2), np.nan) if holdout is not None and len(holdout) else None
    histories, seconds = {}, {}
    shared = None  # the model the folds train in turn (one traced train step)
    hold_ids = ids_digest(holdout.df) if hold is not None else ""  # a fold's hold-out answers are for these rows
    for k in range(n_folds):
        fold_dir = run_dir / f"fold{k}"
        preds_path = fold_dir / "predictions.npz"
        val_rows = np.flatnonzero(folds == k)
        if preds_path.exists() and (fold_dir / "model.keras").exists():
            with np.load(preds_path) as z:
                saved_hold = z["holdout"]
                hold_changed = hold is not None and (saved_hold.shape[:2] != hold.shape[1:3]
                                                     or ("holdout_ids" in z and str(z["holdout_ids"]) != hold_ids))
                if not np.array_equal(z["rows"], val_rows) or z["oof"].shape[1] != len(tta) or hold_changed:
                    raise ConfigError(f"{fold_dir} holds fold {k} of a run with other rows, folds, hold-out or TTA; "
                                      "delete the run folder, or choose another run_name, to train afresh")
                oof[val_rows] = z["oof"]
            _check_finished_fold(cfg, fold_dir, data, np.flatnonzero(folds != k), val_rows)
            if hold is not None and saved_hold.size:
                hold[k] = saved_hold
            print(f"fold {k}: already finished, predictions loaded")
            continue
        labels_k = data.labels if fold_labels is None else np.asarray(fold_labels[k], dtype="float32")
        train_rows = np.flatnonzero(folds != k)
        labelled = (labels_k[train_rows] >= 0).any(axis=1)  # a row with no label teaches nothing
        unlabelled, train_rows = int((~labelled).sum()), train_rows[labelled]
        print(f"--- fold {k + 1}/{n_folds}: train {len(train_rows)} rows" + (f" ({unlabelled} without a label left out)"
              if unlabelled else "") + f", validate {len(val_rows)} rows ---", flush=True)
        t0 = time.time()
        try:
            val = data.subset(val_rows)
            if val_labels is not None:
                val.labels = np.asarray(val_labels, dtype="float32")[val_rows]
            train = data.subset(train_rows)
            train.labels = labels_k[train_rows]
            model, history = _train_one(cfg, train, val, fold_dir, shared)
            shared = model
            oof[val_rows] = np.moveaxis(predict_tta(model, data.images[val_rows], tta, cfg.batch_size * 2), 0, 1)
            hold_k = predict_tta(model, holdout.images, tta, cfg.batch_size * 2) if hold is not None else np.zeros((0,))
            if hold is not None:
                hold[k] = hold_k
            save_keras(model, fold_dir / "model.keras")
            with atomic_path(preds_path) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, oof=oof[val_rows], holdout=hold_k, rows=val_rows, holdout_ids=hold_ids)
        except Exception as exc:
            raise FoldError(f"fold {k} (of {n_folds}) failed: {type(exc).__name__}: {exc}; "
                            f"finished folds are kept and skipped when you run again") from exc
        histories[k], seconds[k] = history, time.time() - t0
        print(f"fold {k}: done in {seconds[k]:.0f}s", flush=True)
    del shared
    keras.backend.clear_session()  # free the folds' graphs
    return KFoldResult(oof, folds, hold, tta, histories, seconds)


def fold_spread(labels: np.ndarray, probs: np.ndarray, folds: np.ndarray, thresholds: dict) -> pd.DataFrame:
    """F1 and AUC per fold at the OOF thresholds, with mean and standard deviation."""
    rows = {}
    for k in np.unique(folds):
        t = evaluate(labels[folds == k], probs[folds == k], thresholds)
        rows[f"fold {k}"] = {f"{m} {target}": t.loc[target, m] for target in t.index for m in ("f1", "f1_always_yes", "auc")}
    table = pd.DataFrame(rows).T
    return pd.concat([table, table.agg(["mean", "std"])])


def score_row(labels, probs, thresholds) -> dict:
    """One row of a gains table: per target the F1 beside the always-"yes" F1 of the same rows, and the
    AUC (chance: 0.5)."""
    t = evaluate(labels, probs, thresholds)
    out = {}
    for target in ("5K", *HEADS):
        out |= {f"F1 {target}": t.loc[target, "f1"], f"always-yes F1 {target}": t.loc[target, "f1_always_yes"],
                f"AUC {target}": t.loc[target, "auc"]}
    return out


def gain_table(result: KFoldResult, labels: np.ndarray, holdout_labels: np.ndarray | None = None) -> tuple[pd.DataFrame, dict]:
    """What TTA and the fold ensemble buy, with thresholds tuned on OOF rows only.

    Returns the table and the thresholds of each variant. OOF rows: one model per row,
    with and without TTA (thresholds tuned on those rows, so both are equally optimistic).
    Hold-out rows (if any): a single fold model (mean over folds) against the averaged
    ensemble, all at the OOF thresholds, so these rows are scored honestly.
    """
    ident = result.tta.index("identity") if "identity" in result.tta else 0
    variants = {"no TTA": result.oof[:, ident], "TTA": result.oof.mean(axis=1)}
    thresholds = {name: tune_thresholds(labels, p) for name, p in variants.items()}
    rows = {f"OOF: single model, {name}": score_row(labels, p, thresholds[name]) for name, p in variants.items()}
    if result.holdout is not None and holdout_labels is not None:
        single = {"no TTA": result.holdout[:, ident], "TTA": result.holdout.mean(axis=1)}  # (k, H, 2)
        for name, per_fold in single.items():
            scores = pd.DataFrame([score_row(holdout_labels, p, thresholds[name]) for p in per_fold])
            rows[f"hold-out: single fold model, {name} (mean of {len(per_fold)})"] = scores.mean().to_dict()
        for name, per_fold in single.items():
            rows[f"hold-out: {len(per_fold)}-fold ensemble, {name}"] = score_row(holdout_labels, per_fold.mean(axis=0), thresholds[name])
    return pd.DataFrame(rows).T, thresholds


def oof_frame(data: TrainingData, result: KFoldResult) -> pd.DataFrame:
    """image_id, fname, fold, labels and the OOF probabilities (per augmentation and mean)."""
    out = data.df[["image_id", "fname"]].copy()
    out["fold"] = result.folds
    for i, h in enumerate(HEADS):
        out[h] = np.where(data.labels[:, i] >= 0, data.labels[:, i], np.nan)
    for j, t in enumerate(result.tta):
        for i, h in enumerate(HEADS):
            out[f"p_{h}_{t}"] = result.oof[:, j, i]
    mean = result.oof.mean(axis=1)
    for i, h in enumerate(HEADS):
        out[f"p_{h}"] = mean[:, i]
    return out


@dataclass
class KFoldData:
    """The cross-validated rows with their folds, and the hold-out rows kept out of every fold."""

    cv: TrainingData
    holdout: TrainingData
    folds: np.ndarray  # fold per cv row
    folds_file: Path  # data/processed/folds.csv (hold-out rows have fold -1)
    hidden: np.ndarray | None = None  # (cv rows, 2) the labels `hidden_label_fraction` hid (-1 where none was)

    def __str__(self) -> str:
        hidden = "" if self.hidden is None else f" ({int((self.hidden >= 0).any(axis=1).sum())} of them with their labels hidden)"
        return f"{len(self.cv)} rows in {int(self.folds.max()) + 1} folds{hidden}, {len(self.holdout)} hold-out rows"


def kfold_data(cfg: Config, holdout_fraction: float = 0.0, *, progress: bool = True) -> KFoldData:
    """Decode the training split at the fold models' size, keep `holdout_fraction` of it out of every
    fold (stratified and duplicate-aware, like the folds), split the rest into `cfg.folds` folds and
    save them to data/processed/folds.csv."""
    data = load_training_data(cfg, size=train_size(cfg), progress=progress)
    record_skipped(cfg, data)
    groups = duplicate_group_ids(data.df, progress=progress)
    if holdout_fraction > 0:
        cv_rows, hold_rows = holdout_split(data.df, holdout_fraction, cfg.seed + 1, groups)
    else:
        cv_rows, hold_rows = np.arange(len(data)), np.array([], dtype=int)
    cv, hidden = data.subset(cv_rows), None
    if cfg.hidden_label_fraction > 0:  # before the folds: they stratify on the labels the run may see
        cv, hidden = hide_labels(cv, cfg.hidden_label_fraction, cfg.seed + 2)
        print(f"hidden_label_fraction={cfg.hidden_label_fraction}: the labels of {int((hidden >= 0).any(axis=1).sum())} "
              f"of {len(cv)} cross-validated photos are hidden (kept aside to score their pseudo-labels)")
    cv_folds = make_folds(cv.df, cfg.folds, cfg.seed, groups[cv_rows])
    all_folds = np.full(len(data), -1)
    all_folds[cv_rows] = cv_folds
    path = save_folds(data.df, all_folds, groups, PROCESSED_DATA_DIR / "folds.csv")
    return KFoldData(cv, data.subset(hold_rows), cv_folds, path, hidden)


def hide_labels(data: TrainingData, fraction: float, seed: int) -> tuple[TrainingData, np.ndarray]:
    """The rows with every label of a seeded `fraction` of the photos made blank (in the table too), and
    the hidden labels ((N, 2), -1 where nothing was hidden): real data with known truth behind its blanks."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(data), size=int(round(fraction * len(data))), replace=False))
    hidden = np.full_like(data.labels, -1)
    hidden[rows] = data.labels[rows]
    labels = data.labels.copy()
    labels[rows] = -1
    df = data.df.copy()
    for column in ("mask", "distancing", "5k"):
        if column in df.columns:
            df[column] = df[column].astype("Int64")
            df.loc[rows, column] = pd.NA
    return TrainingData(df, data.images, labels, data.skipped), hidden


@holds_lock(lambda a: a["cfg"].run_dir)
@atomic_group()
def save_kfold(cfg: Config, split: KFoldData, result: KFoldResult, thresholds: dict, metrics: pd.DataFrame,
               gains: pd.DataFrame, *, probs: np.ndarray | None = None, columns: dict | None = None) -> dict[str, Path]:
    """Everything notebook 06 and `fivek predict` need, written once: the run's config, thresholds,
    ensemble.json (image size, TTA, folds, fallback), the OOF predictions and metrics, the gains,
    and the fold models with their TTA as one graph (`ensemble.keras`).

    `probs` are the run's final OOF probabilities (default: the image models' with TTA; with the face
    stage, the stack's, whose stack.json `workflows.stacking.save_stack` writes), `columns` more OOF
    columns for oof.csv. Without the face stage a stack.json left by an earlier run is removed, so
    prediction cannot pick up a stack these models were not tuned with."""
    oof_probs = result.oof.mean(axis=1) if probs is None else probs
    paths = save_run(cfg, None, val_df=split.cv.df, val_labels=split.cv.labels, val_probs=oof_probs,
                     thresholds=thresholds, metrics=metrics, train_labels=split.cv.labels, image_size=train_size(cfg),
                     tta=result.tta, inference_info={"folds": int(result.folds.max()) + 1, "recipe": cfg.fold_recipe,
                                                     "face_stage": bool(cfg.face_stage)},
                     extra={"gains": gains.reset_index().to_dict("records"), "fold_seconds": result.seconds})
    frame = oof_frame(split.cv, result)
    for name, values in (columns or {}).items():
        frame[name] = values
    paths["oof"] = atomic_write_csv(cfg.run_dir / "oof.csv", frame)
    stale = cfg.run_dir / "stack.json"
    if not cfg.face_stage and atomic_remove(stale):  # with the rest of this save, or not at all
        print(f"removing {stale}: this run has no face stage")
    if atomic_remove(cfg.run_dir / STUDENTS_FILE):  # students of the models this save replaces: self-training names them again
        print(f"removing {cfg.run_dir / STUDENTS_FILE}: prediction uses these models until self-training finishes again")
    paths["gains"] = atomic_write_csv(cfg.report_dir / "gains.csv", gains.reset_index(names="variant"))
    paths["ensemble_graph"] = save_ensemble(cfg.run_dir, result.tta)
    return paths
