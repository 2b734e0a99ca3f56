"""Where the kit runs: environment detection, the project root on Kaggle, the data search among
attached inputs (Kaggle) and on Drive (Colab), links to runs of attached notebooks, and the
notebooks' Colab cell. Everything on fake trees under tmp_path."""

import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from fivek_utils.core import config
from fivek_utils.core import environment as env
from fivek_utils.core.config import CODE_ROOT, Config


def _clear(monkeypatch):
    for var in ("KAGGLE_KERNEL_RUN_TYPE", "COLAB_RELEASE_TAG", "FIVEK_ROOT", "FIVEK_KAGGLE_ROOT", "FIVEK_COLAB_DRIVE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)


@pytest.fixture
def kaggle(monkeypatch, tmp_path):
    """A fake /kaggle tree (input/, working/) with KAGGLE_KERNEL_RUN_TYPE set."""
    _clear(monkeypatch)
    root = tmp_path / "kaggle"
    (root / "input").mkdir(parents=True)
    (root / "working").mkdir()
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setenv("FIVEK_KAGGLE_ROOT", str(root))
    return root


def make_dataset(root: Path, splits=("train",)) -> Path:
    """The marker files of a dataset root in the official layout (no images needed to be found)."""
    for split in splits:
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / f"{split}_meta.csv").write_text("image_id,fname\n")
    return root


# --- detection -------------------------------------------------------------------------------
def test_detect_environment(monkeypatch):
    _clear(monkeypatch)
    assert env.detect_environment() == "local"
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20260101")
    assert env.detect_environment() == "colab"
    monkeypatch.delenv("COLAB_RELEASE_TAG")
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert env.detect_environment() == "colab"
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    assert env.detect_environment() == "kaggle"  # Kaggle wins: its rules about read-only inputs matter more


def test_kaggle_root_default_and_override(monkeypatch, tmp_path):
    _clear(monkeypatch)
    assert env.kaggle_root() == Path("/kaggle") and env.kaggle_input_dir() == Path("/kaggle/input")
    monkeypatch.setenv("FIVEK_KAGGLE_ROOT", str(tmp_path))
    assert env.kaggle_input_dir() == tmp_path / "input"


# --- the project root ----------------------------------------------------------------------------
def test_project_root_is_kaggle_working_before_the_checkout(kaggle, monkeypatch, tmp_path):
    assert env.code_root() == CODE_ROOT  # this checkout would be chosen anywhere else
    assert env.project_root() == (kaggle / "working").resolve()
    monkeypatch.setenv("FIVEK_ROOT", str(tmp_path / "mine"))
    assert env.project_root() == (tmp_path / "mine").resolve()  # $FIVEK_ROOT always wins


def test_project_root_elsewhere_is_the_checkout(monkeypatch):
    _clear(monkeypatch)
    assert env.output_root() is None
    assert env.project_root() == CODE_ROOT


def test_read_only_checkout_under_kaggle_input_writes_to_working(kaggle, tmp_path):
    """A checkout attached as a dataset: PROJ_ROOT is computed at import, so ask a fresh interpreter."""
    checkout = kaggle / "input" / "fivek"
    (checkout / "notebooks").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    shutil.copytree(Path(config.__file__).parents[1], checkout / "fivek_utils", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from fivek_utils.core import config; "
            "print(config.CODE_ROOT); print(config.PROJ_ROOT)")
    run_env = {k: v for k, v in os.environ.items() if k != "FIVEK_ROOT"}
    out = subprocess.run([sys.executable, "-c", code, str(checkout)], capture_output=True, text=True, check=True,
                         env=run_env, cwd=tmp_path).stdout.split()
    assert out == [str(checkout), str((kaggle / "working").resolve())]


# --- data ----------------------------------------------------------------------------------------
def test_data_search_finds_a_nested_dataset_on_kaggle(kaggle, capsys):
    data = make_dataset(kaggle / "input" / "zalo" / "v2", ("train", "public_test"))
    (kaggle / "input" / "zalo" / "v2" / "train" / "images" / "x.jpg").write_bytes(b"")
    found = env.resolve_data_dir("/nowhere/zalo")
    assert found == data
    assert f"using {data}" in capsys.readouterr().out
    assert Config(data_dir="data/raw/zalo").data_path == data  # the hook notebooks use


def test_an_existing_data_dir_always_wins(kaggle, tmp_path, capsys):
    make_dataset(kaggle / "input" / "zalo")
    mine = make_dataset(tmp_path / "mine")
    assert env.resolve_data_dir(mine) == mine
    assert Config(data_dir=str(mine)).data_path == mine
    working_copy = make_dataset(kaggle / "working" / "data" / "raw" / "zalo")
    assert env.resolve_data_dir(working_copy) == working_copy
    assert capsys.readouterr().out == ""  # nothing searched, nothing said


