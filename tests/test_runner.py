"""`fivek run`'s runner: pipeline YAMLs (shared keys, per-notebook sections, typos), notebook
selection, and a failing notebook named with its cell."""

import os

import pytest
import yaml

from conftest import run_fivek as fivek
from fivek_utils.core.config import CODE_ROOT, ConfigError, load_yaml
from fivek_utils.workflows.runner import (
    check_pipeline,
    declared_parameters,
    list_notebooks,
    names_notebook,
    notebook_params,
    select_notebooks,
)

NOTEBOOKS = list_notebooks(CODE_ROOT / "notebooks")


@pytest.mark.parametrize("config", ["smoke", "demo", "full", "real-scenes"])
def test_each_notebook_gets_its_declared_shared_keys_then_its_section(config):
    pipeline = yaml.safe_load((CODE_ROOT / "configs" / f"{config}.yaml").read_text())
    sections = pipeline.get("notebooks") or {}
    for nb in NOTEBOOKS:
        declared = set(declared_parameters(nb))
        section = next((v for k, v in sections.items() if str(k) in (nb.stem, nb.stem[:2])), None) or {}
        expected = {k: v for k, v in pipeline.items() if k not in ("notebooks", "prepare", "only", "lanes") and k in declared}
        expected.update(section)
        assert notebook_params(pipeline, nb) == expected, nb.stem


def test_a_section_wins_over_a_shared_key():
    nb = next(n for n in NOTEBOOKS if n.stem.startswith("06"))
    assert notebook_params({"batch_size": 32, "notebooks": {"06": {"batch_size": 64}}}, nb) == {"batch_size": 64}
    assert notebook_params({"batch_size": 32, "notebooks": {"06-submission": {"batch_size": 8}}}, nb) == {"batch_size": 8}


def test_section_keys_name_notebooks_by_number_or_name():
    assert names_notebook("03", "03-efficientnetv2-21k") and names_notebook(3, "03-x") is False
    assert names_notebook("03-efficientnetv2", "03-efficientnetv2-21k")
    assert not names_notebook("03-efficient", "03-efficientnetv2-21k") and not names_notebook("04", "03-x")


def test_undeclared_section_key_is_an_error_naming_it():
    pipeline = {"image_size": 64, "notebooks": {"02": {"imgae_size": 64}}}
    nb = next(n for n in NOTEBOOKS if n.stem.startswith("02"))
    with pytest.raises(ConfigError, match=r"section '02' sets \['imgae_size'\]"):
        notebook_params(pipeline, nb)
    assert notebook_params({"image_size": 64, "gallery_size": 9}, nb) == {"image_size": 64}  # shared keys only where declared


def test_keys_and_sections_that_match_nothing_are_errors():
    for config in ("smoke", "demo", "full", "real-scenes"):
        check_pipeline(load_yaml(CODE_ROOT / "configs" / f"{config}.yaml"), NOTEBOOKS)
    with pytest.raises(ConfigError, match=r"shared key\(s\) \['image_sise'\] are declared by no notebook"):
        check_pipeline({"image_sise": 64, "prepare": {}}, NOTEBOOKS)
    with pytest.raises(ConfigError, match=r"section\(s\) \['2', '09'\]"):
        check_pipeline({"notebooks": {"2": {}, "09": {}, "03": {}, "05-kfold-ensemble": {}}}, NOTEBOOKS)
    with pytest.raises(ConfigError, match=r"section\(s\) \[2\] .* like '03' \(quoted: YAML reads an unquoted 02 as the number 2\)"):
        check_pipeline(yaml.safe_load("notebooks:\n  02: {epochs_head: 1}\n"), NOTEBOOKS)
    with pytest.raises(ConfigError, match=r"x.yaml: sections \['02', '02-baseline-b0'\] under notebooks: both name 02-baseline-b0"):
        check_pipeline({"notebooks": {"02": {"epochs_head": 1}, "02-baseline-b0": {"epochs_finetune": 5}}}, NOTEBOOKS, "x.yaml")


def test_a_setting_of_the_wrong_kind_stops_the_run_before_any_notebook():
    with pytest.raises(ConfigError, match=r"^x.yaml, 05-kfold-ensemble: face_stage='false': must be true or false"):
        check_pipeline({"face_stage": "false"}, NOTEBOOKS, "x.yaml")  # shared: named with the first notebook that declares it
    with pytest.raises(ConfigError, match=r"^x.yaml, 05-kfold-ensemble: epochs_finetune=1.5: must be a whole number"):
        check_pipeline({"notebooks": {"05": {"epochs_finetune": 1.5}}}, NOTEBOOKS, "x.yaml")
    check_pipeline({"notebooks": {"05": {"epochs_finetune": 2.0, "weights": None}}}, NOTEBOOKS, "x.yaml")


