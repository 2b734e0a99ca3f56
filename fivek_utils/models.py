"""Two-head EfficientNet / EfficientNetV2 models built from `keras.applications` backbones.

The model takes pixels in [0, 255] at any size and owns its preprocessing. It has two sigmoid
outputs, `mask` and `distancing`; the 5K answer is derived from them (see `decide_5k`).
"""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np

HEADS = ("mask", "distancing")

# keras.applications constructor name -> short variant name used for ImageNet-21k checkpoints
BACKBONES: dict[str, str | None] = {
    **{f"EfficientNetB{i}": None for i in range(8)},
    "EfficientNetV2B0": "b0",
    "EfficientNetV2B1": "b1",
    "EfficientNetV2B2": "b2",
    "EfficientNetV2B3": "b3",
    "EfficientNetV2S": "s",
    "EfficientNetV2M": "m",
    "EfficientNetV2L": "l",
}
KERAS_WEIGHTS = (None, "imagenet")
HUB_WEIGHTS = ("imagenet21k", "imagenet21k-ft1k")


class ModelConfigError(ValueError):
    """A backbone or weights setting that cannot be built."""


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


def check_backbone(name: str) -> str:
    """Return `name` if it is a supported keras.applications backbone, else say what is."""
    if name not in BACKBONES:
        raise ModelConfigError(f"backbone={name!r} is not supported; choose one of {sorted(BACKBONES)}")
    return name


def is_v2(name: str) -> bool:
    return check_backbone(name).startswith("EfficientNetV2")


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


def build_model(
    backbone: str | keras.Model = "EfficientNetV2B0",
    weights: str | None = None,
    dropout: float = 0.2,
    *,
    name: str | None = None,
) -> keras.Model:
    """Build the two-head classifier.

    Args:
        backbone: a key of `BACKBONES`, or a headless `keras.Model` of your own that takes
            (None, None, 3) float pixels in [0, 255] and returns a feature map (its layers named
            like keras.applications' `stem_*`, `block<stage>*`, `top_*` if `unfreeze_blocks`
            should pick stages of it).
        weights: None (random), "imagenet" (keras.applications, ImageNet-1k),
            "imagenet21k" / "imagenet21k-ft1k" (official EfficientNetV2 checkpoints,
            converted once and cached, see `fivek_utils.weights`), or a local
            `.weights.h5`, `.keras` or SavedModel folder. Only None for a model of your own.
        dropout: rate of the dropout before the two heads.
    """
    inputs = keras.Input((None, None, 3), name="image")  # float pixels in [0, 255]
    if isinstance(backbone, keras.Model):
        if weights is not None:
            raise ModelConfigError(f"weights={weights!r}: load the weights of your own backbone {backbone.name} before passing it")
        return _with_heads(inputs, backbone(inputs), dropout, name or f"fivek_{backbone.name}")
    check_backbone(backbone)
    source = _classify_weights(weights)

    if source == "hub" or source == "savedmodel":
        if not is_v2(backbone):
            raise ModelConfigError(f"weights={weights!r} exist only for EfficientNetV2 backbones, not {backbone}")
        from .weights import resolve_pretrained

        weights_file, scale, offset = resolve_pretrained(backbone, weights)
        base = build_backbone(backbone, include_preprocessing=False)
        base.load_weights(weights_file)
        x = keras.layers.Rescaling(scale, offset, name="preprocess")(inputs)
    else:
        base = build_backbone(backbone, weights="imagenet" if source == "imagenet" else None)
        x = inputs
    model = _with_heads(inputs, base(x), dropout, name or f"fivek_{backbone.lower()}")
    if source in ("keras_file", "weights_file"):
        load_model_weights(model, weights)
    return model


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


def _with_heads(inputs, features, dropout: float, name: str) -> keras.Model:
    """Global average pooling, dropout and the two sigmoid heads on a backbone's feature map."""
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    x = ScheduledDropout(dropout, name="head_dropout")(x)
    # float32 outputs keep the sigmoid stable under mixed precision
    outputs = {h: keras.layers.Dense(1, activation="sigmoid", name=h, dtype="float32")(x) for h in HEADS}
    return keras.Model(inputs, outputs, name=name)


def _classify_weights(weights: str | None) -> str:
    if weights is None:
        return "none"
    if weights == "imagenet":
        return "imagenet"
    if weights in HUB_WEIGHTS:
        return "hub"
    path = Path(str(weights)).expanduser()
    if path.is_dir():
        return "savedmodel"
    if str(path).endswith(".weights.h5"):
        if not path.exists():
            raise FileNotFoundError(f"weights file {path} does not exist")
        from .weights import is_converted_backbone

        if is_converted_backbone(path):  # a converted 21k backbone: its sidecar names its Rescaling
            return "savedmodel"
        return "weights_file"
    if path.suffix == ".keras":
        if not path.exists():
            raise FileNotFoundError(f"model file {path} does not exist")
        return "keras_file"
    raise ModelConfigError(
        f"weights={weights!r}: use None, 'imagenet', 'imagenet21k', 'imagenet21k-ft1k', "
        "or an existing .weights.h5 / .keras file or SavedModel folder"
    )


def load_model_weights(model: keras.Model, path: str | Path) -> keras.Model:
    """Load a full fivek model's weights from `.weights.h5` or `.keras`, or backbone-only weights.

    Any mismatch is an error: a model is never left partly initialised at random.
    """
    path = Path(path)
    if path.suffix == ".keras":
        saved = keras.saving.load_model(path, compile=False, safe_mode=True)
        _copy_weights(saved, model, path)
        return model
    try:
        model.load_weights(path)
    except Exception as full_err:
        base = get_backbone(model)
        try:
            base.load_weights(path)
        except Exception as base_err:
            raise ModelConfigError(
                f"{path} fits neither this model ({model.name}) nor its backbone ({base.name}): "
                f"model: {full_err}; backbone: {base_err}"
            ) from base_err
    return model


def _copy_weights(src: keras.Model, dst: keras.Model, path: Path) -> None:
    sw, dw = src.get_weights(), dst.get_weights()
    if len(sw) != len(dw) or any(a.shape != b.shape for a, b in zip(sw, dw)):
        raise ModelConfigError(f"{path} holds a different architecture ({src.name}) than {dst.name}")
    dst.set_weights(sw)


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


# Keras's BatchNormalization default (0.99) averages its statistics over about 100 steps, so in a
# from-scratch run of a few hundred steps the inference-mode statistics lag far behind the weights and
# validation predictions sit near chance while training learns (measured on the synthetic set).
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


def set_dropout(model: keras.Model, rate: float) -> None:
    """Change the head dropout in place (progressive learning); no re-compile needed."""
    if not 0.0 <= rate < 1.0:
        raise ModelConfigError(f"dropout rate {rate} must be in [0, 1)")
    model.get_layer("head_dropout").rate.assign(float(rate))


def get_dropout(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.get_layer("head_dropout").rate))


# --- the 5K rule -------------------------------------------------------------------------
def combine_5k(p_mask, p_distancing):
    """P(5K) = P(mask) * P(distancing): both must hold; the heads are treated as independent."""
    return np.asarray(p_mask, dtype="float64") * np.asarray(p_distancing, dtype="float64")


def decide_5k(p_mask, p_distancing, t_mask: float = 0.5, t_distancing: float = 0.5) -> np.ndarray:
    """5K = 1 exactly when both heads clear their thresholds, as 5k = mask AND distancing."""
    return ((np.asarray(p_mask) >= t_mask) & (np.asarray(p_distancing) >= t_distancing)).astype("int64")