def test_ambiguous_matches_are_ranked_deterministically_and_reported(kaggle, capsys):
    inputs = kaggle / "input"
    train_only_b = make_dataset(inputs / "b")
    train_only_a = make_dataset(inputs / "a")
    both_deep = make_dataset(inputs / "datasets" / "owner" / "zalo5k", ("train", "public_test"))
    assert env.find_data_dirs(inputs) == [both_deep, train_only_a, train_only_b]
    first = env.resolve_data_dir("/nowhere/a")
    message = capsys.readouterr().out
    assert first == both_deep
    assert "3 datasets found" in message and str(train_only_a) in message and str(train_only_b) in message
    assert env.resolve_data_dir("/nowhere/a") == first  # the same answer again, said only once
    assert capsys.readouterr().out == ""


def test_data_search_is_bounded_in_depth(kaggle):
    deep = make_dataset(kaggle / "input" / "a" / "b" / "c" / "d" / "e" / "f")
    assert env.find_data_dirs(kaggle / "input") == []
    assert env.find_data_dirs(kaggle / "input", depth=6) == [deep]


def test_no_dataset_anywhere_returns_the_path_and_says_so(kaggle, capsys):
    assert env.resolve_data_dir("/nowhere/zalo") == Path("/nowhere/zalo")
    assert "attach the Zalo data" in capsys.readouterr().out


def test_local_runs_never_search(monkeypatch, tmp_path):
    _clear(monkeypatch)
    monkeypatch.setenv("FIVEK_KAGGLE_ROOT", str(tmp_path))
    make_dataset(tmp_path / "input" / "zalo")
    assert env.resolve_data_dir("/nowhere/zalo") == Path("/nowhere/zalo")


def test_colab_finds_the_dataset_on_drive(monkeypatch, tmp_path):
    _clear(monkeypatch)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setenv("FIVEK_COLAB_DRIVE", str(tmp_path / "MyDrive"))
    data = make_dataset(tmp_path / "MyDrive" / "zalo" / "unzipped")
    assert env.resolve_data_dir("data/raw/zalo") == data
    assert env.output_root() is None  # outputs stay in the current folder unless FIVEK_ROOT says otherwise


# --- runs of attached notebooks --------------------------------------------------------------------
def test_attached_runs_are_linked_and_unlinked(kaggle):
    upstream = kaggle / "input" / "notebooks" / "alice" / "fivek-05-kfold-ensemble"
    (upstream / "models" / "05-kfold" / "fold0").mkdir(parents=True)
    (upstream / "models" / "05-kfold" / "config.yaml").write_text("run_name: 05-kfold\n")
    (upstream / "models" / "pretrained").mkdir()  # not a run: no config.yaml
    (upstream / "reports" / "05-kfold").mkdir(parents=True)
    (upstream / "reports" / "05-kfold" / "metrics.csv").write_text("target\n")
    (upstream / "reports" / "figures").mkdir()
    (kaggle / "input" / "models" / "google" / "efficientnet-v2").mkdir(parents=True)  # Kaggle Models' mount
    working = kaggle / "working"
    (working / "reports" / "05-kfold").mkdir(parents=True)  # this notebook's own folder is never replaced

    linked = env.link_attached_runs(working)
    assert set(linked) == {"models/05-kfold"}
    assert (working / "models" / "05-kfold" / "config.yaml").read_text() == "run_name: 05-kfold\n"
    assert sorted(p.name for p in (working / "models").iterdir()) == ["05-kfold"]
    assert not (working / "reports" / "figures").exists() and not (working / "reports" / "05-kfold").is_symlink()

    (working / "models" / "06-mine").mkdir()
    assert env.unlink_attached_runs(working) == [working / "models" / "05-kfold"]
    assert sorted(p.name for p in (working / "models").iterdir()) == ["06-mine"]
    assert (upstream / "models" / "05-kfold" / "config.yaml").exists()


# --- Colab ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("nb", sorted((CODE_ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")), ids=lambda p: p.stem)
def test_every_notebook_installs_the_kit_on_colab_only(nb):
    cells = nbformat.read(nb, 4).cells
    params_at = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    colab = [i for i, c in enumerate(cells) if c.cell_type == "code" and "google.colab" in c.source]
    assert len(colab) == 1 and 0 < colab[0] < params_at
    source = cells[colab[0]].source
    assert f'"git+{env.REPO_URL}"' in source  # the URL lives in environment.REPO_URL too
    from fivek_utils.core.versions import NO_DEPS

    for name, spec in NO_DEPS.items():  # pyproject cannot carry them: installed without their pinned dependencies
        assert f'"--no-deps", "{name}{spec}"' in source
    assert 'if "google.colab" in sys.modules:' in source and "!" not in source
    compile(source, nb.name, "exec")


def test_colab_links():
    assert env.colab_url("01-eda") == "https://colab.research.google.com/github/fivek-kit/fivek/blob/main/notebooks/01-eda.ipynb"
    assert env.colab_url("06-submission.ipynb", "dev", "https://github.com/me/fork.git").endswith(
        "github/me/fork/blob/dev/notebooks/06-submission.ipynb")
