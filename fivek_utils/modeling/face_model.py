"""The face-crop mask model: P(this face is masked) from a small square crop, learned from the image
labels alone by multiple-instance learning.

No face carries a label; an image does: mask = 1 only if every face in it is masked. So each image is
a bag of its face crops, its P(mask = 1) is the product of its faces' probabilities (the AND of
independent faces), and the loss is the image label's cross-entropy on that product
(`losses.BagBinaryCrossentropy`, in log space). One unmasked face in a bag of masked ones is enough
to make the bag 0, and the gradient of a bag labelled 0 falls mostly on its least masked-looking
face. Rows with a blank mask and images without a detected face do not train it.

The face model itself (`build_face_model`) maps one crop to one logit; training batches whole bags
(`BagBatches`) and the bag loss sums each image's crops, so bags of any size share a batch and no
crop is padding.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import pandas as pd
from scipy.special import expit

from ..data.crops import FaceCrops
from .backbones import set_trainable
from .losses import BagBinaryCrossentropy
from .optim import make_optimizer, warmup_cosine
from .layers import ScheduledDropout
from .models import backbone_features, load_head_weights
from .catalog import FACE_BACKBONES
from .onet import ONET_BACKBONE, onet_backbone
from .retinaface_trunk import RETINAFACE_BACKBONE, retinaface_backbone

FACE_OUTPUT = "face_logit"


def build_face_model(backbone: str | keras.Model = "EfficientNetV2B0", weights: str | None = None,
                     dropout: float = 0.2, *, name: str | None = None) -> keras.Model:
    """A crop (float pixels in [0, 255], any square size) -> the logit of P(face masked).

    `backbone` and `weights` take what `build_model` takes (a keras.applications name with None,
    "imagenet", "imagenet21k", ... or a headless keras.Model of your own), or a face trunk whose weights
    ship inside a wheel: "mtcnn_onet" with "mtcnn" (MTCNN's face network, `modeling.onet`) or
    "retinaface_mobilenetv2" with "retinaface" (the detector's own trunk, `modeling.retinaface_trunk`).
    """
    inputs = keras.Input((None, None, 3), name="crop")
    if backbone == ONET_BACKBONE:
        features, label = onet_backbone(weights)(inputs), ONET_BACKBONE
    elif backbone == RETINAFACE_BACKBONE:
        features, label = retinaface_backbone(weights)(inputs), RETINAFACE_BACKBONE
    elif isinstance(backbone, keras.Model):
        features, label = backbone(inputs), backbone.name
    else:
        features, label = backbone_features(inputs, backbone, weights), backbone.lower()
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    x = ScheduledDropout(dropout, name="head_dropout")(x)
    logit = keras.layers.Dense(1, name=FACE_OUTPUT, dtype="float32")(x)  # float32: stable under mixed precision
    model = keras.Model(inputs, logit, name=name or f"fivek_face_{label}")
    return load_head_weights(model, weights) if isinstance(backbone, str) and backbone not in FACE_BACKBONES else model


def bag_model(face_model: keras.Model, *, flip: bool = True, shift: float = 0.06, color: float = 0.0) -> keras.Model:
    """The training wrapper: random flips and small shifts of every crop, and with `color` random
    brightness and contrast of that strength (street photos vary in light and camera far more than
    faces do; training only: the face model itself has no augmentation), then the face model's
    logit per crop."""
    crops = keras.Input((None, None, 3), name="crops")
    x = crops
    if flip:
        x = keras.layers.RandomFlip("horizontal", name="aug_flip")(x)
    if shift:
        x = keras.layers.RandomTranslation(shift, shift, fill_mode="nearest", name="aug_shift")(x)
    if color:
        x = keras.layers.RandomBrightness(color, value_range=(0, 255), name="aug_brightness")(x)
        x = keras.layers.RandomContrast(color, value_range=(0, 255), name="aug_contrast")(x)
    return keras.Model(crops, face_model(x), name="fivek_face_bags")


class BagBatches(keras.utils.PyDataset):
    """Training batches of whole bags, every one exactly `crops_per_batch` crops, so the train step is
    traced (or, under JAX, compiled) once: the images with a known mask label and at least one crop,
    each crop with [its image's label, its image's index in the batch] as the target (what
    `BagBinaryCrossentropy` reads).

    The bags are shuffled (seeded: one `BagBatches` is one epoch; `FaceTrainer` makes one per epoch, so
    the order never depends on when Keras prefetches) and packed in order, a bag going to the next batch
    when it does not fit; the rest of a batch is filled with copies of its own crops under a bag
    labelled blank (-1), which the loss leaves out. An epoch is one pass: every usable image trains
    exactly once, in as many batches as its packing takes (a few more or fewer between epochs). Its
    length does not grow with the largest bag: a photo of 100 faces makes a batch of 100 crops, not an
    epoch of many passes.
    """

    def __init__(self, crops: FaceCrops, labels: np.ndarray, crops_per_batch: int = 64, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.crops, self.rng = crops, np.random.default_rng(seed)
        self.labels = np.asarray(labels, dtype="float32")
        starts = np.concatenate([[0], np.cumsum(crops.counts)])
        self.usable = np.flatnonzero((self.labels >= 0) & (crops.counts > 0))
        self.members = {int(r): np.arange(starts[r], starts[r + 1]) for r in self.usable}
        self.n_bags = len(self.usable)
        largest = int(crops.counts[self.usable].max()) if self.n_bags else 1
        self.capacity = max(int(crops_per_batch), largest)
        self._plan()

    def _pack(self, order: np.ndarray) -> list[list[int]]:
        batches, current, load = [], [], 0
        for r in order:
            size = len(self.members[int(r)])
            if current and load + size > self.capacity:
                batches.append(current)
                current, load = [], 0
            current.append(int(r))
            load += size
        return batches + ([current] if current else [])

    def _plan(self) -> None:
        self.plan = self._pack(self.usable[self.rng.permutation(self.n_bags)]) if self.n_bags else []

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int):
        rows = self.plan[i]
        index = np.concatenate([self.members[r] for r in rows])
        bag = np.repeat(np.arange(len(rows)), [len(self.members[r]) for r in rows]).astype("float32")
        label = self.labels[rows][bag.astype(int)]
        pad = self.capacity - len(index)
        if pad:  # copies of this batch's crops, in a bag of their own with a blank label
            index = np.concatenate([index, index[np.arange(pad) % len(index)]])
            bag = np.concatenate([bag, np.full(pad, len(rows), "float32")])
            label = np.concatenate([label, np.full(pad, -1.0, "float32")])
        return self.crops.crops[index].astype("float32"), np.stack([label, bag], axis=1)


# --- prediction -------------------------------------------------------------------------------
def predict_faces(face_model: keras.Model | list[keras.Model], crops: np.ndarray, *, flip: bool = True,
                  batch_size: int = 128) -> np.ndarray:
    """P(face masked) per crop, averaged over the models given and (with `flip`) the mirrored crop.

    Crops are padded to whole batches, so every call of a model sees one batch shape (no retracing)."""
    models = face_model if isinstance(face_model, list) else [face_model]
    n = len(crops)
    if not n:
        return np.zeros(0)
    padded = np.concatenate([crops, np.zeros((-n % batch_size, *crops.shape[1:]), crops.dtype)]).astype("float32")
    views = [padded, padded[:, :, ::-1]] if flip else [padded]
    logits = [np.asarray(m.predict(v, batch_size=batch_size, verbose=0)).reshape(-1)[:n] for m in models for v in views]
    probs = np.mean([expit(z) for z in logits], axis=0)
    if not np.isfinite(probs).all():  # never read as "no face": that would hide a broken model
        raise ValueError(f"a face model gave {int((~np.isfinite(probs)).sum())} non-finite probabilities of {n} crops")
    return probs


def bag_probabilities(face_probs: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """P(image mask = 1) per image: the product of its faces' probabilities (crops in image order,
    `counts` per image); NaN for an image without a face."""
    counts = np.asarray(counts, dtype=int)
    owner = np.repeat(np.arange(len(counts)), counts)
    log_p = np.bincount(owner, weights=np.log(np.clip(face_probs, 1e-12, 1.0)), minlength=len(counts))
    return np.where(counts > 0, np.exp(log_p), np.nan)


# --- training -----------------------------------------------------------------------------------
class BagValidation(keras.callbacks.Callback):
    """Adds the validation bags' mask AUC (beside chance, 0.5) and loss to every epoch's log."""

    def __init__(self, face_model: keras.Model, crops: FaceCrops, labels: np.ndarray):
        super().__init__()
        self.face_model, self.crops, self.labels = face_model, crops, np.asarray(labels)

    def on_epoch_end(self, epoch, logs=None):
        from sklearn.metrics import roc_auc_score

        p = bag_probabilities(predict_faces(self.face_model, self.crops.crops, flip=False), self.crops.counts)
        known = (self.labels >= 0) & np.isfinite(p)
        y = self.labels[known]
        if logs is not None and len(np.unique(y)) == 2:
            logs["val_auc_mask"] = float(roc_auc_score(y, p[known]))
            q = np.clip(p[known], 1e-7, 1 - 1e-7)
            logs["val_loss"] = float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


class FaceTrainer:
    """Trains a face model afresh on one set of bags after another (the folds of a k-fold run) with one
    compiled train step: before each `fit` the model's weights go back to their initial values and the
    optimizer's state (step count, moments) to zero. Building and tracing an EfficientNet's train step
    costs more than a few epochs on a CPU, so the folds share it instead of each tracing its own.

    The warm-up + cosine schedule spans `epochs` x `steps_per_epoch` (the largest fold's, from one seeded
    packing; an epoch's own packing may take a batch or two more or fewer): a fold with fewer batches ends
    a few steps before the learning rate reaches zero, and steps past the end train at zero. The whole backbone trains
    (BatchNorm frozen when `freeze_batchnorm`, right for pretrained weights), AdamW.
    """

    def __init__(self, face_model: keras.Model, *, epochs: int = 6, lr: float = 2e-3, steps_per_epoch: int,
                 crops_per_batch: int = 64, weight_decay: float = 1e-5, warmup_epochs: float = 1.0,
                 freeze_batchnorm: bool = False, color: float = 0.0):
        self.face_model, self.epochs, self.crops_per_batch = face_model, epochs, crops_per_batch
        set_trainable(face_model, -1, freeze_batchnorm=freeze_batchnorm)
        self.bags = bag_model(face_model, color=color)
        steps = max(1, steps_per_epoch)
        schedule = warmup_cosine(lr, steps * epochs, round(warmup_epochs * steps))
        self.bags.compile(optimizer=make_optimizer(schedule, weight_decay), loss=BagBinaryCrossentropy())
        # the state every fold starts from: the model's variables (weights, BatchNorm statistics, the
        # augmentation and dropout layers' random-seed states) and the optimizer's (step count, moments
        # and, under mixed_float16, the loss scale, which must not be reset to 0)
        self.bags.optimizer.build(self.bags.trainable_variables)
        self.initial = [keras.ops.convert_to_numpy(v) for v in self.bags.variables]
        self.initial_optimizer = [keras.ops.convert_to_numpy(v) for v in self.bags.optimizer.variables]

    def _reset(self) -> None:
        for v, value in zip(self.bags.variables, self.initial):
            v.assign(value)
        for v, value in zip(self.bags.optimizer.variables, self.initial_optimizer):
            v.assign(value)

    def fit(self, crops: FaceCrops, labels: np.ndarray, *, seed: int = 0, val: tuple[FaceCrops, np.ndarray] | None = None,
            verbose: int = 2) -> pd.DataFrame:
        """Train from the initial weights on the bags of `crops` (one per image) against the images' mask
        labels (-1 = blank: not used); the per-epoch log, with the validation bags' mask AUC when `val`
        is given."""
        if BagBatches(crops, labels, self.crops_per_batch).n_bags == 0:
            raise ValueError("no image has both a known mask label and a face crop: nothing to train the face model on")
        self._reset()
        callbacks = [BagValidation(self.face_model, *val)] if val is not None else []
        t0 = time.time()
        logs: dict[str, list] = {}
        for epoch in range(self.epochs):  # one fit per epoch: its batches planned before it starts
            data = BagBatches(crops, labels, self.crops_per_batch, seed=[seed, epoch])
            t_epoch = time.time()
            history = self.bags.fit(data, initial_epoch=epoch, epochs=epoch + 1, callbacks=callbacks,
                                    verbose=0,  # its header would count "Epoch k/k": one line of ours instead
                                    shuffle=False)  # BagBatches shuffles, seeded; Keras would reorder its batches
            for k, v in history.history.items():
                logs.setdefault(k, []).extend(v)
            if verbose:
                print(epoch_line(epoch, self.epochs, {k: v[-1] for k, v in history.history.items()},
                                 time.time() - t_epoch), flush=True)
        if not all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in self.face_model.trainable_weights):
            raise ValueError(f"the face model diverged (non-finite weights after {self.epochs} epochs, losses "
                             f"{[round(v, 3) for v in logs.get('loss', [])]}): lower face_lr")
        log = pd.DataFrame(logs)
        log.insert(0, "epoch", np.arange(1, len(log) + 1))
        log["seconds"] = (time.time() - t0) / max(len(log), 1)
        return log


def epoch_line(epoch: int, epochs: int, logs: dict, seconds: float) -> str:
    """One line per face-model epoch: 'face epoch 3/8: loss 0.412, val_auc_mask 0.871 (chance 0.5), 12s'."""
    parts = [f"{k} {float(v):.4f}" + (" (chance 0.5)" if k.startswith("val_auc") else "") for k, v in logs.items()]
    return f"face epoch {epoch + 1}/{epochs}: {', '.join(parts)}, {seconds:.0f}s"


def bag_batches_per_epoch(crops: FaceCrops, labels: np.ndarray, crops_per_batch: int = 64) -> int:
    """How many batches `BagBatches` makes of these bags in an epoch (its seed-0 packing; other epochs'
    packings differ by a batch or two)."""
    return len(BagBatches(crops, labels, crops_per_batch))


def train_face_model(
    face_model: keras.Model,
    crops: FaceCrops,
    labels: np.ndarray,
    *,
    epochs: int = 6,
    lr: float = 2e-3,
    crops_per_batch: int = 64,
    weight_decay: float = 1e-5,
    warmup_epochs: float = 1.0,
    freeze_batchnorm: bool = False,
    seed: int = 0,
    val: tuple[FaceCrops, np.ndarray] | None = None,
    verbose: int = 2,
) -> pd.DataFrame:
    """Train `face_model` once on the bags of `crops` (a `FaceTrainer` of one fit); the per-epoch log."""
    trainer = FaceTrainer(face_model, epochs=epochs, lr=lr, steps_per_epoch=bag_batches_per_epoch(crops, labels, crops_per_batch),
                          crops_per_batch=crops_per_batch, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
                          freeze_batchnorm=freeze_batchnorm)
    return trainer.fit(crops, labels, seed=seed, val=val, verbose=verbose)
