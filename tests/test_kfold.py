"""k-fold runs: finished folds are resumed (and refused when other settings, rows, hold-out or TTA
made them), a failing fold is named, and the k-fold data and save steps notebook 05 calls."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fivek_utils.core.config import ConfigError


def _fold_data(n=8, size=32):
    from fivek_utils.modeling.training import TrainingData

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (n, 2)).astype("float32")
    df = pd.DataFrame({"image_id": np.arange(n), "fname": [f"{i}.jpg" for i in range(n)]})
    return TrainingData(df, rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), labels)


def _finish_fold(run_dir, k, rows, tta=2, hold_rows=0, **saved):
    """What a finished fold leaves behind: its model file and its predictions."""
    fold = run_dir / f"fold{k}"
    fold.mkdir(parents=True)
    (fold / "model.keras").write_bytes(b"")
    np.savez(fold / "predictions.npz", oof=np.full((len(rows), tta, 2), 0.25 + k / 2), holdout=np.zeros((tta, hold_rows, 2)),
             rows=rows, **saved)


def test_kfold_skips_finished_folds_and_names_the_failing_one(tmp_path):
    from fivek_utils.core.config import Config
    from fivek_utils.workflows.kfold import FoldError, run_kfold

    data, folds = _fold_data(), np.array([0, 1, 2] * 2 + [0, 1])
    cfg = Config(image_size=32, backbone="EfficientNetB99")  # any fold that really trains fails
    _finish_fold(tmp_path, 0, np.flatnonzero(folds == 0))
    with pytest.raises(FoldError, match=r"fold 1 \(of 3\) failed: .*EfficientNetB99"):
        run_kfold(cfg, data, folds, run_dir=tmp_path)

    _finish_fold(tmp_path, 1, np.flatnonzero(folds == 1))
    _finish_fold(tmp_path, 2, np.flatnonzero(folds == 2))
    result = run_kfold(cfg, data, folds, run_dir=tmp_path)  # nothing left to train
    assert np.allclose(result.oof[folds == 0], 0.25) and np.allclose(result.oof[folds == 2], 1.25)

    with pytest.raises(ConfigError, match="fold 0 of a run with other rows"):
        run_kfold(cfg, data, np.array([1, 0, 2] * 2 + [0, 1]), run_dir=tmp_path)  # other folds
    with pytest.raises(ConfigError, match="other rows, folds, hold-out or TTA"):
        run_kfold(cfg.replace(tta=["identity"]), data, folds, run_dir=tmp_path)


def test_kfold_refuses_finished_folds_whose_holdout_answers_are_for_other_photos(tmp_path):
    """A fold's saved hold-out answers are reused only for the same hold-out photos, not any of the same count."""
    from fivek_utils.core.config import Config
    from fivek_utils.modeling.training import TrainingData, ids_digest
    from fivek_utils.workflows.kfold import run_kfold

    data, folds = _fold_data(), np.array([0, 1, 2] * 2 + [0, 1])
    hold = _fold_data(n=3)
    for k in range(3):
        _finish_fold(tmp_path, k, np.flatnonzero(folds == k), hold_rows=3, holdout_ids=ids_digest(hold.df))
    cfg = Config(image_size=32)
    result = run_kfold(cfg, data, folds, holdout=hold, run_dir=tmp_path)  # the same photos: loaded, nothing trains
    assert result.holdout.shape[-2:] == (3, 2)
    other = TrainingData(hold.df.assign(image_id=[10, 11, 12]), hold.images, hold.labels)
    with pytest.raises(ConfigError, match="fold 0 of a run with other rows, folds, hold-out or TTA"):
        run_kfold(cfg, data, folds, holdout=other, run_dir=tmp_path)


def test_kfold_refuses_a_finished_fold_trained_with_other_settings(tmp_path):
    from fivek_utils.core.config import Config
    from fivek_utils.modeling.training import check_run_key
    from fivek_utils.workflows.kfold import run_kfold

    data, folds = _fold_data(), np.array([0, 1] * 4)
    cfg = Config(image_size=32, epochs_finetune=3)
    for k in (0, 1):
        _finish_fold(tmp_path, k, np.flatnonzero(folds == k))
        check_run_key(tmp_path / f"fold{k}", cfg, data.subset(np.flatnonzero(folds != k)), data.subset(np.flatnonzero(folds == k)),
                      recipe="two_phase")  # what training the fold wrote
    run_kfold(cfg, data, folds, run_dir=tmp_path)  # same settings: reused
    with pytest.raises(ConfigError, match=r"changed: \['epochs_finetune'\]"):
        run_kfold(cfg.replace(epochs_finetune=6), data, folds, run_dir=tmp_path)


