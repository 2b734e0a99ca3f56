"""Shared test set-up: offline, quiet TensorFlow, CPU only, reproducible."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ["FIVEK_OFFLINE"] = "1"  # no test may touch the network: downloads fail fast with a clear error
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# a copy of ../shared/data/zalo/train_meta.csv (the official label file) ships with the package
REAL_META = Path(__file__).resolve().parents[1] / "fivek_utils" / "resources" / "zalo_train_meta.csv"


@pytest.fixture(scope="session")
def real_meta_path() -> Path:
    """The official training label file (a copy ships in fivek_utils/resources)."""
    if not REAL_META.exists():
        pytest.skip(f"official label file not found at {REAL_META}")
    return REAL_META


# `make test` keeps each `xdist_group` (the notebooks' smoke run) on one worker. Where pytest-xdist cannot
# (pytest 9.2 with xdist 3.8: pytest-dev/pytest-xdist#1386) the smoke run silently runs once per worker
# and the suite takes twice as long, so the run fails and says so.
_ungrouped: list[str] = []


def pytest_collection_modifyitems(items):
    """Grouped tests first, so the smoke run's worker starts on it at once while the other workers share
    everything else, instead of running it alone at the end; then the modules that hold slow tests, so the
    run does not end with one worker on a 30 s test while the others wait. A stable sort: a module's tests
    stay together and in file order, next to the module-scoped fixtures they share."""
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item.get_closest_marker("xdist_group") is None, item.path not in slow_modules))


def pytest_runtest_logreport(report):
    if report.when == "call" and "xdist_group" in report.keywords and "@" not in report.nodeid:
        _ungrouped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _ungrouped and session.config.getoption("dist", "no") == "loadgroup":
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    if _ungrouped and config.getoption("dist", "no") == "loadgroup":
        terminalreporter.write_line(f"FAILED: pytest-xdist's --dist loadgroup did not keep {_ungrouped[0]} (and "
                                    f"{len(_ungrouped) - 1} more) with its group under pytest {pytest.__version__}: "
                                    "install what requirements.txt allows (pytest-dev/pytest-xdist#1386)", red=True)


# --- shared helpers ---------------------------------------------------------------------------
import json  # noqa: E402

import numpy as np  # noqa: E402

from fivek_utils.core import config  # noqa: E402
from fivek_utils.modeling.pretrained.sources import sidecar_path  # noqa: E402

B0 = "EfficientNetV2B0"
TOL = 1e-4


# --- stand-in SavedModels in the official automl layout, made once per session ----------------------
@pytest.fixture(scope="session")
def sm_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("savedmodels")


def export_standin(root: Path, name: str, **kwargs) -> Path:
    """A random SavedModel in the official layout (modeling.pretrained.standin) at root/name."""
    from fivek_utils.modeling.pretrained.standin import export_automl_savedmodel

    return export_automl_savedmodel(root / name, **kwargs)


@pytest.fixture(scope="session")
def sm_b0(sm_root) -> Path:
    return export_standin(sm_root, "b0_identity", variant="b0", seed=1, input_transform="identity")


@pytest.fixture(scope="session")
def sm_b0_m11(sm_root) -> Path:
    return export_standin(sm_root, "b0_minus1_1", variant="b0", seed=2, input_transform="minus1_1")


@pytest.fixture(scope="session")
def sm_b0_imagenet(sm_root) -> Path:
    """A SavedModel that normalises its [0, 1] input with ImageNet mean/std itself."""
    return export_standin(sm_root, "b0_imagenet", variant="b0", seed=6, input_transform="imagenet")


@pytest.fixture(scope="session")
def sm_b1(sm_root) -> Path:
    return export_standin(sm_root, "b1", variant="b1", seed=3)


@pytest.fixture(scope="session")
def sm_swap(sm_root) -> Path:
    return export_standin(sm_root, "b0_swap", variant="b0", seed=4, corrupt="swap")


@pytest.fixture(scope="session")
def sm_drop(sm_root) -> Path:
    return export_standin(sm_root, "b0_drop", variant="b0", seed=5, corrupt="drop")


def convert_standin(root: Path, sm: Path, name: str) -> dict:
    """`sm` converted onto EfficientNetV2B0 under root/name/."""
    from fivek_utils.modeling.pretrained.convert import convert_savedmodel

    out_dir = root / name
    out_dir.mkdir()
    return convert_savedmodel(sm, B0, out_dir / f"{name}.weights.h5", tol=TOL, seed=0)


@pytest.fixture(scope="session")
def conv_b0(sm_b0, tmp_path_factory) -> dict:
    """sm_b0 converted once for the session (the sidecar and weights are copied by some tests)."""
    return convert_standin(tmp_path_factory.mktemp("converted"), sm_b0, "b0_identity")


@pytest.fixture(scope="session")
def conv_b0_m11(sm_b0_m11, tmp_path_factory) -> dict:
    return convert_standin(tmp_path_factory.mktemp("converted"), sm_b0_m11, "b0_minus1_1")


@pytest.fixture(scope="session")
def conv_b0_imagenet(sm_b0_imagenet, tmp_path_factory) -> dict:
    return convert_standin(tmp_path_factory.mktemp("converted"), sm_b0_imagenet, "b0_imagenet")


def copy_conversion(info: dict, dest: Path, stem: str, **sidecar_changes) -> Path:
    """Copy a conversion (weights + sidecar) to dest/<stem>.weights.h5, optionally editing the sidecar."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"{stem}.weights.h5"
    out.write_bytes(Path(info["weights_file"]).read_bytes())
    side = json.loads(Path(info["sidecar"]).read_text())
    sidecar_path(out).write_text(json.dumps({**side, **sidecar_changes}))
    return out


