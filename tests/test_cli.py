"""The command line: every command reaches its function with the right keywords, synth writes the
profile asked for, weights prints the table and the conversion report."""

import inspect
import json
from pathlib import Path

import keras
import pytest
import tensorflow as tf

from conftest import B0, TOL
from fivek_utils import cli
from fivek_utils.modeling.pretrained.sources import pretrained_table
from fivek_utils.workflows import bench


@pytest.mark.parametrize("which", ["progressive", "predict", "pipeline", "gpu"])
def test_every_bench_option_is_a_keyword_of_its_function(which):
    parser = cli.build_parser()
    args = parser.parse_args(["bench", which])
    options = {k for k in vars(args) if k not in ("func", "command", "which")}
    keywords = set(inspect.signature(getattr(bench, f"bench_{which}")).parameters)
    assert options <= keywords, options - keywords


def test_predict_takes_a_run_folder_as_models(monkeypatch):
    seen = {}
    monkeypatch.setattr(bench, "bench_predict", lambda **kw: seen.update(kw))
    args = cli.build_parser().parse_args(["bench", "predict", "--models", "models/05-kfold", "--repeats", "1"])
    assert args.func(args) == 0 and seen["models_dir"] == "models/05-kfold" and seen["repeats"] == 1


def test_synth_writes_the_profile_asked_for(tmp_path, capsys):
    assert cli.main(["synth", "--out", str(tmp_path / "d"), "--n-train", "4", "--n-test", "0", "--profile", "realistic",
                     "--workers", "1", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["profile"] == "realistic" and summary["train"]["images"] == 4
    assert json.loads((tmp_path / "d" / "synth.json").read_text())["profile"] == "realistic"


def test_errors_are_one_line_naming_the_problem(tmp_path, capsys):
    assert cli.main(["describe", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fivek describe: no split found under") and len(err.splitlines()) == 1
    assert cli.main(["weights", "convert", "--backbone", "EfficientNetB0"]) == 2
    assert "only for EfficientNetV2" in capsys.readouterr().err


def test_weights_table_is_the_packages_table(capsys):
    assert cli.main(["weights", "table"]) == 0
    assert capsys.readouterr().out.strip() == pretrained_table()


def test_weights_convert_command_prints_the_conversion_report(sm_b0_m11, isolated, capsys):
    assert cli.main(["weights", "convert", "--backbone", B0, "--source", str(sm_b0_m11)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["savedmodel"] == str(sm_b0_m11.resolve())
    assert report["input_transform"] == "minus1_1" and report["max_rel_error"] < TOL
    assert report["feature_width"] == 1280
    assert (report["keras"], report["tensorflow"]) == (keras.__version__, tf.__version__)
    assert Path(report["report"]).parent == isolated / "pretrained" and Path(report["report"]).exists()
    # a second run reads the cached conversion's report: the same choices
    assert cli.main(["weights", "convert", "--backbone", B0, "--source", str(sm_b0_m11)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert {k: again[k] for k in ("input_transform", "max_rel_error", "created")} == {
        k: report[k] for k in ("input_transform", "max_rel_error", "created")}
