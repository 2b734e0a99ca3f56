"""Caches you can trust: a damaged decode or crops entry (cut, emptied, a byte flipped, another entry's
bytes, an entry of another size) is named in one line, removed and made again, never used and never a
traceback; two processes meeting one damaged entry remake it once; the caches keep within their bound,
least recently used first, never removing an entry another process holds."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fivek_utils.core import config
from fivek_utils.data.cache_entries import enforce_bound, entries, read_meta, stale_reason
from fivek_utils.data.crops import load_crops
from fivek_utils.data.faces import Detections, Face, ImageFaces
from fivek_utils.data.images import load_images


def make_photos(folder: Path, n: int = 4, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        paths.append(folder / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def detections(paths) -> Detections:
    # two faces in the first photo, none in the second, one in the others: counts [2, 0, 1, 1, ...]
    faces = {0: [Face((5, 5, 20, 20)), Face((30, 10, 50, 30))], 1: []}
    return Detections({"name": "test"}, {p.name: ImageFaces(p.name, 60, 40, faces.get(i, [Face((10, 8, 30, 28))]))
                                         for i, p in enumerate(paths)})


def decode(paths, size, cache):
    return load_images(paths, size, cache_dir=cache, progress=False)


def crops(paths, size, cache):
    return load_crops(paths, [p.name for p in paths], detections(paths), size, detections_key=str(paths[0].parent), cache_dir=cache,
                      progress=False)


def same(a, b) -> bool:
    if hasattr(a, "images"):
        return np.array_equal(a.images, b.images) and np.array_equal(a.ok, b.ok) and a.errors == b.errors
    return (np.array_equal(a.crops, b.crops) and np.array_equal(a.counts, b.counts)
            and np.array_equal(a.image_index, b.image_index) and a.errors == b.errors)


def flip_middle(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]


DAMAGE = ["cut in half", "emptied", "a byte flipped in the middle", "another entry's bytes", "an entry of another size"]


@pytest.mark.parametrize("load", [decode, crops], ids=["decode", "crops"])
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_entry_is_named_removed_and_made_again(tmp_path, capfd, load, damage):
    paths = make_photos(tmp_path / "photos")
    cache = tmp_path / "cache"
    first = load(paths, 32, cache)
    (entry,) = entries(cache)
    good = entry.read_bytes()
    if damage == "cut in half":
        entry.write_bytes(good[: len(good) // 2])
    elif damage == "emptied":
        entry.write_bytes(b"")
    elif damage == "a byte flipped in the middle":
        entry.write_bytes(flip_middle(good))
    else:  # another entry's bytes: the same number of photos, other ones; or the same photos at another size
        other = make_photos(tmp_path / "other", seed=1) if damage == "another entry's bytes" else paths
        load(other, 32 if damage == "another entry's bytes" else 40, cache)
        (made,) = [e for e in entries(cache) if e != entry]
        entry.write_bytes(made.read_bytes())
    capfd.readouterr()

    again = load(paths, 32, cache)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "damaged" in line]
    assert len(lines) == 1 and str(entry) in lines[0] and "removed, making it again" in lines[0], err
    assert "Traceback" not in err
    assert same(again, first)
    assert entry.read_bytes() == good or same(load(paths, 32, cache), first)  # readable again
    load(paths, 32, cache)
    assert "damaged" not in capfd.readouterr().err


def test_what_each_damage_says(tmp_path, capfd):
    """The reason in the line names what was wrong (docs/faults-and-resuming.md's damaged-caches table quotes these)."""
    paths = make_photos(tmp_path / "photos")
    cache = tmp_path / "cache"
    decode(paths, 32, cache)
    (entry,) = entries(cache)
    good = entry.read_bytes()
    decode(paths, 40, cache)
    other = next(e for e in entries(cache) if e != entry).read_bytes()
    said = {}
    for name, data in [("cut", good[: len(good) // 2]), ("empty", b""), ("flip", flip_middle(good)), ("size", other)]:
        entry.write_bytes(data)
        capfd.readouterr()
        decode(paths, 32, cache)
        said[name] = capfd.readouterr().err
    assert "BadZipFile" in said["cut"] and "empty: 0 bytes" in said["empty"]
    assert "Bad CRC-32" in said["flip"] and "expected decode" in said["size"] and "at 40 px" in said["size"]


def test_crops_whose_counts_do_not_add_up_are_made_again(tmp_path, capfd):
    paths = make_photos(tmp_path / "photos")
    cache = tmp_path / "cache"
    first = crops(paths, 32, cache)
    (entry,) = entries(cache)
    with np.load(entry) as z:
        arrays = dict(z)
    arrays["counts"] = arrays["counts"] + np.array([0, 1, 0, 0])  # one crop more than the entry holds
    with open(entry, "wb") as fh:
        np.savez(fh, **arrays)
    again = crops(paths, 32, cache)
    assert same(again, first) and "'crops' is uint8 (4, 32, 32, 3), expected uint8 (5x32x32x3)" in capfd.readouterr().err
    arrays["counts"] = first.counts
    arrays["image_index"] = np.array([0, 1, 2, 3])  # counts right, the crops' rows wrong
    with open(entry, "wb") as fh:
        np.savez(fh, **arrays)
    assert same(crops(paths, 32, cache), first) and "image_index does not follow" in capfd.readouterr().err


def test_an_entry_of_an_older_kit_without_a_record_is_still_read_and_is_stale(tmp_path, capfd):
    paths = make_photos(tmp_path / "photos")
    cache = tmp_path / "cache"
    first = decode(paths, 32, cache)
    (entry,) = entries(cache)
    with np.load(entry) as z:
        arrays = {k: v for k, v in z.items() if k != "meta"}
    with open(entry, "wb") as fh:
        np.savez(fh, **arrays)
    assert same(decode(paths, 32, cache), first) and "damaged" not in capfd.readouterr().err
    assert read_meta(entry) is None and "older kit" in stale_reason(read_meta(entry))


def test_an_entry_is_stale_once_a_source_changes(tmp_path):
    paths = make_photos(tmp_path / "photos")
    cache = tmp_path / "cache"
    decode(paths, 32, cache)
    (entry,) = entries(cache)
    assert stale_reason(read_meta(entry)) is None
    os.utime(paths[1], ns=(1, 1))
    assert "1 of its 4 source files changed" in stale_reason(read_meta(entry))
    paths[2].unlink()
    assert "2 of its 4 source files changed (1 gone)" in stale_reason(read_meta(entry))


TWO = """
import hashlib, json, sys, time
from pathlib import Path
go, cache, *paths = sys.argv[1:]
while not Path(go).exists():
    time.sleep(0.01)
from fivek_utils.data.images import load_images
decoded = load_images(paths, 32, cache_dir=cache, progress=False)
print(json.dumps({"pixels": hashlib.sha1(decoded.images.tobytes()).hexdigest()}))
"""


def test_two_processes_meeting_one_damaged_entry_remake_it_once(tmp_path):
    paths = make_photos(tmp_path / "photos", n=24)
    cache = tmp_path / "cache"
    first = decode(paths, 32, cache)
    (entry,) = entries(cache)
    entry.write_bytes(flip_middle(entry.read_bytes()))
    args = [sys.executable, "-c", TWO, str(tmp_path / "go"), str(cache), *map(str, paths)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=config.CODE_ROOT)
             for _ in range(2)]
    (tmp_path / "go").touch()
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in results]
    warned = [line for _, err in results for line in err.splitlines() if "is damaged" in line]
    assert len(warned) == 1 and str(entry) in warned[0]  # one remade it; the other read it (or waited for it)
    pixels = {json.loads(out.strip().splitlines()[-1])["pixels"] for out, _ in results}
    assert pixels == {hashlib.sha1(first.images.tobytes()).hexdigest()}
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [entry.name]


HOLD = """
import sys
from fivek_utils.core.locks import hold_lock
with hold_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_the_bound_removes_the_least_recently_used_and_never_one_held(tmp_path, capfd):
    cache = tmp_path / "cache"
    sets = [make_photos(tmp_path / f"p{i}", seed=i) for i in range(4)]
    for i, paths in enumerate(sets[:3]):
        decode(paths, 32, cache)
    made = {i: next(e for e in entries(cache) if e.stat().st_size and read_meta(e)["sources"][0][0].startswith(
        str(tmp_path / f"p{i}"))) for i in range(3)}
    for i, e in made.items():  # made in order 0, 1, 2 ...
        os.utime(e, (1000 + i, 1000 + i))
    load_images(sets[0], 32, cache_dir=cache, progress=False)  # ... then 0 read again: 1 is the least recently used
    size = made[0].stat().st_size
    capfd.readouterr()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(made[1])], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=config.CODE_ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        # room for three entries: the fourth makes one go, not the held 1 but the next least recently used, 2
        load_images(sets[3], 32, cache_dir=cache, progress=False, cache_max_gb=3.5 * size / 1e9)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    err = capfd.readouterr().err
    assert made[1].exists() and made[0].exists() and not made[2].exists()
    assert "removed 1 least recently used entries" in err and made[2].name in err and "cache_max_gb" in err
    assert len(entries(cache)) == 3
    assert enforce_bound(cache, 0.5 * size / 1e9, keep=made[0]) and entries(cache) == [made[0]]


def test_cache_max_gb_comes_from_the_environment_and_is_checked(monkeypatch):
    monkeypatch.setenv("FIVEK_CACHE_MAX_GB", "2.5")
    assert config.Config().cache_max_gb == 2.5 and config.Config(cache_max_gb=0).cache_max_gb == 0
    monkeypatch.setenv("FIVEK_CACHE_MAX_GB", "lots")
    with pytest.raises(config.ConfigError, match="FIVEK_CACHE_MAX_GB='lots'"):
        config.cache_max_gb_default()
    monkeypatch.delenv("FIVEK_CACHE_MAX_GB")
    assert config.Config().cache_max_gb == config.DEFAULT_CACHE_MAX_GB
    with pytest.raises(config.ConfigError, match="cache_max_gb=-1"):
        config.Config(cache_max_gb=-1)


def test_the_cache_bound_is_not_part_of_a_runs_key():
    """A run resumed with another FIVEK_CACHE_MAX_GB is the same run (its key never held the bound)."""
    from fivek_utils.modeling.training import _NOT_IN_RUN_KEY

    assert "cache_max_gb" in _NOT_IN_RUN_KEY
