"""Self-training in notebook 05 (Noisy Student, Xie et al., CVPR 2020): the run's ensemble, the teacher,
labels what the data leaves unlabelled, and a student, as large as the teacher and trained under noise,
learns from the labelled and the pseudo-labelled photos; the student then teaches the next round.

- **What gets pseudo-labelled**: the blank head of every cross-validated training row and every photo
  of the test splits present (public_test/, private_test/), once per fold: student fold k learns from
  teacher fold k's answers (its image model with the run's TTA, its face model, the run's stacker),
  and teacher fold k never trained on fold k's rows, so no label of fold k reaches student fold k
  through a pseudo-label (`TeacherFolds`; only fold k's choice of teacher fold k's best epoch and the
  shared stacker's few weights know of them). Soft labels (the probability
  itself) by default; `pseudo_label_min_confidence` keeps only labels with |2p - 1| at least that.
  A stated label is never replaced. The hold-out rows are never pseudo-labelled, trained on or used
  for a choice: they score teacher against student.
- **The student**: the teacher's recipe and folds with the noise of `student_*` (RandAugment, MixUp,
  dropout, stochastic depth; the face model: colour jitter besides its flips and shifts) and the
  teacher's backbone unless `student_backbone` names a larger one. The test photos join the training
  side of every fold and are never validated on; validation and the stack use the stated labels only.
  Its image folds and face folds train side by side (`FaceFoldsJob`: on a CPU machine the face folds
  in a process of their own); with the stack they are a complete run in `<run>/student<r>/`, resumed like the
  teacher's, and `fivek predict` / notebook 06 answer with the last student (`self_training.json`).
- **Measured**: per round, the pseudo-labels against the truth where it is known (the hidden labels
  of `hidden_label_fraction`, and on the synthetic data its `scenes.jsonl`), and every model on the
  hold-out, each F1 beside always-"yes" and each AUC beside 0.5.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..core.config import CACHE_DIR, Config, ConfigError
from ..core.io import atomic_path, atomic_write_csv, atomic_write_json
from ..core.labels import HEADS
from ..core.metrics import evaluate
from ..data.crops import FaceCrops, load_crops
from ..data.images import load_images
from ..data.people import PEOPLE_FEATURES, people_features
from ..data.pseudo_labels import accuracy_by_confidence, fill_blanks, pseudo_label_quality, truth_for
from ..data.scenes import read_scenes
from ..modeling.face_model import bag_probabilities, predict_faces
from ..modeling.inference import STUDENTS_FILE, check_tta, fold_files, load_keras_file, predict_tta
from ..modeling.stacker import stack_features
from ..modeling.training import TrainingData, ids_digest
from .face_kfold import FaceData, FaceFoldResult, FaceFoldsJob
from .faces import detect_split, detector_for
from .kfold import KFoldData, KFoldResult, gain_table, run_kfold, save_kfold, score_row, train_size
from .predict import read_test_folder
from .stacking import has_stack, load_stack, save_kfold_with_stack, stack_gain_table, stack_kfold

TEST_SPLITS = ("public_test", "private_test")
PSEUDO_FILE = "pseudo_labels.npz"


@dataclass
class RoundModel:
    """One model of a self-training run (the teacher, or a round's student) as notebook 05 saved it."""

    name: str  # "teacher", "student 1", ...
    run_dir: Path
    oof: np.ndarray  # (N, 2) its final out-of-fold probabilities of the cross-validated rows
    holdout: np.ndarray | None  # (H, 2) its final probabilities of the hold-out rows
    thresholds: dict


def teacher_of_run(cfg: Config, oof: np.ndarray, thresholds: dict, holdout: np.ndarray | None) -> RoundModel:
    """Notebook 05's run (saved in `cfg.run_dir`) as the first teacher: its final out-of-fold and hold-out
    probabilities (the stack's with the face stage) and thresholds."""
    return RoundModel("teacher", cfg.run_dir, np.asarray(oof, float), None if holdout is None else np.asarray(holdout, float),
                      thresholds)


@dataclass
class Unlabelled:
    """The test splits' photos, decoded at the fold models' size, with the truth where the data knows it."""

    data: TrainingData  # labels all blank (-1)
    split: np.ndarray  # (N,) the split each photo comes from
    truth: np.ndarray  # (N, 2) the synthetic generator's labels; -1 where unknown (real data)
    skipped: dict[str, str] = field(default_factory=dict)  # "split/fname" -> why it could not be read

    def __len__(self) -> int:
        return len(self.data)


def unlabelled_photos(cfg: Config, size: int, *, progress: bool = True) -> Unlabelled:
    """Every photo of the test splits under `cfg.data_path` (none: an empty set). Unreadable photos are
    counted, reported and left out of self-training (the submission still answers them)."""
    frames, images, splits, truths, skipped = [], [], [], [], {}
    for split in TEST_SPLITS:
        test_dir = cfg.data_path / split
        if not (test_dir / "images").is_dir():
            continue
        meta, _ = read_test_folder(test_dir)
        decoded = load_images(meta["path"].tolist(), size, cache_dir=CACHE_DIR, num_workers=cfg.num_workers,
                              progress=progress, desc=split, cache_max_gb=cfg.cache_max_gb)
        if decoded.errors:
            print(decoded.report(f"{split} photos (left out of self-training)"))
            skipped.update({f"{split}/{meta['fname'].iloc[i]}": m for i, m in decoded.errors.items()})
        keep = np.flatnonzero(decoded.ok)
        meta = meta.iloc[keep].reset_index(drop=True)
        frames.append(meta)
        images.append(decoded.images[keep])
        splits += [split] * len(meta)
        truths.append(truth_for(meta["image_id"], read_scenes(cfg.data_path, split)))
    if not frames:
        return Unlabelled(TrainingData(pd.DataFrame(columns=["image_id", "fname", "path"]),
                                       np.zeros((0, size, size, 3), np.uint8), np.zeros((0, 2), "float32")),
                          np.array([], dtype=object), np.zeros((0, 2), "float32"))
    df = pd.concat(frames, ignore_index=True)
    return Unlabelled(TrainingData(df, np.concatenate(images), np.full((len(df), len(HEADS)), -1.0, "float32")),
                      np.array(splits, dtype=object), np.concatenate(truths), skipped)


def blank_truth(cfg: Config, split: KFoldData) -> np.ndarray:
    """(N, 2) the truth behind each cross-validated row's blank heads where it is known: the labels
    `hidden_label_fraction` hid, and on synthetic data its scenes.jsonl; -1 elsewhere."""
    blank = split.cv.labels < 0
    truth = np.where(blank, truth_for(split.cv.df["image_id"], read_scenes(cfg.data_path, "train")), -1.0)
    if split.hidden is not None:
        truth = np.where(split.hidden >= 0, split.hidden, truth)
    return truth.astype("float32")


@dataclass
class TeacherFolds:
    """A saved run's fold models, loaded once, to answer as each fold alone: fold k's image model (with the
    run's TTA) and, with a face stage, fold k's face model and the run's stacker."""

    image_models: list  # fold order, from fold*/model.keras
    face_models: list | None
    stacker: object | None
    tta: list
    image_size: int
    source: Path

    @classmethod
    def load(cls, run_dir: str | Path) -> "TeacherFolds":
        run_dir = Path(run_dir)
        paths = fold_files(run_dir, "model.keras")
        if not paths:
            raise ConfigError(f"{run_dir} has no fold models (fold*/model.keras): self-training follows notebook 05's "
                              "k-fold run")
        info = json.loads((run_dir / "ensemble.json").read_text())  # the TTA and image size the run was tuned with
        bundle = load_stack(run_dir) if has_stack(run_dir) else None
        if bundle is not None and len(bundle.face_models) != len(paths):
            raise ConfigError(f"{run_dir} holds {len(paths)} fold image model(s) and {len(bundle.face_models)} fold "
                              "face model(s): re-run notebook 05")
        return cls([load_keras_file(p) for p in paths], None if bundle is None else bundle.face_models,
                   None if bundle is None else bundle.stacker, check_tta(info["tta"]), int(info["image_size"]), run_dir)

    def __len__(self) -> int:
        return len(self.image_models)

    def answer(self, images: np.ndarray, faces: FaceCrops | None = None, people: pd.DataFrame | None = None, *,
               ask: np.ndarray | None = None, batch_size: int = 64) -> np.ndarray:
        """(K, N, 2) each fold's own answers for the images (NaN where `ask`, (K, N) bool, is False: the rows a
        fold needs no label for). A student's fold k learns from teacher fold k's answers only, and teacher
        fold k never trained on fold k's rows."""
        if self.face_models is not None and (faces is None or people is None):
            raise ConfigError(f"{self.source} has a face stage: its answers need the photos' face crops and people features")
        if len(images) and self.image_size != images.shape[1]:
            raise ConfigError(f"{self.source} answers {self.image_size} px images, the photos were decoded at "
                              f"{images.shape[1]} px")
        ask = np.ones((len(self), len(images)), bool) if ask is None else np.asarray(ask, bool)
        out = np.full((len(self), len(images), len(HEADS)), np.nan)
        for k, model in enumerate(self.image_models):
            rows = np.flatnonzero(ask[k])
            if not len(rows):
                continue
            probs = predict_tta(model, images[rows], self.tta, batch_size).mean(axis=0)
            if self.face_models is not None:
                part = faces.subset(rows)
                bags = bag_probabilities(predict_faces(self.face_models[k], part.crops), part.counts)
                probs = self.stacker.predict(stack_features(probs, bags, people.iloc[rows].reset_index(drop=True)), probs)
            out[k, rows] = probs
        return out


def photo_faces(cfg: Config, photos: Unlabelled, *, progress: bool = True) -> tuple[FaceCrops, pd.DataFrame]:
    """The face crops and people features of the photos, found and cut with the run's detector and crop
    settings (cached)."""
    crops = FaceCrops(np.zeros((0, cfg.face_crop_size, cfg.face_crop_size, 3), np.uint8), np.zeros(0, int), np.zeros(0, int))
    people = [pd.DataFrame(columns=list(PEOPLE_FEATURES), dtype=float)]
    for split in dict.fromkeys(photos.split):
        df = photos.data.df.iloc[np.flatnonzero(photos.split == split)]
        paths, fnames = df["path"].tolist(), df["fname"].tolist()
        found = detect_split(paths, fnames, detector_for(cfg, cfg.data_path, split), split, progress=progress)
        crops = crops.concat(load_crops(paths, fnames, found.detections, cfg.face_crop_size, detections_key=found.key,
                                        margin=cfg.face_margin, max_faces=cfg.face_max_per_image, cache_dir=CACHE_DIR,
                                        progress=progress, cache_max_gb=cfg.cache_max_gb))
        people.append(people_features(found.detections, fnames))
    return crops, pd.concat(people, ignore_index=True)


def trained_pairs(answers: np.ndarray, labels: np.ndarray, truth: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, ...]:
    """The (fold, row) pairs a student trains on, pooled: fold k's answers, stated labels and truth of the rows
    that train in fold k (a cross-validated row of fold j in every fold but j; a test photo, fold -1, in
    every fold), stacked, to score the pseudo-labels as the student's folds learn them."""
    pairs = [np.flatnonzero(np.asarray(folds) != k) for k in range(len(answers))]
    return (np.concatenate([answers[k, r] for k, r in enumerate(pairs)]),
            np.concatenate([labels[r] for r in pairs]), np.concatenate([truth[r] for r in pairs]))


def student_config(cfg: Config, round_no: int) -> Config:
    """The round's student: the teacher's settings with the student's noise, saved in `<run>/student<r>/`."""
    return cfg.replace(run_name=f"{cfg.run_name}/student{round_no}", backbone=cfg.student_backbone or cfg.backbone,
                       randaugment_magnitude=cfg.student_randaugment_magnitude, mixup_alpha=cfg.student_mixup_alpha,
                       dropout=cfg.student_dropout, drop_connect_rate=cfg.student_drop_connect_rate,
                       face_color_jitter=cfg.student_face_color_jitter)


def check_pseudo_labels(run_dir: Path, df: pd.DataFrame, labels: np.ndarray) -> None:
    """A student folder trains on one set of pseudo-labels: the first call writes them, a later one (a resumed
    run) must bring the same, or the teacher changed and the student's finished folds are stale."""
    path = Path(run_dir) / PSEUDO_FILE
    digest = ids_digest(df)
    if path.exists():
        with np.load(path) as z:
            if z["labels"].ndim != labels.ndim:
                raise ConfigError(f"{run_dir} holds a student an earlier kit trained, on the whole teacher's pseudo-labels "
                                  "(now each fold learns from its own teacher fold): delete that folder to train it afresh")
            same = str(z["ids"]) == digest and z["labels"].shape == labels.shape and np.allclose(
                z["labels"], labels, atol=1e-4)
        if not same:
            raise ConfigError(f"{run_dir} holds a student trained on other pseudo-labels (its teacher changed since): "
                              "delete that folder to train the student afresh")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, ids=np.array(digest), labels=labels)


