"""Where the kit runs (Kaggle, Colab or a local checkout) and the paths that follow from it.

No TensorFlow and nothing else of the kit here: `config` imports this module to decide the project root.

- Kaggle (`KAGGLE_KERNEL_RUN_TYPE` is set): attached inputs under `/kaggle/input` are read-only,
  and the kit itself may sit in an attached dataset there, so outputs go to `/kaggle/working`.
  Inputs mount at `/kaggle/input/<slug>/` or, in newer notebooks, at
  `/kaggle/input/datasets/<owner>/<slug>/` (models and notebook outputs similarly), so every
  search below walks a bounded depth instead of assuming one layout.
- Colab (`google.colab` imported, or `COLAB_RELEASE_TAG` set): the kit is pip-installed and data
  usually lives on the mounted Google Drive (`/content/drive/MyDrive`).
- `$FIVEK_ROOT` always wins for outputs, and an existing `data_dir` always wins for data: a
  notebook parameter can override whatever is found.

`$FIVEK_KAGGLE_ROOT` (default `/kaggle`) and `$FIVEK_COLAB_DRIVE` (default
`/content/drive/MyDrive`) move those trees, so tests can use fake ones.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

__all__ = [
    "REPO_URL",
    "DATA_MARKERS",
    "detect_environment",
    "kaggle_root",
    "kaggle_input_dir",
    "colab_drive_dir",
    "output_root",
    "code_root",
    "project_root",
    "cpu_count",
    "find_data_dirs",
    "resolve_data_dir",
    "link_attached_runs",
    "unlink_attached_runs",
    "colab_url",
]

# The one place the repository URL lives: the notebooks' Colab cell installs `git+<REPO_URL>`
# (a test checks they agree). Change both for a fork.
REPO_URL = "https://github.com/fivek-kit/fivek"

# files that mark a dataset root in the official Zalo layout
DATA_MARKERS = ("train/train_meta.csv", "public_test/public_test_meta.csv")
# how deep below the search root a dataset root may sit: /kaggle/input/datasets/<owner>/<slug>/<x>
DATA_SEARCH_DEPTH = 5
# Drive can be large and slow to list, so look less deep there
DRIVE_SEARCH_DEPTH = 4
# folders never worth entering while searching (image folders hold thousands of files)
_SKIP_DIRS = {"images", "__pycache__", "node_modules", ".git", ".ipynb_checkpoints"}
# what `runs.save_run` leaves in every run folder: a folder without it is not a run
# (e.g. /kaggle/input/models/<owner>/..., where newer Kaggle notebooks mount Kaggle Models)
_RUN_MARKERS = {"models": "config.yaml", "reports": "metrics.csv"}

_announced: set[tuple[str, str]] = set()


# --- where are we ---------------------------------------------------------------------------
def detect_environment() -> str:
    """"kaggle", "colab" or "local"."""
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") is not None:
        return "kaggle"
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG"):
        return "colab"
    return "local"


def kaggle_root() -> Path:
    """The Kaggle tree: `$FIVEK_KAGGLE_ROOT`, else /kaggle."""
    return Path(os.environ.get("FIVEK_KAGGLE_ROOT") or "/kaggle").expanduser()


def kaggle_input_dir() -> Path:
    """Where Kaggle mounts attached datasets, models and notebook outputs (read-only)."""
    return kaggle_root() / "input"


def colab_drive_dir() -> Path:
    """The mounted Google Drive on Colab: `$FIVEK_COLAB_DRIVE`, else /content/drive/MyDrive."""
    return Path(os.environ.get("FIVEK_COLAB_DRIVE") or "/content/drive/MyDrive").expanduser()


def output_root() -> Path | None:
    """The project root this environment imposes: `$FIVEK_ROOT`, else <kaggle root>/working on
    Kaggle, else None (the caller falls back to the checkout or the current folder)."""
    if os.environ.get("FIVEK_ROOT"):
        return Path(os.environ["FIVEK_ROOT"]).expanduser().resolve()
    if detect_environment() == "kaggle":
        return (kaggle_root() / "working").resolve()
    return None


def code_root() -> Path | None:
    """The checkout this package sits in (holding notebooks/ and configs/), if any."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "pyproject.toml").exists() and (checkout / "notebooks").is_dir() else None


def project_root() -> Path:
    """Where data, models, reports and submissions live: $FIVEK_ROOT, else /kaggle/working on
    Kaggle, else the checkout, else the current folder."""
    # Kaggle before the checkout: a checkout attached under /kaggle/input is read-only
    return output_root() or code_root() or Path.cwd().resolve()


