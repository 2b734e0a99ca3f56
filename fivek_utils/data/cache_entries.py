"""Entries of the decode and face-crop caches (`.npz` files in `core.config.CACHE_DIR`): checked when
read, remade when damaged, kept within a bound.

An entry is written atomically, but a disk error, a cut-short copy or a flipped byte can still damage
it between runs. Reading one checks what it costs nothing extra to check: the zip's CRC of every array
(numpy reads each array to its end, and the zip module checks its CRC there), the arrays and dtypes
expected, and shapes that fit the entry's key. A damaged entry is named in one line, removed and made
again under its lock, never used and never a traceback.

Each entry records, in its `meta` array, the key it was written under and the source files (path, size,
modification time) it was made from, so `fivek cache` can tell an entry that no current data matches
(stale) without the code that made it. A read bumps the entry's modification time: the bound removes
the least recently used entries first (access times are often not kept: `noatime` mounts).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np

from ..core.io import _human

META_VERSION = 1
# every way a damaged .npz fails to read: a cut zip, a bad CRC, a broken array header, a missing array
READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, KeyError, EOFError, TypeError,
               IndexError, AttributeError, UnicodeDecodeError, RuntimeError)

T = TypeVar("T")


class DamagedEntry(ValueError):
    """A cache entry that cannot be used; the message says what is wrong with it."""


def say(message: str) -> None:
    """One line on stderr (a warning's two lines would name this file, not the entry)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def source_stamps(paths: Sequence[str | os.PathLike]) -> list[list]:
    """[absolute path, size, modification time in ns] of each file (-1, -1 when missing): what an
    entry was made from, as its key saw it."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([os.path.abspath(p), -1, -1])
    return out


def meta_array(kind: str, key: str, size: int, paths: Sequence[str | os.PathLike], **extra) -> np.ndarray:
    """The `meta` array written into an entry: its kind, key, size and sources, as a JSON string."""
    record = {"version": META_VERSION, "kind": kind, "key": key, "size": int(size), "n": len(paths),
              "sources": source_stamps(paths), **extra}
    return np.array(json.dumps(record))


def read_meta(path: str | os.PathLike) -> dict | None:
    """An entry's meta record (only that array is read), or None: unreadable, or written by an older
    kit that kept none."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                return None
            record = json.loads(str(z["meta"]))
        return record if isinstance(record, dict) else None
    except READ_ERRORS:
        return None


def stale_reason(record: dict | None) -> str | None:
    """Why no current data matches an entry (a source changed or is gone), or None when all of its
    sources are as they were."""
    if record is None:
        return "no record of its sources (unreadable, or made by an older kit)"
    sources = record.get("sources") or []
    if not sources:
        return None
    changed = [p for p, size, mtime in sources if [p, size, mtime] != source_stamps([p])[0]]
    if not changed:
        return None
    gone = sum(1 for p in changed if not os.path.exists(p))
    what = f"{len(changed)} of its {len(sources)} source files changed" + (f" ({gone} gone)" if gone else "")
    return f"{what}, e.g. {changed[0]}"


def load_arrays(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Every array of an entry, read to its end (so the zip checks each one's CRC); `DamagedEntry`
    naming what failed."""
    try:
        if path.stat().st_size == 0:
            raise DamagedEntry("empty: 0 bytes")
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise DamagedEntry("not an .npz archive")
            missing = [n for n in names if n not in z.files]
            if missing:
                raise DamagedEntry(f"arrays {missing} missing (holds {sorted(z.files)})")
            return {n: z[n] for n in z.files}
    except DamagedEntry:
        raise
    except READ_ERRORS as exc:
        raise DamagedEntry(f"unreadable: {type(exc).__name__}: {exc}" if str(exc) else
                           f"unreadable: {type(exc).__name__}") from None


def check_meta(arrays: dict[str, np.ndarray], *, kind: str, key: str, size: int, n: int) -> None:
    """The entry's own record names this key, size and number of sources (another entry's bytes copied
    over it, or an entry of another size, fail here); entries of older kits have none and pass."""
    if "meta" not in arrays:
        return
    try:
        record = json.loads(str(arrays["meta"]))
        found = (record["kind"], record["key"], int(record["size"]), int(record["n"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedEntry(f"its record is unreadable ({type(exc).__name__})") from None
    if found != (kind, key, size, n):
        raise DamagedEntry(f"it records {found[0]} {found[1]} at {found[2]} px of {found[3]} files, "
                           f"expected {kind} {key} at {size} px of {n} files")


def expect_array(arrays: dict[str, np.ndarray], name: str, dtype, shape: tuple) -> np.ndarray:
    """arrays[name], or `DamagedEntry` unless it has this dtype kind and shape (None: any length)."""
    a = arrays[name]
    kind_ok = (a.dtype == dtype) if dtype is not str else a.dtype.kind == "U"
    if not kind_ok or a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
        want = "x".join("?" if s is None else str(s) for s in shape)
        raise DamagedEntry(f"array {name!r} is {a.dtype} {a.shape}, expected {getattr(dtype, '__name__', dtype)} "
                           f"({want})")
    return a


def touch(path: Path) -> None:
    """Mark an entry used now (its modification time: the bound removes the least recently used first)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def load_or_make(cache: Path, read: Callable[[Path], T], make: Callable[[], T], *, what: str,
                 max_gb: float | None = None) -> T:
    """The entry at `cache` read with `read` (which raises `DamagedEntry`), or made with `make` (which
    writes it) under its lock. Two processes finding the same entry missing or damaged: one makes it,
    the other waits for it and reads it. A damaged entry is named in one line and removed first."""
    from ..core.locks import hold_lock

    if cache.exists():
        with contextlib.suppress(DamagedEntry, FileNotFoundError):  # damaged: said under the lock, once
            got = read(cache)
            touch(cache)
            return got
    with hold_lock(cache, wait=True):
        if cache.exists():  # made (or remade) by the process we waited for, or damaged
            try:
                got = read(cache)
                touch(cache)
                return got
            except DamagedEntry as exc:
                say(f"{what} {cache} is damaged ({exc}); removed, making it again")
                cache.unlink(missing_ok=True)
        made = make()
    if max_gb:
        enforce_bound(cache.parent, max_gb, keep=cache)
    return made


# --- entries on disk, and the bound ----------------------------------------------------------------
def entry_kind(path: Path) -> str | None:
    """'decode' or 'crops' for an entry's file name, None for anything else (locks, temporary files)."""
    name = path.name
    if name.startswith(".") or not name.endswith(".npz"):
        return None
    return "crops" if name.startswith("crops-") else "decode"


def entries(cache_dir: str | os.PathLike) -> list[Path]:
    """The decode and crops entries in `cache_dir`."""
    d = Path(cache_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and entry_kind(p))


def enforce_bound(cache_dir: str | os.PathLike, max_gb: float, *, keep: Path | None = None) -> list[Path]:
    """Remove the least recently used entries of `cache_dir` until they take at most `max_gb` GB, never
    `keep` (just made) nor an entry another process holds; one line says what went. Returns them."""
    from ..core.locks import FolderBusyError, hold_lock

    limit = max_gb * 1e9
    found = []
    for p in entries(cache_dir):
        with contextlib.suppress(OSError):
            st = p.stat()
            found.append((st.st_mtime, st.st_size, p))
    total = sum(size for _, size, _ in found)
    if total <= limit:
        return []
    removed, freed = [], 0
    for _, size, p in sorted(found, key=lambda t: t[0]):
        if total - freed <= limit:
            break
        if keep is not None and p == keep:
            continue
        try:
            with hold_lock(p, wait=False):  # one being written or read under its lock elsewhere stays
                p.unlink(missing_ok=True)
        except FolderBusyError:
            continue
        removed.append(p)
        freed += size
    if removed:
        names = ", ".join(p.name for p in removed[:3]) + (f" and {len(removed) - 3} more" if len(removed) > 3 else "")
        say(f"cache {cache_dir} was over its bound of {max_gb:g} GB (cache_max_gb, FIVEK_CACHE_MAX_GB): removed "
            f"{len(removed)} least recently used entries ({_human(freed)}): {names}")
    return removed


def age_text(seconds: float) -> str:
    """'3 min', '5 h', '2 d'."""
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f} {unit}"
    return f"{max(seconds, 0):.0f} s"