def _scoped(scope: Callable | None):
    return scope() if scope is not None else contextlib.nullcontext()


def train_student(scfg: Config, split: KFoldData, faces: FaceData | None, cv_labels: np.ndarray, photos: Unlabelled,
                  photo_labels: np.ndarray, crops: FaceCrops | None, name: str, *, scope: Callable | None = None) -> RoundModel:
    """Train, stack, save and return one student: the cross-validated rows with their blanks filled, plus the
    pseudo-labelled photos on the training side of every fold. `cv_labels` (K, N, 2) and `photo_labels`
    (K, P, 2) are the labels fold k trains on (teacher fold k's pseudo-labels in the blanks)."""
    use = np.flatnonzero((photo_labels >= 0).any(axis=(0, 2)))
    n = len(split.cv)
    fold_labels = np.concatenate([cv_labels, photo_labels[:, use]], axis=1).astype("float32")
    visible = np.concatenate([split.cv.labels, np.full((len(use), 2), -1.0, "float32")])  # what validation scores
    data = TrainingData(pd.concat([split.cv.df, photos.data.df.iloc[use]], ignore_index=True),
                        np.concatenate([split.cv.images, photos.data.images[use]]), visible)
    folds = np.concatenate([split.folds, np.full(len(use), -1)])
    check_pseudo_labels(scfg.run_dir, data.df, fold_labels)
    holdout = split.holdout if len(split.holdout) else None
    filled = int(((cv_labels >= 0) & (split.cv.labels < 0)).any(axis=(0, 2)).sum())
    print(f"{name}: {len(data)} training photos ({n} cross-validated, {filled} of them with pseudo-labelled heads, and "
          f"{len(use)} pseudo-labelled test photos) in {int(split.folds.max()) + 1} folds, each fold labelled by its "
          "teacher fold", flush=True)
    student_split = KFoldData(data, split.holdout, folds, split.folds_file)
    student_faces = None if faces is None else FaceData(
        faces.detections, faces.key, faces.cv.concat(crops.subset(use)), faces.holdout, faces.people_cv, faces.people_holdout)
    with FaceFoldsJob(scfg, student_split, student_faces, val_labels=visible[:, 0],
                      fold_labels=fold_labels[:, :, 0]) as faces_job:  # beside, on a CPU
        with _scoped(scope):
            full = run_kfold(scfg, data, folds, holdout, val_labels=visible, fold_labels=fold_labels)
    face_full = faces_job.result()
    result = KFoldResult(full.oof[:n], split.folds, full.holdout, full.tta, full.histories, full.seconds)
    hold_labels = split.holdout.labels if holdout is not None else None
    gains, variants = gain_table(result, split.cv.labels, hold_labels)
    if faces is None:
        probs, thresholds = result.oof.mean(axis=1), variants["TTA" if len(result.tta) > 1 else "no TTA"]
        hold = result.holdout.mean(axis=(0, 1)) if result.holdout is not None else None
        save_kfold(scfg, split, result, thresholds, evaluate(split.cv.labels, probs, thresholds), gains)
        return RoundModel(name, scfg.run_dir, probs, hold, thresholds)
    n_crops = int(faces.cv.counts.sum())
    face_result = FaceFoldResult(face_full.oof[:n], face_full.oof_crops[:n_crops], face_full.holdout_crops,
                                 face_full.holdout_counts, face_full.histories, face_full.seconds)
    stack = stack_kfold(split, result, faces, face_result)
    gains = pd.concat([gains, stack_gain_table(split, stack)])
    probs, thresholds = stack.oof["stack"], stack.thresholds["stack"]
    save_kfold_with_stack(scfg, split, result, stack, faces, face_result, evaluate(split.cv.labels, probs, thresholds), gains)
    return RoundModel(name, scfg.run_dir, probs, stack.holdout["stack"] if stack.holdout else None, thresholds)


