"""From a trained run to a submission: one function that notebook 06 and `fivek predict` share.

For a test folder (``images/`` and its ``*_meta.csv``, whatever the folder is called, e.g.
``/data/private_test``) it writes three files side by side, atomically:

    submission.csv          image_id,fname,5K - one row per row of the meta file, in its order
    submission_probs.csv    the probabilities behind every answer, and which rows got the fallback
    submission_config.yaml  what made it: the run, its models, image size, TTA, thresholds, the
                            fallback rows and the run's own config.yaml
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import pandas as pd
import yaml

from ..core.config import ConfigError
from ..core.io import atomic_group, atomic_write_text
from ..core.locks import holds_lock
from ..data.meta import DataValidationError, files_not_in_meta, image_paths, read_meta
from ..data.submission import beside, check_submission, write_submission
from ..modeling.inference import Ensemble, answer_frame, predict_split
from .stacking import has_stack, load_stack, predict_stack


def read_test_folder(test_dir: str | os.PathLike) -> tuple[pd.DataFrame, Path]:
    """A test folder's meta table (with each image's path) and the meta file itself."""
    test_dir = Path(test_dir)
    metas = sorted(test_dir.glob("*_meta.csv"))
    if len(metas) != 1 or not (test_dir / "images").is_dir():
        raise FileNotFoundError(f"{test_dir} must hold images/ and exactly one *_meta.csv (found {[m.name for m in metas]})")
    meta, problems = read_meta(metas[0], labelled=False)
    if problems:
        raise DataValidationError("\n".join(p.describe(metas[0], meta) for p in problems))
    meta["path"] = image_paths(test_dir / "images", meta["fname"], metas[0])
    return meta, metas[0]


@holds_lock(lambda a: a["out"])
def predict_submission(ensemble: Ensemble, test_dir: str | os.PathLike, out: str | os.PathLike, *, tta=None,
                       batch_size: int = 64, probabilities: bool = True, progress: bool = True) -> dict:
    """Predict every image of `test_dir` with the run's ensemble and write the submission, its
    probabilities and its record; return the checked summary (rows, positives, fallback rows, speed)."""
    out = Path(out)
    targets = [out, beside(out, "config.yaml")] + ([beside(out, "probs.csv")] if probabilities else [])
    folders = [str(t) for t in targets if t.is_dir()]
    if folders:  # said before any prediction, not after it
        raise ConfigError(f"{', '.join(folders)}: a folder where the submission writes a file; name another --out "
                          f"(e.g. {out / 'submission.csv'} for a folder) or move it away")
    meta, meta_path = read_test_folder(test_dir)
    unlisted = files_not_in_meta(Path(test_dir) / "images", meta["fname"])
    if unlisted:
        warnings.warn(f"{len(unlisted)} file(s) in {Path(test_dir) / 'images'} are not in {meta_path.name} and get no row "
                      f"(the meta file lists the test images), e.g. {unlisted[:3]}", stacklevel=2)
    tta = list(tta or ensemble.tta)
    if tta != list(ensemble.tta):
        warnings.warn(f"TTA {tta} is not the {list(ensemble.tta)} that {ensemble.source}'s thresholds (and stack) were tuned "
                      "with (its ensemble.json): its out-of-fold scores do not describe these answers", stacklevel=2)
    t0 = time.perf_counter()
    pred = predict_split(ensemble, meta, tta=tta, batch_size=batch_size, progress=progress)
    frame, faces = pred.frame, None
    if has_stack(ensemble.source):  # notebook 05's face stage: faces found, cropped, stacked with the image model
        frame, faces = stacked_frame(ensemble, meta, pred, test_dir, progress=progress)
    seconds = time.perf_counter() - t0
    config_yaml = ensemble.source / "config.yaml"
    record = {
        "models_run": str(ensemble.source), "models": ensemble.names, "image_size": ensemble.image_size, "tta": tta,
        "thresholds": ensemble.thresholds, "fallback_rows": sorted(pred.failed), "test_dir": str(Path(test_dir)),
        "images_not_in_meta": unlisted,
        "face_stage": faces, "run_config": yaml.safe_load(config_yaml.read_text()) if config_yaml.exists() else None,
    }
    with atomic_group():  # the three files are replaced together, or (a full disk) none is
        out = write_submission(frame, out, probabilities=probabilities)
        record_path = atomic_write_text(beside(out, "config.yaml"),
                                        yaml.safe_dump(record, sort_keys=False))
    return {**check_submission(out, meta_path), "record": str(record_path), "models_run": str(ensemble.source),
            "models": len(ensemble.models), "tta": tta,
            "fallback_rows": len(pred.failed), "images_not_in_meta": len(unlisted), **({"face_stage": faces} if faces else {}), "seconds": round(seconds, 1),
            "images_per_second": round(len(meta) / max(seconds, 1e-9), 1)}


def stacked_frame(ensemble: Ensemble, meta: pd.DataFrame, pred, test_dir, *, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """The image model's answers replaced by the run's stack (image model, face models, people features);
    the image model's probabilities stay beside them (`p_image_*`), unreadable rows keep the fallback."""
    fallback = pred.frame["fallback"].to_numpy(bool)
    image_probs = pred.frame[["p_mask", "p_distancing"]].to_numpy(float)
    probs, faces = predict_stack(load_stack(ensemble.source), meta, image_probs, ~fallback, test_dir, progress=progress)
    frame = answer_frame(ensemble, meta, probs, fallback)
    frame.insert(4, "p_image_mask", image_probs[:, 0])
    frame.insert(5, "p_image_distancing", image_probs[:, 1])
    return frame, faces
