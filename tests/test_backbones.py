"""keras.applications backbones: what trains in each phase, BatchNorm that learns keeps up, and
the tiny backbone follows the same naming."""

import keras
import numpy as np
import pytest

from fivek_utils.core.config import ModelConfigError
from fivek_utils.modeling.backbones import (
    LEARNING_BN_MOMENTUM,
    backbone_stages,
    build_backbone,
    get_backbone,
    set_trainable,
    tiny_backbone,
)
from fivek_utils.modeling.models import build_model


def test_set_trainable_unfreezes_top_blocks_and_keeps_batchnorm_frozen():
    model = build_model("EfficientNetV2B0", None)
    base = get_backbone(model)
    assert set_trainable(model, 0) == 0 and not base.trainable
    set_trainable(model, 2)
    trainable = {l.name for l in base.layers if l.trainable and l.weights}
    assert trainable and all(n.startswith(("block5", "block6", "top_")) for n in trainable)
    assert not any(isinstance(l, keras.layers.BatchNormalization) and l.trainable for l in base.layers)
    set_trainable(model, -1)
    assert any(l.name.startswith("block1") and l.trainable for l in base.layers)
    assert any(l.name.startswith("stem_conv") and l.trainable for l in base.layers)


def test_batchnorm_that_learns_gets_the_fast_momentum_and_frozen_keeps_its_own():
    model = build_model("EfficientNetB0", None)  # keras.applications' B0 uses Keras's default, 0.99
    bns = [l for l in get_backbone(model).layers if isinstance(l, keras.layers.BatchNormalization)]
    set_trainable(model, -1, freeze_batchnorm=True)
    assert all(l.momentum == 0.99 and not l.trainable for l in bns)  # pretrained statistics stay as they are
    set_trainable(model, -1, freeze_batchnorm=False)
    assert all(l.trainable and l.momentum == LEARNING_BN_MOMENTUM for l in bns)


def test_stages_and_the_tiny_backbone_unfreeze_like_the_efficientnets():
    assert backbone_stages(build_backbone("EfficientNetV2B0")) == 6
    assert backbone_stages(build_backbone("EfficientNetB0")) == 7
    model = build_model(tiny_backbone(), None)
    set_trainable(model, 1)
    trainable = {l.name for l in get_backbone(model).layers if l.trainable and l.weights}
    assert trainable == {"block3a_conv", "top_conv"}  # BatchNorm frozen by default
    set_trainable(model, -1, freeze_batchnorm=False)
    assert all(l.trainable for l in get_backbone(model).layers if l.weights)


def test_unknown_backbone_and_preprocessing_that_cannot_be_left_out():
    with pytest.raises(ModelConfigError, match="EfficientNetV2B0"):
        build_backbone("ResNet50")
    with pytest.raises(ModelConfigError, match="only EfficientNetV2"):
        build_backbone("EfficientNetB0", include_preprocessing=False)
    out = build_backbone("EfficientNetV2B0", include_preprocessing=False)(np.zeros((1, 32, 32, 3), "float32"))
    assert out.shape[-1] == 1280


def test_keras_imagenet_weights_come_from_the_local_folder_or_fail_naming_it(tmp_path, monkeypatch):
    from fivek_utils.modeling.backbones import KERAS_WEIGHTS_ENV, build_backbone, write_imagenet_standin

    monkeypatch.setenv(KERAS_WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(ModelConfigError, match=f"{KERAS_WEIGHTS_ENV}={tmp_path} holds neither of"):
        build_backbone("EfficientNetB0", weights="imagenet")  # never random weights, never a download
    path = write_imagenet_standin("EfficientNetB0", tmp_path, seed=3)
    assert path.name == "efficientnetb0_notop.weights.h5"
    loaded = build_backbone("EfficientNetB0", weights="imagenet")
    fresh = build_backbone("EfficientNetB0", weights=None)
    kernel = next(w for w in loaded.weights if "stem_conv" in w.path)
    assert not np.allclose(kernel.numpy(), next(w for w in fresh.weights if "stem_conv" in w.path).numpy())
    fresh.load_weights(path)
    assert np.array_equal(kernel.numpy(), next(w for w in fresh.weights if "stem_conv" in w.path).numpy())


def test_stochastic_depth_is_scaled_as_keras_would_build_it_and_trains():
    from fivek_utils.modeling.backbones import set_stochastic_depth, stochastic_depth_layers

    model = build_model("EfficientNetB0", None)
    layers = stochastic_depth_layers(model)
    built = [layer.rate for layer in layers]
    assert len(layers) >= 5 and max(built) == pytest.approx(0.2, abs=0.03) and min(built) > 0
    assert set_stochastic_depth(model, 0.4) == len(layers)
    assert [layer.rate for layer in layers] == pytest.approx([2 * r for r in built])
    set_stochastic_depth(model, 0.1)  # from keras's rates, not from the last call's
    assert [layer.rate for layer in layers] == pytest.approx([r / 2 for r in built])
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    quiet = build_model("EfficientNetB0", None, dropout=0.0)  # no head dropout: only stochastic depth is random
    set_stochastic_depth(quiet, 0.0)
    assert np.allclose(quiet(x, training=True)["mask"], quiet(x, training=True)["mask"])
    set_stochastic_depth(quiet, 0.9)
    assert not np.allclose(quiet(x, training=True)["mask"], quiet(x, training=True)["mask"])
    with pytest.raises(ModelConfigError, match="drop_connect_rate=1.0"):
        set_stochastic_depth(model, 1.0)
    assert set_stochastic_depth(build_model(tiny_backbone(), None), 0.3) == 0  # none to change
