"""Progressive learning: the schedule maths, presets, and stage transitions on a real model."""

import keras
import numpy as np
import pytest
from test_training import StopAfter, tiny_data

from fivek_utils.core.config import Config, ConfigError, ModelConfigError
from fivek_utils.modeling.backbones import tiny_backbone
from fivek_utils.modeling.models import build_model, get_dropout, set_dropout
from fivek_utils.modeling.progressive import (
    PRESETS,
    Stage,
    fixed_schedule,
    make_schedule,
    schedule_ranges,
    train_progressive,
)


def test_paper_table6_presets_are_reproduced():
    s = make_schedule(Config(backbone="EfficientNetV2S", progressive_stages=4))
    assert [st.image_size for st in s][0] == 128 and s[-1].image_size == 300
    assert [st.randaugment for st in s] == [5, 8.333, 11.667, 15]
    assert all(st.mixup == 0 for st in s)
    assert [st.dropout for st in s] == [0.1, 0.1667, 0.2333, 0.3]
    m = make_schedule(Config(backbone="EfficientNetV2M"))
    assert (m[0].image_size, m[-1].image_size, m[-1].randaugment, m[-1].mixup, m[-1].dropout) == (128, 380, 20, 0.2, 0.4)
    big = make_schedule(Config(backbone="EfficientNetV2L"))
    assert (big[-1].randaugment, big[-1].mixup, big[-1].dropout) == (25, 0.4, 0.5)


def test_values_grow_linearly_and_sizes_round_to_16():
    s = make_schedule(Config(backbone="EfficientNetV2L", progressive_stages=5))
    sizes = [st.image_size for st in s]
    assert sizes == sorted(sizes) and all(x % 16 == 0 for x in sizes[:-1])
    mix = np.array([st.mixup for st in s])
    assert np.allclose(np.diff(mix), mix[-1] / 4, atol=1e-4)


def test_custom_schedule_overrides_preset_and_validates():
    cfg = Config(backbone="EfficientNetV2B0", progressive_stages=3, size_min=64, size_max=96, ra_max=12, mixup_max=0.2)
    s = make_schedule(cfg)
    assert [st.image_size for st in s] == [64, 80, 96]
    assert s[0].randaugment == PRESETS["B0"]["randaugment"][0] and s[-1].randaugment == 12 and s[-1].mixup == 0.2
    with pytest.raises(ConfigError, match="image_size: minimum 200 is above maximum 96"):
        schedule_ranges(cfg.replace(size_min=200))
    with pytest.raises(ConfigError, match="needs both ends of image_size"):
        schedule_ranges(Config(progressive_preset="custom"))
    with pytest.raises(ConfigError, match="progressive_preset='Z'"):
        schedule_ranges(Config(progressive_preset="Z"))


def test_fixed_schedule_matches_the_last_stage_and_epochs():
    s = make_schedule(Config(backbone="EfficientNetV2B0", progressive_stages=3, progressive_epochs_per_stage=2))
    (f,) = fixed_schedule(s)
    assert (f.image_size, f.randaugment, f.dropout, f.epochs) == (s[-1].image_size, s[-1].randaugment, s[-1].dropout, 6)


class Spy(keras.callbacks.Callback):
    """Records the input size, dropout and optimizer step seen at each epoch start."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.seen.append((round(get_dropout(self.model), 4), int(self.model.optimizer.iterations.numpy())))


@pytest.mark.slow
def test_stage_transitions_keep_weights_and_schedule_and_resume(tmp_path):
    cfg = Config(backbone="tiny", batch_size=8, lr_finetune=1e-3, warmup_epochs=0.5, unfreeze_blocks=1,
                 randaugment_magnitude=0)
    stages = [Stage(0, 32, 0, 0.0, 0.1, 1), Stage(1, 48, 5, 0.2, 0.3, 1), Stage(2, 64, 10, 0.2, 0.5, 1)]
    train, val = tiny_data(32, size=64), tiny_data(16, size=64, seed=1)
    model = build_model(tiny_backbone(), None, 0.0)  # stage 1 raises it
    spy = Spy()
    with pytest.raises(RuntimeError, match="simulated interruption"):
        train_progressive(model, train, val, cfg, stages, tmp_path, callbacks=[spy, StopAfter(epoch=1)])
    # stage 1 ran at dropout 0.1 from step 0; stage 2 started where stage 1's optimizer stopped
    assert spy.seen == [(0.1, 0), (0.3, 4)]
    assert (tmp_path / "stage1.done.weights.h5").exists() and not (tmp_path / "stage2.done.weights.h5").exists()

    model2 = build_model(tiny_backbone(), None, 0.0)
    spy2 = Spy()
    history = train_progressive(model2, train, val, cfg, stages, tmp_path, callbacks=[spy2])
    # resumed in stage 2 after its finished epoch: only stage 3 trains, continuing the step count
    assert spy2.seen == [(0.5, 8)]  # 4 steps per epoch, two epochs done
    assert history["stage"].tolist() == [1, 2, 3] and history["image_size"].tolist() == [32, 48, 64]
    assert {"train_seconds", "images_per_second", "val_f1_5k"} <= set(history.columns)


def test_dropout_rate_changes_without_recompiling():
    model = build_model(tiny_backbone(), None, 0.0)
    layer = model.get_layer("head_dropout")
    x = np.ones((4, 128), "float32")
    assert np.array_equal(layer(x, training=True), x)
    set_dropout(model, 0.5)
    y = np.asarray(layer(x, training=True))
    assert (y == 0).any() and np.allclose(y[y != 0], 2.0)  # inverted dropout at rate 0.5
    assert np.array_equal(layer(x, training=False), x)
    with pytest.raises(ModelConfigError, match="must be in"):
        set_dropout(model, 1.0)
