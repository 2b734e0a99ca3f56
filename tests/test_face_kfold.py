"""Notebook 05's face stage end to end on a small synthetic set: the faces found and cropped once, a
face model per fold (resumed, not retrained, on a second run; refused, naming the face files, when a
face setting changed), and the stack fitted on out-of-fold rows only, never on the hold-out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fivek_utils.core.config import Config, ConfigError
from fivek_utils.data.synth import generate_dataset
from fivek_utils.modeling.backbones import tiny_backbone
from fivek_utils.modeling.face_model import build_face_model
from fivek_utils.workflows import face_kfold, faces, kfold
from fivek_utils.workflows.kfold import KFoldResult
from fivek_utils.workflows.stacking import stack_gain_table, stack_kfold


def _tiny_face_models():
    """Run first in FaceFoldsJob's child process: the fixture's monkeypatch does not reach a spawned process."""
    face_kfold.build_face_model = lambda *a, **k: build_face_model(tiny_backbone(width=4, seed=0))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fk")
    data = root / "closeup"
    generate_dataset(data, n_train=60, n_test=0, seed=4, profile="closeup", workers=1, progress=False)
    mp = pytest.MonkeyPatch()
    from fivek_utils.modeling import training

    from fivek_utils.core import config

    mp.setattr(training, "CACHE_DIR", root / "cache")
    mp.setattr(kfold, "PROCESSED_DATA_DIR", root / "processed")
    mp.setattr(config, "REPORTS_DIR", root / "reports")
    mp.setattr(face_kfold, "CACHE_DIR", root / "cache")
    mp.setattr(faces, "FACES_DIR", root / "faces")
    # a tiny backbone instead of an EfficientNet, so a fold trains in seconds (the notebook's code path otherwise)
    mp.setattr(face_kfold, "build_face_model", lambda *a, **k: build_face_model(tiny_backbone(width=4, seed=0)))
    cfg = Config(data_dir=str(data), run_name="fk", image_size=32, folds=2, seed=0, face_stage=True,
                 face_detector="truth", face_crop_size=32, face_epochs=1, face_batch_size=16)
    split = kfold.kfold_data(cfg, 0.2, progress=False)
    found = face_kfold.face_data(cfg, split, progress=False)
    yield cfg, split, found, root
    mp.undo()


def test_a_face_model_per_fold_then_resumed_not_retrained(setup):
    cfg, split, found, root = setup
    run = root / "run"
    first = face_kfold.run_face_kfold(cfg, split, found, run)
    assert sorted(p.parent.name for p in run.glob("fold*/face_model.keras")) == ["fold0", "fold1"]
    assert np.isfinite(first.oof).all() and first.holdout.shape == (len(split.holdout),)  # a face in every photo
    assert first.holdout_crops.shape == (2, int(found.holdout.counts.sum()))
    stamps = {p: p.stat().st_mtime_ns for p in run.glob("fold*/face_model.keras")}
    again = face_kfold.run_face_kfold(cfg, split, found, run)
    assert np.array_equal(again.oof, first.oof) and np.array_equal(again.holdout, first.holdout)
    assert again.seconds == {} and {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    with pytest.raises(ConfigError, match="face_epochs.*face_model.keras, face_predictions.npz, face_run_key.json"):
        face_kfold.run_face_kfold(cfg.replace(face_epochs=2), split, found, run)


@pytest.mark.slow  # a spawned process imports TensorFlow: about 15 s
def test_beside_the_face_folds_train_in_their_own_process_and_answer_as_here(setup, capsys):
    cfg, split, found, root = setup
    here = face_kfold.run_face_kfold(cfg, split, found, root / "here")
    with face_kfold.FaceFoldsJob(cfg, split, found, root / "beside", beside=True, setup=_tiny_face_models) as job:
        assert job.beside
        while_it_runs = face_kfold.face_data(cfg, split, progress=False)  # this process goes on meanwhile
    beside = job.result()
    assert while_it_runs.cv.counts.sum() == found.cv.counts.sum()
    out = capsys.readouterr().out
    assert "training in a process of their own" in out and "faces | --- fold 2/2: face model on" in out
    assert sorted(p.parent.name for p in (root / "beside").glob("fold*/face_model.keras")) == ["fold0", "fold1"]
    assert np.allclose(beside.oof, here.oof, atol=1e-5) and np.allclose(beside.holdout, here.holdout, atol=1e-5)
    assert set(beside.seconds) == {0, 1}
    # the lent lock went back: this process (and any other) may write the folder again
    again = face_kfold.FaceFoldsJob(cfg, split, found, root / "beside", beside=False).result()
    assert again.seconds == {} and np.array_equal(again.oof, beside.oof)  # resumed from what the child saved


@pytest.mark.slow
def test_a_face_fold_error_beside_comes_back_as_itself(setup):
    cfg, split, found, root = setup
    face_kfold.run_face_kfold(cfg, split, found, root / "changed")
    job = face_kfold.FaceFoldsJob(cfg.replace(face_epochs=2), split, found, root / "changed", beside=True,
                                  setup=_tiny_face_models)
    with pytest.raises(ConfigError, match="face_epochs.*face_model.keras, face_predictions.npz, face_run_key.json"):
        job.result()


def test_without_a_face_stage_the_job_does_nothing(setup):
    cfg, split, _, root = setup
    job = face_kfold.FaceFoldsJob(cfg, split, None, root / "none", beside=True)
    assert not job.beside and job.result() is None and not (root / "none").exists()


def test_faces_beside_images_reads_yaml_on_and_off():
    assert Config(faces_beside_images=False).faces_beside_images == "off"  # YAML's bare `off`
    assert face_kfold.trains_beside(Config(faces_beside_images=True)) is True
    assert face_kfold.trains_beside(Config(faces_beside_images="off")) is False
    with pytest.raises(ConfigError, match="faces_beside_images='sometimes'"):
        Config(faces_beside_images="sometimes")


def test_the_hold_out_is_the_fold_ensemble_averaged_per_face(setup):
    cfg, split, found, root = setup
    result = face_kfold.run_face_kfold(cfg, split, found, root / "run")
    per_face = result.holdout_crops.mean(axis=0)
    owner = np.repeat(np.arange(len(found.holdout.counts)), found.holdout.counts)
    expected = np.array([per_face[owner == i].prod() for i in range(len(found.holdout.counts))])
    assert np.allclose(result.holdout, expected)


@pytest.mark.slow
@pytest.mark.compat  # about 10 s: in make test and make test-compat, not test-fast
def test_the_stack_never_sees_the_hold_out(setup):
    cfg, split, found, root = setup
    face_result = face_kfold.run_face_kfold(cfg, split, found, root / "run")
    rng = np.random.default_rng(0)
    n, h = len(split.cv), len(split.holdout)  # image models' answers: random, the stack must still run
    image = KFoldResult(rng.uniform(0.2, 0.8, (n, 2, 2)), split.folds, rng.uniform(0.2, 0.8, (2, 2, h, 2)),
                        ["identity", "flip"], {}, {})
    stack = stack_kfold(split, image, found, face_result)
    hold_ids = set(split.holdout.df["image_id"].astype(str))
    assert stack.stacker.fitted_ids and not stack.stacker.fitted_ids & hold_ids
    assert stack.stacker.fitted_ids <= set(split.cv.df["image_id"].astype(str))
    table = stack_gain_table(split, stack)
    assert {"OOF: stack", "hold-out: stack", "hold-out: face model", "hold-out: image model"} <= set(table.index)
    assert table.loc["hold-out: stack", ["AUC mask", "always-yes F1 5K"]].notna().all()


def test_photos_that_cannot_be_looked_at_are_counted_and_named(setup):
    cfg, split, found, root = setup
    df = pd.concat([split.cv.df, split.holdout.df], ignore_index=True)
    broken = df["path"].iloc[0]
    saved = open(broken, "rb").read()
    try:
        open(broken, "wb").write(b"not a jpeg")
        again = face_kfold.face_data(cfg, split, progress=False)
        assert df["fname"].iloc[0] in again.problems() and "could not be looked at" in str(again)
        assert again.cv.counts[0] == 0
    finally:
        open(broken, "wb").write(saved)
