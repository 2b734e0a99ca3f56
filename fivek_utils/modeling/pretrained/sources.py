"""The official ImageNet-21k EfficientNetV2 checkpoints: every name each goes by (Kaggle Models
handle and version, TF Hub URL, automl name, cache file), their feature widths, and the errors of
this package. No TensorFlow here: the Kaggle bundle and the command line read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...core.config import ModelConfigError
from ..catalog import BACKBONES, HUB_WEIGHTS, check_backbone, is_v2

KAGGLE_MODEL = "google/efficientnet-v2/tensorFlow2"
TFHUB_ROOT = "https://tfhub.dev/google/imagenet"
TFHUB_VERSION = 2

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


class PretrainedWeightsError(ModelConfigError):
    """Pretrained weights that cannot be found, downloaded, trusted or converted."""


class ConversionError(PretrainedWeightsError):
    """A SavedModel that does not map onto the requested keras.applications backbone."""


class SavedModelLoadError(ConversionError):
    """A SavedModel folder TensorFlow cannot load (damaged: a file cut short or changed); the message
    names the folder and what gets a good copy again."""


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


def sidecar_path(weights_file: str | os.PathLike) -> Path:
    """`b0-21k.weights.h5` -> `b0-21k.json`."""
    p = Path(weights_file)
    stem = p.name[: -len(".weights.h5")] if p.name.endswith(".weights.h5") else p.stem
    return p.with_name(f"{stem}.json")
