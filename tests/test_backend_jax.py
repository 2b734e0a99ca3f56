"""The model path under Keras's JAX backend in a fresh interpreter where TensorFlow and keras-cv cannot
be imported: how the kit runs on a GPU machine that has JAX but no TensorFlow (`fivek bench gpu
--backend jax`). The rest of the suite runs on TensorFlow."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import BACKEND_AGNOSTIC, run_without_tensorflow

ONE_STEP = """
import json, os, sys, tempfile
import numpy as np
import keras

import fivek_utils
for name in MODULES:
    __import__(f"fivek_utils.{name}")
from fivek_utils.modeling.backbones import get_backbone, tiny_backbone
from fivek_utils.modeling.layers import Mirror, ScheduledDropout, ViewMean
from fivek_utils.modeling.losses import MaskedBinaryCrossentropy, compile_model
from fivek_utils.modeling.models import build_model, get_dropout, set_dropout

keras.utils.set_random_seed(0)
model = build_model(tiny_backbone(width=4), None, dropout=0.25)
compile_model(model, keras.optimizers.SGD(0.1), jit_compile=True)
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
y = {"mask": np.full((8, 1), -1.0, "float32"),  # every mask label blank: that head must not move
     "distancing": np.array([[-1], [-1], [1], [0], [1], [0], [1], [1]], "float32")}
head = {h: [w.copy() for w in model.get_layer(h).get_weights()] for h in ("mask", "distancing")}
stem = get_backbone(model).get_layer("stem_conv").get_weights()[0].copy()
logs = model.train_on_batch(x, y, return_dict=True)

p = model.predict(x, verbose=0)
known = y["distancing"][:, 0] >= 0
q = np.clip(p["distancing"][known, 0].astype("float64"), 1e-7, 1 - 1e-7)
t = y["distancing"][known, 0]
reference = float(np.mean(-(t * np.log(q) + (1 - t) * np.log(1 - q))))
masked = float(MaskedBinaryCrossentropy()(y["distancing"], p["distancing"]))
all_blank = float(MaskedBinaryCrossentropy()(y["mask"], p["mask"]))

set_dropout(model, 0.5)
image = keras.Input((None, None, 3))
views = keras.layers.Concatenate(axis=0)([image, Mirror()(image)])
out = model(views)
tta = keras.Model(image, {h: ViewMean(2, name=h)([out[h]]) for h in ("mask", "distancing")})
flipped = model.predict(x[:, :, ::-1], verbose=0)
averaged = tta.predict(x, verbose=0)

path = os.path.join(tempfile.mkdtemp(), "model.keras")
model.save(path)
loaded = keras.saving.load_model(path, compile=False)
again = loaded.predict(x, verbose=0)

# the face-crop model and its bag loss (multiple-instance learning): one step on two bags
from fivek_utils.modeling.face_model import bag_model, build_face_model
from fivek_utils.modeling.losses import BagBinaryCrossentropy

face = build_face_model(tiny_backbone(width=4), dropout=0.1)
bags = bag_model(face)
bags.compile(optimizer=keras.optimizers.SGD(0.1), loss=BagBinaryCrossentropy(), jit_compile=True)
crops = rng.uniform(0, 255, (5, 32, 32, 3)).astype("float32")
target = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1]], "float32")  # image 0 (two faces) masked, image 1 not
z = face.predict(crops, verbose=0).astype("float64").ravel()
log_p = -np.logaddexp(0, -z)
ref_bag = -(log_p[:2].sum()) - np.log(-np.expm1(log_p[2:].sum()))
bag_before = float(BagBinaryCrossentropy()(target, z.reshape(-1, 1).astype("float32")))
face_logs = bags.train_on_batch(crops, target, return_dict=True)
# and the notebooks' training loop: bags of whole images, AdamW with warm-up + cosine, validation AUC
from fivek_utils.data.crops import FaceCrops
from fivek_utils.modeling.face_model import train_face_model

counts = np.array([1, 2, 1, 2, 1, 2, 1, 1])
face_crops = FaceCrops(rng.integers(0, 256, (int(counts.sum()), 32, 32, 3)).astype(np.uint8),
                       np.repeat(np.arange(8), counts), counts)
face_log = train_face_model(build_face_model(tiny_backbone(width=4)), face_crops, np.array([1, 0, 1, 0, -1, 1, 0, 1.0]),
                            epochs=2, lr=1e-2, crops_per_batch=4, val=(face_crops, np.array([1, 0, 1, 0, 1, 1, 0, 1.0])),
                            verbose=0)

print(json.dumps({
    "bag_loss": bag_before, "bag_reference": float(ref_bag / 2), "bag_step": float(face_logs["loss"]),
    "face_epochs": len(face_log), "face_losses_finite": bool(np.isfinite(face_log["loss"]).all()),
    "face_val_auc": float(face_log["val_auc_mask"].iloc[-1]),
    "backend": keras.backend.backend(),
    "loss": float(logs["loss"]), "mask_loss": float(logs["mask_loss"]), "distancing_loss": float(logs["distancing_loss"]),
    "mask_head_unchanged": all(np.array_equal(a, b) for a, b in zip(head["mask"], model.get_layer("mask").get_weights())),
    "distancing_head_changed": not all(np.array_equal(a, b) for a, b in zip(head["distancing"], model.get_layer("distancing").get_weights())),
    "backbone_changed": not np.array_equal(stem, get_backbone(model).get_layer("stem_conv").get_weights()[0]),
    "masked": masked, "reference": reference, "all_blank": all_blank,
    "dropout": get_dropout(model),
    "tta_error": max(float(np.abs(averaged[h] - (p[h] + flipped[h]) / 2).max()) for h in ("mask", "distancing")),
    "reload_error": max(float(np.abs(again[h] - p[h]).max()) for h in ("mask", "distancing")),
    "reloaded_dropout": isinstance(loaded.get_layer("head_dropout"), ScheduledDropout) and get_dropout(loaded),
}))
"""


# about 30 s (a JAX start and two traces): in `make test` and `make test-compat`, not in `make test-fast`
@pytest.mark.slow
@pytest.mark.compat
def test_the_model_path_trains_one_step_under_jax_without_tensorflow():
    proc = run_without_tensorflow(f"MODULES = {list(BACKEND_AGNOSTIC)!r}\n" + ONE_STEP)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["backend"] == "jax"
    # the masked loss: a head whose labels are all blank gives 0 and no gradient; the other trains
    assert r["mask_loss"] == 0.0 and r["all_blank"] == 0.0
    assert r["mask_head_unchanged"] and r["distancing_head_changed"] and r["backbone_changed"]
    assert 0.0 < r["distancing_loss"] < 10.0 and abs(r["loss"] - r["distancing_loss"]) < 1e-6
    assert abs(r["masked"] - r["reference"]) < 1e-4  # BCE over the known rows only
    # the custom layers: dropout rate as a variable, the TTA flip and view mean, and a .keras round trip
    assert r["dropout"] == 0.5 and r["reloaded_dropout"] == 0.5
    assert r["tta_error"] < 1e-5 and r["reload_error"] < 1e-6
    # the face model's bag loss: the product over each image's faces, in log space, as numpy computes it
    assert abs(r["bag_loss"] - r["bag_reference"]) < 1e-4 and 0.0 < r["bag_step"] < 50.0
    assert r["face_epochs"] == 2 and r["face_losses_finite"] and np.isfinite(r["face_val_auc"])
