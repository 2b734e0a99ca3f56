"""The kit's own Keras layers, written with `keras.ops` alone so that they run under any Keras
backend (TensorFlow on Kaggle and Colab, JAX on a GPU machine without TensorFlow):
`ScheduledDropout` before the two heads, and `Mirror` / `ViewMean`, the test-time augmentation
of the one-graph ensemble.

This module, like `catalog`, `backbones`, `losses` and `models`, is on the backend-agnostic model
path: it imports no TensorFlow and no keras-cv (tests/test_architecture.py checks that, and
tests/test_backend_jax.py trains the path under JAX with TensorFlow unimportable).
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="fivek")
class ScheduledDropout(keras.layers.Layer):
    """Dropout whose rate is a variable, so progressive learning can raise it between stages
    without re-compiling the model (keras.layers.Dropout bakes its rate into the traced step).
    """

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.rate = self.add_weight(shape=(), initializer=keras.initializers.Constant(float(rate)), trainable=False,
                                    name="rate", dtype="float32")

    def call(self, inputs, training=False):
        if not training:
            return inputs
        # keras.random.dropout compares its rate in Python, which a variable cannot do
        rate = keras.ops.cast(self.rate, inputs.dtype)
        keep = keras.random.uniform(keras.ops.shape(inputs), seed=self.seed_generator, dtype=inputs.dtype) >= rate
        return keras.ops.where(keep, inputs / (1.0 - rate), keras.ops.zeros_like(inputs))

    def get_config(self):
        return {**super().get_config(), "rate": float(keras.ops.convert_to_numpy(self.rate)), "seed": self.seed}


@keras.saving.register_keras_serializable(package="fivek")
class Mirror(keras.layers.Layer):
    """The batch mirrored left to right: the flip of test-time augmentation, inside a graph."""

    def call(self, images):
        return keras.ops.flip(images, axis=2)


@keras.saving.register_keras_serializable(package="fivek")
class ViewMean(keras.layers.Layer):
    """Mean over the members' outputs and over the `views` augmented copies stacked in the batch."""

    def __init__(self, views: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.views = views

    def call(self, outputs):
        x = keras.ops.mean(keras.ops.stack(outputs), axis=0)  # over the members: (views * N, 1)
        x = keras.ops.reshape(x, (self.views, -1, keras.ops.shape(x)[-1]))
        return keras.ops.mean(x, axis=0)  # over the views: (N, 1)

    def compute_output_shape(self, input_shape):
        # stated, not traced: JAX cannot split an unknown batch into `views` parts symbolically
        shape = input_shape[0]
        return (None if shape[0] is None else shape[0] // self.views, *shape[1:])

    def get_config(self):
        return {**super().get_config(), "views": self.views}