def cpu_count() -> int:
    """Cores this process may use (its CPU affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- data -----------------------------------------------------------------------------------
def _walk(root: Path, depth: int) -> Iterator[Path]:
    """Folders under `root` (itself included) at most `depth` levels down, in sorted order."""
    stack = [(root, 0)]
    while stack:
        folder, level = stack.pop()
        yield folder
        if level >= depth:
            continue
        try:
            children = sorted(
                (e for e in os.scandir(folder) if e.is_dir() and e.name not in _SKIP_DIRS and not e.name.startswith(".")),
                key=lambda e: e.name,
                reverse=True,  # the stack pops the first name first
            )
        except OSError:  # unreadable or vanished folder: skip it, the search goes on
            continue
        stack.extend((Path(e.path), level + 1) for e in children)


def _markers(folder: Path) -> int:
    """How many of DATA_MARKERS `folder` holds."""
    return sum((folder / m).is_file() for m in DATA_MARKERS)


def find_data_dirs(root: str | os.PathLike, depth: int = DATA_SEARCH_DEPTH) -> list[Path]:
    """Dataset roots (holding train/train_meta.csv or public_test/public_test_meta.csv) under
    `root`, best first: both splits before one, shallower before deeper, then by path."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [d for d in _walk(root, depth) if _markers(d)]
    return sorted(found, key=lambda d: (-_markers(d), len(d.relative_to(root).parts), str(d)))


def _search_roots() -> list[tuple[Path, int]]:
    """Where this environment keeps attached data, with the search depth for each."""
    env = detect_environment()
    if env == "kaggle":
        return [(kaggle_input_dir(), DATA_SEARCH_DEPTH)]
    if env == "colab":
        return [(colab_drive_dir(), DRIVE_SEARCH_DEPTH)]
    return []


def _say(requested: Path, chosen: Path, message: str) -> None:
    """Print once per (requested, chosen) pair: notebooks resolve the same path repeatedly."""
    key = (str(requested), str(chosen))
    if key not in _announced:
        _announced.add(key)
        print(message, flush=True)


def resolve_data_dir(data_dir: str | os.PathLike) -> Path:
    """`data_dir` when it exists; else, on Kaggle or Colab, the dataset found among the attached
    inputs or on Drive; else `data_dir` unchanged (the data layer then says what is missing)."""
    requested = Path(os.path.expanduser(str(data_dir)))
    if requested.exists():
        return requested
    for root, depth in _search_roots():
        found = find_data_dirs(root, depth)
        if not found:
            _say(requested, requested,
                 f"fivek: data_dir {requested} does not exist and no folder under {root} holds "
                 f"{' or '.join(DATA_MARKERS)}; attach the Zalo data (or set data_dir)")
            continue
        chosen = found[0]
        if len(found) > 1:
            others = "\n".join(f"    {d}" for d in found[1:])
            _say(requested, chosen,
                 f"fivek: data_dir {requested} does not exist; {len(found)} datasets found under {root}, "
                 f"using {chosen} (both splits first, then the shallowest, then by name). "
                 f"Set data_dir to one of the others to choose it:\n{others}")
        else:
            _say(requested, chosen, f"fivek: data_dir {requested} does not exist; using {chosen} (found under {root})")
        return chosen
    return requested


# --- runs made by other Kaggle notebooks ----------------------------------------------------
def _attached_runs(depth: int = 4) -> Iterator[tuple[str, Path]]:
    """("models/<run>" or "reports/<run>", folder) for each run in attached notebook outputs."""
    inputs = kaggle_input_dir()
    if not inputs.is_dir():
        return
    for folder in _walk(inputs, depth):
        for kind, marker in _RUN_MARKERS.items():
            kind_dir = folder / kind
            if folder == inputs or not kind_dir.is_dir():
                continue
            for run in sorted(kind_dir.iterdir()):
                if (run / marker).is_file():
                    yield f"{kind}/{run.name}", run


def link_attached_runs(root: str | os.PathLike | None = None) -> dict[str, Path]:
    """Link runs saved by attached Kaggle notebooks (`kernel_sources`) into the project root, so a
    notebook finds e.g. models/05-kfold where it looks; existing folders are never replaced."""
    root = Path(root) if root is not None else project_root()
    linked: dict[str, Path] = {}
    for rel, source in _attached_runs():
        target = root / rel
        if target.exists() or target.is_symlink() or rel in linked:
            continue  # this notebook's own run, or a run already linked from an earlier input
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source, target_is_directory=True)
        linked[rel] = source
        print(f"fivek: {rel} -> {source} (attached notebook output, read-only)", flush=True)
    return linked


def unlink_attached_runs(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove the links `link_attached_runs` made, so a notebook's output holds only what it made."""
    root = Path(root) if root is not None else project_root()
    inputs = kaggle_input_dir().resolve()
    removed = []
    for kind in ("models", "reports"):
        kind_dir = Path(root) / kind
        if not kind_dir.is_dir():
            continue
        for link in sorted(kind_dir.iterdir()):
            if link.is_symlink() and Path(os.readlink(link)).resolve().is_relative_to(inputs):
                link.unlink()
                removed.append(link)
    return removed


# --- Colab ----------------------------------------------------------------------------------
def colab_url(notebook: str, branch: str = "main", repo_url: str = REPO_URL) -> str:
    """The "Open in Colab" link of notebooks/<notebook>.ipynb in the GitHub repository."""
    owner_repo = repo_url.rstrip("/").removesuffix(".git").split("github.com/", 1)[-1]
    name = notebook if notebook.endswith(".ipynb") else f"{notebook}.ipynb"
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/notebooks/{name}"

