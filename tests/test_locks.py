"""One writer per run folder: a second process is refused at once with one line naming the folder
and the holder, or waits; a killed holder never blocks; `fivek run` lends its locks to its kernels."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from conftest import run_fivek
from fivek_utils.core import config
from fivek_utils.core.locks import FolderBusyError, hold_lock, hold_locks, lock_file

HOLD = """
import sys
from fivek_utils.core.locks import hold_locks
with hold_locks(sys.argv[2:], lend_to_children=sys.argv[1] == "lend"):
    print("held", flush=True)
    sys.stdin.readline()  # until the test closes our stdin, or kills us
"""

TAKE = """
import sys
from fivek_utils.core.locks import FolderBusyError, hold_lock
try:
    with hold_lock(sys.argv[1]):
        print("took it")
except FolderBusyError as exc:
    print(f"refused: {exc}")
"""

LEND_ON = """
import sys
from fivek_utils.core.locks import FolderBusyError, hold_lock, hold_locks
lent, own = sys.argv[1], sys.argv[2]
with hold_locks([own], lend_to_children=True):  # lends its own on, as notebook 05 to its face process
    try:
        with hold_lock(lent):
            print("took it")
    except FolderBusyError as exc:
        print(f"refused: {exc}")
"""


def holder(*targets, env=None) -> subprocess.Popen:
    """Another process holding the locks of `targets` until its stdin closes."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, "-", *map(str, targets)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=config.CODE_ROOT, env=env)
    assert p.stdout.readline().strip() == "held"
    return p


def release(p: subprocess.Popen) -> None:
    p.stdin.close()
    assert p.wait(timeout=30) == 0


def test_a_second_process_is_refused_at_once_naming_the_folder_and_its_holder(tmp_path):
    run = tmp_path / "models" / "02-baseline-b0"
    p = holder(run)
    try:
        with pytest.raises(FolderBusyError) as refused:
            with hold_lock(run):
                pass
        message = str(refused.value)
        assert "\n" not in message and str(run) in message
        assert f"PID {p.pid}" in message and socket.gethostname() in message and " since " in message
        assert "--wait" in message and "FIVEK_WAIT=1" in message
        assert not run.exists()  # refused before anything was written
    finally:
        release(p)
    with hold_lock(run):  # free again
        assert lock_file(run) == tmp_path / "models" / ".02-baseline-b0.lock"


def test_a_killed_holder_never_blocks_the_next_run(tmp_path):
    p = holder(tmp_path / "run")
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    with hold_lock(tmp_path / "run"):  # no stale lock: it died with its process
        record = (tmp_path / ".run.lock.json").read_text()
        assert f'"pid": {os.getpid()}' in record


def test_wait_starts_when_the_holder_is_done(tmp_path, capfd):
    p = holder(tmp_path / "run")
    threading.Timer(0.5, p.stdin.close).start()
    with hold_lock(tmp_path / "run", wait=True):
        assert p.wait(timeout=30) == 0  # we got it only once the holder had finished
    assert f"waiting for {tmp_path / 'run'}: in use by PID {p.pid}" in capfd.readouterr().err


def test_several_locks_are_taken_all_or_none_and_are_reentrant(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    p = holder(b)
    try:
        with pytest.raises(FolderBusyError, match=str(b)):
            with hold_locks([a, b]):
                pass
        q = holder(a)  # `a` was let go when `b` was refused
        release(q)
    finally:
        release(p)
    with hold_lock(a), hold_lock(a), hold_locks([a, b]):  # a process may take its own locks again
        pass


def test_child_processes_write_under_the_locks_lent_to_them_and_no_one_else(tmp_path):
    run = tmp_path / "run"
    take = [sys.executable, "-c", TAKE, str(run)]
    with hold_locks([run], lend_to_children=True):
        lent = subprocess.run(take, capture_output=True, text=True, cwd=config.CODE_ROOT, check=True)
        (tmp_path / ".run.lock.json").unlink()  # as when a full disk kept the holder record from being written
        still_lent = subprocess.run(take, capture_output=True, text=True, cwd=config.CODE_ROOT, check=True)
        env = {k: v for k, v in os.environ.items() if k != "FIVEK_LOCKS_LENT"}
        stranger = subprocess.run(take, capture_output=True, text=True, cwd=config.CODE_ROOT, env=env, check=True)
        grandchild = subprocess.run([sys.executable, "-c", f"import subprocess, sys; subprocess.run({take!r})"],
                                    capture_output=True, text=True, cwd=config.CODE_ROOT, check=True)
    assert lent.stdout.strip() == still_lent.stdout.strip() == "took it"  # like a notebook kernel of `fivek run`
    assert stranger.stdout.startswith(f"refused: {run} is in use by another process")  # like a second Jupyter
    assert grandchild.stdout.startswith("refused: ")  # only the lender's own children
    assert "FIVEK_LOCKS_LENT" not in os.environ  # the loan ended with the block


def test_a_process_that_lends_a_lock_of_its_own_on_still_writes_under_the_one_lent_to_it(tmp_path):
    with hold_locks([tmp_path / "run"], lend_to_children=True):  # like `fivek run` for its kernel
        kernel = subprocess.run([sys.executable, "-c", LEND_ON, str(tmp_path / "run"), str(tmp_path / "student")],
                                capture_output=True, text=True, cwd=config.CODE_ROOT, check=True)
    assert kernel.stdout.strip() == "took it", kernel.stdout + kernel.stderr


def test_fivek_run_and_predict_refuse_before_writing_anything(tmp_path):
    env = {**os.environ, "FIVEK_ROOT": str(tmp_path)}
    p = holder(tmp_path / "models" / "02-baseline-b0", tmp_path / "result" / "submission.csv")
    try:
        run = run_fivek("run", "--config", "configs/smoke.yaml", "--only", "02", env=env, check=False)
        predict = run_fivek("predict", "--models", str(tmp_path / "none"), "--test-dir", str(tmp_path / "none"),
                            "--out", str(tmp_path / "result" / "submission.csv"), env=env, check=False)
    finally:
        release(p)
    for result, folder in ((run, "models/02-baseline-b0"), (predict, "result/submission.csv")):
        assert result.returncode == 75, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert f"{tmp_path / folder} is in use by PID {p.pid}" in result.stderr
    assert run.stderr.startswith("fivek run: ") and predict.stderr.startswith("fivek predict: ")
    executed = tmp_path / "reports" / "executed"
    assert not (executed / "02-baseline-b0.ipynb").exists() and not (executed / "02-baseline-b0.log").exists()
    assert not (tmp_path / "data").exists()  # not even the synthetic data was prepared


def write_notebook(path, *cells: str) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# a test notebook"),
                nbformat.v4.new_code_cell(cells[0], metadata={"tags": ["parameters"]}),
                *(nbformat.v4.new_code_cell(c) for c in cells[1:])]
    nbformat.write(nb, path)


