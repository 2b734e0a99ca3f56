"""The offline stand-in for the official SavedModels: deterministic per seed, each input convention
really applied before the network, and a folder that is not a SavedModel never overwritten."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import export_standin, load_savedmodel

MEAN, STD = np.array([0.485, 0.456, 0.406], "float32"), np.array([0.229, 0.224, 0.225], "float32")


@pytest.mark.slow
def test_same_seed_same_variables(sm_b0, tmp_path):
    again = tf.saved_model.load(str(export_standin(tmp_path, "again", variant="b0", seed=1)))
    va, vb = ({v.name: v.numpy() for v in m.variables} for m in (load_savedmodel(sm_b0), again))
    assert va.keys() == vb.keys() and all(np.array_equal(va[k], vb[k]) for k in va)
    assert any("blocks_10/" in k for k in va) and any(k.endswith("se/conv2d/kernel:0") for k in va)


@pytest.mark.parametrize("transform, apply", [("minus1_1", lambda x: (x * 255 - 128) / 128),
                                              pytest.param("imagenet", lambda x: (x - MEAN) / STD,
                                                           marks=[pytest.mark.slow, pytest.mark.compat])])
def test_each_input_convention_is_applied_before_the_network(sm_b0, tmp_path, transform, apply):
    """The same weights (seed 1) with a transform in front equal the plain network fed transformed images."""
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    model = tf.saved_model.load(str(export_standin(tmp_path, transform, variant="b0", seed=1, input_transform=transform)))
    plain = load_savedmodel(sm_b0)
    np.testing.assert_allclose(model(tf.constant(x)).numpy(), plain(tf.constant(apply(x))).numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(model(tf.constant(x)).numpy(), plain(tf.constant(x)).numpy())


def test_refuses_to_overwrite_a_folder_that_is_not_a_savedmodel(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a SavedModel"):
        export_standin(tmp_path, "mine", variant="b0")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# --- the kit's own stand-in, damaged between runs ------------------------------------------------------
def _damage(path, how: str, other: bytes = b"") -> None:
    data = path.read_bytes()
    if how == "cut":
        path.write_bytes(data[: len(data) // 2])
    elif how == "emptied":
        path.write_bytes(b"")
    elif how == "flipped":
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:])
    else:
        path.write_bytes(other)


def test_each_damage_of_the_kits_standin_is_told_and_prepare_writes_it_again(tmp_path, sm_b0, capfd):
    import shutil

    from fivek_utils.modeling.pretrained.standin import ensure_standin, standin_problem

    out = tmp_path / "sm"
    shutil.copytree(sm_b0, out)  # the session's stand-in (seed 1), with the record the kit writes in it
    assert ensure_standin(out, variant="b0", seed=1) == out and standin_problem(out, variant="b0", seed=1) is None
    assert not capfd.readouterr().out  # intact: reused as it is
    variables = next((out / "variables").glob("variables.data-*"))
    good = variables.read_bytes()
    other = (out / "variables" / "variables.index").read_bytes()  # another file's bytes
    for how, said in [("cut", "bytes, it was written with"), ("emptied", "is 0 bytes"), ("flipped", "sha256 differs"),
                      ("other", "bytes, it was written with")]:
        _damage(variables, how, other)
        assert said in standin_problem(out, variant="b0", seed=1), how
        variables.write_bytes(good)
    assert "made with" in standin_problem(out, variant="b1", seed=1)

    _damage(out / "saved_model.pb", "flipped")
    ensure_standin(out, variant="b0", seed=1)
    err = capfd.readouterr().err
    assert f"stand-in SavedModel {out} cannot be used (saved_model.pb changed since it was written" in err
    assert "removed, writing it again" in err and standin_problem(out, variant="b0", seed=1) is None
    assert variables.read_bytes() == good  # the same seed: the same stand-in


@pytest.mark.slow
def test_a_conversion_that_cannot_load_the_kits_standin_writes_it_again(tmp_path, capfd):
    from fivek_utils.modeling.pretrained.convert import convert_savedmodel
    from fivek_utils.modeling.pretrained.standin import ensure_standin, standin_problem

    out = ensure_standin(tmp_path / "sm", variant="b0", seed=3)
    _damage(out / "saved_model.pb", "cut")
    info = convert_savedmodel(out, "EfficientNetV2B0", tmp_path / "b0.weights.h5")
    err = capfd.readouterr().err
    assert f"stand-in SavedModel {out} does not load" in err and "removed, writing it again" in err
    assert info["max_rel_error"] < 1e-4 and standin_problem(out, variant="b0", seed=3) is None


@pytest.mark.parametrize("where", ["kagglehub", "tfhub", "elsewhere"])
def test_a_fetched_savedmodel_that_does_not_load_is_named_with_what_fetches_it_again(tmp_path, sm_b0, monkeypatch, where):
    import shutil

    from fivek_utils.core import config
    from fivek_utils.modeling.pretrained.convert import convert_savedmodel
    from fivek_utils.modeling.pretrained.sources import SavedModelLoadError

    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kh"))
    monkeypatch.setattr(config, "INTERIM_DATA_DIR", tmp_path / "interim")
    folder = {"kagglehub": tmp_path / "kh/models/google/efficientnet-v2/tensorFlow2/imagenet21k-b0-feature-vector/1",
              "tfhub": tmp_path / "interim/tfhub/efficientnet_v2_imagenet21k_b0_feature_vector_2",
              "elsewhere": tmp_path / "mine/b0"}[where]
    shutil.copytree(sm_b0, folder)
    (folder / "fivek-standin.json").unlink()  # not one the kit made
    _damage(folder / "saved_model.pb", "cut")
    with pytest.raises(SavedModelLoadError) as err:
        convert_savedmodel(folder, "EfficientNetV2B0", tmp_path / "b0.weights.h5")
    said = str(err.value)
    assert f"cannot load the SavedModel {folder}" in said and "damaged" in said
    assert {"kagglehub": "model_download('google/efficientnet-v2/tensorFlow2/imagenet21k-b0-feature-vector/1', "
                         "force_download=True)",
            "tfhub": f"rm -rf {folder}", "elsewhere": "replace it with a good copy"}[where] in said
    assert not (tmp_path / "b0.weights.h5").exists()


@pytest.mark.slow
def test_a_v2_s_stand_in_passes_its_own_conversion_self_check(tmp_path):
    """V2-S's 40 blocks: the stand-in's residual branches are damped so float32 rounding does not grow past
    the self-check's tolerance (it did: relative error 4e-4 to 2e-2 by seed)."""
    from fivek_utils.modeling.pretrained.convert import convert_savedmodel
    from fivek_utils.modeling.pretrained.standin import export_automl_savedmodel

    sm = export_automl_savedmodel(tmp_path / "s", variant="s", seed=1)
    info = convert_savedmodel(sm, "EfficientNetV2S", tmp_path / "s.weights.h5", source="imagenet21k")
    assert info["input_transform"] == "identity" and info["max_rel_error"] < 1e-5
    assert min(v for k, v in info["rel_errors"].items() if k != "identity") > 1e-3
