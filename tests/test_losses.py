"""The masked loss: blank labels give neither loss nor gradient, known ones give plain BCE."""

import numpy as np
import tensorflow as tf
from sklearn.metrics import log_loss

from fivek_utils.core.labels import MISSING
from fivek_utils.modeling.losses import MaskedBinaryCrossentropy


def test_blank_labels_give_no_gradient_and_known_ones_do():
    y_true = tf.constant([[1.0], [MISSING], [0.0], [MISSING]])
    y_pred = tf.Variable([[0.3], [0.8], [0.6], [0.1]])
    with tf.GradientTape() as tape:
        loss = MaskedBinaryCrossentropy()(y_true, y_pred)
    grad = tape.gradient(loss, y_pred).numpy().ravel()
    assert grad[1] == 0 and grad[3] == 0
    assert grad[0] < 0 and grad[2] > 0  # pushes 0.3 up towards 1 and 0.6 down towards 0
    expected = log_loss([1, 0], [0.3, 0.6], labels=[0, 1])
    assert np.isclose(float(loss), expected, rtol=1e-5)


def test_all_blank_batch_has_zero_loss():
    loss = MaskedBinaryCrossentropy()(tf.constant([[MISSING], [MISSING]]), tf.constant([[0.2], [0.9]]))
    assert float(loss) == 0.0
