"""Bags see everyone: a photo of a crowd of 100 faces keeps all of them through crops, the crops cache,
training batches (one shape for every fold), prediction and the bag probability; one unmasked face among
the hundred decides the bag. The face stage's mistakes gallery draws those faces."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from fivek_utils.core.config import Config
from fivek_utils.data.crops import extract_crops, load_crops
from fivek_utils.data.faces import Detections, Face, ImageFaces
from fivek_utils.modeling.backbones import tiny_backbone
from fivek_utils.modeling.face_model import BagBatches, FaceTrainer, bag_probabilities, build_face_model, predict_faces
from fivek_utils.workflows.error_analysis import prediction_table
from fivek_utils.workflows.face_gallery import plot_face_mistakes

CROWD = 100


def draw_faces(path, boxes, unmasked=()):
    """A grey photo with a skin-coloured disc per box and a blue mask over the lower half of each but
    the `unmasked` ones."""
    image = Image.new("RGB", (1000, 800), (90, 90, 90))
    draw = ImageDraw.Draw(image)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        draw.ellipse((x0, y0, x1, y1), fill=(225, 180, 150))
        if i not in unmasked:
            draw.rectangle((x0 + 2, (y0 + y1) / 2, x1 - 2, y1 - 2), fill=(120, 170, 230))
    image.save(path)


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    root = tmp_path_factory.mktemp("crowd")
    grid = [(40 + 90 * (i % 10), 40 + 70 * (i // 10), 40 + 90 * (i % 10) + 30, 40 + 70 * (i // 10) + 34)
            for i in range(CROWD)]
    paths, fnames, records = [], [], {}
    for name, boxes, unmasked in (("crowd.jpg", grid, (57,)), ("one.jpg", grid[:1], ()), ("two.jpg", grid[:2], (1,))):
        draw_faces(root / name, boxes, unmasked)
        paths.append(str(root / name))
        fnames.append(name)
        records[name] = ImageFaces(name, 1000, 800, [Face(tuple(map(float, b)), 0.9) for b in boxes])
    return root, paths, fnames, Detections({"name": "test"}, records)


def test_every_face_of_a_crowd_is_cropped_and_cached(crowd, tmp_path):
    root, paths, fnames, det = crowd
    assert Config().face_max_per_image == 0  # the default keeps every face
    made = load_crops(paths, fnames, det, 32, detections_key="k", cache_dir=tmp_path, progress=False)
    assert made.counts.tolist() == [CROWD, 1, 2] and made.crops.shape == (CROWD + 3, 32, 32, 3)
    again = load_crops(paths, fnames, det, 32, detections_key="k", cache_dir=tmp_path, progress=False)
    assert np.array_equal(again.crops, made.crops) and again.counts.tolist() == [CROWD, 1, 2]
    capped = extract_crops(paths, fnames, det, 32, max_faces=12, progress=False)
    assert capped.counts.tolist() == [12, 1, 2]


def test_a_crowd_trains_in_batches_of_one_shape_and_one_face_decides_its_bag(crowd):
    root, paths, fnames, det = crowd
    crops = extract_crops(paths, fnames, det, 32, progress=False)
    labels = np.array([0, 1, 0], "float32")
    per_batch = max(8, int(crops.counts.max()))  # what run_face_kfold gives the trainer
    batches = BagBatches(crops, labels, per_batch, seed=0)
    shapes = {batches[i][0].shape for i in range(len(batches))}
    assert shapes == {(CROWD, 32, 32, 3)}  # one trace: the crowd's bag fits whole, the others are padded to it
    keras.utils.set_random_seed(0)
    model = build_face_model(tiny_backbone(width=8, seed=0), dropout=0.0)
    trainer = FaceTrainer(model, epochs=1, lr=1e-3, steps_per_epoch=len(batches), crops_per_batch=per_batch)
    log = trainer.fit(crops, labels, verbose=0)
    assert np.isfinite(log["loss"]).all()
    faces = predict_faces(model, crops.crops)
    bags = bag_probabilities(faces, crops.counts)
    assert np.isfinite(bags).all() and bags[0] <= faces[:CROWD].min() + 1e-9  # a product of 100 stays finite
    # one face at P = 0.01 among 99 at 0.99: the bag is below 0.01
    p = np.full(CROWD, 0.99)
    p[57] = 0.01
    assert bag_probabilities(p, np.array([CROWD]))[0] < 0.01


def test_an_epoch_is_one_pass_over_the_bags_however_large_the_largest():
    """Every usable bag trains exactly once an epoch, in about as many batches as its crops fill: a crowd of
    100 among 60 small bags makes no epoch of many passes (the blank-labelled and faceless images: none)."""
    from fivek_utils.data.crops import FaceCrops

    counts = np.array([CROWD] + [1, 2, 3] * 20 + [0])
    labels = np.array([0.0] + [1.0, 0.0, -1.0] * 20 + [1.0], "float32")
    crops = FaceCrops(np.zeros((int(counts.sum()), 4, 4, 3), "uint8"), np.repeat(np.arange(len(counts)), counts), counts)
    usable = np.flatnonzero((labels >= 0) & (counts > 0))
    crops_in = int(counts[usable].sum())  # 100 + 20 x (1 + 2)
    for seed in range(3):
        batches = BagBatches(crops, labels, 64, seed=seed)
        assert sorted(r for plan in batches.plan for r in plan) == usable.tolist()  # each usable bag once
        assert len(batches) <= crops_in // (CROWD // 2) + 1  # batches of 100 crops, at least half full but the last
        assert {batches[i][0].shape for i in range(len(batches))} == {(CROWD, 4, 4, 3)}


def test_the_face_mistakes_gallery_draws_every_face_and_the_deciding_one(crowd, tmp_path, monkeypatch):
    import fivek_utils.core.plots as plots

    monkeypatch.setattr(plots, "FIGURES_DIR", tmp_path)
    root, paths, fnames, det = crowd
    counts = np.array([CROWD, 1, 2])
    probs = np.full(counts.sum(), 0.9)
    probs[57] = 0.05  # the crowd's deciding face
    df = pd.DataFrame({"image_id": [0, 1, 2], "fname": fnames})
    labels = np.array([[1, 1], [0, 1], [1, 1]])  # crowd and two.jpg answered wrong with confidence
    table = prediction_table(df, labels, np.array([[0.05, 0.9], [0.95, 0.9], [0.3, 0.9]]), {"mask": 0.5})
    fig = plot_face_mistakes(paths, det, probs, counts, table, head="mask", k=3, name="face-mistakes")
    drawn = [len(ax.patches) for ax in fig.axes if ax.images]
    widths = [sorted({p.get_linewidth() for p in ax.patches}) for ax in fig.axes if ax.images]
    assert sorted(drawn) == [1, 2, CROWD] and all(len(w) == 2 or n == 1 for w, n in zip(widths, drawn))
    crowd_ax = next(ax for ax in fig.axes if ax.images and len(ax.patches) == CROWD)
    thick = [p for p in crowd_ax.patches if p.get_linewidth() == 3.0]
    assert len(thick) == 1 and thick[0].get_x() == pytest.approx(det["crowd.jpg"].faces[57].box[0] * 360 / 1000)
    assert (tmp_path / "face-mistakes.png").exists()