@dataclass
class SelfTrainingResult:
    """Every model of the run, how each scored on the hold-out, and how good each round's pseudo-labels were."""

    models: list[RoundModel]
    holdout: pd.DataFrame  # one row per model: F1 beside always-yes, AUC (chance 0.5), per target
    pseudo_labels: pd.DataFrame  # per round, set and head: kept share, accuracy, F1, AUC, Brier, ECE
    by_confidence: pd.DataFrame  # per round, set, head and confidence level: kept share and accuracy
    photos: int  # test photos available to pseudo-label

    @property
    def last(self) -> RoundModel:
        return self.models[-1]


def self_train(cfg: Config, split: KFoldData, teacher: RoundModel, faces: FaceData | None = None, *,
               scope: Callable | None = None, progress: bool = True) -> SelfTrainingResult:
    """`cfg.self_training_rounds` rounds of teacher -> student after notebook 05's run (`teacher`, saved in
    `cfg.run_dir`); finished students are resumed. Writes `self_training.json` in the teacher's folder (so
    prediction answers with the last student) and the tables to reports/<run_name>/."""
    if cfg.self_training_rounds < 1:
        raise ConfigError("self_training_rounds is 0: self-training is off")
    if cfg.face_stage and faces is None:
        raise ConfigError("the run has a face stage: pass its FaceData (notebook 05's `faces`) to self_train")
    photos = unlabelled_photos(cfg, train_size(cfg), progress=progress)
    print(f"self-training: {len(photos)} unlabelled test photo(s)"
          + (f" ({len(photos.skipped)} unreadable, left out)" if photos.skipped else "")
          + f", {int((split.cv.labels < 0).sum())} blank heads among {len(split.cv)} cross-validated rows")
    crops, people = photo_faces(cfg, photos, progress=progress) if faces is not None else (None, None)
    truth = blank_truth(cfg, split)
    models, quality, curves = [teacher], [], []
    rule = dict(min_confidence=cfg.pseudo_label_min_confidence, soft=cfg.pseudo_label_soft)
    for r in range(1, cfg.self_training_rounds + 1):
        t = models[-1]
        print(f"--- self-training round {r}/{cfg.self_training_rounds}: {t.name} labels, student {r} learns ---", flush=True)
        teacher_folds = TeacherFolds.load(t.run_dir)
        n_folds = int(split.folds.max()) + 1
        if len(teacher_folds) != n_folds:
            raise ConfigError(f"{t.run_dir} holds {len(teacher_folds)} fold models for {n_folds} folds")
        # fold k labels the blanks of the rows it trains on (not its own fold's) and every test photo
        ask = (split.folds[None, :] != np.arange(n_folds)[:, None]) & (split.cv.labels < 0).any(axis=1)
        cv_answers = teacher_folds.answer(split.cv.images, None if faces is None else faces.cv,
                                          None if faces is None else faces.people_cv, ask=ask, batch_size=cfg.batch_size * 2)
        photo_answers = teacher_folds.answer(photos.data.images, crops, people, batch_size=cfg.batch_size * 2)
        del teacher_folds
        cv_labels = np.stack([fill_blanks(split.cv.labels, a, **rule)[0] for a in cv_answers])
        photo_labels = np.stack([fill_blanks(photos.data.labels, a, **rule)[0] for a in photo_answers])
        # measured: every (fold, row) label the student's folds train on, against the truth where it is known
        for where, answers, labels, known, folds in (
                ("blank heads of training rows", cv_answers, split.cv.labels, truth, split.folds),
                ("test photos", photo_answers, photos.data.labels, photos.truth, np.full(len(photos), -1))):
            probs, stated, truth_k = trained_pairs(answers, labels, known, folds)
            q = pseudo_label_quality(probs, truth_k, fill_blanks(stated, probs, **rule)[1])
            quality.append(q.assign(round=r, teacher=t.name, set=where).reset_index(names="head"))
            curves.append(accuracy_by_confidence(probs, truth_k).assign(round=r, teacher=t.name, set=where))
        models.append(train_student(student_config(cfg, r), split, faces, cv_labels, photos, photo_labels, crops,
                                    f"student {r}", scope=scope))
    hold = pd.DataFrame({m.name: score_row(split.holdout.labels, m.holdout, m.thresholds) for m in models
                         if m.holdout is not None and len(split.holdout)}).T
    result = SelfTrainingResult(models, hold, pd.concat(quality, ignore_index=True), pd.concat(curves, ignore_index=True),
                                len(photos))
    save_self_training(cfg, result)
    return result


