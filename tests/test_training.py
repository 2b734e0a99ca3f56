"""The masked loss, blank-safe MixUp, schedules, freezing, and a resumable two-phase run."""

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from sklearn.metrics import log_loss

from fivek_utils.config import Config, ConfigError
from fivek_utils.data import MISSING
from fivek_utils.models import build_model, get_backbone, set_trainable
from fivek_utils.pipeline import make_train_dataset, mixup_batch
from fivek_utils.training import (
    BestCheckpoint,
    MaskedBinaryCrossentropy,
    TrainingData,
    check_run_key,
    compile_model,
    train_two_phase,
    warmup_cosine,
)


def test_blank_labels_give_no_gradient_and_known_ones_do():
    y_true = tf.constant([[1.0], [MISSING], [0.0], [MISSING]])
    y_pred = tf.Variable([[0.3], [0.8], [0.6], [0.1]])
    with tf.GradientTape() as tape:
        loss = MaskedBinaryCrossentropy()(y_true, y_pred)
    grad = tape.gradient(loss, y_pred).numpy().ravel()
    assert grad[1] == 0 and grad[3] == 0
    assert grad[0] < 0 and grad[2] > 0  # pushes 0.3 up towards 1 and 0.6 down towards 0
    expected = log_loss([1, 0], [0.3, 0.6], labels=[0, 1])
    assert np.isclose(float(loss), expected, rtol=1e-5)


def test_all_blank_batch_has_zero_loss():
    loss = MaskedBinaryCrossentropy()(tf.constant([[MISSING], [MISSING]]), tf.constant([[0.2], [0.9]]))
    assert float(loss) == 0.0


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


def test_mixup_keeps_blanks_blank_and_mixes_known_labels():
    layer = keras.layers.MixUp(alpha=0.4, seed=3)
    images = tf.constant(np.arange(6, dtype="float32").reshape(6, 1, 1, 1) * np.ones((6, 4, 4, 3), "float32"))
    labels = tf.constant([[1, 1], [0, MISSING], [MISSING, 1], [1, 0], [0, 0], [MISSING, 0]], tf.float32)
    t = layer.get_random_transformation(images, training=True)
    x, y = mixup_batch(layer, images, labels, t)
    lam, perm = t["mix_weight"].numpy(), t["permutation_order"].numpy()
    y, lab = y.numpy(), labels.numpy()
    for i in range(6):
        assert np.allclose(x.numpy()[i], lam[i] * i + (1 - lam[i]) * perm[i])
        for h in range(2):
            a, b = lab[i, h], lab[perm[i], h]
            if a < 0 or b < 0:
                assert y[i, h] == MISSING  # never a fractional false label
            else:
                assert np.isclose(y[i, h], lam[i] * a + (1 - lam[i]) * b, atol=1e-6)
                assert 0 <= y[i, h] <= 1


def test_train_dataset_mixup_output_is_blank_or_in_unit_interval():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, (16, 2)).astype("float32")
    labels[::3, 1] = MISSING
    ds = make_train_dataset(images, labels, 8, seed=1, randaugment_magnitude=10, mixup_alpha=0.3)
    seen = 0
    for x, y in ds:
        assert x.shape == (8, 32, 32, 3) and x.dtype == tf.float32
        for h in ("mask", "distancing"):
            v = y[h].numpy()
            assert ((v == MISSING) | ((v >= 0) & (v <= 1))).all()
        seen += 1
    assert seen == 2


def test_warmup_cosine_shape():
    s = warmup_cosine(1e-3, total_steps=100, warmup_steps=10)
    assert float(s(0)) == 0.0
    assert np.isclose(float(s(10)), 1e-3)
    assert float(s(55)) < 1e-3 and float(s(99)) < 1e-5


def test_set_trainable_unfreezes_top_blocks_and_keeps_batchnorm_frozen():
    model = build_model("EfficientNetV2B0", None)
    base = get_backbone(model)
    assert set_trainable(model, 0) == 0 and not base.trainable
    set_trainable(model, 2)
    trainable = {l.name for l in base.layers if l.trainable and l.weights}
    assert trainable and all(n.startswith(("block5", "block6", "top_")) for n in trainable)
    assert not any(isinstance(l, keras.layers.BatchNormalization) and l.trainable for l in base.layers)
    set_trainable(model, -1)
    assert any(l.name.startswith("block1") and l.trainable for l in base.layers)
    assert any(l.name.startswith("stem_conv") and l.trainable for l in base.layers)


