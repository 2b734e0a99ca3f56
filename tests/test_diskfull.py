"""A real full disk (a small tmpfs in a private mount namespace, filled to the last byte): the
Save step, `fivek predict`, `fivek kaggle` and `fivek run` each say so in one line, keep the
previous model.keras, thresholds.json, ensemble.json, submission.csv and bundle byte for byte and
loadable, and leave no temporary file; once there is room again, they work."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_locks import write_notebook

DRIVER = Path(__file__).with_name("diskfull_driver.py")


def can_mount_in_a_namespace() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not can_mount_in_a_namespace(), reason="needs `unshare --user --mount` to mount a small tmpfs")
def test_a_full_disk_says_so_in_one_line_and_keeps_the_previous_files(tmp_path):
    root, test = tmp_path / "full", tmp_path / "private_test"
    root.mkdir()
    (test / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in (1, 2, 3):
        Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(test / "images" / f"{i}.jpg")
    pd.DataFrame({"image_id": [1, 2, 3], "fname": ["1.jpg", "2.jpg", "3.jpg"]}).to_csv(test / "private_test_meta.csv", index=False)
    (tmp_path / "notebooks").mkdir()
    write_notebook(tmp_path / "notebooks" / "01-big.ipynb", f'target: str = "{root}/big.bin"  # a file on the full disk',
                   "import fivek_utils as fk\nfk.io.atomic_write_text(target, 'x' * 100_000)")
    (tmp_path / "pipeline.yaml").write_text("notebooks: {}\n")
    report_file = tmp_path / "report.json"
    run = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, str(DRIVER), str(root),
                          str(test), str(report_file)], capture_output=True, text=True, timeout=540)
    assert run.returncode == 0 and report_file.exists(), run.stderr[-3000:]
    report = json.loads(report_file.read_text())
    if "skip" in report:
        pytest.skip(report["skip"])

    # the Save step: one line naming the file, the free space and that nothing was replaced
    assert report["save"].startswith(f"no space left on device: cannot write {root}/") and " free on " in report["save"]
    assert "nothing of this save was written" in report["save"] and "\n" not in report["save"]
    said = {}
    for command in ("predict", "kaggle"):
        result = report[command]
        assert result["rc"] == 74, result
        ours = [line for line in result["stderr"].splitlines() if line.startswith("fivek ")]  # not TensorFlow's notes
        assert len(ours) == 1 and result["stderr"].endswith(ours[0]), result
        said[command] = ours[0]
        assert said[command].startswith(f"fivek {command}: no space left on device: cannot write {root}/"), result
        assert "B free on " in said[command]
    # which of the three files the disk ran out on depends on the last free page
    assert re.search(r"nothing of this save was written: the previous submission(_probs\.csv|\.csv|_config\.yaml) "
                     "and the files saved with it are untouched", said["predict"]), said["predict"]
    assert f"what was in {root}/build before is untouched" in said["kaggle"]
    assert report["run"].startswith("01-big.ipynb stopped in cell 2: no space left on device: cannot write ")
    assert "\n" not in report["run"]
    assert report["free_after_fill"] == 0  # full to the last byte (a lock's stale holder record removed since frees a page)

    # the previous files, byte for byte and loadable, and no temporary file anywhere
    assert report["changed"] == [] and report["new_files"] == [] and report["leftovers"] == []
    assert report["thresholds"] == {"5k_mask": 0.4, "5k_distancing": 0.4}  # the previous run's, not the failed save's
    assert {"image_size", "tta", "fallback_5k"} <= set(report["ensemble_json_keys"])
    assert report["rows_before_retry"] == 3 and report["retry"] == 3
