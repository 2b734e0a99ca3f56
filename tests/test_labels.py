"""The 5K rule: 5K = mask AND distancing at the heads' thresholds; P(5K) is their product."""

import numpy as np

from fivek_utils.core.labels import HEADS, MISSING, combine_5k, decide_5k


def test_5k_needs_both_heads_over_their_thresholds():
    p_mask, p_dist = np.array([0.9, 0.9, 0.2, 0.6]), np.array([0.8, 0.3, 0.9, 0.5])
    assert decide_5k(p_mask, p_dist).tolist() == [1, 0, 0, 1]
    assert decide_5k(p_mask, p_dist, 0.7, 0.4).tolist() == [1, 0, 0, 0]
    np.testing.assert_allclose(combine_5k(p_mask, p_dist), p_mask * p_dist)


def test_heads_and_the_blank_code():
    assert HEADS == ("mask", "distancing") and MISSING < 0
