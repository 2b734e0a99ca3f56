"""Headless `keras.applications` backbones: building them, their stages, and what trains."""

from __future__ import annotations

import os
import re
from pathlib import Path

import keras

from ..core.config import ModelConfigError
from .catalog import check_backbone, is_v2


def build_backbone(name: str, *, include_preprocessing: bool = True, weights: str | None = None) -> keras.Model:
    """A headless keras.applications backbone for any input size (no pooling, no top).

    `include_preprocessing=False` (V2 only) makes a backbone that expects already-normalised
    inputs, which is what converted ImageNet-21k checkpoints need. `weights="imagenet"` is Keras's
    download, or the local file under `$FIVEK_KERAS_WEIGHTS_DIR` when that is set (`local_imagenet_weights`).
    """
    check_backbone(name)
    ctor = getattr(keras.applications, name)
    local = local_imagenet_weights(name) if weights == "imagenet" else None
    kwargs = dict(include_top=False, weights=str(local) if local else weights, input_shape=(None, None, 3), pooling=None)
    if is_v2(name):
        kwargs["include_preprocessing"] = include_preprocessing
    elif not include_preprocessing:
        raise ModelConfigError(f"{name} always includes its preprocessing; only EfficientNetV2 can omit it")
    try:
        return ctor(**kwargs)
    except Exception as exc:  # keras raises plain Exceptions for download failures
        if local is not None:
            raise ModelConfigError(f"weights='imagenet' for {name}: Keras could not load {local} "
                                   f"(${KERAS_WEIGHTS_ENV}): {type(exc).__name__}: {exc}") from exc
        if weights == "imagenet":
            raise ModelConfigError(
                f"could not get keras.applications ImageNet weights for {name} ({exc}). They are "
                "downloaded on first use: run once with internet, or set weights to a local file."
            ) from exc
        raise


# `weights="imagenet"` downloads Keras's ImageNet-1k file (and checks its hash, so no other file can sit in
# ~/.keras/models in its place). With this variable set, the headless weights are read from this folder
# instead and never downloaded: offline machines with the real file copied there, and `fivek rehearse`,
# whose stand-in file has the architecture but random values.
KERAS_WEIGHTS_ENV = "FIVEK_KERAS_WEIGHTS_DIR"


def keras_weights_names(name: str) -> tuple[str, str]:
    """The file names `local_imagenet_weights` looks for: the kit's own (`save_weights`) and Keras's
    download (e.g. `efficientnetb0_notop.h5`, which can be copied from ~/.keras/models)."""
    stem = f"{name.lower()}_notop"
    return f"{stem}.weights.h5", f"{stem}.h5"


def local_imagenet_weights(name: str) -> Path | None:
    """The local ImageNet-1k file of backbone `name` under `$FIVEK_KERAS_WEIGHTS_DIR`; None when the
    variable is unset (Keras downloads as usual). Set but without the file: an error, never random weights."""
    folder = os.environ.get(KERAS_WEIGHTS_ENV, "").strip()
    if not folder:
        return None
    for fname in keras_weights_names(name):
        path = Path(folder).expanduser() / fname
        if path.is_file():
            return path
    raise ModelConfigError(
        f"weights='imagenet' for {name}: ${KERAS_WEIGHTS_ENV}={folder} holds neither of "
        f"{list(keras_weights_names(name))}. Copy Keras's headless ImageNet file there (from ~/.keras/models "
        f"after one run with internet), or unset {KERAS_WEIGHTS_ENV} to download it."
    )


def write_imagenet_standin(name: str, folder: str | os.PathLike, seed: int = 0) -> Path:
    """A stand-in for Keras's ImageNet-1k file of `name`: the headless architecture with random (seeded)
    values, saved where `local_imagenet_weights` looks (atomically). It carries no ImageNet knowledge;
    `fivek rehearse` uses it so notebook 02 loads `weights="imagenet"` through Keras, offline."""
    from ..core.io import atomic_path

    keras.utils.set_random_seed(seed)
    base = build_backbone(name, weights=None)
    out = Path(folder) / keras_weights_names(name)[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        base.save_weights(str(tmp))
    return out


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


# keras.applications' EfficientNets drop each residual block's branch for a whole example (stochastic depth;
# survival probability 1 - rate) at rates set from drop_connect_rate = 0.2 and the block's place, which
# their public constructors fix.
KERAS_DROP_CONNECT_RATE = 0.2


def stochastic_depth_layers(model: keras.Model) -> list[keras.layers.Dropout]:
    """The per-example Dropout layers of the backbone's residual branches (noise_shape (None, 1, 1, 1))."""
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Dropout) and tuple(layer.noise_shape or ()) == (None, 1, 1, 1):
            found.append(layer)
    return found


def set_stochastic_depth(model: keras.Model, rate: float) -> int:
    """Stochastic depth as if keras.applications had been given drop_connect_rate=`rate` (it builds 0.2):
    every block's rate scaled by rate / 0.2 (the Noisy Student paper's student noise). Call before the
    model is compiled or traced. Returns the number of layers changed (0 for a backbone without
    stochastic depth, e.g. a backbone of your own)."""
    if not 0.0 <= rate < 1.0:
        raise ModelConfigError(f"drop_connect_rate={rate}: must be in [0, 1)")
    layers = stochastic_depth_layers(model)
    for layer in layers:
        base = getattr(layer, "_fivek_base_rate", layer.rate)
        layer._fivek_base_rate = base
        layer.rate = base * rate / KERAS_DROP_CONNECT_RATE
    return len(layers)
