"""Training: warm-up + cosine schedules, callbacks, resumable fitting and the two-phase recipe.

Every labelled value trains: a row with a blank `distancing` still trains `mask`, and the
reverse, because the loss of each head skips rows whose label is blank (-1).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from ..core.config import CACHE_DIR, Config, ConfigError
from ..core.io import atomic_group, atomic_write_json, save_keras
from ..core.locks import holds_lock
from ..core.metrics import evaluate, f1_5k, summary_row
from ..data.images import load_images
from ..data.meta import label_array, load_meta
from .backbones import set_trainable
from .inference import predict_probs
from .compiled import compile_for_run
from .losses import compile_model  # noqa: F401  (kept importable from here)
from .optim import make_optimizer, warmup_cosine
from .pipeline import make_train_dataset
from .resume import EpochBackup, prune_log


# --- schedule and optimizer: modeling.optim (Keras only); kept importable from here ----------------


# --- callbacks -------------------------------------------------------------------------------
class ValidationMetrics(keras.callbacks.Callback):
    """Adds scikit-learn metrics on the full validation set to the epoch logs.

    Logs `val_f1_5k` (5K rule at 0.5/0.5), `val_auc_5k` and per-head F1/AUC, so that the
    checkpoint and early-stopping callbacks after it can monitor them. Must come before them
    in the callback list.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 64):
        super().__init__()
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.last_probs: np.ndarray | None = None
        table = evaluate(labels, np.ones((len(labels), 2)))  # answering "yes" everywhere: the bar to clear
        self.always_yes = {f"val_f1_{t.lower()}_always_yes": float(table.loc[t, "f1_always_yes"]) for t in table.index}

    def on_train_begin(self, logs=None):
        print("validation F1 of answering yes everywhere (the bar; AUC's is 0.5): "
              + ", ".join(f"{k[7:-11]} {v:.3f}" for k, v in self.always_yes.items()))

    def on_epoch_end(self, epoch, logs=None):
        probs = predict_probs(self.model, self.images, self.batch_size)
        self.last_probs = probs
        table = evaluate(self.labels, probs)
        if logs is not None:
            logs.update({k.lower(): v for k, v in summary_row(table, "val_").items() if "precision" not in k and "recall" not in k})
            logs["val_f1_5k"] = f1_5k(self.labels, probs)
            logs["val_f1_5k_always_yes"] = self.always_yes["val_f1_5k_always_yes"]


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model (atomically, `.keras`) whenever `monitor` improves.

    The best value is kept in a JSON beside the file (`best.json`: the value, the part and
    epoch that reached it, and that epoch's logs), so a resumed run never replaces a better
    checkpoint with a worse one. The model and its record are replaced together (one
    `atomic_group`). `part` names the fit (phase or stage) the epochs belong to.
    """

    def __init__(self, path: str | Path, monitor: str = "val_f1_5k", mode: str = "max"):
        super().__init__()
        self.path, self.monitor, self.mode = Path(path), monitor, mode
        self.state_path = self.path.with_suffix(".json")
        self.best = -math.inf if mode == "max" else math.inf
        self.part: str | None = None
        if self.state_path.exists() and self.path.exists():
            self.best = json.loads(self.state_path.read_text())["best"]

    def _better(self, value: float) -> bool:
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value) or not self._better(float(value)):
            return
        self.best = float(value)
        record = {"best": self.best, "part": self.part, "epoch": int(epoch), "monitor": self.monitor,
                  "logs": {k: float(v) for k, v in logs.items() if isinstance(v, (int, float, np.number))}}
        with atomic_group():
            save_keras(self.model, self.path)
            atomic_write_json(self.state_path, record)

    def catch_up(self, model: keras.Model, epoch: int, logs: dict) -> None:
        """After a resume: `model` holds the restored weights of `epoch`, whose logged row is
        `logs`; save them as the best if a kill after the backup kept that epoch from it."""
        self.set_model(model)
        self.on_epoch_end(epoch, logs)


# --- data -----------------------------------------------------------------------------------
@dataclass
class TrainingData:
    """Training rows with their decoded images and (mask, distancing) labels (-1 = blank)."""

    df: pd.DataFrame
    images: np.ndarray
    labels: np.ndarray
    skipped: dict[str, str] = field(default_factory=dict)  # fname -> why

    def subset(self, rows: np.ndarray) -> "TrainingData":
        return TrainingData(self.df.iloc[rows].reset_index(drop=True), self.images[rows], self.labels[rows])

    def __len__(self) -> int:
        return len(self.df)


def load_training_data(cfg: Config, size: int | None = None, *, progress: bool = True) -> TrainingData:
    """Load, validate and decode the training split.

    A bad meta file is an error; missing or unreadable images are counted, reported and
    skipped (a long run should not die on one broken photo): printed here, kept in `skipped`
    (`workflows.runs.record_skipped` lists them in the run's reports).
    """
    size = size or cfg.image_size
    df = load_meta(cfg.data_path, "train", check_files=False)
    if cfg.max_train_images and cfg.max_train_images < len(df):
        df = df.sample(n=cfg.max_train_images, random_state=cfg.seed).sort_index()
    df = df.reset_index(drop=True)
    decoded = load_images(df["path"].tolist(), size, cache_dir=CACHE_DIR, num_workers=cfg.num_workers, progress=progress, desc="train",
                          cache_max_gb=cfg.cache_max_gb)
    skipped = {df["fname"].iloc[i]: msg for i, msg in decoded.errors.items()}
    if skipped:
        print(decoded.report("training images"))
    keep = np.flatnonzero(decoded.ok)
    df = df.iloc[keep].reset_index(drop=True)
    return TrainingData(df, decoded.images[keep], label_array(df), skipped)


# --- resumable fitting -------------------------------------------------------------------------
# settings that may differ when a run is resumed (hardware, naming, the cache's bound, inference only)
# and the face stage's settings (the face models keep a run key of their own)
_NOT_IN_RUN_KEY = {"run_name", "strategy", "mixed_precision", "jit_compile", "num_workers", "cache_max_gb", "tta",
                   "test_split", "data_dir",
                   *(name for name in Config.field_names() if name.startswith("face_")),
                   # self-training's settings make the students (each in a folder of its own, with the noise
                   # its settings give in its key), not the teacher
                   *(name for name in Config.field_names() if name.startswith(("student_", "pseudo_label_"))),
                   "self_training_rounds"}


def ids_digest(df: pd.DataFrame) -> str:
    """A short digest of a table's image ids, in order (run keys compare rows by it)."""
    return hashlib.sha1("\n".join(map(str, df["image_id"])).encode()).hexdigest()[:16]


def check_run_key(run_dir: Path, cfg: Config, train: TrainingData, val: TrainingData, *, key_file: str = "run_key.json",
                  settings: dict | None = None, **extra) -> None:
    """Refuse to resume a run folder that other settings or other rows made.

    The first call writes `key_file` (the settings and a digest of the training and validation
    image ids); later calls must match it, so a changed notebook parameter never silently reuses
    finished phases or a stale best checkpoint. `settings` replaces the image model's settings
    (the face models keep their own key, `face_run_key.json`).
    """
    config = settings if settings is not None else {k: v for k, v in cfg.to_dict().items() if k not in _NOT_IN_RUN_KEY}
    key = {
        "config": json.loads(json.dumps(config, default=str)),
        "train_ids": ids_digest(train.df), "val_ids": ids_digest(val.df),
        **json.loads(json.dumps(extra, default=str)),
    }
    path = Path(run_dir) / key_file
    if not path.exists():
        atomic_write_json(path, key)
        return
    saved = json.loads(path.read_text())
    # a setting that a later version of the kit added, at its default, made the same run
    defaults = json.loads(json.dumps(Config().to_dict(), default=str)) if settings is None else {}
    for name in set(key["config"]) - set(saved.get("config", {})):
        if name in defaults and key["config"][name] == defaults[name]:
            saved.setdefault("config", {})[name] = key["config"][name]
    if saved == key:
        return
    changed = sorted(k for k in set(saved["config"]) | set(key["config"]) if saved["config"].get(k) != key["config"].get(k))
    changed += [k for k in key if k != "config" and saved.get(k) != key[k]]
    raise ConfigError(f"{run_dir} holds a run made with other settings or rows (changed: {changed}); "
                      "delete that folder, or choose another run_name, to train afresh")


class EpochTimer(keras.callbacks.Callback):
    """Logs training seconds and images per second of each epoch (validation excluded).

    Must come first in the callback list, so that it stops the clock before validation.
    """

    def __init__(self, images_per_epoch: int):
        super().__init__()
        self.images_per_epoch = images_per_epoch
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._t0
        if logs is not None:
            logs["train_seconds"] = seconds
            logs["images_per_second"] = self.images_per_epoch / max(seconds, 1e-9)


class AddToLogs(keras.callbacks.Callback):
    """Adds constant values (stage, image size, ...) to every epoch's logs."""

    def __init__(self, values: dict):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.values)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)


