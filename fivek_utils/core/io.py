"""Atomic writes: a crash mid-write never leaves a half-written model, CSV or submission, and a
full disk says so in one line.

`atomic_path` writes beside the target and renames into place. Inside `atomic_group()` the
renames wait for the end of the group, so a save of several files (a run's model, thresholds
and ensemble.json) replaces all of them or none. A write that fails because the disk is full
(ENOSPC) or over quota (EDQUOT) raises `DiskFullError`: which file, how much space is free where,
and that the previous file is untouched.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

_UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)

_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
_FULL_TEXT = re.compile(r"No space left on device|Disk quota exceeded|errno = (28|122)\b|\[Errno (28|122)\]")


class DiskFullError(OSError):
    """A write failed because its filesystem is full or over quota; the message says which file,
    how much space is free where, and what was kept."""

    def __init__(self, message: str, code: int = errno.ENOSPC, filename: str | None = None):
        super().__init__(code, message, filename)

    def __str__(self) -> str:
        return self.strerror


def _full_code(exc: BaseException) -> tuple[int, BaseException] | tuple[None, None]:
    """(ENOSPC or EDQUOT, the error that says so) when `exc` or what it wraps (Keras, h5py and
    shutil.copytree rephrase OSErrors) says the disk is full, else (None, None)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return exc.errno, exc
        match = _FULL_TEXT.search(str(exc))
        if match:
            return (errno.EDQUOT if "quota" in match.group(0) or "122" in match.group(0) else errno.ENOSPC), exc
        exc = exc.__cause__ or exc.__context__
    return None, None


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def free_space(path: str | os.PathLike) -> str:
    """'12.3 MB free on /mnt/data' for the filesystem holding `path` (named by its mount point)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = _human(shutil.disk_usage(p).free)
    except OSError:
        return "free space unknown"
    mount = p
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    return f"{free} free on {mount}"


def disk_full_error(exc: BaseException, path: str | os.PathLike | None = None,
                    kept: str | None = None) -> DiskFullError | None:
    """`exc` as a one-line `DiskFullError` naming `path` (or the file the error names) and the free
    space there, with `kept` (what was left as it was) appended; None when `exc` is another error."""
    if isinstance(exc, DiskFullError):
        return exc
    code, said = _full_code(exc)
    if code is None:
        return None
    path = path if path is not None else error_path(said)
    where = f"cannot write {path}" if path else "a write failed"
    message = f"{_FULL[code]}: {where} ({free_space(path or '.')})"
    return DiskFullError(message + (f"; {kept}" if kept else "") + "; free some space and run again",
                         code, str(path) if path else None)


def error_path(exc: BaseException) -> str | None:
    """The file an OSError names (the destination of a copy; the failed one of `shutil.copytree`)."""
    path = getattr(exc, "filename2", None) or getattr(exc, "filename", None)
    if path is None and isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        path = next((dst for _src, dst, why in exc.args[0] if _FULL_TEXT.search(str(why))), None)
    return None if path is None else os.fsdecode(path)


_GROUP: contextvars.ContextVar[list | None] = contextvars.ContextVar("atomic_group", default=None)


@contextlib.contextmanager
def atomic_group() -> Iterator[None]:
    """Every `atomic_path` write in the block is moved into place at its end, or none is.

    A failed write (a full disk, an error in between) leaves every target as it was and no
    temporary file. Nested groups join the outermost one. Code in the block reads the old
    files until the block ends.
    """
    if _GROUP.get() is not None:
        yield
        return
    pending: list[tuple[Path | None, Path]] = []  # (None, final): `final` is removed when the group ends
    token = _GROUP.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _final in pending:
            if tmp is not None:
                _remove(tmp)
        raise
    else:
        done = 0
        try:
            blocked = next((final for tmp, final in pending if tmp is not None and final.is_dir()), None)
            if blocked is not None:  # before the first rename: a folder in the way replaces none of the files
                raise IsADirectoryError(errno.EISDIR, "a folder is in the way of a file this group writes; "
                                        "nothing of the group was replaced", str(blocked))
            for tmp, final in pending:  # renames and removals need no space
                if tmp is None:
                    final.unlink(missing_ok=True)
                else:
                    os.replace(tmp, final)
                done += 1
        except BaseException:
            for tmp, _final in pending[done:]:  # no temporary file stays behind
                if tmp is not None:
                    _remove(tmp)
            raise
    finally:
        _GROUP.reset(token)


def atomic_remove(path: str | os.PathLike) -> bool:
    """Remove `path` (a file), inside `atomic_group` when the group ends and only if all of it is
    written; whether there was a file to remove."""
    final = Path(path)
    if not final.exists():
        return False
    group = _GROUP.get()
    if group is None:
        final.unlink(missing_ok=True)
    else:
        group.append((None, final))
    return True


def _remove(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def _kept(final: Path, grouped: bool) -> str:
    if grouped:
        return "nothing of this save was written: " + (
            f"the previous {final.name} and the files saved with it are untouched" if final.exists()
            else "the files it would replace are untouched")
    return f"the previous {final.name} is untouched" if final.exists() else f"no partial {final.name} was left"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds
    (inside `atomic_group`, when the group ends).

    The temporary name keeps the final suffix (Keras picks its format from it).
    """
    final = Path(path)
    group = _GROUP.get()
    tmp_path = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix or "".join(final.suffixes), dir=final.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        if tmp_path.is_file():  # mkstemp makes 0600 files; give the usual umask's mode, as open() would
            os.chmod(tmp_path, 0o666 & ~_UMASK)
        if group is None:
            os.replace(tmp_path, final)
        else:
            group.append((tmp_path, final))
    except BaseException as exc:
        if tmp_path is not None:
            _remove(tmp_path)
        full = None if isinstance(exc, DiskFullError) else disk_full_error(exc, final, _kept(final, group is not None))
        if full is not None:
            raise full from None
        raise


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder inside `out` to build into; when the block succeeds, each entry of
    it replaces the entry of the same name in `out` (others in `out` stay). When it fails, `out`
    is left as it was, and a full disk raises `DiskFullError`."""
    out = Path(out)
    stage = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".staging.", dir=out))
        yield stage
        for entry in sorted(stage.iterdir()):
            old = out / entry.name
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            elif old.exists() or old.is_symlink():
                old.unlink()
            os.replace(entry, old)
    except BaseException as exc:
        _code, said = _full_code(exc)
        path = error_path(said) if said is not None else None
        if path and stage is not None:
            path = path.replace(str(stage), str(out))
        full = disk_full_error(exc, path, kept=f"what was in {out} before is untouched")
        if full is not None:
            raise full from None
        raise
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_write_csv(path: str | os.PathLike, df, **kwargs) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, **kwargs)
    return Path(path)


def save_keras(model, path: str | os.PathLike) -> Path:
    """Save a Keras model or weights file (`.keras` / `.weights.h5`) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.unlink()  # Keras refuses to overwrite some files without asking
        if path.name.endswith(".weights.h5"):
            model.save_weights(tmp)
        else:
            model.save(tmp)
    return path


def _json_default(obj: Any):
    import numpy as np

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, read in 1 MiB pieces (weights files run to hundreds of MB)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
