"""Does the kit learn? Its own training path, end to end, on an easy synthetic set, against a
shuffled-label control that must stay at chance.

The path is the one the notebooks call: `load_training_data` (decoding, letterbox, cache),
`holdout_split`, `build_model` (two heads), `train_two_phase` (tf.data with flips, RandAugment
and MixUp, the masked loss with blank labels present, best checkpoint), `predict_probs` on
images decoded in meta order, `tune_thresholds` and `evaluate`. Only the backbone is small
(tests/conftest.py), so that two trainings fit in well under a minute on 2 cores; the demo
(`make demo`) shows the EfficientNets learning.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conftest import write_portrait_dataset
from fivek_utils.core.config import Config
from fivek_utils.core.metrics import evaluate, tune_thresholds
from fivek_utils.data.folds import holdout_split
from fivek_utils.data.images import load_images
from fivek_utils.modeling import training
from fivek_utils.modeling.backbones import tiny_backbone
from fivek_utils.modeling.models import build_model

N_IMAGES = 600
EPOCHS = 16


def train_and_score(root, tmp_path, monkeypatch, relabel=None) -> dict:
    """Train on `root` through the notebooks' functions; validation metrics of the mask head. `relabel`
    replaces the training rows' labels (validation keeps the stated ones)."""
    monkeypatch.setattr(training, "CACHE_DIR", tmp_path / "cache")
    cfg = Config(data_dir=str(root), run_name="learn", image_size=48, batch_size=32, val_fraction=0.25, seed=0,
                 epochs_head=0, epochs_finetune=EPOCHS, lr_finetune=3e-3, unfreeze_blocks=-1, dropout=0.1,
                 randaugment_magnitude=2.0, mixup_alpha=0.1, early_stopping_patience=EPOCHS)
    keras.utils.set_random_seed(cfg.seed)
    data = training.load_training_data(cfg, progress=False)
    assert len(data) == N_IMAGES and not data.skipped
    assert (data.labels < 0).any(axis=0).all()  # blanks present in both heads
    train_rows, val_rows = holdout_split(data.df, cfg.val_fraction, cfg.seed)
    train, val = data.subset(train_rows), data.subset(val_rows)
    if relabel is not None:
        train.labels = relabel(train.labels)
    model = build_model(tiny_backbone(), None, cfg.dropout)
    training.train_two_phase(model, train, val, cfg, run_dir=tmp_path / "run")
    # predict as notebook 06 does: images decoded afresh, in the order of the meta rows
    fresh = load_images(val.df["path"].tolist(), cfg.image_size, progress=False)
    probs = training.predict_probs(model, fresh.images, 64)
    table = evaluate(val.labels, probs, tune_thresholds(val.labels, probs))
    return table.loc["mask"].to_dict()


@pytest.mark.slow
def test_the_training_path_learns_the_mask(tmp_path, monkeypatch):
    root = write_portrait_dataset(tmp_path / "data", N_IMAGES, seed=0)
    mask = train_and_score(root, tmp_path, monkeypatch)
    # measured over dataset seeds 0-2: AUC 0.89-0.96, F1 0.19-0.27 above always-"yes"
    assert mask["auc"] >= 0.85, mask
    assert mask["f1"] >= mask["f1_always_yes"] + 0.1, mask


@pytest.mark.slow
def test_with_shuffled_labels_it_stays_at_chance(tmp_path, monkeypatch):
    root = write_portrait_dataset(tmp_path / "data", N_IMAGES, seed=0, shuffle_labels=True)
    mask = train_and_score(root, tmp_path, monkeypatch)
    assert 0.3 <= mask["auc"] <= 0.7, mask


@pytest.mark.slow
def test_it_learns_from_soft_pseudo_labels_alone(tmp_path, monkeypatch):
    """Self-training's path: every training label blank, then filled from a teacher's probabilities (soft,
    0.75 / 0.25, and a fifth of them wrong) by `fill_blanks`; the negative control is the shuffled-label
    run above, which the same path keeps at chance."""
    from fivek_utils.data.pseudo_labels import fill_blanks

    def teacher_labels(labels):
        rng = np.random.default_rng(1)
        truth = np.where(labels >= 0, labels, rng.integers(0, 2, labels.shape))  # a teacher answers blanks too
        wrong = rng.uniform(size=labels.shape) < 0.2
        probs = np.where(np.where(wrong, 1 - truth, truth) == 1, 0.75, 0.25)
        filled, used = fill_blanks(np.full_like(labels, -1), probs)
        assert used.all() and set(np.unique(filled)) == {0.25, 0.75}
        return filled

    root = write_portrait_dataset(tmp_path / "data", N_IMAGES, seed=0)
    mask = train_and_score(root, tmp_path, monkeypatch, relabel=teacher_labels)
    # measured over dataset seeds 0-2, twice each: AUC 0.79-0.86 (seed 0: 0.83-0.86), F1 0.10-0.16 above
    # always-"yes" (seed 0: 0.155-0.161); the shuffled-label control stays within 0.3-0.7
    assert mask["auc"] >= 0.75, mask
    assert mask["f1"] >= mask["f1_always_yes"] + 0.08, mask


