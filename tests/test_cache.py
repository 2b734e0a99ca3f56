"""`resolve_pretrained`: verified conversions are cached and trusted only with a matching report;
`build_model` gets pixels in [0, 255] right through the chosen Rescaling."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import (
    B0,
    TOL,
    copy_conversion,
    files_in,
    fresh_batch,
    kaggle_layout,
    load_savedmodel,
    rel_error,
)
from fivek_utils.modeling import models
from fivek_utils.modeling.pretrained import cache, convert, sources


@pytest.mark.slow
def test_found_in_weights_dir_then_cached(sm_b0, isolated, monkeypatch):
    x = fresh_batch(5)
    ref = load_savedmodel(sm_b0)(tf.constant(x), training=False).numpy()
    kaggle_layout(isolated / "weights", sm_b0)
    path, scale, offset = cache.resolve_pretrained(B0, "imagenet21k")
    assert path == isolated / "pretrained" / "b0-21k.weights.h5"
    assert (scale, offset) == (pytest.approx(1 / 255), 0.0)
    side = convert.read_sidecar(path)
    assert side["source"] == "imagenet21k" and side["kaggle_handle"].endswith("imagenet21k-b0-feature-vector")

    # the fine-tuned checkpoint is a different one: the 21k copy must not stand in for it
    with pytest.raises(sources.PretrainedWeightsError, match="imagenet21k-ft1k-b0-feature-vector"):
        cache.resolve_pretrained(B0, "imagenet21k-ft1k")

    # second time: no SavedModel anywhere, and loading one would fail - the cache is used
    monkeypatch.setenv("FIVEK_WEIGHTS_DIR", str(isolated / "interim"))

    def no_load(*a, **k):
        raise AssertionError("the SavedModel was loaded again")

    monkeypatch.setattr(tf.saved_model, "load", no_load)
    assert cache.resolve_pretrained(B0, "imagenet21k") == (path, pytest.approx(1 / 255), 0.0)
    model = models.build_model(B0, weights="imagenet21k")  # and build_model works offline from it
    assert model.get_layer("preprocess").scale == pytest.approx(1 / 255)
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    assert rel_error(features(x * 255.0, training=False), ref) < TOL

    # a cache whose sidecar is for another variant, or missing, is not trusted
    sources.sidecar_path(path).write_text(json.dumps({**side, "variant": "b1"}))
    with pytest.raises(sources.PretrainedWeightsError, match="variant='b1'"):
        cache.resolve_pretrained(B0, "imagenet21k")
    sources.sidecar_path(path).unlink()
    with pytest.raises(sources.PretrainedWeightsError, match="no readable sidecar"):
        cache.resolve_pretrained(B0, "imagenet21k")
    # ... and a weights file that changed after its sidecar was written is not trusted either
    sources.sidecar_path(path).write_text(json.dumps(side))
    with open(path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(sources.PretrainedWeightsError, match="sha256"):
        cache.resolve_pretrained(B0, "imagenet21k")


def test_untrusted_cache_is_reconverted_when_the_savedmodel_is_there(sm_b0, conv_b0, isolated):
    kaggle_layout(isolated / "weights", sm_b0)
    stale = copy_conversion(conv_b0, isolated / "pretrained", "b0-21k", source="imagenet21k", variant="b1")
    path, *_ = cache.resolve_pretrained(B0, "imagenet21k")
    assert path == stale and convert.read_sidecar(path)["variant"] == "b0"
    assert convert.read_sidecar(path)["savedmodel"] == str(sm_b0.resolve())  # found through the Kaggle layout


@pytest.mark.slow
def test_converted_file_named_directly_keeps_its_rescaling(conv_b0_m11, tmp_path):
    path = copy_conversion(conv_b0_m11, tmp_path, "mine")
    assert convert.is_converted_backbone(path)
    model = models.build_model(B0, weights=str(path))
    assert model.get_layer("preprocess").scale == pytest.approx(1 / 128)
    with pytest.raises(sources.PretrainedWeightsError, match="EfficientNetV2B0"):
        models.build_model("EfficientNetV2B1", weights=str(path))


def test_refusal_through_build_model_leaves_no_cache(sm_b1, isolated):
    with pytest.raises(sources.ConversionError):
        models.build_model(B0, weights=str(sm_b1))
    assert files_in(isolated / "pretrained") == []


def test_build_model_from_savedmodel_dir_takes_pixels(sm_b0_m11, isolated):
    """The [-1, 1] checkpoint: build_model's Rescaling(1/128, -1) makes [0, 255] pixels right."""
    sm = sm_b0_m11
    model = models.build_model(B0, weights=str(sm))
    rescale = model.get_layer("preprocess")
    assert (rescale.scale, rescale.offset) == pytest.approx((1 / 128, -1.0))
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    x = fresh_batch(7)
    got = np.asarray(features(x * 255.0, training=False))  # [0, 255] pixels in
    ref = load_savedmodel(sm)(tf.constant(x), training=False).numpy()
    assert rel_error(got, ref) < TOL
    cached = files_in(isolated / "pretrained")
    assert len(cached) == 2 and cached[1].startswith("b0-") and cached[1].endswith(".weights.h5")
