"""The loss that lets every labelled value train: binary cross-entropy over known labels only,
and `compile_model`, which puts it on both heads.

Written with `keras.ops` alone: on the backend-agnostic model path (see `layers`).
"""

from __future__ import annotations

import keras

from ..core.labels import HEADS


@keras.saving.register_keras_serializable(package="fivek")
class MaskedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy averaged over the rows whose label is known (label >= 0).

    A blank label (-1) contributes neither to the loss nor to its gradient; a batch whose
    labels are all blank has loss 0.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "masked_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        y_true = keras.ops.cast(y_true, y_pred.dtype)
        known = keras.ops.cast(y_true >= 0, y_pred.dtype)
        target = keras.ops.where(y_true >= 0, y_true, keras.ops.zeros_like(y_true))
        if self.label_smoothing:
            target = target * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        eps = keras.config.epsilon()
        p = keras.ops.clip(y_pred, eps, 1.0 - eps)
        bce = -(target * keras.ops.log(p) + (1.0 - target) * keras.ops.log(1.0 - p))
        return keras.ops.sum(bce * known) / keras.ops.maximum(keras.ops.sum(known), 1.0)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def compile_model(model: keras.Model, optimizer, *, label_smoothing: float = 0.0, jit_compile: bool | str = False) -> keras.Model:
    """Compile with the masked loss on both heads (metrics come from `training.ValidationMetrics`).

    `jit_compile`: XLA for the train step. The JAX backend always compiles (pass True or "auto").
    """
    model.compile(
        optimizer=optimizer,
        loss={h: MaskedBinaryCrossentropy(label_smoothing) for h in HEADS},
        jit_compile=jit_compile,
    )
    return model
