"""Run folders: `holdout_data` (the split notebooks 02-04 share) and `save_run`, which writes what
`fivek predict` and the comparisons need."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from fivek_utils.core import config as cfg_module
from fivek_utils.core.config import Config
from fivek_utils.core.metrics import evaluate
from fivek_utils.data import synth
from fivek_utils.modeling import training
from fivek_utils.modeling.backbones import tiny_backbone
from fivek_utils.modeling.models import build_model
from fivek_utils.workflows import runs


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Models, reports and the decode cache in a temporary project root."""
    monkeypatch.setattr(cfg_module, "MODELS_DIR", tmp_path / "models")
    monkeypatch.setattr(runs, "REPORTS_DIR", tmp_path / "reports")
    monkeypatch.setattr(cfg_module, "REPORTS_DIR", tmp_path / "reports")
    monkeypatch.setattr(training, "CACHE_DIR", tmp_path / "cache")
    return tmp_path


def test_holdout_data_is_stratified_disjoint_and_the_same_for_the_same_seed(project):
    root = project / "data"
    synth.generate_dataset(root, n_train=60, n_test=0, seed=4, workers=1, progress=False)
    cfg = Config(data_dir=str(root), image_size=32, val_fraction=0.25, seed=1)
    split = runs.holdout_data(cfg, progress=False)
    train_ids, val_ids = set(split.train.df["image_id"]), set(split.val.df["image_id"])
    assert not train_ids & val_ids and len(train_ids | val_ids) == 60 and 12 <= len(val_ids) <= 18
    assert split.train.images.shape[1:] == (32, 32, 3) and len(split.val.images) == len(val_ids)
    table = split.table()
    assert list(table.index) == ["train", "validation"] and table.to_numpy().sum() == 60
    assert str(split).startswith(f"train {len(train_ids)} rows, validation {len(val_ids)} rows")
    again = runs.holdout_data(cfg, size=48, progress=False)
    assert set(again.val.df["image_id"]) == val_ids and again.val.images.shape[1] == 48


def test_save_run_writes_what_predict_and_comparisons_read(project):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (20, 2)).astype("float32")
    labels[::4, 1] = -1
    probs = rng.uniform(size=(20, 2))
    df = pd.DataFrame({"image_id": [str(i) for i in range(20)], "fname": [f"{i}.jpg" for i in range(20)]})
    cfg = Config(run_name="r", image_size=32)
    thresholds = {"mask": 0.5, "distancing": 0.4, "5k_mask": 0.5, "5k_distancing": 0.4, "f1_5K": 0.6}
    table = evaluate(labels, probs, thresholds)
    paths = runs.save_run(cfg, build_model(tiny_backbone(), None), val_df=df, val_labels=labels, val_probs=probs,
                          thresholds=thresholds, metrics=table, train_labels=labels, tta=["identity", "flip"],
                          inference_info={"folds": 3})
    run = project / "models" / "r"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "ensemble.json", "model.keras", "thresholds.json",
                                                     "val_predictions.csv"]
    info = json.loads((run / "ensemble.json").read_text())
    assert info["tta"] == ["identity", "flip"] and info["folds"] == 3 and info["image_size"] == 32
    assert info["base_rates"]["mask"] == pytest.approx(labels[:, 0].mean())
    assert yaml.safe_load((run / "config.yaml").read_text())["image_size"] == 32
    preds = pd.read_csv(run / "val_predictions.csv")
    assert preds["distancing"].isna().sum() == 5 and np.allclose(preds["p_5k"], probs[:, 0] * probs[:, 1])
    saved = runs.load_metrics("r")
    assert saved.loc["5K", "f1"] == pytest.approx(table.loc["5K", "f1"]) and "f1_always_yes" in saved
    both = runs.compare_runs({"r": saved, "not made": None})
    assert list(both.columns.get_level_values(0).unique()) == ["r"]
    assert paths["metrics"] == project / "reports" / "r" / "metrics.csv"



