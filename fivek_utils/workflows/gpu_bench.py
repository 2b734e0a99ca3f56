"""`fivek bench gpu --backend jax`: the kit's model on a GPU under Keras's JAX backend, and how many
CPU cores the tf.data input pipeline needs to keep that GPU fed.

Two parts, which may run on different machines and land in one file (reports/bench/gpu.json):

    model     under any Keras backend (JAX on a GPU machine without TensorFlow): training and
              inference images/s of EfficientNetV2-B0 at 224 px and EfficientNetV2-S at 384 px, in
              float32, mixed_bfloat16 and mixed_float16, XLA-compiled (JAX always compiles), on one
              batch held on the device (no input work: the model alone), with blank labels in the
              batch at the official rates and every loss and output checked finite.
    pipeline  TensorFlow, on the CPU: the training input pipeline (`modeling.pipeline`: flip,
              RandAugment, MixUp) at the same sizes, images/s on one core and on all of them.

Once both parts are in the file, `cores_to_feed` gives, for every model row, its training images/s
over the pipeline's images per CPU second on one core of the machine where the pipeline ran (CPU
time, so that a shared machine does not inflate it).

Keras is imported inside the functions, after `use_backend` has chosen its backend; TensorFlow only
inside the pipeline part. The model part uses only the backend-agnostic model path
(`modeling.backbones`, `models`, `layers`, `losses`).
"""

from __future__ import annotations

import gc
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from ..core.config import BENCH_DIR, ConfigError
from ..core.environment import cpu_count
from ..core.io import atomic_write_json
from ..core.labels import HEADS, MISSING

BENCHMARK = "fivek bench gpu --backend jax"
BACKENDS = ("jax", "tensorflow")
PARTS = ("all", "model", "pipeline")
MODELS = (("EfficientNetV2B0", 224, 128), ("EfficientNetV2S", 384, 32))  # backbone, image size, batch
TINY_MODELS = (("tiny", 32, 8),)  # backbones.tiny_backbone: every path in seconds on a CPU
# measured in this order, each over every model (a time budget cuts the last): float16 is the mixed
# precision of the T4 and P100 GPUs Kaggle lends, bfloat16 that of newer GPUs and TPUs
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
AUGMENT = {"flip": True, "randaugment_magnitude": 5.0, "mixup_alpha": 0.2}  # as `fivek bench gpu` (TensorFlow)


class BenchFailure(RuntimeError):
    """A configuration failed or gave a non-finite loss (the file still holds every row)."""


def result_path(tiny: bool):
    return BENCH_DIR / ("gpu-tiny.json" if tiny else "gpu.json")


def use_backend(backend: str) -> None:
    """Make Keras start on `backend`. Keras reads KERAS_BACKEND once, at its first import, so a
    process that already runs Keras on another backend is refused rather than silently measured."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r}: choose one of {BACKENDS}")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise ConfigError(f"Keras is already running on the {current} backend in this process; run "
                              f"`fivek bench gpu --backend {backend}` in a fresh one (or set KERAS_BACKEND={backend} "
                              "before anything imports Keras)")
        return
    os.environ["KERAS_BACKEND"] = backend


def has_tensorflow() -> bool:
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> float | None:
    """The 1-minute load average: on a shared machine, more than its cores means slower numbers."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info() -> dict:
    """The backend, its versions and the accelerator Keras runs on (imports Keras)."""
    import keras

    info = {"backend": keras.backend.backend(), "keras": keras.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cpu": _cpu_name(), "cpu_cores": cpu_count(),
            "load_average_at_start": _load()}
    if info["backend"] == "jax":
        import jax
        import jaxlib

        devices = jax.devices()
        info.update(jax=jax.__version__, jaxlib=jaxlib.__version__, device=devices[0].platform,
                    device_name=devices[0].device_kind, device_count=len(devices))
    elif info["backend"] == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        info.update(tensorflow=tf.__version__, device="gpu" if gpus else "cpu", device_count=max(1, len(gpus)),
                    device_name=tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
                    if gpus else _cpu_name())
    return info


def labels_with_blanks(n: int, seed: int = 0) -> np.ndarray:
    """(n, 2) float32 (mask, distancing) labels with blanks (-1) at the official rates, on disjoint
    rows as in the official file, and at least one blank per head (so the masked loss is exercised)."""
    from ..data.synth import DISTANCING_BLANK_RATE, MASK_BLANK_RATE

    if n < 3:
        raise ValueError(f"batch of {n}: need at least 3 rows for blanks of both heads and a known row")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (n, 2)).astype("float32")
    order = rng.permutation(n)
    n_mask = max(1, round(MASK_BLANK_RATE * n))
    n_dist = max(1, min(n - n_mask - 1, round(DISTANCING_BLANK_RATE * n)))
    labels[order[:n_mask], 0] = MISSING
    labels[order[n_mask:n_mask + n_dist], 1] = MISSING
    return labels