def save_self_training(cfg: Config, result: SelfTrainingResult) -> dict[str, Path]:
    """The tables to reports/<run_name>/ and `self_training.json` (the students, the last first to answer)
    into the teacher's run folder."""
    paths = {
        "holdout": atomic_write_csv(cfg.report_dir / "self_training.csv", result.holdout.reset_index(names="model")),
        "pseudo_labels": atomic_write_csv(cfg.report_dir / "pseudo_labels.csv", result.pseudo_labels),
        "by_confidence": atomic_write_csv(cfg.report_dir / "pseudo_label_confidence.csv", result.by_confidence),
    }
    students = [m.run_dir.name for m in result.models[1:]]
    paths["students"] = atomic_write_json(cfg.run_dir / STUDENTS_FILE, {
        "last": students[-1], "students": students, "teacher": str(cfg.run_dir),
        "pseudo_label_min_confidence": cfg.pseudo_label_min_confidence, "pseudo_label_soft": cfg.pseudo_label_soft,
        "holdout": result.holdout.reset_index(names="model").to_dict("records"),
    })
    return paths


def plot_self_training(result: SelfTrainingResult, name: str | None = None, title: str = ""):
    """Left: every model on the hold-out (mask and distancing AUC beside chance, 5K F1 beside always-yes).
    Right: the first round's pseudo-labels, accuracy against the share kept as the confidence rule tightens
    (heads whose known truth holds both classes: on the real development set distancing is 1 everywhere)."""
    import matplotlib.pyplot as plt

    from ..core.plots import save_figure

    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 3.8))
    metrics = [("AUC mask", "mask AUC"), ("AUC distancing", "distancing AUC"), ("F1 5K", "5K F1")]
    x, width = np.arange(len(metrics)), 0.8 / max(len(result.holdout), 1)
    colours = plt.get_cmap("viridis")(np.linspace(0.15, 0.85, max(len(result.holdout), 1)))
    for k, (model, row) in enumerate(result.holdout.iterrows()):
        left.bar(x + (k - (len(result.holdout) - 1) / 2) * width, [float(row[m]) for m, _ in metrics], width,
                 label=model, color=colours[k])
    if len(result.holdout):
        left.hlines(0.5, -0.45, 1.45, colors="grey", linestyles="-.", lw=0.8, label="AUC chance")
        left.hlines(float(result.holdout["always-yes F1 5K"].iloc[0]), 1.55, 2.45, colors="black", linestyles=":",
                    lw=1.2, label="5K F1 always-yes")
    left.set_xticks(x, [label for _, label in metrics])
    left.set_ylim(0, 1.05)
    left.set_title("hold-out: teacher and students")
    left.legend(fontsize=7, loc="lower left")
    first = result.by_confidence[result.by_confidence["round"] == 1]
    q = result.pseudo_labels[result.pseudo_labels["round"] == 1].set_index(["set", "head"])
    for (where, head), part in first.groupby(["set", "head"], sort=False):
        if part["accuracy"].notna().any() and np.isfinite(q.loc[(where, head), "auc"]):  # both classes in the truth
            right.plot(part["kept_share"], part["accuracy"], marker="o", label=f"{head}, {where}")
            for _, row in part.iterrows():
                right.annotate(f"{row['min_confidence']:.1f}", (row["kept_share"], row["accuracy"]), fontsize=6,
                               textcoords="offset points", xytext=(3, 3))
    right.set_xlabel("share of the blanks pseudo-labelled (labels at |2p-1| >= level, level marked)")
    right.set_ylabel("accuracy where the truth is known")
    right.set_title("round 1 pseudo-labels")
    right.legend(fontsize=7, loc="lower left")
    fig.suptitle(title or "self-training")
    fig.tight_layout()
    save_figure(fig, name)
    return fig
