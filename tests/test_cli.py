"""The command line: every command reaches its function with the right keywords, synth writes the
profile asked for, weights prints the table and the conversion report, and every command takes the
same --quiet / --verbose pair (`fivek run` and `fivek bench` keep the libraries' noise in a log)."""

import inspect
import json
import os
import re
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


def test_predict_takes_a_run_folder_as_models(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(bench, "BENCH_DIR", tmp_path)  # where its log goes
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


# --- one command line: the same --quiet / --verbose pair everywhere ---------------------------------
MINIMAL_ARGS = {  # enough for each subcommand to parse
    "synth": ["--out", "d"], "describe": ["d"], "run": ["--config", "c.yaml"],
    "predict": ["--models", "m", "--test-dir", "t", "--out", "o.csv"], "check-submission": ["s.csv", "--meta", "m.csv"],
    "weights": ["table"], "kaggle": [], "bench progressive": [], "bench predict": [], "bench pipeline": [],
    "bench gpu": [], "bench faces": [], "faces": ["d"], "cache": [], "rehearse": [],
}


def subcommands(parser, prefix=()) -> list[tuple[str, ...]]:
    """Every leaf command of the parser, e.g. ('bench', 'gpu')."""
    import argparse

    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += subcommands(sub, (*prefix, name)) or [(*prefix, name)]
    return found


def test_every_subcommand_takes_the_same_quiet_and_verbose():
    parser = cli.build_parser()
    commands = [" ".join(c) for c in subcommands(parser)]
    assert sorted(commands) == sorted(MINIMAL_ARGS), "a new subcommand: add its minimal arguments above"
    for command, rest in MINIMAL_ARGS.items():
        words = command.split()
        for flags, expected in (([], (False, False)), (["--quiet"], (True, False)), (["-q"], (True, False)),
                                (["--verbose"], (False, True)), (["-v"], (False, True))):
            args = parser.parse_args([*words, *rest, *flags])
            assert (getattr(args, "quiet", False), getattr(args, "verbose", False)) == expected, (command, flags)
        with pytest.raises(SystemExit):
            parser.parse_args([*words, *rest, "--quiet", "--verbose"])
    assert cli.build_parser().parse_args(["bench", "--quiet", "gpu"]).quiet  # before bench's subcommand too


def test_quiet_and_verbose_on_both_sides_of_bench_subcommand_is_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--quiet", "gpu", "--verbose"])
    assert "contradict" in capsys.readouterr().err


def tiny_notebook(folder: Path) -> Path:
    """01-hello.ipynb: a parameters cell, a printed line, and a line written straight to the kernel process's
    stderr, as TensorFlow's C++ runtime writes its notes."""
    import nbformat

    book = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('greeting: str = "hello"  # what to print')
    params.metadata["tags"] = ["parameters"]
    book.cells = [nbformat.v4.new_markdown_cell("# hello"), params,
                  nbformat.v4.new_code_cell("import os\nprint(greeting)\nos.write(2, b'kernel noise\\n')")]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(book, folder / "01-hello.ipynb")
    return folder


@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "default"])
def test_run_prints_one_line_per_notebook_and_logs_the_kernels_noise(tmp_path, monkeypatch, capfd, quiet):
    from fivek_utils.workflows import runner

    executed = tmp_path / "executed"
    monkeypatch.setitem(runner.run_notebooks.__kwdefaults__, "notebooks_dir", tiny_notebook(tmp_path / "notebooks"))
    monkeypatch.setitem(runner.run_notebooks.__kwdefaults__, "output_dir", executed)
    config = tmp_path / "hello.yaml"
    config.write_text(f"greeting: bonjour\nprepare:\n  synth: {{out: {tmp_path / 'data'}, n_train: 2, n_test: 0, seed: 0}}\n")
    assert cli.main(["run", "--config", str(config), *(["--quiet"] if quiet else [])]) == 0
    out, err = capfd.readouterr()
    lines = out.strip().splitlines()
    assert "1 notebook(s) ran" in out and "kernel noise" not in out + err and "Kernel is running over TCP" not in err
    assert [line.split()[:2] for line in lines if line.startswith("[")] == [["[1/1]", "01-hello"]]
    if quiet:
        assert len(lines) == 2 and lines[-1] == "1 notebook(s) ran"  # the notebook's line and the count, nothing else
    else:
        assert "prepare: wrote the synthetic dataset" in out and "Outputs:" in out
    assert "kernel noise" in (executed / "01-hello.log").read_text()
    assert "bonjour" in (executed / "01-hello.ipynb").read_text()


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory):
    from fivek_utils.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("benchdata")
    generate_dataset(root, n_train=0, n_test=6, seed=0, progress=False)
    (root / "public_test" / "images" / "3.jpg").write_bytes(b"not a jpeg")  # a Python warning on stderr
    return root


@pytest.mark.slow
@pytest.mark.compat  # two fivek commands a parameter, about 8 s each: not in make test-fast
@pytest.mark.parametrize("flag", ["", "--quiet"], ids=["default", "quiet"])
def test_bench_is_as_quiet_as_run_with_its_noise_in_a_log_beside_its_results(tmp_path, bench_data, flag):
    from conftest import run_fivek

    env = {**os.environ, "FIVEK_ROOT": str(tmp_path)}
    result = run_fivek("bench", "predict", "--data-dir", str(bench_data), "--backbone", "tiny", "--folds", "2",
                       "--image-size", "32", "--batch-size", "4", "--repeats", "1", *([flag] if flag else []), env=env)
    bench_dir = tmp_path / "reports" / "bench"
    log = (bench_dir / "predict.log").read_text()
    assert "images unreadable" in log and "images unreadable" not in result.stderr
    assert not any(noise in result.stderr for noise in ("cuda", "oneDNN", "absl")), result.stderr
    assert json.loads((bench_dir / "predict.json").read_text())["images"] == 5
    if flag:
        assert result.stdout.splitlines() == [f"fivek bench predict: results in {bench_dir} (predict.json), log {bench_dir / 'predict.log'}"]
    else:
        assert "cost_ratio_per_pass" in result.stdout and f"wrote {bench_dir / 'predict.json'}" in result.stdout


@pytest.mark.slow
@pytest.mark.compat  # two fivek commands a parameter, about 8 s each: not in make test-fast
@pytest.mark.parametrize("flag", ["", "--verbose"], ids=["default", "verbose"])
def test_tensorflow_notes_of_weights_and_predict_go_to_a_log_unless_verbose(tmp_path, flag):
    from conftest import run_fivek

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # what a user's shell has
    env["FIVEK_ROOT"] = str(tmp_path)
    result = run_fivek("weights", "standin", "--out", str(tmp_path / "sm"), *([flag] if flag else []), env=env)
    assert (tmp_path / "sm" / "saved_model.pb").exists() and result.stdout.startswith("wrote a randomly initialised")
    log = tmp_path / "reports" / "logs" / "weights.log"
    native = [line for line in result.stderr.splitlines() if re.search(r"\.cc:\d+\]", line)]  # C++ log lines: file.cc:123]
    if flag:
        assert not log.exists() and native, result.stderr  # TensorFlow's own log, on the terminal
    else:
        assert log.exists() and not native, result.stderr
