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
    # Without a distribution strategy Keras makes the optimizer's variables and, with two heads, a loss
    # tracker per head when the train step is first traced, and tf.function traces a step that made
    # variables a second time. Made here, eagerly (the loss computed once on an example, then the trackers reset),
    # the step is traced once: EfficientNetV2-B0 at 64 px on 2 CPU cores, first epoch 33 s instead of
    # 50 s (the second 6-7 s). The trainable variables must be set before compiling, as Keras expects.
    model.optimizer.build(model.trainable_variables)
    example = {h: keras.ops.zeros((1, 1)) for h in HEADS}
    model.compute_loss(y=example, y_pred=example, training=False)
    model.reset_metrics()  # the trackers forget that example (train_on_batch does not reset them)
    return model


def log_softplus_neg(z):
    """log(softplus(-z)) = log(log(1 + exp(-z))), exact for any logit: for z > 20 it is -z to float
    precision, where computing softplus first would round to 0 and its log to -inf. Each branch of
    the `where` gets an input it is finite on, so the other cannot put a NaN into the gradient."""
    big = z > 20.0
    z_small = keras.ops.where(big, 0.0, z)
    return keras.ops.where(big, -z, keras.ops.log(keras.ops.softplus(-z_small)))


def log1mexp_neg(log_s, s):
    """log(1 - exp(-s)) for s = exp(log_s) > 0: log(s) + log((1 - exp(-s)) / s) for small s (exact as
    s -> 0, through log_s, so a confident wrong bag keeps its gradient), log1p(-exp(-s)) otherwise."""
    ln2 = 0.6931471805599453
    near = s <= ln2
    s_near = keras.ops.where(near, s, ln2)
    ratio = keras.ops.where(s_near > 1e-4, -keras.ops.expm1(-s_near) / keras.ops.maximum(s_near, 1e-4), 1.0 - s_near / 2)
    s_far = keras.ops.where(near, ln2, s)
    return keras.ops.where(near, log_s + keras.ops.log(ratio), keras.ops.log1p(-keras.ops.exp(-s_far)))


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
        # s = sum over the bag of softplus(-z) = -log P(every face masked), kept as log s (a log-sum-exp
        # per bag) so that it stays exact when every face is confidently masked and s underflows
        t = log_softplus_neg(logits)
        t_max = keras.ops.segment_max(t, bag, num_segments=n)
        t_max = keras.ops.where(keras.ops.isfinite(t_max), t_max, keras.ops.zeros_like(t_max))  # empty slots
        log_s = t_max + keras.ops.log(keras.ops.segment_sum(keras.ops.exp(t - keras.ops.take(t_max, bag)), bag,
                                                            num_segments=n) + 1e-38)
        s = keras.ops.exp(log_s)
        crops = keras.ops.segment_sum(keras.ops.ones_like(logits), bag, num_segments=n)
        label = keras.ops.segment_sum(y_true[:, 0], bag, num_segments=n) / keras.ops.maximum(crops, 1.0)
        known = keras.ops.cast((crops > 0) & (label >= 0), "float32")
        target = keras.ops.where(label >= 0, label, keras.ops.zeros_like(label))
        bce = target * s - (1.0 - target) * log1mexp_neg(log_s, s)  # -[y log P + (1 - y) log(1 - P)], log P = -s
        bce = keras.ops.where(known > 0, bce, keras.ops.zeros_like(bce))
        return keras.ops.sum(bce) / keras.ops.maximum(keras.ops.sum(known), 1.0)
