"""The face stage of notebook 05: every training photo's faces found once and cropped, then per fold a
face-crop mask model trained on the fold's training rows (multiple-instance learning on the image
labels) and its bag probability of mask = 1 for the fold's out-of-fold rows and for the hold-out.

The folds are the image models' folds, so each row's face probability comes from a model that never
saw the row, and the stack (`workflows.stacking`) can be fitted on them. The folds share one face
model, reset to its initial weights before each (`FaceTrainer`): its train step is traced once.

`FaceFoldsJob` trains them beside the image folds: on a machine without a GPU or TPU in a process of
its own (`core.background`), since one training keeps 2 CPU cores only part of the time busy.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from ..core.background import Background
from ..core.config import CACHE_DIR, Config, ConfigError
from ..core.io import atomic_path, save_keras
from ..core.locks import hold_locks, holds_lock
from ..data.crops import FaceCrops, load_crops
from ..data.faces import Detections
from ..data.people import people_features
from ..modeling.face_model import FaceTrainer, bag_batches_per_epoch, bag_probabilities, build_face_model, predict_faces
from ..modeling.training import TrainingData, ids_digest, check_run_key
from .faces import detect_split, detector_for
from .kfold import FoldError, KFoldData

FACE_MODEL = "face_model.keras"
FACE_PREDICTIONS = "face_predictions.npz"


FACE_FILES = ("face_model.keras", "face_predictions.npz", "face_run_key.json")
# settings beside the face_* ones that make a face model: its dropout, weight decay, seeds and BatchNorm
SHARED_SETTINGS = ("dropout", "weight_decay", "seed", "freeze_batchnorm", "warmup_epochs")


def face_settings(cfg: Config) -> dict:
    """The settings that make a face model (its run key), the detector's included."""
    own = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name.startswith("face_") and f.name != "face_stage"}
    return {**own, **{name: getattr(cfg, name) for name in SHARED_SETTINGS}}


def face_freeze_batchnorm(cfg: Config) -> bool:
    """`freeze_batchnorm` when set, else frozen exactly when the face model starts from pretrained weights."""
    return cfg.face_weights is not None if cfg.freeze_batchnorm is None else bool(cfg.freeze_batchnorm)


@dataclass
class FaceData:
    """The faces of the cross-validated rows and of the hold-out rows."""

    detections: Detections
    key: str  # the detections' cache key
    cv: FaceCrops
    holdout: FaceCrops
    people_cv: pd.DataFrame
    people_holdout: pd.DataFrame

    def problems(self) -> dict[str, str]:
        """fname -> why it has no face crop although it should have been looked at: unreadable or unplaced
        at detection (`Detections.errors`), or unreadable when cropping."""
        out = dict(self.detections.errors)
        fnames = list(self.detections.images)
        for crops, offset in ((self.cv, 0), (self.holdout, len(self.cv))):
            out.update({fnames[offset + i]: msg for i, msg in crops.errors.items()})
        return out

    def __str__(self) -> str:
        def part(c: FaceCrops) -> str:
            return f"{int(c.counts.sum())} faces in {len(c)} images ({int((c.counts == 0).sum())} without a face)"

        problems = self.problems()
        named = "; ".join(f"{f}: {m}" for f, m in list(problems.items())[:3])
        return (f"detector {self.detections.detector['name']}: cross-validated rows {part(self.cv)}; "
                f"hold-out {part(self.holdout)}"
                + (f"; {len(problems)} photo(s) could not be looked at (no face, counted above): {named}" if problems else ""))


