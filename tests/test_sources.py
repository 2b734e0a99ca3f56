"""The official checkpoints under every name: Kaggle Models handles with their versions, TF Hub URLs,
feature widths, and the docs' table of them, docs/imagenet21k-weights.md (no TensorFlow needed)."""

from __future__ import annotations

import pytest

from fivek_utils.core import config
from fivek_utils.modeling.pretrained import cache, sources
from fivek_utils.modeling.pretrained.standin import automl_plan


def test_source_table_names_every_variant():
    assert set(sources.SOURCES) == {"imagenet21k", "imagenet21k-ft1k"}
    for src in sources.SOURCES.values():
        assert set(src) == {"b0", "b1", "b2", "b3", "s", "m", "l"}  # xl has no keras twin
    s = sources.pretrained_source("b0", "imagenet21k")
    assert s.kaggle_handle == "google/efficientnet-v2/tensorFlow2/imagenet21k-b0-feature-vector"
    assert s.hub_url == "https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet21k_b0/feature_vector/2"
    assert s.cache_name == "b0-21k.weights.h5"
    f = sources.pretrained_source("m", "imagenet21k-ft1k")
    assert f.kaggle_handle == "google/efficientnet-v2/tensorFlow2/imagenet21k-ft1k-m-feature-vector"
    assert f.hub_url == "https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet21k_ft1k_m/feature_vector/2"
    assert f.cache_name == "m-21k-ft1k.weights.h5"
    with pytest.raises(config.ModelConfigError):
        sources.pretrained_source("xl", "imagenet21k")
    with pytest.raises(config.ModelConfigError, match="EfficientNetV2"):
        cache.resolve_pretrained("EfficientNetB0", "imagenet21k")


def test_kaggle_versions_are_the_publicly_seen_ones_and_unknown_ones_stay_unknown():
    seen = {  # public notebooks and the TF Hub -> Kaggle redirect lists (../shared/FACTS.md)
        "imagenet21k": {"b0": 1, "b1": 1, "b3": 1, "s": 2, "m": 2, "l": 2},
        "imagenet21k-ft1k": {"b0": 1, "b3": 1, "m": 2, "l": 2},
    }
    for source, versions in sources.KAGGLE_VERSIONS.items():
        for variant, version in versions.items():
            src = sources.pretrained_source(variant, source)
            assert version == seen[source].get(variant)
            if version is None:
                assert src.kaggle_source is None
            else:
                assert src.kaggle_source == f"google/efficientnet-v2/tensorFlow2/{src.kaggle_variation}/{version}"
    assert sources.pretrained_source("b3").kaggle_source.endswith("/imagenet21k-b3-feature-vector/1")
    assert sources.pretrained_source("s").kaggle_source.endswith("/imagenet21k-s-feature-vector/2")


@pytest.mark.parametrize("variant", sources.VARIANTS)
def test_feature_widths_are_the_automl_head_widths(variant):
    # the automl head width; test_automl_layout_maps_onto_every_keras_variant ties it to the Keras twin
    assert automl_plan(variant)[2] == sources.FEATURE_WIDTHS[variant] == sources.pretrained_source(variant).feature_width


def test_the_weights_page_holds_the_source_table():
    page = (config.CODE_ROOT / "docs" / "imagenet21k-weights.md").read_text()
    assert sources.pretrained_table() in page, ("docs/imagenet21k-weights.md's pretrained-weights table is stale: "
                                                "paste `fivek weights table`")
