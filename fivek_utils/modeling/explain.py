"""Grad-CAM for the two heads: where does the model look for masks and for distance?"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .backbones import get_backbone


def gradcam(model: keras.Model, images: np.ndarray, head: str) -> np.ndarray:
    """Grad-CAM maps in [0, 1], shape (N, h, w) at the backbone's output resolution.

    The class activation is the head's logit-side output; gradients are taken with respect
    to the backbone's last feature map (Selvaraju et al., 2017).
    """
    base = get_backbone(model)
    x = tf.convert_to_tensor(np.asarray(images, dtype="float32"))
    if "preprocess" in [layer.name for layer in model.layers]:
        x = model.get_layer("preprocess")(x)
    features = base(x, training=False)
    with tf.GradientTape() as tape:
        tape.watch(features)
        pooled = model.get_layer("avg_pool")(features)
        score = model.get_layer(head)(pooled)
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1)).numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    return cam / np.maximum(peak, 1e-12)
