"""Converting automl SavedModels onto keras.applications backbones: the layer mapping, the self-check
that picks the input transform (and refuses what matches none), and the report beside the weights.

The official SavedModels are stood in for by `modeling.pretrained.standin`, which writes the automl
layout (variable names, execution order, hub-style `__call__`) with a raw-TF forward pass."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import (
    B0,
    TOL,
    export_standin,
    files_in,
    fresh_batch,
    load_savedmodel,
    rel_error,
)
from fivek_utils.modeling import backbones
from fivek_utils.modeling.pretrained import convert, sources
from fivek_utils.modeling.pretrained.standin import _layer_specs


@pytest.mark.parametrize(
    "variant,backbone",
    [
        ("b2", "EfficientNetV2B2"),
        ("b3", "EfficientNetV2B3"),
        ("s", "EfficientNetV2S"),
        ("m", "EfficientNetV2M"),
        pytest.param("l", "EfficientNetV2L", marks=pytest.mark.slow),
    ],
)
def test_automl_layout_maps_onto_every_keras_variant(variant, backbone):
    """The automl names/order of every variant pair with its keras.applications twin (shapes only)."""
    zero = np.float32(0)
    variables = {f"{path}/{p}": np.broadcast_to(zero, shape) for path, _, params in _layer_specs(variant) for p, shape in params.items()}
    layers, ignored, prefix = convert._parse_automl(variables)
    assert not ignored and prefix == f"efficientnetv2-{variant}"
    base = backbones.build_backbone(backbone, include_preprocessing=False)
    pairs = convert._map_onto(base, layers, prefix, variant)
    assert sum(len(c.arrays) for _, c in pairs) == len(variables) == len(base.weights)


def test_parser_sorts_blocks_numerically_and_tolerates_name_variants():
    specs = _layer_specs("b0")
    variables = {}
    for path, _, params in reversed(specs):  # any order in, execution order out
        for p, shape in params.items():
            name = f"{path}/{p}:0".replace("tpu_batch_normalization", "batch_normalization")
            variables[name] = np.zeros(shape, "float32")
    layers, ignored, _ = convert._parse_automl(variables)
    names = [c.name for c in layers]
    assert names[:2] == ["efficientnetv2-b0/stem/conv2d", "efficientnetv2-b0/stem/batch_normalization"]
    blocks = [int(n.split("/blocks_")[1].split("/")[0]) for n in names if "/blocks_" in n]
    assert blocks == sorted(blocks) and blocks[-1] == 20  # blocks_10 after blocks_9
    # MBConv block: expand conv, bn, depthwise, bn, SE reduce, SE expand, project conv, bn
    b5 = [n.split("blocks_5/")[1] for n in names if "/blocks_5/" in n]
    assert b5 == ["conv2d", "batch_normalization", "depthwise_conv2d", "batch_normalization_1",
                  "se/conv2d", "se/conv2d_1", "conv2d_1", "batch_normalization_2"]
    b3 = [n.split("blocks_3/")[1] for n in names if "/blocks_3/" in n]  # fused: conv, bn, conv, bn
    assert b3 == ["conv2d", "batch_normalization", "conv2d_1", "batch_normalization_1"]
    b0 = [n.split("blocks_0/")[1] for n in names if "/blocks_0/" in n]
    assert b0 == ["conv2d", "batch_normalization"]  # fused, expansion 1 -> keras block1a_project_conv


MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.mark.parametrize(
    "fixture,transform,scale,offset",
    [
        ("b0", "identity", 1 / 255, 0.0),  # [0, 1] fed straight to the network (the tfhub.dev reading)
        pytest.param("b0_m11", "minus1_1", 1 / 128, -1.0, marks=[pytest.mark.slow, pytest.mark.compat]),  # automl's [-1, 1]
        pytest.param("b0_imagenet", "imagenet", list(1 / (255 * STD)), list(-MEAN / STD),  # mean/std, as keras' V2-B0..B3
                     marks=pytest.mark.slow),
    ],
)
def test_convert_matches_savedmodel(request, fixture, transform, scale, offset):
    sm = request.getfixturevalue(f"sm_{fixture}")
    info = request.getfixturevalue(f"conv_{fixture}")
    out = Path(info["weights_file"])

    assert info["input_transform"] == transform
    assert info["scale"] == pytest.approx(scale) and info["offset"] == pytest.approx(offset)
    assert info["feature_width"] == 1280
    assert info["max_rel_error"] < TOL
    # the other candidates really were told apart
    assert sorted(info["rel_errors"].values())[1] > 10 * info["max_rel_error"]
    assert info["tensors_mapped"] == 359 and info["layers_mapped"] == 150
    side = json.loads(sources.sidecar_path(out).read_text())
    assert sources.sidecar_path(out).name == out.name.replace(".weights.h5", ".json")
    for key in ("source", "variant", "input_transform", "scale", "offset", "max_rel_error", "tensors_mapped", "tensorflow", "keras"):
        assert key in side
    assert side["variant"] == "b0" and side["keras"] == keras.__version__ and side["tensorflow"] == tf.__version__
    assert files_in(out.parent) == sorted([out.name, sources.sidecar_path(out).name])  # no temporary files left

    # fresh batch, other size: Keras backbone + GAP on T(x) == SavedModel(x)
    x = fresh_batch()
    base = backbones.build_backbone(B0, include_preprocessing=False)
    base.load_weights(out)
    mine = np.asarray(base(x * 255.0 * np.asarray(scale) + np.asarray(offset), training=False)).mean(axis=(1, 2))
    ref = load_savedmodel(sm)(tf.constant(x), training=False).numpy()
    assert rel_error(mine, ref) < TOL


@pytest.mark.slow
def test_b1_checkpoint_refused_for_b0_backbone(sm_b1, tmp_path):
    out = tmp_path / "out" / "b0.weights.h5"
    with pytest.raises(sources.ConversionError) as err:
        convert.convert_savedmodel(sm_b1, B0, out)
    msg = str(err.value)
    assert "block2a_expand_conv" in msg and "efficientnetv2-b1/blocks_1/conv2d" in msg  # first mismatch, both sides
    assert "150 weighted layers" in msg and "184 layers" in msg  # the counts
    assert not out.parent.exists() or files_in(out.parent) == []
    # the same checkpoint converts for its own backbone
    info = convert.convert_savedmodel(sm_b1, "EfficientNetV2B1", tmp_path / "b1.weights.h5")
    assert info["input_transform"] == "identity" and info["max_rel_error"] < TOL


@pytest.mark.slow
def test_a_wider_variant_converts_with_its_feature_width(sm_root, tmp_path):
    """B2 end to end (about 12 s); every variant's layout, B3's 1536-wide head included, is mapped by
    test_automl_layout_maps_onto_every_keras_variant without a conversion."""
    sm = export_standin(sm_root, "b2_minus1_1", variant="b2", seed=7, input_transform="minus1_1")
    info = convert.convert_savedmodel(sm, "EfficientNetV2B2", tmp_path / "b2.weights.h5", tol=TOL)
    assert info["feature_width"] == 1408 and info["input_transform"] == "minus1_1" and info["max_rel_error"] < TOL
    # a B2 checkpoint is no B3: the widths differ from the first layer on
    with pytest.raises(sources.ConversionError, match="does not fit"):
        convert.convert_savedmodel(sm, "EfficientNetV2B3", tmp_path / "other.weights.h5")


def test_swapped_checkpoint_fails_the_self_check(sm_swap, tmp_path):
    out = tmp_path / "b0.weights.h5"
    with pytest.raises(sources.ConversionError, match="matches none of the input conventions") as err:
        convert.convert_savedmodel(sm_swap, B0, out)
    for name, (desc, _scale, _offset) in convert.INPUT_TRANSFORMS.items():  # the error of every candidate is reported
        assert f"{name} ({desc}):" in str(err.value)
    assert files_in(tmp_path) == []


def test_checkpoint_with_a_missing_variable_is_refused(sm_drop, tmp_path):
    with pytest.raises(sources.ConversionError, match="missing"):
        convert.convert_savedmodel(sm_drop, B0, tmp_path / "b0.weights.h5")
    assert files_in(tmp_path) == []
