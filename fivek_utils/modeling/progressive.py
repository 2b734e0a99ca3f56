"""Progressive learning (EfficientNetV2 paper, Section 4.2 and Table 6).

Training is split into stages; from the first stage to the last, the image size, the
RandAugment magnitude, the Mixup alpha and the dropout rate grow linearly from their minimum
to their maximum: small images with weak regularisation early, large images with strong
regularisation late. One optimizer and one warm-up + cosine schedule span all stages, and the
weights carry over (the model takes any input size), so a stage change only swaps the data
pipeline and the dropout rate.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from ..core.config import Config, ConfigError
from ..core.locks import holds_lock
from .backbones import set_trainable
from .compiled import compile_for_run
from .models import set_dropout
from .pipeline import make_train_dataset, resize_images
from .training import (
    BestCheckpoint,
    TrainingData,
    check_run_key,
    fit_resumable,
    load_best,
    make_optimizer,
    steps_per_epoch,
    warmup_cosine,
)

# (min, max) per setting. S/M/L are the paper's Table 6. B0-B3 are our scaling: the largest
# size is automl's training size for the variant (192, 192, 208, 240), and the regularisation
# maxima sit below S's because smaller models need less of it (the paper's own trend S<M<L).
PRESETS: dict[str, dict[str, tuple[float, float]]] = {
    "B0": {"image_size": (128, 192), "randaugment": (5, 10), "mixup": (0, 0), "dropout": (0.1, 0.2)},
    "B1": {"image_size": (128, 192), "randaugment": (5, 10), "mixup": (0, 0), "dropout": (0.1, 0.2)},
    "B2": {"image_size": (128, 208), "randaugment": (5, 12), "mixup": (0, 0), "dropout": (0.1, 0.3)},
    "B3": {"image_size": (128, 240), "randaugment": (5, 15), "mixup": (0, 0), "dropout": (0.1, 0.3)},
    "S": {"image_size": (128, 300), "randaugment": (5, 15), "mixup": (0, 0), "dropout": (0.1, 0.3)},
    "M": {"image_size": (128, 380), "randaugment": (5, 20), "mixup": (0, 0.2), "dropout": (0.1, 0.4)},
    "L": {"image_size": (128, 380), "randaugment": (5, 25), "mixup": (0, 0.4), "dropout": (0.1, 0.5)},
}
SIZE_MULTIPLE = 16  # stage sizes are rounded to a multiple of 16 (friendlier to the strided convs)


@dataclass(frozen=True)
class Stage:
    """The settings of one progressive stage."""

    index: int
    image_size: int
    randaugment: float
    mixup: float
    dropout: float
    epochs: int


def preset_for(backbone: str) -> str:
    """The preset matching a backbone name (EfficientNetV2S -> "S"; EfficientNetB0 -> "B0")."""
    tail = backbone.replace("EfficientNetV2", "").replace("EfficientNet", "")
    if tail in PRESETS:
        return tail
    raise ConfigError(f"no progressive preset for backbone {backbone}; set progressive_preset to one of {sorted(PRESETS)} or 'custom'")


def schedule_ranges(cfg: Config) -> dict[str, tuple[float, float]]:
    """The (min, max) of every setting: the preset, overridden by any custom value in `cfg`."""
    name = cfg.progressive_preset
    if name == "auto":
        name = preset_for(cfg.backbone)
    if name == "custom":
        base = {"image_size": (0, 0), "randaugment": (-1, -1), "mixup": (-1, -1), "dropout": (-1, -1)}
    elif name in PRESETS:
        base = dict(PRESETS[name])
    else:
        raise ConfigError(f"progressive_preset={name!r}: use 'auto', 'custom' or one of {sorted(PRESETS)}")
    overrides = {
        "image_size": (cfg.size_min, cfg.size_max, 0),
        "randaugment": (cfg.ra_min, cfg.ra_max, -1),
        "mixup": (cfg.mixup_min, cfg.mixup_max, -1),
        "dropout": (cfg.dropout_min, cfg.dropout_max, -1),
    }
    out = {}
    for key, (lo, hi, unset) in overrides.items():
        lo = base[key][0] if lo == unset else lo
        hi = base[key][1] if hi == unset else hi
        if lo == unset or hi == unset:
            raise ConfigError(f"progressive_preset='custom' needs both ends of {key} (e.g. size_min and size_max)")
        if lo > hi:
            raise ConfigError(f"progressive {key}: minimum {lo} is above maximum {hi}")
        out[key] = (float(lo), float(hi))
    if out["image_size"][0] < 32:
        raise ConfigError(f"progressive image sizes {out['image_size']}: EfficientNets need at least 32 pixels")
    if out["dropout"][1] >= 1:
        raise ConfigError(f"progressive dropout maximum {out['dropout'][1]} must be below 1")
    return out


def make_schedule(cfg: Config) -> list[Stage]:
    """Stages whose settings move linearly from the minimum (first) to the maximum (last)."""
    n = cfg.progressive_stages
    if n < 1:
        raise ConfigError(f"progressive_stages={n}: need at least one stage")
    r = schedule_ranges(cfg)

    def line(key):
        lo, hi = r[key]
        return np.linspace(lo, hi, n) if n > 1 else np.array([hi])

    sizes = np.maximum(32, np.round(line("image_size") / SIZE_MULTIPLE) * SIZE_MULTIPLE).astype(int)
    sizes[-1] = int(r["image_size"][1])  # the final stage trains at exactly the maximum size
    ra, mix, drop = line("randaugment"), line("mixup"), line("dropout")
    return [Stage(i, int(sizes[i]), round(float(ra[i]), 3), round(float(mix[i]), 4), round(float(drop[i]), 4), cfg.progressive_epochs_per_stage) for i in range(n)]


def fixed_schedule(stages: list[Stage]) -> list[Stage]:
    """The matching fixed-size schedule: one stage at the last stage's settings, same epochs."""
    last = stages[-1]
    return [Stage(0, last.image_size, last.randaugment, last.mixup, last.dropout, sum(s.epochs for s in stages))]


