"""Where the model fails: its most confident mistakes per head, and, on the synthetic data (whose
`scenes.jsonl` holds the truth of every photo), accuracy by people count, face size and mask state.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.labels import HEADS

FACE_BINS = (0, 8, 12, 16, 24, 10_000)  # smallest face per photo, pixels at the training size
FACE_LABELS = ("< 8 px", "8-12 px", "12-16 px", "16-24 px", ">= 24 px")


def prediction_table(df: pd.DataFrame, labels: np.ndarray, probs: np.ndarray, thresholds: dict) -> pd.DataFrame:
    """One row per image: per head the label (NaN when blank), probability, decision at the
    head's threshold and whether it was right (NaN when the label is blank)."""
    out = df[["image_id", "fname"]].reset_index(drop=True).copy()
    for i, h in enumerate(HEADS):
        known = labels[:, i] >= 0
        decision = (probs[:, i] >= thresholds.get(h, 0.5)).astype(int)
        out[h] = np.where(known, labels[:, i], np.nan)
        out[f"p_{h}"] = probs[:, i]
        out[f"pred_{h}"] = decision
        out[f"correct_{h}"] = np.where(known, decision == labels[:, i], np.nan)
    return out


def confident_mistakes(table: pd.DataFrame, head: str, k: int = 8) -> pd.DataFrame:
    """The k wrong answers of `head` that the model was surest of (probability farthest from the
    true label), most confident first."""
    wrong = table[table[f"correct_{head}"] == 0]
    miss = (wrong[f"p_{head}"] - wrong[head]).abs()
    return wrong.assign(error=miss).sort_values("error", ascending=False).head(k)


def error_breakdown(table: pd.DataFrame, scenes: pd.DataFrame, image_size: int) -> pd.DataFrame:
    """Accuracy of each head by people count, smallest face (pixels after the letterbox to
    `image_size`) and mask state; columns factor, group, head, n, accuracy and `majority_accuracy`,
    what answering the group's more common label everywhere would score (within a mask state the mask
    label is nearly constant, so an accuracy of 1.0 there can be a constant answer)."""
    from ..data.synth import face_heights

    merged = table.assign(image_id=table["image_id"].astype(str)).merge(scenes, on="image_id", how="inner",
                                                                         suffixes=("", "_scene"))
    smallest = merged["scene"].map(lambda s: min(face_heights(s, image_size)))
    merged["face"] = pd.cut(smallest, FACE_BINS, labels=FACE_LABELS, right=False)
    merged["people"] = merged["people"].astype(str)
    rows = []
    for factor in ("people", "face", "mask_state"):
        for group, part in merged.groupby(factor, observed=True, sort=True):
            for h in HEADS:
                known = part[f"correct_{h}"].dropna()
                if len(known):
                    share = float(part.loc[known.index, h].mean())  # of label 1 among the known rows
                    rows.append({"factor": factor, "group": str(group), "head": h, "n": len(known),
                                 "accuracy": float(known.mean()), "majority_accuracy": max(share, 1.0 - share)})
    return pd.DataFrame(rows)


def plot_error_breakdown(breakdown: pd.DataFrame, name: str | None = None, title: str = ""):
    """Bars of accuracy per head for each factor of `error_breakdown`, with the row counts; a black tick on
    each bar marks what answering the group's more common label everywhere would score."""
    import matplotlib.pyplot as plt

    from ..core.plots import save_figure

    factors = [("people", "people in the photo"), ("face", "smallest face (px, as trained)"), ("mask_state", "mask state")]
    order = {"mask_state": ["proper", "below_nose", "chin", "none", "mixed"], "face": list(FACE_LABELS)}
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), sharey=True)
    for ax, (factor, label) in zip(axes, factors):
        part = breakdown[breakdown["factor"] == factor]
        groups = [g for g in order.get(factor, sorted(part["group"].unique())) if g in set(part["group"])]
        x = np.arange(len(groups))
        for k, (h, colour) in enumerate(zip(HEADS, ("#2a9d8f", "#e9c46a"))):
            rows = part[part["head"] == h].set_index("group").reindex(groups)
            bars = ax.bar(x + (k - 0.5) * 0.38, rows["accuracy"].fillna(0), 0.38, color=colour, label=h)
            ax.scatter(x + (k - 0.5) * 0.38, rows["majority_accuracy"], marker="_", s=160, color="black", zorder=3,
                       label="majority answer" if k == 0 else None)
            for bar, n in zip(bars, rows["n"]):
                if pd.notna(n):
                    ax.annotate(f"{int(n)}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                                va="bottom", fontsize=7)
        ax.set_xticks(x, groups, rotation=20)
        ax.set_xlabel(label)
        ax.set_ylim(0, 1.08)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    axes[0].set_ylabel("accuracy (rows with the label known)")
    axes[0].legend(loc="lower left")
    fig.suptitle(title or "where the model fails (numbers: rows; black ticks: the group's majority answer)")
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_mistakes(images: np.ndarray, table: pd.DataFrame, k: int = 8, name: str | None = None, title: str = ""):
    """The most confident mistakes of each head as one gallery: a row per head, the label and the
    model's probability under each image."""
    from ..core.plots import plot_gallery

    picks, titles = [], []
    for h in HEADS:
        worst = confident_mistakes(table, h, k)
        picks += list(worst.index)
        titles += [f"{h}={int(r[h])} p={r[f'p_{h}']:.2f}" for _, r in worst.iterrows()]
    if not picks:
        return None
    return plot_gallery(images[picks], titles, ncols=k, name=name,
                        suptitle=title or "most confident mistakes (label, predicted probability)")
