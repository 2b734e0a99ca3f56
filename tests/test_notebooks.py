"""The notebooks: structure and parameters, a smoke run of all of them through `fivek run`, and the
command line on what that run made."""

import json
import os

import nbformat
import pandas as pd
import pytest
import yaml

from conftest import run_fivek as fivek
from fivek_utils.core.config import CODE_ROOT
from fivek_utils.workflows.runner import declared_parameters, list_notebooks

NOTEBOOKS = list_notebooks(CODE_ROOT / "notebooks")
EXPECTED = ["01-eda", "02-baseline-b0", "03-efficientnetv2-21k", "04-progressive-finetune", "05-kfold-ensemble", "06-submission"]


def test_the_six_notebooks_exist_in_order():
    assert [nb.stem for nb in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_with_one_documented_parameters_cell(nb):
    book = nbformat.read(nb, 4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and not c.get("execution_count") for c in code), "commit notebooks without outputs"
    tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert book.cells[0].cell_type == "markdown" and book.cells[0].source.startswith("# ")
    params = declared_parameters(nb)
    assert params, "papermill found no parameters"
    assigned = [line.split(":")[0].split("=")[0].strip() for line in tagged[0].source.splitlines()
                if line and not line.startswith((" ", "#")) and "=" in line]
    assert sorted(params) == sorted(assigned), f"papermill cannot read {sorted(set(assigned) - set(params))} (a second '=' in the line?)"
    for name, p in params.items():
        assert p["inferred_type_name"] != "None", f"{name} has no type annotation"
        assert p["help"], f"{name} has no '# help' comment"
    assert "def " not in "".join(c.source for c in code), "functions belong in fivek_utils"


@pytest.fixture(scope="session")  # session: under xdist other modules' tests may run in between
def smoke_run(tmp_path_factory):
    """`fivek run --config configs/smoke.yaml` in a fresh project root (FIVEK_ROOT)."""
    root = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "FIVEK_ROOT": str(root)}
    result = fivek("run", "--config", "configs/smoke.yaml", env=env, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, env, result


@pytest.mark.slow
@pytest.mark.compat
@pytest.mark.xdist_group("smoke")  # one worker runs the smoke pipeline once for all three
def test_smoke_run_of_every_notebook(smoke_run):
    root, _, result = smoke_run
    for stem in EXPECTED:
        executed = nbformat.read(root / "reports" / "executed" / f"{stem}.ipynb", 4)
        errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
        assert not errors
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    # 03 and 04 say where they are not compared like for like with the run before, on the same validation
    # rows (smoke: 03 trains 1 epoch against 02's 2; 04 48 px and 2 epochs against 03's 32 px and 1)
    for stem, line in (("03-efficientnetv2-21k", "not like for like in: epochs trained; compared by design: backbone, weights\n"),
                       ("04-progressive-finetune", "not like for like in: image size at the end, epochs trained\n")):
        executed = nbformat.read(root / "reports" / "executed" / f"{stem}.ipynb", 4)
        printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
        assert line in printed, stem
    figures = {p.name for p in (root / "reports" / "figures").glob("*.png")}
    for fig in ("01-eda-label-balance.png", "02-baseline-b0-history.png", "03-efficientnetv2-21k-gradcam.png",
                "04-progressive-schedule.png", "05-kfold-f1-threshold.png"):
        assert fig in figures
    for run in ("02-baseline-b0", "03-efficientnetv2-21k", "04-progressive"):
        assert (root / "models" / run / "model.keras").exists() and (root / "models" / run / "config.yaml").exists()
        metrics = pd.read_csv(root / "reports" / run / "metrics.csv").set_index("target")
        assert list(metrics.index) == ["mask", "distancing", "5K"] and metrics["f1"].between(0, 1).all()
    kfold = root / "models" / "05-kfold"
    assert sorted(p.parent.name for p in kfold.glob("fold*/model.keras")) == ["fold0", "fold1"]
    # the face stage: the faces in 01, a face model per fold, the stack saved and compared on the hold-out
    assert {"01-eda-faces.png", "01-eda-faces-per-image.png", "05-kfold-stack.png"} <= figures
    assert sorted(p.parent.name for p in kfold.glob("fold*/face_model.keras")) == ["fold0", "fold1"]
    stack = json.loads((kfold / "stack.json").read_text())
    assert stack["detector"]["name"] == "truth" and set(stack["stacker"]["heads"]) == {"mask", "distancing"}
    assert json.loads((kfold / "thresholds.json").read_text()) == stack["thresholds"]["stack"]  # what predict applies
    gains = pd.read_csv(root / "reports" / "05-kfold" / "gains.csv").set_index("variant")
    for variant in ("image model", "face model", "stack"):
        row = gains.loc[f"hold-out: {variant}"]
        assert row[["F1 5K", "always-yes F1 5K", "AUC mask", "AUC distancing"]].notna().all()
    # one round of self-training: a complete student run that prediction answers with, measured on the hold-out
    assert json.loads((kfold / "self_training.json").read_text())["last"] == "student1"
    assert sorted(p.parent.name for p in (kfold / "student1").glob("fold*/face_model.keras")) == ["fold0", "fold1"]
    assert (kfold / "student1" / "stack.json").exists() and "05-kfold-self-training.png" in figures
    self_trained = pd.read_csv(root / "reports" / "05-kfold" / "self_training.csv").set_index("model")
    assert list(self_trained.index) == ["teacher", "student 1"]
    assert self_trained[["F1 5K", "always-yes F1 5K", "AUC mask"]].notna().all().all()
    pseudo = pd.read_csv(root / "reports" / "05-kfold" / "pseudo_labels.csv")
    assert set(pseudo["set"]) == {"blank heads of training rows", "test photos"}
    folds = pd.read_csv(root / "data" / "processed" / "folds.csv")
    assert set(folds["fold"]) == {-1, 0, 1}
    assert "pretrained" in {p.name for p in (root / "models").iterdir()}  # notebook 03 converted the stand-in
    assert "6 notebook(s) ran" in result.stdout
    # one readable line per notebook; the kernels' start-up noise went to their logs
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert [line.split()[1] for line in lines] == EXPECTED and all(" s " in line for line in lines)
    assert "5K F1" in lines[1] and "always-yes" in lines[1] and "rows" in lines[5]
    for noise in ("Kernel is running over TCP", "KeyboardInterrupt", "cuda"):
        assert noise not in result.stdout + result.stderr, noise
    assert {p.name for p in (root / "reports" / "executed").glob("*.log")} >= {f"{s}.log" for s in EXPECTED}


@pytest.mark.slow
@pytest.mark.compat
@pytest.mark.xdist_group("smoke")
def test_submission_and_predict_command_agree(smoke_run, tmp_path):
    root, env, _ = smoke_run
    meta = root / "data" / "raw" / "smoke" / "public_test" / "public_test_meta.csv"
    sub = root / "submissions" / "submission.csv"
    checked = json.loads(fivek("check-submission", str(sub), "--meta", str(meta), env=env).stdout)
    assert checked["rows"] == len(pd.read_csv(meta))
    assert pd.read_csv(sub).columns.tolist() == ["image_id", "fname", "5K"]
    assert (root / "submissions" / "submission_config.yaml").exists()

    out = tmp_path / "result" / "submission.csv"
    test_dir = root / "data" / "raw" / "smoke" / "public_test"
    summary = json.loads(fivek("predict", "--models", str(root / "models" / "05-kfold"), "--test-dir", str(test_dir),
                               "--out", str(out), "--quiet", env=env).stdout)
    assert summary["rows"] == checked["rows"] and summary["models"] == 2 and summary["fallback_rows"] == 0
    assert summary["models_run"] == str(root / "models" / "05-kfold" / "student1")  # the run self-trained
    record = yaml.safe_load((root / "submissions" / "submission_config.yaml").read_text())
    assert record["models_run"] == summary["models_run"]  # notebook 06 answered with the student too
    assert summary["face_stage"]["rows_answered_by_the_stack"] == checked["rows"]  # truth boxes: a face in every photo
    assert pd.read_csv(out)["5K"].tolist() == pd.read_csv(sub)["5K"].tolist()

    broken = tmp_path / "broken.csv"
    pd.read_csv(sub).iloc[1:].to_csv(broken, index=False)
    rejected = fivek("check-submission", str(broken), "--meta", str(meta), env=env, check=False)
    assert rejected.returncode == 1 and "have no row" in rejected.stderr


@pytest.mark.slow
@pytest.mark.compat
@pytest.mark.xdist_group("smoke")
def test_unreadable_test_image_still_gets_a_row(smoke_run, tmp_path):
    root, env, _ = smoke_run
    src = root / "data" / "raw" / "smoke" / "public_test"
    test_dir = tmp_path / "private_test"
    (test_dir / "images").mkdir(parents=True)
    meta = pd.read_csv(src / "public_test_meta.csv").head(4)
    meta.to_csv(test_dir / "private_test_meta.csv", index=False)
    (test_dir / "scenes.jsonl").write_bytes((src / "scenes.jsonl").read_bytes())  # the face stage's truth boxes
    for f in meta["fname"][:3]:
        (test_dir / "images" / f).write_bytes((src / "images" / f).read_bytes())
    (test_dir / "images" / meta["fname"][0]).write_bytes(b"corrupt")  # unreadable; the 4th is missing
    out = tmp_path / "submission.csv"
    result = fivek("predict", "--models", str(root / "models" / "05-kfold"), "--test-dir", str(test_dir), "--out", str(out),
                   "--quiet", env=env)
    assert json.loads(result.stdout)["fallback_rows"] == 2
    assert "unreadable" in result.stderr and meta["fname"][0] in result.stderr
    sub = pd.read_csv(out)
    assert len(sub) == 4 and sub["fname"].tolist() == meta["fname"].tolist()
    probs = pd.read_csv(out.with_name("submission_probs.csv"))
    assert probs["fallback"].tolist() == [True, False, False, True]




@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_name_the_notebook_uses_exists(nb):
    """`fk.*` (and the module aliases notebooks import) resolve: a rename in the package cannot
    silently break a notebook that only the slow smoke run would execute."""
    import importlib
    import re

    import fivek_utils as fk

    source = "\n".join(c.source for c in nbformat.read(nb, 4).cells if c.cell_type == "code")
    aliases = {"fk": fk}
    for pkg, mod, alias in re.findall(r"^from (fivek_utils[\w.]*) import (\w+) as (\w+)", source, re.M):
        aliases[alias] = getattr(importlib.import_module(pkg), mod)
    used = set(re.findall(r"\b(fk|kf|prog)\.(\w+)", source))
    assert used, "the notebook calls nothing of the kit?"
    missing = [f"{a}.{n}" for a, n in sorted(used) if a in aliases and not hasattr(aliases[a], n)]
    assert not missing


# Config fields no notebook declares, on purpose: where they come from instead
NOT_A_NOTEBOOK_PARAMETER = {
    "test_split": "notebook 06 predicts public_test/ and private_test/ where they exist",
    "num_workers": "decoding threads: the machine's, not the run's",
    "cache_max_gb": "the cache bound: FIVEK_CACHE_MAX_GB, a setting of the machine",
}


def test_every_setting_of_a_run_can_be_set_from_a_config():
    """A Config field that no parameters cell declares cannot be set from a YAML (the runner refuses a key
    no notebook declares), so a setting the training code reads would be stuck at its default."""
    import dataclasses

    from fivek_utils.core.config import Config

    declared = set().union(*(declared_parameters(nb) for nb in NOTEBOOKS))
    stuck = [f.name for f in dataclasses.fields(Config) if f.name not in declared and f.name not in NOT_A_NOTEBOOK_PARAMETER]
    assert not stuck, f"Config fields that no notebook declares, so no config can set: {stuck}"
    assert not set(NOT_A_NOTEBOOK_PARAMETER) - {f.name for f in dataclasses.fields(Config)}
