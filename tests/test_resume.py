"""Exact resumption: a real training process killed at each moment of an epoch's end (during the
log write, the backup and the best-checkpoint save) resumes so that every epoch is trained once
and logged once, and the best checkpoint's record agrees with the restored state."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import resume_child as child

from fivek_utils.core import config
from fivek_utils.core.metrics import f1_5k
from fivek_utils.modeling.inference import predict_probs
from fivek_utils.modeling.resume import prune_log


def run_child(run_dir: Path, point: str, n: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(Path(child.__file__)), str(run_dir), point, str(n)],
                          capture_output=True, text=True, cwd=config.CODE_ROOT, timeout=300)


def logged_epochs(run_dir: Path) -> list[int]:
    return pd.read_csv(run_dir / "part_log.csv")["epoch"].tolist()


def state(run_dir: Path) -> dict:
    return json.loads((run_dir / "part_backup" / "state.json").read_text())


@pytest.mark.slow
def test_a_kill_at_each_moment_of_an_epoch_end_resumes_exactly(tmp_path):
    run = tmp_path / "run"

    # 1. killed saving the best checkpoint of epoch 0: best.keras replaced, best.json not yet written
    p = run_child(run, "best", 1)
    assert p.returncode == child.KILLED, p.stderr[-2000:]
    assert logged_epochs(run) == [0] and state(run)["epoch"] == 1
    assert (run / "best.keras").exists() and not (run / "best.json").exists()

    # 2. resumed at epoch 1 (the best checkpoint caught up from the restored epoch 0), then killed
    #    writing epoch 1's log row
    p = run_child(run, "log", 1)
    assert p.returncode == child.KILLED, p.stderr[-2000:]
    assert "resuming at epoch 2 of 4" in p.stdout
    record = json.loads((run / "best.json").read_text())
    assert record["epoch"] == 0 and record["part"] == "part"
    assert (run / "part_log.csv").read_text().endswith("\n1,0.31")  # a row cut off mid-line
    assert state(run)["epoch"] == 1

    # 3. resumed at epoch 1 (the cut row dropped), epoch 1 trained and logged, then killed between
    #    the backup's weights and its record: the backup still says epoch 1
    p = run_child(run, "backup-weights", 1)
    assert p.returncode == child.KILLED, p.stderr[-2000:]
    assert "dropped 1 log row" in p.stdout
    assert logged_epochs(run) == [0, 1] and state(run)["epoch"] == 1
    assert (run / "part_backup" / "epoch0002.weights.h5").exists()  # written, never committed

    # 4. resumed at epoch 1 again (epoch 1's row dropped: the backup has not got it), epochs 1 and 2
    #    done, killed after epoch 2's backup, before its best checkpoint
    p = run_child(run, "backup-done", 2)
    assert p.returncode == child.KILLED, p.stderr[-2000:]
    assert "dropped 1 log row" in p.stdout
    assert logged_epochs(run) == [0, 1, 2] and state(run) == {**state(run), "epoch": 3, "weights": "epoch0003.weights.h5"}

    # 5. the last resume, here: epoch 3 only
    model, log, val = child.train(run)
    assert log["epoch"].tolist() == [0, 1, 2, 3]
    assert all(line.endswith("\n") for line in (run / "part_log.csv").read_text().splitlines(keepends=True))
    assert int(model.optimizer.iterations.numpy()) == child.EPOCHS * child.STEPS  # no epoch trained twice or skipped
    assert (run / "part.done.weights.h5").exists() and not (run / "part_backup").exists()
    record = json.loads((run / "best.json").read_text())
    assert record["best"] == log["val_f1_5k"].max()  # the best of the epochs that count
    assert record["epoch"] == int(log["epoch"][log["val_f1_5k"].idxmax()])
    best = keras.saving.load_model(run / "best.keras", compile=False)
    assert f1_5k(val.labels, predict_probs(best, val.images, 16)) == pytest.approx(record["best"], abs=1e-12)


def test_prune_log_keeps_whole_rows_of_finished_epochs(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss\n0,0.9\n1,0.8\n2,0.7\n2,0.7\n3,0.")
    assert prune_log(log, 2) == 3
    assert log.read_text() == "epoch,loss\n0,0.9\n1,0.8\n"
    assert prune_log(log, 2) == 0  # nothing to drop: the file is left alone
    log.write_text("epo")  # cut off in the header: the log starts afresh
    assert prune_log(log, 0) == 1 and not log.exists()
    assert prune_log(tmp_path / "absent.csv", 3) == 0


def test_the_backup_restores_weights_and_the_epoch_to_resume_at(tmp_path):
    from fivek_utils.modeling.resume import EpochBackup

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    backup = EpochBackup(tmp_path / "b")
    backup.set_model(model)
    backup.on_epoch_end(4)
    assert json.loads((tmp_path / "b" / "state.json").read_text())["epoch"] == 5
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    other.compile(optimizer="adam", loss="mse")
    assert EpochBackup(tmp_path / "b").restore(other) == 5
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), other.get_weights()))
    assert int(other.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 1
    assert EpochBackup(tmp_path / "none").restore(other) is None
