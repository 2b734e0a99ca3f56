"""Finding or downloading an official feature-vector SavedModel: `$FIVEK_WEIGHTS_DIR`, attached
Kaggle inputs, earlier downloads, then kagglehub and TF Hub (unless `FIVEK_OFFLINE=1`). When
nothing works, `PretrainedWeightsError` names every route tried and how to provide the model.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ...core import config as _config
from ...core.environment import kaggle_input_dir
from .sources import (
    KAGGLE_MODEL,
    TFHUB_VERSION,
    PretrainedSource,
    PretrainedWeightsError,
    pretrained_source,
    sidecar_path,
)

# how deep the searches of input folders go (Kaggle models sit 4-6 levels below /kaggle/input)
SEARCH_DEPTH = 8
DOWNLOAD_TIMEOUT_S = 120


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

    kaggle_in = kaggle_input_dir()
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


def refetch_hint(sm_dir: str | os.PathLike) -> str:
    """What gets a good copy of the SavedModel folder `sm_dir` again, by where it came from."""
    sm_dir = Path(sm_dir).resolve()
    hub = (Path(_config.INTERIM_DATA_DIR) / "tfhub").resolve()
    kh = _kagglehub_cache_dir().resolve()
    if hub in sm_dir.parents:
        return (f"It is a TF Hub download of the kit's: remove it and run again (it is downloaded again):\n"
                f"  rm -rf {sm_dir}")
    if kh in sm_dir.parents:
        rel = sm_dir.relative_to(kh / "models").parts if (kh / "models") in sm_dir.parents else ()
        handle = "/".join(rel[:5]) if len(rel) >= 4 else KAGGLE_MODEL + "/<framework>/<variation>"
        return (f"It is a kagglehub download: fetch it again with\n"
                f"  python -c \"import kagglehub; print(kagglehub.model_download('{handle}', force_download=True))\"")
    return ("It is not a download of the kit's: replace it with a good copy (on Kaggle, attach the model input "
            "again; elsewhere download it again, e.g. with kagglehub.model_download(..., force_download=True))")