def fit_resumable(
    model: keras.Model,
    ds,
    val: TrainingData,
    *,
    name: str,
    run_dir: Path,
    epochs: int,
    images_per_epoch: int,
    best: BestCheckpoint,
    initial_epoch: int = 0,
    patience: int | None = None,
    log_values: dict | None = None,
    callbacks: list | None = None,
    batch_size: int = 64,
) -> pd.DataFrame:
    """Fit a compiled model for `epochs` epochs so that a re-run after a kill resumes exactly.

    Finished parts leave `<name>.done.weights.h5` (weights and optimizer state) and are
    skipped next time; an unfinished part resumes after its last backed-up epoch, so every
    epoch is trained once and logged once, whenever the kill came (see `modeling.resume`).
    Returns the part's per-epoch log.
    """
    done = run_dir / f"{name}.done.weights.h5"
    log_path = run_dir / f"{name}_log.csv"
    backup = EpochBackup(run_dir / f"{name}_backup")
    if done.exists():
        print(f"{name}: already finished, loading {done.name}")
        model.optimizer.build(model.trainable_variables)  # so its saved state loads too
        model.load_weights(done)
        backup.remove()  # left when a kill came between the two
        return pd.read_csv(log_path) if log_path.exists() else pd.DataFrame()
    if epochs <= 0:
        return pd.DataFrame()
    run_dir.mkdir(parents=True, exist_ok=True)
    end = initial_epoch + epochs
    resumed = backup.restore(model)
    start = initial_epoch if resumed is None else resumed
    # The log row of an epoch is written before its backup: rows of `start` and later belong to
    # epochs the backup does not have, which are trained (and logged) again now.
    dropped = prune_log(log_path, start)
    best.part = name
    if resumed is not None:
        print(f"{name}: resuming at epoch {start + 1} of {end} from {backup.folder.name}"
              + (f" (dropped {dropped} log row(s) of epochs it had not backed up)" if dropped else ""))
        # The best checkpoint is written after the backup: a kill in between left it one epoch behind.
        logged = pd.read_csv(log_path) if log_path.exists() else pd.DataFrame()
        row = logged[logged["epoch"] == start - 1] if len(logged) else logged
        if len(row):
            best.catch_up(model, start - 1, row.iloc[-1].to_dict())
    if start < end and not backup.stopped:
        early = [] if patience is None else [keras.callbacks.EarlyStopping("val_f1_5k", mode="max", patience=patience)]
        backup.early_stopping = early[0] if early else None
        all_callbacks = [  # order matters at an epoch's end: the log, then the backup, then the best checkpoint
            EpochTimer(images_per_epoch),
            ValidationMetrics(val.images, val.labels, batch_size),
            AddToLogs(log_values or {}),
            keras.callbacks.CSVLogger(str(log_path), append=True),
            *early,
            backup,
            best,
            *(callbacks or []),
        ]
        t0 = time.time()
        model.fit(ds, initial_epoch=start, epochs=end, callbacks=all_callbacks, verbose=2, shuffle=False)
        print(f"{name}: finished in {time.time() - t0:.0f}s")
    save_keras(model, done)
    backup.remove()
    return pd.read_csv(log_path)


