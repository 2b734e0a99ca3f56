"""Converting an automl EfficientNetV2 SavedModel into a keras.applications backbone, proven by a
self-check, with the report of every conversion beside its weights.

The official 21k checkpoints are published only as TF2 SavedModel feature vectors, and
`tensorflow_hub.KerasLayer` cannot live in a Keras 3 model. `convert_savedmodel` maps the automl
variables onto the Keras layers in execution order (kind and every shape checked), then proves
the conversion: on a fixed random batch the SavedModel's pooled features must equal the Keras
backbone's (+ global average pooling) for one candidate input transform, which fixes the
`Rescaling(scale, offset)` that maps [0, 255] pixels to what the network expects. Only then does
it write `<out>.weights.h5` and its report `<out>.json`, atomically.

Note on the input range: the self-check pins down the SavedModel's *own* input convention (what
it does to the [0, 1] images it is fed, as the tfhub.dev / Kaggle pages document). A SavedModel
that applies no normalisation of its own is converted as "identity" ([0, 1] inputs), even
though the automl training code fed [-1, 1]; the report records which transform was found.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.io import atomic_write_json, file_sha256, save_keras
from ..backbones import build_backbone
from .fetch import refetch_hint
from .sources import (
    FEATURE_WIDTHS,
    SOURCES,
    ConversionError,
    PretrainedWeightsError,
    SavedModelLoadError,
    pretrained_source,
    sidecar_path,
    variant_of,
)

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "fivek-pretrained/1"
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
        from .standin import remake_standin

        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if not remake_standin(sm_dir, why):  # the kit's own stand-in is written again; any other is named
            raise SavedModelLoadError(
                f"cannot load the SavedModel {sm_dir}: {type(exc).__name__}: {exc}\n"
                f"It is damaged (a file cut short or changed). {refetch_hint(sm_dir)}") from exc
        obj = tf.saved_model.load(str(sm_dir))
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
            "(add it to fivek_utils.modeling.pretrained.convert.INPUT_TRANSFORMS) or its variables are wired differently "
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
    info["weights_sha256"] = file_sha256(out_path)
    info["seconds"] = round(time.time() - t0, 2)
    atomic_write_json(sidecar, info)
    log.info(
        "converted %s -> %s (%s, input %s, rel. error %.2g)", sm_dir, out_path, backbone, best, errors[best]
    )
    return {**info, "weights_file": str(out_path), "sidecar": str(sidecar)}