def _forever(batch):
    while True:
        yield batch


def _finite(values) -> bool:
    return all(np.isfinite(np.asarray(v, dtype="float64")).all() for v in values)


def model_throughput(backbone: str, size: int, batch: int, precision: str, *, steps: int = 20, warmup: int = 3,
                     repeats: int = 2, seed: int = 0) -> dict:
    """Training and inference images/s of one fivek model on one batch held on the device.

    `fit` and `predict` run on a generator that yields the same device arrays, so the numbers are
    the compiled step alone: Keras's own train and predict functions, with XLA (`jit_compile=True`;
    under JAX every step is compiled anyway). The first call of each compiles and is timed apart;
    then the median of `repeats` timed epochs (train) or calls (predict) of `steps` batches.
    """
    import keras

    from ..modeling.backbones import tiny_backbone
    from ..modeling.losses import compile_model
    from ..modeling.models import build_model

    keras.backend.clear_session()
    gc.collect()
    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(seed)
        model = build_model(tiny_backbone(seed=seed) if backbone == "tiny" else backbone, None)
        compile_model(model, keras.optimizers.AdamW(1e-4), jit_compile=True)
        labels = labels_with_blanks(batch, seed)
        rng = np.random.default_rng(seed)
        x = keras.ops.convert_to_tensor(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
        y = {h: keras.ops.convert_to_tensor(labels[:, i:i + 1]) for i, h in enumerate(HEADS)}

        epochs: list[tuple[float, dict]] = []
        clock = keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda e, logs: epochs.append((time.perf_counter(), {})),
            # float() waits for the device; the last step's loss comes with its update
            on_epoch_end=lambda e, logs: epochs.__setitem__(-1, (time.perf_counter() - epochs[-1][0],
                                                                 {k: float(v) for k, v in logs.items()})))
        t = time.perf_counter()
        model.fit(_forever((x, y)), steps_per_epoch=warmup, epochs=1, verbose=0, callbacks=[clock], shuffle=False)
        train_first = time.perf_counter() - t
        model.fit(_forever((x, y)), steps_per_epoch=steps, epochs=repeats, verbose=0, callbacks=[clock], shuffle=False)
        train_s = float(np.median([s for s, _ in epochs[1:]]))

        t = time.perf_counter()
        outputs = [model.predict(_forever((x,)), steps=warmup, verbose=0)]
        infer_first = time.perf_counter() - t
        calls = []
        for _ in range(repeats):
            t = time.perf_counter()
            outputs.append(model.predict(_forever((x,)), steps=steps, verbose=0))
            calls.append(time.perf_counter() - t)
        infer_s = float(np.median(calls))
        losses = [logs for _, logs in epochs]
        del model
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return {
        "train_images_per_second": round(steps * batch / train_s, 1),
        "inference_images_per_second": round(steps * batch / infer_s, 1),
        "train_first_call_seconds": round(train_first, 1),  # compilation (and autotuning) + warm-up steps
        "inference_first_call_seconds": round(infer_first, 1),
        "steps": steps, "repeats": repeats,
        "blank_labels": {h: int((labels[:, i] == MISSING).sum()) for i, h in enumerate(HEADS)},
        "losses": [{k: round(v, 5) for k, v in logs.items() if k.endswith("loss")} for logs in losses],
        "losses_finite": _finite([v for logs in losses for k, v in logs.items() if k.endswith("loss")]),
        "outputs_finite": _finite([o[h] for o in outputs for h in HEADS]),
    }


