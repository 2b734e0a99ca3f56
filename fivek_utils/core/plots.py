"""Figures people would rather see than read; each `plot_*` returns the figure and, given a
name, saves it under reports/figures/.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .config import FIGURES_DIR


def save_figure(fig, name: str | None, folder: Path | None = None) -> Path | None:
    """Save `fig` as reports/figures/<name>.png (atomically) and return the path."""
    if not name:
        return None
    from .io import atomic_path

    path = Path(folder or FIGURES_DIR) / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return path


def plot_label_balance(frames: dict[str, pd.DataFrame], name: str | None = None):
    """Counts of 1 / 0 / blank per label for one or more label tables (side by side)."""
    cols = ("mask", "distancing", "5k_stated")
    fig, axes = plt.subplots(1, len(frames), figsize=(5.2 * len(frames), 3.6), squeeze=False)
    for ax, (title, df) in zip(axes[0], frames.items()):
        counts = pd.DataFrame({
            c.replace("_stated", ""): {"1": int((df[c] == 1).sum()), "0": int((df[c] == 0).sum()), "blank": int(df[c].isna().sum())}
            for c in cols
        }).T
        (counts / len(df) * 100).plot.bar(ax=ax, color=["#2a9d8f", "#e76f51", "#bbbbbb"], rot=0)
        ax.set_title(f"{title} ({len(df)} rows)")
        ax.set_ylabel("% of rows")
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_cooccurrence(df: pd.DataFrame, title: str = "", name: str | None = None):
    """mask x distancing table with blanks as their own row/column."""
    def code(s):
        return s.astype("Float64").map(lambda v: "blank" if pd.isna(v) else str(int(v)))

    table = pd.crosstab(code(df["mask"]).rename("mask"), code(df["distancing"]).rename("distancing"))
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    ax.imshow(table.to_numpy(), cmap="Blues")
    ax.set_xticks(range(table.shape[1]), table.columns)
    ax.set_yticks(range(table.shape[0]), table.index)
    ax.set_xlabel("distancing")
    ax.set_ylabel("mask")
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            ax.text(j, i, int(table.iat[i, j]), ha="center", va="center", color="black")
    ax.set_title(title or "mask x distancing")
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_image_sizes(table: pd.DataFrame, name: str | None = None):
    """Width x height scatter and aspect-ratio histogram."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.scatter(table["width"], table["height"], s=6, alpha=0.4)
    a.set_xlabel("width (px)")
    a.set_ylabel("height (px)")
    a.set_title("image sizes")
    b.hist(table["width"] / table["height"], bins=30, color="#457b9d")
    b.set_xlabel("aspect ratio (w / h)")
    b.set_title("aspect ratios")
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def image_grid(n: int, ncols: int, cell: tuple[float, float]):
    """A figure of `n` image cells, `ncols` to a row, each `cell` inches (width, height), axes off;
    returns the figure and its axes in reading order."""
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell[0] * ncols, cell[1] * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    return fig, axes.ravel()


