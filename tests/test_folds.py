"""Stratified, grouped, seeded folds."""

import numpy as np
import pandas as pd
import pytest

from fivek_utils.config import ConfigError
from fivek_utils.data import load_labels, stratify_key
from fivek_utils.folds import holdout_split, make_folds


@pytest.fixture(scope="module")
def real(real_meta_path):
    return load_labels(real_meta_path)


def test_folds_stratify_the_real_label_pattern_with_blanks(real):
    folds = make_folds(real, 5, seed=0)
    strata = stratify_key(real)
    table = pd.crosstab(folds, strata)
    assert set(strata) == {"1|1", "1|0", "0|1", "0|0", "1|b", "0|b", "b|1", "b|0"}
    assert (table.max() - table.min() <= 1).all()  # each stratum split evenly
    assert np.ptp(np.bincount(folds)) <= len(table.columns)  # folds of (almost) equal size
    assert (folds >= 0).all() and set(folds) == set(range(5))


def test_groups_never_cross_folds_and_seed_is_deterministic(real):
    rng = np.random.default_rng(0)
    groups = np.arange(len(real))
    dup_rows = rng.choice(len(real), 400, replace=False)
    groups[dup_rows[200:]] = groups[dup_rows[:200]]  # 200 duplicate pairs
    a = make_folds(real, 5, seed=7, groups=groups)
    b = make_folds(real, 5, seed=7, groups=groups)
    c = make_folds(real, 5, seed=8, groups=groups)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    for g in np.unique(groups[dup_rows]):
        assert len(set(a[groups == g])) == 1


def test_holdout_fraction(real):
    train, val = holdout_split(real, 0.2, seed=0)
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == len(real)
    assert abs(len(val) / len(real) - 0.2) < 0.01


# --- k-fold runs: resume and failures ------------------------------------------------------------
def _fold_data(n=8):
    from fivek_utils.training import TrainingData

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (n, 2)).astype("float32")
    df = pd.DataFrame({"image_id": np.arange(n), "fname": [f"{i}.jpg" for i in range(n)]})
    return TrainingData(df, rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), labels)


def _finish_fold(run_dir, k, rows, tta=2, hold_rows=0):
    """What a finished fold leaves behind: its model file and its predictions."""
    fold = run_dir / f"fold{k}"
    fold.mkdir(parents=True)
    (fold / "model.keras").write_bytes(b"")
    np.savez(fold / "predictions.npz", oof=np.full((len(rows), tta, 2), 0.25 + k / 2), holdout=np.zeros((tta, hold_rows, 2)), rows=rows)


def test_kfold_skips_finished_folds_and_names_the_failing_one(tmp_path):
    from fivek_utils.config import Config
    from fivek_utils.kfold import FoldError, run_kfold

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


def test_kfold_refuses_a_finished_fold_trained_with_other_settings(tmp_path):
    from fivek_utils.config import Config
    from fivek_utils.kfold import run_kfold
    from fivek_utils.training import check_run_key

    data, folds = _fold_data(), np.array([0, 1] * 4)
    cfg = Config(image_size=32, epochs_finetune=3)
    for k in (0, 1):
        _finish_fold(tmp_path, k, np.flatnonzero(folds == k))
        check_run_key(tmp_path / f"fold{k}", cfg, data.subset(np.flatnonzero(folds != k)), data.subset(np.flatnonzero(folds == k)),
                      recipe="two_phase")  # what training the fold wrote
    run_kfold(cfg, data, folds, run_dir=tmp_path)  # same settings: reused
    with pytest.raises(ConfigError, match=r"changed: \['epochs_finetune'\]"):
        run_kfold(cfg.replace(epochs_finetune=6), data, folds, run_dir=tmp_path)
