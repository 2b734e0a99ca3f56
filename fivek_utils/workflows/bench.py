"""`fivek bench`: speed measurements that live outside the tests.

    fivek bench progressive   fixed-size vs progressive training, same data, epochs and hardware
    fivek bench predict       fold ensemble + TTA against one model: images per second
    fivek bench pipeline      tf.data input pipeline vs the model's appetite
    fivek bench gpu           precision / XLA / pipeline throughput and progressive learning at GPU sizes
    fivek bench gpu --backend jax   Keras on JAX: the model's throughput, and cores the pipeline needs (gpu_bench)

Each prints a table and writes reports/bench/<name>.json (and a figure where it helps).
Everything runs offline on the synthetic dataset (generated when missing).
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.config import BENCH_DIR, Config, ConfigError, resolve_path
from ..core.io import atomic_write_json


def _machine() -> dict:

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    from ..core.environment import cpu_count

    return {"cpu_cores": cpu_count(), "gpus": names, "tensorflow": tf.__version__, "python": platform.python_version(), "platform": platform.platform()}


def bench_data(data_dir: str | None = None) -> Path:
    """`data_dir`, or the benchmarks' own close-up synthetic set (1,200 + 300 images, made once
    under reports/bench/data/; the demo's dataset is never touched)."""
    if data_dir:
        return resolve_path(data_dir)
    from ..data.synth import ensure_dataset

    root = BENCH_DIR / "data" / "closeup"
    ensure_dataset(root, n_train=1200, n_test=300, seed=0, profile="closeup", progress=False)
    return root


def _random_model(backbone: str, seed: int = 0):
    """A fivek model with random weights on `backbone`, or on the tiny CNN for "tiny" (tests, --tiny)."""
    from ..modeling.backbones import tiny_backbone
    from ..modeling.models import build_model

    return build_model(tiny_backbone(seed=seed) if backbone == "tiny" else backbone, None)


def _write(name: str, result: dict) -> Path:
    path = atomic_write_json(BENCH_DIR / f"{name}.json", result)
    print(f"\nwrote {path}")
    return path


# --- progressive ----------------------------------------------------------------------------
def time_to_reach(history: pd.DataFrame, target: float) -> float | None:
    """Cumulative training seconds until validation 5K F1 first reaches `target` (None if never)."""
    cum = history["train_seconds"].cumsum()
    hit = np.flatnonzero(history["val_f1_5k"].to_numpy() >= target - 1e-12)
    return float(cum.iloc[hit[0]]) if len(hit) else None


