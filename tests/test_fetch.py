"""Finding the official SavedModel offline: attached Kaggle inputs whatever their version, earlier
downloads, and an error naming every route when nothing is there (no test touches the network)."""

from __future__ import annotations

import os

import pytest

from conftest import (
    B0,
    files_in,
)
from fivek_utils.core import config
from fivek_utils.modeling import models
from fivek_utils.modeling.pretrained import cache, fetch, sources


def test_offline_without_a_copy_names_every_route(isolated):
    with pytest.raises(sources.PretrainedWeightsError) as err:
        cache.resolve_pretrained(B0, "imagenet21k")
    msg = str(err.value)
    for needle in (
        "google/efficientnet-v2/tensorFlow2/imagenet21k-b0-feature-vector",
        "https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet21k_b0/feature_vector/2",
        "FIVEK_OFFLINE=1",
        "kagglehub.model_download",
        str(isolated / "weights"),
        "model_sources",
        "saved_model.pb",
    ):
        assert needle in msg, needle
    # build_model fails the same way (never a silent random init); it is a ModelConfigError
    with pytest.raises(config.ModelConfigError, match="imagenet21k-b0-feature-vector"):
        models.build_model(B0, weights="imagenet21k")
    assert files_in(isolated / "pretrained") == []


def test_download_routes_without_network(sm_b0, isolated, monkeypatch):
    """kagglehub first, then the TF Hub compressed archive (served here from a file:// URL)."""
    import tarfile

    import kagglehub

    monkeypatch.setenv("FIVEK_OFFLINE", "0")
    calls = []

    def kaggle_down(handle, *a, **k):
        calls.append(handle)
        raise ConnectionError("no network in tests")

    monkeypatch.setattr(kagglehub, "model_download", kaggle_down)
    archive = isolated / "model.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for item in sorted(sm_b0.iterdir()):
            tar.add(item, arcname=item.name)
    monkeypatch.setattr(sources.PretrainedSource, "hub_download_url", property(lambda self: archive.as_uri()))
    got = fetch.fetch_savedmodel("b0", "imagenet21k")
    assert calls == ["google/efficientnet-v2/tensorFlow2/imagenet21k-b0-feature-vector/1"]  # the table's version
    assert got == isolated / "interim" / "tfhub" / "efficientnet_v2_imagenet21k_b0_feature_vector_2"
    assert (got / "saved_model.pb").exists()
    assert [p.name for p in got.parent.iterdir()] == [got.name]  # no temporary folders left
    # found locally next time, even offline; and a kagglehub download is used when it works
    monkeypatch.setenv("FIVEK_OFFLINE", "1")
    assert fetch.fetch_savedmodel("b0", "imagenet21k") == got
    monkeypatch.setenv("FIVEK_OFFLINE", "0")
    monkeypatch.setattr(kagglehub, "model_download", lambda handle, *a, **k: str(sm_b0))
    assert fetch.fetch_savedmodel("b1", "imagenet21k") == sm_b0


@pytest.mark.parametrize("variant,version", [("b0", "1"), ("s", "2"), ("b2", "3")])
def test_attached_kaggle_model_is_found_whatever_its_version(sm_b0, isolated, monkeypatch, variant, version):
    kaggle = isolated / "kaggle"  # $FIVEK_KAGGLE_ROOT/input stands for /kaggle/input
    d = kaggle / "input" / "efficientnet-v2" / "tensorflow2" / f"imagenet21k-{variant}-feature-vector"
    d.mkdir(parents=True)
    os.symlink(sm_b0, d / version, target_is_directory=True)
    monkeypatch.setenv("FIVEK_KAGGLE_ROOT", str(kaggle))
    assert fetch.fetch_savedmodel(variant, "imagenet21k") == d / version
