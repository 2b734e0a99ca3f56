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
