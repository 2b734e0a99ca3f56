"""One writer per run folder: file locks (the `filelock` library) that die with their process.

A run folder (`models/<run>/`, with `reports/<run>/`), a submission file, a prepared dataset or a
decode-cache entry is written by one process at a time. Its lock is a file beside it
(`models/.02-baseline-b0.lock`), locked with the operating system's `flock`: the lock goes away
when its holder exits, however it exits (a crash or `kill -9` never leaves a stale lock). Beside
it, while it is held, `<lock>.json` says who holds it (PID, host, since when, what command), so a second process
is refused at once with one line naming the folder and the holder, or waits for it when asked
(`wait=True`, `fivek run --wait`, or `FIVEK_WAIT=1` in the environment, e.g. in a notebook).

Locks are re-entrant within a process. `fivek run` takes the locks of every notebook it will
run before writing anything and lends them to its notebook kernels (child processes, which
cannot share an `flock`): it names the lent locks and itself in their environment
(`FIVEK_LOCKS_LENT`), and a kernel whose parent is that process writes under them. Nothing of
the loan is on disk, so it holds on a full disk too.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import json
import os
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .io import atomic_write_text

LENT_ENV = "FIVEK_LOCKS_LENT"  # set by `fivek run` for its kernels: {"pid": its PID, "paths": [...]}
WAIT_ENV = "FIVEK_WAIT"  # "1": wait for a busy lock instead of refusing


_NO_LOCKS = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EROFS, errno.EACCES, errno.EPERM}


class FolderBusyError(RuntimeError):
    """Another process holds the lock; the message names the folder, the holder and what to do."""


@dataclass
class _Held:
    count: int
    lock: object | None  # the FileLock, or None when our parent (`fivek run`) holds it for us


_HELD: dict[str, _Held] = {}
_REGISTRY_LOCK = threading.RLock()


def lock_file(target: str | os.PathLike) -> Path:
    """Where the lock of a folder or file lives: beside it, `.<name>.lock` (removing the folder
    itself, e.g. to start a run over, never removes a lock that another process holds)."""
    target = Path(os.path.abspath(os.path.expanduser(str(target))))
    return target.parent / f".{target.name}.lock"


def _holder_file(lock: Path) -> Path:
    return lock.with_name(lock.name + ".json")


def _command() -> str:
    """What this process is, in a few words, for the holder record."""
    if "ipykernel" in sys.modules:
        return "a notebook kernel"
    argv = list(sys.argv) or ["python"]
    head = Path(argv[0]).name
    if head in ("fivek", "cli.py", "__main__.py"):
        head = "fivek"
    text = " ".join([head, *argv[1:]])
    return text if len(text) <= 160 else text[:157] + "..."


def _read_holder(lock: Path) -> dict:
    try:
        info = json.loads(_holder_file(lock).read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_holder(lock: Path) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": _command()}
    try:  # the record only explains a refusal; the lock itself is the flock
        atomic_write_text(_holder_file(lock), json.dumps(info) + "\n")
    except OSError:  # a full disk, say: better no record than the previous holder's
        with contextlib.suppress(OSError):
            _holder_file(lock).unlink(missing_ok=True)


# the loan this process started with: kept when it lends locks of its own on (notebook 05 lends its run
# folder to its face process while it still writes under what `fivek run` lent it)
_INHERITED_LOAN = os.environ.get(LENT_ENV)


def _lent_to_us(key: str) -> bool:
    """Whether our parent process holds this lock and lent it to us (`hold_locks(lend_to_children=True)`)."""
    for text in (os.environ.get(LENT_ENV), _INHERITED_LOAN):
        try:
            lent = json.loads(text or "{}")
        except ValueError:
            continue
        if lent.get("pid") == os.getppid() and key in lent.get("paths", ()):
            return True
    return False


def describe_holder(info: dict) -> str:
    """'PID 123 on host "box" since 2026-01-01 10:00:00 (fivek run ...)' from a holder record."""
    if not info.get("pid"):
        return "another process (no holder record: it is starting, or could not write one)"
    return (f"PID {info['pid']} on host \"{info.get('host', '?')}\" since {info.get('since', '?')}"
            f" ({info.get('command', '?')})")


def _busy_message(target: Path, info: dict) -> str:
    return (f"{target} is in use by {describe_holder(info)}: one run writes a folder at a time. Wait for it to "
            f"finish or stop it, or run again with --wait (FIVEK_WAIT=1 in a notebook) to start when it is free")


def _wanted_wait(wait: bool | None) -> bool:
    if wait is not None:
        return bool(wait)
    return os.environ.get(WAIT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@functools.cache  # the signature does not change while the process runs
def _no_soft_fallback() -> dict:
    """filelock 4 quietly swaps a missing flock for a marker file, which a killed holder leaves behind
    (a stale lock); asked not to, it raises as 3.x does, and the run goes on unlocked with a warning."""
    import filelock

    return {"fallback_to_soft": False} if "fallback_to_soft" in inspect.signature(filelock.FileLock).parameters else {}


def _acquire(target: Path, *, wait: bool) -> _Held:
    """Take the lock of `target` (not yet held by this process)."""
    from filelock import FileLock, Timeout

    path = lock_file(target)
    lock = FileLock(str(path), thread_local=False, **_no_soft_fallback())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:  # first: it is a TimeoutError, so an OSError too
        if _lent_to_us(str(target)):  # `fivek run` holds it for this kernel
            return _Held(1, None)
        info = _read_holder(path)
        if not wait:
            raise FolderBusyError(_busy_message(target, info)) from None
        print(f"waiting for {target}: in use by {describe_holder(info)}", file=sys.stderr, flush=True)
        lock.acquire(timeout=-1)
    except (NotImplementedError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in _NO_LOCKS:
            raise
        # a filesystem without flock (some network or FUSE mounts) or a read-only folder: going on
        # unlocked beats refusing to work; a write there fails on its own, naming its file
        warnings.warn(f"cannot lock {target} ({exc}); going on without a lock: do not run it twice at once",
                      stacklevel=4)
        return _Held(1, None)
    _write_holder(path)
    return _Held(1, lock)


def _release(key: str) -> None:
    with _REGISTRY_LOCK:
        held = _HELD[key]
        held.count -= 1
        if held.count:
            return
        del _HELD[key]
    if held.lock is not None:  # the record first: while the lock is held, no one else writes it
        with contextlib.suppress(OSError):
            _holder_file(Path(held.lock.lock_file)).unlink(missing_ok=True)
        held.lock.release()


@contextlib.contextmanager
def hold_lock(target: str | os.PathLike, *, wait: bool | None = None) -> Iterator[Path]:
    """Hold the lock of `target` (a run folder or an output file) for the block.

    Refuses at once with `FolderBusyError` when another process holds it, or waits for it when
    `wait` is true (default: the `FIVEK_WAIT` environment variable). Re-entrant in a process.
    """
    with hold_locks([target], wait=wait):
        yield Path(target)


@contextlib.contextmanager
def hold_locks(targets: Iterable[str | os.PathLike], *, wait: bool | None = None,
               lend_to_children: bool = False) -> Iterator[None]:
    """Hold the locks of all `targets` for the block, or none of them: a busy one releases those
    already taken and refuses (or, with `wait`, is waited for; the locks are taken in sorted
    order, so two waiting processes cannot deadlock).

    `lend_to_children`: child processes started in the block (with this environment) may write
    these targets as if they held the locks (how `fivek run` shares its locks with its kernels).
    """
    keys = sorted({str(Path(os.path.abspath(os.path.expanduser(str(t))))) for t in targets})
    wait = _wanted_wait(wait)
    taken: list[str] = []
    try:
        for key in keys:
            with _REGISTRY_LOCK:
                held = _HELD.get(key)
                if held is not None:
                    held.count += 1
            if held is None:
                held = _acquire(Path(key), wait=wait)
                with _REGISTRY_LOCK:
                    _HELD[key] = held
            taken.append(key)
        saved = os.environ.get(LENT_ENV)
        if lend_to_children:
            os.environ[LENT_ENV] = json.dumps({"pid": os.getpid(), "paths": keys})
        try:
            yield
        finally:
            if lend_to_children:
                if saved is None:
                    os.environ.pop(LENT_ENV, None)
                else:
                    os.environ[LENT_ENV] = saved
    finally:
        for key in reversed(taken):
            _release(key)


def holds_lock(target: Callable[[dict], str | os.PathLike]) -> Callable:
    """Decorator: hold the lock of `target(arguments)` while the function runs; `arguments` are
    the call's arguments by name, defaults included (e.g. `lambda a: a["run_dir"] or a["cfg"].run_dir`)."""
    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with hold_lock(target(bound.arguments)):
                return fn(*args, **kwargs)

        return run

    return decorate


def busy_holder(target: str | os.PathLike) -> dict | None:
    """The holder record of `target`'s lock when another process holds it now, else None (free, or
    held by this process). Takes and drops the lock at once to tell, so it never waits."""
    key = str(Path(os.path.abspath(os.path.expanduser(str(target)))))
    with _REGISTRY_LOCK:
        if key in _HELD:
            return None
    if not lock_file(key).exists():  # never locked: no lock file is left beside it for asking
        return None
    try:
        with hold_lock(key, wait=False):
            return None
    except FolderBusyError:
        return _read_holder(lock_file(key)) or {"pid": None}
