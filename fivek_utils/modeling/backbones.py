"""Headless `keras.applications` backbones: building them, their stages, and what trains."""

from __future__ import annotations

import re

import keras

from ..core.config import ModelConfigError
from .catalog import check_backbone, is_v2


def build_backbone(name: str, *, include_preprocessing: bool = True, weights: str | None = None) -> keras.Model:
    """A headless keras.applications backbone for any input size (no pooling, no top).

    `include_preprocessing=False` (V2 only) makes a backbone that expects already-normalised
    inputs, which is what converted ImageNet-21k checkpoints need.
    """
    check_backbone(name)
    ctor = getattr(keras.applications, name)
    kwargs = dict(include_top=False, weights=weights, input_shape=(None, None, 3), pooling=None)
    if is_v2(name):
        kwargs["include_preprocessing"] = include_preprocessing
    elif not include_preprocessing:
        raise ModelConfigError(f"{name} always includes its preprocessing; only EfficientNetV2 can omit it")
    try:
        return ctor(**kwargs)
    except Exception as exc:  # keras raises plain Exceptions for download failures
        if weights == "imagenet":
            raise ModelConfigError(
                f"could not get keras.applications ImageNet weights for {name} ({exc}). They are "
                "downloaded on first use: run once with internet, or set weights to a local file."
            ) from exc
        raise


def tiny_backbone(width: int = 16, seed: int = 0) -> keras.Model:
    """A four-layer conv net named like keras.applications (stem_*, block<N>*, top_*), for checks
    that must train in seconds on a CPU: the learning tests, `fivek bench gpu --tiny`. Not a model
    for the task."""
    init = keras.initializers.HeNormal(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, -1.0, name="stem_rescale")(inputs)
    for name, filters in [("stem", width), ("block1a", 2 * width), ("block2a", 4 * width), ("block3a", 8 * width)]:
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, kernel_initializer=init,
                                name=f"{name}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    x = keras.layers.Conv2D(8 * width, 1, activation="relu", kernel_initializer=init, name="top_conv")(x)
    return keras.Model(inputs, x, name="tiny_cnn")


def get_backbone(model: keras.Model) -> keras.Model:
    """The nested keras.applications backbone of a fivek model."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise ModelConfigError(f"{model.name} has no nested backbone model")


_BLOCK = re.compile(r"^block(\d+)")


def backbone_stages(base: keras.Model) -> int:
    """Number of stages (block<stage><letter>) in a keras.applications EfficientNet."""
    return max(int(m.group(1)) for layer in base.layers if (m := _BLOCK.match(layer.name)))


# Keras's BatchNormalization default (0.99, which keras.applications' EfficientNet B0-B7 keep; the V2
# models use 0.9) averages its statistics over about 100 steps, so in a from-scratch run of a few hundred
# steps the inference-mode statistics lag far behind the weights and validation predictions sit near
# chance while training learns (EfficientNet-B0 on the synthetic set: distancing AUC 0.69 against 0.88).
LEARNING_BN_MOMENTUM = 0.9


def set_trainable(model: keras.Model, blocks: int, *, freeze_batchnorm: bool = True) -> int:
    """Freeze the backbone except its top `blocks` stages (and top conv); -1 unfreezes all.

    With `freeze_batchnorm` (right for pretrained weights) BatchNormalization layers stay
    frozen: with small fine-tuning batches their statistics would drift away from the
    pretrained ones (Keras transfer-learning guide). A backbone trained from scratch needs
    them trainable, or its random statistics never adapt; those that train get momentum
    `LEARNING_BN_MOMENTUM`, so their statistics keep up with a short run.
    Returns the number of trainable weight tensors in the backbone.
    """
    base = get_backbone(model)
    if blocks == 0:
        base.trainable = False
        return 0
    base.trainable = True
    first = 1 if blocks < 0 else backbone_stages(base) - blocks + 1
    for layer in base.layers:
        m = _BLOCK.match(layer.name)
        in_top = blocks < 0 or layer.name.startswith("top_") or (m is not None and int(m.group(1)) >= first)
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = in_top and not (is_bn and freeze_batchnorm)
        if is_bn and layer.trainable:
            layer.momentum = LEARNING_BN_MOMENTUM
    return len(base.trainable_weights)