def face_data(cfg: Config, split: KFoldData, *, progress: bool = True) -> FaceData:
    """Find the faces of every training photo (cached in data/interim/faces/) and crop them."""
    df = pd.concat([split.cv.df, split.holdout.df], ignore_index=True)
    paths, fnames = df["path"].tolist(), df["fname"].tolist()
    detector = detector_for(cfg, cfg.data_path, "train")
    found = detect_split(paths, fnames, detector, "train", progress=progress)
    crops = load_crops(paths, fnames, found.detections, cfg.face_crop_size, detections_key=found.key,
                       margin=cfg.face_margin, max_faces=cfg.face_max_per_image, cache_dir=CACHE_DIR, progress=progress,
                       cache_max_gb=cfg.cache_max_gb)
    n_cv = len(split.cv)
    if not crops.counts.sum():
        raise ConfigError(f"the {detector.name} detector found no face in any of the {len(df)} training photos, so the "
                          "face stage has nothing to learn from: check face_min_size / face_min_confidence, use "
                          "face_detector='truth' on synthetic data, or set face_stage=False")
    without = int((crops.counts == 0).sum())
    if without > len(df) / 2:
        hint = (" The synthetic data's cartoon faces need face_detector='truth' (the generator's head boxes)."
                if detector.name == "mtcnn" and (cfg.data_path / "train" / "scenes.jsonl").exists() else "")
        print(f"warning: {without} of {len(df)} photos have no detected face; they keep the image model's answer.{hint}")
    people = people_features(found.detections, fnames)
    return FaceData(found.detections, found.key, crops.subset(np.arange(n_cv)), crops.subset(np.arange(n_cv, len(df))),
                    people.iloc[:n_cv].reset_index(drop=True), people.iloc[n_cv:].reset_index(drop=True))


@dataclass
class FaceFoldResult:
    """Bag probabilities of mask = 1 (NaN for an image without a face)."""

    oof: np.ndarray  # (N,) each row by the fold's face model that did not train on it
    oof_crops: np.ndarray  # (F,) each cross-validated crop's P(face masked), by that same model (NaN: not kept)
    holdout_crops: np.ndarray | None  # (k, F) every fold's face model on each hold-out crop: P(face masked)
    holdout_counts: np.ndarray | None  # (H,) crops per hold-out row
    histories: dict[int, pd.DataFrame]
    seconds: dict[int, float]

    @property
    def holdout(self) -> np.ndarray | None:
        """(H,) the hold-out bag probabilities of the fold ensemble, as prediction makes them: each face's
        probability averaged over the fold models, then the product over the image's faces."""
        if self.holdout_crops is None:
            return None
        return bag_probabilities(self.holdout_crops.mean(axis=0), self.holdout_counts)


def _ids(df: pd.DataFrame) -> TrainingData:
    return TrainingData(df.reset_index(drop=True), np.zeros((0,)), np.zeros((len(df), 2)))


