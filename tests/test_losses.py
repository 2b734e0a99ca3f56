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


# --- the bag loss of the face-crop model (multiple-instance learning) ---------------------------------
from fivek_utils.modeling.losses import BagBinaryCrossentropy  # noqa: E402


def bag_loss(labels_per_crop, bags, logits):
    """The loss and its gradient per crop logit for crops [label of its image, image index]."""
    y_true = tf.constant(np.stack([labels_per_crop, bags], axis=1), tf.float32)
    z = tf.Variable(np.asarray(logits, np.float32).reshape(-1, 1))
    with tf.GradientTape() as tape:
        loss = BagBinaryCrossentropy()(y_true, z)
    return float(loss), tape.gradient(loss, z).numpy().ravel()


def test_bag_loss_is_the_cross_entropy_of_the_product_of_the_faces():
    # image 0: two faces, label 1; image 1: three faces, label 0
    z = np.array([1.0, 2.0, 0.5, -0.3, 3.0])
    loss, grad = bag_loss([1, 1, 0, 0, 0], [0, 0, 1, 1, 1], z)
    p = 1 / (1 + np.exp(-z))
    bag = np.array([p[:2].prod(), p[2:].prod()])
    assert np.isclose(loss, log_loss([1, 0], bag, labels=[0, 1]), rtol=1e-5)
    eps = 1e-3  # the gradient matches finite differences of that formula
    for i in range(len(z)):
        up, down = z.copy(), z.copy()
        up[i] += eps
        down[i] -= eps
        numeric = (bag_loss([1, 1, 0, 0, 0], [0, 0, 1, 1, 1], up)[0] - bag_loss([1, 1, 0, 0, 0], [0, 0, 1, 1, 1], down)[0]) / (2 * eps)
        assert np.isclose(grad[i], numeric, rtol=1e-2, atol=1e-4)


def test_one_unmasked_face_in_a_masked_bag():
    # three confident masked faces and one that looks unmasked
    z = np.array([4.0, 4.0, 4.0, -3.0])
    loss_if_1, grad_if_1 = bag_loss([1] * 4, [0] * 4, z)
    loss_if_0, grad_if_0 = bag_loss([0] * 4, [0] * 4, z)
    assert loss_if_1 > 2.5 > loss_if_0  # the bag reads as "not everyone masked"
    assert (grad_if_1 < 0).all() and abs(grad_if_1[3]) > 10 * abs(grad_if_1[:3]).max()  # label 1 pushes that face up most
    assert (grad_if_0 > 0).all()  # label 0 pushes every face down, never up
    # a bag labelled 0 whose faces all look masked: the gradient falls on the least masked-looking face
    _, grad = bag_loss([0] * 3, [0] * 3, np.array([5.0, 5.0, 2.0]))
    assert np.argmax(grad) == 2


def test_blank_images_give_no_loss_and_no_gradient():
    z = np.array([0.5, -1.0, 2.0])
    loss, grad = bag_loss([-1, -1, 1], [0, 0, 1], z)
    assert grad[0] == 0 and grad[1] == 0 and grad[2] < 0
    assert np.isclose(loss, -np.log(1 / (1 + np.exp(-2.0))), rtol=1e-5)  # only the labelled bag counts
    loss, grad = bag_loss([-1, -1], [0, 1], [0.3, 0.7])
    assert loss == 0.0 and not grad.any()


def test_confident_bags_keep_finite_gradients():
    # saturated logits either way: the log-space loss never gives inf or NaN
    for label, z in ((0, [30.0, 30.0]), (1, [-30.0, 30.0]), (0, [-30.0, -30.0]), (1, [80.0, 80.0]), (0, [-80.0, 5.0])):
        loss, grad = bag_loss([label] * 2, [0, 0], z)
        assert np.isfinite(loss) and np.isfinite(grad).all()
    for z in (30.0, 60.0, 80.0):  # a confident wrong bag still learns, however confident
        loss, grad = bag_loss([0, 0], [0, 0], [z, z])
        assert np.isclose(loss, z - np.log(2), rtol=1e-4) and np.allclose(grad, 0.5, atol=1e-3), (z, loss, grad)
