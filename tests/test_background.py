"""`core.background.Background`: a function in a spawned process of its own, its printed lines relayed
here as they come, its result or its error brought back, a dead child named, and leaving a `with` on
an error stopping it. The functions below run in real child processes (they must be importable)."""

from __future__ import annotations

import os
import time

import pytest

from fivek_utils.core.background import Background, BackgroundError
from fivek_utils.core.config import ConfigError


def _add_and_report(a, b, *, scale=1):
    print("adding", a, "and", b)
    print("scaled by", scale, end="")  # an unfinished last line comes back too
    return {"pid": os.getpid(), "sum": (a + b) * scale}


def _refuse(name):
    raise ConfigError(f"{name}: not a setting")


class _Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("cannot pickle me")


def _raise_unpicklable():
    raise _Unpicklable("a private error")


def _die():
    print("about to die")
    os._exit(3)


def _sleep(seconds):
    time.sleep(seconds)
    return "slept"


def test_the_result_and_the_printed_lines_come_back(capsys):
    job = Background(_add_and_report, 2, 3, scale=10, name="adder")
    out = job.result(timeout=120)
    assert out["sum"] == 50 and out["pid"] == job.pid != os.getpid()  # it ran in another process
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["adder | adding 2 and 3", "adder | scaled by 10"]
    assert job.result() == out  # asked twice: the same answer


def test_an_error_that_pickles_comes_back_as_itself_with_the_childs_traceback():
    job = Background(_refuse, "colour", name="checker")
    with pytest.raises(ConfigError, match="colour: not a setting") as info:
        job.result(timeout=120)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "raised by checker, in its own process" in notes and "_refuse" in notes


def test_an_error_that_cannot_be_sent_back_is_named():
    with pytest.raises(BackgroundError, match="private failed in its own process: _Unpicklable: a private error"):
        Background(_raise_unpicklable, name="private").result(timeout=120)


def test_a_child_that_dies_without_an_answer_is_named(capsys):
    with pytest.raises(BackgroundError, match=r"dying: its process ended without an answer \(exit code 3"):
        Background(_die, name="dying").result(timeout=120)
    assert "dying | about to die" in capsys.readouterr().out


def test_leaving_the_block_on_an_error_stops_the_child():
    with pytest.raises(KeyError):
        with Background(_sleep, 120, name="sleeper") as job:
            raise KeyError("the work beside it failed")
    assert not job.running and job._process.exitcode is not None  # stopped, not left sleeping
    with pytest.raises(BackgroundError, match="ended without an answer"):
        job.result(timeout=5)


def test_a_finished_block_leaves_the_child_running_until_asked():
    with Background(_sleep, 1, name="sleeper") as job:
        pass
    assert job.result(timeout=120) == "slept"
