"""The stack: a logistic regression per head fitted on out-of-fold rows only, the image model's answer
where an image has no face, JSON that loads back to the same answers, and guards that catch a hold-out
used for fitting."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fivek_utils.data.people import PEOPLE_FEATURES
from fivek_utils.modeling.stacker import LeakageError, Stacker, cross_val_stack, fit_stacker, stack_features


def toy(n=400, seed=0, image_mask=None):
    """Rows whose mask is told by the face model and distancing by the gaps; the image model is weak
    (`image_mask(mask, folds, rng)`: its P(mask) instead)."""
    rng = np.random.default_rng(seed)
    mask, dist = rng.integers(0, 2, n), rng.integers(0, 2, n)
    image = np.clip(np.stack([0.5 + 0.1 * (mask - 0.5) + rng.normal(0, 0.2, n),
                              0.5 + 0.1 * (dist - 0.5) + rng.normal(0, 0.2, n)], 1), 0.01, 0.99)
    folds = np.arange(n) % 4
    if image_mask is not None:
        image[:, 0] = np.clip(image_mask(mask, folds, rng), 0.01, 0.99)
    face = np.clip(0.2 + 0.6 * mask + rng.normal(0, 0.1, n), 0.01, 0.99)
    faces = rng.integers(1, 4, n).astype(float)
    people = pd.DataFrame({"faces": faces, "single": (faces == 1).astype(float), "face_min": rng.uniform(0.1, 0.3, n),
                           "face_max": rng.uniform(0.3, 0.5, n), "gap_min": np.where(dist == 1, 4.0, 1.5) + rng.normal(0, 0.3, n),
                           "gap_median": rng.uniform(1, 6, n), "size_ratio_max": rng.uniform(1, 1.5, n)})
    face[:20] = np.nan  # 20 images without a detected face
    people.loc[:19, list(PEOPLE_FEATURES)] = np.nan
    people.loc[:19, "faces"] = 0.0
    labels = np.stack([mask, dist], 1).astype(float)
    labels[rng.random(n) < 0.2, 0] = -1  # blanks
    return stack_features(image, face, people), labels, image, np.array([str(i) for i in range(n)]), folds


def test_the_stack_reads_the_face_model_and_the_gaps():
    X, labels, image, ids, folds = toy()
    stacked = cross_val_stack(X, labels, ids, folds, image)
    for i in (0, 1):
        known = labels[:, i] >= 0
        auc_stack = roc_auc_score(labels[known, i], stacked[known, i])
        auc_image = roc_auc_score(labels[known, i], image[known, i])
        assert auc_stack > 0.95 > auc_image + 0.2, (i, auc_stack, auc_image)
    assert np.array_equal(stacked[:20], image[:20])  # no face: the image model's answer


def test_hold_out_rows_cannot_fit_the_stacker():
    X, labels, image, ids, folds = toy()
    with_holdout = folds.copy()
    with_holdout[-30:] = -1  # hold-out rows sneaked into the fit
    with pytest.raises(LeakageError, match="hold-out"):
        fit_stacker(X, labels, ids, with_holdout)


def test_scoring_rows_it_was_fitted_on_is_caught():
    X, labels, image, ids, folds = toy()
    stacker = fit_stacker(X[:300], labels[:300], ids[:300], folds[:300])
    stacker.predict(X[300:], image[300:], ids[300:], unseen=True)  # a true hold-out: fine
    with pytest.raises(LeakageError, match="used to fit"):
        stacker.predict(X[250:], image[250:], ids[250:], unseen=True)  # 50 of these rows fitted it


def test_json_round_trip_gives_the_same_answers():
    X, labels, image, ids, folds = toy()
    stacker = fit_stacker(X, labels, ids, folds)
    loaded = Stacker.from_json(json.loads(json.dumps(stacker.to_json())))
    assert np.allclose(loaded.predict(X, image), stacker.predict(X, image))
    assert loaded.fitted_ids == stacker.fitted_ids and len(stacker.fitted_ids) == 380  # rows with faces
    assert set(stacker.coefficients().columns) == {"mask", "distancing"}


def test_a_head_with_one_class_keeps_the_image_model():
    X, labels, image, ids, folds = toy()
    labels[:, 1] = np.where(labels[:, 1] >= 0, 1.0, -1.0)  # distancing always 1
    stacker = fit_stacker(X, labels, ids, folds)
    assert stacker.heads["distancing"] is None
    out = stacker.predict(X, image)
    assert np.array_equal(out[:, 1], image[:, 1]) and not np.array_equal(out[:, 0], image[:, 0])
    assert Stacker.from_json(stacker.to_json()).heads["distancing"] is None


def test_a_head_leaves_out_an_image_model_at_chance_and_keeps_one_that_knows():
    # at chance, with a constant of its own in every fold (what fold models from scratch give on real photos)
    X, labels, image, ids, folds = toy(seed=1, image_mask=lambda m, f, r: np.array([0.67, 0.96, 0.74, 0.55])[f]
                                       + r.normal(0, 0.02, len(f)))
    stacker = fit_stacker(X, labels, ids, folds)
    assert "image_mask" not in stacker.inputs_of("mask") and "face_mask" in stacker.inputs_of("mask")
    assert np.isnan(stacker.coefficients().loc["image_mask", "mask"])  # left out, shown blank
    known = labels[:, 0] >= 0
    assert roc_auc_score(labels[known, 0], cross_val_stack(X, labels, ids, folds, image)[known, 0]) > 0.95
    loaded = Stacker.from_json(json.loads(json.dumps(stacker.to_json())))
    assert loaded.inputs == stacker.inputs and np.allclose(loaded.predict(X, image), stacker.predict(X, image))
    # an image model that knows the mask (better than this face model) is kept and weighed
    X, labels, image, ids, folds = toy(seed=1, image_mask=lambda m, f, r: 0.1 + 0.8 * m + r.normal(0, 0.05, len(f)))
    kept = fit_stacker(X, labels, ids, folds)
    assert "image_mask" in kept.inputs_of("mask") and kept.coefficients().loc["image_mask", "mask"] > 0.5


def test_the_mask_head_leaves_out_the_gaps_it_cannot_use_and_keeps_a_size_that_tells_the_mask():
    # the toy's mask is told by the face model alone: its gaps and sizes are noise to the mask head, and
    # the distancing head needs the gaps
    X, labels, image, ids, folds = toy(n=240, seed=2)
    stacker = fit_stacker(X, labels, ids, folds)
    assert stacker.inputs_of("mask") == ["face_mask", "faces"]
    assert "gap_min" in stacker.inputs_of("distancing")
    assert Stacker.from_json(json.loads(json.dumps(stacker.to_json()))).inputs == stacker.inputs
    # the smallest face tells the mask as well as the face model does (small faces: masked here)
    X, labels, image, ids, folds = toy(n=240, seed=2)
    mask = labels[:, 0]
    X["face_min"] = np.where(np.isfinite(X["face_mask"]), np.log(np.where(mask == 1, 0.05, 0.2))
                             + np.random.default_rng(3).normal(0, 0.3, len(X)), np.nan)
    with_size = fit_stacker(X, labels, ids, folds)
    assert "face_min" in with_size.inputs_of("mask")
