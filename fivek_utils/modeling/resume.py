"""Exact resumption: the per-epoch backup of an interrupted fit and the log and best record made
to agree with it.

An epoch ends with three writes, in this order (`training.fit_resumable`):

1. the log row (`CSVLogger`, appended to `<part>_log.csv`);
2. the backup (`EpochBackup`): the weights with the optimizer state, then its record
   `state.json` naming them; renaming the record into place is the moment the epoch counts;
3. the best checkpoint (`training.BestCheckpoint`), when the epoch improved on it.

A kill can land in any of them. On resume, the backup says which epoch to start from, and:
- log rows of that epoch or later (and a row cut off mid-line) were written before the backup
  they belong to and are dropped (`prune_log`): that epoch is trained and logged again, once;
- the best checkpoint is never ahead of the backup (it is written after it), and if the kill
  came between the backup and the best checkpoint, the restored weights are the last epoch's,
  so the best checkpoint catches up from them and that epoch's logged row
  (`BestCheckpoint.catch_up`).

Keras' own `BackupAndRestore` is not used because it is not kill-safe: it rewrites its weights
file in place and then its epoch record, so a kill between the two restores one epoch's weights
under the previous epoch's number (that epoch is trained twice), and a kill while the record is
rewritten leaves JSON it cannot read, so the run can never resume. Here every file is written
beside its target and renamed into place (`core.io`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras

from ..core.io import atomic_write_json, atomic_write_text, save_keras

STATE = "state.json"


class EpochBackup(keras.callbacks.Callback):
    """Back up the model (weights and optimizer state) at every epoch end, and the state of an
    `EarlyStopping` given to it (patience counter, best value, whether it stopped).

    Must come after the log and early stopping in the callback list, and before the best
    checkpoint. `restore` (before `fit`) loads the last backup and returns the epoch to resume at.
    """

    def __init__(self, folder: str | os.PathLike, early_stopping: keras.callbacks.EarlyStopping | None = None):
        super().__init__()
        self.folder = Path(folder)
        self.early_stopping = early_stopping
        self.stopped = False  # the restored run had stopped early
        self._restored_es: dict | None = None

    # --- restore --------------------------------------------------------------------------
    def read_state(self) -> dict | None:
        try:
            return json.loads((self.folder / STATE).read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:  # never happens with atomic writes; say which file if it does
            raise ValueError(f"{self.folder / STATE} is not readable JSON ({exc}); delete {self.folder} to restart "
                             "this part from its first epoch") from exc

    def restore(self, model: keras.Model) -> int | None:
        """Load the last backup into `model`; return the epoch to resume at (None: no backup)."""
        state = self.read_state()
        self._remove_unnamed(state)
        if state is None:
            return None
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # so its saved state loads too
        model.load_weights(self.folder / state["weights"])
        self.stopped = bool(state.get("stopped"))
        self._restored_es = state.get("early_stopping")
        return int(state["epoch"])

    def on_train_begin(self, logs=None):
        es = self.early_stopping
        if es is not None and self._restored_es:  # EarlyStopping.on_train_begin (before us) reset them
            es.wait = int(self._restored_es["wait"])
            es.best = float(self._restored_es["best"])
            es.best_epoch = int(self._restored_es.get("best_epoch", 0))

    # --- save -------------------------------------------------------------------------------
    def on_epoch_end(self, epoch, logs=None):
        name = f"epoch{epoch + 1:04d}.weights.h5"
        save_keras(self.model, self.folder / name)  # written beside, renamed into place
        state = {"epoch": epoch + 1, "weights": name, "stopped": bool(getattr(self.model, "stop_training", False))}
        es = self.early_stopping
        if es is not None and es.best is not None:
            state["early_stopping"] = {"wait": int(es.wait), "best": float(es.best), "best_epoch": int(es.best_epoch)}
        atomic_write_json(self.folder / STATE, state)  # the commit: from here on, this epoch is done
        self._remove_unnamed(state)

    def _remove_unnamed(self, state: dict | None) -> None:
        """Delete weights the record does not name (the previous epoch's, or a save cut short)."""
        if not self.folder.is_dir():
            return
        keep = {STATE, state["weights"]} if state else {STATE}
        for p in self.folder.iterdir():
            if p.name not in keep and p.name.endswith(".weights.h5"):
                p.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the backup (its part is finished and saved)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def prune_log(path: str | os.PathLike, start_epoch: int) -> int:
    """Keep the header and the complete rows of epochs before `start_epoch` in a CSV log; return
    how many rows were dropped (rows of epochs the resumed fit trains again, a row cut short)."""
    path = Path(path)
    if not path.exists():
        return 0
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if not lines:
        return 0
    header = lines[0] if lines[0].endswith("\n") and lines[0].startswith("epoch") else None
    if header is None:  # not even a whole header: start the log afresh
        path.unlink()
        return len(lines)
    kept = [header]
    for line in lines[1:]:
        first = line.split(",", 1)[0]
        if line.endswith("\n") and first.isdigit() and int(first) < start_epoch:
            kept.append(line)
    if len(kept) == len(lines):
        return 0
    atomic_write_text(path, "".join(kept))
    return len(lines) - len(kept)
