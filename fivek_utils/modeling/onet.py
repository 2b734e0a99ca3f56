"""MTCNN's output network (ONet) as a pretrained face-crop backbone, its weights from the `mtcnn` wheel.

ONet is the last stage of the MTCNN face detector (Zhang et al., 2016): a small network (about 390,000
weights) that sees a 48 x 48 face and was trained on hundreds of thousands of real faces to tell a face
from a non-face and to place its eyes, nose and mouth corners. Its 256 features before those outputs
describe the lower face as well as the upper one, so a mask changes them. On the real development set's
annotated faces a logistic regression on them tells masked from unmasked faces with AUC 0.99 (grouped by
photo, 5 folds), against 0.79 from the same crops' pixels (docs/real-street-photos.md).

The weights ship inside the `mtcnn` wheel (`mtcnn/assets/weights/onet.lz4`), so they work offline:
the only pretrained face features a CPU-only, offline machine can start from. The kit rebuilds the
trunk as Keras 3 layers (conv1 ... prelu5, named as `mtcnn.network.onet.ONet` names them) and copies
the wheel's arrays into them; `face_backbone: mtcnn_onet` with `face_weights: mtcnn`.

The trunk takes crops of any size in [0, 255] (resized to 48 x 48, scaled as MTCNN scales: (x - 127.5) /
128) and returns a 1 x 1 x 256 feature map, so the face model's pooling and head sit on it unchanged.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np

from ..core.config import ModelConfigError
from .catalog import ONET_BACKBONE, ONET_WEIGHTS

ONET_SIZE = 48
# (layer, kind, settings) in MTCNN's order; the wheel's arrays are these layers' weights, in this order,
# followed by those of its three output layers (box, landmarks, face / not face), which the trunk leaves out
_LAYERS = [
    ("conv1", "conv", 32, 3), ("prelu1", "prelu"), ("maxpooling1", "pool", 3, 2, "same"),
    ("conv2", "conv", 64, 3), ("prelu2", "prelu"), ("maxpooling2", "pool", 3, 2, "valid"),
    ("conv3", "conv", 64, 3), ("prelu3", "prelu"), ("maxpooling3", "pool", 2, 2, "same"),
    ("conv4", "conv", 128, 2), ("prelu4", "prelu"),
    ("permute", "permute"), ("flatten4", "flatten"), ("fc5", "dense", 256), ("prelu5", "prelu"),
]
_WEIGHTED = [name for name, kind, *_ in _LAYERS if kind in ("conv", "prelu", "dense")]


def onet_backbone(weights: str | None = ONET_WEIGHTS) -> keras.Model:
    """The ONet trunk as a headless Keras model: crops (any size, [0, 255]) -> 1 x 1 x 256 features.

    `weights`: "mtcnn" (the arrays inside the `mtcnn` wheel) or None (random: a control, not a recipe)."""
    if weights not in (ONET_WEIGHTS, None):
        raise ModelConfigError(f"face_weights={weights!r} with face_backbone={ONET_BACKBONE!r}: use {ONET_WEIGHTS!r} "
                               "(the weights inside the mtcnn wheel) or None")
    inputs = keras.Input((None, None, 3), name="crop")
    x = keras.layers.Resizing(ONET_SIZE, ONET_SIZE, name="onet_resize")(inputs)
    x = keras.layers.Rescaling(1 / 128, offset=-127.5 / 128, name="onet_scale")(x)
    for name, kind, *s in _LAYERS:
        if kind == "conv":
            x = keras.layers.Conv2D(s[0], s[1], padding="valid", name=name)(x)
        elif kind == "prelu":
            x = keras.layers.PReLU(shared_axes=[1, 2] if len(x.shape) == 4 else None, name=name)(x)
        elif kind == "pool":
            x = keras.layers.MaxPooling2D(s[0], s[1], padding=s[2], name=name)(x)
        elif kind == "permute":  # MTCNN's weights come from Caffe: width before height when flattened
            x = keras.layers.Permute((2, 1, 3), name=name)(x)
        elif kind == "flatten":
            x = keras.layers.Flatten(name=name)(x)
        else:
            x = keras.layers.Dense(s[0], name=name)(x)
    x = keras.layers.Reshape((1, 1, 256), name="onet_features")(x)
    model = keras.Model(inputs, x, name=ONET_BACKBONE)
    if weights == ONET_WEIGHTS:
        load_onet_weights(model)
    return model


def wheel_weights() -> list[np.ndarray]:
    """The ONet arrays shipped inside the `mtcnn` wheel (read from the installed package, never from the
    working directory, and without importing it: its `__init__` imports TensorFlow), in MTCNN's layer order."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or spec.origin is None:
        raise ModelConfigError(f"face_weights={ONET_WEIGHTS!r} needs the mtcnn package (pip install mtcnn==1.0.0)")
    source = Path(spec.origin).parent / "assets" / "weights" / "onet.lz4"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: the mtcnn package has no ONet weights file (reinstall mtcnn==1.0.0)")
    import joblib  # mtcnn's own dependency; it wrote the file

    return [np.asarray(a) for a in joblib.load(source)]


def load_onet_weights(model: keras.Model) -> None:
    """Copy the wheel's ONet arrays into the trunk's layers, checking every shape."""
    arrays = wheel_weights()
    i = 0
    for name in _WEIGHTED:
        layer = model.get_layer(name)
        want = [tuple(v.shape) for v in layer.weights]
        got = arrays[i:i + len(want)]
        if [a.shape for a in got] != want:
            raise ModelConfigError(f"the mtcnn wheel's ONet weights do not fit layer {name}: arrays "
                                   f"{[a.shape for a in got]} for {want} (an mtcnn other than 1.0.0?)")
        layer.set_weights(got)
        i += len(want)
