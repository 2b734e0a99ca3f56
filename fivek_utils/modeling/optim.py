"""The learning-rate schedule and the optimizer every recipe uses (Keras only, any backend)."""

from __future__ import annotations

import keras


def warmup_cosine(base_lr: float, total_steps: int, warmup_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up from 0 to `base_lr`, then cosine decay to 0 at `total_steps`."""
    warmup_steps = int(min(max(warmup_steps, 0), max(total_steps - 1, 0)))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(1, total_steps - warmup_steps),
        warmup_target=base_lr,
        warmup_steps=warmup_steps,
    )


def make_optimizer(schedule, weight_decay: float) -> keras.optimizers.Optimizer:
    """AdamW; norms and biases are excluded from weight decay."""
    opt = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)
    opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return opt
