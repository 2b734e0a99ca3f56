"""`fivek run`: execute the numbered notebooks in order with papermill (independent ones side by side: `lanes`).

A pipeline YAML holds shared keys (passed to every notebook that declares them in its
`parameters` cell) and a `notebooks:` mapping of per-notebook sections (which win). A key
in a section that its notebook does not declare is an error: it is almost always a typo.

Before it writes anything, a run takes the locks (`core.locks`) of all it will write: each
executed copy with its log, each run folder and each submission; a second run of the same
notebooks is refused at once (or waits, `wait`). The kernels write under these locks: they
are lent to them (a kernel is a child process, and an `flock` cannot be shared otherwise).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import time
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..core.config import (EXECUTED_DIR, MODELS_DIR, NOTEBOOKS_DIR, PROJ_ROOT, REPORTS_DIR, SKIPPED_FILE, Config, ConfigError,
                           load_yaml, resolve_path)
from ..core.console import output_to
from ..core.io import DiskFullError, disk_full_error, free_space
from ..core.locks import hold_locks
from .lanes import plan_lanes, run_side_by_side

NOTEBOOK_NAME = re.compile(r"^(\d{2})-[\w-]+\.ipynb$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours in kernel tracebacks


class PipelineError(RuntimeError):
    """A notebook failed; the message names it, the failing cell and the executed copy."""


def list_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks (NN-name.ipynb) in order."""
    return sorted(p for p in Path(folder).glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))


def select_notebooks(notebooks: list[Path], only: Iterable[str] | None) -> list[Path]:
    """Keep the notebooks whose number or name is in `only` (all when empty)."""
    only = [str(o) for o in (only or [])]
    if not only:
        return notebooks
    chosen = [nb for nb in notebooks if any(nb.name.startswith(o.zfill(2) if o.isdigit() else o) for o in only)]
    unknown = [o for o in only if not any(nb.name.startswith(o.zfill(2) if o.isdigit() else o) for nb in notebooks)]
    if unknown:
        raise ConfigError(f"--only {unknown}: no such notebook; have {[nb.name for nb in notebooks]}")
    return chosen