def bench_progressive(*, data_dir: str | None = None, backbone: str = "EfficientNetV2B0", stages: int = 4,
                      epochs_per_stage: int = 2, size_min: int = 64, size_max: int = 128, ra_max: float = 10.0,
                      mixup_max: float = 0.0, dropout_max: float = 0.3, batch_size: int = 32, lr: float = 2e-3,
                      max_train_images: int = 0, seed: int = 42) -> dict:
    """Fixed size at the maximum vs the progressive schedule, same epochs, one run, one machine."""
    settings = dict(locals())
    import keras

    from ..core.plots import save_figure
    from ..data.folds import duplicate_group_ids, holdout_split
    from ..modeling.models import build_model
    from ..modeling.progressive import fixed_schedule, make_schedule, schedule_table, stage_summary, train_progressive
    from ..modeling.training import load_training_data

    root = bench_data(data_dir)
    cfg = Config(
        data_dir=str(root), backbone=backbone, weights=None, batch_size=batch_size, seed=seed,
        lr_finetune=lr, warmup_epochs=0.5, unfreeze_blocks=-1, progressive_preset="custom",
        progressive_stages=stages, progressive_epochs_per_stage=epochs_per_stage,
        size_min=size_min, size_max=size_max, ra_min=5, ra_max=ra_max, mixup_min=0, mixup_max=mixup_max,
        dropout_min=0.1, dropout_max=dropout_max, max_train_images=max_train_images,
    )
    plan = make_schedule(cfg)
    plans = {"fixed": fixed_schedule(plan), "progressive": plan}
    print("progressive schedule:\n", schedule_table(plan).to_string())
    data = load_training_data(cfg, size=size_max)
    tr, va = holdout_split(data.df, 0.2, cfg.seed, duplicate_group_ids(data.df, progress=False))
    train, val = data.subset(tr), data.subset(va)
    runs = {}
    for name, plan in plans.items():
        keras.backend.clear_session()
        keras.utils.set_random_seed(cfg.seed)
        model = build_model(cfg.backbone, None, plan[0].dropout)
        run_dir = BENCH_DIR / "runs" / f"progressive-{name}"
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)  # a benchmark always measures a fresh run
        t0 = time.perf_counter()
        history = train_progressive(model, train, val, cfg, plan, run_dir)
        runs[name] = {"history": history, "wall_seconds": time.perf_counter() - t0}
    fixed_best = float(runs["fixed"]["history"]["val_f1_5k"].max())
    table = {}
    for name, r in runs.items():
        h = r["history"]
        table[name] = {
            "wall_seconds": round(r["wall_seconds"], 1),
            "train_seconds": round(float(h["train_seconds"].sum()), 1),
            "best_val_f1_5k": round(float(h["val_f1_5k"].max()), 4),
            "final_val_f1_5k": round(float(h["val_f1_5k"].iloc[-1]), 4),
            "seconds_to_fixed_best": None if (t := time_to_reach(h, fixed_best)) is None else round(t, 1),
            "stages": stage_summary(h).reset_index().to_dict("records"),
        }
    fixed_t, prog_t = table["fixed"]["seconds_to_fixed_best"], table["progressive"]["seconds_to_fixed_best"]
    result = {
        "machine": _machine(),
        "settings": settings,
        "schedule": schedule_table(plan).reset_index().to_dict("records"),
        "runs": table,
        "fixed_best_f1": round(fixed_best, 4),
        "time_ratio_to_fixed_best": None if prog_t is None or not fixed_t else round(prog_t / fixed_t, 3),
        "goal": "progressive reaches the fixed run's best F1 in <= 0.6 of its time, final F1 no worse",
    }
    summary = pd.DataFrame({n: {k: v for k, v in t.items() if k != "stages"} for n, t in table.items()}).T
    print("\n", summary.to_string())
    for name in table:
        print(f"\n{name} per stage:\n", pd.DataFrame(table[name]["stages"]).to_string(index=False))
    print(f"\nprogressive needed {result['time_ratio_to_fixed_best']} of the fixed run's time to reach its best F1 {fixed_best:.4f}")

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, r in runs.items():
        h = r["history"]
        ax.plot(h["train_seconds"].cumsum(), h["val_f1_5k"], marker="o", label=name)
    ax.axhline(fixed_best, color="grey", ls=":", lw=1)
    ax.set_xlabel("cumulative training seconds")
    ax.set_ylabel("validation 5K F1")
    ax.set_title("fixed size vs progressive learning")
    ax.legend()
    print("figure:", save_figure(fig, "bench-progressive"))
    _write("progressive", result)
    return result