def bench_model(*, tiny: bool = False, steps: int | None = None, budget_s: float = 0.0, write: bool = True) -> dict:
    """Every (backbone, precision) row on the current Keras backend; the file is rewritten after each
    row, so a run stopped early keeps what it measured. With `budget_s`, no row starts once the time
    spent plus that backbone's last row's duration (else the last row's) would pass it (those rows
    are marked skipped)."""
    models = TINY_MODELS if tiny else MODELS
    steps = steps or (2 if tiny else 20)
    warmup = 1 if tiny else 3
    t0 = time.perf_counter()
    section = {"machine": machine_info(), "jit_compile": True, "input": "one batch held on the device (no input work)",
               "settings": {"steps": steps, "warmup_steps": warmup, "budget_s": budget_s}, "rows": []}
    m = section["machine"]
    print(f"model part: Keras {m['keras']} on {m['backend']}, {m['device_count']} x {m['device_name']} ({m['device']})",
          flush=True)
    last, took = 0.0, {}
    for precision in PRECISIONS:
        for backbone, size, batch in models:
            row = {"backbone": backbone, "image_size": size, "batch_size": batch, "precision": precision}
            spent = time.perf_counter() - t0
            if budget_s and section["rows"] and spent + took.get(backbone, last) > budget_s:
                row["skipped"] = f"time budget: {spent:.0f} s spent of {budget_s:g} s"
            else:
                t = time.perf_counter()
                try:
                    row.update(model_throughput(backbone, size, batch, precision, steps=steps, warmup=warmup))
                except Exception as exc:  # noqa: BLE001  (one failed row, e.g. out of memory, must not lose the others)
                    row["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
                last = took[backbone] = time.perf_counter() - t
                row["seconds"] = round(last, 1)
            section["rows"].append(row)
            _print_row(row)
            section["seconds"] = round(time.perf_counter() - t0, 1)
            if write:
                update_result("model", section, tiny)
    return section


def _print_row(row: dict) -> None:
    head = f"{row['backbone']:>16} {row['image_size']:>4} px  batch {row['batch_size']:>4}  {row['precision']:<15}"
    if "skipped" in row or "error" in row:
        print(f"{head} {row.get('skipped') or row['error']}", flush=True)
        return
    print(f"{head} train {row['train_images_per_second']:>9.1f} img/s  inference {row['inference_images_per_second']:>9.1f}"
          f" img/s  first calls {row['train_first_call_seconds']} + {row['inference_first_call_seconds']} s"
          f"  losses finite: {row['losses_finite']}  outputs finite: {row['outputs_finite']}", flush=True)


# --- the input pipeline on this CPU (TensorFlow) --------------------------------------------------
def pipeline_throughput(size: int, batch: int, *, images: int = 512, threads: int | None = None, seed: int = 0) -> dict:
    """Images/s of the training input pipeline (flip, RandAugment, MixUp, blank-safe) from uint8
    arrays in memory; `threads=1` confines tf.data's work to one thread (one core)."""
    import tensorflow as tf

    from ..modeling.pipeline import make_train_dataset

    rng = np.random.default_rng(seed)
    n = batch * 4
    pixels = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    ds = make_train_dataset(pixels, labels_with_blanks(n, seed), batch, seed=seed,
                            randaugment_magnitude=AUGMENT["randaugment_magnitude"], mixup_alpha=AUGMENT["mixup_alpha"],
                            flip=AUGMENT["flip"]).repeat()
    if threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = 1
        ds = ds.with_options(options)
    it = iter(ds)
    for _ in range(2):  # tracing and the first shuffle buffer
        next(it)
    batches = max(2, math.ceil(images / batch))
    t, c = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(it)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"images_per_second": round(batches * batch / wall, 1), "cpu_seconds_per_image": max(cpu, 1e-9) / (batches * batch)}


def bench_pipeline_per_core(*, tiny: bool = False, write: bool = True) -> dict:
    """The pipeline at each model row's size and batch: on one core and on every core of this CPU."""
    import tensorflow as tf

    t0 = time.perf_counter()
    images = 16 if tiny else 512
    section = {"machine": {"cpu": _cpu_name(), "cpu_cores": cpu_count(), "tensorflow": tf.__version__,
                           "python": platform.python_version(), "platform": platform.platform(),
                           "load_average_at_start": _load()},
               "augmentation": AUGMENT, "images_timed": images, "rows": []}
    print(f"pipeline part: TensorFlow {tf.__version__} on {cpu_count()} cores of {section['machine']['cpu']}", flush=True)
    for _backbone, size, batch in TINY_MODELS if tiny else MODELS:
        one = pipeline_throughput(size, batch, images=images, threads=1)
        every = pipeline_throughput(size, batch, images=images)
        row = {"image_size": size, "batch_size": batch,
               # CPU time, unlike wall time, does not drop when other work shares the machine
               "images_per_cpu_second_one_core": round(1.0 / one["cpu_seconds_per_image"], 1),
               "images_per_second_one_core": one["images_per_second"],
               "images_per_second_all_cores": every["images_per_second"], "cores": cpu_count(),
               "cpu_seconds_per_image_all_cores": round(every["cpu_seconds_per_image"], 6)}
        section["rows"].append(row)
        print(f"{size:>4} px  batch {batch:>4}  one core: {row['images_per_cpu_second_one_core']:>7.1f} images per CPU "
              f"second, {row['images_per_second_one_core']:>7.1f} img/s;  {row['cores']} cores: "
              f"{row['images_per_second_all_cores']:>7.1f} img/s", flush=True)
    section["seconds"] = round(time.perf_counter() - t0, 1)
    section["machine"]["load_average_at_end"] = _load()
    if write:
        update_result("pipeline", section, tiny)
    return section