def test_compare_settings_says_where_two_runs_are_not_alike(project):
    """Notebooks 03 and 04 print it beside their metrics: a progressive run that ends at another image size,
    trains other epochs or validates on other rows is not a like-for-like comparison, and the table says so."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, (12, 2)).astype("float32")
    probs = rng.uniform(size=(12, 2))
    table = evaluate(labels, probs)
    thresholds = {"mask": 0.5, "distancing": 0.5, "5k_mask": 0.5, "5k_distancing": 0.5, "f1_5K": 0.5}

    def save(name, size, epochs, ids):
        df = pd.DataFrame({"image_id": ids, "fname": [f"{i}.jpg" for i in ids]})
        history = pd.DataFrame({"epoch": np.arange(1, epochs + 1), "train_seconds": [1.5] * epochs})
        runs.save_run(Config(run_name=name, image_size=size), None, val_df=df, val_labels=labels, val_probs=probs,
                      thresholds=thresholds, metrics=table, train_labels=labels, history=history)

    ids = [str(i) for i in range(12)]
    save("fixed", 224, 3, ids)
    save("same", 224, 3, ids)
    save("progressive", 192, 6, ids[:-1] + ["other"])
    alike = runs.compare_settings(["fixed", "same", "not made"])
    assert list(alike.columns) == ["fixed", "same", "alike"]
    assert alike.drop(index="training seconds")["alike"].tolist() == [True] * 8
    assert alike.loc["training seconds", "fixed"] == 4.5
    assert runs.unlike_settings(alike) == "like for like in every setting listed"
    both = runs.compare_settings(["fixed", "progressive"])
    assert both.loc["image size at the end"].tolist() == [224, 192, False]
    assert both.loc["epochs trained"].tolist() == [3, 6, False]
    assert both.loc["validation rows as fixed's", "progressive"] == "no (11 shared)"
    assert both.loc["validation rows", "alike"] is True and both.loc["backbone", "alike"] is True
    assert runs.unlike_settings(both) == ("not like for like in: image size at the end, epochs trained, "
                                          "validation rows as fixed's")
    # what the comparison is about is shown, not counted against it
    design = runs.compare_settings(["fixed", "progressive"], by_design=("image size at the end",))
    assert runs.unlike_settings(design) == ("not like for like in: epochs trained, validation rows as fixed's; "
                                            "compared by design: image size at the end")
    # a run whose files do not record a setting (no history, no predictions): unknown, never "0 epochs"
    (project / "reports" / "same" / "history.csv").unlink()
    (project / "models" / "same" / "val_predictions.csv").unlink()
    partial = runs.compare_settings(["fixed", "same"])
    assert partial.loc["epochs trained"].tolist() == [3, "unknown", "unknown"]
    assert partial.loc["validation rows as fixed's"].tolist() == ["-", "unknown", "unknown"]
    assert runs.unlike_settings(partial) == (
        "like for like in every setting known; unknown (a run's files do not record it): "
        "epochs trained, validation rows, validation rows as fixed's")
    assert runs.compare_settings(["not made"]).empty
    assert runs.unlike_settings(runs.compare_settings(["not made"])) == "nothing to compare with: no run made yet"
    assert runs.unlike_settings(runs.compare_settings(["fixed"])) == "nothing to compare with: only fixed made"

def test_unreadable_training_images_are_listed_in_the_run_and_counted_on_its_line(project, monkeypatch):
    """A broken photo is skipped, not fatal; the run lists it (file and reason) and `fivek run`'s line
    for the notebook counts it, so a skip is not seen only inside the executed notebook. (Notebook 05's
    `kfold_data` lists them the same way.)"""
    import time

    from fivek_utils.workflows import runner

    monkeypatch.setattr(runner, "REPORTS_DIR", project / "reports")
    root = project / "data"
    synth.generate_dataset(root, n_train=24, n_test=0, seed=4, workers=1, progress=False)
    meta = pd.read_csv(root / "train" / "train_meta.csv", dtype=str)
    broken = root / "train" / "images" / meta["fname"].iloc[3]
    good = broken.read_bytes()
    broken.write_bytes(good[: len(good) // 3])  # truncated
    cfg = Config(data_dir=str(root), image_size=32, run_name="r")
    t0 = time.time()
    split = runs.holdout_data(cfg, progress=False)
    assert len(split.data) == 23 and list(split.data.skipped) == [broken.name]
    listed = pd.read_csv(project / "reports" / "r" / "skipped_images.csv")
    assert listed["fname"].tolist() == [broken.name] and broken.name in listed["why"].iloc[0]
    pd.DataFrame({"target": ["mask", "distancing", "5K"], "f1": [0.9, 0.8, 0.7], "f1_always_yes": [0.6, 0.6, 0.5],
                  "auc": [0.91, 0.81, 0.71]}).to_csv(project / "reports" / "r" / "metrics.csv", index=False)
    nb02 = next(n for n in runner.list_notebooks() if n.stem.startswith("02"))
    line = runner.notebook_result(nb02, {"run_name": "r"}, since=t0)
    assert line.endswith(f"; 1 unreadable training image(s) skipped, listed in {project / 'reports' / 'r' / 'skipped_images.csv'}")
    broken.write_bytes(good)
    assert len(runs.holdout_data(cfg, progress=False).data) == 24
    assert not (project / "reports" / "r" / "skipped_images.csv").exists()  # a later load that skips none
    assert "skipped" not in runner.notebook_result(nb02, {"run_name": "r"}, since=t0)
