"""The benchmarks' bookkeeping, and `fivek bench gpu --tiny`: the GPU script runs end to end on a CPU."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fivek_utils.workflows import bench


def test_time_to_reach_counts_training_seconds_until_the_target():
    history = pd.DataFrame({"train_seconds": [10.0, 12.0, 11.0, 9.0], "val_f1_5k": [0.5, 0.7, 0.65, 0.8]})
    assert bench.time_to_reach(history, 0.7) == 22.0
    assert bench.time_to_reach(history, 0.8) == 42.0
    assert bench.time_to_reach(history, 0.81) is None


def test_mixed_mode_is_float16_on_gpus_only():
    assert bench._policy("float32", "gpu") == "float32"
    assert bench._policy("mixed+xla", "gpu") == "mixed_float16"
    assert bench._policy("mixed", "cpu") == "mixed_bfloat16"


def test_predict_bench_times_both_on_one_decode_and_writes_what_it_printed(tmp_path, monkeypatch, capsys):
    from fivek_utils.data.synth import generate_dataset

    monkeypatch.setattr(bench, "BENCH_DIR", tmp_path / "bench")
    root = tmp_path / "data"
    generate_dataset(root, n_train=0, n_test=10, seed=0, progress=False)
    (root / "public_test" / "images" / "3.jpg").write_bytes(b"not a jpeg")  # unreadable: not timed, not counted
    result = bench.bench_predict(data_dir=str(root), backbone="tiny", folds=2, image_size=32, batch_size=4, repeats=2)
    assert result["images"] == 9 and result["image_size"] == 32 and result["forward_passes_per_image"] == 4
    ratio = result["single_images_per_second"] / result["ensemble_images_per_second"]
    assert result["cost_ratio"] == pytest.approx(ratio, rel=0.02)
    assert result["cost_ratio_per_pass"] == pytest.approx(result["cost_ratio"] / 4, abs=0.01)
    assert set(result["cpu_seconds"]) == {"single", "ensemble"} and result["cpu_cost_ratio_per_pass"] > 0
    assert json.loads((tmp_path / "bench" / "predict.json").read_text()) == result
    assert "cost_ratio_per_pass" in capsys.readouterr().out


@pytest.mark.slow
def test_gpu_bench_runs_end_to_end_on_a_cpu_in_tiny_mode(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "BENCH_DIR", tmp_path)
    result = bench.bench_gpu(tiny=True)
    assert result["device"] == "cpu" and result["tiny"]
    assert [r["mode"] for r in result["throughput"]] == list(bench.MODES)
    for row in result["throughput"]:
        assert row["train_images_per_second"] > 0 and row["inference_images_per_second"] > 0
        assert row["pipeline_over_model"] == pytest.approx(row["pipeline_images_per_second"] / row["train_images_per_second"], rel=0.02)
    learning = result["learning"]
    assert learning["schedule"][0]["image_size"] < learning["schedule"][-1]["image_size"]
    for name in ("fixed", "progressive"):
        epochs = learning[name]["epochs"]
        assert len(epochs) == 2 and all(np.isfinite(e["val_f1_5k"]) for e in epochs)
    assert [e["image_size"] for e in learning["fixed"]["epochs"]] == [48, 48]
    assert [e["image_size"] for e in learning["progressive"]["epochs"]] == [32, 48]
    written = json.loads((tmp_path / "gpu-tensorflow-tiny.json").read_text())
    assert written["throughput"] == result["throughput"] and "machine" in written


def test_bench_faces_times_the_detectors_on_real_photos_and_the_crops(tmp_path, monkeypatch):
    from fivek_utils.core import config
    from fivek_utils.data.synth import generate_dataset
    from fivek_utils.workflows import bench, bench_faces

    monkeypatch.setattr(bench, "BENCH_DIR", tmp_path / "bench")
    monkeypatch.setattr(config, "BENCH_DIR", tmp_path / "bench")
    data = tmp_path / "closeup"
    generate_dataset(data, n_train=8, n_test=0, seed=1, profile="closeup", workers=1, progress=False)
    result = bench_faces.bench_faces(data_dir=str(data), crop_size=32, repeats=1, sizes=(256,))
    assert [r["photo_px"] for r in result["mtcnn"]] == [256]
    assert result["mtcnn"][0]["faces_per_image"] == 1.0 and result["mtcnn"][0]["images_per_second"] > 0  # both faces found
    for name in ("retinaface", "blazeface"):
        assert [r["photo_px"] for r in result[name]] == [256] and result[name][0]["images_per_second"] > 0
        assert result[name][0]["faces_per_image"] >= 0.5  # the astronaut at least (camera.jpg is greyscale)
    s = result["synthetic"]
    assert s["images"] == 8 and s["faces"] >= 8 and s["face_model_crops_per_second"] > 0
    assert (tmp_path / "bench" / "faces.json").exists()