# --- small checks, each aimed at one way training can stop learning while everything runs ----------
def _solid_dataset(root, n: int, seed: int = 0):
    """Images of one flat grey each, whose level encodes the row's mask label and id; meta rows shuffled."""
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "train" / "images").mkdir(parents=True)
    rows = []
    for i in range(1, n + 1):
        mask = int(rng.integers(2))
        level = 40 + 150 * mask + i  # 41.. for mask 0, 191.. for mask 1: the label is in the pixels
        Image.new("RGB", (24 + i % 7, 20), (level,) * 3).save(root / "train" / "images" / f"{i}.png")
        rows.append({"image_id": i, "fname": f"{i}.png", "mask": mask, "distancing": int(rng.integers(2))})
    meta = pd.DataFrame(rows)
    meta["5k"] = meta["mask"] & meta["distancing"]
    meta.iloc[rng.permutation(n)].to_csv(root / "train" / "train_meta.csv", index=False)
    return root


def test_decoded_images_stay_with_their_rows(tmp_path, monkeypatch):
    """Images misaligned with their label rows would train on noise: every row gets its own picture."""
    monkeypatch.setattr(training, "CACHE_DIR", tmp_path / "cache")
    root = _solid_dataset(tmp_path / "data", 30)
    for _ in range(2):  # the decode, then the cached copy
        data = training.load_training_data(Config(data_dir=str(root), image_size=32), progress=False)
        levels = data.images[:, 16, 16, 0].astype(int)
        assert (levels == 40 + 150 * data.labels[:, 0].astype(int) + data.df["image_id"].astype(int).to_numpy()).all()
        rows = np.array([7, 3, 11])
        sub = data.subset(rows)
        assert (sub.df["image_id"].to_numpy() == data.df["image_id"].to_numpy()[rows]).all()
        assert (sub.images[:, 16, 16, 0] == levels[rows]).all() and (sub.labels == data.labels[rows]).all()


def test_pipeline_keeps_each_label_with_its_image_through_shuffle_and_mixup():
    """Label i must stay with image i through shuffling, augmentation and MixUp (mixed alike)."""
    from fivek_utils.core.labels import MISSING
    from fivek_utils.modeling.pipeline import make_train_dataset

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (64, 2)).astype("float32")
    labels[::5, 1] = MISSING
    images = np.broadcast_to((labels[:, :1] * 255).astype("uint8")[:, :, None, None], (64, 8, 8, 3)).copy()
    for alpha in (0.0, 0.4):
        ds = make_train_dataset(images, labels, 16, seed=3, randaugment_magnitude=0, mixup_alpha=alpha)
        for x, y in ds:
            # a flat image flips onto itself, so its mean is the (mixed) mask label of its row
            np.testing.assert_allclose(x.numpy().mean(axis=(1, 2, 3)) / 255, y["mask"].numpy()[:, 0], atol=1e-4)


def test_letterbox_keeps_every_face_of_a_wide_scene(tmp_path):
    """A crop to the centre would cut off the people at the sides (the one without a mask, say)."""

    from fivek_utils.data import synth
    from fivek_utils.data.images import PAD_VALUE, letterbox

    rng = np.random.default_rng(4)
    scene = next(s for s in (synth.sample_scene(rng, distancing=1, profile="closeup") for _ in range(50))
                 if len(s.people) >= 2 and s.width > 1.4 * s.height)
    image = synth.render_scene(scene)
    size = 96
    boxed = letterbox(image, size)
    scale = size / scene.width
    top = (size - round(scene.height * scale)) // 2
    assert (boxed[: top - 1] == PAD_VALUE).all()  # padded above, not cropped at the sides
    for person in scene.people:
        x0, y0, x1, y1 = synth.head_box(scene, person)
        face = np.asarray(image.crop((int(x0), int(y0), int(x1), int(y1))), float).mean(axis=(0, 1))
        small = boxed[int(top + y0 * scale) + 1: int(top + y1 * scale) - 1, int(x0 * scale) + 1: int(x1 * scale) - 1]
        assert small.size and np.abs(small.astype(float).mean(axis=(0, 1)) - face).max() < 25