# --- predict --------------------------------------------------------------------------------
def bench_predict(*, data_dir: str | None = None, models_dir: str | None = None, backbone: str = "EfficientNetV2B0",
                  folds: int = 5, image_size: int = 96, batch_size: int = 64, repeats: int = 5) -> dict:
    """Images per second of one model against the k-fold ensemble with TTA (one graph), on one decode."""
    import keras

    from ..data.images import load_images
    from ..data.meta import load_meta
    from ..modeling.inference import Ensemble, load_ensemble, predict_probs

    root = bench_data(data_dir)
    meta = load_meta(root, "public_test")
    if models_dir:
        ens = load_ensemble(models_dir)
    else:
        keras.utils.set_random_seed(0)
        members = [_random_model(backbone, seed=k) for k in range(folds)]
        ens = Ensemble(members, [f"fold{k}" for k in range(folds)], {}, image_size, {}, Path("random"))
    tta = ["identity", "flip"]
    t0 = time.perf_counter()
    decoded = load_images(meta["path"].tolist(), ens.image_size, progress=False)
    decode_s = time.perf_counter() - t0
    images = decoded.images[decoded.ok]
    n = len(images)
    single = ens.models[0]
    predict_probs(single, images[:batch_size], batch_size)  # trace once, untimed
    ens.predict(images[:batch_size], tta, batch_size)
    runs = {"single": lambda: predict_probs(single, images, batch_size), "ensemble": lambda: ens.predict(images, tta, batch_size)}
    best = dict.fromkeys(runs, float("inf"))
    cpu = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):  # interleaved, so a slow spell of the machine hits both alike; best of each
        for name, run in runs.items():
            t1, c1 = time.perf_counter(), time.process_time()
            run()
            best[name] = min(best[name], time.perf_counter() - t1)
            cpu[name] = min(cpu[name], time.process_time() - c1)
    s_t, e_t = best["single"], best["ensemble"]
    passes = len(ens.models) * len(tta)
    result = {
        "machine": _machine(),
        "images": n,
        "image_size": ens.image_size,
        "decode_seconds_once": round(decode_s, 2),
        "decode_images_per_second": round(n / decode_s, 1),
        "single_images_per_second": round(n / s_t, 1),
        "ensemble_images_per_second": round(n / e_t, 1),
        "forward_passes_per_image": passes,
        "cost_ratio": round(e_t / s_t, 2),
        "cost_ratio_per_pass": round(e_t / s_t / passes, 3),
        # CPU seconds of this process: unlike wall time, not moved by a shared or throttled machine
        "cpu_seconds": {"single": round(cpu["single"], 2), "ensemble": round(cpu["ensemble"], 2)},
        "cpu_cost_ratio_per_pass": round(cpu["ensemble"] / cpu["single"] / passes, 3),
        "goal": "per pass <= 1 (the ensemble costs no more than its forward passes), images decoded once; "
                "judge by cpu_cost_ratio_per_pass where wall time is throttled",
    }
    print(pd.Series({k: v for k, v in result.items() if k != "machine"}).to_string())
    _write("predict", result)
    return result


