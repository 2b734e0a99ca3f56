"""The two-head classifier on a `keras.applications` EfficientNet / EfficientNetV2 backbone.

The model takes pixels in [0, 255] at any size and owns its preprocessing. It has two sigmoid
outputs, `mask` and `distancing`; the 5K answer is derived from them (`core.labels.decide_5k`).
"""

from __future__ import annotations

from pathlib import Path

import keras

from ..core.config import ModelConfigError
from ..core.labels import HEADS
from .backbones import build_backbone, get_backbone
from .catalog import HUB_WEIGHTS, check_backbone, is_v2
from .layers import ScheduledDropout


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
            converted once and cached, see `modeling.pretrained`), or a local
            `.weights.h5`, `.keras` or SavedModel folder. Only None for a model of your own.
        dropout: rate of the dropout before the two heads.
    """
    inputs = keras.Input((None, None, 3), name="image")  # float pixels in [0, 255]
    if isinstance(backbone, keras.Model):
        if weights is not None:
            raise ModelConfigError(f"weights={weights!r}: load the weights of your own backbone {backbone.name} before passing it")
        return _with_heads(inputs, backbone(inputs), dropout, name or f"fivek_{backbone.name}")
    features = backbone_features(inputs, backbone, weights)
    model = _with_heads(inputs, features, dropout, name or f"fivek_{backbone.lower()}")
    return load_head_weights(model, weights)


def backbone_features(inputs, backbone: str, weights: str | None):
    """The feature map of a `keras.applications` backbone on `inputs` (float pixels in [0, 255]),
    with its weights resolved as `build_model` describes (a full model's own weights file is loaded
    after the heads exist: `load_head_weights`). Shared by the image model and the face-crop model."""
    check_backbone(backbone)
    source = _classify_weights(weights)
    if source == "hub" or source == "savedmodel":
        if not is_v2(backbone):
            raise ModelConfigError(f"weights={weights!r} exist only for EfficientNetV2 backbones, not {backbone}")
        from .pretrained.cache import resolve_pretrained

        weights_file, scale, offset = resolve_pretrained(backbone, weights)
        base = build_backbone(backbone, include_preprocessing=False)
        base.load_weights(weights_file)
        return base(keras.layers.Rescaling(scale, offset, name="preprocess")(inputs))
    base = build_backbone(backbone, weights="imagenet" if source == "imagenet" else None)
    return base(inputs)


def load_head_weights(model: keras.Model, weights: str | None) -> keras.Model:
    """Load `weights` into a built model when they are a `.keras` / `.weights.h5` file of a whole model
    (or of its backbone); other weights were loaded into the backbone while building."""
    if weights is not None and _classify_weights(weights) in ("keras_file", "weights_file"):
        load_model_weights(model, weights)
    return model


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
        from .pretrained.convert import is_converted_backbone

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


def set_dropout(model: keras.Model, rate: float) -> None:
    """Change the head dropout in place (progressive learning); no re-compile needed."""
    if not 0.0 <= rate < 1.0:
        raise ModelConfigError(f"dropout rate {rate} must be in [0, 1)")
    model.get_layer("head_dropout").rate.assign(float(rate))


def get_dropout(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.get_layer("head_dropout").rate))
