"""Schedules, the best checkpoint, run keys and a resumable two-phase run."""

import keras
import numpy as np
import pandas as pd
import pytest

from fivek_utils.core.config import Config, ConfigError
from fivek_utils.core.labels import MISSING
from fivek_utils.modeling.backbones import tiny_backbone
from fivek_utils.modeling.models import build_model
from fivek_utils.modeling.training import (
    BestCheckpoint,
    TrainingData,
    check_run_key,
    train_two_phase,
    warmup_cosine,
)


def test_warmup_cosine_shape():
    s = warmup_cosine(1e-3, total_steps=100, warmup_steps=10)
    assert float(s(0)) == 0.0
    assert np.isclose(float(s(10)), 1e-3)
    assert float(s(55)) < 1e-3 and float(s(99)) < 1e-5


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
    model = build_model(tiny_backbone(), None, 0.1)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        train_two_phase(model, train, val, cfg, run_dir=tmp_path, callbacks=[StopAfter(epoch=1)])
    # phase 1 (one epoch) finished before the crash, which hit phase 2 after its second epoch
    assert len(pd.read_csv(tmp_path / "phase1_head_log.csv")) == 1
    assert (tmp_path / "phase1_head.done.weights.h5").exists()
    assert pd.read_csv(tmp_path / "phase2_finetune_log.csv")["epoch"].tolist() == [0, 1]

    model2 = build_model(tiny_backbone(), None, 0.1)
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


def test_a_setting_a_later_kit_added_at_its_default_still_resumes_the_run(tmp_path):
    import json

    cfg = Config(image_size=32, epochs_finetune=3)
    train, val = tiny_data(8), tiny_data(4, seed=1)
    check_run_key(tmp_path, cfg, train, val, recipe="two_phase")
    key = json.loads((tmp_path / "run_key.json").read_text())
    del key["config"]["drop_connect_rate"]  # a run folder written before the setting existed
    (tmp_path / "run_key.json").write_text(json.dumps(key))
    check_run_key(tmp_path, cfg, train, val, recipe="two_phase")  # at its default: the same run
    check_run_key(tmp_path, cfg.replace(self_training_rounds=2, student_dropout=0.5), train, val, recipe="two_phase")
    with pytest.raises(ConfigError, match=r"changed: \['drop_connect_rate'\]"):
        check_run_key(tmp_path, cfg.replace(drop_connect_rate=0.4), train, val, recipe="two_phase")
