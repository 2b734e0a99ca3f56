"""ImageNet-21k EfficientNetV2 weights: finding, converting, verifying and caching (all offline).

The official SavedModels are stood in for by `fivek_utils.automl_export`, which writes the automl
layout (variable names, execution order, hub-style `__call__`) with a raw-TF forward pass.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from fivek_utils import config, models
from fivek_utils import weights as W
from fivek_utils.automl_export import _layer_specs, automl_plan, export_automl_savedmodel
from fivek_utils.io import save_keras

B0 = "EfficientNetV2B0"
TOL = 1e-4


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def sm_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("savedmodels")


def _export(root: Path, name: str, **kwargs) -> Path:
    return export_automl_savedmodel(root / name, **kwargs)


@pytest.fixture(scope="session")
def sm_b0(sm_root) -> Path:
    return _export(sm_root, "b0_identity", variant="b0", seed=1, input_transform="identity")


@pytest.fixture(scope="session")
def sm_b0_m11(sm_root) -> Path:
    return _export(sm_root, "b0_minus1_1", variant="b0", seed=2, input_transform="minus1_1")


@pytest.fixture(scope="session")
def sm_b0_imagenet(sm_root) -> Path:
    """A SavedModel that normalises its [0, 1] input with ImageNet mean/std itself."""
    return _export(sm_root, "b0_imagenet", variant="b0", seed=6, input_transform="imagenet")


@pytest.fixture(scope="session")
def sm_b1(sm_root) -> Path:
    return _export(sm_root, "b1", variant="b1", seed=3)


@pytest.fixture(scope="session")
def sm_swap(sm_root) -> Path:
    return _export(sm_root, "b0_swap", variant="b0", seed=4, corrupt="swap")


@pytest.fixture(scope="session")
def sm_drop(sm_root) -> Path:
    return _export(sm_root, "b0_drop", variant="b0", seed=5, corrupt="drop")


def _convert(root: Path, sm: Path, name: str) -> dict:
    out_dir = root / name
    out_dir.mkdir()
    return W.convert_savedmodel(sm, B0, out_dir / f"{name}.weights.h5", tol=TOL, seed=0)


@pytest.fixture(scope="session")
def conv_b0(sm_b0, tmp_path_factory) -> dict:
    """sm_b0 converted once for the session (the sidecar and weights are copied by some tests)."""
    return _convert(tmp_path_factory.mktemp("converted"), sm_b0, "b0_identity")


@pytest.fixture(scope="session")
def conv_b0_m11(sm_b0_m11, tmp_path_factory) -> dict:
    return _convert(tmp_path_factory.mktemp("converted"), sm_b0_m11, "b0_minus1_1")


@pytest.fixture(scope="session")
def conv_b0_imagenet(sm_b0_imagenet, tmp_path_factory) -> dict:
    return _convert(tmp_path_factory.mktemp("converted"), sm_b0_imagenet, "b0_imagenet")


def _copy_conversion(info: dict, dest: Path, stem: str, **sidecar_changes) -> Path:
    """Copy a conversion (weights + sidecar) to dest/<stem>.weights.h5, optionally editing the sidecar."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"{stem}.weights.h5"
    out.write_bytes(Path(info["weights_file"]).read_bytes())
    side = json.loads(Path(info["sidecar"]).read_text())
    W.sidecar_path(out).write_text(json.dumps({**side, **sidecar_changes}))
    return out


_LOADED: dict[Path, object] = {}


def _savedmodel(path: Path):
    if path not in _LOADED:
        _LOADED[path] = tf.saved_model.load(str(path))
    return _LOADED[path]


def _fresh_batch(seed: int = 123, shape=(3, 80, 96, 3)) -> np.ndarray:
    """A batch the conversion never saw: another seed, non-square, another size."""
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=shape).astype("float32")


