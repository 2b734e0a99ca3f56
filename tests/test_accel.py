"""Strategy and precision choice; MirroredStrategy over two logical CPUs with mixed bfloat16."""

import subprocess
import sys
import textwrap

import pytest

from fivek_utils.core.config import Config, ConfigError
from fivek_utils.platform.accel import Accelerator, choose_precision, choose_strategy


@pytest.mark.parametrize("requested, tpu, gpus, expected", [
    ("auto", True, 0, "tpu"), ("auto", False, 4, "mirrored"), ("auto", False, 1, "default"),
    ("auto", False, 0, "default"), ("mirrored", False, 0, "mirrored"), ("default", False, 8, "default"),
])
def test_choose_strategy(requested, tpu, gpus, expected):
    assert choose_strategy(requested, tpu=tpu, gpus=gpus) == expected


def test_choose_strategy_errors():
    with pytest.raises(ConfigError, match="no TPU was found"):
        choose_strategy("tpu", tpu=False, gpus=0)
    with pytest.raises(ConfigError, match="strategy='gpu'"):
        choose_strategy("gpu", tpu=False, gpus=1)


def test_choose_precision():
    assert choose_precision("auto", "gpu") == "mixed_float16"
    assert choose_precision("auto", "tpu") == "mixed_bfloat16"
    assert choose_precision("auto", "cpu") == "float32"
    assert choose_precision("off", "gpu") == "float32"
    with pytest.raises(ConfigError, match="mixed_precision='fp8'"):
        choose_precision("fp8", "gpu")


def test_scale_multiplies_batch_and_learning_rates_by_replicas():
    accel = Accelerator(strategy=None, kind="mirrored", device="gpu", replicas=4, precision="mixed_float16", jit_compile=True)
    cfg = accel.scale(Config(batch_size=16, lr_head=1e-3, lr_finetune=1e-4))
    assert (cfg.batch_size, cfg.lr_head, cfg.lr_finetune, cfg.jit_compile) == (64, 4e-3, 4e-4, True)


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus_trains_with_mixed_bfloat16():
    code = textwrap.dedent("""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        from fivek_utils.platform.accel import setup_accelerator
        from fivek_utils.core.config import Config
        from fivek_utils.modeling.backbones import tiny_backbone
        from fivek_utils.modeling.models import build_model
        from fivek_utils.modeling.pipeline import make_train_dataset
        from fivek_utils.modeling.training import compile_model
        accel = setup_accelerator(Config(strategy="mirrored", mixed_precision="mixed_bfloat16", batch_size=4))
        cfg = accel.scale(Config(batch_size=4))
        with accel.scope():
            model = build_model(tiny_backbone(), None, 0.1)  # the strategy and dtypes, not the backbone, are tested
            compile_model(model, keras.optimizers.AdamW(1e-3))
        rng = np.random.default_rng(0)
        images = rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 2, (16, 2)).astype("float32"); labels[::3, 1] = -1
        before = model.get_layer("mask").get_weights()[0].copy()
        hist = model.fit(make_train_dataset(images, labels, cfg.batch_size, seed=0), epochs=1, verbose=0)
        out = model.predict(images[:2].astype("float32"), verbose=0)
        print("replicas", accel.replicas, "batch", cfg.batch_size)
        print("compute", model.get_layer("avg_pool").compute_dtype, "outputs", out["mask"].dtype)
        print("loss_finite", bool(np.isfinite(hist.history["loss"][0])), "changed", not np.allclose(before, model.get_layer("mask").get_weights()[0]))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "mirrored strategy on 2 cpu replica(s), mixed_bfloat16" in out
    assert "replicas 2 batch 8" in out
    assert "compute bfloat16 outputs float32" in out
    assert "loss_finite True changed True" in out
