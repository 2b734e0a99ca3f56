"""Notebooks side by side: a pipeline YAML's `lanes:`.

`lanes: [["05"], ["01", "02", "03", "04"]]` runs notebook 05 in one process and 01-04, in order, in
another, at the same time; the selected notebooks in no lane (06, which reads 05's run) run after
both have finished. A lane may only hold notebooks that need nothing another lane makes.

Why: a notebook keeps 2 CPU cores busy only part of the time. Tracing a train step, starting a
kernel, decoding and saving use one core (the synthetic demo's notebooks, one at a time, kept 123% of
200% busy by `/usr/bin/time`), so a second notebook beside it fills the gaps. `fivek run`
(`workflows.runner`) plans the lanes here and starts each lane's process here; a lane process takes
the locks its notebooks write under from the run that holds them (`core.locks`) and lends them on
to its kernels. A failing notebook ends its lane; the other lanes finish what they run.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
from pathlib import Path
from typing import Callable

from ..core.config import ConfigError


def plan_lanes(spec, selected: list[Path], every: list[Path], names: Callable[[object, str], bool]) -> list[list[Path]]:
    """The lanes of the `selected` notebooks (empty lanes dropped) from a `lanes:` value whose keys
    name notebooks as `names(key, stem)` says; an error names a key that matches no notebook or a
    notebook in two lanes."""
    if not spec:
        return []
    if not isinstance(spec, list) or not all(isinstance(lane, list) for lane in spec):
        raise ConfigError(f"lanes: {spec!r}: a list of lists of notebooks, e.g. [['05'], ['01', '02']]")
    lanes, seen = [], set()
    for lane in spec:
        chosen = []
        for key in lane:
            match = [nb for nb in every if names(key, nb.stem)]
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


def run_side_by_side(target: Callable, jobs: list[tuple]) -> list[tuple[list[str], str | None, str | None]]:
    """Run `target(*job, outcome)` for every job at once, each in its own fresh process (spawned: no
    TensorFlow state forked), and wait for all. `target` puts one (done, error type, message) on
    `outcome`; a process that ends without one (killed) gives ([], "PipelineError", its exit code)."""
    ctx = multiprocessing.get_context("spawn")
    outcome = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*job, outcome)) for job in jobs]
    for p in procs:
        p.start()
    results = []
    while len(results) < len(procs):
        try:
            results.append(outcome.get(timeout=5))
        except queue_module.Empty:
            if all(p.exitcode is not None for p in procs) and outcome.empty():
                break  # every process has ended, one without a word
    for p in procs:
        p.join()
    if len(results) < len(procs):
        results.append(([], "PipelineError", f"{len(procs) - len(results)} lane process(es) ended without a result "
                        f"(exit codes {[p.exitcode for p in procs]}): killed?"))
    return results
