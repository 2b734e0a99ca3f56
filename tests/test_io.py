"""Atomic writes: the file appears whole or not at all, with the usual mode, and JSON of numpy values."""

import json
from pathlib import Path

import numpy as np
import pytest

from fivek_utils.core.io import atomic_path, atomic_write_csv, atomic_write_json, atomic_write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "a" / "model.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["model.txt"]


def test_the_written_file_has_the_mode_a_plain_open_gives(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    made = atomic_write_text(tmp_path / "made", "x")
    assert made.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_json_takes_numpy_values_and_paths_and_refuses_the_rest(tmp_path):
    path = atomic_write_json(tmp_path / "x.json", {"i": np.int64(3), "f": np.float32(0.5), "a": np.arange(2),
                                                   "p": Path("/a/b")})
    assert json.loads(path.read_text()) == {"i": 3, "f": 0.5, "a": [0, 1], "p": "/a/b"}
    with pytest.raises(TypeError, match="set"):
        atomic_write_json(tmp_path / "y.json", {"s": {1}})
    assert not (tmp_path / "y.json").exists()


def test_csv_without_the_index(tmp_path):
    import pandas as pd

    path = atomic_write_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1, 2]}))
    assert path.read_bytes() == b"a\n1\n2\n"  # no index column, Unix newlines
