"""Test-time augmentation, the fold ensemble, the fallback for unreadable images, and the
submission format with its checker (fast: tiny models saved and reloaded for real)."""

import json

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fivek_utils.inference import check_tta, load_ensemble, predict_split, predict_tta
from fivek_utils.models import decide_5k
from fivek_utils.submission import SubmissionError, check_submission, write_submission


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
    from fivek_utils.images import load_images

    decoded = load_images([meta["path"][0], meta["path"][2]], 32)
    expected = ens.predict(decoded.images, ens.tta, 2).mean(axis=(0, 1))
    ok = frame[~frame["fallback"]]
    assert np.allclose(ok[["p_mask", "p_distancing"]].to_numpy(), expected, atol=1e-5)
    assert ok["5K"].tolist() == decide_5k(expected[:, 0], expected[:, 1], 0.4, 0.6).astype(int).tolist()


def test_run_folder_without_ensemble_info_is_refused(run_dir):
    (run_dir / "ensemble.json").unlink()
    with pytest.raises(FileNotFoundError, match="ensemble.json"):
        load_ensemble(run_dir)


# --- submission format -----------------------------------------------------------------------------
@pytest.fixture
def meta_path(tmp_path):
    path = tmp_path / "public_test_meta.csv"
    pd.DataFrame({"image_id": [3, 1, 2], "fname": ["c.jpg", "a.jpg", "b.jpg"]}).to_csv(path, index=False)
    return path


def written(tmp_path, rows, name="submission.csv"):
    frame = pd.DataFrame(rows, columns=["image_id", "fname", "5K"])
    frame["p_5k"] = 0.5
    return write_submission(frame, tmp_path / name)


def test_written_submission_is_exactly_the_judged_format(tmp_path, meta_path):
    path = written(tmp_path, [(3, "c.jpg", True), (1, "a.jpg", False), (2, "b.jpg", 1)])
    assert path.read_text().splitlines() == ["image_id,fname,5K", "3,c.jpg,1", "1,a.jpg,0", "2,b.jpg,1"]
    assert path.with_name("submission_probs.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]  # atomic: no leftovers
    (tmp_path / "plain.csv").write_text("x")  # readable by whoever reads a plainly written file (a grader)
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain.csv").stat().st_mode & 0o777
    assert check_submission(path, meta_path) == {"file": str(path), "rows": 3, "positives": 2, "positive_rate": 0.6667}


@pytest.mark.parametrize("rows, problem", [
    ([(3, "c.jpg", 1), (1, "a.jpg", 0)], "1 test image"),
    ([(3, "c.jpg", 1), (1, "a.jpg", 0), (2, "b.jpg", 1), (4, "d.jpg", 0)], "not in the meta file"),
    ([(3, "c.jpg", 1), (1, "a.jpg", 0), (2, "b.jpg", 1), (2, "b.jpg", 1)], "duplicated"),
    ([(3, "c.jpg", 1), (1, "a.jpg", 0.7), (2, "b.jpg", 1)], "not 0/1"),
    ([(1, "a.jpg", 0), (3, "c.jpg", 1), (2, "b.jpg", 1)], "order"),
    ([(3, "c.jpg", 1), (1, "b.jpg", 0), (2, "a.jpg", 1)], "have no row"),  # names swapped between ids
])
def test_checker_names_the_problem(tmp_path, meta_path, rows, problem):
    path = tmp_path / "bad.csv"
    pd.DataFrame(rows, columns=["image_id", "fname", "5K"]).to_csv(path, index=False)
    with pytest.raises(SubmissionError, match=problem):
        check_submission(path, meta_path)


def test_checker_wants_the_capital_k_header(tmp_path, meta_path):
    path = tmp_path / "lower.csv"
    path.write_text("image_id,fname,5k\n3,c.jpg,1\n1,a.jpg,0\n2,b.jpg,1\n")
    with pytest.raises(SubmissionError, match="capital K"):
        check_submission(path, meta_path)


def test_broken_run_folders_name_the_file(run_dir):
    from fivek_utils.config import ConfigError

    (run_dir / "fold1" / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match=r"fold1/model.keras: cannot load"):
        load_ensemble(run_dir)
    (run_dir / "ensemble.json").write_text('{"image_size": 32}')
    with pytest.raises(ConfigError, match=r"ensemble.json lacks \['tta'"):
        load_ensemble(run_dir)
    (run_dir / "thresholds.json").write_text("{not json")
    with pytest.raises(ConfigError, match="thresholds.json: not valid JSON"):
        load_ensemble(run_dir)


@pytest.mark.parametrize("content, problem", [(b"", "is empty"), (b"image_id,fname,5K\n1,a.jpg\n", "line 2 has 2"),
                                              (b"\xff\xfe\x00garbage", "not UTF-8")])
def test_checker_names_unreadable_files(tmp_path, meta_path, content, problem):
    path = tmp_path / "odd.csv"
    path.write_bytes(content)
    with pytest.raises(SubmissionError, match=problem):
        check_submission(path, meta_path)
    good = written(tmp_path, [(3, "c.jpg", 1), (1, "a.jpg", 0), (2, "b.jpg", 1)])
    with pytest.raises(SubmissionError, match="is a folder"):
        check_submission(good, tmp_path)