def test_a_config_names_its_notebooks_and_only_overrides_them(tmp_path):
    from fivek_utils.workflows.runner import PIPELINE_KEYS

    pipeline = load_yaml(CODE_ROOT / "configs" / "real-scenes.yaml")
    assert "only" in PIPELINE_KEYS and [n.stem[:2] for n in select_notebooks(NOTEBOOKS, pipeline["only"])] == ["01", "05", "06"]
    assert all("only" not in notebook_params(pipeline, nb) for nb in NOTEBOOKS)
    with pytest.raises(ConfigError, match="no such notebook"):  # a typo in `only:` fails like one in --only
        select_notebooks(NOTEBOOKS, ["07"])
    # its own run folder, which 06 answers from: a demo run in the same checkout is neither met nor replaced
    by_stem = {nb.stem[:2]: nb for nb in NOTEBOOKS}
    run = notebook_params(pipeline, by_stem["05"])["run_name"]
    assert run != notebook_params(load_yaml(CODE_ROOT / "configs" / "demo.yaml"), by_stem["05"]).get("run_name", "05-kfold")
    assert notebook_params(pipeline, by_stem["06"])["models_run"] == run


def test_select_notebooks():
    assert [n.stem[:2] for n in select_notebooks(NOTEBOOKS, ["01", "3"])] == ["01", "03"]
    with pytest.raises(ConfigError, match="no such notebook"):
        select_notebooks(NOTEBOOKS, ["09"])


@pytest.mark.slow
def test_failing_notebook_stops_the_run_naming_notebook_and_cell(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("data_dir: data/raw/none\n")
    env = {**os.environ, "FIVEK_ROOT": str(tmp_path)}
    result = fivek("run", "--config", str(config), "--only", "02", env=env, check=False)
    assert result.returncode == 1
    assert "02-baseline-b0.ipynb failed in cell" in result.stderr
    assert (tmp_path / "reports" / "executed" / "02-baseline-b0.ipynb").exists()
    assert "FileNotFoundError: meta file" in result.stderr  # the failing cell's error, not just its number


def test_a_config_extends_another_section_by_section(tmp_path):
    from fivek_utils.workflows.runner import load_pipeline

    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"seed": 1, "image_size": 64, "only": ["01", "05"],
                                    "notebooks": {"05": {"folds": 3, "face_epochs": 4}, "06": {"batch_size": 8}}}))
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({"extends": str(base), "seed": 7, "only": ["05"],
                                     "notebooks": {"05": {"folds": 2, "self_training_rounds": 1}}}))
    merged = load_pipeline(child)
    assert merged == {"seed": 7, "image_size": 64, "only": ["05"],
                      "notebooks": {"05": {"folds": 2, "face_epochs": 4, "self_training_rounds": 1}, "06": {"batch_size": 8}}}
    base.write_text(yaml.safe_dump({"extends": str(child)}))
    with pytest.raises(ConfigError, match="extends it back"):
        load_pipeline(child)


def test_the_half_labels_config_is_real_scenes_with_self_training():
    from fivek_utils.workflows.runner import load_pipeline

    real = load_yaml(CODE_ROOT / "configs" / "real-scenes.yaml")
    half = load_pipeline(CODE_ROOT / "configs" / "real-scenes-half-labels.yaml")
    nb05 = next(n for n in NOTEBOOKS if n.stem.startswith("05"))
    check_pipeline(half, NOTEBOOKS, "real-scenes-half-labels.yaml")
    params = notebook_params(half, nb05)
    assert params["hidden_label_fraction"] == 0.5 and params["self_training_rounds"] == 1
    own = ("run_name", "hidden_label_fraction", "self_training_rounds")
    real_params = {k: v for k, v in notebook_params(real, nb05).items() if k != "run_name"}
    assert {k: v for k, v in params.items() if k not in own and not k.startswith("student_")} == real_params
    assert params["run_name"] != notebook_params(real, nb05)["run_name"]  # its own run folder