# --- pipeline -------------------------------------------------------------------------------
def bench_pipeline(*, data_dir: str | None = None, backbone: str = "EfficientNetV2B0", image_size: int = 96,
                   batch_size: int = 32, randaugment: float = 5.0, mixup: float = 0.0, epochs: int = 2,
                   max_train_images: int = 0, jit: bool = False) -> dict:
    """Input pipeline alone vs the model on in-memory tensors vs the full training loop."""
    import keras
    import tensorflow as tf

    from ..modeling.models import build_model
    from ..modeling.pipeline import make_train_dataset
    from ..modeling.training import EpochTimer, compile_model, load_training_data

    root = bench_data(data_dir)
    cfg = Config(data_dir=str(root), image_size=image_size, batch_size=batch_size, max_train_images=max_train_images)
    t0 = time.perf_counter()
    from ..data.images import decode_images
    from ..data.meta import load_meta

    meta = load_meta(root, "train")
    paths = meta["path"].tolist()[: max_train_images or None]
    decode_images(paths, image_size, progress=False)
    decode_ips = len(paths) / (time.perf_counter() - t0)
    data = load_training_data(cfg, progress=False)
    n, bs = len(data), batch_size
    steps = n // bs

    def pipeline():
        return make_train_dataset(data.images, data.labels, bs, seed=0, randaugment_magnitude=randaugment, mixup_alpha=mixup)

    def drain(ds, epochs=2):
        for _ in ds.take(2):  # warm-up: tracing and the first shuffle buffer
            pass
        t = time.perf_counter()
        count = 0
        for _ in range(epochs):
            for x, _y in ds:
                count += int(x.shape[0])
        return count / (time.perf_counter() - t)

    pipe_ips = drain(pipeline())
    keras.utils.set_random_seed(0)
    model = build_model(backbone, None)
    compile_model(model, keras.optimizers.AdamW(1e-4), jit_compile=jit)
    x = tf.constant(data.images[:bs].astype("float32"))
    y = {"mask": tf.constant(data.labels[:bs, :1]), "distancing": tf.constant(data.labels[:bs, 1:])}
    in_memory = tf.data.Dataset.from_tensors((x, y)).repeat(steps)  # the model alone: no input work

    def train_ips(ds) -> float:
        """Median images per second over epochs after the first (tracing, warm-up)."""
        timer = EpochTimer(steps * bs)
        seen = []
        log = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(logs["images_per_second"]))
        model.fit(ds, epochs=epochs + 1, verbose=0, callbacks=[timer, log], shuffle=False)
        return float(np.median(seen[1:]))

    model_ips = train_ips(in_memory)
    loop_ips = train_ips(pipeline())
    result = {
        "machine": _machine(),
        "images": n,
        "image_size": image_size,
        "batch_size": bs,
        "augmentation": {"randaugment_magnitude": randaugment, "mixup_alpha": mixup, "flip": True},
        "decode_images_per_second_once": round(decode_ips, 1),
        "input_pipeline_images_per_second": round(pipe_ips, 1),
        "model_images_per_second_in_memory": round(model_ips, 1),
        "full_loop_images_per_second": round(loop_ips, 1),
        "pipeline_over_model": round(pipe_ips / model_ips, 2),
        "full_loop_over_model": round(loop_ips / model_ips, 3),
        "goals": "pipeline_over_model >= 5, full_loop_over_model >= 0.9",
    }
    print(pd.Series({k: v for k, v in result.items() if k != "machine"}).to_string())
    _write("pipeline", result)
    return result


# --- GPU: precision and XLA, the input pipeline, and progressive learning at GPU sizes ------------
GPU_MODELS = (("EfficientNetV2B0", 224, 128), ("EfficientNetV2S", 384, 32))  # backbone, image size, batch
TINY_MODELS = (("tiny", 32, 8),)  # models.tiny_backbone: the script's paths in seconds on a CPU
MODES = ("float32", "mixed", "mixed+xla")


def _policy(mode: str, device: str) -> str:
    """The dtype policy of a mode: "mixed" is float16 on a GPU, bfloat16 elsewhere."""
    if mode == "float32":
        return "float32"
    return "mixed_float16" if device == "gpu" else "mixed_bfloat16"


def model_throughput(backbone: str, size: int, batch: int, mode: str, *, steps: int = 20, warmup: int = 3,
                     device: str = "cpu") -> dict:
    """Training and inference images per second of one model on in-memory batches (no input work)."""
    import keras
    import tensorflow as tf

    from ..modeling.training import compile_model

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(_policy(mode, device))
    try:
        model = _random_model(backbone)
        compile_model(model, keras.optimizers.AdamW(1e-4), jit_compile=mode.endswith("+xla"))
        rng = np.random.default_rng(0)
        x = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
        y = {h: tf.constant(rng.integers(0, 2, (batch, 1)).astype("float32")) for h in ("mask", "distancing")}
        predict = tf.function(lambda t: model(t, training=False), jit_compile=mode.endswith("+xla"))

        def timed(fn) -> float:
            for _ in range(warmup):  # tracing, compilation, autotuning
                out = fn()
            np.asarray(tf.nest.flatten(out)[0])  # wait for the device
            t = time.perf_counter()
            for _ in range(steps):
                out = fn()
            np.asarray(tf.nest.flatten(out)[0])
            return steps * batch / (time.perf_counter() - t)

        train_ips = timed(lambda: model.train_on_batch(x, y, return_dict=True)["loss"])
        infer_ips = timed(lambda: predict(x))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return {"backbone": backbone, "image_size": size, "batch_size": batch, "mode": mode, "policy": _policy(mode, device),
            "train_images_per_second": round(train_ips, 1), "inference_images_per_second": round(infer_ips, 1)}


