"""Verified conversions cached in models/pretrained/, and `resolve_pretrained`, which
`models.build_model` calls: a trusted cached conversion, else fetch and convert."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from ...core import config as _config
from ...core.environment import kaggle_input_dir
from ...core.io import file_sha256
from ..catalog import HUB_WEIGHTS
from .convert import INPUT_TRANSFORMS, SIDECAR_FORMAT, _fingerprint, convert_savedmodel, read_sidecar
from .fetch import SEARCH_DEPTH, _walk, fetch_savedmodel
from .sources import PretrainedWeightsError, pretrained_source, sidecar_path, variant_of

log = logging.getLogger(__name__)

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
    if info.get("weights_sha256") != file_sha256(weights_file):
        return None, "the weights file does not match the sidecar's sha256"
    return info, None


def _scale_offset(info: dict):
    def conv(v):
        return tuple(float(a) for a in v) if isinstance(v, list) else float(v)

    return conv(info["scale"]), conv(info["offset"])


def _cache_candidates(name: str) -> list[Path]:
    cands = [Path(_config.PRETRAINED_DIR) / name]
    for root in [os.environ.get("FIVEK_WEIGHTS_DIR"), str(kaggle_input_dir())]:
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
