"""Atomic writes: the file appears whole or not at all, with the usual mode, and JSON of numpy values;
a save of several files replaces all or none; a full disk says so in one line and keeps the old files."""

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fivek_utils.core.io import (
    DiskFullError,
    atomic_group,
    atomic_path,
    atomic_remove,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    disk_full_error,
    staged_folder,
)


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


# --- a full disk ---------------------------------------------------------------------------------
@pytest.mark.parametrize("code, says", [(errno.ENOSPC, "no space left on device"), (errno.EDQUOT, "disk quota exceeded")])
def test_a_full_disk_keeps_the_previous_file_and_says_so_in_one_line(tmp_path, code, says):
    target = atomic_write_text(tmp_path / "run" / "thresholds.json", "old")
    with pytest.raises(DiskFullError) as full:
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new one")
            raise OSError(code, os.strerror(code))  # what the writer gets when the filesystem fills up
    message = str(full.value)
    assert message.startswith(f"{says}: cannot write {target} (") and " free on /" in message
    assert "the previous thresholds.json is untouched" in message and "\n" not in message
    assert full.value.errno == code and full.value.__suppress_context__  # no chained traceback in a notebook
    assert target.read_text() == "old" and [p.name for p in target.parent.iterdir()] == ["thresholds.json"]


def test_a_save_of_several_files_replaces_all_of_them_or_none(tmp_path):
    model, thresholds = atomic_write_text(tmp_path / "model.keras", "old model"), atomic_write_text(tmp_path / "t.json", "old")
    with pytest.raises(DiskFullError, match="nothing of this save was written"):
        with atomic_group():
            atomic_write_text(thresholds, "new")
            assert thresholds.read_text() == "old"  # moved into place only when the group ends
            with atomic_path(model) as tmp:
                tmp.write_text("new mod")
                raise OSError(errno.ENOSPC, "No space left on device")
    assert (model.read_text(), thresholds.read_text()) == ("old model", "old")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras", "t.json"]
    with atomic_group():
        atomic_write_text(thresholds, "new")
        atomic_write_text(model, "new model")
    assert (model.read_text(), thresholds.read_text()) == ("new model", "new")


def test_a_folder_in_the_way_of_one_file_replaces_none_and_leaves_no_temporary(tmp_path):
    """Seen with `fivek predict` when a folder had the name of `<out>_config.yaml`: the submission was replaced,
    its record was not, and a temporary file stayed."""
    sub = atomic_write_text(tmp_path / "submission.csv", "old")
    (tmp_path / "submission_config.yaml").mkdir()
    with pytest.raises(IsADirectoryError, match="nothing of the group was replaced"):
        with atomic_group():
            atomic_write_text(sub, "new")
            atomic_write_text(tmp_path / "submission_config.yaml", "record")
    assert sub.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv", "submission_config.yaml"]


def test_a_file_removed_in_a_save_goes_only_if_the_whole_save_is_written(tmp_path):
    stack, thresholds = atomic_write_text(tmp_path / "stack.json", "old stack"), atomic_write_text(tmp_path / "t.json", "old")
    with pytest.raises(DiskFullError):
        with atomic_group():
            assert atomic_remove(stack) and stack.exists()  # still read as it was inside the group
            with atomic_path(thresholds) as tmp:
                tmp.write_text("new")
                raise OSError(errno.ENOSPC, "No space left on device")
    assert (stack.read_text(), thresholds.read_text()) == ("old stack", "old")  # the pair stays together
    with atomic_group():
        atomic_remove(stack)
        atomic_write_text(thresholds, "new")
    assert not stack.exists() and thresholds.read_text() == "new"
    assert atomic_remove(stack) is False  # nothing to remove


def test_a_staged_folder_replaces_its_entries_or_leaves_the_previous_ones(tmp_path):
    out = tmp_path / "build"
    (out / "kit").mkdir(parents=True)
    (out / "kit" / "a.py").write_text("old")
    (out / "mine").mkdir()
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.py").write_text("new")

    def full_copy(src, dst, **kwargs):  # copytree reports each failed file in one shutil.Error
        raise shutil.Error([(str(src / "a.py"), str(Path(dst) / "a.py"), "[Errno 28] No space left on device")])

    with pytest.raises(DiskFullError) as full:
        with staged_folder(out) as stage:
            full_copy(source, stage / "kit")
    assert f"cannot write {out / 'kit' / 'a.py'} (" in str(full.value) and f"what was in {out} before" in str(full.value)
    assert (out / "kit" / "a.py").read_text() == "old" and sorted(p.name for p in out.iterdir()) == ["kit", "mine"]
    with staged_folder(out) as stage:
        shutil.copytree(source, stage / "kit")
    assert (out / "kit" / "a.py").read_text() == "new" and sorted(p.name for p in out.iterdir()) == ["kit", "mine"]


def test_full_disk_errors_are_recognised_however_a_library_words_them():
    h5 = RuntimeError("Can't write data (file write failed: time = ..., errno = 28, error message = 'No space left')")
    assert disk_full_error(h5, "/x/model.keras").errno == errno.ENOSPC
    wrapped = ValueError("saving failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded", "/x/a.csv")
    assert "cannot write /x/a.csv" in str(disk_full_error(wrapped))
    assert disk_full_error(OSError(errno.EACCES, "Permission denied")) is None
    assert disk_full_error(ValueError("28 rows")) is None


def test_the_command_line_says_a_full_disk_in_one_line(monkeypatch, capsys, tmp_path):
    from fivek_utils import cli
    from fivek_utils.data import describe

    def fill(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.json"))

    monkeypatch.setattr(describe, "describe_dataset", fill)
    assert cli.main(["describe", str(tmp_path)]) == 74
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fivek describe: no space left on device: cannot write {tmp_path / 'out.json'} (")
    assert len(err.splitlines()) == 1
