"""A real resumable training run that can die at a chosen moment of an epoch's end.

    python tests/resume_child.py RUN_DIR POINT N

trains `fit_resumable` for EPOCHS epochs into RUN_DIR and, with POINT other than "none", calls
`os._exit(KILLED)` (no clean-up, like SIGKILL) at the N-th time this process reaches POINT:

    log             the log row of an epoch is cut off mid-line
    backup-weights  the backup's weights are in place, its record (state.json) not yet
    backup-done     the backup is complete, the best checkpoint not yet run
    best            best.keras is in place, best.json not yet

`tests/test_resume.py` imports `train` to finish the run in its own process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

EPOCHS, BATCH, N_TRAIN = 4, 8, 32
STEPS = N_TRAIN // BATCH
KILLED = 86


def data(n: int, seed: int):
    """Images whose mask label is their colour (a little noise, so the metrics move)."""
    import numpy as np
    import pandas as pd

    from fivek_utils.modeling.training import TrainingData

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (n, 2)).astype("float32")
    labels[1::4, 1] = -1  # blanks
    colour = np.where(labels[:, :1] == 1, [200, 40, 40], [40, 40, 200])
    images = (colour[:, None, None, :] + rng.normal(0, 40, (n, 16, 16, 3))).clip(0, 255).astype(np.uint8)
    return TrainingData(pd.DataFrame({"image_id": np.arange(n), "fname": [f"{i}.jpg" for i in range(n)]}), images, labels)


def train(run_dir: Path):
    """The same run in every process: returns (model, log)."""
    import keras

    from fivek_utils.modeling.backbones import tiny_backbone
    from fivek_utils.modeling.models import build_model
    from fivek_utils.modeling.pipeline import make_train_dataset
    from fivek_utils.modeling.training import (
        BestCheckpoint,
        compile_model,
        fit_resumable,
        make_optimizer,
        warmup_cosine,
    )

    keras.utils.set_random_seed(0)
    train_data, val = data(N_TRAIN, 0), data(16, 1)
    model = build_model(tiny_backbone(width=8), None, 0.1)
    compile_model(model, make_optimizer(warmup_cosine(1e-2, STEPS * EPOCHS, 1), 1e-4))
    ds = make_train_dataset(train_data.images, train_data.labels, BATCH, seed=0)
    log = fit_resumable(model, ds, val, name="part", run_dir=Path(run_dir), epochs=EPOCHS, images_per_epoch=N_TRAIN,
                        best=BestCheckpoint(Path(run_dir) / "best.keras"), patience=10, batch_size=16)
    return model, log, val


def die_at(point: str, n: int) -> None:
    """Arrange for this process to end abruptly the n-th time it reaches `point`."""
    import keras

    seen = {"count": 0}

    def reached() -> None:
        seen["count"] += 1
        if seen["count"] == n:
            os._exit(KILLED)

    if point == "log":
        def cut_row(self, epoch, logs=None):
            seen["count"] += 1
            if seen["count"] == n:
                with open(self.filename, "a") as fh:
                    fh.write(f"{epoch},0.31")  # half a row, no newline
                os._exit(KILLED)
            original(self, epoch, logs)

        original = keras.callbacks.CSVLogger.on_epoch_end
        keras.callbacks.CSVLogger.on_epoch_end = cut_row
        return
    suffix = {"backup-weights": ".weights.h5", "backup-done": "state.json", "best": "best.keras"}[point]
    replace = os.replace

    def replace_then_maybe_die(src, dst, *args, **kwargs):
        replace(src, dst, *args, **kwargs)
        if str(dst).endswith(suffix) and (point == "best" or Path(dst).parent.name.endswith("_backup")):
            reached()

    os.replace = replace_then_maybe_die


if __name__ == "__main__":
    run_dir, point, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    if point != "none":
        die_at(point, n)
    model, _log, _val = train(run_dir)
    print(f"iterations {int(model.optimizer.iterations.numpy())}")
