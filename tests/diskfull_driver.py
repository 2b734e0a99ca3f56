"""A real full disk: run by `tests/test_diskfull.py` in a private mount namespace
(`unshare --user --map-root-user --mount`), where it may mount a small tmpfs.

    python tests/diskfull_driver.py ROOT TEST_DIR REPORT

Mounts a 16 MB tmpfs at ROOT (FIVEK_ROOT), writes a run folder, a submission and a Kaggle bundle
there, fills the filesystem to the last byte and tries again: the notebooks' Save step
(`save_run`), `fivek predict`, `fivek kaggle`, and `fivek run`'s report of a notebook whose write
failed. Writes what each said and did, and the state of the previous files, to REPORT (JSON).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT, TEST_DIR, REPORT = (Path(a) for a in sys.argv[1:4])
CODE = Path(__file__).resolve().parents[1]
MB = 1 << 20


def fingerprints() -> dict[str, str]:
    """sha256 of every file under ROOT but the filler, the locks' holder records and the commands' own
    logs (reports/logs/<command>.log: TensorFlow's notes, written into whatever page a command frees)."""
    logs = ROOT / "reports" / "logs"
    return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(ROOT.rglob("*"))
            if p.is_file() and p.name != "filler" and not p.name.endswith((".lock", ".lock.json"))
            and logs not in p.parents}


def fill(leave: int = 0) -> None:
    """Fill ROOT's filesystem to the last byte (then free `leave` bytes of it)."""
    with open(ROOT / "filler", "ab", buffering=0) as fh:
        for chunk in (MB, 4096, 1):
            try:
                while True:
                    fh.write(b"\0" * chunk)
            except OSError:
                pass
    if leave:
        os.truncate(ROOT / "filler", os.path.getsize(ROOT / "filler") - leave)


def fivek(*args: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "fivek_utils.cli", *args], capture_output=True, text=True, cwd=CODE)
    return {"rc": p.returncode, "stderr": p.stderr.strip()}


def main() -> dict:
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(ROOT)], capture_output=True, text=True)
    if mounted.returncode:
        return {"skip": f"cannot mount a tmpfs: {mounted.stderr.strip()}"}
    os.environ["FIVEK_ROOT"] = str(ROOT)
    import keras
    import numpy as np
    import pandas as pd

    from fivek_utils.core.config import Config
    from fivek_utils.core.io import DiskFullError
    from fivek_utils.modeling.backbones import tiny_backbone
    from fivek_utils.modeling.inference import load_ensemble
    from fivek_utils.modeling.models import build_model
    from fivek_utils.platform.kaggle import build_bundle
    from fivek_utils.workflows.predict import predict_submission
    from fivek_utils.workflows.runner import run_notebooks
    from fivek_utils.workflows.runs import save_run

    cfg = Config(run_name="r", image_size=32, backbone="tiny")
    df = pd.DataFrame({"image_id": [1, 2], "fname": ["1.jpg", "2.jpg"]})
    labels = np.array([[1, 0], [0, 1]], "float32")
    metrics = pd.DataFrame({"f1": [0.5]}, index=pd.Index(["5K"], name="target"))

    def save(seed: int, threshold: float) -> None:
        save_run(cfg, build_model(tiny_backbone(seed=seed), None), val_df=df, val_labels=labels,
                 val_probs=np.full((2, 2), 0.5), thresholds={"5k_mask": threshold, "5k_distancing": threshold},
                 metrics=metrics, train_labels=labels)

    submission = ROOT / "submissions" / "submission.csv"
    save(0, 0.4)  # the previous outputs
    predict_submission(load_ensemble(cfg.run_dir), TEST_DIR, submission, progress=False)
    build_bundle(ROOT / "build", user="someone")
    before = fingerprints()
    report: dict = {"model_bytes": (cfg.run_dir / "model.keras").stat().st_size}

    # the Save step with room for the small files but not the model: nothing may change
    fill(leave=report["model_bytes"] // 2)
    try:
        save(1, 0.6)
        report["save"] = "no error"
    except DiskFullError as exc:
        report["save"] = str(exc)
    fill()  # now to the last byte
    report["free_after_fill"] = os.statvfs(ROOT).f_bavail * os.statvfs(ROOT).f_frsize
    report["predict"] = fivek("predict", "--models", str(cfg.run_dir), "--test-dir", str(TEST_DIR), "--out", str(submission))
    report["kaggle"] = fivek("kaggle", "--out", str(ROOT / "build"), "--user", "someone")

    # `fivek run`: a notebook whose write hits the full disk (executed copy and log on the real disk)
    notebooks = REPORT.parent / "notebooks"
    try:
        run_notebooks(REPORT.parent / "pipeline.yaml", notebooks_dir=notebooks, output_dir=REPORT.parent / "executed")
        report["run"] = "no error"
    except DiskFullError as exc:
        report["run"] = str(exc)

    (ROOT / "filler").unlink()
    after = fingerprints()
    report["changed"] = sorted(k for k in before if after.get(k) != before[k])
    report["new_files"] = sorted(set(after) - set(before))
    report["leftovers"] = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob(".*")
                                 if not p.name.endswith((".lock", ".lock.json")))
    # still loadable, and the commands work again once there is room
    keras.saving.load_model(cfg.run_dir / "model.keras")
    report["thresholds"] = json.loads((cfg.run_dir / "thresholds.json").read_text())
    report["ensemble_json_keys"] = sorted(json.loads((cfg.run_dir / "ensemble.json").read_text()))
    report["rows_before_retry"] = len(pd.read_csv(submission))
    report["retry"] = predict_submission(load_ensemble(cfg.run_dir), TEST_DIR, submission, progress=False)["rows"]
    return report


if __name__ == "__main__":
    result = main()
    REPORT.write_text(json.dumps(result, indent=2, default=str))
