"""Splits a strong competitor would trust: stratified on the joint (mask, distancing) label with
blanks as their own categories, grouped so near-duplicate images stay in one fold, seeded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from ..core.io import atomic_write_csv
from .images import duplicate_groups, perceptual_hashes
from .meta import stratify_key


def duplicate_group_ids(df: pd.DataFrame, *, max_distance: int = 4, progress: bool = True) -> np.ndarray:
    """Near-duplicate group per row (pHash within `max_distance` bits)."""
    return duplicate_groups(perceptual_hashes(df["path"].tolist(), progress=progress), max_distance)


def make_folds(df: pd.DataFrame, n_splits: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Fold number (0..n_splits-1) per row with scikit-learn's StratifiedGroupKFold."""
    strata = stratify_key(df).to_numpy()
    groups = np.arange(len(df)) if groups is None else np.asarray(groups)
    if len(df) < n_splits:
        raise ValueError(f"{len(df)} rows cannot make {n_splits} folds")
    folds = np.full(len(df), -1, dtype=int)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, val_idx) in enumerate(splitter.split(np.zeros(len(df)), strata, groups)):
        folds[val_idx] = k
    return folds


def holdout_split(df: pd.DataFrame, val_fraction: float, seed: int, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): one fold of round(1 / val_fraction) stratified group folds."""
    n_splits = max(2, round(1 / val_fraction))
    folds = make_folds(df, n_splits, seed, groups)
    return np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)


def save_folds(df: pd.DataFrame, folds: np.ndarray, groups: np.ndarray, path: str | os.PathLike) -> Path:
    """Write image_id, fname, fold, duplicate group and stratum per row (atomically)."""
    table = pd.DataFrame({
        "image_id": df["image_id"].to_numpy(),
        "fname": df["fname"].to_numpy(),
        "fold": folds,
        "group": groups,
        "stratum": stratify_key(df).to_numpy(),
    })
    return atomic_write_csv(path, table)


def fold_table(df: pd.DataFrame, folds: np.ndarray) -> pd.DataFrame:
    """Rows per fold and stratum: shows the stratification worked."""
    return pd.crosstab(pd.Series(folds, name="fold"), stratify_key(df).rename("mask|distancing").to_numpy())
