"""The truth of a synthetic split: its `scenes.jsonl`, one scene record per photo (the generator's people,
their mask states and boxes, and the photo's labels). Real data has none; readers get None there."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..core.labels import HEADS


def read_scenes(data_dir: str | Path, split: str = "train") -> pd.DataFrame | None:
    """One row per photo of `split`: image_id, mask, distancing (the true labels, blank or not in the
    label file), people (count), mask_state ("proper", the one other state, or "mixed") and the scene
    record itself; None for data without `scenes.jsonl`. A malformed line is an error naming it."""
    path = Path(data_dir) / split / "scenes.jsonl"
    if not path.exists():
        return None
    rows = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            try:
                r = json.loads(line)
                people = r["scene"]["people"]
                offenders = sorted({p["mask"] for p in people if p["mask"] != "proper"})
                rows.append({"image_id": str(r["image_id"]), **{h: int(r[h]) for h in HEADS}, "people": len(people),
                             "mask_state": "proper" if not offenders else offenders[0] if len(offenders) == 1 else "mixed",
                             "scene": r["scene"]})
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: line {n}: not a scene record with image_id, mask, distancing and "
                                 f"scene.people ({type(exc).__name__}: {exc})") from None
    return pd.DataFrame(rows, columns=["image_id", *HEADS, "people", "mask_state", "scene"])
