"""What the face stage saw: the photos it answered wrong with the faces it found drawn on them, each
face's P(masked) beside its box and the face that decided the bag outlined (the image's P(mask = 1)
is the product over its faces, so the least masked-looking face decides it). A reader tells a missed
face (no box where a face is) from a face answered wrong (a box with a low or high P)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd

from ..data.crops import ordered_faces
from ..data.faces import Detections
from .error_analysis import confident_mistakes
from .faces import show_photo


def plot_face_mistakes(paths: Sequence[str | os.PathLike], detections: Detections, crop_probs: np.ndarray,
                       counts: np.ndarray, table: pd.DataFrame, *, head: str = "mask", k: int = 8,
                       max_faces: int | None = None, ncols: int = 4, side: int = 360, name: str | None = None,
                       title: str = ""):
    """The `k` most confident mistakes of `head` in `table` (`prediction_table` rows, in the order of
    `paths`), each photo with its faces: boxes coloured by P(masked) (red 0 ... green 1), the deciding
    face drawn thicker. `crop_probs` and `counts` are the face model's per-crop answers in crop order."""
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    from ..core.plots import image_grid, save_figure

    worst = confident_mistakes(table, head, k)
    if not len(worst):
        return None
    starts = np.concatenate([[0], np.cumsum(counts)])
    cmap = colormaps["RdYlGn"]
    fig, axes = image_grid(len(worst), ncols, (3.4, 3.2))
    for ax, (row, r) in zip(axes, worst.iterrows()):
        fname = r["fname"]
        record = detections[fname]
        faces = ordered_faces(record.faces, max_faces)
        probs = crop_probs[starts[row]: starts[row + 1]]
        scale = show_photo(ax, paths[row], fname, record, side)
        if scale is None:
            continue
        known = len(probs) == len(faces) and np.isfinite(probs).all()
        decider = int(np.argmin(probs)) if known and len(probs) else -1
        for j, f in enumerate(faces):
            x0, y0, x1, y1 = (v * scale for v in f.box)
            colour = cmap(float(probs[j])) if known else "#ffd000"
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=3.0 if j == decider else 1.2))
            if known:
                ax.text(x0, y0 - 1, f"{probs[j]:.2f}", color=colour, fontsize=6, va="bottom",
                        fontweight="bold" if j == decider else "normal")
        found = f"{len(faces)} face(s)" if faces else "no face found"
        ax.set_title(f"{fname}: {head}={int(r[head])}, p={r[f'p_{head}']:.2f}\n{found}", fontsize=7)
    fig.suptitle(title or f"most confident {head} mistakes and the faces seen (P(masked) per face; thick: deciding face)",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, name)
    return fig
