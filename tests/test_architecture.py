"""The package's one-way structure: each module imports only from its own layer or below, no two
modules import each other (directly or round a longer circle), and the label/metric core and the
data layer never import Keras or TensorFlow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BACKEND_AGNOSTIC, UNIMPORTABLE

PACKAGE = Path(__file__).resolve().parents[1] / "fivek_utils"
# lowest first: a module may import its own layer and the ones before it
LAYERS = ["core", "data", "modeling", "workflows", "platform", "cli"]
HEAVY = ("keras", "keras_cv", "tensorflow", "tensorflow_hub")


def modules() -> dict[str, Path]:
    """Dotted name (below fivek_utils) -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name or "__init__"] = path
    return out


def imports(name: str, path: Path, *, top_level: bool = False) -> set[str]:
    """Every module this one imports, at the top or inside functions (only those that importing it
    runs, with `top_level`): package modules by their dotted name below fivek_utils, others by their
    top-level name prefixed with '!'."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    tree = ast.parse(path.read_text())
    if top_level:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")
                found.add(".".join(top[1:]) if top[0] == "fivek_utils" else "!" + top[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = [*base, *(node.module.split(".") if node.module else [])]
                for alias in node.names:  # `from . import config` imports the module config
                    sub = ".".join([*target, alias.name])
                    found.add(sub if sub in modules() else ".".join(target))
            elif node.module.split(".")[0] == "fivek_utils":
                found.add(".".join(node.module.split(".")[1:]))
            else:
                found.add("!" + node.module.split(".")[0])
    return {f for f in found if f != name}


def layer(name: str) -> int:
    top = name.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else len(LAYERS)  # __init__ and resources: outside the layers


def test_every_module_is_in_a_layer():
    assert {n.split(".")[0] for n in modules()} <= {*LAYERS, "__init__", "resources"}


@pytest.mark.parametrize("name", [n for n in modules() if n not in ("__init__", "resources")])
def test_imports_go_one_way_down(name):
    mods = modules()
    for target in imports(name, mods[name]):
        if target.startswith("!"):
            continue
        assert target in mods, f"{name} imports {target}, which is not a module of the package"
        assert layer(target) <= layer(name), f"{name} ({LAYERS[layer(name)]}) imports {target} from a higher layer"


def test_no_import_circles():
    mods = modules()
    graph = {n: {t for t in imports(n, p) if t in mods and t != "__init__"} for n, p in mods.items() if n != "__init__"}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1  # on the current path
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if not state.get(nxt):
                visit(nxt, path + [nxt])
        state[node] = 2  # done

    for n in sorted(graph):
        if not state.get(n):
            visit(n, [n])


@pytest.mark.parametrize("name", [n for n in modules() if n.split(".")[0] in ("core", "data")])
def test_core_and_data_never_import_keras_or_tensorflow(name):
    heavy = {t[1:] for t in imports(name, modules()[name]) if t.startswith("!")} & set(HEAVY)
    assert not heavy, f"{name} imports {sorted(heavy)}"


def tensorflow_at_import(name: str) -> list[str]:
    """The chain of package modules by which importing `name` imports TensorFlow or keras-cv, or []."""
    mods, seen = modules(), set()

    def visit(mod: str, chain: list[str]) -> list[str]:
        seen.add(mod)
        found = imports(mod, mods[mod], top_level=True)
        heavy = sorted(t[1:] for t in found if t.startswith("!") and t[1:] in UNIMPORTABLE)
        if heavy:
            return [*chain, f"!{heavy[0]}"]
        for nxt in sorted(t for t in found if t in mods and t not in seen):
            if hit := visit(nxt, [*chain, nxt]):
                return hit
        return []

    return visit(name, [name])


@pytest.mark.parametrize("name", BACKEND_AGNOSTIC)
def test_the_model_path_imports_no_tensorflow(name):
    """Imports inside functions (SavedModel conversion, tf.data) are fine: they run only when used."""
    assert name in modules(), f"{name} is listed in conftest.BACKEND_AGNOSTIC but is not a module"
    chain = tensorflow_at_import(name)
    assert not chain, "importing " + " -> ".join(chain) + " (move that import into the function that needs it)"


def test_the_label_and_metric_core_loads_without_tensorflow():
    code = ("import sys; import fivek_utils.core.metrics, fivek_utils.data.folds, fivek_utils.data.synth, "
            "fivek_utils.modeling.pretrained.sources, fivek_utils.platform.kaggle; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above can fail: a fake package with an upward import and a circle."""
    fake = tmp_path / "fivek_utils"
    for rel, text in {"core/a.py": "from ..data import b\n", "data/b.py": "from . import c\n",
                      "data/c.py": "from .b import x\n", "core/__init__.py": "", "data/__init__.py": ""}.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert imports("core.a", fake / "core" / "a.py") == {"data.b"} and layer("data.b") > layer("core.a")
    with pytest.raises(AssertionError, match="import circle: data.b -> data.c -> data.b"):
        test_no_import_circles()


def test_the_tensorflow_check_follows_module_imports_and_skips_lazy_ones(tmp_path, monkeypatch):
    fake = tmp_path / "fivek_utils"
    for rel, text in {"modeling/a.py": "from . import b\n\ndef f():\n    import tensorflow\n",
                      "modeling/b.py": "import numpy\nfrom .c import x\n", "modeling/c.py": "import keras_cv\n",
                      "modeling/d.py": "import keras\n", "modeling/__init__.py": ""}.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert tensorflow_at_import("modeling.a") == ["modeling.a", "modeling.b", "modeling.c", "!keras_cv"]
    assert tensorflow_at_import("modeling.d") == []


def test_every_name_the_package_exports_resolves():
    """`fk.<name>` is looked up lazily, so a moved or renamed function would only fail when a
    notebook first touches it: resolve every exported name and module here."""
    import fivek_utils as fk

    missing = [name for name in [*fk.__all__, *fk._MODULES] if not hasattr(fk, name)]
    assert not missing, f"fivek_utils exports names that do not exist: {missing}"