def _single_device() -> None:
    """The bag loss needs each image's crops in one batch on one device: a multi-replica strategy
    (several GPUs, a TPU) would cut bags across replicas. The face model is small; it trains on one."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            raise ConfigError(f"run_face_kfold was called inside a {replicas}-replica strategy scope: the face model "
                              "trains on one device (its bags must not be split across replicas); call it outside "
                              "`with accel.scope():`")


@holds_lock(lambda a: a["run_dir"] or a["cfg"].run_dir)
def run_face_kfold(cfg: Config, split: KFoldData, faces: FaceData, run_dir: Path | None = None, *,
                   val_labels: np.ndarray | None = None, fold_labels: np.ndarray | None = None) -> FaceFoldResult:
    """Train one face model per fold (skipping finished ones) and collect OOF and hold-out bag probabilities.
    Rows with fold -1 train in every fold; `val_labels` (mask, default the rows' own) are what validation scores;
    `fold_labels` (K, N) mask, when given, what fold k trains on (a student's fold k: teacher fold k's labels)."""
    _single_device()
    run_dir = Path(run_dir or cfg.run_dir)
    folds, labels = split.folds, split.cv.labels[:, 0]
    scored = labels if val_labels is None else np.asarray(val_labels, dtype="float32")
    n_folds = int(folds.max()) + 1
    if fold_labels is None:
        fold_labels = np.broadcast_to(labels, (n_folds, len(labels)))
    elif np.shape(fold_labels) != (n_folds, len(labels)):
        raise ValueError(f"fold_labels has shape {np.shape(fold_labels)}, expected {(n_folds, len(labels))} (folds, rows)")
    oof = np.full(len(folds), np.nan)
    oof_crops = np.full(len(faces.cv.crops), np.nan)
    crop_starts = np.concatenate([[0], np.cumsum(faces.cv.counts)])
    has_hold = len(split.holdout) > 0
    hold = np.full((n_folds, len(faces.holdout.crops)), np.nan) if has_hold else None
    histories, seconds = {}, {}
    trainer = None  # one face model and one traced train step for every fold that trains
    for k in range(n_folds):
        fold_dir = run_dir / f"fold{k}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        train_rows, val_rows = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        val_crop_ids = np.concatenate([np.arange(crop_starts[r], crop_starts[r + 1]) for r in val_rows] or [np.zeros(0, int)])
        try:
            check_run_key(fold_dir, cfg, _ids(split.cv.df.iloc[train_rows]), _ids(split.cv.df.iloc[val_rows]),
                          key_file="face_run_key.json", settings=face_settings(cfg), detector=faces.detections.detector,
                          holdout_ids=ids_digest(split.holdout.df))
        except ConfigError as exc:  # only the face stage changed: its three files go, the image fold models stay
            raise ConfigError(f"{exc}. To retrain only the face models, delete {', '.join(FACE_FILES)} from each "
                              f"fold folder of {run_dir} (the image fold models there stay valid)") from None
        preds = fold_dir / FACE_PREDICTIONS
        if preds.exists() and (fold_dir / FACE_MODEL).exists():
            with np.load(preds) as z:
                if not np.array_equal(z["rows"], val_rows) or (has_hold and z["holdout"].shape != hold[k].shape):
                    raise ConfigError(f"{fold_dir} holds the face model of a run with other rows, folds or hold-out; "
                                      f"delete {', '.join(FACE_FILES)} there to train it afresh")
                oof[val_rows] = z["oof"]
                if "oof_crops" in z.files and len(z["oof_crops"]) == len(val_crop_ids):
                    oof_crops[val_crop_ids] = z["oof_crops"]
                if has_hold:
                    hold[k] = z["holdout"]
            print(f"fold {k}: face model already finished, predictions loaded")
            continue
        print(f"--- fold {k + 1}/{n_folds}: face model on {int(faces.cv.counts[train_rows].sum())} faces of "
              f"{len(train_rows)} rows ---", flush=True)
        t0 = time.time()
        try:
            if trainer is None:
                trainer = _face_trainer(cfg, faces, fold_labels, folds)
            model = trainer.face_model
            val_crops = faces.cv.subset(val_rows)
            history = trainer.fit(faces.cv.subset(train_rows), fold_labels[k][train_rows], seed=cfg.seed + k,
                                  val=(val_crops, scored[val_rows]))
            val_faces = predict_faces(model, val_crops.crops)
            oof_crops[val_crop_ids] = val_faces
            oof[val_rows] = bag_probabilities(val_faces, val_crops.counts)
            hold_k = predict_faces(model, faces.holdout.crops) if has_hold else np.zeros(0)  # per crop
            if has_hold:
                hold[k] = hold_k
            save_keras(model, fold_dir / FACE_MODEL)
            with atomic_path(preds) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, oof=oof[val_rows], oof_crops=val_faces, holdout=hold_k, rows=val_rows)
        except Exception as exc:
            raise FoldError(f"fold {k} (of {n_folds}) face model failed: {type(exc).__name__}: {exc}; "
                            "finished folds are kept and skipped when you run again") from exc
        histories[k], seconds[k] = history, time.time() - t0
        last = history.iloc[-1]
        print(f"fold {k}: face model done in {seconds[k]:.0f}s, out-of-fold mask AUC "
              f"{last.get('val_auc_mask', float('nan')):.3f} (chance 0.5)", flush=True)
    return FaceFoldResult(oof, oof_crops, hold, faces.holdout.counts if has_hold else None, histories, seconds)


def _on_cpu_only() -> bool:
    """No GPU or TPU, no distribution strategy and no mixed precision in use (a spawned process would not
    inherit the policy): the machine and run `faces_beside_images="auto"` trains the face folds beside."""
    if keras.backend.backend() != "tensorflow":
        import jax

        return all(d.platform == "cpu" for d in jax.devices())
    import tensorflow as tf

    return (not tf.config.list_physical_devices("GPU") and not tf.config.list_logical_devices("TPU")
            and not tf.distribute.has_strategy() and keras.config.dtype_policy().name == "float32")


def trains_beside(cfg: Config) -> bool:
    """Whether the face folds train in a process of their own (`faces_beside_images`; "auto": on a machine
    with 2 or more CPU cores and no GPU or TPU)."""
    if cfg.faces_beside_images != "auto":
        return cfg.faces_beside_images == "on"
    return (os.cpu_count() or 1) >= 2 and _on_cpu_only()


def _without_images(split: KFoldData) -> KFoldData:
    """The split as the face folds read it (rows, labels, folds), without the decoded images they never use."""
    def bare(d: TrainingData) -> TrainingData:
        return TrainingData(d.df, d.images[:0], d.labels, d.skipped)

    return replace(split, cv=bare(split.cv), holdout=bare(split.holdout))


def _face_folds_in_child(setup, *args, **kwargs) -> FaceFoldResult:
    if setup is not None:
        setup()
    return run_face_kfold(*args, **kwargs)


class FaceFoldsJob:
    """`run_face_kfold` beside whatever runs next (the image folds):

    >>> with FaceFoldsJob(cfg, split, faces) as faces_job:
    ...     result = run_kfold(cfg, split.cv, split.folds, split.holdout)
    >>> face_result = faces_job.result()

    Beside (`trains_beside`): started at once in a spawned process that writes the run folder under
    this process's lock (lent to it); its lines print here prefixed "faces | "; leaving the `with` on an
    error stops it. Otherwise the face folds train here when `result()` is first asked. With `faces`
    None (no face stage) `result()` is None. `setup`, a top-level function, is called first in the
    child: a change made in this process's memory (a monkeypatched model builder) does not reach it.
    """

    def __init__(self, cfg: Config, split: KFoldData, faces: FaceData | None, run_dir: Path | None = None, *,
                 val_labels: np.ndarray | None = None, fold_labels: np.ndarray | None = None, beside: bool | None = None,
                 setup=None):
        self._cfg, self._split, self._faces, self._run_dir = cfg, split, faces, Path(run_dir or cfg.run_dir)
        self._labels = {"val_labels": val_labels, "fold_labels": fold_labels}
        self._result, self._job = None, None
        self._locks = contextlib.ExitStack()
        self.beside = faces is not None and (trains_beside(cfg) if beside is None else bool(beside))
        if self.beside:
            _single_device()
            self._locks.enter_context(hold_locks([self._run_dir], lend_to_children=True))
            try:  # the face folds read the split's rows, labels and folds: its decoded images stay here
                self._job = Background(_face_folds_in_child, setup, cfg, _without_images(split), faces, self._run_dir,
                                       name="face folds", prefix="faces | ", **self._labels)
            except BaseException:
                self._locks.close()
                raise
            print(f"face folds: training in a process of their own (PID {self._job.pid}) beside what runs next "
                  "(faces_beside_images)", flush=True)

    def result(self) -> FaceFoldResult | None:
        """The face folds' result (waits for them beside, or trains them here); raises what they raised."""
        if self._result is None and self._faces is not None:
            if self._job is None:
                self._result = run_face_kfold(self._cfg, self._split, self._faces, self._run_dir, **self._labels)
            else:
                try:
                    self._result = self._job.result()
                finally:
                    self._locks.close()
        return self._result

    def stop(self) -> None:
        """Stop the face folds' process (finished folds are kept and resumed next time)."""
        if self._job is not None:
            self._job.stop()
        self._locks.close()

    def __enter__(self) -> "FaceFoldsJob":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.stop()


def _face_trainer(cfg: Config, faces: FaceData, fold_labels: np.ndarray, folds: np.ndarray) -> FaceTrainer:
    """The face model (initialised once, seeded) and its trainer, for every fold in turn (`fold_labels`
    (K, N): the mask labels each fold trains on)."""
    keras.utils.set_random_seed(cfg.seed + 100)
    model = build_face_model(cfg.face_backbone, cfg.face_weights, cfg.dropout)
    # a batch holds whole bags: one of the largest crowd fixes the batch shape for every fold (one trace)
    per_batch = max(cfg.face_batch_size, int(faces.cv.counts.max(initial=1)))
    steps = max(bag_batches_per_epoch(faces.cv.subset(np.flatnonzero(folds != k)), fold_labels[k][folds != k], per_batch)
                for k in np.unique(folds[folds >= 0]))
    return FaceTrainer(model, epochs=cfg.face_epochs, lr=cfg.face_lr, steps_per_epoch=steps,
                       crops_per_batch=per_batch, weight_decay=cfg.weight_decay,
                       warmup_epochs=cfg.warmup_epochs, freeze_batchnorm=face_freeze_batchnorm(cfg),
                       color=cfg.face_color_jitter)


def load_face_models(run_dir: str | Path) -> list[keras.Model]:
    """The fold face models of a k-fold run, in fold order."""
    from ..modeling.inference import fold_files, load_keras_file

    paths = fold_files(run_dir, FACE_MODEL)
    if not paths:
        raise FileNotFoundError(f"no fold*/{FACE_MODEL} in {run_dir}: the run has no face models")
    return [load_keras_file(p) for p in paths]