def declared_parameters(notebook: Path) -> dict:
    """The parameters a notebook declares in its `parameters` cell (papermill's reading)."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def names_notebook(key, stem: str) -> bool:
    """Whether a `notebooks:` section key ('03', '03-efficientnetv2-21k' or a prefix of the
    name ending at a dash) names the notebook `stem`."""
    key = str(key)
    return key in (stem, stem[:2]) or stem.startswith(f"{key}-")


def notebook_params(pipeline: dict, notebook: Path) -> dict:
    """Parameters for one notebook: declared shared keys, then its own section."""
    declared = declared_parameters(notebook)
    shared = {k: v for k, v in pipeline.items() if k not in PIPELINE_KEYS and k in declared}
    sections = pipeline.get("notebooks") or {}
    key = next((k for k in sections if names_notebook(k, notebook.stem)), None)
    section = dict(sections.get(key) or {}) if key is not None else {}
    unknown = sorted(set(section) - set(declared))
    if unknown:
        raise ConfigError(f"section '{key}' sets {unknown}, which {notebook.name} does not declare; it declares {sorted(declared)}")
    return {**shared, **section}


PIPELINE_KEYS = ("notebooks", "prepare", "only", "extends", "lanes")  # the YAML's own keys; the rest are notebook parameters


def load_pipeline(config: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict:
    """A pipeline YAML; with `extends: <another pipeline YAML>` that file's settings first, this file's on top
    (shared keys and `prepare:` replaced key by key, each `notebooks:` section merged key by key)."""
    path = Path(config) if Path(config).exists() else resolve_path(config)
    data = load_yaml(config)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    parent_path = Path(parent) if Path(parent).exists() else resolve_path(parent)
    if parent_path is not None and parent_path.resolve() in {p.resolve() for p in (*_chain, path)}:
        raise ConfigError(f"{config}: extends {parent}, which extends it back (a loop)")
    base = load_pipeline(parent, (*_chain, path))
    merged = {**base, **{k: v for k, v in data.items() if k != "notebooks"}}
    sections = {k: dict(v or {}) for k, v in (base.get("notebooks") or {}).items()}
    for key, section in (data.get("notebooks") or {}).items():
        sections[key] = {**sections.get(key, {}), **(section or {})}
    if sections:
        merged["notebooks"] = sections
    return merged


def check_pipeline(pipeline: dict, notebooks: list[Path], source: str | os.PathLike = "config") -> None:
    """Catch typos no single notebook would: a shared key that no notebook declares, a `notebooks:`
    section that matches no notebook or a second section for the same one (each would otherwise be
    silently ignored), and a setting of the wrong kind (a quoted "false", an epoch count of 1.5),
    before any notebook starts rather than in its first cell or hours into a run."""
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    every = set().union(*map(set, declared.values())) if declared else set()
    unknown = sorted(k for k in pipeline if k not in PIPELINE_KEYS and k not in every)
    if unknown:
        raise ConfigError(f"{source}: shared key(s) {unknown} are declared by no notebook; known keys: {sorted(every)}")
    stems = [nb.stem for nb in notebooks]
    orphans = [k for k in (pipeline.get("notebooks") or {}) if not any(names_notebook(k, stem) for stem in stems)]
    if orphans:
        quote = " (quoted: YAML reads an unquoted 02 as the number 2)" if any(isinstance(k, int) for k in orphans) else ""
        raise ConfigError(f"{source}: section(s) {orphans} under notebooks: match no notebook; use a number like '03'{quote} "
                          f"or a name among {stems}")
    settings = set(Config.field_names())
    for nb in notebooks:
        keys = [k for k in (pipeline.get("notebooks") or {}) if names_notebook(k, nb.stem)]
        if len(keys) > 1:
            raise ConfigError(f"{source}: sections {keys} under notebooks: both name {nb.stem}; merge them into one (a YAML "
                              "that extends another: use the key the other uses)")
        for name, value in notebook_params(pipeline, nb).items():
            if name in settings:
                try:
                    Config.check_setting(name, value)
                except ConfigError as exc:
                    raise ConfigError(f"{source}, {nb.stem}: {exc}") from None


def prepare(pipeline: dict) -> None:
    """Make what a pipeline YAML's `prepare:` block asks for, when it is missing.

    `synth: {out, n_train, n_test, seed}` writes the synthetic dataset;
    `standin_checkpoint: {out, variant}` writes a randomly initialised SavedModel in the
    official EfficientNetV2 layout (an offline stand-in for the ImageNet-21k checkpoint).
    """
    steps = dict(pipeline.get("prepare") or {})
    unknown = sorted(set(steps) - {"synth", "standin_checkpoint"})
    if unknown:
        raise ConfigError(f"prepare: unknown step(s) {unknown}; known: synth, standin_checkpoint")
    if "synth" in steps:
        from ..data.synth import ensure_dataset

        spec = dict(steps["synth"])
        out = resolve_path(spec.pop("out"))
        made = ensure_dataset(out, **spec)  # made again when the settings (or the generator) changed
        if not made.get("reused"):
            print(f"prepare: wrote the synthetic dataset to {out} ({made['seconds']} s)", flush=True)
    if "standin_checkpoint" in steps:
        spec = dict(steps["standin_checkpoint"])
        out = resolve_path(spec.pop("out"))
        from ..modeling.pretrained.standin import ensure_standin

        ensure_standin(out, **spec)  # another run writing it: waited for, then reused; damaged: written again


def kernel_output_to(log_path: Path):
    """Send what the kernels write to stderr (TensorFlow's start-up notes, Jupyter's warnings, the
    shutdown's KeyboardInterrupt) to `log_path` instead of the terminal (kernels inherit this
    process's stderr; `core.console.output_to` points its file descriptor at the log)."""
    return output_to(log_path)


def param_value(declared: dict, params: dict, name: str):
    """A notebook parameter's value in a run: the one passed, else its declared default."""
    if name in params:
        return params[name]
    default = (declared.get(name) or {}).get("default")
    return default.strip("\"'") if isinstance(default, str) else default


def notebook_outputs(notebooks: list[Path], params: dict[Path, dict], output_dir: Path) -> list[Path]:
    """What running `notebooks` writes, to lock: each executed copy (with its log), each run folder
    (`models/<run_name>`, with `reports/<run_name>`) and each submission (`*submission_file`)."""
    targets = []
    for nb in notebooks:
        targets.append(output_dir / nb.name)
        declared = declared_parameters(nb)
        for name in (n for n in declared if n == "run_name" or n.endswith("submission_file")):
            value = param_value(declared, params[nb], name)
            if value not in (None, "", "None"):
                targets.append(MODELS_DIR / str(value) if name == "run_name" else resolve_path(value))
    return targets


def notebook_result(notebook: Path, params: dict, since: float | None = None) -> str:
    """One line on what a finished notebook left: its run's validation numbers beside their chance
    levels, or its submission's size. With `since` (when the notebook started), a file older than that
    was left by an earlier run and is not reported as this one's."""
    declared = declared_parameters(notebook)

    def value(name: str):
        return param_value(declared, params, name)

    def fresh(path: Path) -> bool:
        return path.exists() and (since is None or path.stat().st_mtime >= since - 1.0)

    run = value("run_name")
    metrics = REPORTS_DIR / str(run) / "metrics.csv" if run else None
    if metrics is not None and fresh(metrics):
        table = pd.read_csv(metrics).set_index("target")
        k = table.loc["5K"]
        skipped = metrics.with_name(SKIPPED_FILE)
        n_skipped = len(pd.read_csv(skipped)) if fresh(skipped) else 0
        return (f"5K F1 {k['f1']:.3f} (always-yes {k['f1_always_yes']:.3f}), AUC 5K {k['auc']:.2f} "
                f"mask {table.loc['mask', 'auc']:.2f} distancing {table.loc['distancing', 'auc']:.2f} (chance 0.5)"
                + (f"; {n_skipped} unreadable training image(s) skipped, listed in {skipped}" if n_skipped else ""))
    submission = resolve_path(value("submission_file") or None)
    if submission is None or not submission.exists():
        return ""
    if not fresh(submission):
        return f"no submission written ({submission} is an earlier run's)"
    answers = pd.read_csv(submission)
    return f"{len(answers)} rows, {int(answers['5K'].sum())} answered 5K = 1 -> {submission}"


def kernel_disk_full(exc) -> str | None:
    """The one-line story of a notebook that failed because the disk was full (a `DiskFullError`
    from the kit's writes, or an OSError ENOSPC/EDQUOT from anything else), else None."""
    if exc.ename == "DiskFullError":
        return exc.evalue
    named = re.search(r"\[Errno \d+\] [^:]+: '([^']+)'", exc.evalue or "")
    full = disk_full_error(RuntimeError(exc.evalue or ""), named.group(1) if named else None)
    if full is None:
        return None
    return str(full) if named else f"{exc.ename}: {exc.evalue} ({free_space(PROJ_ROOT)})"


def run_notebooks(
    config: str | os.PathLike,
    only: Iterable[str] | None = None,
    *,
    output_dir: Path = EXECUTED_DIR,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    verbose: bool = False,
    quiet: bool = False,
    kernel_name: str | None = None,
    wait: bool | None = None,
    sequential: bool = False,
) -> list[Path]:
    """Run the selected notebooks in order; stop at the first failure with `PipelineError`.

    A pipeline's `lanes:` (lists of notebooks that depend on nothing outside their list) run side by
    side, each in its own process, and the selected notebooks in no lane after them, in order
    (`workflows.lanes`); `sequential` runs everything in order in this process.

    Prints one line per notebook with its time and result (`quiet`: only those lines, each once its
    notebook has ended, and not what `prepare` says). The executed copies keep every output; what
    the kernels write to stderr goes to `<output_dir>/<notebook>.log` (to the terminal, with
    papermill's progress bars, when `verbose`). Another run writing the same notebooks' outputs:
    `FolderBusyError` before anything is written, or with `wait` (default: `FIVEK_WAIT`), wait for it.
    A full disk: `DiskFullError`, one line.
    """
    pipeline = load_pipeline(config)
    # `only:` in the YAML: the notebooks a config is made for (real-scenes.yaml: 01, 05, 06); --only wins
    notebooks = select_notebooks(list_notebooks(notebooks_dir), only or pipeline.get("only"))
    if not notebooks:
        raise ConfigError(f"no numbered notebooks found in {notebooks_dir}")
    check_pipeline(pipeline, list_notebooks(notebooks_dir), config)  # fail on typos before any work
    lanes = [] if sequential else plan_lanes(pipeline.get("lanes"), notebooks, list_notebooks(notebooks_dir), names_notebook)
    params = {nb: notebook_params(pipeline, nb) for nb in notebooks}
    with hold_locks(notebook_outputs(notebooks, params, output_dir), wait=wait, lend_to_children=True):
        return _execute(pipeline, notebooks, params, output_dir=output_dir, verbose=verbose, quiet=quiet,
                        kernel_name=kernel_name, lanes=lanes)


def _execute(pipeline: dict, notebooks: list[Path], params: dict[Path, dict], *, output_dir: Path, verbose: bool,
             quiet: bool, kernel_name: str | None, lanes: list[list[Path]] | None = None) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    # TensorFlow's native noise to the log; Python's stderr (a damaged stand-in written again) stays on the terminal
    with contextlib.nullcontext() if verbose else output_to(output_dir / "prepare.log", python=False):
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            prepare(pipeline)
    width = max(len(nb.stem) for nb in notebooks)
    head = {nb: f"[{i}/{len(notebooks)}] {nb.stem:<{width}} " for i, nb in enumerate(notebooks, start=1)}
    done, rest = [], notebooks
    if lanes and len(lanes) > 1:
        laned = {nb for lane in lanes for nb in lane}
        if not quiet:
            print("side by side: " + " | ".join(" ".join(nb.stem[:2] for nb in lane) for lane in lanes)
                  + (f"; then {' '.join(nb.stem[:2] for nb in notebooks if nb not in laned)}"
                     if len(laned) < len(notebooks) else ""), flush=True)
        results = run_side_by_side(_lane, [(lane, {nb: head[nb] for nb in lane}, {nb: params[nb] for nb in lane},
                                            output_dir, verbose, kernel_name) for lane in lanes])
        done += [Path(path) for paths, _, _ in results for path in paths]
        failed = next(((kind, message) for _, kind, message in results if kind), None)
        if failed:  # the first failure, once every lane has ended
            raise (DiskFullError if failed[0] == "DiskFullError" else PipelineError)(failed[1])
        rest = [nb for nb in notebooks if nb not in laned]
    for nb in rest:
        done.append(run_one(nb, head[nb], params[nb], output_dir=output_dir, verbose=verbose, quiet=quiet,
                            kernel_name=kernel_name))
    return done


def _lane(notebooks: list[Path], heads: dict, params: dict, output_dir: Path, verbose: bool,
          kernel_name: str | None, outcome) -> None:
    """One lane, in its own process (`lanes.run_side_by_side`): its notebooks in order, each line
    printed whole when it ends; (executed copies, error type, message) put on `outcome`."""
    done = []
    try:
        # lent by the `fivek run` that holds them; lent on to this process's kernels
        with hold_locks(notebook_outputs(notebooks, params, output_dir), lend_to_children=True):
            for nb in notebooks:
                done.append(str(run_one(nb, heads[nb], params[nb], output_dir=output_dir, verbose=verbose,
                                        quiet=True, kernel_name=kernel_name)))
    except Exception as exc:  # noqa: BLE001  (handed to the parent, which raises it)
        outcome.put((done, type(exc).__name__, str(exc)))
        return
    outcome.put((done, None, None))


def run_one(nb: Path, head: str, params: dict, *, output_dir: Path, verbose: bool, quiet: bool,
            kernel_name: str | None) -> Path:
    """Execute one notebook to `output_dir` and print its line ('[2/6] 02-baseline-b0   75 s  5K F1 ...');
    `PipelineError` (or `DiskFullError`) naming the failing cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out, log = output_dir / nb.name, output_dir / f"{nb.stem}.log"
    log.unlink(missing_ok=True)
    if not quiet:  # the line's start now, its end when the notebook ends; quiet: all of it then
        print(head, end="", flush=True)
    t0 = time.time()
    try:
        with contextlib.nullcontext() if verbose else kernel_output_to(log):
            papermill.execute_notebook(
                str(nb), str(out), parameters=params, cwd=str(PROJ_ROOT), progress_bar=verbose,
                kernel_name=kernel_name, request_save_on_cell_execute=True,
            )
    except PapermillExecutionError as exc:
        print(f"{head if quiet else ''}FAILED after {time.time() - t0:.0f} s", flush=True)
        full = kernel_disk_full(exc)
        if full is not None:
            raise DiskFullError(f"{nb.name} stopped in cell {exc.exec_count}: {full} "
                                f"(the executed copy is {out})") from exc
        trace = [ANSI.sub("", line) for line in (exc.traceback or [])]
        raise PipelineError(
            f"{nb.name} failed in cell {exc.exec_count} (cell index {exc.cell_index}): {exc.ename}: {exc.evalue}\n"
            + "".join(trace[-3:]).rstrip() + f"\nthe executed copy with the traceback is {out}"
            + ("" if verbose else f"; the kernel's log is {log}")
        ) from exc
    print(f"{head if quiet else ''}{time.time() - t0:5.0f} s  {notebook_result(nb, params, since=t0)}", flush=True)
    return out
