"""Grad-CAM: maps in [0, 1] at the backbone's resolution that point at what decides the head."""

import keras
import numpy as np
import pytest

from fivek_utils.modeling.backbones import tiny_backbone
from fivek_utils.modeling.explain import gradcam
from fivek_utils.modeling.models import build_model


@pytest.mark.slow
@pytest.mark.compat  # about 10 s: in make test and make test-compat, not test-fast
def test_gradcam_lights_up_where_the_evidence_is():
    keras.utils.set_random_seed(0)
    model = build_model(tiny_backbone(width=8), None, dropout=0.0)
    # train the mask head to answer "a bright patch"; the patch sits in the top-left corner
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 60, (64, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 2, 64).astype("float32")
    x[y == 1, :8, :8] = 255.0
    model.compile("adam", {"mask": "binary_crossentropy", "distancing": "binary_crossentropy"})
    model.fit(x, {"mask": y, "distancing": y}, epochs=30, batch_size=16, verbose=0)
    maps = gradcam(model, x[y == 1][:4], "mask")
    assert maps.shape == (4, 2, 2) and maps.min() >= 0 and maps.max() == pytest.approx(1.0)
    assert (maps[:, 0, 0] == maps.max(axis=(1, 2))).mean() >= 0.75  # the corner holding the patch
