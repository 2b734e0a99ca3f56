"""`predict_submission`, shared by notebook 06 and `fivek predict`: three files beside each other,
one checked row per test image, and what made them on record."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from fivek_utils.modeling.backbones import tiny_backbone
from fivek_utils.modeling.inference import load_ensemble
from fivek_utils.modeling.models import build_model
from fivek_utils.workflows.predict import predict_submission, read_test_folder


@pytest.fixture
def run_and_test(tmp_path):
    run = tmp_path / "models" / "05-kfold"
    for k in range(2):
        (run / f"fold{k}").mkdir(parents=True)
        build_model(tiny_backbone(seed=k), None).save(run / f"fold{k}" / "model.keras")
    (run / "thresholds.json").write_text(json.dumps({"5k_mask": 0.5, "5k_distancing": 0.5}))
    (run / "config.yaml").write_text("image_size: 32\nbackbone: tiny\n")
    (run / "ensemble.json").write_text(json.dumps({"image_size": 32, "tta": ["identity", "flip"],
                                                   "base_rates": {"mask": 0.7, "distancing": 0.6}, "fallback_5k": 0}))
    test = tmp_path / "private_test"
    (test / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in (1, 2, 3):
        Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(test / "images" / f"{i}.jpg")
    pd.DataFrame({"image_id": [3, 1, 2, 4], "fname": ["3.jpg", "1.jpg", "2.jpg", "4.jpg"]}).to_csv(
        test / "private_test_meta.csv", index=False)  # 4.jpg is missing
    return run, test


def test_writes_submission_probabilities_and_record(run_and_test, tmp_path):
    run, test = run_and_test
    out = tmp_path / "result" / "submission.csv"
    (test / "images" / "5.jpg").write_bytes((test / "images" / "1.jpg").read_bytes())  # a photo the meta file does not list
    (test / "images" / ".DS_Store").write_bytes(b"\0")  # hidden files are not photos
    with pytest.warns(UserWarning) as warned:
        summary = predict_submission(load_ensemble(run), test, out, batch_size=2, progress=False)
    said = [str(w.message) for w in warned]
    assert any("1 test image" in m for m in said)
    assert any(m.startswith("1 file(s) in ") and "not in private_test_meta.csv and get no row" in m and "'5.jpg'" in m
               for m in said), said
    assert summary["rows"] == 4 and summary["fallback_rows"] == 1 and summary["models"] == 2
    assert summary["images_not_in_meta"] == 1
    written = sorted(p.name for p in out.parent.iterdir())
    assert written == [".submission.csv.lock",  # its lock (the holder record went with the holder)
                       "submission.csv", "submission_config.yaml", "submission_probs.csv"]
    assert pd.read_csv(out)["image_id"].tolist() == [3, 1, 2, 4]  # the meta file's order
    probs = pd.read_csv(out.with_name("submission_probs.csv"))
    assert probs["fallback"].tolist() == [False, False, False, True] and probs["p_mask"].iloc[3] == pytest.approx(0.7)
    record = yaml.safe_load(out.with_name("submission_config.yaml").read_text())
    assert record["models"] == ["fold0", "fold1"] and record["tta"] == ["identity", "flip"]
    assert record["fallback_rows"] == ["4.jpg"] and record["run_config"]["backbone"] == "tiny"
    assert record["images_not_in_meta"] == ["5.jpg"]


def test_tta_other_than_the_tuned_one_is_said(run_and_test, tmp_path):
    run, test = run_and_test
    with pytest.warns(UserWarning) as warned:
        summary = predict_submission(load_ensemble(run), test, tmp_path / "s.csv", tta=["identity"], batch_size=2, progress=False)
    said = [str(w.message) for w in warned]
    assert any(m.startswith("TTA ['identity'] is not the ['identity', 'flip']") for m in said), said
    assert summary["rows"] == 4
    with pytest.warns(UserWarning) as warned:  # the tuned one, named: nothing to say about it
        predict_submission(load_ensemble(run), test, tmp_path / "t.csv", tta=["identity", "flip"], batch_size=2, progress=False)
    assert not [w for w in warned if str(w.message).startswith("TTA")]


def test_a_folder_where_a_submission_file_goes_is_said_before_predicting(run_and_test, tmp_path):
    from fivek_utils.core.config import ConfigError

    run, test = run_and_test
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match=r"out: a folder where the submission writes a file; .*out/submission\.csv"):
        predict_submission(load_ensemble(run), test, tmp_path / "out", progress=False)
    (tmp_path / "s_probs.csv").mkdir()
    with pytest.raises(ConfigError, match=r"s_probs\.csv: a folder"):
        predict_submission(load_ensemble(run), test, tmp_path / "s.csv", progress=False)
    made = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".") and p.name not in ("models", "private_test"))
    assert made == ["out", "s_probs.csv"]  # nothing written (only the locks)


def test_a_test_folder_needs_images_and_one_meta_file(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match=r"exactly one \*_meta.csv"):
        read_test_folder(tmp_path)
    (tmp_path / "a_meta.csv").write_text("image_id,fname\n1,1.jpg\n")
    (tmp_path / "b_meta.csv").write_text("image_id,fname\n1,1.jpg\n")
    with pytest.raises(FileNotFoundError, match="a_meta.csv"):
        read_test_folder(tmp_path)


# --- a run folder with notebook 05's face stage --------------------------------------------------
@pytest.fixture
def stacked_run(tmp_path):
    """Two tiny fold models with their face models, a stacker fitted on random rows, and a synthetic test
    folder (truth boxes) with one broken and one missing image."""
    from fivek_utils.data.synth import generate_dataset
    from fivek_utils.modeling.face_model import build_face_model
    from types import SimpleNamespace

    from fivek_utils.core.config import Config
    from fivek_utils.data.faces import Detections
    from fivek_utils.modeling.stacker import STACK_FEATURES, fit_stacker
    from fivek_utils.workflows.stacking import StackResult, save_stack

    run = tmp_path / "models" / "05-kfold"
    for k in range(2):
        (run / f"fold{k}").mkdir(parents=True)
        build_model(tiny_backbone(seed=k), None).save(run / f"fold{k}" / "model.keras")
        build_face_model(tiny_backbone(width=8, seed=k)).save(run / f"fold{k}" / "face_model.keras")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(60, len(STACK_FEATURES))), columns=list(STACK_FEATURES))
    stacker = fit_stacker(X, rng.integers(0, 2, (60, 2)).astype(float), [str(i) for i in range(60)], np.arange(60) % 2)
    thresholds = {"mask": 0.5, "distancing": 0.5, "5k_mask": 0.4, "5k_distancing": 0.45, "f1_5K": 0.7}
    cfg = Config(face_stage=True, face_detector="truth", face_crop_size=32, face_margin=1.3, face_max_per_image=12)
    stack = StackResult(stacker, {}, None, {"stack": thresholds}, {"oof": 0})
    save_stack(cfg, stack, SimpleNamespace(detections=Detections({"name": "truth"}, {})), run)  # as notebook 05 does
    (run / "thresholds.json").write_text(json.dumps(thresholds))
    (run / "config.yaml").write_text("image_size: 32\nbackbone: tiny\nface_stage: true\n")
    (run / "ensemble.json").write_text(json.dumps({"image_size": 32, "tta": ["identity", "flip"], "face_stage": True,
                                                   "base_rates": {"mask": 0.7, "distancing": 0.6}, "fallback_5k": 0}))
    data = tmp_path / "synth"
    generate_dataset(data, n_train=1, n_test=6, seed=2, profile="closeup", workers=1, progress=False)
    test = data / "public_test"
    (test / "images" / "3.jpg").write_bytes(b"broken")
    (test / "images" / "5.jpg").unlink()
    return run, test


@pytest.mark.slow
@pytest.mark.compat  # about 10 s: in make test and make test-compat, not test-fast
def test_fivek_predict_uses_the_runs_stack(stacked_run, tmp_path):
    from conftest import run_fivek

    run, test = stacked_run
    out = tmp_path / "result" / "submission.csv"
    env = {**__import__("os").environ, "FIVEK_ROOT": str(tmp_path)}
    done = run_fivek("predict", "--models", str(run), "--test-dir", str(test), "--out", str(out), "--quiet", env=env)
    summary = json.loads(done.stdout)
    meta = pd.read_csv(test / "public_test_meta.csv")
    assert summary["rows"] == len(meta) == 6 and summary["fallback_rows"] == 2  # every row answered
    faces = summary["face_stage"]
    assert faces["detector"] == "truth" and faces["rows_answered_by_the_stack"] == 4
    assert faces["rows_without_a_face_answered_by_the_image_model"] == 0
    probs = pd.read_csv(out.with_name("submission_probs.csv"))
    assert {"p_image_mask", "p_image_distancing", "p_mask", "p_distancing"} <= set(probs.columns)
    readable = ~probs["fallback"]
    assert not np.allclose(probs.loc[readable, "p_mask"], probs.loc[readable, "p_image_mask"])  # the stack answered
    assert (probs.loc[~readable, "p_mask"] == 0.7).all()  # unreadable images: the base rates, as without a stack
    record = yaml.safe_load(out.with_name("submission_config.yaml").read_text())
    assert record["face_stage"]["faces"] > 0 and record["thresholds"]["5k_mask"] == 0.4


def test_predicting_real_photos_with_a_truth_run_says_why_it_cannot(stacked_run, tmp_path):
    run, test = stacked_run
    (test / "scenes.jsonl").unlink()  # what real photos look like to the run: no generator's boxes
    with pytest.raises(FileNotFoundError, match="face_detector='retinaface'"):
        predict_submission(load_ensemble(run), test, tmp_path / "s.csv", progress=False)
