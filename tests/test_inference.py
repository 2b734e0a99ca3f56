"""Test-time augmentation, the fold ensemble as one graph, the fallback for unreadable images, and
broken run folders (fast: tiny models saved and reloaded for real)."""

import json

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fivek_utils.core.config import ConfigError
from fivek_utils.core.io import save_keras
from fivek_utils.core.labels import decide_5k
from fivek_utils.modeling.inference import (
    check_tta,
    ensemble_graph,
    load_ensemble,
    predict_probs,
    predict_split,
    predict_tta,
    save_ensemble,
)


def tiny_model(seed: int) -> keras.Model:
    """Two sigmoid heads over a convolution that is not mirror-symmetric."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D(8)(x))  # keeps where things are
    return keras.Model(inp, {"mask": keras.layers.Dense(1, "sigmoid", name="mask")(x),
                             "distancing": keras.layers.Dense(1, "sigmoid", name="distancing")(x)})


def images(n=5, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_flip_tta_is_the_model_on_mirrored_images():
    model, x = tiny_model(0), images()
    both = predict_tta(model, x, ["identity", "flip"], batch_size=2)
    direct = model.predict(x[:, :, ::-1], verbose=0)
    assert both.shape == (2, 5, 2)
    assert np.allclose(both[1, :, 0], direct["mask"].ravel(), atol=1e-5)
    assert not np.allclose(both[0], both[1], atol=1e-4)  # the flip really changes the input
    with pytest.raises(ValueError, match="rotate"):
        check_tta(["identity", "rotate"])


@pytest.fixture
def run_dir(tmp_path):
    """A k-fold run folder as notebook 05 writes it: two fold models, thresholds, config, ensemble.json."""
    run = tmp_path / "05-kfold"
    for k in range(2):
        (run / f"fold{k}").mkdir(parents=True)
        tiny_model(k).save(run / f"fold{k}" / "model.keras")
    (run / "thresholds.json").write_text(json.dumps({"mask": 0.5, "distancing": 0.5, "5k_mask": 0.4, "5k_distancing": 0.6, "f1_5K": 0.7}))
    (run / "config.yaml").write_text("image_size: 32\n")
    (run / "ensemble.json").write_text(json.dumps({"image_size": 32, "tta": ["identity", "flip"],
                                                   "base_rates": {"mask": 0.8, "distancing": 0.6, "5K": 0.5}, "fallback_5k": 1}))
    return run


def test_ensemble_averages_folds_and_augmentations_and_falls_back_per_row(run_dir, tmp_path):
    ens = load_ensemble(run_dir)
    assert ens.names == ["fold0", "fold1"] and ens.tta == ["identity", "flip"] and ens.image_size == 32
    folder = tmp_path / "images"
    folder.mkdir()
    x = images(3, seed=1)
    for i in range(3):
        Image.fromarray(x[i]).save(folder / f"{i}.jpg", quality=95)
    (folder / "1.jpg").write_bytes(b"not a jpeg")  # unreadable; 3.jpg is missing
    meta = pd.DataFrame({"image_id": [10, 11, 12, 13], "fname": [f"{i}.jpg" for i in range(4)]})
    meta["path"] = [str(folder / f) for f in meta["fname"]]
    with pytest.warns(UserWarning, match="2 of 4 images unreadable"), pytest.warns(UserWarning, match="2 test image"):
        pred = predict_split(ens, meta, tta=ens.tta, batch_size=2, progress=False)

    frame = pred.frame
    assert frame["image_id"].tolist() == [10, 11, 12, 13]  # one row per test image, in order
    assert frame["fallback"].tolist() == [False, True, False, True] and set(pred.failed) == {"1.jpg", "3.jpg"}
    assert frame.loc[frame["fallback"], "p_mask"].eq(0.8).all() and frame.loc[frame["fallback"], "5K"].eq(1).all()
    # the readable rows: mean over 2 folds x 2 augmentations of the decoded, letterboxed image
    from fivek_utils.data.images import load_images

    decoded = load_images([meta["path"][0], meta["path"][2]], 32)
    expected = np.mean([predict_tta(m, decoded.images, ens.tta, 2) for m in ens.models], axis=(0, 1))
    ok = frame[~frame["fallback"]]
    assert np.allclose(ok[["p_mask", "p_distancing"]].to_numpy(), expected, atol=1e-5)
    assert ok["5K"].tolist() == decide_5k(expected[:, 0], expected[:, 1], 0.4, 0.6).astype(int).tolist()


def test_run_folder_without_ensemble_info_is_refused(run_dir):
    (run_dir / "ensemble.json").unlink()
    with pytest.raises(FileNotFoundError, match="ensemble.json"):
        load_ensemble(run_dir)


def test_broken_run_folders_name_the_file(run_dir):
    (run_dir / "fold1" / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match=r"fold1/model.keras: cannot load"):
        load_ensemble(run_dir)
    (run_dir / "ensemble.json").write_text('{"image_size": 32}')
    with pytest.raises(ConfigError, match=r"ensemble.json lacks \['tta'"):
        load_ensemble(run_dir)
    (run_dir / "thresholds.json").write_text("{not json")
    with pytest.raises(ConfigError, match="thresholds.json: not valid JSON"):
        load_ensemble(run_dir)




def test_the_ensemble_is_one_graph_saved_beside_the_folds_and_used_when_loaded(run_dir):
    x = images(6, seed=3)
    members = [keras.saving.load_model(run_dir / f"fold{k}" / "model.keras") for k in range(2)]
    by_hand = np.mean([predict_tta(m, x, ["identity", "flip"], 4) for m in members], axis=(0, 1))
    graph = ensemble_graph(members, ["identity", "flip"])
    assert sum(isinstance(layer, keras.Model) for layer in graph.layers) == 2
    np.testing.assert_allclose(predict_probs(graph, x, 4), by_hand, atol=1e-6)

    path = save_ensemble(run_dir, ["identity", "flip"])
    assert path == run_dir / "ensemble.keras"
    ens = load_ensemble(run_dir)
    assert ("identity", "flip") in ens.graphs  # the saved graph, not a rebuilt one
    np.testing.assert_allclose(ens.predict(x, batch_size=4), by_hand, atol=1e-6)
    np.testing.assert_allclose(ens.predict(x, ["identity"], 4), np.mean([predict_tta(m, x, ["identity"], 4)[0] for m in members], axis=0), atol=1e-6)

    save_keras(ensemble_graph(members[:1], ["identity", "flip"]), run_dir / "ensemble.keras")  # stale: one fold
    with pytest.raises(ConfigError, match="holds 1 model"):
        load_ensemble(run_dir)