@pytest.mark.parametrize("backbone", ["EfficientNetB0", "EfficientNetV2B0"])
def test_model_takes_any_size_and_returns_two_probabilities(backbone):
    model = build_model(backbone, None)
    for size in (32, 57):
        out = model.predict(np.full((2, size, size, 3), 128.0, "float32"), verbose=0)
        assert set(out) == {"mask", "distancing"}
        assert all(o.shape == (2, 1) and ((o >= 0) & (o <= 1)).all() for o in out.values())


def tiny_data(n, size=32, seed=0):
    """Images whose mask label is their colour; some labels blank."""
    rng = np.random.default_rng(seed)
    mask = rng.integers(0, 2, n)
    dist = rng.integers(0, 2, n)
    images = np.where(mask[:, None, None, None] == 1, [200, 40, 40], [40, 40, 200]).astype(np.uint8)
    images = np.broadcast_to(images, (n, size, size, 3)).copy()
    labels = np.stack([mask, dist], 1).astype("float32")
    labels[1::4, 1] = MISSING
    labels[2::5, 0] = MISSING
    df = pd.DataFrame({"image_id": np.arange(n), "fname": [f"{i}.jpg" for i in range(n)]})
    return TrainingData(df, images, labels)


class StopAfter(keras.callbacks.Callback):
    """Simulates a crash at the end of a given epoch."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated interruption")


@pytest.mark.slow
def test_two_phase_run_resumes_after_interruption(tmp_path):
    cfg = Config(image_size=32, batch_size=8, epochs_head=1, epochs_finetune=3, unfreeze_blocks=1,
                 randaugment_magnitude=0, lr_head=1e-2, lr_finetune=1e-3, early_stopping_patience=10)
    train, val = tiny_data(32), tiny_data(16, seed=1)
    model = build_model("EfficientNetV2B0", None, 0.1)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        train_two_phase(model, train, val, cfg, run_dir=tmp_path, callbacks=[StopAfter(epoch=1)])
    # phase 1 (one epoch) finished before the crash, which hit phase 2 after its second epoch
    assert len(pd.read_csv(tmp_path / "phase1_head_log.csv")) == 1
    assert (tmp_path / "phase1_head.done.weights.h5").exists()
    assert pd.read_csv(tmp_path / "phase2_finetune_log.csv")["epoch"].tolist() == [0, 1]

    model2 = build_model("EfficientNetV2B0", None, 0.1)
    history = train_two_phase(model2, train, val, cfg, run_dir=tmp_path)
    assert pd.read_csv(tmp_path / "phase2_finetune_log.csv")["epoch"].tolist() == [0, 1, 2]  # resumed at epoch 2
    assert history["phase"].tolist() == ["head", "finetune", "finetune", "finetune"]
    assert {"val_f1_5k", "val_auc_mask", "loss"} <= set(history.columns)
    assert (tmp_path / "best.keras").exists() and (tmp_path / "best.json").exists()


def test_best_checkpoint_never_replaced_by_a_worse_one_after_resume(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    cb = BestCheckpoint(tmp_path / "best.keras")
    cb.set_model(model)
    cb.on_epoch_end(0, {"val_f1_5k": 0.7})
    first = (tmp_path / "best.keras").stat().st_mtime_ns
    resumed = BestCheckpoint(tmp_path / "best.keras")
    resumed.set_model(model)
    resumed.on_epoch_end(1, {"val_f1_5k": 0.6})
    assert (tmp_path / "best.keras").stat().st_mtime_ns == first and resumed.best == 0.7
    resumed.on_epoch_end(2, {"val_f1_5k": 0.8})
    assert resumed.best == 0.8


def test_run_folder_refuses_other_settings_or_rows(tmp_path):
    cfg = Config(image_size=32, epochs_finetune=3)
    train, val = tiny_data(8), tiny_data(4, seed=1)
    check_run_key(tmp_path, cfg, train, val, recipe="two_phase")
    check_run_key(tmp_path, cfg.replace(run_name="renamed", jit_compile=True), train, val, recipe="two_phase")  # same run
    with pytest.raises(ConfigError, match=r"changed: \['epochs_finetune'\]"):
        check_run_key(tmp_path, cfg.replace(epochs_finetune=5), train, val, recipe="two_phase")
    with pytest.raises(ConfigError, match="train_ids"):
        check_run_key(tmp_path, cfg, train.subset(np.arange(6)), val, recipe="two_phase")
    with pytest.raises(ConfigError, match="recipe"):
        check_run_key(tmp_path, cfg, train, val, recipe="progressive")