def pipeline_throughput(size: int, batch: int, *, batches: int = 20, randaugment: float = 5.0, mixup: float = 0.2) -> float:
    """Images per second the training input pipeline (flip, RandAugment, MixUp) delivers from memory."""
    from ..modeling.pipeline import make_train_dataset

    rng = np.random.default_rng(0)
    n = batch * 4
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, (n, 2)).astype("float32")
    ds = make_train_dataset(images, labels, batch, seed=0, randaugment_magnitude=randaugment, mixup_alpha=mixup).repeat()
    it = iter(ds)
    for _ in range(3):
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - t)


def bench_gpu(*, tiny: bool = False, data_dir: str | None = None, n_train: int = 3000, epochs_per_stage: int = 2,
              stages: int = 4, write: bool = True, backend: str = "tensorflow", part: str = "all",
              budget_s: float = 0.0) -> dict:
    """What a GPU buys: throughput in float32 / mixed precision / mixed + XLA, the input pipeline beside
    the model, and EfficientNetV2-S from scratch on the realistic synthetic set, fixed 384 px against
    the progressive schedule with the same epochs. `tiny=True` runs every part on a CPU in about a
    minute (small sizes, a few images), to check the script before spending GPU time.

    `backend="jax"`: Keras on JAX (a GPU machine without TensorFlow), from in-memory arrays, in
    `part`s that may run on two machines (`workflows.gpu_bench`)."""
    if backend != "tensorflow" or part != "all" or budget_s:
        if backend == "tensorflow":
            raise ConfigError("--part and --budget-s belong to `fivek bench gpu --backend jax`")
        from .gpu_bench import bench_gpu_backend

        return bench_gpu_backend(backend=backend, part=part, tiny=tiny, budget_s=budget_s)
    import tensorflow as tf

    device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    t_start = time.perf_counter()
    models = TINY_MODELS if tiny else GPU_MODELS
    steps = 2 if tiny else 20
    throughput, pipeline = [], []
    for backbone, size, batch in models:
        pipe = pipeline_throughput(size, batch, batches=2 if tiny else 20)
        for mode in MODES:
            row = model_throughput(backbone, size, batch, mode, steps=steps, warmup=1 if tiny else 3, device=device)
            row["pipeline_images_per_second"] = round(pipe, 1)
            row["pipeline_over_model"] = round(pipe / row["train_images_per_second"], 2)
            throughput.append(row)
            print(pd.Series(row).to_frame().T.to_string(index=False), flush=True)
        pipeline.append({"image_size": size, "batch_size": batch, "images_per_second": round(pipe, 1)})

    learning = _progressive_learning(tiny=tiny, data_dir=data_dir, n_train=64 if tiny else n_train,
                                     stages=2 if tiny else stages, epochs_per_stage=1 if tiny else epochs_per_stage,
                                     device=device)
    result = {
        "machine": _machine(),
        "device": device,
        "tiny": tiny,
        "throughput": throughput,
        "pipeline": pipeline,
        "pipeline_keeps_up": all(r["pipeline_over_model"] >= 2 for r in throughput),
        "learning": learning,
        "seconds": round(time.perf_counter() - t_start, 1),
        "goals": "pipeline >= 2x the model's training images/s at every setting; progressive reaches the fixed "
                 "run's best validation 5K F1 in less time",
    }
    print(f"\nbench gpu: {result['seconds']} s on {device}; pipeline keeps up: {result['pipeline_keeps_up']}")
    if write:
        _write("gpu-tensorflow-tiny" if tiny else "gpu-tensorflow", result)  # gpu.json: the Keras-on-JAX bench
    return result