# --- the file ------------------------------------------------------------------------------------
def cores_to_feed(model: dict, pipeline: dict) -> list[dict]:
    """Per measured model row: the cores of the pipeline's CPU that deliver its training images/s
    (at the images per CPU second of the one-core run)."""
    per_core = {r["image_size"]: r["images_per_cpu_second_one_core"] for r in pipeline.get("rows", [])}
    out = []
    for r in model.get("rows", []):
        if "train_images_per_second" not in r or not per_core.get(r["image_size"]):
            continue
        core = per_core[r["image_size"]]
        out.append({"backbone": r["backbone"], "image_size": r["image_size"], "precision": r["precision"],
                    "train_images_per_second": r["train_images_per_second"], "pipeline_images_per_cpu_second": core,
                    "cores": round(r["train_images_per_second"] / core, 1)})
    return out


def update_result(section: str, value: dict, tiny: bool) -> dict:
    """Put one part into the file (keeping the other part a previous run left there) and recompute
    `cores_to_feed`; written atomically."""
    path = result_path(tiny)
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
        if data.get("benchmark") != BENCHMARK:  # another benchmark's file (the TensorFlow bench's, before it
            # wrote gpu-tensorflow.json)
            data = {}
    data.update(benchmark=BENCHMARK, tiny=tiny)
    data[section] = value
    if "model" in data and "pipeline" in data:
        data["cores_to_feed"] = cores_to_feed(data["model"], data["pipeline"])
        data["cores_to_feed_note"] = (
            f"training images/s of the model part ({data['model']['machine'].get('device_name')}, Keras on "
            f"{data['model']['machine'].get('backend')}) over the input pipeline's images per CPU second on one core of "
            f"{data['pipeline']['machine']['cpu']} (TensorFlow {data['pipeline']['machine']['tensorflow']})")
    else:
        data.pop("cores_to_feed", None)
        data.pop("cores_to_feed_note", None)
    atomic_write_json(path, data)
    return data


def _pipeline_in_child(tiny: bool) -> None:
    """The pipeline part in a fresh process on TensorFlow (this one runs Keras on another backend)."""
    # --verbose: the child writes to the streams it inherits (this process's log when they are sent there)
    # instead of starting that log over under this process's feet
    cmd = [sys.executable, "-m", "fivek_utils.cli", "bench", "gpu", "--verbose", "--backend", "jax", "--part", "pipeline"]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    subprocess.run(cmd + (["--tiny"] if tiny else []), env=env, check=True)


def bench_gpu_backend(*, backend: str = "jax", part: str = "all", tiny: bool = False, budget_s: float = 0.0) -> dict:
    """`fivek bench gpu --backend jax [--part all|model|pipeline]`: see the module's docstring.

    "all" runs the model part here and then, where TensorFlow is installed, the pipeline part in a
    child process; on a machine without TensorFlow (the GPU machine) it says how to add it later.
    Raises BenchFailure, after writing the file, when a row failed or gave a non-finite loss.
    """
    if part not in PARTS:
        raise ConfigError(f"part={part!r}: choose one of {PARTS}")
    if part == "pipeline":
        if not has_tensorflow():
            raise ConfigError("the pipeline part measures tf.data and needs TensorFlow: run it on a machine with "
                              "the kit installed (`make install`), where it adds its numbers to the same file")
        use_backend("tensorflow")
        bench_pipeline_per_core(tiny=tiny)
        _print_cores(tiny)
        return json.loads(result_path(tiny).read_text())

    use_backend(backend)
    model = bench_model(tiny=tiny, budget_s=budget_s)
    if part == "all" and has_tensorflow():
        _pipeline_in_child(tiny)  # it prints the cores table
    elif part == "all":
        print("\npipeline part not measured: TensorFlow is not installed here. On a machine with the kit "
              f"installed, put this {result_path(tiny).name} into reports/bench/ and run "
              f"`fivek bench gpu --backend jax --part pipeline{' --tiny' if tiny else ''}`", flush=True)
    if not (part == "all" and has_tensorflow()):
        _print_cores(tiny)
    bad = [r for r in model["rows"] if "error" in r or not r.get("losses_finite", True) or not r.get("outputs_finite", True)]
    if bad:
        raise BenchFailure(f"{len(bad)} configuration(s) failed or were not finite (all rows are in "
                           f"{result_path(tiny)}): " + "; ".join(
                               f"{r['backbone']} {r['image_size']} px {r['precision']}: "
                               f"{r.get('error') or 'losses ' + str(r['losses'])}" for r in bad))
    return json.loads(result_path(tiny).read_text())


def _print_cores(tiny: bool) -> None:
    data = json.loads(result_path(tiny).read_text())
    if data.get("cores_to_feed"):
        print("\ncores of the pipeline's CPU that keep the model fed (training):")
        print(pd.DataFrame(data["cores_to_feed"]).to_string(index=False))
    print(f"\nwrote {result_path(tiny)}")
