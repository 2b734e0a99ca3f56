"""A function run in a process of its own while this one goes on (`Background`).

Why: on a CPU machine one Keras training keeps its cores only part of the time busy (tracing a train
step, Python between the steps and saving use one core), so two independent trainings, one here and
one in a second process, finish sooner together than one after the other. Notebook 05 trains its
face folds that way beside its image folds (`workflows.face_kfold.FaceFoldsJob`).

The process is spawned (a fresh interpreter: no TensorFlow state is forked), so what it runs must be
importable, and its arguments and result picklable; changes made in this process's memory (a
monkeypatch in a notebook) do not reach it. Each line it prints comes back here as it is written,
with a prefix, so a notebook shows it in the running cell. Its result comes back at `result()`, and
so does its error: as itself when it survives pickling (a ConfigError stays a ConfigError, its
traceback there noted), else as a `BackgroundError` naming its type. It is a daemon: it ends with this
process, and leaving a `with` block on an error stops it.
"""

from __future__ import annotations

import io
import multiprocessing
import pickle
import sys
import threading
import traceback
from typing import Any, Callable


class BackgroundError(RuntimeError):
    """The background function's process ended without an answer, or it raised an error that cannot be
    sent back as itself; the message says which job, the error's type and message, and its traceback.
    (An error that can be sent back, such as a ConfigError, is raised here as itself.)"""


class _Lines(io.TextIOBase):
    """A child's stdout / stderr: every finished line is sent at once (a child that dies still told)."""

    def __init__(self, conn):
        self._conn, self._buffer, self._lock = conn, "", threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer += text.replace("\r", "\n")
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                if line.strip():
                    self._conn.send(("line", line))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._buffer.strip():
                self._conn.send(("line", self._buffer))
            self._buffer = ""


def _child(fn: Callable, args: tuple, kwargs: dict, conn) -> None:
    sys.stdout = sys.stderr = _Lines(conn)
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent, which raises it
        sys.stdout.flush()
        try:  # the error itself when it survives pickling (ConfigError stays ConfigError), else its text
            same = pickle.loads(pickle.dumps(exc))
            same = same if type(same) is type(exc) and str(same) == str(exc) else None
        except Exception:  # noqa: BLE001
            same = None
        conn.send(("error", type(exc).__name__, str(exc), traceback.format_exc(), same))
        return
    sys.stdout.flush()
    try:
        conn.send(("result", value))
    except Exception as exc:  # noqa: BLE001 - an unpicklable result
        conn.send(("error", type(exc).__name__, f"its result could not be sent back: {exc}", traceback.format_exc(), None))


class Background:
    """`fn(*args, **kwargs)` in a spawned process, started at once.

    >>> with Background(train_faces, cfg, split, name="face folds") as job:
    ...     train_images(cfg, split)          # meanwhile, here
    >>> faces = job.result()                  # waits; raises BackgroundError if it failed
    """

    def __init__(self, fn: Callable, *args, name: str = "background job", prefix: str | None = None, **kwargs):
        self.name = name
        self.prefix = f"{name} | " if prefix is None else prefix
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_end = ctx.Pipe(duplex=False)
        self._process = ctx.Process(target=_child, args=(fn, args, kwargs, child_end), daemon=True,
                                    name=f"fivek {name}")
        self._outcome: tuple | None = None
        self._process.start()  # with this process's environment (the lent locks' FIVEK_LOCKS_LENT too)
        child_end.close()  # the child holds the only writing end: its death reads as the end of the pipe
        self._relay = threading.Thread(target=self._listen, daemon=True, name=f"fivek {name} output")
        self._relay.start()

    def _listen(self) -> None:
        """Print the child's lines here as they come; keep its result or error; notice a child that died."""
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):  # the child ended without an answer (killed, os._exit, stop())
                self._process.join(timeout=30)
                self._outcome = self._outcome or ("died", self._process.exitcode)
                return
            if message[0] == "line":
                sys.stdout.write(f"{self.prefix}{message[1]}\n")
                sys.stdout.flush()
            else:
                self._outcome = message
                return

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._relay.is_alive()

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the job and return what the function returned, or raise `BackgroundError`."""
        self._relay.join(timeout)
        if self._relay.is_alive():
            raise TimeoutError(f"{self.name} is still running after {timeout} s")
        self._process.join(timeout=30)
        kind, *rest = self._outcome or ("died", self._process.exitcode)
        if kind == "result":
            return rest[0]
        if kind == "error":
            type_name, message, trace, same = rest
            if isinstance(same, Exception):  # raised again here as itself, the child's traceback noted
                same.add_note(f"(raised by {self.name}, in its own process)\n--- its traceback there ---\n{trace}")
                raise same
            raise BackgroundError(f"{self.name} failed in its own process: {type_name}: {message}\n"
                                  f"--- its traceback there ---\n{trace}")
        raise BackgroundError(f"{self.name}: its process ended without an answer (exit code {rest[0]}: killed, "
                              "out of memory, or stopped)")

    def stop(self) -> None:
        """End the process now (what it was writing is left as its atomic writes leave it: whole or absent)."""
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._relay.join(timeout=5)

    def __enter__(self) -> "Background":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.stop()
