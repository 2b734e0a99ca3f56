"""Stratified, grouped, seeded folds."""

import numpy as np
import pandas as pd
import pytest

from fivek_utils.data.folds import holdout_split, make_folds
from fivek_utils.data.meta import load_labels, stratify_key


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
    table = pd.crosstab(a, stratify_key(real))
    assert (table.max() - table.min() <= 2).all()  # still even with the pairs kept together


def test_too_few_groups_for_the_folds_is_a_clear_error(real):
    with pytest.raises(ValueError, match="4 groups of near-duplicates cannot make 5 folds"):
        make_folds(real, 5, seed=0, groups=np.arange(len(real)) % 4)
    with pytest.raises(ValueError, match="3 group ids for"):
        make_folds(real, 5, seed=0, groups=np.arange(3))


def test_holdout_fraction(real):
    train, val = holdout_split(real, 0.2, seed=0)
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == len(real)
    assert abs(len(val) / len(real) - 0.2) < 0.01
