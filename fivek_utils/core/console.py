"""How much the `fivek` commands say, and where the libraries' own noise goes.

Every command takes the same pair (`fivek_utils.cli`):

    --quiet    the command's result and errors only: no progress bars, no step-by-step lines
    (neither)  the result and its progress; what libraries write to stderr (TensorFlow's start-up
               notes, the Jupyter kernels') goes to a log file beside the command's outputs
               (reports/executed/ for `run`, reports/bench/ for `bench`, reports/logs/ otherwise)
    --verbose  everything on the terminal, TensorFlow's own log included

`output_to` is how the noise reaches its log: TensorFlow's C++ runtime and the kernels that
papermill starts write to the process's file descriptors, not to `sys.stderr`, so the descriptors
themselves are pointed at the file for a while.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

@contextlib.contextmanager
def output_to(log_path: str | os.PathLike, *, stdout: bool = False, python: bool = True) -> Iterator[Path]:
    """Send what this process and its children write to stderr (and to stdout, with `stdout=True`)
    to `log_path`, appended, until the block ends; the terminal gets its streams back even on error.

    `python=False` sends only the native writes there (TensorFlow's C++ runtime, child processes):
    Python's own `sys.stderr` (warnings about the user's files, progress bars, errors) stays on the
    terminal."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    streams = [(sys.stderr, 2)] + ([(sys.stdout, 1)] if stdout else [])
    for stream, _ in streams:
        stream.flush()
    saved = [(fd, os.dup(fd)) for _, fd in streams]
    python_stderr = sys.stderr
    with open(log_path, "ab") as log:
        try:
            for _, fd in streams:
                os.dup2(log.fileno(), fd)
            if not python:  # Python's stderr writes to a copy of the terminal's descriptor meanwhile
                sys.stderr = os.fdopen(os.dup(saved[0][1]), "w", buffering=1, encoding=python_stderr.encoding,
                                       errors="backslashreplace")
            yield log_path
        finally:
            if sys.stderr is not python_stderr:
                sys.stderr.close()
                sys.stderr = python_stderr
            for stream, _ in streams:
                stream.flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