def _rel(a, b) -> float:
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """Empty pretrained/interim/weights/kaggle/kagglehub folders: the real caches are never used."""
    for name in ("pretrained", "interim", "weights", "kagglehub"):
        (tmp_path / name).mkdir()
    monkeypatch.setattr(config, "PRETRAINED_DIR", tmp_path / "pretrained")
    monkeypatch.setattr(config, "INTERIM_DATA_DIR", tmp_path / "interim")
    monkeypatch.setattr(W, "KAGGLE_INPUT_DIR", tmp_path / "kaggle_input_absent")
    monkeypatch.setenv("FIVEK_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    monkeypatch.setenv("FIVEK_OFFLINE", "1")
    return tmp_path


def _kaggle_layout(root: Path, savedmodel: Path, variation: str = "imagenet21k-b0-feature-vector") -> Path:
    """Place `savedmodel` where an attached Kaggle model would sit (as a link: cheap)."""
    d = root / "efficientnet-v2" / "tensorflow2" / variation
    d.mkdir(parents=True)
    os.symlink(savedmodel, d / "1", target_is_directory=True)
    return d / "1"


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in Path(d).iterdir()) if Path(d).exists() else []


# --- sources ----------------------------------------------------------------------------------
def test_source_table_names_every_variant():
    assert set(W.SOURCES) == {"imagenet21k", "imagenet21k-ft1k"}
    for src in W.SOURCES.values():
        assert set(src) == {"b0", "b1", "b2", "b3", "s", "m", "l"}  # xl has no keras twin
    s = W.pretrained_source("b0", "imagenet21k")
    assert s.kaggle_handle == "google/efficientnet-v2/tensorFlow2/imagenet21k-b0-feature-vector"
    assert s.hub_url == "https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet21k_b0/feature_vector/2"
    assert s.cache_name == "b0-21k.weights.h5"
    f = W.pretrained_source("m", "imagenet21k-ft1k")
    assert f.kaggle_handle == "google/efficientnet-v2/tensorFlow2/imagenet21k-ft1k-m-feature-vector"
    assert f.hub_url == "https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet21k_ft1k_m/feature_vector/2"
    assert f.cache_name == "m-21k-ft1k.weights.h5"
    with pytest.raises(models.ModelConfigError):
        W.pretrained_source("xl", "imagenet21k")
    with pytest.raises(models.ModelConfigError, match="EfficientNetV2"):
        W.resolve_pretrained("EfficientNetB0", "imagenet21k")


def test_kaggle_versions_are_the_publicly_seen_ones_and_unknown_ones_stay_unknown():
    seen = {  # public notebooks and the TF Hub -> Kaggle redirect lists (../shared/FACTS.md)
        "imagenet21k": {"b0": 1, "b1": 1, "b3": 1, "s": 2, "m": 2, "l": 2},
        "imagenet21k-ft1k": {"b0": 1, "b3": 1, "m": 2, "l": 2},
    }
    for source, versions in W.KAGGLE_VERSIONS.items():
        for variant, version in versions.items():
            src = W.pretrained_source(variant, source)
            assert version == seen[source].get(variant)
            if version is None:
                assert src.kaggle_source is None
            else:
                assert src.kaggle_source == f"google/efficientnet-v2/tensorFlow2/{src.kaggle_variation}/{version}"
    assert W.pretrained_source("b3").kaggle_source.endswith("/imagenet21k-b3-feature-vector/1")
    assert W.pretrained_source("s").kaggle_source.endswith("/imagenet21k-s-feature-vector/2")


@pytest.mark.parametrize("variant", W.VARIANTS)
def test_feature_widths_are_the_automl_head_widths(variant):
    # the automl head width; test_automl_layout_maps_onto_every_keras_variant ties it to the Keras twin
    assert automl_plan(variant)[2] == W.FEATURE_WIDTHS[variant] == W.pretrained_source(variant).feature_width


def test_readme_holds_the_source_table():
    readme = (config.CODE_ROOT / "README.md").read_text()
    assert W.pretrained_table() in readme, "README's pretrained-weights table is stale: paste `fivek weights table`"


@pytest.mark.parametrize(
    "variant,backbone",
    [
        ("b2", "EfficientNetV2B2"),
        ("b3", "EfficientNetV2B3"),
        ("s", "EfficientNetV2S"),
        ("m", "EfficientNetV2M"),
        ("l", "EfficientNetV2L"),
    ],
)
def test_automl_layout_maps_onto_every_keras_variant(variant, backbone):
    """The automl names/order of every variant pair with its keras.applications twin (shapes only)."""
    zero = np.float32(0)
    variables = {f"{path}/{p}": np.broadcast_to(zero, shape) for path, _, params in _layer_specs(variant) for p, shape in params.items()}
    layers, ignored, prefix = W._parse_automl(variables)
    assert not ignored and prefix == f"efficientnetv2-{variant}"
    base = models.build_backbone(backbone, include_preprocessing=False)
    pairs = W._map_onto(base, layers, prefix, variant)
    assert sum(len(c.arrays) for _, c in pairs) == len(variables) == len(base.weights)


