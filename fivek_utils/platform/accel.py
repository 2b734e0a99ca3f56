"""Accelerators: the distribution strategy, mixed precision and XLA, chosen from the config.

    accel = fk.setup_accelerator(cfg)   # TPU -> TPUStrategy, several GPUs -> MirroredStrategy
    cfg = accel.scale(cfg)              # global batch and learning rates grow with the replicas
    with accel.scope():                 # model and optimizer variables live on every replica
        model = fk.build_model(...)
        history = fk.train_two_phase(model, train, val, cfg)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ..core.config import Config, ConfigError

STRATEGIES = ("auto", "default", "mirrored", "tpu")
PRECISIONS = ("auto", "off", "float32", "mixed_float16", "mixed_bfloat16")


def choose_strategy(requested: str, *, tpu: bool, gpus: int) -> str:
    """Which strategy to build: "tpu", "mirrored" or "default" (one device)."""
    if requested not in STRATEGIES:
        raise ConfigError(f"strategy={requested!r}: choose one of {STRATEGIES}")
    if requested == "auto":
        return "tpu" if tpu else "mirrored" if gpus > 1 else "default"
    if requested == "tpu" and not tpu:
        raise ConfigError("strategy='tpu' but no TPU was found; use 'auto' or switch the runtime to TPU")
    return requested


def choose_precision(requested: str, device: str) -> str:
    """The Keras dtype policy: float16 on GPUs, bfloat16 on TPUs, float32 on CPUs (for 'auto')."""
    if requested not in PRECISIONS:
        raise ConfigError(f"mixed_precision={requested!r}: choose one of {PRECISIONS}")
    if requested == "auto":
        return {"gpu": "mixed_float16", "tpu": "mixed_bfloat16"}.get(device, "float32")
    return "float32" if requested == "off" else requested


def _find_tpu():
    """A connected TPU cluster resolver, or None (the probe fails fast off TPU machines)."""
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return resolver
    except (ValueError, RuntimeError, tf.errors.NotFoundError, tf.errors.InvalidArgumentError):
        return None


@dataclass
class Accelerator:
    """The chosen strategy with its replica count, dtype policy and XLA flag."""

    strategy: object  # tf.distribute.Strategy
    kind: str  # "tpu", "mirrored" or "default"
    device: str  # "tpu", "gpu" or "cpu"
    replicas: int
    precision: str
    jit_compile: bool

    def scope(self):
        """Create models and optimizers inside this (a no-op scope for the default strategy)."""
        return self.strategy.scope() if self.kind != "default" else contextlib.nullcontext()

    def scale(self, cfg: Config) -> Config:
        """Per-replica batch x replicas, and learning rates scaled linearly (Goyal et al., 2017)."""
        r = self.replicas
        return cfg.replace(batch_size=cfg.batch_size * r, lr_head=cfg.lr_head * r, lr_finetune=cfg.lr_finetune * r,
                           jit_compile=self.jit_compile)

    def __str__(self) -> str:
        return f"{self.kind} strategy on {self.replicas} {self.device} replica(s), {self.precision}, XLA {'on' if self.jit_compile else 'off'}"


def setup_accelerator(cfg: Config) -> Accelerator:
    """Pick the strategy and dtype policy the config asks for (or the best available on 'auto')."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    resolver = _find_tpu() if cfg.strategy in ("auto", "tpu") and not gpus else None
    kind = choose_strategy(cfg.strategy, tpu=resolver is not None, gpus=len(gpus))
    device = "tpu" if kind == "tpu" else "gpu" if gpus else "cpu"
    if kind == "tpu":
        strategy = tf.distribute.TPUStrategy(resolver)
    elif kind == "mirrored":
        # without GPUs, mirror over the logical CPUs (how the strategy is tested on CPU)
        devices = None if gpus else [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
    else:
        strategy = tf.distribute.get_strategy()
    precision = choose_precision(cfg.mixed_precision, device)
    keras.mixed_precision.set_global_policy(precision)
    accel = Accelerator(strategy, kind, device, strategy.num_replicas_in_sync, precision, bool(cfg.jit_compile))
    print(accel)
    return accel
