"""Splits a strong competitor would trust: stratified on the joint (mask, distancing) label with
blanks as their own categories, grouped so near-duplicate images stay in one fold, seeded.

The folds come from scikit-learn's StratifiedGroupKFold with `shuffle=False`, whose greedy
assignment is the same in every scikit-learn from 1.0 on; the seed enters as a random order of the
groups. Its own `shuffle=True` is not used: before scikit-learn 1.8 it shuffled the groups' class
counts without their group ids, so the folds were stratified on the wrong rows (the 1.6 and 1.7 that
Colab and Kaggle ship split the official label pattern unevenly; scikit-learn PR #32540, issue
#32478, "Fix shuffle behaviour in StratifiedGroupKFold", 1.8.0 changelog).
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
    """Fold number (0..n_splits-1) per row: stratified on the joint label, every group of rows (near-
    duplicates) in one fold, the same folds for the same seed on every supported scikit-learn.

    StratifiedGroupKFold (unshuffled) hands the groups to folds greedily, the most lopsided groups
    first and equal ones in the order of their ids; renaming the groups by a seeded permutation makes
    that order random (what its shuffle does correctly only from scikit-learn 1.8 on)."""
    strata = stratify_key(df).to_numpy()
    groups = np.arange(len(df)) if groups is None else np.asarray(groups)
    if len(groups) != len(df):
        raise ValueError(f"{len(groups)} group ids for {len(df)} rows")
    if len(df) < n_splits:
        raise ValueError(f"{len(df)} rows cannot make {n_splits} folds")
    _, group_index = np.unique(groups, return_inverse=True)
    n_groups = int(group_index.max()) + 1
    if n_groups < n_splits:
        raise ValueError(f"{n_groups} groups of near-duplicates cannot make {n_splits} folds (a group never spans two)")
    shuffled_ids = np.random.default_rng(seed).permutation(n_groups)[group_index.ravel()]
    folds = np.full(len(df), -1, dtype=int)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=False)
    for k, (_, val_idx) in enumerate(splitter.split(np.zeros(len(df)), strata, shuffled_ids)):
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
