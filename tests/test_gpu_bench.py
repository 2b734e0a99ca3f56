"""`fivek bench gpu --backend jax`: the model part under JAX with TensorFlow unimportable (as on the GPU
machine), the pipeline part on TensorFlow, and the one file both parts fill."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_without_tensorflow

from fivek_utils.core.config import ConfigError
from fivek_utils.workflows import bench, gpu_bench


@pytest.mark.parametrize("n", [3, 8, 32, 128])
def test_labels_have_blanks_of_both_heads_on_disjoint_rows(n):
    labels = gpu_bench.labels_with_blanks(n, seed=n)
    blank = labels == -1
    assert blank[:, 0].sum() >= 1 and blank[:, 1].sum() >= 1 and not (blank[:, 0] & blank[:, 1]).any()
    assert set(np.unique(labels)) <= {-1.0, 0.0, 1.0} and labels.dtype == np.float32
    if n == 128:  # the official rates: 17.6% of rows without mask, 30.5% without distancing
        assert (blank[:, 0].sum(), blank[:, 1].sum()) == (23, 39)


def test_the_file_keeps_the_other_part_and_replaces_another_benchmarks_file(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_bench, "BENCH_DIR", tmp_path)
    (tmp_path / "gpu.json").write_text(json.dumps({"throughput": [], "learning": {}}))  # the TensorFlow bench's
    model = {"machine": {"device_name": "NVIDIA H200", "backend": "jax"},
             "rows": [{"backbone": "EfficientNetV2B0", "image_size": 224, "precision": "float32", "train_images_per_second": 900.0},
                      {"backbone": "EfficientNetV2S", "image_size": 384, "precision": "float32", "error": "out of memory"}]}
    data = gpu_bench.update_result("model", model, tiny=False)
    assert set(data) == {"benchmark", "tiny", "model"}
    pipeline = {"machine": {"cpu": "AMD EPYC", "tensorflow": "2.21.0"},
                "rows": [{"image_size": 224, "images_per_cpu_second_one_core": 120.0},
                         {"image_size": 384, "images_per_cpu_second_one_core": 40.0}]}
    data = gpu_bench.update_result("pipeline", pipeline, tiny=False)
    assert data["model"] == model and json.loads((tmp_path / "gpu.json").read_text()) == data
    assert data["cores_to_feed"] == [{"backbone": "EfficientNetV2B0", "image_size": 224, "precision": "float32",
                                      "train_images_per_second": 900.0, "pipeline_images_per_cpu_second": 120.0,
                                      "cores": 7.5}]  # the failed row has no rate to feed
    assert "NVIDIA H200" in data["cores_to_feed_note"] and "AMD EPYC" in data["cores_to_feed_note"]


def test_a_process_already_on_tensorflow_is_not_measured_as_jax():
    import keras

    assert keras.backend.backend() == "tensorflow"
    with pytest.raises(ConfigError, match="fresh one"):
        gpu_bench.use_backend("jax")
    gpu_bench.use_backend("tensorflow")
    with pytest.raises(ConfigError, match="--backend jax"):
        bench.bench_gpu(backend="tensorflow", part="model")
    with pytest.raises(ConfigError, match="part="):
        gpu_bench.bench_gpu_backend(part="models")


@pytest.mark.slow
def test_the_budget_stops_new_rows_and_the_model_part_runs_on_tensorflow_too(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_bench, "BENCH_DIR", tmp_path)
    section = gpu_bench.bench_model(tiny=True, budget_s=1e-6)
    first, *rest = section["rows"]
    assert section["machine"]["backend"] == "tensorflow"
    assert first["precision"] == "float32" and first["train_images_per_second"] > 0 and first["losses_finite"]
    assert [r["precision"] for r in rest] == list(gpu_bench.PRECISIONS[1:]) and all("skipped" in r for r in rest)
    assert json.loads((tmp_path / "gpu-tiny.json").read_text())["model"]["rows"] == section["rows"]


@pytest.mark.slow
def test_tiny_bench_runs_under_jax_without_tensorflow_then_the_pipeline_joins_it(tmp_path, monkeypatch):
    proc = run_without_tensorflow('from fivek_utils.cli import main; sys.exit(main(["bench", "gpu", "--backend", "jax", "--tiny"]))',
                                  env={"FIVEK_ROOT": str(tmp_path)})
    assert "pipeline part not measured: TensorFlow is not installed here" in proc.stdout
    path = tmp_path / "reports" / "bench" / "gpu-tiny.json"
    data = json.loads(path.read_text())
    assert "pipeline" not in data and "cores_to_feed" not in data
    machine = data["model"]["machine"]
    assert machine["backend"] == "jax" and machine["device"] == "cpu" and machine["jax"] and machine["keras"]
    rows = data["model"]["rows"]
    assert [r["precision"] for r in rows] == list(gpu_bench.PRECISIONS)
    for r in rows:
        assert r["train_images_per_second"] > 0 and r["inference_images_per_second"] > 0 and r["batch_size"] == 8
        assert r["blank_labels"]["mask"] >= 1 and r["blank_labels"]["distancing"] >= 1
        assert r["losses_finite"] and r["outputs_finite"] and len(r["losses"]) == 3  # warm-up + 2 timed epochs

    monkeypatch.setattr(gpu_bench, "BENCH_DIR", path.parent)
    data = gpu_bench.bench_gpu_backend(part="pipeline", tiny=True)
    assert data["model"]["rows"] == rows  # the model part stays
    (pipe,) = data["pipeline"]["rows"]
    assert pipe["image_size"] == 32 and pipe["images_per_second_one_core"] > 0 and pipe["images_per_second_all_cores"] > 0
    assert pipe["images_per_cpu_second_one_core"] > 0
    assert [c["cores"] for c in data["cores_to_feed"]] == [
        round(r["train_images_per_second"] / pipe["images_per_cpu_second_one_core"], 1) for r in rows]


@pytest.mark.slow
def test_both_parts_in_one_command_keep_one_log_with_the_model_and_the_cores_tables(tmp_path):
    import os

    from conftest import run_fivek

    env = {**os.environ, "FIVEK_ROOT": str(tmp_path), "KERAS_BACKEND": "jax"}
    proc = run_fivek("bench", "gpu", "--backend", "jax", "--tiny", "--quiet", env=env)
    bench_dir = tmp_path / "reports" / "bench"
    assert proc.stdout.strip().splitlines()[-1].startswith(f"fivek bench gpu: results in {bench_dir}")
    data = json.loads((bench_dir / "gpu-tiny.json").read_text())
    assert data["model"]["machine"]["backend"] == "jax" and data["pipeline"]["machine"]["tensorflow"]
    assert len(data["cores_to_feed"]) == len(gpu_bench.PRECISIONS)
    log = (bench_dir / "gpu.log").read_text()  # the child (the pipeline part on TensorFlow) wrote into it too
    assert "model part: Keras" in log and "pipeline part: TensorFlow" in log and "keep the model fed" in log
