"""MTCNN's face network (ONet) as the face model's pretrained backbone, its weights from the mtcnn wheel:
the kit's Keras trunk is MTCNN's own network (same features, and its own face / not-face layer still
tells the astronaut's face from a wall), a face model on it saves and loads as the runs do, and the
settings that cannot work are refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fivek_utils.core.config import PHOTOS_DIR, Config, ConfigError
from fivek_utils.data.images import open_rgb
from fivek_utils.modeling.catalog import check_backbone
from fivek_utils.modeling.face_model import build_face_model, predict_faces
from fivek_utils.modeling.inference import load_keras_file
from fivek_utils.modeling.onet import ONET_SIZE, onet_backbone, wheel_weights
from test_face_detector import FACE, masked


def crop(image: Image.Image, box, size: int = ONET_SIZE) -> np.ndarray:
    return np.asarray(image.crop(box).resize((size, size), Image.BILINEAR), dtype="float32")


@pytest.fixture(scope="module")
def trunk():
    return onet_backbone("mtcnn")


@pytest.mark.slow
@pytest.mark.compat  # builds two networks: in make test and make test-compat, not test-fast
def test_the_trunk_is_mtcnns_own_network_and_still_knows_a_face(trunk):
    from mtcnn.network.onet import ONet

    theirs = ONet()
    theirs.build()
    theirs.set_weights(wheel_weights())
    astronaut = open_rgb(PHOTOS_DIR / "astronaut.jpg")
    wall = (0, 300, 112, 412)  # the lower left corner of the photo: no face
    x = np.stack([crop(astronaut, FACE), crop(masked(astronaut), FACE), crop(astronaut, wall)])
    ours = trunk.predict(x, verbose=0).reshape(len(x), 256)
    h = (x - 127.5) / 128  # MTCNN's own scaling, through its own layers
    for name in ("conv1", "prelu1", "maxpool1", "conv2", "prelu2", "maxpool2", "conv3", "prelu3", "maxpool3",
                 "conv4", "prelu4", "permute", "flatten", "fc5", "prelu5"):
        h = getattr(theirs, name)(h)
    np.testing.assert_allclose(ours, np.asarray(h), rtol=1e-5, atol=1e-5)
    p_face = np.asarray(theirs.fc6_3(ours))[:, 1]  # MTCNN's face / not-face layer on our features
    assert p_face[0] > 0.9 and p_face[2] < 0.5, p_face
    # a drawn mask moves the features further than the crop's mirror image does
    mirrored = trunk.predict(x[:1, :, ::-1], verbose=0).reshape(256)
    assert np.linalg.norm(ours[1] - ours[0]) > np.linalg.norm(mirrored - ours[0])


def test_any_crop_size_is_resized_to_the_networks_48_px(trunk):
    astronaut = open_rgb(PHOTOS_DIR / "astronaut.jpg")
    at48 = trunk.predict(crop(astronaut, FACE)[None], verbose=0)
    at96 = trunk.predict(crop(astronaut, FACE, 96)[None], verbose=0)
    assert at48.shape == at96.shape == (1, 1, 1, 256)
    assert np.corrcoef(at48.ravel(), at96.ravel())[0, 1] > 0.95


@pytest.mark.slow
@pytest.mark.compat  # saves and loads a .keras file: about 5 s
def test_a_face_model_on_it_saves_and_loads_as_a_run_does(tmp_path):
    model = build_face_model("mtcnn_onet", "mtcnn", 0.1)
    assert model.get_layer("mtcnn_onet").count_params() == sum(a.size for a in wheel_weights()[:-6])  # trunk only
    crops = np.random.default_rng(0).uniform(0, 255, (5, 40, 40, 3)).astype("float32")
    path = tmp_path / "face_model.keras"
    model.save(path)
    again = load_keras_file(path)
    np.testing.assert_allclose(predict_faces(again, crops), predict_faces(model, crops), rtol=1e-6)
    random = build_face_model("mtcnn_onet", None, 0.1)  # None: a random start, for a control
    assert not np.allclose(random.get_layer("mtcnn_onet").get_layer("conv1").get_weights()[0],
                           model.get_layer("mtcnn_onet").get_layer("conv1").get_weights()[0])


@pytest.mark.parametrize("settings, says", [
    ({"backbone": "mtcnn_onet"}, "face_backbone"),
    ({"face_backbone": "EfficientNetV2B0", "face_weights": "mtcnn"}, "face_backbone 'mtcnn_onet'"),
    ({"face_backbone": "mtcnn_onet", "face_weights": "imagenet21k"}, "'mtcnn'"),
])
def test_settings_that_cannot_work_are_refused_by_name(settings, says):
    with pytest.raises(ConfigError, match=says):
        Config(**settings)


def test_it_is_a_face_backbone_only():
    assert Config(face_backbone="mtcnn_onet", face_weights="mtcnn").face_weights == "mtcnn"
    assert check_backbone("mtcnn_onet", face=True) == "mtcnn_onet"
    with pytest.raises(ConfigError, match="mtcnn_onet.*not supported"):
        check_backbone("mtcnn_onet")
    with pytest.raises(ConfigError, match="face_weights"):
        onet_backbone("imagenet")


@pytest.mark.slow  # a fresh interpreter imports JAX: about 10 s
def test_it_builds_with_its_weights_where_tensorflow_is_not_installed():
    """And RetinaFace's trunk, whose weights are read from a TensorFlow graph, says what it needs there."""
    from conftest import run_without_tensorflow

    proc = run_without_tensorflow(
        "import numpy as np\n"
        "from fivek_utils.core.config import ConfigError\n"
        "from fivek_utils.modeling.face_model import build_face_model\n"
        "m = build_face_model('mtcnn_onet', 'mtcnn')\n"
        "print('logit', float(np.asarray(m(np.full((1, 40, 40, 3), 128.0, 'float32')))[0, 0]))\n"
        "try:\n"
        "    build_face_model('retinaface_mobilenetv2', 'retinaface')\n"
        "except ConfigError as exc:\n"
        "    print('refused:', exc)\n")
    assert "logit" in proc.stdout
    assert "refused: face_weights='retinaface'" in proc.stdout and "needs TensorFlow" in proc.stdout, proc.stdout
