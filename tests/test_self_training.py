"""Self-training after notebook 05 end to end on a small synthetic set with tiny backbones: the teacher's
pseudo-labels fill only blanks and the test photos, the hold-out never trains, the student is a complete
run that prediction then answers with, and a re-run resumes it (refused when its teacher changed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fivek_utils.core import config
from fivek_utils.core.config import Config, ConfigError
from fivek_utils.core.metrics import evaluate
from fivek_utils.data.synth import generate_dataset
from fivek_utils.modeling.backbones import tiny_backbone
from fivek_utils.modeling.face_model import build_face_model
from fivek_utils.modeling.inference import load_ensemble
from fivek_utils.modeling.models import build_model

# two k-fold runs with face stages, about 30 s: one worker runs the module, so that both tests share the teacher
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("self_training")]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from fivek_utils.modeling import training
    from fivek_utils.workflows import face_kfold, faces, kfold, self_training, stacking

    root = tmp_path_factory.mktemp("st")
    mp = pytest.MonkeyPatch()
    mp.setattr(config, "MODELS_DIR", root / "models")
    mp.setattr(config, "REPORTS_DIR", root / "reports")
    for module in (training, face_kfold, self_training, stacking):
        mp.setattr(module, "CACHE_DIR", root / "cache")
    mp.setattr(kfold, "PROCESSED_DATA_DIR", root / "processed")
    mp.setattr(faces, "FACES_DIR", root / "faces")
    # tiny backbones instead of EfficientNets, so a fold trains in seconds (the notebook's code path otherwise)
    mp.setattr(kfold, "build_model", lambda b, w, d, **k: build_model(tiny_backbone(width=4, seed=0), None, d))
    mp.setattr(face_kfold, "build_face_model", lambda *a, **k: build_face_model(tiny_backbone(width=4, seed=0)))
    data = root / "data"
    generate_dataset(data, n_train=80, n_test=24, seed=4, profile="closeup", workers=1, progress=False)
    cfg = Config(data_dir=str(data), run_name="st", image_size=32, folds=2, seed=0, batch_size=8, epochs_head=0,
                 epochs_finetune=1, face_stage=True, face_detector="truth", face_crop_size=32, face_epochs=1,
                 face_batch_size=16, self_training_rounds=1, hidden_label_fraction=0.3,
                 faces_beside_images="off")  # a spawned face process would not see the tiny face model above
    split = kfold.kfold_data(cfg, 0.2, progress=False)
    result = kfold.run_kfold(cfg, split.cv, split.folds, split.holdout)
    found = face_kfold.face_data(cfg, split, progress=False)
    face_result = face_kfold.run_face_kfold(cfg, split, found)
    stack = stacking.stack_kfold(split, result, found, face_result)
    gains, _ = kfold.gain_table(result, split.cv.labels, split.holdout.labels)
    oof, thresholds = stack.oof["stack"], stack.thresholds["stack"]

    def save():
        stacking.save_kfold_with_stack(cfg, split, result, stack, found, face_result,
                                       evaluate(split.cv.labels, oof, thresholds), gains)

    save()
    yield cfg, split, found, self_training.teacher_of_run(cfg, oof, thresholds, stack.holdout["stack"]), save
    mp.undo()


def test_the_student_learns_from_blanks_and_test_photos_never_from_the_hold_out(teacher):
    from fivek_utils.workflows.self_training import PSEUDO_FILE, TeacherFolds, self_train

    cfg, split, found, model, _ = teacher
    result = self_train(cfg, split, model, found, progress=False)
    student = cfg.run_dir / "student1"
    assert result.last.run_dir == student and result.photos == 24
    for name in ("thresholds.json", "ensemble.json", "stack.json", "ensemble.keras", "fold0/face_model.keras",
                 "fold1/model.keras"):
        assert (student / name).exists(), name
    with np.load(student / PSEUDO_FILE) as z:
        labels = z["labels"]
    n = len(split.cv)
    assert labels.shape == (2, n + 24, 2)  # per fold: the cross-validated rows and every test photo; no hold-out row
    stated = split.cv.labels >= 0
    hidden = (split.hidden >= 0)
    for k in range(2):
        assert np.array_equal(labels[k, :n][stated], split.cv.labels[stated])  # a stated label stays
        theirs = hidden & (split.folds != k)[:, None]  # the hidden labels of the rows fold k trains on: soft labels
        assert theirs.any() and ((labels[k, :n][theirs] > 0) & (labels[k, :n][theirs] < 1)).all()
    # fold k's blanks and test photos carry teacher fold k's answers, which differ between folds
    answers = TeacherFolds.load(cfg.run_dir).answer(split.cv.images, found.cv, found.people_cv)
    for k in range(2):
        others = ~stated & (split.folds != k)[:, None]  # the blanks of the rows fold k trains on
        assert others.any() and np.allclose(labels[k, :n][others], answers[k][others], atol=1e-6)
        assert (labels[k, :n][~stated & (split.folds == k)[:, None]] == -1).all()  # its own rows' blanks stay blank
    assert not np.allclose(labels[0, n:], labels[1, n:])  # the test photos: each fold's own answers
    assert set(pd.read_csv(student / "oof.csv")["image_id"].astype(str)) == set(split.cv.df["image_id"].astype(str))
    assert not set(split.holdout.df["image_id"].astype(str)) & set(pd.read_csv(student / "oof.csv")["image_id"].astype(str))
    # measured: each model on the hold-out beside always-yes, pseudo-labels against the generator's truth
    assert list(result.holdout.index) == ["teacher", "student 1"]
    assert {"F1 5K", "always-yes F1 5K", "AUC mask"} <= set(result.holdout.columns)
    q = result.pseudo_labels.set_index(["set", "head"])
    # every (fold, row) label the folds train on: each test photo in both folds, each blank in the other fold
    assert q.loc[("test photos", "mask"), "n"] == 2 * 24 and q.loc[("test photos", "mask"), "kept_share"] == 1.0
    blank_mask = int((split.cv.labels[:, 0] < 0).sum())
    assert q.loc[("blank heads of training rows", "mask"), "n"] == blank_mask  # every blank's truth is known here
    for name in ("self_training.csv", "pseudo_labels.csv", "pseudo_label_confidence.csv"):
        assert (cfg.report_dir / name).exists()
    # prediction answers with the last student; the teacher on request
    assert load_ensemble(cfg.run_dir).source == student and load_ensemble(cfg.run_dir, student=False).source == cfg.run_dir


def test_a_rerun_resumes_the_student_and_a_changed_teacher_is_refused(teacher):
    from fivek_utils.workflows.self_training import self_train

    cfg, split, found, model, save = teacher
    student = cfg.run_dir / "student1"
    if not (student / "thresholds.json").exists():
        self_train(cfg, split, model, found, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in student.glob("fold*/*.keras")}
    again = self_train(cfg, split, model, found, progress=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and len(again.models) == 2  # nothing retrained
    with pytest.raises(ConfigError, match="other pseudo-labels"):  # hard labels where the student learned soft ones
        self_train(cfg.replace(pseudo_label_soft=False), split, model, found, progress=False)
    save()  # notebook 05's teacher saved again: its students are no longer named until self-training ends again
    assert load_ensemble(cfg.run_dir).source == cfg.run_dir
    with pytest.raises(ConfigError, match="self_training_rounds is 0"):
        self_train(cfg.replace(self_training_rounds=0), split, model, found, progress=False)


def test_each_fold_answers_with_its_own_models_only(teacher, tmp_path):
    """A student's fold k learns from teacher fold k alone: swapping fold 1's image and face models for fold
    0's changes fold 1's answers (now fold 0's) and leaves fold 0's as they were."""
    import shutil

    from fivek_utils.modeling.inference import ENSEMBLE_FILE
    from fivek_utils.workflows.face_kfold import FACE_MODEL
    from fivek_utils.workflows.self_training import TeacherFolds

    cfg, split, found, _, _ = teacher
    teacher_folds = TeacherFolds.load(cfg.run_dir)
    before = teacher_folds.answer(split.cv.images, found.cv, found.people_cv)
    copy = tmp_path / "teacher"
    shutil.copytree(cfg.run_dir, copy, ignore=shutil.ignore_patterns("student*", "self_training.json", ENSEMBLE_FILE))
    for name in ("model.keras", FACE_MODEL):
        shutil.copy(copy / "fold0" / name, copy / "fold1" / name)
    after = TeacherFolds.load(copy).answer(split.cv.images, found.cv, found.people_cv)
    assert before.shape == (2, len(split.cv), 2) and not np.allclose(before[0], before[1])
    assert np.allclose(after[0], before[0], atol=1e-5) and np.allclose(after[1], before[0], atol=1e-5)
    with pytest.raises(ConfigError, match="face crops"):  # a run with a face stage needs the photos' faces
        teacher_folds.answer(split.cv.images)
