"""The one Config: bad values are errors naming the setting, unknown keys are typos, it round-trips
through YAML, and model errors are config errors (the command line prints them in one line)."""

import pytest
import yaml

from fivek_utils.core.config import Config, ConfigError, ModelConfigError, load_yaml


@pytest.mark.parametrize("change, setting", [({"image_size": 16}, "image_size"), ({"val_fraction": 0.7}, "val_fraction"),
                                             ({"dropout": 1.0}, "dropout"), ({"folds": 1}, "folds"),
                                             ({"fold_recipe": "bagging"}, "fold_recipe"), ({"batch_size": 0}, "batch_size")])
def test_values_no_run_can_use_are_named(change, setting):
    with pytest.raises(ConfigError, match=setting):
        Config(**change)


@pytest.mark.parametrize("change, says", [
    ({"face_stage": "false"}, "face_stage='false': must be true or false (in YAML, true and false without quotes)"),
    ({"freeze_batchnorm": "no"}, "freeze_batchnorm='no': must be true or false or null"),
    ({"epochs_finetune": 1.5}, "epochs_finetune=1.5: must be a whole number"),
    ({"image_size": "224"}, "image_size='224': must be a whole number"),
    ({"unfreeze_blocks": "all"}, "unfreeze_blocks='all': must be a whole number"),
    ({"seed": True}, "seed=True: must be a whole number"),
    ({"lr_finetune": "3e-4"}, "lr_finetune='3e-4': must be a number"),
    ({"weights": 5}, "weights=5: must be a text or null"),
    ({"tta": ["identity", 1]}, "tta=['identity', 1]: must be a list of texts")])
def test_a_setting_of_the_wrong_kind_is_named(change, says):
    """A quoted "false" would be a true string and a face stage would run; 1.5 epochs would fail inside
    Keras after the first phase had trained."""
    with pytest.raises(ConfigError) as err:
        Config(**change)
    assert str(err.value).startswith(says)


def test_safe_conversions_of_a_settings_kind():
    import numpy as np
    from pathlib import Path

    cfg = Config(epochs_head=2.0, seed=np.int64(7), face_stage=np.bool_(True), data_dir=Path("data/raw/x"), lr_head=1, weights=None)
    assert (cfg.epochs_head, cfg.seed, cfg.face_stage, cfg.data_dir, cfg.lr_head) == (2, 7, True, "data/raw/x", 1)
    assert type(cfg.epochs_head) is int and type(cfg.seed) is int and type(cfg.face_stage) is bool
    assert Config.check_setting("face_min_confidence", 0.5) == 0.5
    with pytest.raises(ConfigError, match="face_min_size='8'"):
        Config.check_setting("face_min_size", "8")


def test_unknown_keys_are_typos_and_params_take_only_settings():
    with pytest.raises(ConfigError, match=r"\['imgae_size'\]"):
        Config.from_dict({"imgae_size": 64})
    cfg = Config.from_params({"image_size": 64, "gallery_size": 9, "tta": "identity, flip", "weights": "None"})
    assert (cfg.image_size, cfg.tta, cfg.weights) == (64, ["identity", "flip"], None)


def test_saved_config_reads_back_the_same(tmp_path):
    cfg = Config(image_size=96, weights="imagenet21k", tta=["identity"])
    path = cfg.save(tmp_path / "run" / "config.yaml")
    assert Config.from_dict(yaml.safe_load(path.read_text())) == cfg
    assert cfg.batchnorm_frozen and not cfg.replace(weights=None).batchnorm_frozen


def test_yaml_files_that_are_not_mappings_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="bad.yaml: expected a mapping"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "none.yaml")
    assert issubclass(ModelConfigError, ConfigError)


def test_the_other_spellings_a_setting_takes_pass_the_pipeline_check_too():
    """What Config accepts, `fivek run`'s check before the notebooks accepts: a bare YAML off (false) for
    faces_beside_images and mixed_precision, tta as one text, student_backbone null, numpy numbers."""
    import numpy as np

    for name, value, becomes in [("faces_beside_images", False, "off"), ("mixed_precision", False, "off"),
                                 ("tta", "identity, flip", ["identity", "flip"]), ("student_backbone", None, ""),
                                 ("epochs_head", np.float32(2.0), 2)]:
        assert Config.check_setting(name, value) == becomes and getattr(Config(**{name: value}), name) == becomes
    assert type(Config(lr_head=np.float32(0.5)).lr_head) is float  # a config.yaml holds Python's numbers
    with pytest.raises(ConfigError, match=r"lr_finetune='3e-4': must be a number \(YAML reads a number like 3e-4"):
        Config(lr_finetune="3e-4")
    with pytest.raises(ConfigError, match=r"strategy=True: must be a text \(in YAML, quote it"):
        Config(strategy=True)