_LOADED: dict[Path, object] = {}


def load_savedmodel(path: Path):
    """A SavedModel, loaded once per session."""
    import tensorflow as tf

    if path not in _LOADED:
        _LOADED[path] = tf.saved_model.load(str(path))
    return _LOADED[path]


def fresh_batch(seed: int = 123, shape=(3, 80, 96, 3)) -> np.ndarray:
    """A batch the conversion never saw: another seed, non-square, another size."""
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=shape).astype("float32")


def rel_error(a, b) -> float:
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """Empty pretrained/interim/weights/kaggle/kagglehub folders: the real caches are never used."""
    for name in ("pretrained", "interim", "weights", "kagglehub"):
        (tmp_path / name).mkdir()
    monkeypatch.setattr(config, "PRETRAINED_DIR", tmp_path / "pretrained")
    monkeypatch.setattr(config, "INTERIM_DATA_DIR", tmp_path / "interim")
    monkeypatch.setenv("FIVEK_KAGGLE_ROOT", str(tmp_path / "kaggle_absent"))  # no attached inputs
    monkeypatch.setenv("FIVEK_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    monkeypatch.setenv("FIVEK_OFFLINE", "1")
    return tmp_path


def kaggle_layout(root: Path, savedmodel: Path, variation: str = "imagenet21k-b0-feature-vector") -> Path:
    """Place `savedmodel` where an attached Kaggle model would sit (as a link: cheap)."""
    d = root / "efficientnet-v2" / "tensorflow2" / variation
    d.mkdir(parents=True)
    os.symlink(savedmodel, d / "1", target_is_directory=True)
    return d / "1"


def files_in(d: Path) -> list[str]:
    return sorted(p.name for p in Path(d).iterdir()) if Path(d).exists() else []




def write_portrait_dataset(root: Path, n: int, seed: int = 0, *, shuffle_labels: bool = False) -> Path:
    """An easy synthetic set in the official layout: one person per photo, the head about half the
    frame, mask worn properly or not at all (half each); official blank rates; the meta rows in a
    random order. `shuffle_labels` permutes the label rows against the images (the negative control)."""
    import numpy as np
    import pandas as pd

    from fivek_utils.data import synth

    rng = np.random.default_rng(seed)
    images = root / "train" / "images"
    images.mkdir(parents=True)
    rows = []
    for i in range(n):
        mask = int(rng.random() < 0.5)
        person = synth.sample_person(rng, "proper" if mask else "none", child_rate=0.0)
        person.x, person.z = float(rng.uniform(-0.08, 0.08)), 1.5
        size, head = int(rng.integers(96, 160)), rng.uniform(0.4, 0.55)
        focal = head * size * person.z / (synth.HEAD_H * person.height)
        horizon = rng.uniform(0.05, 0.15) * size - (1.6 - person.height) * focal / person.z
        scene = synth.Scene(size, size, focal, horizon, 1.6, synth.sample_background(rng, size, size, 3.0), [person],
                            **synth.sample_photo(rng))
        synth.render_scene(scene).save(images / f"{i + 1}.jpg", quality=90)
        rows.append({"image_id": i + 1, "fname": f"{i + 1}.jpg", "mask": mask, "distancing": 1, "5k": mask})
    meta = pd.DataFrame(rows)
    if shuffle_labels:
        meta[["mask", "distancing", "5k"]] = meta[["mask", "distancing", "5k"]].to_numpy()[rng.permutation(n)]
    meta = synth.blank_labels(meta, rng).iloc[rng.permutation(n)]  # rows not in image order
    meta.to_csv(root / "train" / "train_meta.csv", index=False)
    return root


def run_fivek(*args, env=None, check=True):
    """The `fivek` command line in a fresh interpreter, from the checkout."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "fivek_utils.cli", *args], capture_output=True, text=True,
                          env=env, check=check, cwd=config.CODE_ROOT)


# --- the backend-agnostic model path ----------------------------------------------------------------
# These modules import no TensorFlow and no keras-cv at module level (tests/test_architecture.py) and
# build and train under Keras's JAX backend with TensorFlow unimportable (tests/test_backend_jax.py),
# which is how the kit runs on a GPU machine without TensorFlow. A new model module belongs here.
BACKEND_AGNOSTIC = ("modeling.catalog", "modeling.backbones", "modeling.layers", "modeling.losses",
                    "modeling.models", "modeling.optim", "modeling.compiled", "modeling.face_model", "modeling.onet", "modeling.retinaface_trunk",
                    "modeling.stacker",
                    "workflows.gpu_bench")
UNIMPORTABLE = ("tensorflow", "keras_cv", "tensorflow_hub", "tf_keras")

# run first in the child: every import of UNIMPORTABLE fails as if it were not installed
_REFUSE_TENSORFLOW = f"""
import importlib.abc, sys
class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {UNIMPORTABLE!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (made unimportable by the test)", name=name)
sys.meta_path.insert(0, _Refuse())
"""


def run_without_tensorflow(code: str, *, env: dict | None = None, timeout: float = 300):
    """Python `code` in a fresh interpreter on Keras's JAX backend (CPU) where TensorFlow and keras-cv
    cannot be imported; fails the test with the child's output if it exits non-zero."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", **(env or {})}
    proc = subprocess.run([sys.executable, "-c", _REFUSE_TENSORFLOW + code], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=config.CODE_ROOT)
    if proc.returncode:
        pytest.fail(f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}")
    return proc