# --- the two-phase recipe ------------------------------------------------------------------
def fit_phase(
    model: keras.Model,
    train: TrainingData,
    val: TrainingData,
    *,
    name: str,
    run_dir: Path,
    epochs: int,
    base_lr: float,
    trainable_blocks: int,
    cfg: Config,
    best: BestCheckpoint,
    early_stopping: bool,
    callbacks: list | None = None,
) -> pd.DataFrame:
    """One phase: set what trains, compile with its own warm-up + cosine schedule, fit.

    A phase of no epochs does nothing (so it does not undo the traced train step of the phase that
    the model's previous fold ended with: `modeling.compiled`)."""
    if epochs <= 0:
        return pd.DataFrame()
    set_trainable(model, trainable_blocks, freeze_batchnorm=cfg.batchnorm_frozen)
    steps = steps_per_epoch(len(train), cfg.batch_size)
    total, warmup = steps * epochs, round(cfg.warmup_epochs * steps)
    compile_for_run(model, ("warmup_cosine", base_lr, total, warmup, cfg.weight_decay),
                    lambda: make_optimizer(warmup_cosine(base_lr, total, warmup), cfg.weight_decay),
                    label_smoothing=cfg.label_smoothing, jit_compile=cfg.jit_compile)
    ds = make_train_dataset(
        train.images, train.labels, cfg.batch_size, seed=cfg.seed,
        randaugment_magnitude=cfg.randaugment_magnitude, mixup_alpha=cfg.mixup_alpha,
    ) if not (run_dir / f"{name}.done.weights.h5").exists() else None
    return fit_resumable(
        model, ds, val, name=name, run_dir=run_dir, epochs=epochs, images_per_epoch=steps * cfg.batch_size,
        best=best, patience=cfg.early_stopping_patience if early_stopping else None,
        log_values={"image_size": int(train.images.shape[1])}, callbacks=callbacks, batch_size=cfg.batch_size * 2,
    )


