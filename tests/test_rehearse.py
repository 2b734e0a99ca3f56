"""The rehearsal of configs/full.yaml (`fivek rehearse`, run whole by `make test-rehearse`): what its overlay may
change, the preflight that names a broken full.yaml setting, the weight lookup where a user's weights would
be, Keras's ImageNet-1k file from a local folder, the data with real faces, and mixed precision on a CPU."""

import pandas as pd
import pytest
import yaml

from fivek_utils.core.config import CODE_ROOT, ConfigError
from fivek_utils.platform import rehearse as rh
from fivek_utils.workflows.runner import check_pipeline, list_notebooks

FULL = CODE_ROOT / "configs" / "full.yaml"
OVERLAY = CODE_ROOT / "configs" / "rehearse.yaml"


def broken_full(tmp_path, section: str, key: str, value, **more) -> str:
    """full.yaml with one notebook setting (and any `more`) changed, as a user might."""
    full = yaml.safe_load(FULL.read_text())
    full["notebooks"][section].update({key: value, **more})
    path = tmp_path / "full.yaml"
    path.write_text(yaml.safe_dump(full, sort_keys=False))
    return str(path)


def test_the_overlay_keeps_every_full_yaml_setting_but_data_sizes_and_epochs():
    reh = rh.load_rehearsal(FULL, OVERLAY)
    assert reh.changes and all(key in rh.SHRINKABLE for _, key, _, _ in reh.changes)
    needs = rh.preflight(reh.pipeline)
    pairs = {(n.notebook[:2], n.backbone, n.weights, n.face) for n in needs}
    assert pairs == {("02", "EfficientNetB0", "imagenet", False), ("03", "EfficientNetV2S", "imagenet21k", False),
                     ("04", "EfficientNetV2S", "imagenet21k", False), ("05", "EfficientNetV2S", "imagenet21k", False),
                     ("05", "EfficientNetV2B0", "imagenet21k", True)}
    nb05 = reh.pipeline["notebooks"]["05"]
    assert nb05["folds"] == 5 and nb05["face_stage"] is True and reh.pipeline["face_detector"] == "retinaface"
    assert reh.pipeline["mixed_precision"] == "auto" and reh.pipeline["notebooks"]["04"]["progressive_preset"] == "S"
    assert "prepare" not in reh.pipeline
    check_pipeline(reh.pipeline, list_notebooks(), "the rehearsal")  # what `fivek run` checks first


def test_an_overlay_that_changes_more_than_what_shrinks_is_refused(tmp_path):
    over = yaml.safe_load(OVERLAY.read_text())
    over["notebooks"]["03"]["backbone"] = "EfficientNetV2B0"
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(over))
    with pytest.raises(ConfigError, match=r"notebooks\.03\.backbone of 03-efficientnetv2-21k\.ipynb"):
        rh.load_rehearsal(FULL, path)


def test_a_misspelled_backbone_in_full_yaml_fails_naming_the_setting(tmp_path):
    reh = rh.load_rehearsal(broken_full(tmp_path, "03", "backbone", "EfficientNetV2-S"), OVERLAY)
    with pytest.raises(ConfigError, match=r"03-efficientnetv2-21k: notebooks\.03\.backbone: backbone='EfficientNetV2-S' is not supported"):
        rh.preflight(reh.pipeline)


def test_a_face_model_on_mtcnns_face_network_needs_no_weights_placed_and_a_wrong_pair_is_named(tmp_path):
    # its weights ship inside the mtcnn wheel: nothing to download, look up or stand in for
    reh = rh.load_rehearsal(broken_full(tmp_path, "05", "face_backbone", "mtcnn_onet", face_weights="mtcnn"), OVERLAY)
    needs = rh.preflight(reh.pipeline)
    assert ("mtcnn_onet", "mtcnn", True) in {(n.backbone, n.weights, n.face) for n in needs}
    assert rh.place_weights([n for n in needs if n.face], rh.Sites(tmp_path), say=lambda *_: None) == {}
    assert rh.check_lookup([n for n in needs if n.face], rh.Sites(tmp_path)) == {}
    reh = rh.load_rehearsal(broken_full(tmp_path, "05", "face_backbone", "EfficientNetV2B0", face_weights="mtcnn"), OVERLAY)
    with pytest.raises(ConfigError, match=r"05-kfold-ensemble.*face_weights='mtcnn' with face_backbone='EfficientNetV2B0'"):
        rh.preflight(reh.pipeline)


def test_a_checkpoint_without_a_kaggle_model_version_fails_naming_the_setting(tmp_path):
    # EfficientNetV2B2's ImageNet-21k checkpoint has no public Kaggle Models version (sources.KAGGLE_VERSIONS)
    reh = rh.load_rehearsal(broken_full(tmp_path, "05", "face_backbone", "EfficientNetV2B2"), OVERLAY)
    with pytest.raises(ConfigError) as err:
        rh.preflight(reh.pipeline)
    assert "notebooks.05.face_weights='imagenet21k' with notebooks.05.face_backbone='EfficientNetV2B2'" in str(err.value)
    assert "names no version of google/efficientnet-v2/tensorFlow2/imagenet21k-b2-feature-vector" in str(err.value)


