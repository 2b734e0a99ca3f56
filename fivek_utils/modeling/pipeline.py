"""tf.data input pipelines: decoded images in memory -> augment -> batch -> (mixup) -> prefetch.

Images are decoded and letterboxed once per size (see `images.load_images`, cached on disk)
and live in memory as uint8; the pipeline only augments. Labels are (mask, distancing) with
blanks as -1; the loss skips them (see `losses.MaskedBinaryCrossentropy`).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..core.labels import HEADS, MISSING

AUTOTUNE = tf.data.AUTOTUNE
# The RandAugment paper's magnitudes live on a 0-30 scale (EfficientNet-B7 used 28,
# EfficientNetV2 uses 5-25); keras-cv's `magnitude` is the same scale normalised to [0, 1].
MAX_MAGNITUDE = 30.0


def _split_labels(y):
    return {h: y[:, i : i + 1] for i, h in enumerate(HEADS)}


def make_randaugment(magnitude: float, seed: int | None = None):
    """RandAugment with two ops per image at the paper's `magnitude` (0 = off).

    keras-cv's RandAugment is used rather than keras.layers.RandAugment: it draws the ops
    per image (Keras 3's draws them once per batch) and computes only the chosen ops,
    which made it 2.4x faster in our tf.data measurements on CPU.
    """
    if magnitude <= 0:
        return None
    import keras_cv

    return keras_cv.layers.RandAugment(
        value_range=(0, 255),
        augmentations_per_image=2,
        magnitude=min(1.0, magnitude / MAX_MAGNITUDE),
        magnitude_stddev=0.1,
        seed=seed,
    )


def mixup_batch(layer: keras.layers.MixUp, images, labels, transformation=None):
    """MixUp that keeps blanks blank: a mixed label is known only if both partners knew it.

    Keras's MixUp mixes labels linearly, so a blank (-1) would turn into a fractional false
    label. We draw Keras's transformation once and apply it to the images, to the labels
    with blanks zeroed, and to the "known" mask by the same permutation.

    Why Keras's MixUp and not keras-cv's: keras 3's layer exposes its random draw
    (`get_random_transformation`, then `transform_images` / `transform_labels`), so one draw
    can mix the images, the labels and the "known" mask alike; keras-cv 0.9's MixUp mixes
    images and labels inside one call and offers no way to mix the mask with the same draw.
    RandAugment stays keras-cv's (its magnitude scale matches the paper's).
    """
    t = transformation or layer.get_random_transformation(images, training=True)
    mixed = layer.transform_images(images, t)
    known = tf.cast(labels >= 0, tf.float32)
    mixed_labels = layer.transform_labels(tf.maximum(labels, 0.0), t)
    both_known = known * tf.gather(known, t["permutation_order"])
    return mixed, tf.where(both_known > 0, mixed_labels, tf.cast(MISSING, tf.float32))


def make_train_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    seed: int = 0,
    randaugment_magnitude: float = 0.0,
    mixup_alpha: float = 0.0,
    flip: bool = True,
    shuffle: bool = True,
) -> tf.data.Dataset:
    """Shuffled, augmented training batches of (float pixels in [0, 255], {head: labels})."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} label rows")
    if len(images) < batch_size:
        raise ValueError(f"only {len(images)} training images for batch_size={batch_size}; lower batch_size")
    flipper = keras.layers.RandomFlip("horizontal", seed=seed) if flip else None
    randaug = make_randaugment(randaugment_magnitude, seed)

    def augment(x, y):
        x = tf.cast(x, tf.float32)
        if flipper is not None:
            x = flipper(x, training=True)
        if randaug is not None:
            x = randaug(x, training=True)
        return x, y

    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype("float32")))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(augment, num_parallel_calls=AUTOTUNE).batch(batch_size, drop_remainder=True)
    if mixup_alpha > 0:
        mixer = keras.layers.MixUp(alpha=mixup_alpha, seed=seed)
        ds = ds.map(lambda x, y: mixup_batch(mixer, x, y), num_parallel_calls=AUTOTUNE)
    return ds.map(lambda x, y: (x, _split_labels(y)), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def make_predict_dataset(images: np.ndarray, batch_size: int, *, flip: bool = False) -> tf.data.Dataset:
    """Batches of float pixels in order, optionally mirrored (test-time augmentation)."""
    ds = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)

    def prep(x):
        x = tf.cast(x, tf.float32)
        return tf.reverse(x, axis=[2]) if flip else x

    return ds.map(prep, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def resize_images(images: np.ndarray, size: int, batch: int = 256) -> np.ndarray:
    """Resize letterboxed uint8 squares to another square size (antialiased when shrinking)."""
    if images.shape[1] == size:
        return images
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i in range(0, len(images), batch):
        r = tf.image.resize(images[i : i + batch], (size, size), method="bilinear", antialias=True)
        out[i : i + batch] = tf.cast(tf.clip_by_value(tf.round(r), 0, 255), tf.uint8).numpy()
    return out
