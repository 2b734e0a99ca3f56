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
