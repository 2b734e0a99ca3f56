"""Where the libraries' noise goes: `output_to` points the process's own stderr (and stdout) at a log,
native writes and child processes included, and gives the terminal back even on error."""

import subprocess
import sys

from fivek_utils.core.config import CODE_ROOT

SCRIPT = """
import os, subprocess, sys, warnings
from fivek_utils.core.console import output_to
mode = sys.argv[2]
print("before", flush=True)
try:
    with output_to(sys.argv[1], stdout=mode == "stdout", python=mode != "native"):
        os.write(2, b"native note\\n")                  # what TensorFlow's C++ runtime does
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child note\\\\n')"])
        warnings.warn("python warning")
        print("printed inside", flush=True)
        raise RuntimeError("boom")
except RuntimeError:
    print("after", file=sys.stderr, flush=True)
"""


def run(tmp_path, mode):
    log = tmp_path / f"{mode}.log"
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(log), mode], capture_output=True, text=True,
                            cwd=CODE_ROOT, check=True)
    return result.stdout, result.stderr, log.read_text()


def test_stderr_of_the_process_and_its_children_goes_to_the_log_until_the_block_ends(tmp_path):
    out, err, log = run(tmp_path, "stderr")
    assert out == "before\nprinted inside\n"
    assert "native note" in log and "child note" in log and "python warning" in log
    assert err == "after\n"  # the terminal's stderr is back after the error


def test_stdout_too(tmp_path):
    out, err, log = run(tmp_path, "stdout")
    assert out == "before\n" and "printed inside" in log and err == "after\n"


def test_native_only_keeps_pythons_warnings_on_the_terminal(tmp_path):
    out, err, log = run(tmp_path, "native")
    assert "native note" in log and "child note" in log and "python warning" not in log
    assert "python warning" in err and "native note" not in err and err.endswith("after\n")