def test_kfold_data_keeps_the_holdout_out_of_every_fold_and_saves_the_folds(tmp_path, monkeypatch):
    from fivek_utils.core.config import Config
    from fivek_utils.data import synth
    from fivek_utils.modeling import training
    from fivek_utils.workflows import kfold

    from fivek_utils.core import config

    monkeypatch.setattr(training, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(kfold, "PROCESSED_DATA_DIR", tmp_path / "processed")
    monkeypatch.setattr(config, "REPORTS_DIR", tmp_path / "reports")  # where a list of skipped images would go
    synth.generate_dataset(tmp_path / "data", n_train=60, n_test=0, seed=5, workers=1, progress=False)
    split = kfold.kfold_data(Config(data_dir=str(tmp_path / "data"), image_size=32, folds=3, seed=0), 0.2, progress=False)
    cv_ids, hold_ids = set(split.cv.df["image_id"]), set(split.holdout.df["image_id"])
    assert not cv_ids & hold_ids and len(cv_ids | hold_ids) == 60 and 9 <= len(hold_ids) <= 15
    assert sorted(set(split.folds)) == [0, 1, 2] and len(split.folds) == len(split.cv)
    saved = pd.read_csv(split.folds_file, dtype={"image_id": str})
    assert split.folds_file == tmp_path / "processed" / "folds.csv"
    assert set(saved.loc[saved["fold"] == -1, "image_id"]) == hold_ids
    assert str(split) == f"{len(cv_ids)} rows in 3 folds, {len(hold_ids)} hold-out rows"


@pytest.mark.slow
@pytest.mark.compat  # about 10 s: in make test and make test-compat, not test-fast
def test_save_kfold_writes_ensemble_json_once_and_the_one_graph(tmp_path, monkeypatch):
    import json

    from fivek_utils.core import config
    from fivek_utils.core.config import Config
    from fivek_utils.core.metrics import evaluate
    from fivek_utils.modeling.backbones import tiny_backbone
    from fivek_utils.modeling.inference import load_ensemble
    from fivek_utils.modeling.models import build_model
    from fivek_utils.workflows import kfold

    monkeypatch.setattr(config, "MODELS_DIR", tmp_path / "models")
    monkeypatch.setattr(config, "REPORTS_DIR", tmp_path / "reports")
    data, folds = _fold_data(10), np.array([0, 1] * 5)
    cfg = Config(run_name="05-kfold", image_size=32, folds=2, tta=["identity", "flip"])
    for k in (0, 1):
        (cfg.run_dir / f"fold{k}").mkdir(parents=True)
        build_model(tiny_backbone(seed=k), None).save(cfg.run_dir / f"fold{k}" / "model.keras")
    oof = np.random.default_rng(1).uniform(size=(10, 2, 2))
    result = kfold.KFoldResult(oof, folds, None, ["identity", "flip"], {}, {0: 1.0, 1: 2.0})
    split = kfold.KFoldData(data, data.subset(np.array([], int)), folds, tmp_path / "folds.csv")
    gains, thresholds = kfold.gain_table(result, data.labels)
    table = evaluate(data.labels, oof.mean(axis=1), thresholds["TTA"])
    paths = kfold.save_kfold(cfg, split, result, thresholds["TTA"], table, gains)
    info = json.loads((cfg.run_dir / "ensemble.json").read_text())
    assert info["tta"] == ["identity", "flip"] and info["folds"] == 2 and info["recipe"] == "two_phase"
    assert paths["ensemble_graph"] == cfg.run_dir / "ensemble.keras"
    assert len(pd.read_csv(paths["oof"])) == 10 and (tmp_path / "reports" / "05-kfold" / "gains.csv").exists()
    ens = load_ensemble(cfg.run_dir)
    assert ens.names == ["fold0", "fold1"] and ("identity", "flip") in ens.graphs
    # as notebook 06 and `fivek predict` meet it: a fresh interpreter that imports only the loader
    code = "import sys; from fivek_utils.modeling.inference import load_ensemble; print(load_ensemble(sys.argv[1]).names)"
    out = subprocess.run([sys.executable, "-c", code, str(cfg.run_dir)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "['fold0', 'fold1']", out.stderr[-2000:]


def test_hidden_labels_are_seeded_blank_in_labels_and_table_and_kept_aside():
    from fivek_utils.workflows.kfold import hide_labels

    data = _fold_data(40)
    data.df["mask"], data.df["distancing"] = data.labels[:, 0].astype(int), data.labels[:, 1].astype(int)
    data.labels[3, 1] = -1  # a blank the file already had
    hidden_data, hidden = hide_labels(data, 0.5, seed=3)
    rows = np.flatnonzero((hidden >= 0).any(axis=1))
    assert len(rows) in (19, 20) and (hidden_data.labels[rows] == -1).all()
    assert np.array_equal(hidden[rows], np.where(data.labels[rows] >= 0, data.labels[rows], -1))
    kept = np.setdiff1d(np.arange(40), rows)
    assert np.array_equal(hidden_data.labels[kept], data.labels[kept]) and (hidden[kept] == -1).all()
    assert hidden_data.df.loc[rows, "mask"].isna().all() and not hidden_data.df.loc[kept, "mask"].isna().any()
    assert np.array_equal(hide_labels(data, 0.5, seed=3)[1], hidden) and not np.array_equal(hide_labels(data, 0.5, seed=4)[1], hidden)
    assert data.labels[rows].min() >= -1 and (data.labels[rows] >= 0).any()  # the input is left as it was


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["two_phase", "progressive"])
def test_the_folds_share_one_model_and_each_trains_from_fresh_weights(tmp_path, monkeypatch, recipe):
    import keras

    from fivek_utils.core.config import Config
    from fivek_utils.modeling import progressive
    from fivek_utils.modeling.backbones import tiny_backbone
    from fivek_utils.modeling.models import build_model
    from fivek_utils.workflows import kfold

    built = []

    def tiny_fold_model(cfg, dropout):  # the fold model, at test size
        built.append(build_model(tiny_backbone(), None, dropout))
        return built[-1]

    monkeypatch.setattr(kfold, "fold_model", tiny_fold_model)
    data, folds = _fold_data(24, 40), np.array([0, 1] * 12)
    cfg = Config(image_size=40, batch_size=4, epochs_head=0, epochs_finetune=2, unfreeze_blocks=-1, tta=["identity"],
                 randaugment_magnitude=0, fold_recipe=recipe, progressive_preset="custom", progressive_stages=2,
                 progressive_epochs_per_stage=1, size_min=32, size_max=40, ra_min=0, ra_max=0, mixup_min=0, mixup_max=0,
                 dropout_min=0.1, dropout_max=0.2)
    trained = []  # (model object, whether it held its fold's freshly built weights when training began)

    def checked(train):
        def run(model, *args, **kwargs):
            fresh = built[-1].get_weights()
            trained.append((model, all(np.array_equal(a, b) for a, b in zip(model.get_weights(), fresh))))
            return train(model, *args, **kwargs)
        return run

    monkeypatch.setattr(kfold, "train_two_phase", checked(kfold.train_two_phase))
    monkeypatch.setattr(progressive, "train_progressive", checked(progressive.train_progressive))
    result = kfold.run_kfold(cfg, data, folds, run_dir=tmp_path)
    assert np.isfinite(result.oof).all() and len(built) == 2
    # fold 1 trained the fold-0 model object, starting from fold 1's own fresh weights, not fold 0's trained ones
    assert len(trained) == 2 and trained[1][0] is trained[0][0] and trained[0][1] and trained[1][1]
    w0 = keras.saving.load_model(tmp_path / "fold0" / "model.keras", compile=False).get_weights()
    w1 = keras.saving.load_model(tmp_path / "fold1" / "model.keras", compile=False).get_weights()
    assert not np.allclose(w0[0], w1[0])  # two models, not one saved twice


@pytest.mark.slow
def test_fold_labels_are_what_each_fold_trains_on_and_unlabelled_rows_train_nothing(tmp_path, monkeypatch, capsys):
    """Per-fold labels (a self-training student's): fold k trains on fold_labels[k] of its rows, and a row with
    no label there (both heads blank) is left out of that fold, said in its line; a wrong shape is refused."""
    from fivek_utils.core.config import Config
    from fivek_utils.modeling.backbones import tiny_backbone
    from fivek_utils.modeling.models import build_model
    from fivek_utils.workflows import kfold

    monkeypatch.setattr(kfold, "fold_model", lambda cfg, dropout: build_model(tiny_backbone(), None, dropout))
    seen = {}

    def recording(cfg, train, val, fold_dir, shared):
        seen[fold_dir.name] = (train.df["image_id"].tolist(), train.labels.copy())
        return train_one(cfg, train, val, fold_dir, shared)

    train_one = kfold._train_one
    monkeypatch.setattr(kfold, "_train_one", recording)
    data, folds = _fold_data(12, 32), np.array([0, 1] * 5 + [-1, -1])  # the last two train in both folds
    fold_labels = np.stack([data.labels, 1 - data.labels])
    fold_labels[0, 10] = -1  # row 10 has no label in fold 0
    cfg = Config(image_size=32, batch_size=4, epochs_head=0, epochs_finetune=1, unfreeze_blocks=-1, tta=["identity"],
                 randaugment_magnitude=0)
    with pytest.raises(ValueError, match="fold_labels has shape"):
        kfold.run_kfold(cfg, data, folds, run_dir=tmp_path, fold_labels=fold_labels[:1])
    kfold.run_kfold(cfg, data, folds, run_dir=tmp_path, fold_labels=fold_labels)
    ids0, labels0 = seen["fold0"]
    ids1, labels1 = seen["fold1"]
    assert ids0 == [1, 3, 5, 7, 9, 11] and ids1 == [0, 2, 4, 6, 8, 10, 11]
    assert np.array_equal(labels0, fold_labels[0, ids0]) and np.array_equal(labels1, fold_labels[1, ids1])
    assert "train 6 rows (1 without a label left out), validate 5 rows" in capsys.readouterr().out
