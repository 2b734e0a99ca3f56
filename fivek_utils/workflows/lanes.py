"""Notebooks side by side: a pipeline YAML's `lanes:`.

`lanes: [["05"], ["01", "02", "03", "04"]]` runs notebook 05 in one process and 01-04, in order, in
another, at the same time; the selected notebooks in no lane (06, which reads 05's run) run after
both have finished. A lane may only hold notebooks that need nothing another lane makes.

Why: a notebook keeps 2 CPU cores busy only part of the time. Tracing a train step, starting a
kernel, decoding and saving use one core (the synthetic demo's notebooks averaged 1.2 of 2 cores,
`/usr/bin/time`), so a second notebook beside it fills the gaps. Each lane process takes the locks
its notebooks write under from the `fivek run` that holds them (`core.locks`) and lends them on to
its kernels. A failing notebook ends its lane; the other lanes finish what they run, then the run
stops with the first failure.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
from pathlib import Path

from ..core.config import ConfigError
from ..core.io import DiskFullError
from ..core.locks import hold_locks


def plan_lanes(spec, selected: list[Path], every: list[Path]) -> list[list[Path]]:
    """The lanes of the `selected` notebooks (empty lanes dropped), from a `lanes:` value naming
    notebooks by number or name; an error names a key that matches no notebook or a notebook in two lanes."""
    from .runner import names_notebook

    if not spec:
        return []
    if not isinstance(spec, list) or not all(isinstance(lane, list) for lane in spec):
        raise ConfigError(f"lanes: {spec!r}: a list of lists of notebooks, e.g. [['05'], ['01', '02']]")
    lanes, seen = [], set()
    for lane in spec:
        chosen = []
        for key in lane:
            match = [nb for nb in every if names_notebook(key, nb.stem)]
            if not match:
                raise ConfigError(f"lanes: {key!r} names no notebook; have {[nb.stem for nb in every]}")
            for nb in match:
                if nb in seen:
                    raise ConfigError(f"lanes: {nb.stem} is in two lanes")
                seen.add(nb)
                if nb in selected:
                    chosen.append(nb)
        if chosen:
            lanes.append(sorted(chosen))
    return lanes


def _lane(notebooks: list[Path], heads: dict, params: dict, output_dir: Path, verbose: bool,
          kernel_name: str | None, outcome) -> None:
    """One lane, in its own process: its notebooks in order, each line printed whole when it ends."""
    from .runner import notebook_outputs, run_one

    done = []
    try:
        # lent by the parent, which holds them; lent on to this process's kernels
        with hold_locks(notebook_outputs(notebooks, params, output_dir), lend_to_children=True):
            for nb in notebooks:
                done.append(str(run_one(nb, heads[nb], params[nb], output_dir=output_dir, verbose=verbose,
                                        quiet=True, kernel_name=kernel_name)))
    except Exception as exc:  # noqa: BLE001  (handed to the parent, which raises it)
        outcome.put((done, type(exc).__name__, str(exc)))
        return
    outcome.put((done, None, None))


def run_lanes(lanes: list[list[Path]], heads: dict, params: dict, *, output_dir: Path, verbose: bool,
              kernel_name: str | None) -> list[Path]:
    """Run each lane in its own process, all at once; the executed copies, lane by lane. The first
    failure is raised (as `PipelineError` or `DiskFullError`) once every lane has ended."""
    from .runner import PipelineError

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no TensorFlow state forked
    outcome = ctx.Queue()
    procs = [ctx.Process(target=_lane, args=(lane, {nb: heads[nb] for nb in lane}, {nb: params[nb] for nb in lane},
                                             output_dir, verbose, kernel_name, outcome), daemon=False)
             for lane in lanes]
    for p in procs:
        p.start()
    results = []
    while len(results) < len(procs):
        try:
            results.append(outcome.get(timeout=5))
        except queue_module.Empty:
            if all(p.exitcode is not None for p in procs) and outcome.empty():
                break  # every lane process has ended, one without a word (killed)
    for p in procs:
        p.join()
    done = [Path(path) for paths, _, _ in results for path in paths]
    failures = [(kind, message) for _, kind, message in results if kind]
    if len(results) < len(procs):
        failures.append(("PipelineError", f"{len(procs) - len(results)} lane process(es) ended without a result "
                         f"(exit codes {[p.exitcode for p in procs]}): killed?"))
    if failures:
        kind, message = failures[0]
        raise (DiskFullError if kind == "DiskFullError" else PipelineError)(message)
    return done
