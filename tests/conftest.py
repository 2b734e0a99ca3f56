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
