"""The two-head model: any image size in, two probabilities out; blank heads do not move; weights
files round-trip and refuse another architecture; a backbone of your own; the head dropout."""

import keras
import numpy as np
import pytest

from conftest import B0, fresh_batch
from fivek_utils.core.config import ModelConfigError
from fivek_utils.core.io import save_keras
from fivek_utils.core.labels import HEADS, MISSING
from fivek_utils.modeling.backbones import set_trainable, tiny_backbone
from fivek_utils.modeling.models import build_model, get_dropout, set_dropout
from fivek_utils.modeling.training import compile_model


@pytest.mark.parametrize("backbone", [pytest.param("EfficientNetB0", marks=pytest.mark.slow), "EfficientNetV2B0"])
def test_model_takes_any_size_and_returns_two_probabilities(backbone):
    model = build_model(backbone, None)
    for size in (32, 57):
        out = model.predict(np.full((2, size, size, 3), 128.0, "float32"), verbose=0)
        assert set(out) == {"mask", "distancing"}
        assert all(o.shape == (2, 1) and ((o >= 0) & (o <= 1)).all() for o in out.values())


@pytest.mark.slow
def test_blank_distancing_rows_still_train_mask_only():
    """Through the real model: a batch with every distancing label blank moves only the mask head."""
    model = build_model("EfficientNetV2B0", None, 0.0)
    compile_model(model, keras.optimizers.SGD(0.1))
    set_trainable(model, 0)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    y = {"mask": np.array([[1.0], [0.0], [1.0], [0.0]], "float32"), "distancing": np.full((4, 1), MISSING, "float32")}
    before = {h: model.get_layer(h).get_weights()[0].copy() for h in ("mask", "distancing")}
    model.train_on_batch(x, y)
    after = {h: model.get_layer(h).get_weights()[0] for h in ("mask", "distancing")}
    assert not np.allclose(before["mask"], after["mask"])
    assert np.array_equal(before["distancing"], after["distancing"])


@pytest.mark.slow
def test_weights_file_round_trip_and_wrong_architecture(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(B0)
    path = save_keras(model, tmp_path / "m.weights.h5")
    again = build_model(B0, weights=str(path))
    x = fresh_batch(11, (2, 64, 64, 3)) * 255.0
    a, b = model(x, training=False), again(x, training=False)
    for head in HEADS:
        np.testing.assert_array_equal(np.asarray(a[head]), np.asarray(b[head]))
    # Keras 3 raises on a file of another architecture; load_model_weights turns it into ModelConfigError
    with pytest.raises(ModelConfigError, match="fits neither"):
        build_model("EfficientNetV2B1", weights=str(path))




def test_a_backbone_of_your_own_gets_the_heads_and_no_weights():
    model = build_model(tiny_backbone(width=4), None, dropout=0.3)
    out = model(np.zeros((2, 40, 48, 3), "float32"))
    assert set(out) == set(HEADS) and model.name == "fivek_tiny_cnn"
    assert get_dropout(model) == pytest.approx(0.3)
    set_dropout(model, 0.1)
    assert get_dropout(model) == pytest.approx(0.1)
    with pytest.raises(ModelConfigError, match="tiny_cnn"):
        build_model(tiny_backbone(), "imagenet")
    with pytest.raises(ModelConfigError, match=r"\[0, 1\)"):
        set_dropout(model, 1.0)
