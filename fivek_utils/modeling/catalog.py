"""What the kit can build, without Keras: the keras.applications backbones and the weights each can start from.

Light on purpose: the command line, the Kaggle bundle and the pretrained-weights table read it
without starting TensorFlow.
"""

from __future__ import annotations

from ..core.config import ModelConfigError

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


def check_backbone(name: str) -> str:
    """Return `name` if it is a supported keras.applications backbone, else say what is."""
    if name not in BACKBONES:
        raise ModelConfigError(f"backbone={name!r} is not supported; choose one of {sorted(BACKBONES)}")
    return name


def is_v2(name: str) -> bool:
    return check_backbone(name).startswith("EfficientNetV2")
