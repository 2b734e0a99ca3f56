"""Metrics per head and for 5K, the 5K rule, and threshold tuning."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from fivek_utils.core.labels import MISSING, combine_5k, decide_5k
from fivek_utils.core import metrics
from fivek_utils.core.metrics import base_rates, evaluate, f1_5k, fallback_5k, truth_5k, tune_thresholds


def test_truth_5k_is_scored_on_fully_labelled_rows():
    labels = np.array([[1, 1], [1, 0], [0, 0], [0, MISSING], [MISSING, 0], [1, MISSING], [MISSING, 1]], float)
    assert truth_5k(labels).tolist() == [1, 0, 0, -1, -1, -1, -1]


def test_base_rates_and_fallback():
    labels = np.array([[1, 1], [1, 0], [0, MISSING], [1, 1]], float)
    rates = base_rates(labels)
    assert rates == {"mask": 0.75, "distancing": 2 / 3, "5K": 2 / 3}
    assert fallback_5k(rates, {"f1_5K": 0.8}) == 1 and fallback_5k(rates, {"f1_5K": 1.0}) == 1
    assert fallback_5k({"5K": 0.3}, {"f1_5K": 0.8}) == 0


def test_5k_rule_needs_both_heads():
    pm, pd_ = np.array([0.9, 0.9, 0.2, 0.6]), np.array([0.8, 0.3, 0.9, 0.55])
    assert decide_5k(pm, pd_).tolist() == [1, 0, 0, 1]
    assert decide_5k(pm, pd_, 0.5, 0.6).tolist() == [1, 0, 0, 0]
    assert np.allclose(combine_5k(pm, pd_), pm * pd_)


def test_evaluate_matches_sklearn_on_known_rows():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (200, 2)).astype(float)
    labels[rng.random(200) < 0.2, 0] = MISSING
    labels[rng.random(200) < 0.3, 1] = MISSING
    probs = np.clip(labels * 0.5 + rng.random((200, 2)) * 0.6, 0, 1)
    table = evaluate(labels, probs, {"mask": 0.4, "distancing": 0.6, "5k_mask": 0.5, "5k_distancing": 0.45})
    for i, h in enumerate(("mask", "distancing")):
        known = labels[:, i] >= 0
        t = 0.4 if h == "mask" else 0.6
        assert np.isclose(table.loc[h, "f1"], f1_score(labels[known, i], probs[known, i] >= t))
        assert np.isclose(table.loc[h, "auc"], roc_auc_score(labels[known, i], probs[known, i]))
        assert table.loc[h, "n"] == known.sum()
        assert table.loc[h, ["tn", "fp", "fn", "tp"]].sum() == known.sum()
    y5 = truth_5k(labels)
    known = y5 >= 0
    pred = (probs[:, 0] >= 0.5) & (probs[:, 1] >= 0.45)
    assert table.loc["5K", "n"] == known.sum() == ((labels >= 0).all(1)).sum()  # fully labelled rows only
    assert np.isclose(table.loc["5K", "f1"], f1_score(y5[known], pred[known]))
    assert np.isclose(table.loc["5K", "auc"], roc_auc_score(y5[known], probs[known, 0] * probs[known, 1]))


def test_tuned_thresholds_beat_or_equal_defaults_and_are_consistent():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, (300, 2)).astype(float)
    # a model whose scores are shifted up: 0.5 is a poor threshold, about 0.7 is right
    probs = np.clip(0.45 + 0.3 * labels + rng.normal(0, 0.08, (300, 2)), 0, 1)
    t = tune_thresholds(labels, probs)
    assert t["f1_5K"] >= f1_5k(labels, probs) + 0.05
    assert 0.55 < t["5k_mask"] < 0.85 and 0.55 < t["5k_distancing"] < 0.85
    assert np.isclose(evaluate(labels, probs, t).loc["5K", "f1"], t["f1_5K"])
    assert np.isclose(evaluate(labels, probs, t).loc["mask", "f1"], t["f1_mask"])


@pytest.mark.parametrize("case", ["mixed", "blanks", "no 5K", "every row 5K", "no known row"])
def test_the_5k_grid_is_sklearns_f1_at_every_pair(case):
    """The grid is counted at once; each cell must be what `f1_score` says for that pair of thresholds."""
    from fivek_utils.core.metrics import GRID, f1_grid_5k

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, (120, 2)).astype(float)
    if case == "blanks":
        labels[rng.uniform(size=labels.shape) < 0.3] = -1
    elif case == "no 5K":
        labels[:, 0] = 0
    elif case == "every row 5K":
        labels[:] = 1
    elif case == "no known row":
        labels[:, 1] = -1
    probs = np.round(rng.uniform(size=labels.shape), 2)  # ties with the grid's thresholds too
    surface = f1_grid_5k(labels, probs)
    y5 = truth_5k(labels)
    known = y5 >= 0
    for i, tm in enumerate(GRID):
        for j, td in enumerate(GRID):
            pred = (probs[known, 0] >= tm) & (probs[known, 1] >= td)
            expected = f1_score(y5[known].astype(int), pred.astype(int), zero_division=0) if known.any() else 0.0
            assert surface[i, j] == pytest.approx(expected, abs=1e-12), (tm, td)


def test_perfectly_separable_scores_reach_f1_one():
    labels = np.array([[1, 1], [1, 0], [0, 1], [0, 0], [1, 1]] * 10, float)
    probs = np.where(labels == 1, 0.8, 0.3)
    t = tune_thresholds(labels, probs)
    assert t["f1_mask"] == 1.0 and t["f1_distancing"] == 1.0 and t["f1_5K"] == 1.0


def test_f1_curves_carry_each_targets_always_yes_f1_of_its_known_rows():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, (60, 2)).astype(float)
    labels[:10, 0] = -1  # mask blank on ten rows: the mask curve and 5K leave them out
    labels[10:15, 1] = -1
    probs = rng.random((60, 2))
    curves = metrics.f1_curves(labels, probs)
    yes = curves.groupby("target")["f1_always_yes"].agg(["min", "max"])
    assert (yes["min"] == yes["max"]).all()  # a constant per target
    m = labels[labels[:, 0] >= 0, 0]
    assert yes.loc["mask", "min"] == pytest.approx(f1_score(m, np.ones_like(m)))
    y5 = metrics.truth_5k(labels)
    y5 = y5[y5 >= 0]
    assert yes.loc["5K", "min"] == pytest.approx(f1_score(y5, np.ones_like(y5)))
    # at the lowest thresholds almost every row is answered 1, so F1 is close to the baseline
    low = curves[curves.threshold == curves.threshold.min()].set_index("target")
    assert abs(low.loc["mask", "f1"] - low.loc["mask", "f1_always_yes"]) < 0.05
