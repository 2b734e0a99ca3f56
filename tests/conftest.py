"""Shared test set-up: offline, quiet TensorFlow, CPU only, reproducible."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ["FIVEK_OFFLINE"] = "1"  # no test may touch the network: downloads fail fast with a clear error
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# a copy of ../shared/data/zalo/train_meta.csv (the official label file) ships with the package
REAL_META = Path(__file__).resolve().parents[1] / "fivek_utils" / "resources" / "zalo_train_meta.csv"


@pytest.fixture(scope="session")
def real_meta_path() -> Path:
    """The official training label file (a copy ships in fivek_utils/resources)."""
    if not REAL_META.exists():
        pytest.skip(f"official label file not found at {REAL_META}")
    return REAL_META


# --- shared helpers ---------------------------------------------------------------------------
from fivek_utils.models import tiny_backbone  # noqa: E402,F401  (the learning tests' backbone)


def write_portrait_dataset(root: Path, n: int, seed: int = 0, *, shuffle_labels: bool = False) -> Path:
    """An easy synthetic set in the official layout: one person per photo, the head about half the
    frame, mask worn properly or not at all (half each); official blank rates; the meta rows in a
    random order. `shuffle_labels` permutes the label rows against the images (the negative control)."""
    import numpy as np
    import pandas as pd

    from fivek_utils import synth

    rng = np.random.default_rng(seed)
    images = root / "train" / "images"
    images.mkdir(parents=True)
    rows = []
    for i in range(n):
        mask = int(rng.random() < 0.5)
        person = synth.sample_person(rng, "proper" if mask else "none", child_rate=0.0)
        person.x, person.z = float(rng.uniform(-0.08, 0.08)), 1.5
        size, head = int(rng.integers(96, 160)), rng.uniform(0.4, 0.55)
        focal = head * size * person.z / (synth.HEAD_H * person.height)
        horizon = rng.uniform(0.05, 0.15) * size - (1.6 - person.height) * focal / person.z
        scene = synth.Scene(size, size, focal, horizon, 1.6, synth.sample_background(rng, size, size, 3.0), [person],
                            **synth.sample_photo(rng))
        synth.render_scene(scene).save(images / f"{i + 1}.jpg", quality=90)
        rows.append({"image_id": i + 1, "fname": f"{i + 1}.jpg", "mask": mask, "distancing": 1, "5k": mask})
    meta = pd.DataFrame(rows)
    if shuffle_labels:
        meta[["mask", "distancing", "5k"]] = meta[["mask", "distancing", "5k"]].to_numpy()[rng.permutation(n)]
    meta = synth.blank_labels(meta, rng).iloc[rng.permutation(n)]  # rows not in image order
    meta.to_csv(root / "train" / "train_meta.csv", index=False)
    return root