def _progressive_learning(*, tiny: bool, data_dir: str | None, n_train: int, stages: int, epochs_per_stage: int,
                          device: str) -> dict:
    """EfficientNetV2-S (a tiny conv net when tiny) from scratch on the realistic profile: fixed size vs progressive."""
    import keras

    from ..data.folds import holdout_split
    from ..modeling.backbones import tiny_backbone
    from ..modeling.models import build_model
    from ..modeling.progressive import fixed_schedule, make_schedule, schedule_table, train_progressive
    from ..modeling.training import load_training_data

    root = resolve_path(data_dir) if data_dir else BENCH_DIR / "data" / ("realistic-tiny" if tiny else "realistic")
    from ..data.synth import ensure_dataset

    ensure_dataset(root, n_train=n_train, n_test=0, seed=0, profile="realistic", progress=False)
    size_max = 48 if tiny else 384
    cfg = Config(
        data_dir=str(root), backbone="tiny" if tiny else "EfficientNetV2S", weights=None,
        batch_size=8 if tiny else 64, seed=0, lr_finetune=2e-3, warmup_epochs=0.5, unfreeze_blocks=-1,
        progressive_preset="custom", progressive_stages=stages, progressive_epochs_per_stage=epochs_per_stage,
        size_min=32 if tiny else 128, size_max=size_max, ra_min=5, ra_max=10 if tiny else 15, mixup_min=0,
        mixup_max=0.0, dropout_min=0.1, dropout_max=0.3, early_stopping_patience=100,
        mixed_precision="auto",
    )
    plan = make_schedule(cfg)
    data = load_training_data(cfg, size=size_max, progress=False)
    tr, va = holdout_split(data.df, 0.2, cfg.seed)
    train, val = data.subset(tr), data.subset(va)
    runs = {}
    for name, stages_ in (("fixed", fixed_schedule(plan)), ("progressive", plan)):
        keras.backend.clear_session()
        keras.utils.set_random_seed(cfg.seed)
        keras.mixed_precision.set_global_policy(_policy("mixed", device) if device == "gpu" else "float32")
        try:
            model = build_model(tiny_backbone() if tiny else cfg.backbone, None, stages_[0].dropout)
            run_dir = BENCH_DIR / "runs" / f"gpu-{name}{'-tiny' if tiny else ''}"
            if run_dir.exists():
                import shutil

                shutil.rmtree(run_dir)
            t0 = time.perf_counter()
            history = train_progressive(model, train, val, cfg, stages_, run_dir)
            runs[name] = {"wall_seconds": round(time.perf_counter() - t0, 1), "history": history}
        finally:
            keras.mixed_precision.set_global_policy("float32")
    fixed_best = float(runs["fixed"]["history"]["val_f1_5k"].max())
    out = {"dataset": str(root), "train_rows": len(train), "validation_rows": len(val), "backbone": cfg.backbone,
           "schedule": schedule_table(plan).reset_index().to_dict("records"), "fixed_best_f1_5k": round(fixed_best, 4)}
    for name, r in runs.items():
        h = r["history"]
        cols = [c for c in ("epoch", "image_size", "train_seconds", "val_f1_5k", "val_f1_5k_always_yes", "val_auc_5k",
                            "val_auc_mask", "val_auc_distancing") if c in h]
        out[name] = {"wall_seconds": r["wall_seconds"], "train_seconds": round(float(h["train_seconds"].sum()), 1),
                     "best_val_f1_5k": round(float(h["val_f1_5k"].max()), 4),
                     "seconds_to_fixed_best": time_to_reach(h, fixed_best),
                     "epochs": h[cols].round(4).to_dict("records")}
        print(f"{name}: {out[name]['wall_seconds']} s, best 5K F1 {out[name]['best_val_f1_5k']}, "
              f"reached the fixed run's best after {out[name]['seconds_to_fixed_best']} s of training", flush=True)
    return out