def test_parser_sorts_blocks_numerically_and_tolerates_name_variants():
    specs = _layer_specs("b0")
    variables = {}
    for path, _, params in reversed(specs):  # any order in, execution order out
        for p, shape in params.items():
            name = f"{path}/{p}:0".replace("tpu_batch_normalization", "batch_normalization")
            variables[name] = np.zeros(shape, "float32")
    layers, ignored, _ = W._parse_automl(variables)
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


# --- conversion -------------------------------------------------------------------------------
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.mark.parametrize(
    "fixture,transform,scale,offset",
    [
        ("b0", "identity", 1 / 255, 0.0),  # [0, 1] fed straight to the network (the tfhub.dev reading)
        ("b0_m11", "minus1_1", 1 / 128, -1.0),  # automl's [-1, 1]
        ("b0_imagenet", "imagenet", list(1 / (255 * STD)), list(-MEAN / STD)),  # mean/std, as keras' V2-B0..B3
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
    side = json.loads(W.sidecar_path(out).read_text())
    assert W.sidecar_path(out).name == out.name.replace(".weights.h5", ".json")
    for key in ("source", "variant", "input_transform", "scale", "offset", "max_rel_error", "tensors_mapped", "tensorflow", "keras"):
        assert key in side
    assert side["variant"] == "b0" and side["keras"] == keras.__version__ and side["tensorflow"] == tf.__version__
    assert _files(out.parent) == sorted([out.name, W.sidecar_path(out).name])  # no temporary files left

    # fresh batch, other size: Keras backbone + GAP on T(x) == SavedModel(x)
    x = _fresh_batch()
    base = models.build_backbone(B0, include_preprocessing=False)
    base.load_weights(out)
    mine = np.asarray(base(x * 255.0 * np.asarray(scale) + np.asarray(offset), training=False)).mean(axis=(1, 2))
    ref = _savedmodel(sm)(tf.constant(x), training=False).numpy()
    assert _rel(mine, ref) < TOL


def test_build_model_from_savedmodel_dir_takes_pixels(sm_b0_m11, isolated):
    """The [-1, 1] checkpoint: build_model's Rescaling(1/128, -1) makes [0, 255] pixels right."""
    sm = sm_b0_m11
    model = models.build_model(B0, weights=str(sm))
    rescale = model.get_layer("preprocess")
    assert (rescale.scale, rescale.offset) == pytest.approx((1 / 128, -1.0))
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    x = _fresh_batch(7)
    got = np.asarray(features(x * 255.0, training=False))  # [0, 255] pixels in
    ref = _savedmodel(sm)(tf.constant(x), training=False).numpy()
    assert _rel(got, ref) < TOL
    cached = _files(isolated / "pretrained")
    assert len(cached) == 2 and cached[1].startswith("b0-") and cached[1].endswith(".weights.h5")


def test_b1_checkpoint_refused_for_b0_backbone(sm_b1, tmp_path):
    out = tmp_path / "out" / "b0.weights.h5"
    with pytest.raises(W.ConversionError) as err:
        W.convert_savedmodel(sm_b1, B0, out)
    msg = str(err.value)
    assert "block2a_expand_conv" in msg and "efficientnetv2-b1/blocks_1/conv2d" in msg  # first mismatch, both sides
    assert "150 weighted layers" in msg and "184 layers" in msg  # the counts
    assert not out.parent.exists() or _files(out.parent) == []
    # the same checkpoint converts for its own backbone
    info = W.convert_savedmodel(sm_b1, "EfficientNetV2B1", tmp_path / "b1.weights.h5")
    assert info["input_transform"] == "identity" and info["max_rel_error"] < TOL


@pytest.mark.parametrize("variant,width", [("b2", 1408), ("b3", 1536)])
def test_wider_variants_convert_with_their_feature_width(sm_root, tmp_path, variant, width):
    sm = _export(sm_root, f"{variant}_minus1_1", variant=variant, seed=7, input_transform="minus1_1")
    info = W.convert_savedmodel(sm, f"EfficientNetV2{variant.upper()}", tmp_path / f"{variant}.weights.h5", tol=TOL)
    assert info["feature_width"] == width and info["input_transform"] == "minus1_1" and info["max_rel_error"] < TOL
    # a B2 checkpoint is no B3: the widths differ from the first layer on
    other = "EfficientNetV2B3" if variant == "b2" else "EfficientNetV2B2"
    with pytest.raises(W.ConversionError, match="does not fit"):
        W.convert_savedmodel(sm, other, tmp_path / "other.weights.h5")


def test_swapped_checkpoint_fails_the_self_check(sm_swap, tmp_path):
    out = tmp_path / "b0.weights.h5"
    with pytest.raises(W.ConversionError, match="matches none of the input conventions") as err:
        W.convert_savedmodel(sm_swap, B0, out)
    for name, (desc, _scale, _offset) in W.INPUT_TRANSFORMS.items():  # the error of every candidate is reported
        assert f"{name} ({desc}):" in str(err.value)
    assert _files(tmp_path) == []


def test_checkpoint_with_a_missing_variable_is_refused(sm_drop, tmp_path):
    with pytest.raises(W.ConversionError, match="missing"):
        W.convert_savedmodel(sm_drop, B0, tmp_path / "b0.weights.h5")
    assert _files(tmp_path) == []


def test_refusal_through_build_model_leaves_no_cache(sm_b1, isolated):
    with pytest.raises(W.ConversionError):
        models.build_model(B0, weights=str(sm_b1))
    assert _files(isolated / "pretrained") == []


# --- finding and caching ------------------------------------------------------------------------
def test_offline_without_a_copy_names_every_route(isolated):
    with pytest.raises(W.PretrainedWeightsError) as err:
        W.resolve_pretrained(B0, "imagenet21k")
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
    with pytest.raises(models.ModelConfigError, match="imagenet21k-b0-feature-vector"):
        models.build_model(B0, weights="imagenet21k")
    assert _files(isolated / "pretrained") == []


def test_found_in_weights_dir_then_cached(sm_b0, isolated, monkeypatch):
    x = _fresh_batch(5)
    ref = _savedmodel(sm_b0)(tf.constant(x), training=False).numpy()
    _kaggle_layout(isolated / "weights", sm_b0)
    path, scale, offset = W.resolve_pretrained(B0, "imagenet21k")
    assert path == isolated / "pretrained" / "b0-21k.weights.h5"
    assert (scale, offset) == (pytest.approx(1 / 255), 0.0)
    side = W.read_sidecar(path)
    assert side["source"] == "imagenet21k" and side["kaggle_handle"].endswith("imagenet21k-b0-feature-vector")

    # the fine-tuned checkpoint is a different one: the 21k copy must not stand in for it
    with pytest.raises(W.PretrainedWeightsError, match="imagenet21k-ft1k-b0-feature-vector"):
        W.resolve_pretrained(B0, "imagenet21k-ft1k")

    # second time: no SavedModel anywhere, and loading one would fail - the cache is used
    monkeypatch.setenv("FIVEK_WEIGHTS_DIR", str(isolated / "interim"))

    def no_load(*a, **k):
        raise AssertionError("the SavedModel was loaded again")

    monkeypatch.setattr(tf.saved_model, "load", no_load)
    assert W.resolve_pretrained(B0, "imagenet21k") == (path, pytest.approx(1 / 255), 0.0)
    model = models.build_model(B0, weights="imagenet21k")  # and build_model works offline from it
    assert model.get_layer("preprocess").scale == pytest.approx(1 / 255)
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    assert _rel(features(x * 255.0, training=False), ref) < TOL

    # a cache whose sidecar is for another variant, or missing, is not trusted
    W.sidecar_path(path).write_text(json.dumps({**side, "variant": "b1"}))
    with pytest.raises(W.PretrainedWeightsError, match="variant='b1'"):
        W.resolve_pretrained(B0, "imagenet21k")
    W.sidecar_path(path).unlink()
    with pytest.raises(W.PretrainedWeightsError, match="no readable sidecar"):
        W.resolve_pretrained(B0, "imagenet21k")
    # ... and a weights file that changed after its sidecar was written is not trusted either
    W.sidecar_path(path).write_text(json.dumps(side))
    with open(path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(W.PretrainedWeightsError, match="sha256"):
        W.resolve_pretrained(B0, "imagenet21k")


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
    monkeypatch.setattr(W.PretrainedSource, "hub_download_url", property(lambda self: archive.as_uri()))
    got = W.fetch_savedmodel("b0", "imagenet21k")
    assert calls == ["google/efficientnet-v2/tensorFlow2/imagenet21k-b0-feature-vector/1"]  # the table's version
    assert got == isolated / "interim" / "tfhub" / "efficientnet_v2_imagenet21k_b0_feature_vector_2"
    assert (got / "saved_model.pb").exists()
    assert [p.name for p in got.parent.iterdir()] == [got.name]  # no temporary folders left
    # found locally next time, even offline; and a kagglehub download is used when it works
    monkeypatch.setenv("FIVEK_OFFLINE", "1")
    assert W.fetch_savedmodel("b0", "imagenet21k") == got
    monkeypatch.setenv("FIVEK_OFFLINE", "0")
    monkeypatch.setattr(kagglehub, "model_download", lambda handle, *a, **k: str(sm_b0))
    assert W.fetch_savedmodel("b1", "imagenet21k") == sm_b0


def test_untrusted_cache_is_reconverted_when_the_savedmodel_is_there(sm_b0, conv_b0, isolated):
    _kaggle_layout(isolated / "weights", sm_b0)
    stale = _copy_conversion(conv_b0, isolated / "pretrained", "b0-21k", source="imagenet21k", variant="b1")
    path, *_ = W.resolve_pretrained(B0, "imagenet21k")
    assert path == stale and W.read_sidecar(path)["variant"] == "b0"
    assert W.read_sidecar(path)["savedmodel"] == str(sm_b0.resolve())  # found through the Kaggle layout


def test_converted_file_named_directly_keeps_its_rescaling(conv_b0_m11, tmp_path):
    path = _copy_conversion(conv_b0_m11, tmp_path, "mine")
    assert W.is_converted_backbone(path)
    model = models.build_model(B0, weights=str(path))
    assert model.get_layer("preprocess").scale == pytest.approx(1 / 128)
    with pytest.raises(W.PretrainedWeightsError, match="EfficientNetV2B0"):
        models.build_model("EfficientNetV2B1", weights=str(path))


# --- plain .weights.h5 files -------------------------------------------------------------------
def test_weights_file_round_trip_and_wrong_architecture(tmp_path):
    keras.utils.set_random_seed(0)
    model = models.build_model(B0)
    path = save_keras(model, tmp_path / "m.weights.h5")
    again = models.build_model(B0, weights=str(path))
    x = _fresh_batch(11, (2, 64, 64, 3)) * 255.0
    a, b = model(x, training=False), again(x, training=False)
    for head in models.HEADS:
        np.testing.assert_array_equal(np.asarray(a[head]), np.asarray(b[head]))
    # Keras 3 raises on a file of another architecture; load_model_weights turns it into ModelConfigError
    with pytest.raises(models.ModelConfigError, match="fits neither"):
        models.build_model("EfficientNetV2B1", weights=str(path))


@pytest.mark.parametrize("variant,version", [("b0", "1"), ("s", "2"), ("b2", "3")])
def test_attached_kaggle_model_is_found_whatever_its_version(sm_b0, isolated, monkeypatch, variant, version):
    attached = isolated / "kaggle_input"
    d = attached / "efficientnet-v2" / "tensorflow2" / f"imagenet21k-{variant}-feature-vector"
    d.mkdir(parents=True)
    os.symlink(sm_b0, d / version, target_is_directory=True)
    monkeypatch.setattr(W, "KAGGLE_INPUT_DIR", attached)
    assert W.fetch_savedmodel(variant, "imagenet21k") == d / version


def test_weights_convert_command_prints_the_conversion_report(sm_b0_m11, isolated, capsys):
    from fivek_utils.cli import main

    assert main(["weights", "convert", "--backbone", B0, "--source", str(sm_b0_m11)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["savedmodel"] == str(sm_b0_m11.resolve())
    assert report["input_transform"] == "minus1_1" and report["max_rel_error"] < TOL
    assert report["feature_width"] == 1280
    assert (report["keras"], report["tensorflow"]) == (keras.__version__, tf.__version__)
    assert Path(report["report"]).parent == isolated / "pretrained" and Path(report["report"]).exists()
    # a second run reads the cached conversion's report: the same choices
    assert main(["weights", "convert", "--backbone", B0, "--source", str(sm_b0_m11)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert {k: again[k] for k in ("input_transform", "max_rel_error", "created")} == {
        k: report[k] for k in ("input_transform", "max_rel_error", "created")}
