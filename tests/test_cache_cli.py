"""`fivek cache` lists every entry of the decode, crops, detections and weights caches with its size, age
and state, and `fivek cache clear` removes all of them, the stale ones or the old ones, never one that a
running process holds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from conftest import run_fivek
from test_cache_entries import HOLD, crops, decode, make_photos

from fivek_utils.core import config
from fivek_utils.data.faces import ImageFaces, file_stamp, write_cache


def line_of(out: str, path) -> str:
    return next(line for line in out.splitlines() if line.rstrip().split("  (")[0].endswith(str(path)))


def test_fivek_cache_lists_and_clears_each_way(tmp_path):
    root = tmp_path / "root"
    cache = root / "data" / "interim" / "cache"
    env = {k: v for k, v in os.environ.items() if k != "FIVEK_CACHE_DIR"} | {"FIVEK_ROOT": str(root)}
    photos = make_photos(tmp_path / "photos")
    changing = make_photos(tmp_path / "changing", seed=1)
    decode(photos, 32, cache)
    decode(changing, 32, cache)
    crops(photos, 32, cache)
    os.utime(changing[0], ns=(1, 1))  # its entry no longer matches the data
    entry = {e.name: e for e in cache.glob("*.npz")}
    current = next(e for n, e in entry.items() if not n.startswith("crops-") and json.dumps(str(photos[0])) in
                   _meta(e))
    stale = next(e for n, e in entry.items() if not n.startswith("crops-") and e != current)
    crop = next(e for n, e in entry.items() if n.startswith("crops-"))
    faces = root / "data" / "interim" / "faces"
    records = {p.name: (file_stamp(p), ImageFaces(p.name, 60, 40, [])) for p in photos}
    found = write_cache(faces / "train-truth-aaa.json", {"name": "truth"}, records, photos[0].parent)
    older = write_cache(faces / "train-truth-bbb.json", {"name": "truth"}, records)  # an older kit kept no folder
    weights = root / "models" / "pretrained" / "b0-21k.weights.h5"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"cut short")
    (weights.parent / "b0-21k.json").write_text(json.dumps({"weights_sha256": "0" * 64}))

    out = run_fivek("cache", env=env).stdout
    assert line_of(out, "data/interim/cache/" + current.name).startswith("decode") and " current " in line_of(out, current.name)
    assert "stale" in line_of(out, stale.name) and "1 of its 4 source files changed" in line_of(out, stale.name)
    assert line_of(out, crop.name).startswith("crops") and "current" in line_of(out, crop.name)
    assert "current" in line_of(out, found.name) and "older kit" in line_of(out, older.name)
    assert "damaged" in line_of(out, weights.name) and "sha256" in line_of(out, weights.name)
    assert "total: 6 entries" in out and "decode 2" in out and "of their bound 10 GB" in out
    no_age = re.compile(r"\s+\d+ (s|min|h|d)\s+")  # the ages may tick between the two listings
    assert no_age.sub(" ", run_fivek("cache", "-q", env=env).stdout) == no_age.sub(" ", out)

    done = run_fivek("cache", "clear", "--stale", env=env)
    assert "removed 3 cache entries" in done.stdout
    assert not stale.exists() and not older.exists() and not weights.exists() and not weights.with_name("b0-21k.json").exists()
    assert current.exists() and crop.exists() and found.exists()

    old = time.time() - 3 * 86400
    os.utime(current, (old, old))
    done = run_fivek("cache", "clear", "--older-than", "2", "-q", env=env)
    assert done.stdout.startswith("removed 1 cache entries (") and len(done.stdout.splitlines()) == 1  # quiet: the result
    assert not current.exists() and crop.exists()

    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(crop)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=config.CODE_ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = run_fivek("cache", "clear", "--all", env=env)
        assert f"skipped data/interim/cache/{crop.name}: in use by PID {holder.pid}" in done.stderr
        assert "skipped 1 in use" in done.stdout and crop.exists() and not found.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert "removed 1 cache entries" in run_fivek("cache", "clear", "--all", "--kind", "crops", env=env).stdout
    assert not list(cache.glob("*.npz"))
    assert "total: 0 entries" in run_fivek("cache", env=env).stdout

    refused = run_fivek("cache", "clear", env=env, check=False)
    assert refused.returncode == 2 and "--all, --stale or --older-than DAYS" in refused.stderr
    refused = run_fivek("cache", "--stale", env=env, check=False)
    assert refused.returncode == 2 and "fivek cache clear --stale" in refused.stderr


def _meta(entry) -> str:
    import numpy as np

    with np.load(entry) as z:
        return str(z["meta"])
