"""tf.data pipelines: blank-safe MixUp through Keras's MixUp, and augmented batches in range."""

import keras
import numpy as np
import tensorflow as tf

from fivek_utils.core.labels import MISSING
from fivek_utils.modeling.pipeline import make_predict_dataset, make_train_dataset, mixup_batch, resize_images


def test_mixup_keeps_blanks_blank_and_mixes_known_labels():
    layer = keras.layers.MixUp(alpha=0.4, seed=3)
    images = tf.constant(np.arange(6, dtype="float32").reshape(6, 1, 1, 1) * np.ones((6, 4, 4, 3), "float32"))
    labels = tf.constant([[1, 1], [0, MISSING], [MISSING, 1], [1, 0], [0, 0], [MISSING, 0]], tf.float32)
    t = layer.get_random_transformation(images, training=True)
    x, y = mixup_batch(layer, images, labels, t)
    lam, perm = t["mix_weight"].numpy(), t["permutation_order"].numpy()
    y, lab = y.numpy(), labels.numpy()
    for i in range(6):
        assert np.allclose(x.numpy()[i], lam[i] * i + (1 - lam[i]) * perm[i])
        for h in range(2):
            a, b = lab[i, h], lab[perm[i], h]
            if a < 0 or b < 0:
                assert y[i, h] == MISSING  # never a fractional false label
            else:
                assert np.isclose(y[i, h], lam[i] * a + (1 - lam[i]) * b, atol=1e-6)
                assert 0 <= y[i, h] <= 1


def test_train_dataset_mixup_output_is_blank_or_in_unit_interval():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, (16, 2)).astype("float32")
    labels[::3, 1] = MISSING
    ds = make_train_dataset(images, labels, 8, seed=1, randaugment_magnitude=10, mixup_alpha=0.3)
    seen = 0
    for x, y in ds:
        assert x.shape == (8, 32, 32, 3) and x.dtype == tf.float32
        for h in ("mask", "distancing"):
            v = y[h].numpy()
            assert ((v == MISSING) | ((v >= 0) & (v <= 1))).all()
        seen += 1
    assert seen == 2


def test_predict_batches_keep_order_and_mirror_when_asked():
    images = np.arange(5 * 4 * 6 * 3, dtype=np.uint8).reshape(5, 4, 6, 3)
    plain = np.concatenate([x.numpy() for x in make_predict_dataset(images, 2)])
    mirrored = np.concatenate([x.numpy() for x in make_predict_dataset(images, 2, flip=True)])
    np.testing.assert_array_equal(plain, images.astype("float32"))
    np.testing.assert_array_equal(mirrored, images[:, :, ::-1].astype("float32"))


def test_resize_shrinks_with_antialiasing_and_keeps_the_size_it_has():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    assert resize_images(images, 64) is images
    small = resize_images(images, 16)
    assert small.shape == (3, 16, 16, 3) and small.dtype == np.uint8
    # antialiased: each output pixel is close to the mean of its 4x4 block
    blocks = images.reshape(3, 16, 4, 16, 4, 3).mean(axis=(2, 4))
    assert np.abs(small.astype(float) - blocks).mean() < 12