def _timed_notebook(path, seconds: float, fail: bool = False) -> None:
    """A notebook that writes when it started and ended (and fails at its end when `fail`)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(f"seconds = {seconds}")
    params.metadata["tags"] = ["parameters"]
    body = ("import time, pathlib\nt0 = time.time()\ntime.sleep(seconds)\n"
            f"pathlib.Path({str(path.with_suffix('.times'))!r}).write_text(f'{{t0}} {{time.time()}}')\n"
            + ("raise ValueError('the last cell fails')\n" if fail else ""))
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _times(path):
    return [float(t) for t in path.with_suffix(".times").read_text().split()]


@pytest.mark.slow
def test_lanes_run_side_by_side_and_the_rest_after_them(tmp_path, capsys):
    from fivek_utils.workflows.runner import PipelineError, run_notebooks

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name in ("01-a", "02-b", "03-c", "04-d"):
        _timed_notebook(nbs / f"{name}.ipynb", 3)
    config = tmp_path / "lanes.yaml"
    config.write_text(yaml.safe_dump({"seconds": 3, "lanes": [["02"], ["01", "03"]]}))
    done = run_notebooks(config, output_dir=tmp_path / "out", notebooks_dir=nbs)
    assert sorted(p.name for p in done) == ["01-a.ipynb", "02-b.ipynb", "03-c.ipynb", "04-d.ipynb"]
    a, b, c, d = (_times(nbs / f"{n}.ipynb") for n in ("01-a", "02-b", "03-c", "04-d"))
    assert b[0] < a[1] and a[0] < b[1]  # 01 and 02 overlapped
    assert c[0] >= a[1]  # a lane runs in order
    assert d[0] >= max(b[1], c[1])  # a notebook in no lane waits for every lane
    out = capsys.readouterr().out
    assert "side by side: 02 | 01 03; then 04" in out and out.count("[4/4] 04-d") == 1

    # --sequential: one at a time, in order
    run_notebooks(config, ["01", "02"], output_dir=tmp_path / "out", notebooks_dir=nbs, sequential=True)
    a, b = _times(nbs / "01-a.ipynb"), _times(nbs / "02-b.ipynb")
    assert b[0] >= a[1]

    # a failure in one lane: the other lane finishes, then the run stops naming the notebook; 04 never runs
    _timed_notebook(nbs / "02-b.ipynb", 1, fail=True)
    (nbs / "04-d.times").unlink()
    with pytest.raises(PipelineError, match=r"02-b.ipynb failed in cell .*the last cell fails"):
        run_notebooks(config, output_dir=tmp_path / "out", notebooks_dir=nbs)
    assert _times(nbs / "03-c.ipynb")[1] > _times(nbs / "02-b.ipynb")[1] and not (nbs / "04-d.times").exists()


def test_lanes_name_known_notebooks_once():
    from fivek_utils.workflows.lanes import plan_lanes as plan

    def plan_lanes(spec, selected, every):
        return plan(spec, selected, every, names_notebook)

    nb = {n.stem[:2]: n for n in NOTEBOOKS}
    assert plan_lanes([["05"], ["01", "02"]], NOTEBOOKS, NOTEBOOKS) == [[nb["05"]], [nb["01"], nb["02"]]]
    assert plan_lanes([["05"], ["01", "02"]], [nb["05"], nb["06"]], NOTEBOOKS) == [[nb["05"]]]  # --only 05 06
    assert plan_lanes(None, NOTEBOOKS, NOTEBOOKS) == []
    with pytest.raises(ConfigError, match="'07' names no notebook"):
        plan_lanes([["05"], ["07"]], NOTEBOOKS, NOTEBOOKS)
    with pytest.raises(ConfigError, match="05-kfold-ensemble is in two lanes"):
        plan_lanes([["05"], ["01", "05"]], NOTEBOOKS, NOTEBOOKS)
    with pytest.raises(ConfigError, match="a list of lists"):
        plan_lanes(["05", "01"], NOTEBOOKS, NOTEBOOKS)


def test_the_result_line_reports_a_submission_only_when_this_run_wrote_it(tmp_path):
    """A set without test photos writes no submission; the line must not quote the one an earlier run left."""
    import time

    import pandas as pd

    from fivek_utils.workflows.runner import notebook_result

    nb06 = next(n for n in NOTEBOOKS if n.stem.startswith("06"))
    sub = tmp_path / "submission.csv"
    pd.DataFrame({"image_id": [1, 2, 3], "fname": ["1.jpg", "2.jpg", "3.jpg"], "5K": [1, 0, 1]}).to_csv(sub, index=False)
    params = {"submission_file": str(sub)}
    assert notebook_result(nb06, params, since=time.time() - 5) == f"3 rows, 2 answered 5K = 1 -> {sub}"
    os.utime(sub, (time.time() - 3600, time.time() - 3600))  # left by a run an hour ago
    assert notebook_result(nb06, params, since=time.time()) == f"no submission written ({sub} is an earlier run's)"
    assert notebook_result(nb06, {"submission_file": str(tmp_path / "none.csv")}, since=time.time()) == ""


def test_the_result_line_quotes_a_runs_metrics_only_when_this_run_wrote_them(tmp_path, monkeypatch):
    import time

    import pandas as pd

    from fivek_utils.workflows import runner

    monkeypatch.setattr(runner, "REPORTS_DIR", tmp_path)
    nb05 = next(n for n in NOTEBOOKS if n.stem.startswith("05"))
    metrics = tmp_path / "mine" / "metrics.csv"
    metrics.parent.mkdir()
    pd.DataFrame({"target": ["mask", "distancing", "5K"], "f1": [0.9, 0.8, 0.7], "f1_always_yes": [0.6, 0.6, 0.5],
                  "auc": [0.91, 0.81, 0.71]}).to_csv(metrics, index=False)
    line = runner.notebook_result(nb05, {"run_name": "mine"}, since=time.time() - 5)
    assert line.startswith("5K F1 0.700 (always-yes 0.500), AUC 5K 0.71 mask 0.91 distancing 0.81"), line
    os.utime(metrics, (time.time() - 3600, time.time() - 3600))
    assert runner.notebook_result(nb05, {"run_name": "mine"}, since=time.time()) == ""