def test_a_weight_source_missing_where_a_user_s_would_be_fails_naming_the_setting(tmp_path):
    needs = rh.preflight(rh.load_rehearsal(FULL, OVERLAY).pipeline)
    with pytest.raises(ConfigError) as err:
        rh.check_lookup(needs, rh.Sites(tmp_path))  # nothing placed: every route is tried and named
    msg = str(err.value)
    assert "notebooks.03.weights='imagenet21k' with notebooks.03.backbone='EfficientNetV2S'" in msg
    assert str(tmp_path / "kaggle" / "input") in msg and str(tmp_path / "kagglehub") in msg
    assert "FIVEK_OFFLINE=1" in msg


@pytest.mark.slow
@pytest.mark.compat  # two stand-in exports, about 6 s: not in make test-fast
def test_the_lookup_finds_an_attached_kaggle_model_and_a_kagglehub_download(tmp_path):
    """Two small stand-ins placed as the rehearsal places them are found by the kit's own lookup."""
    sites = rh.Sites(tmp_path)
    needs = [rh.WeightNeed("03", "EfficientNetV2B0", "imagenet21k", "backbone", "weights"),
             rh.WeightNeed("05", "EfficientNetV2B1", "imagenet21k", "face_backbone", "face_weights", face=True)]
    placed = rh.place_weights(needs, sites, say=lambda *_: None)
    assert placed[("b0", "imagenet21k")] == tmp_path / "kaggle/input/efficientnet-v2/tensorflow2/imagenet21k-b0-feature-vector/1"
    assert placed[("b1", "imagenet21k")] == (tmp_path / "kagglehub/models/google/efficientnet-v2/tensorFlow2"
                                             / "imagenet21k-b1-feature-vector/1")
    assert rh.check_lookup(needs, sites) == placed


def test_the_rehearsal_data_holds_real_faces_and_no_generator_truth(tmp_path):
    from fivek_utils.data.rehearsal import ensure_rehearsal_dataset
    from fivek_utils.modeling.face_detector import MTCNNDetector
    from PIL import Image

    out = tmp_path / "rehearse"
    made = ensure_rehearsal_dataset(out, n_train=4, n_test=2, photos_train=3, photos_test=1, seed=0)
    meta = pd.read_csv(out / "train" / "train_meta.csv")
    assert len(meta) == 7 and meta["image_id"].is_unique
    photos = meta[meta["image_id"].isin(made["photo_ids"]["train"])]
    assert photos[["mask", "distancing", "5k"]].values.tolist() == [[0, 1, 0]] * 3
    assert len(pd.read_csv(out / "public_test" / "public_test_meta.csv")) == 3
    assert not list(out.rglob("scenes.jsonl"))  # like real data: nothing leans on the generator's truth
    assert ensure_rehearsal_dataset(out, n_train=4, n_test=2, photos_train=3, photos_test=1, seed=0)["reused"]
    detector = MTCNNDetector(20, 0.9)
    fname = photos["fname"].iloc[0]
    with Image.open(out / "train" / "images" / fname) as image:
        assert len(detector.detect(fname, image.convert("RGB"))) == 1


def test_the_rehearsal_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    from fivek_utils.data.rehearsal import ensure_rehearsal_dataset

    (tmp_path / "zalo" / "train").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not written by the rehearsal"):
        ensure_rehearsal_dataset(tmp_path / "zalo", n_train=2, n_test=1, photos_train=1, photos_test=1)


def test_mixed_precision_auto_resolves_and_wraps_the_optimizer_as_on_a_gpu():
    lines = rh.precision_report(rh.load_rehearsal(FULL, OVERLAY).pipeline)
    text = "\n".join(lines)
    assert "mixed_precision='auto': this CPU float32" in text and "a GPU mixed_float16" in text
    assert "a TPU mixed_bfloat16" in text
    assert "optimizer wrapped in LossScaleOptimizer" in text and "compute float16" in text
    assert "untested" in text
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"  # restored


def test_a_failed_notebook_is_reported_with_the_full_yaml_settings_it_ran_with():
    reh = rh.load_rehearsal(FULL, OVERLAY)
    output = "[5/6] 05-kfold-ensemble FAILED after 3 s\nPipelineError: 05-kfold-ensemble.ipynb failed in cell 12 (cell index 20)"
    stem = rh.FAILED.search(output).group(1)
    text = rh._failure_settings(reh, stem)
    assert text.startswith("05-kfold-ensemble.ipynb ran with these full.yaml settings:")
    assert "notebooks.05.face_weights='imagenet21k'" in text and "face_detector='retinaface'" in text
    assert "notebooks.05.folds=5" in text and "epochs_finetune 12 -> 1" in text