def plot_gallery(images: np.ndarray, titles: list[str], ncols: int = 8, name: str | None = None, suptitle: str = ""):
    """A grid of images with short titles."""
    fig, axes = image_grid(len(images), ncols, (1.9, 2.1))
    for ax, img, t in zip(axes, images, titles):
        ax.imshow(img)
        ax.set_title(t, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_history(history: pd.DataFrame, name: str | None = None, title: str = ""):
    """Training loss and validation F1/AUC per epoch; phases or stages shaded."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    x = history["epoch"] if "epoch" in history else np.arange(1, len(history) + 1)
    for col in ("loss", "mask_loss", "distancing_loss"):
        if col in history:
            a.plot(x, history[col], marker="o", ms=3, label=col)
    a.set_xlabel("epoch")
    a.set_title("training loss")
    a.legend(fontsize=8)
    for col in ("val_f1_mask", "val_f1_distancing", "val_f1_5k", "val_auc_mask", "val_auc_distancing", "val_auc_5k"):
        if col in history:
            b.plot(x, history[col], marker="o", ms=3, ls="-" if "f1" in col else "--", label=col)
    if "val_f1_5k_always_yes" in history:  # the bar an F1 must clear; AUC's is 0.5
        b.axhline(float(history["val_f1_5k_always_yes"].iloc[-1]), color="grey", ls=":", lw=1, label="5K F1 always-yes")
    b.axhline(0.5, color="grey", ls="-.", lw=0.7, label="AUC chance")
    b.set_ylim(0, 1.02)
    b.set_xlabel("epoch")
    b.set_title("validation")
    b.legend(fontsize=8)
    group = "stage" if "stage" in history else "phase" if "phase" in history else None
    if group:
        for ax in (a, b):
            for i, (_, part) in enumerate(history.groupby(group, sort=False)):
                if i % 2:
                    ax.axvspan(part["epoch"].min() - 0.5, part["epoch"].max() + 0.5, color="grey", alpha=0.12)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_confusions(table: pd.DataFrame, name: str | None = None, title: str = ""):
    """Confusion matrices of mask, distancing and 5K from an `evaluate` table."""
    fig, axes = plt.subplots(1, len(table), figsize=(3.3 * len(table), 3.1))
    for ax, (target, row) in zip(np.atleast_1d(axes), table.iterrows()):
        cm = np.array([[row["tn"], row["fp"]], [row["fn"], row["tp"]]], dtype=float)
        ax.imshow(cm, cmap="Greens")
        for i in range(2):
            for j in range(2):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center")
        ax.set_xticks([0, 1], ["pred 0", "pred 1"])
        ax.set_yticks([0, 1], ["true 0", "true 1"])
        yes = f" (always-yes {row['f1_always_yes']:.3f})" if "f1_always_yes" in row else ""
        ax.set_title(f"{target}  F1={row['f1']:.3f}{yes}", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_f1_thresholds(curves: pd.DataFrame, thresholds: dict | None = None, name: str | None = None, title: str = ""):
    """F1 against the decision threshold per target, each beside its always-"yes" F1 (dashed, when
    `curves` has `f1_always_yes`); the heads' chosen thresholds dotted, and the tuned 5K pair (a
    threshold per head, so off the shared-threshold 5K curve) marked with its F1."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    colors = {}
    for target, part in curves.groupby("target", sort=False):
        (line,) = ax.plot(part["threshold"], part["f1"], label=target)
        colors[target] = line.get_color()
        if "f1_always_yes" in part:
            ax.axhline(float(part["f1_always_yes"].iloc[0]), color=colors[target], ls="--", lw=0.8, alpha=0.7)
    if "f1_always_yes" in curves:
        ax.plot([], [], color="grey", ls="--", lw=0.8, label='always "yes"')
    for key in ("mask", "distancing"):
        if thresholds and key in thresholds and key in colors:
            ax.axvline(thresholds[key], color=colors[key], ls=":", lw=1)
    t = thresholds or {}
    if {"5k_mask", "5k_distancing", "f1_5K"} <= t.keys():
        ax.plot([t["5k_mask"]], [t["f1_5K"]], marker="*", ms=11, ls="none", color=colors.get("5K", "k"), markeredgecolor="k",
                label=f"tuned 5K pair (mask {t['5k_mask']:.2f}, dist. {t['5k_distancing']:.2f}): F1 {t['f1_5K']:.3f}")
    ax.set_xlabel("threshold (5K curve: the same on both heads; the star at its mask threshold)")
    ax.set_ylabel("F1")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title or "F1 against threshold")
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_heatmaps(images: np.ndarray, maps: dict[str, np.ndarray], titles: list[str], name: str | None = None):
    """Grad-CAM maps over their images: one row per head."""
    n = len(images)
    fig, axes = plt.subplots(len(maps) + 1, n, figsize=(2.0 * n, 2.1 * (len(maps) + 1)), squeeze=False)
    for j in range(n):
        axes[0, j].imshow(images[j])
        axes[0, j].set_title(titles[j], fontsize=7)
        for i, (head, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(images[j])
            axes[i, j].imshow(m[j], cmap="jet", alpha=0.45, extent=(0, images.shape[2], images.shape[1], 0))
            if j == 0:
                axes[i, j].set_ylabel(head)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, name)
    return fig
