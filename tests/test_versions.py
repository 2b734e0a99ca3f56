"""The support matrix's bookkeeping: one source of truth for the dependency ranges (requirements.txt
and pyproject.toml agree with fivek_utils.core.versions.SUPPORTED), every lower bound is a version
`make test-compat` installs, and a version outside its range gives one plain warning on import."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import warnings

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from fivek_utils.core import versions as V
from fivek_utils.core.config import CODE_ROOT

CONSTRAINTS = {name: CODE_ROOT / "constraints" / name for name in ("colab.txt", "lower-bounds.txt")}


def requirement_lines(path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def ranges(reqs) -> dict[str, SpecifierSet]:
    return {canonicalize_name(r.name): r.specifier for r in reqs}


def pins(path) -> dict[str, str]:
    out = {}
    for req in requirement_lines(path):
        (spec,) = req.specifier
        assert spec.operator == "==", f"{path.name}: {req} is not a pin"
        out[canonicalize_name(req.name)] = spec.version
    return out


def lower_bound(spec: SpecifierSet) -> str:
    (low,) = [s.version for s in spec if s.operator in (">=", "==")]
    return low


SUPPORTED = {canonicalize_name(n): SpecifierSet(s) for n, s in V.SUPPORTED.items()}


def test_pyproject_dependencies_are_the_supported_ranges():
    project = tomllib.loads((CODE_ROOT / "pyproject.toml").read_text())["project"]
    declared = ranges(Requirement(d) for d in project["dependencies"])
    missing = sorted(set(declared) - set(SUPPORTED))
    assert not missing, f"pyproject.toml depends on {missing}: add their ranges to fivek_utils/core/versions.py SUPPORTED"
    assert declared == SUPPORTED, {n: (str(declared.get(n)), str(s)) for n, s in SUPPORTED.items() if declared.get(n) != s}


def test_requirements_txt_has_the_supported_ranges_beside_its_test_tools():
    declared = ranges(requirement_lines(CODE_ROOT / "requirements.txt"))
    assert {n: declared.get(n) for n in SUPPORTED} == SUPPORTED
    assert set(declared) - set(SUPPORTED) == {"jupyter", "pytest", "pytest-xdist", "jax"}  # test tools; a run needs none


def test_no_deps_requirements_are_pinned_and_not_pyproject_dependencies():
    """requirements-nodeps.txt (installed with --no-deps) says what NO_DEPS says: exact pins, so both
    environments read the same model file, and none of them a dependency pip would resolve."""
    declared = ranges(requirement_lines(CODE_ROOT / "requirements-nodeps.txt"))
    assert declared == {canonicalize_name(n): SpecifierSet(s) for n, s in V.NO_DEPS.items()}
    assert all(len(s) == 1 and next(iter(s)).operator == "==" for s in declared.values())
    assert not set(declared) & set(SUPPORTED)
    assert set(V.CHECKED) == set(SUPPORTED) | set(V.NO_DEPS)


def test_every_lower_bound_is_a_version_test_compat_installs():
    colab, lower = pins(CONSTRAINTS["colab.txt"]), pins(CONSTRAINTS["lower-bounds.txt"])
    assert not set(colab) & set(lower), "a package is pinned in both constraint files"
    tested = {**colab, **lower}
    for name, spec in ranges(requirement_lines(CODE_ROOT / "requirements.txt")).items():
        assert name in tested, f"{name}'s lower bound is not pinned in constraints/: add it to lower-bounds.txt"
        assert Version(tested[name]) == Version(lower_bound(spec)), f"{name}: requirements say {spec}, constraints/ pin {tested[name]}"
    assert not set(lower) - set(ranges(requirement_lines(CODE_ROOT / "requirements.txt"))), "lower-bounds.txt pins a non-requirement"


def test_this_environment_has_supported_versions():
    """True in both `make test` (newest in range) and `make test-compat` (the lower bounds) environments."""
    assert V.unsupported() == []


@pytest.mark.parametrize(("version", "inside"), [
    ("2.20.0", True), ("2.21.3", True), ("2.20.0+cu126", True), ("2.21.0rc0", True),
    ("2.19.1", False), ("2.22.0", False), ("2.22.0rc1", False), ("not-a-version", False),
])
def test_in_range_reads_builds_and_prereleases(version, inside):
    assert V.in_range(version, V.SUPPORTED["tensorflow"]) is inside


def test_one_plain_warning_names_what_was_found_and_what_is_supported():
    import numpy

    supported = {"numpy": ">=99", "pytest": V.SUPPORTED.get("pytest", ">=8"), "no-such-package-fivek": ">=1.0"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = V.warn_unsupported(supported)
    assert problems == [f"numpy {numpy.__version__} (supported >=99)", "no-such-package-fivek not installed (supported >=1.0)"]
    assert len(caught) == 1 and caught[0].category is V.UnsupportedVersionWarning
    message = str(caught[0].message)
    assert all(p in message for p in problems) and "pytest" not in message and "\n" not in message


def test_the_off_switch_silences_it(monkeypatch):
    monkeypatch.setenv(V.OFF_SWITCH, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert V.warn_unsupported({"numpy": ">=99"}) == []


def fake_distribution(root, name: str, version: str) -> None:
    """Package metadata that importlib.metadata finds before the real one (the code stays the real one)."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_import_warns_once_at_the_importers_line_without_loading_tensorflow(tmp_path):
    fake_distribution(tmp_path / "site", "scikit-learn", "1.5.2")
    fake_distribution(tmp_path / "site", "keras", "3.10.0")
    code = ("import sys, warnings; warnings.simplefilter('default')\n"
            "import fivek_utils\n"
            "import fivek_utils.data.folds\n"
            "print('tensorflow' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != V.OFF_SWITCH}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), str(CODE_ROOT)])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    assert result.stdout.strip() == "False"
    lines = [line for line in result.stderr.splitlines() if "UnsupportedVersionWarning" in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("<string>:2: UnsupportedVersionWarning: fivek is tested with other versions")
    assert "keras 3.10.0 (supported >=3.13.2,<3.16)" in lines[0] and "scikit-learn 1.5.2 (supported >=1.6.1,<2)" in lines[0]