@pytest.mark.slow
def test_the_runner_lends_its_lock_to_its_kernel_and_refuses_a_second_run(tmp_path, monkeypatch):
    from fivek_utils.workflows import runner

    monkeypatch.setenv("FIVEK_ROOT", str(tmp_path))  # the kernel's project root
    monkeypatch.setattr(runner, "MODELS_DIR", tmp_path / "models")  # and the runner's
    notebooks, executed = tmp_path / "notebooks", tmp_path / "executed"
    notebooks.mkdir()
    write_notebook(notebooks / "01-write.ipynb", 'run_name: str = "nb-run"  # the run folder',
                   "import fivek_utils as fk\nfrom fivek_utils.core.locks import hold_lock\n"
                   "with hold_lock(fk.MODELS_DIR / run_name):  # what train_two_phase and save_run do\n"
                   "    (fk.MODELS_DIR / run_name).mkdir(parents=True)")
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text("notebooks: {}\n")
    runner.run_notebooks(config_file, notebooks_dir=notebooks, output_dir=executed)  # the kernel was not refused
    assert (tmp_path / "models" / "nb-run").is_dir() and (executed / "01-write.ipynb").exists()

    for written in ("01-write.ipynb", "01-write.log"):
        (executed / written).unlink()
    p = holder(tmp_path / "models" / "nb-run")  # a Jupyter kernel, say, in the middle of training that run
    try:
        with pytest.raises(FolderBusyError, match=f"nb-run is in use by PID {p.pid}"):
            runner.run_notebooks(config_file, notebooks_dir=notebooks, output_dir=executed)
    finally:
        release(p)
    assert not (executed / "01-write.ipynb").exists() and not (executed / "01-write.log").exists()


FILL = """
import hashlib, json, sys, time
from pathlib import Path
go = Path(sys.argv[1])
while not go.exists():  # both processes start filling together
    time.sleep(0.01)
from fivek_utils.data.images import load_images
from fivek_utils.data.synth import ensure_dataset
made = ensure_dataset(sys.argv[2], n_train=12, n_test=4, seed=3, workers=1, progress=False)
images = sorted(str(p) for p in Path(sys.argv[2], "train", "images").glob("*.jpg"))
decoded = load_images(images, 32, cache_dir=sys.argv[3], num_workers=1, progress=False)
print(json.dumps({"reused": bool(made.get("reused")), "pixels": hashlib.sha1(decoded.images.tobytes()).hexdigest()}))
"""


def test_two_processes_filling_the_dataset_and_the_decode_cache_at_once_make_them_once(tmp_path):
    import json

    args = [sys.executable, "-c", FILL, str(tmp_path / "go"), str(tmp_path / "synth"), str(tmp_path / "cache")]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=config.CODE_ROOT)
             for _ in range(2)]
    (tmp_path / "go").touch()
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in results]
    made = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert sorted(m["reused"] for m in made) == [False, True]  # one wrote the dataset, the other waited and reused it
    assert made[0]["pixels"] == made[1]["pixels"]
    assert len(list((tmp_path / "synth" / "train" / "images").glob("*.jpg"))) == 12
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith((".lock", ".lock.json"))] \
        == [next((tmp_path / "cache").glob("*.npz")).name]  # one cache entry, no temporary file
    assert not [p for p in (tmp_path / "synth").iterdir() if p.name.startswith(".") and ".lock" not in p.name]


def test_where_the_filesystem_cannot_lock_the_run_goes_on_with_a_warning(tmp_path, monkeypatch):
    import filelock

    def no_flock(self, *args, **kwargs):  # what filelock raises where flock is missing (some network mounts)
        raise NotImplementedError("FileSystem does not appear to support flock")

    monkeypatch.setattr(filelock.FileLock, "acquire", no_flock)
    with pytest.warns(UserWarning, match=f"cannot lock {tmp_path / 'run'} .*going on without a lock"):
        with hold_lock(tmp_path / "run"):
            pass


def test_the_holder_record_goes_with_the_lock_and_no_marker_file_stands_in_for_flock(tmp_path):
    import inspect

    import filelock

    from fivek_utils.core.locks import _HELD

    with hold_lock(tmp_path / "run"):
        record = json.loads((tmp_path / ".run.lock.json").read_text())
        assert record["pid"] == os.getpid()
        if "fallback_to_soft" in inspect.signature(filelock.FileLock).parameters:  # filelock 4: flock or a warning
            assert _HELD[str(tmp_path / "run")].lock.fallback_to_soft is False
    assert not (tmp_path / ".run.lock.json").exists()  # a later refusal never names a finished holder