def schedule_table(stages: list[Stage]) -> pd.DataFrame:
    return pd.DataFrame([asdict(s) for s in stages]).set_index("index")


def plot_schedule(stages: list[Stage], name: str | None = None):
    """The four settings per stage, as the paper's Table 6 describes them."""
    import matplotlib.pyplot as plt

    from ..core.plots import save_figure

    table = schedule_table(stages)
    fig, axes = plt.subplots(1, 4, figsize=(13, 2.8))
    for ax, col in zip(axes, ("image_size", "randaugment", "mixup", "dropout")):
        ax.step(table.index + 1, table[col], where="mid", marker="o")
        ax.set_title(col)
        ax.set_xlabel("stage")
        ax.set_xticks(table.index + 1)
    fig.tight_layout()
    save_figure(fig, name)
    return fig


@holds_lock(lambda a: a["run_dir"] or a["cfg"].run_dir)
def train_progressive(
    model: keras.Model,
    train: TrainingData,
    val: TrainingData,
    cfg: Config,
    stages: list[Stage],
    run_dir: Path | None = None,
    *,
    callbacks: list | None = None,
    patience: int | None = None,
) -> pd.DataFrame:
    """Train through `stages`; validation always at the last stage's size.

    `train` and `val` may hold images of any size; each stage resizes the training images to
    its size (one decode, in memory). Resumable: finished stages are skipped and an
    interrupted stage resumes at its last finished epoch. Returns the per-epoch log with the
    stage, image size, training seconds and images per second of every epoch.
    """
    run_dir = Path(run_dir or cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_run_key(run_dir, cfg, train, val, recipe="progressive", stages=[asdict(s) for s in stages])
    final = stages[-1].image_size
    val_final = TrainingData(val.df, resize_images(val.images, final), val.labels)
    steps = steps_per_epoch(len(train), cfg.batch_size)
    total_epochs = sum(s.epochs for s in stages)
    total, warmup = steps * total_epochs, round(cfg.warmup_epochs * steps)
    set_trainable(model, cfg.unfreeze_blocks, freeze_batchnorm=cfg.batchnorm_frozen)
    # compiled once, one optimizer for every stage: the dropout rate is a variable and the model takes
    # any size, so a stage change re-traces the train step only for the new input shape (and a k-fold
    # run's next fold, on the same model, traces nothing again: `modeling.compiled`)
    compile_for_run(model, ("warmup_cosine", cfg.lr_finetune, total, warmup, cfg.weight_decay),
                    lambda: make_optimizer(warmup_cosine(cfg.lr_finetune, total, warmup), cfg.weight_decay),
                    label_smoothing=cfg.label_smoothing, jit_compile=cfg.jit_compile)
    best = BestCheckpoint(run_dir / "best.keras")
    logs, epoch0 = [], 0
    for stage in stages:
        set_dropout(model, stage.dropout)
        name = f"stage{stage.index + 1}"
        finished = (run_dir / f"{name}.done.weights.h5").exists()
        ds = None
        if not finished:
            t0 = time.perf_counter()
            images = resize_images(train.images, stage.image_size)
            ds = make_train_dataset(images, train.labels, cfg.batch_size, seed=cfg.seed + stage.index,
                                    randaugment_magnitude=stage.randaugment, mixup_alpha=stage.mixup)
            print(f"{name}/{len(stages)}: {stage.image_size}px, RandAugment {stage.randaugment:g}, "
                  f"mixup {stage.mixup:g}, dropout {stage.dropout:g}, {stage.epochs} epoch(s) "
                  f"(data ready in {time.perf_counter() - t0:.1f}s)")
        log = fit_resumable(
            model, ds, val_final, name=name, run_dir=run_dir, epochs=stage.epochs, initial_epoch=epoch0,
            images_per_epoch=steps * cfg.batch_size, best=best, patience=patience, callbacks=callbacks,
            log_values={"stage": stage.index + 1, "image_size": stage.image_size}, batch_size=cfg.batch_size * 2,
        )
        logs.append(log)
        epoch0 += stage.epochs
    history = pd.concat(logs, ignore_index=True)
    history["epoch"] = np.arange(1, len(history) + 1)
    load_best(model, run_dir / "best.keras")
    return history


def stage_summary(history: pd.DataFrame) -> pd.DataFrame:
    """Per stage: size, epochs, seconds, images per second and the best validation 5K F1."""
    g = history.groupby("stage")
    return pd.DataFrame({
        "image_size": g["image_size"].first(),
        "epochs": g.size(),
        "train_seconds": g["train_seconds"].sum().round(1),
        "images_per_second": g["images_per_second"].median().round(1),
        "best_val_f1_5k": g["val_f1_5k"].max().round(4),
    })
