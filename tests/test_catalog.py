"""What the kit can build, read without Keras: every keras.applications EfficientNet, the 21k
variant of each V2, and clear errors for the rest."""

import pytest

from fivek_utils.core.config import ModelConfigError
from fivek_utils.modeling.catalog import BACKBONES, HUB_WEIGHTS, check_backbone, is_v2


def test_every_efficientnet_and_its_21k_variant():
    assert [b for b in BACKBONES if not is_v2(b)] == [f"EfficientNetB{i}" for i in range(8)]
    assert {b: v for b, v in BACKBONES.items() if is_v2(b)} == {
        "EfficientNetV2B0": "b0", "EfficientNetV2B1": "b1", "EfficientNetV2B2": "b2", "EfficientNetV2B3": "b3",
        "EfficientNetV2S": "s", "EfficientNetV2M": "m", "EfficientNetV2L": "l"}
    assert HUB_WEIGHTS == ("imagenet21k", "imagenet21k-ft1k")


def test_an_unknown_backbone_lists_the_known_ones():
    assert check_backbone("EfficientNetV2S") == "EfficientNetV2S"
    with pytest.raises(ModelConfigError, match="choose one of .*EfficientNetV2S"):
        check_backbone("efficientnetv2s")
