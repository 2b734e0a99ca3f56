"""Compile a model for a training run, or reuse the train step it already traced.

Tracing an EfficientNet's train step costs more than a few epochs on a CPU (EfficientNetV2-B0 at
64 px on 2 cores: 30-40 s against 6-10 s an epoch). A k-fold run trains the same architecture once
per fold, so the folds share one model object: each fold puts its own initial weights into it, and
`compile_for_run` keeps the compiled (and traced) train step when nothing it baked in has changed:
the same trainable variables, learning-rate schedule, optimizer and loss settings. The optimizer
then goes back to the state a fresh compile gives (step 0, zero moments; under mixed_float16 the
initial loss scale), so the run trains as it would on a freshly compiled model.
"""

from __future__ import annotations

import weakref
from typing import Callable, Hashable

import keras
import numpy as np

from .losses import compile_model

# model -> (key, the optimizer's variables before its first step; None for those that start at 0)
_COMPILED: "weakref.WeakKeyDictionary[keras.Model, tuple[Hashable, list]]" = weakref.WeakKeyDictionary()


def compile_for_run(model: keras.Model, key: Hashable, make_optimizer: Callable[[], keras.optimizers.Optimizer], *,
                    label_smoothing: float = 0.0, jit_compile: bool | str = False) -> bool:
    """Make `model` ready to train a run from step 0 with the optimizer `make_optimizer()` would give.

    `key` names everything the optimizer and loss bake into the traced step (schedule lengths,
    learning rates, weight decay, label smoothing); the trainable variables are added to it here.
    Returns True when the model's existing compile was reused (its optimizer reset), False when it
    was compiled afresh.
    """
    full_key = (key, float(label_smoothing), str(jit_compile), tuple(id(v) for v in model.trainable_variables))
    held = _COMPILED.get(model)
    if held is not None and held[0] == full_key and model.compiled and model.optimizer is not None:
        for v, value in zip(model.optimizer.variables, held[1]):
            v.assign(np.zeros(v.shape, v.dtype) if value is None else value)
        return True
    compile_model(model, make_optimizer(), label_smoothing=label_smoothing, jit_compile=jit_compile)
    initial = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]  # built by compile_model
    _COMPILED[model] = (full_key, [a if np.any(a) else None for a in initial])
    return False

