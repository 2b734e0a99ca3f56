"""ImageNet-21k EfficientNetV2 weights for the keras.applications backbones.

The official 21k checkpoints (google/automl `efficientnetv2-<v>-21k` and `-21k-ft1k`) are
published only as TF2 SavedModel feature vectors (Kaggle Models / TF Hub), and
`tensorflow_hub.KerasLayer` cannot live in a Keras 3 model. So they are converted, once, into
the matching `keras.applications.EfficientNetV2<X>` backbone:

1. `fetch_savedmodel` finds the SavedModel: `$FIVEK_WEIGHTS_DIR`, attached Kaggle inputs
   (`/kaggle/input/**`), local download caches, then `kagglehub.model_download`, then the TF Hub
   compressed URL. `FIVEK_OFFLINE=1` skips the downloads. When nothing works it raises
   `PretrainedWeightsError` naming every place it tried and how to provide the model.
2. `convert_savedmodel` maps the automl variables onto the Keras layers in execution order
   (kind and every shape checked), then proves the conversion: on a fixed random batch the
   SavedModel's pooled features must equal the Keras backbone's (+ global average pooling)
   for one candidate input transform, which fixes the `Rescaling(scale, offset)` that maps
   [0, 255] pixels to what the network expects. Only then does it write
   `<out>.weights.h5` and a sidecar `<out>.json`, atomically.
3. `resolve_pretrained` (called by `models.build_model`) returns a cached, verified
   conversion from `models/pretrained/` when one exists, else fetches and converts.

Never a silent random init: every failure is an exception that says what to do.

Note on the input range: the self-check pins down the SavedModel's *own* input convention (what
it does to the [0, 1] images it is fed, as the tfhub.dev / Kaggle pages document). A SavedModel
that applies no normalisation of its own is converted as "identity" ([0, 1] inputs), even
though the automl training code fed [-1, 1]; the sidecar records which transform was found.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from . import config as _config
from .io import atomic_write_json, save_keras
from .models import BACKBONES, HUB_WEIGHTS, ModelConfigError, build_backbone, check_backbone, is_v2

__all__ = [
    "PretrainedWeightsError",
    "ConversionError",
    "PretrainedSource",
    "SOURCES",
    "VARIANTS",
    "INPUT_TRANSFORMS",
    "pretrained_source",
    "variant_of",
    "fetch_savedmodel",
    "convert_savedmodel",
    "resolve_pretrained",
    "sidecar_path",
    "read_sidecar",
    "is_converted_backbone",
    "conversion_report",
    "pretrained_table",
    "KAGGLE_VERSIONS",
    "FEATURE_WIDTHS",
]

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "fivek-pretrained/1"
KAGGLE_MODEL = "google/efficientnet-v2/tensorFlow2"
TFHUB_ROOT = "https://tfhub.dev/google/imagenet"
TFHUB_VERSION = 2
# attached Kaggle notebook inputs (read-only); a module attribute so tests can point it elsewhere
KAGGLE_INPUT_DIR = Path("/kaggle/input")
# how deep the searches of input folders go (Kaggle models sit 4-6 levels below /kaggle/input)
SEARCH_DEPTH = 8
DOWNLOAD_TIMEOUT_S = 120

# keras.applications twins of the official checkpoints (xl has none, so it is not offered)
VARIANTS = ("b0", "b1", "b2", "b3", "s", "m", "l")
# Kaggle Models version of each feature vector (google/efficientnet-v2/tensorFlow2/<variation>/<version>),
# as public notebooks attach them and the TF Hub -> Kaggle redirect lists name them. None: no public
# source names one; the kit then says so instead of guessing (`fivek kaggle --weights-model` supplies it).
KAGGLE_VERSIONS: dict[str, dict[str, int | None]] = {
    "imagenet21k": {"b0": 1, "b1": 1, "b2": None, "b3": 1, "s": 2, "m": 2, "l": 2},
    "imagenet21k-ft1k": {"b0": 1, "b1": None, "b2": None, "b3": 1, "s": None, "m": 2, "l": 2},
}
# pooled feature width of each variant: round_filters(1280 x width coefficient)
FEATURE_WIDTHS = {"b0": 1280, "b1": 1280, "b2": 1408, "b3": 1536, "s": 1280, "m": 1280, "l": 1280}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# Candidate input conventions, each as the Rescaling(scale, offset) applied to [0, 255] pixels
# (the self-check applies exactly this map to 255 * x for its [0, 1] batch x).
INPUT_TRANSFORMS: dict[str, tuple[str, float | tuple[float, ...], float | tuple[float, ...]]] = {
    "identity": ("[0, 1]: x", 1.0 / 255.0, 0.0),
    "minus1_1": ("automl [-1, 1]: (255 x - 128) / 128", 1.0 / 128.0, -1.0),
    "2x-1": ("[-1, 1]: 2 x - 1", 2.0 / 255.0, -1.0),
    "imagenet": (
        "ImageNet mean/std: (x - mean) / std",
        tuple(1.0 / (255.0 * s) for s in _IMAGENET_STD),
        tuple(-m / s for m, s in zip(_IMAGENET_MEAN, _IMAGENET_STD)),
    ),
}


class PretrainedWeightsError(ModelConfigError):
    """Pretrained weights that cannot be found, downloaded, trusted or converted."""


class ConversionError(PretrainedWeightsError):
    """A SavedModel that does not map onto the requested keras.applications backbone."""


# --- sources ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PretrainedSource:
    """Where one official checkpoint lives, under every name it goes by."""

    variant: str  # b0 .. l
    source: str  # "imagenet21k" or "imagenet21k-ft1k"

    @property
    def tag(self) -> str:  # "21k" / "21k-ft1k"
        return self.source.replace("imagenet", "")

    @property
    def kaggle_variation(self) -> str:
        return f"imagenet{self.tag}-{self.variant}-feature-vector"

    @property
    def kaggle_handle(self) -> str:
        """The Kaggle model without a version (`kagglehub.model_download` takes the latest)."""
        return f"{KAGGLE_MODEL}/{self.kaggle_variation}"

    @property
    def kaggle_version(self) -> int | None:
        """Its Kaggle Models version from `KAGGLE_VERSIONS`; None when no public source names one."""
        return KAGGLE_VERSIONS[self.source][self.variant]

    @property
    def kaggle_source(self) -> str | None:
        """The 5-part handle a kernel's `model_sources` needs, or None when the version is unknown."""
        return None if self.kaggle_version is None else f"{self.kaggle_handle}/{self.kaggle_version}"

    @property
    def feature_width(self) -> int:
        return FEATURE_WIDTHS[self.variant]

    @property
    def hub_name(self) -> str:
        return f"efficientnet_v2_imagenet{self.tag.replace('-', '_')}_{self.variant}"

    @property
    def hub_url(self) -> str:
        return f"{TFHUB_ROOT}/{self.hub_name}/feature_vector/{TFHUB_VERSION}"

    @property
    def hub_download_url(self) -> str:
        return f"{self.hub_url}?tf-hub-format=compressed"

    @property
    def automl_name(self) -> str:
        return f"efficientnetv2-{self.variant}-{self.tag}"

    @property
    def cache_name(self) -> str:
        """File name of the converted weights under models/pretrained/."""
        return f"{self.variant}-{self.tag}.weights.h5"

    @property
    def folder_names(self) -> tuple[str, ...]:
        """Folder names (any path component, lower case) that identify this checkpoint."""
        return (
            self.kaggle_variation,
            self.hub_name,
            f"{self.hub_name}_feature_vector",
            f"{self.hub_name}_feature_vector_{TFHUB_VERSION}",
            self.automl_name,
        )