@holds_lock(lambda a: a["run_dir"] or a["cfg"].run_dir)
def train_two_phase(
    model: keras.Model,
    train: TrainingData,
    val: TrainingData,
    cfg: Config,
    run_dir: Path | None = None,
    callbacks: list | None = None,
) -> pd.DataFrame:
    """Head on a frozen backbone, then the top blocks with BatchNorm frozen and a lower LR.

    The best model by validation 5K F1 across both phases is saved as `best.keras` and
    loaded back into `model` at the end. Re-running after an interruption resumes.
    """
    run_dir = Path(run_dir or cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_run_key(run_dir, cfg, train, val, recipe="two_phase")
    best = BestCheckpoint(run_dir / "best.keras")
    common = dict(run_dir=run_dir, cfg=cfg, best=best, callbacks=callbacks)
    head = fit_phase(model, train, val, name="phase1_head", epochs=cfg.epochs_head, base_lr=cfg.lr_head,
                     trainable_blocks=0, early_stopping=False, **common)
    tune = fit_phase(model, train, val, name="phase2_finetune", epochs=cfg.epochs_finetune, base_lr=cfg.lr_finetune,
                     trainable_blocks=cfg.unfreeze_blocks, early_stopping=True, **common)
    history = pd.concat([head.assign(phase="head"), tune.assign(phase="finetune")], ignore_index=True)
    history["epoch"] = np.arange(1, len(history) + 1)
    load_best(model, run_dir / "best.keras")
    return history


def load_best(model: keras.Model, path: Path) -> keras.Model:
    """Load the best checkpoint's weights into `model` (when one was written)."""
    if Path(path).exists():
        saved = keras.saving.load_model(path, compile=False)
        model.set_weights(saved.get_weights())
    return model
