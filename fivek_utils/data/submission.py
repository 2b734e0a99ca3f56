"""The submission file exactly as judged, written atomically, and a checker for it.

Format: header ``image_id,fname,5K`` (capital K), one row per row of the test meta file in
its order, 0/1 integers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..core.io import atomic_write_csv
from .meta import read_csv_strict

SUBMISSION_COLUMNS = ["image_id", "fname", "5K"]


class SubmissionError(ValueError):
    """A submission that would be rejected or mis-scored; the message says why."""


def beside(path: str | os.PathLike, what: str) -> Path:
    """A file written beside a submission: `beside(".../submission.csv", "probs.csv")` is
    `.../submission_probs.csv` (the probabilities; "config.yaml": what made it)."""
    path = Path(path)
    return path.with_name(f"{path.stem}_{what}")


def write_submission(prediction: pd.DataFrame, path: str | os.PathLike, *, probabilities: bool = True) -> Path:
    """Write `submission.csv` (and `<stem>_probs.csv` beside it) atomically."""
    path = Path(path)
    sub = prediction[SUBMISSION_COLUMNS].copy()
    sub["5K"] = sub["5K"].astype(int)
    atomic_write_csv(path, sub)
    if probabilities:
        atomic_write_csv(beside(path, "probs.csv"), prediction)
    return path


def check_submission(path: str | os.PathLike, meta_path: str | os.PathLike) -> dict:
    """Validate a submission against its test meta file; raise `SubmissionError` on any problem.

    Checks the header, that ids and file names match the meta file row for row (no missing,
    extra or duplicated rows) and that every 5K value is 0 or 1. Returns a short summary.
    """
    path, meta_path = Path(path), Path(meta_path)
    for p in (path, meta_path):
        if not p.exists():
            raise SubmissionError(f"{p} does not exist")
    sub = read_csv_strict(path, SubmissionError, exact=True)  # as a judge's pandas reads it: no line skipped or stripped
    meta = read_csv_strict(meta_path, SubmissionError)
    problems = []
    if list(sub.columns) != SUBMISSION_COLUMNS:
        raise SubmissionError(f"{path}: header is {list(sub.columns)}, expected {SUBMISSION_COLUMNS} (capital K)")
    for col in ("image_id", "fname"):
        if col not in meta.columns:
            raise SubmissionError(f"{meta_path}: no '{col}' column")
    key_sub = list(zip(sub["image_id"], sub["fname"]))
    key_meta = list(zip(meta["image_id"], meta["fname"]))
    missing = sorted(set(key_meta) - set(key_sub))
    extra = sorted(set(key_sub) - set(key_meta))
    dup = sub[sub.duplicated(["image_id", "fname"], keep=False)]
    if missing:
        problems.append(f"{len(missing)} test image(s) of the meta file have no row, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{len(extra)} row(s) are not in the meta file, e.g. {extra[:3]}")
    if len(dup):
        problems.append(f"{len(dup)} duplicated row(s), e.g. lines {[i + 2 for i in dup.index[:3]]}")
    bad = sub[~sub["5K"].isin(["0", "1"])]
    if len(bad):
        problems.append(f"{len(bad)} 5K value(s) are not 0/1, e.g. line {bad.index[0] + 2}: {bad['5K'].iloc[0]!r}")
    if not problems and key_sub != key_meta:
        problems.append("rows are not in the meta file's order")
    if problems:
        raise SubmissionError(f"{path} does not match {meta_path}:\n- " + "\n- ".join(problems))
    values = sub["5K"].astype(int)
    return {"file": str(path), "rows": len(sub), "positives": int(values.sum()), "positive_rate": round(float(values.mean()), 4) if len(sub) else 0.0}