SOURCES: dict[str, dict[str, PretrainedSource]] = {
    src: {v: PretrainedSource(v, src) for v in VARIANTS} for src in HUB_WEIGHTS
}


def pretrained_source(variant: str, source: str = "imagenet21k") -> PretrainedSource:
    if source not in SOURCES:
        raise ModelConfigError(f"source={source!r}: use one of {sorted(SOURCES)}")
    if variant not in SOURCES[source]:
        raise ModelConfigError(
            f"variant={variant!r} has no ImageNet-21k checkpoint with a keras.applications twin; "
            f"use one of {list(VARIANTS)}"
        )
    return SOURCES[source][variant]


def pretrained_table() -> str:
    """Markdown table of the official checkpoints: Keras twin, feature width, Kaggle Models sources."""
    from .models import BACKBONES

    twin = {v: name for name, v in BACKBONES.items() if v}
    rows = ["| variant | keras.applications | features | ImageNet-21k on Kaggle Models | ImageNet-21k-ft1k on Kaggle Models |",
            "|---|---|---|---|---|"]
    for v in VARIANTS:
        cells = []
        for source in HUB_WEIGHTS:
            src = SOURCES[source][v]
            cells.append(f"`{src.kaggle_variation}/{src.kaggle_version}`" if src.kaggle_version
                         else f"`{src.kaggle_variation}`, version unknown")
        rows.append(f"| {v} | `{twin[v]}` | {FEATURE_WIDTHS[v]} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


def variant_of(backbone: str) -> str:
    check_backbone(backbone)
    variant = BACKBONES[backbone]
    if not is_v2(backbone) or variant is None:
        raise ModelConfigError(f"ImageNet-21k checkpoints exist only for EfficientNetV2 backbones, not {backbone}")
    return variant


# --- finding the SavedModel --------------------------------------------------------------------
def _offline() -> bool:
    return os.environ.get("FIVEK_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _walk(root: Path, max_depth: int) -> Iterator[tuple[Path, list[str], list[str]]]:
    """os.walk (following links) down to `max_depth`, not descending into SavedModels."""
    root = Path(root)
    base = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        d = Path(dirpath)
        if len(d.parts) - base >= max_depth or "saved_model.pb" in filenames:
            dirnames[:] = []
        dirnames.sort()
        yield d, dirnames, filenames


def _version_key(path: Path) -> tuple:
    return tuple(int(p) for p in path.parts if p.isdigit()), str(path)


def _find_savedmodels(root: Path, names: Iterable[str] | None) -> list[Path]:
    """SavedModel folders under `root` whose path (below root) has a component in `names`.

    `names=None` accepts any SavedModel. Classification exports are skipped.
    """
    if not root.is_dir():
        return []
    wanted = {n.lower() for n in names} if names is not None else None
    found = []
    for d, _dirs, files in _walk(root, SEARCH_DEPTH):
        if "saved_model.pb" not in files:
            continue
        parts = [p.lower() for p in d.relative_to(root).parts] or [d.name.lower()]
        if "classification" in parts:
            continue
        if wanted is None or wanted.intersection(parts):
            found.append(d)
    return sorted(found, key=_version_key)


def _kagglehub_cache_dir() -> Path:
    if os.environ.get("KAGGLEHUB_CACHE"):
        return Path(os.environ["KAGGLEHUB_CACHE"])
    return Path.home() / ".cache" / "kagglehub"


def _tfhub_download_dir(src: PretrainedSource) -> Path:
    return Path(_config.INTERIM_DATA_DIR) / "tfhub" / f"{src.hub_name}_feature_vector_{TFHUB_VERSION}"


def _download_tfhub(src: PretrainedSource) -> Path:
    """Download and unpack the TF Hub compressed SavedModel (atomically) into data/interim/tfhub/."""
    dest = _tfhub_download_dir(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        archive = tmp / "model.tar.gz"
        with urllib.request.urlopen(src.hub_download_url, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(archive, "wb") as f:
            shutil.copyfileobj(resp, f)
        unpacked = tmp / "savedmodel"
        with tarfile.open(archive, "r:gz") as tar:
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # no paths outside
            tar.extractall(unpacked, **safe)
        found = _find_savedmodels(unpacked, None)
        if not found:
            raise PretrainedWeightsError(f"{src.hub_download_url} did not contain a saved_model.pb")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(found[0], dest)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch_savedmodel(variant: str, source: str = "imagenet21k") -> Path:
    """The folder of the official feature-vector SavedModel for `variant`, found or downloaded.

    Looks, in order: `$FIVEK_WEIGHTS_DIR/**`, `/kaggle/input/**` (folders holding
    `saved_model.pb` whose path names the checkpoint, e.g. `.../imagenet21k-b0-feature-vector/1`
    or `.../efficientnet_v2_imagenet21k_b0`), the TF Hub download folder under data/interim/tfhub
    and the kagglehub cache; then, unless `FIVEK_OFFLINE=1`, `kagglehub.model_download` and the
    TF Hub compressed URL. Raises `PretrainedWeightsError` naming every route tried.
    """
    src = pretrained_source(variant, source)
    tried: list[str] = []
    names = src.folder_names
    name_list = " / ".join(repr(n) for n in names[:2])

    env = os.environ.get("FIVEK_WEIGHTS_DIR")
    if env:
        found = _find_savedmodels(Path(env).expanduser(), names)
        if found:
            return found[-1]
        tried.append(f"$FIVEK_WEIGHTS_DIR={env}: no folder with saved_model.pb named {name_list}")
    else:
        tried.append("$FIVEK_WEIGHTS_DIR: not set")

    kaggle_in = Path(KAGGLE_INPUT_DIR)
    found = _find_savedmodels(kaggle_in, names)
    if found:
        return found[-1]
    tried.append(
        f"{kaggle_in}: " + ("no attached input" if not kaggle_in.is_dir() else f"no folder with saved_model.pb named {name_list}")
    )

    hub_dir = _tfhub_download_dir(src)
    if (hub_dir / "saved_model.pb").exists():
        return hub_dir
    tried.append(f"{hub_dir}: no earlier TF Hub download")

    kh_dir = _kagglehub_cache_dir() / "models" / Path(*KAGGLE_MODEL.split("/")) / src.kaggle_variation
    found = _find_savedmodels(kh_dir, None)
    if found:
        return found[-1]
    tried.append(f"{kh_dir}: no earlier kagglehub download")

    handle = src.kaggle_source or src.kaggle_handle  # the known version, else the latest
    if _offline():
        tried.append(f"kagglehub.model_download({handle!r}): skipped, FIVEK_OFFLINE=1")
        tried.append(f"{src.hub_download_url}: skipped, FIVEK_OFFLINE=1")
    else:
        try:
            import kagglehub

            path = Path(kagglehub.model_download(handle))
            found = _find_savedmodels(path, None)
            if found:
                return found[-1]
            tried.append(f"kagglehub.model_download({handle!r}) -> {path}: no saved_model.pb in it")
        except Exception as exc:  # network, auth, not found: all mean "try the next route"
            tried.append(f"kagglehub.model_download({handle!r}): {type(exc).__name__}: {exc}")
        try:
            return _download_tfhub(src)
        except Exception as exc:
            tried.append(f"{src.hub_download_url}: {type(exc).__name__}: {exc}")

    raise PretrainedWeightsError(_not_found_message(src, tried))


def _not_found_message(src: PretrainedSource, tried: Sequence[str], untrusted: Sequence[str] = ()) -> str:
    if src.kaggle_source:
        attach = f'kernel-metadata.json: "model_sources": ["{src.kaggle_source}"]'
    else:
        attach = (f'no public source names its version, so take the one its model page shows: "model_sources": '
                  f'["{src.kaggle_handle}/<version>"]')
    lines = [
        f"No EfficientNetV2-{src.variant.upper()} ImageNet-{src.tag} feature-vector SavedModel could be "
        f"found or downloaded (Kaggle {src.kaggle_source or src.kaggle_handle + ' (version unknown)'}, "
        f"TF Hub {src.hub_url}). Tried:",
        *(f"  - {t}" for t in tried),
    ]
    if untrusted:
        lines += ["Converted files that were not trusted:", *(f"  - {u}" for u in untrusted)]
    lines += [
        "Provide it in any one of these ways:",
        f"  1. On Kaggle: Add Input > Models > 'google/efficientnet-v2', framework TensorFlow 2, "
        f"variation '{src.kaggle_variation}' ({attach}); it is found under /kaggle/input automatically.",
        f"  2. With internet: unset FIVEK_OFFLINE and rerun (it downloads once with kagglehub and "
        f"caches the conversion as models/pretrained/{src.cache_name}), or run "
        f"`python -c \"import kagglehub; print(kagglehub.model_download('{src.kaggle_handle}'))\"` "
        f"and set FIVEK_WEIGHTS_DIR to a folder above the printed path.",
        "  3. Point `weights` at a local SavedModel folder (the one holding saved_model.pb), "
        f"e.g. weights='/path/to/{src.kaggle_variation}/1'.",
        f"  4. Copy an earlier conversion, models/pretrained/{src.cache_name} with its "
        f"{sidecar_path(Path(src.cache_name)).name}, into models/pretrained/ or $FIVEK_WEIGHTS_DIR.",
    ]
    return "\n".join(lines)


# --- reading the automl checkpoint ----------------------------------------------------------
_VAR = re.compile(
    r"^(?:(?P<prefix>.*?)/)?(?P<scope>stem|head|blocks_(?P<block>\d+))/(?P<layer>(?:se/)?[A-Za-z][A-Za-z0-9_]*)/"
    r"(?P<param>kernel|depthwise_kernel|bias|gamma|beta|moving_mean|moving_variance)(?::\d+)?$"
)
_CONV = re.compile(r"^(?P<se>se/)?conv2d(?:_(?P<i>\d+))?$")
_DW = re.compile(r"^depthwise_conv2d(?:_(?P<i>\d+))?$")
_BN = re.compile(r"^(?:tpu_)?batch_normalization(?:_(?P<i>\d+))?$")
_PARAMS = {
    "conv": ("kernel", "bias"),
    "depthwise": ("depthwise_kernel", "bias"),
    "bn": ("gamma", "beta", "moving_mean", "moving_variance"),
}
_REQUIRED = {"conv": ("kernel",), "depthwise": ("depthwise_kernel",), "bn": _PARAMS["bn"]}


@dataclass
class _CkptLayer:
    name: str  # e.g. efficientnetv2-b0/blocks_3/se/conv2d
    kind: str  # conv | depthwise | bn
    var_names: list[str]
    arrays: list[np.ndarray]

    def describe(self) -> str:
        shapes = ", ".join(f"{n.rsplit('/', 1)[-1]}{tuple(a.shape)}" for n, a in zip(self.var_names, self.arrays))
        return f"{self.name} ({self.kind}: {shapes})"


def _savedmodel_variables(obj) -> dict[str, np.ndarray]:
    """Name -> float32 value of the SavedModel's variables (hub `.variables`, else its functions')."""
    import tensorflow as tf

    variables = list(getattr(obj, "variables", None) or [])
    if not variables:
        sig = getattr(obj, "signatures", {}) or {}
        for fn in sig.values():
            variables += list(getattr(fn, "variables", []) or [])
    if not variables and hasattr(obj, "__call__"):
        for fn in getattr(obj.__call__, "concrete_functions", []) or []:
            variables += list(fn.variables)
    if not variables:
        raise ConversionError("the SavedModel exposes no variables (no `.variables`, no signature variables)")
    out: dict[str, np.ndarray] = {}
    for v in variables:
        name = re.sub(r":\d+$", "", v.name)
        value = tf.cast(v, tf.float32).numpy()
        if name in out:
            if out[name].shape != value.shape or not np.array_equal(out[name], value):
                raise ConversionError(f"the SavedModel has two different variables named {name!r}")
            continue
        out[name] = value
    return out


def _parse_automl(variables: dict[str, np.ndarray]) -> tuple[list[_CkptLayer], list[str], str]:
    """Group automl variables into layers in execution order. Returns (layers, ignored names, prefix)."""
    groups: dict[tuple[str, str], dict[str, str]] = {}
    prefixes: set[str] = set()
    ignored: list[str] = []
    for name in variables:
        m = _VAR.match(name)
        if not m or not (_CONV.match(m["layer"]) or _DW.match(m["layer"]) or _BN.match(m["layer"])):
            ignored.append(name)
            continue
        prefixes.add(m["prefix"] or "")
        groups.setdefault((m["scope"], m["layer"]), {})[m["param"]] = name
    if not groups:
        raise ConversionError(
            "no automl EfficientNetV2 variables (<model>/stem|blocks_<i>|head/...) in the SavedModel; "
            f"first names: {list(variables)[:5]}"
        )
    if len(prefixes) > 1:
        raise ConversionError(f"the SavedModel holds variables of several models: {sorted(prefixes)}")
    prefix = prefixes.pop()
    root = f"{prefix}/" if prefix else ""

    def layer(scope: str, lname: str, kind: str) -> _CkptLayer:
        params = groups[(scope, lname)]
        full = f"{root}{scope}/{lname}"
        missing = [p for p in _REQUIRED[kind] if p not in params]
        extra = sorted(set(params) - set(_PARAMS[kind]))
        if missing or extra:
            raise ConversionError(
                f"checkpoint layer {full} ({kind}) has parameters {sorted(params)}: "
                + (f"missing {missing}" if missing else f"unexpected {extra}")
            )
        names = [params[p] for p in _PARAMS[kind] if p in params]
        return _CkptLayer(full, kind, names, [variables[n] for n in names])

    def index(m) -> int:
        return int(m["i"]) if m["i"] else 0

    by_scope: dict[str, list[str]] = {}
    for scope, lname in groups:
        by_scope.setdefault(scope, []).append(lname)

    def scope_layers(scope: str) -> list[_CkptLayer]:
        names = by_scope.get(scope, [])
        main = sorted((n for n in names if (m := _CONV.match(n)) and not m["se"]), key=lambda n: index(_CONV.match(n)))
        se = sorted((n for n in names if (m := _CONV.match(n)) and m["se"]), key=lambda n: index(_CONV.match(n)))
        dws = [n for n in names if _DW.match(n)]
        bns = sorted((n for n in names if _BN.match(n)), key=lambda n: index(_BN.match(n)))
        where = f"{root}{scope}"
        if not main:
            raise ConversionError(f"checkpoint scope {where} has no conv2d kernel (layers: {sorted(names)})")
        if len(dws) > 1 or len(se) not in (0, 2):
            raise ConversionError(f"checkpoint scope {where} has an unexpected layer set: {sorted(names)}")
        # execution order: [expand conv] -> depthwise -> SE reduce/expand -> project conv
        # (fused: conv2d -> [SE] -> conv2d_1; fused without expansion: conv2d alone)
        convs = main[:-1] + dws + se + main[-1:]
        if len(bns) != len(main) + len(dws):
            raise ConversionError(
                f"checkpoint scope {where} has {len(main)} conv2d + {len(dws)} depthwise layers but "
                f"{len(bns)} batch norms ({sorted(names)}): a variable is missing or extra"
            )
        out, bn_iter = [], iter(bns)
        for n in convs:
            if _DW.match(n):
                out += [layer(scope, n, "depthwise"), layer(scope, next(bn_iter), "bn")]
            elif _CONV.match(n)["se"]:
                out.append(layer(scope, n, "conv"))
            else:
                out += [layer(scope, n, "conv"), layer(scope, next(bn_iter), "bn")]
        return out

    blocks = sorted(int(s.split("_")[1]) for s in by_scope if s.startswith("blocks_"))
    if blocks != list(range(len(blocks))):
        missing = sorted(set(range(max(blocks) + 1)) - set(blocks)) if blocks else []
        raise ConversionError(f"checkpoint blocks are not numbered 0..N-1 (missing {missing})")
    for scope in ("stem", "head"):
        if scope not in by_scope:
            raise ConversionError(f"checkpoint has no {root}{scope}/ variables")
    layers = scope_layers("stem")
    for b in blocks:
        layers += scope_layers(f"blocks_{b}")
    layers += scope_layers("head")
    for scope in ("stem", "head"):
        if len(by_scope[scope]) != 2:
            raise ConversionError(f"checkpoint {root}{scope} should hold one conv2d and one batch norm: {by_scope[scope]}")
    return layers, ignored, prefix


def _keras_kind(layer) -> str:
    import keras

    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "bn"
    if isinstance(layer, keras.layers.Conv2D):
        return "conv"
    return type(layer).__name__


def _describe_keras(layer) -> str:
    shapes = ", ".join(f"{w.path.rsplit('/', 1)[-1]}{tuple(w.shape)}" for w in layer.weights)
    return f"{layer.name} ({_keras_kind(layer)}: {shapes})"


def _map_onto(base, ckpt: list[_CkptLayer], prefix: str, variant: str) -> list[tuple[object, _CkptLayer]]:
    """Pair checkpoint layers with the backbone's weighted layers in order; any mismatch is an error."""
    klayers = [layer for layer in base.layers if layer.weights]
    n_kt = sum(len(layer.weights) for layer in klayers)
    n_ct = sum(len(c.arrays) for c in ckpt)
    counts = (
        f"counts: keras {len(klayers)} weighted layers / {n_kt} tensors, "
        f"checkpoint {len(ckpt)} layers / {n_ct} tensors"
    )
    hint = ""
    if prefix and prefix != f"efficientnetv2-{variant}" and prefix.startswith("efficientnetv2-"):
        hint = f" The checkpoint's model is {prefix!r}, the backbone is efficientnetv2-{variant}."
    for i, (kl, cl) in enumerate(zip(klayers, ckpt)):
        kshapes = [tuple(w.shape) for w in kl.weights]
        cshapes = [tuple(a.shape) for a in cl.arrays]
        if _keras_kind(kl) != cl.kind or kshapes != cshapes:
            raise ConversionError(
                f"checkpoint does not fit {base.name}: weighted layer #{i} keras {_describe_keras(kl)} "
                f"vs checkpoint {cl.describe()}; {counts}.{hint}"
            )
    if len(klayers) != len(ckpt):
        i = min(len(klayers), len(ckpt))
        first = (
            f"keras layer {_describe_keras(klayers[i])} has no checkpoint counterpart"
            if len(klayers) > len(ckpt)
            else f"checkpoint layer {ckpt[i].describe()} has no keras counterpart"
        )
        raise ConversionError(f"checkpoint does not fit {base.name}: {first} (#{i}); {counts}.{hint}")
    return list(zip(klayers, ckpt))


# --- the self-check --------------------------------------------------------------------------
def _savedmodel_features(obj, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    t = tf.constant(x)
    attempts = []
    out = None
    for how, call in (
        ("obj(x, training=False)", lambda: obj(t, training=False)),
        ("obj(x)", lambda: obj(t)),
        ("serving_default", lambda: obj.signatures["serving_default"](t)),
    ):
        try:
            out = call()
            break
        except Exception as exc:
            attempts.append(f"{how}: {type(exc).__name__}: {str(exc)[:200]}")
    if out is None and "serving_default" in getattr(obj, "signatures", {}):
        fn = obj.signatures["serving_default"]
        try:
            (key,) = fn.structured_input_signature[1].keys()
            out = fn(**{key: t})
        except Exception as exc:
            attempts.append(f"serving_default(**kw): {type(exc).__name__}: {str(exc)[:200]}")
    if out is None:
        raise ConversionError("cannot call the SavedModel on an image batch: " + "; ".join(attempts))
    if isinstance(out, dict):
        keys = [k for k in out if "feature" in k or k in ("default", "output_0")] or list(out)
        out = out[keys[0]]
    if isinstance(out, (list, tuple)):
        out = out[0]
    arr = np.asarray(out, dtype="float32")
    if arr.ndim == 4:  # feature map: pool it like the hub feature vector does
        arr = arr.mean(axis=(1, 2))
    if arr.ndim != 2:
        raise ConversionError(f"the SavedModel returned shape {arr.shape}, not a [batch, features] feature vector")
    return arr


def _check_images(seed: int, batch: int, size: int) -> np.ndarray:
    """A seeded [0, 1] batch with structure: smooth blobs, fine noise, per-image brightness/contrast."""
    rng = np.random.default_rng(seed)
    cell = max(1, size // 8)
    coarse = rng.uniform(0.0, 1.0, size=(batch, -(-size // cell), -(-size // cell), 3))
    smooth = np.repeat(np.repeat(coarse, cell, axis=1), cell, axis=2)[:, :size, :size]
    fine = rng.uniform(0.0, 1.0, size=(batch, size, size, 3))
    lo = rng.uniform(0.0, 0.4, size=(batch, 1, 1, 1))
    hi = rng.uniform(0.6, 1.0, size=(batch, 1, 1, 1))
    x = lo + (hi - lo) * (0.7 * smooth + 0.3 * fine)
    return np.clip(x, 0.0, 1.0).astype("float32")


def _rescale(pixels: np.ndarray, scale, offset) -> np.ndarray:
    return (pixels * np.asarray(scale, dtype="float32") + np.asarray(offset, dtype="float32")).astype("float32")


def _keras_features(base, x: np.ndarray) -> np.ndarray:
    y = base(x, training=False)
    return np.asarray(y, dtype="float32").mean(axis=(1, 2))


def _rel_error(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(a - ref)) / max(float(np.max(np.abs(ref))), 1e-12))


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


# --- conversion --------------------------------------------------------------------------------
def sidecar_path(weights_file: str | os.PathLike) -> Path:
    """`b0-21k.weights.h5` -> `b0-21k.json`."""
    p = Path(weights_file)
    stem = p.name[: -len(".weights.h5")] if p.name.endswith(".weights.h5") else p.stem
    return p.with_name(f"{stem}.json")


def read_sidecar(weights_file: str | os.PathLike) -> dict | None:
    p = sidecar_path(weights_file)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def is_converted_backbone(weights_file: str | os.PathLike) -> bool:
    """True for a `.weights.h5` written by `convert_savedmodel` (it has a fivek sidecar).

    Such a file holds backbone weights *without* their input preprocessing: it must be loaded
    with the Rescaling its sidecar names, which `resolve_pretrained` returns.
    """
    info = read_sidecar(weights_file) if str(weights_file).endswith(".weights.h5") else None
    return bool(info) and info.get("format") == SIDECAR_FORMAT


REPORT_KEYS = ("backbone", "source", "kaggle_source", "tfhub_url", "savedmodel", "input_transform",
               "input_transform_desc", "max_rel_error", "runner_up", "tol", "feature_width", "layers_mapped",
               "keras", "tensorflow", "created")


def conversion_report(weights_file: str | os.PathLike) -> dict:
    """What a conversion's sidecar says a user should know: where the SavedModel came from, the input
    transform the self-check chose and its error, the feature width, and the Keras/TF versions."""
    info = read_sidecar(weights_file)
    if info is None:
        raise PretrainedWeightsError(f"{weights_file} has no readable sidecar {sidecar_path(weights_file).name}")
    report = {k: info[k] for k in REPORT_KEYS if info.get(k) is not None}
    return {**report, "weights_file": str(weights_file), "report": str(sidecar_path(weights_file))}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fingerprint(savedmodel_dir: Path) -> str:
    """Content hash of a SavedModel's graph and variable index (cheap; changes if the model does)."""
    h = hashlib.sha256()
    for rel in ("saved_model.pb", "variables/variables.index"):
        p = savedmodel_dir / rel
        h.update(rel.encode())
        if p.exists():
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def convert_savedmodel(
    savedmodel_dir: str | os.PathLike,
    backbone: str,
    out_path: str | os.PathLike,
    *,
    tol: float = 1e-4,
    seed: int = 0,
    source: str = "savedmodel",
    check_size: int = 64,
    check_batch: int = 2,
) -> dict:
    """Convert an automl EfficientNetV2 feature-vector SavedModel into `backbone`'s weights.

    Maps the checkpoint onto `build_backbone(backbone, include_preprocessing=False)` layer by
    layer (execution order, kind and every shape checked), then runs the self-check: on a
    seeded random [0, 1] batch the SavedModel's pooled features must match the Keras
    backbone + global average pooling applied to T(x) for one candidate input transform
    (`INPUT_TRANSFORMS`) with relative error below `tol`. Only then writes `out_path`
    (`.weights.h5`) and its sidecar JSON, both atomically; on any failure nothing is written.

    Returns the sidecar's content (plus "weights_file" and "sidecar" paths).
    """
    import keras
    import tensorflow as tf

    variant = variant_of(backbone)
    sm_dir = Path(savedmodel_dir).expanduser().resolve()
    out_path = Path(out_path)
    if not out_path.name.endswith(".weights.h5"):
        raise ValueError(f"out_path={out_path}: must end with .weights.h5")
    if not (sm_dir / "saved_model.pb").exists():
        raise ConversionError(f"{sm_dir} is not a SavedModel folder (no saved_model.pb)")

    t0 = time.time()
    try:
        obj = tf.saved_model.load(str(sm_dir))
    except Exception as exc:
        raise ConversionError(f"cannot load the SavedModel {sm_dir}: {type(exc).__name__}: {exc}") from exc
    variables = _savedmodel_variables(obj)
    ckpt, ignored, prefix = _parse_automl(variables)

    base = build_backbone(backbone, include_preprocessing=False)
    pairs = _map_onto(base, ckpt, prefix, variant)
    for klayer, clayer in pairs:
        klayer.set_weights(clayer.arrays)

    # self-check
    x = _check_images(seed, check_batch, check_size)
    ref = _savedmodel_features(obj, x)
    channels = base.output_shape[-1]
    if ref.shape != (check_batch, channels):
        raise ConversionError(
            f"the SavedModel's output has shape {ref.shape}, the {backbone} feature vector would be "
            f"{(check_batch, channels)} (EfficientNetV2-{variant.upper()} features are {FEATURE_WIDTHS[variant]} wide): "
            "not the feature-vector export of this variant?"
        )
    # every candidate in one batch: T(x) for T in INPUT_TRANSFORMS
    keys = list(INPUT_TRANSFORMS)
    stacked = np.concatenate([_rescale(x * 255.0, *INPUT_TRANSFORMS[k][1:]) for k in keys])
    feats = _keras_features(base, stacked).reshape(len(keys), *ref.shape)
    errors = {k: _rel_error(f, ref) for k, f in zip(keys, feats)}
    ranked = sorted(errors, key=errors.get)
    best = ranked[0]
    if errors[ranked[1]] < tol:
        raise ConversionError(
            f"self-check for {sm_dir} -> {backbone} is ambiguous: input transforms {ranked[0]!r} and "
            f"{ranked[1]!r} both match within tol {tol:g} ({errors}); the SavedModel's features barely "
            "depend on its input, so the input range cannot be told. Nothing was written."
        )
    if not errors[best] < tol:
        detail = ", ".join(f"{k} ({INPUT_TRANSFORMS[k][0]}): {v:.3g}" for k, v in errors.items())
        raise ConversionError(
            f"self-check failed for {sm_dir} -> {backbone}: the SavedModel matches none of the input conventions "
            f"the kit knows. Relative error of the converted backbone's features for each (tol {tol:g}): {detail}. "
            "Every variable's shape fitted, so either this SavedModel expects another input convention "
            "(add it to fivek_utils.weights.INPUT_TRANSFORMS) or its variables are wired differently "
            "(a wrong variant, a swapped or corrupt variable). Nothing was written."
        )

    desc, scale, offset = INPUT_TRANSFORMS[best]
    info = {
        "format": SIDECAR_FORMAT,
        "backbone": backbone,
        "variant": variant,
        "source": source,
        "savedmodel": str(sm_dir),
        "savedmodel_fingerprint": _fingerprint(sm_dir),
        "checkpoint_model": prefix,
        "input_transform": best,
        "input_transform_desc": desc,
        "scale": _jsonable(scale),
        "offset": _jsonable(offset),
        "max_rel_error": errors[best],
        "runner_up": {ranked[1]: errors[ranked[1]]},
        "rel_errors": errors,
        "tol": tol,
        "check": {"seed": seed, "batch": check_batch, "size": check_size},
        "feature_width": int(channels),
        "tensors_mapped": sum(len(c.arrays) for _, c in pairs),
        "layers_mapped": len(pairs),
        "ignored_variables": ignored,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": None,
    }
    if source in SOURCES:
        src = pretrained_source(variant, source)
        info.update(kaggle_handle=src.kaggle_handle, kaggle_source=src.kaggle_source, tfhub_url=src.hub_url)
    if best == "identity":
        info["note"] = (
            "The SavedModel applies no input normalisation of its own; the model feeds it [0, 1] "
            "images as the tfhub.dev / Kaggle pages document (automl's training code used [-1, 1])."
        )

    sidecar = sidecar_path(out_path)
    sidecar.unlink(missing_ok=True)  # never leave an old sidecar paired with new weights
    save_keras(base, out_path)
    info["weights_sha256"] = _sha256(out_path)
    info["seconds"] = round(time.time() - t0, 2)
    atomic_write_json(sidecar, info)
    log.info(
        "converted %s -> %s (%s, input %s, rel. error %.2g)", sm_dir, out_path, backbone, best, errors[best]
    )
    return {**info, "weights_file": str(out_path), "sidecar": str(sidecar)}


# --- cache and resolution --------------------------------------------------------------------
def _trust(weights_file: Path, expect: dict) -> tuple[dict | None, str | None]:
    """(sidecar, None) if `weights_file` is a verified conversion matching `expect`, else (None, why)."""
    if not weights_file.is_file():
        return None, None
    info = read_sidecar(weights_file)
    if info is None:
        return None, f"no readable sidecar {sidecar_path(weights_file).name}"
    if info.get("format") != SIDECAR_FORMAT:
        return None, f"sidecar format {info.get('format')!r}, expected {SIDECAR_FORMAT!r}"
    for key, want in expect.items():
        if info.get(key) != want:
            return None, f"sidecar says {key}={info.get(key)!r}, expected {want!r}"
    if info.get("input_transform") not in INPUT_TRANSFORMS or "scale" not in info or "offset" not in info:
        return None, "sidecar has no valid input transform"
    if info.get("weights_sha256") != _sha256(weights_file):
        return None, "the weights file does not match the sidecar's sha256"
    return info, None


def _scale_offset(info: dict):
    def conv(v):
        return tuple(float(a) for a in v) if isinstance(v, list) else float(v)

    return conv(info["scale"]), conv(info["offset"])


def _cache_candidates(name: str) -> list[Path]:
    cands = [Path(_config.PRETRAINED_DIR) / name]
    for root in [os.environ.get("FIVEK_WEIGHTS_DIR"), str(KAGGLE_INPUT_DIR)]:
        if root and Path(root).is_dir():
            for d, _dirs, files in _walk(Path(root).expanduser(), SEARCH_DEPTH):
                if name in files:
                    cands.append(d / name)
    return cands


def resolve_pretrained(backbone: str, weights: str | os.PathLike):
    """(weights_file, scale, offset) for `models.build_model`.

    `weights` is "imagenet21k", "imagenet21k-ft1k", a SavedModel folder, or a converted
    `.weights.h5` with its sidecar (`is_converted_backbone`). `weights_file` holds
    `build_backbone(backbone, include_preprocessing=False)` weights; `Rescaling(scale, offset)`
    maps [0, 255] pixels to the network's input (scale/offset are floats, or 3-tuples for a
    per-channel ImageNet mean/std convention).

    Verified conversions are cached in models/pretrained/ (`<variant>-21k.weights.h5`,
    `<variant>-21k-ft1k.weights.h5`, `<variant>-<hash of the folder path>.weights.h5`) with a
    sidecar JSON; a cache without a matching sidecar (or with a changed weights file) is not
    trusted and is converted again, which needs the SavedModel.
    """
    variant = variant_of(backbone)
    untrusted: list[str] = []
    if isinstance(weights, str) and weights in HUB_WEIGHTS:
        src = pretrained_source(variant, weights)
        expect = {"backbone": backbone, "variant": variant, "source": weights}
        for cand in _cache_candidates(src.cache_name):
            info, why = _trust(cand, expect)
            if info is not None:
                return (cand, *_scale_offset(info))
            if why:
                untrusted.append(f"{cand}: {why}")
                log.warning("not using %s: %s", cand, why)
        try:
            sm_dir = fetch_savedmodel(variant, weights)
        except PretrainedWeightsError as exc:
            if untrusted:
                raise PretrainedWeightsError(
                    f"{exc}\nConverted files that were not trusted:\n" + "\n".join(f"  - {u}" for u in untrusted)
                ) from None
            raise
        out = Path(_config.PRETRAINED_DIR) / src.cache_name
        info = convert_savedmodel(sm_dir, backbone, out, source=weights)
        return (out, *_scale_offset(info))

    if str(weights).endswith(".weights.h5"):  # an earlier conversion, named directly
        path = Path(weights).expanduser()
        info, why = _trust(path, {"backbone": backbone})
        if info is None:
            raise PretrainedWeightsError(
                f"{path} is not a verified conversion for {backbone}: {why or 'the file does not exist'}"
            )
        return (path, *_scale_offset(info))

    sm_dir = Path(weights).expanduser().resolve()
    if not sm_dir.is_dir() or not (sm_dir / "saved_model.pb").exists():
        raise PretrainedWeightsError(
            f"weights={str(weights)!r} is not a SavedModel folder (no saved_model.pb in {sm_dir}); use "
            "'imagenet21k', 'imagenet21k-ft1k', or the folder of an EfficientNetV2 feature-vector SavedModel"
        )
    digest = hashlib.sha1(str(sm_dir).encode()).hexdigest()[:10]
    out = Path(_config.PRETRAINED_DIR) / f"{variant}-{digest}.weights.h5"
    expect = {
        "backbone": backbone,
        "variant": variant,
        "source": "savedmodel",
        "savedmodel": str(sm_dir),
        "savedmodel_fingerprint": _fingerprint(sm_dir),
    }
    info, why = _trust(out, expect)
    if info is not None:
        return (out, *_scale_offset(info))
    if why:
        log.warning("not using %s: %s; converting %s again", out, why, sm_dir)
    info = convert_savedmodel(sm_dir, backbone, out, source="savedmodel")
    return (out, *_scale_offset(info))
