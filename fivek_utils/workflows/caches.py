"""`fivek cache`: every entry of the kit's four caches, with its size, age and whether current data
still matches it, and `fivek cache clear` of all of them, the stale ones or those unused for days.

The caches: decoded, letterboxed images per size and face crops (`core.config.CACHE_DIR`,
`data.cache_entries`), face detections (`workflows.faces.FACES_DIR`) and weights the kit made
(conversions in `models/pretrained/` with their sidecars, and stand-in SavedModels, found by the
record inside them, in `data/interim/`). Downloaded SavedModels are not listed: they are the sources
of conversions, and an offline machine cannot get them back. An entry whose lock another process
holds (it is being written or read) is never removed; the line says which process holds it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..core import config as _config
from ..core.io import _human, file_sha256
from ..core.locks import FolderBusyError, busy_holder, describe_holder, hold_lock
from ..data.cache_entries import age_text, entries, entry_kind, read_meta, stale_reason
from ..data.faces import file_stamp

KINDS = ("decode", "crops", "detections", "weights")


@dataclass
class Entry:
    kind: str  # one of KINDS
    path: Path  # a file, or a stand-in's folder
    size: int  # bytes, with a conversion's sidecar
    used: float  # last modified (decode and crops entries: last read too), seconds since the epoch
    stale: str | None  # why no current data matches it (or it is damaged), None when it is current

    @property
    def age_days(self) -> float:
        return (time.time() - self.used) / 86400


def _detections_stale(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
        images = data["images"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"damaged ({type(exc).__name__})"
    folder = data.get("folder")
    if not folder:
        return "no record of its folder (made by an older kit)"
    if not Path(folder).is_dir():
        return f"its folder {folder} is gone"
    from ..data.meta import match_fnames

    on_disk = match_fnames(folder, list(images))  # a meta fname spelt otherwise on disk: that file
    current = sum(1 for f, r in images.items()
                  if isinstance(r, dict) and r.get("stamp") == file_stamp(Path(folder) / on_disk.get(f, f)))
    return None if current else f"none of its {len(images)} images is in {folder} as it was"




def _weights_entries() -> list[Entry]:
    from ..modeling.pretrained.sources import sidecar_path  # not convert: it starts TensorFlow
    from ..modeling.pretrained.standin import MANIFEST, read_manifest, standin_problem

    out = []
    pretrained = Path(_config.PRETRAINED_DIR)
    for f in sorted(pretrained.glob("*.weights.h5")) if pretrained.is_dir() else []:
        car = sidecar_path(f)
        try:
            info = json.loads(car.read_text())
        except (OSError, ValueError):
            info = None
        if not isinstance(info, dict):
            why = f"damaged (no readable {car.name})"
        elif info.get("weights_sha256") != file_sha256(f):
            why = "damaged (the weights do not match their sidecar's sha256)"
        else:
            why = None
        size = f.stat().st_size + (car.stat().st_size if car.exists() else 0)
        out.append(Entry("weights", f, size, f.stat().st_mtime, why))
    interim = Path(_config.INTERIM_DATA_DIR)
    for d in sorted(interim.iterdir()) if interim.is_dir() else []:
        if d.is_dir() and not d.name.startswith(".") and (d / MANIFEST).exists():
            record = read_manifest(d)
            why = standin_problem(d, **record["spec"]) if record else f"damaged (no readable {MANIFEST})"
            size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
            out.append(Entry("weights", d, size, (d / MANIFEST).stat().st_mtime, why and f"damaged ({why})"))
    return out


def list_caches(kinds: tuple[str, ...] = KINDS) -> list[Entry]:
    """Every entry of the caches of `kinds`."""
    from .faces import FACES_DIR

    out: list[Entry] = []
    for p in entries(_config.CACHE_DIR):
        kind = entry_kind(p)
        if kind in kinds:
            st = p.stat()
            out.append(Entry(kind, p, st.st_size, st.st_mtime, stale_reason(read_meta(p))))
    if "detections" in kinds and Path(FACES_DIR).is_dir():
        for p in sorted(Path(FACES_DIR).glob("*.json")):
            if not p.name.startswith("."):
                st = p.stat()
                out.append(Entry("detections", p, st.st_size, st.st_mtime, _detections_stale(p)))
    if "weights" in kinds:
        out.extend(_weights_entries())
    return out


def _where(path: Path) -> str:
    try:
        return str(path.relative_to(_config.PROJ_ROOT))
    except ValueError:
        return str(path)


def cache_table(items: list[Entry]) -> str:
    """The listing `fivek cache` prints: one line per entry, then the totals."""
    lines = [f"{'kind':<11}{'size':>10}  {'age':>7}  {'state':<8} entry"]
    for e in sorted(items, key=lambda e: (KINDS.index(e.kind), -e.used)):
        state = "current" if e.stale is None else ("damaged" if e.stale.startswith("damaged") else "stale")
        note = "" if e.stale is None else f"  ({e.stale.removeprefix('damaged (').rstrip(')') if state == 'damaged' else e.stale})"
        lines.append(f"{e.kind:<11}{_human(e.size):>10}  {age_text(time.time() - e.used):>7}  {state:<8} {_where(e.path)}{note}")
    per = []
    for kind in KINDS:
        mine = [e for e in items if e.kind == kind]
        if mine:
            per.append(f"{kind} {len(mine)} ({_human(sum(e.size for e in mine))})")
    bounded = sum(e.size for e in items if e.kind in ("decode", "crops"))
    bound = _config.cache_max_gb_default()
    lines.append(f"total: {len(items)} entries, {_human(sum(e.size for e in items))}" + (f": {', '.join(per)}" if per else "")
                 + f"; decode + crops {_human(bounded)} of their bound "
                 + (f"{bound:g} GB" if bound else "(none: FIVEK_CACHE_MAX_GB=0)"))
    return "\n".join(lines)


def _remove(e: Entry) -> None:
    from ..modeling.pretrained.sources import sidecar_path

    if e.path.is_dir():
        shutil.rmtree(e.path)
        return
    if e.kind == "weights":  # the sidecar first: never a sidecar left without its weights' trust
        sidecar_path(e.path).unlink(missing_ok=True)
    e.path.unlink(missing_ok=True)


def clear_caches(*, everything: bool = False, stale: bool = False, older_than_days: float | None = None,
                 kinds: tuple[str, ...] = KINDS, say=print) -> dict:
    """Remove the entries asked for: all of them, the stale (or damaged) ones, those unused for more than
    `older_than_days`; `stale` and `older_than_days` together: entries that are both. An entry another
    process holds is skipped with a line naming that process. Returns what was removed and skipped."""
    if not (everything or stale or older_than_days is not None):
        raise _config.ConfigError("fivek cache clear: say what to clear: --all, --stale or --older-than DAYS")
    chosen = [e for e in list_caches(kinds) if everything or (
        (not stale or e.stale is not None) and (older_than_days is None or e.age_days > older_than_days))]
    removed, skipped, freed = [], [], 0
    for e in chosen:
        holder = busy_holder(e.path)
        try:
            if holder is not None:
                raise FolderBusyError()
            with hold_lock(e.path, wait=False):
                _remove(e)
        except FolderBusyError:
            holder = holder or busy_holder(e.path) or {}
            say(f"skipped {_where(e.path)}: in use by {describe_holder(holder)}")
            skipped.append(str(e.path))
            continue
        except OSError as exc:
            say(f"skipped {_where(e.path)}: {exc}")
            skipped.append(str(e.path))
            continue
        removed.append(str(e.path))
        freed += e.size
    return {"removed": removed, "skipped": skipped, "freed": _human(freed)}


def older_than(days: str) -> float:
    """--older-than's value: a number of days, at least 0."""
    try:
        value = float(days)
    except ValueError:
        raise _config.ConfigError(f"--older-than {days!r}: a number of days") from None
    if value < 0:
        raise _config.ConfigError(f"--older-than {days}: must be 0 or more days")
    return value
