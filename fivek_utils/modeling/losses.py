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


def log1mexp(a):
    """log(1 - exp(a)) for a < 0, accurate at both ends (Maechler 2012): expm1 near 0, log1p far from it.

    Each branch gets an input it is finite on, so the branch `where` does not pick cannot put a NaN
    into the gradient.
    """
    ln2 = 0.6931471805599453
    near = a > -ln2
    a_near = keras.ops.where(near, a, -ln2)
    a_far = keras.ops.where(near, -ln2, a)
    return keras.ops.where(near, keras.ops.log(-keras.ops.expm1(a_near)), keras.ops.log1p(-keras.ops.exp(a_far)))


@keras.saving.register_keras_serializable(package="fivek")
class BagBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy of image labels on bags of face crops (multiple-instance learning).

    `y_pred` holds one logit per crop, P(face masked) = sigmoid(logit); `y_true` holds per crop
    [its image's mask label, its image's index within the batch]. An image has mask = 1 only if every
    face in it is masked, so log P(image mask = 1) is the sum of its crops' log sigmoid (the product of
    their probabilities, the AND), and the loss is -[y log P + (1 - y) log(1 - P)] averaged over the
    images, computed in log space so a confident bag keeps its gradient. Images whose label is blank
    (-1) give neither loss nor gradient.
    """

    def __init__(self, name: str = "bag_bce", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        logits = keras.ops.reshape(keras.ops.cast(y_pred, "float32"), (-1,))
        y_true = keras.ops.cast(keras.ops.reshape(y_true, (-1, 2)), "float32")
        bag = keras.ops.cast(y_true[:, 1], "int32")
        n = keras.ops.shape(logits)[0]  # at most one bag per crop; empty bag slots are left out below
        log_p = keras.ops.segment_sum(keras.ops.log_sigmoid(logits), bag, num_segments=n)
        crops = keras.ops.segment_sum(keras.ops.ones_like(logits), bag, num_segments=n)
        label = keras.ops.segment_sum(y_true[:, 0], bag, num_segments=n) / keras.ops.maximum(crops, 1.0)
        known = keras.ops.cast((crops > 0) & (label >= 0), "float32")
        target = keras.ops.where(label >= 0, label, keras.ops.zeros_like(label))
        log_p = keras.ops.minimum(log_p, -1e-30)  # log P < 0; at exactly 0, log(1 - P) would be -inf
        bce = -(target * log_p + (1.0 - target) * log1mexp(log_p))
        return keras.ops.sum(bce * known) / keras.ops.maximum(keras.ops.sum(known), 1.0)
