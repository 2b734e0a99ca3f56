"""An offline stand-in for the official EfficientNetV2 ImageNet-21k feature-vector SavedModels.

`export_automl_savedmodel` writes a TF2 SavedModel laid out like the google/automl TF-Hub /
Kaggle Models exports (`efficientnet_v2_imagenet21k_<v>/feature_vector`): a `tf.Module` whose
variables carry the automl checkpoint names (`efficientnetv2-b0/blocks_3/se/conv2d/kernel`, ...)
in execution order, exposed hub-style as `.variables` / `.trainable_variables`, and whose
`__call__(images, training=False)` returns the globally average-pooled features. The weights are
random (seeded), with non-trivial BatchNorm statistics.

The forward pass is written with raw TensorFlow ops, independently of `keras.applications`, so
converting it with `modeling.pretrained.convert.convert_savedmodel` is a real test of the name parsing,
the layer mapping and the input-range detection. It lives in the package, not only in the
tests, because the demo pipeline makes its own offline stand-in checkpoint with it (no internet
needed); such a checkpoint carries no pretrained knowledge.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["export_automl_savedmodel", "ensure_standin", "standin_problem", "automl_plan", "AUTOML_VARIANTS", "INPUT_TRANSFORMS", "CORRUPTIONS"]

# google/automl efficientnetv2/effnetv2_configs.py
_V2_BASE_BLOCK = [
    "r1_k3_s1_e1_i32_o16_c1",
    "r2_k3_s2_e4_i16_o32_c1",
    "r2_k3_s2_e4_i32_o48_c1",
    "r3_k3_s2_e4_i48_o96_se0.25",
    "r5_k3_s1_e6_i96_o112_se0.25",
    "r8_k3_s2_e6_i112_o192_se0.25",
]
_V2_S_BLOCK = [
    "r2_k3_s1_e1_i24_o24_c1",
    "r4_k3_s2_e4_i24_o48_c1",
    "r4_k3_s2_e4_i48_o64_c1",
    "r6_k3_s2_e4_i64_o128_se0.25",
    "r9_k3_s1_e6_i128_o160_se0.25",
    "r15_k3_s2_e6_i160_o256_se0.25",
]
_V2_M_BLOCK = [
    "r3_k3_s1_e1_i24_o24_c1",
    "r5_k3_s2_e4_i24_o48_c1",
    "r5_k3_s2_e4_i48_o80_c1",
    "r7_k3_s2_e4_i80_o160_se0.25",
    "r14_k3_s1_e6_i160_o176_se0.25",
    "r18_k3_s2_e6_i176_o304_se0.25",
    "r5_k3_s1_e6_i304_o512_se0.25",
]
_V2_L_BLOCK = [
    "r4_k3_s1_e1_i32_o32_c1",
    "r7_k3_s2_e4_i32_o64_c1",
    "r7_k3_s2_e4_i64_o96_c1",
    "r10_k3_s2_e4_i96_o192_se0.25",
    "r19_k3_s1_e6_i192_o224_se0.25",
    "r25_k3_s2_e6_i224_o384_se0.25",
    "r7_k3_s1_e6_i384_o640_se0.25",
]
# variant -> (block strings, width coefficient, depth coefficient)
AUTOML_VARIANTS: dict[str, tuple[list[str], float, float]] = {
    "b0": (_V2_BASE_BLOCK, 1.0, 1.0),
    "b1": (_V2_BASE_BLOCK, 1.0, 1.1),
    "b2": (_V2_BASE_BLOCK, 1.1, 1.2),
    "b3": (_V2_BASE_BLOCK, 1.2, 1.4),
    "s": (_V2_S_BLOCK, 1.0, 1.0),
    "m": (_V2_M_BLOCK, 1.0, 1.0),
    "l": (_V2_L_BLOCK, 1.0, 1.0),
}
_FEATURE_SIZE = 1280
_DEPTH_DIVISOR = 8
_MIN_DEPTH = 8
_BN_EPSILON = 1e-3

# What the exported module does to its [0, 1] input before the network: "identity" feeds it as is
# (a network trained on [-1, 1] fed [0, 1] straight, as the tfhub.dev pages describe the exports);
# "minus1_1" maps it to automl's [-1, 1] ((x * 255 - 128) / 128); "imagenet" normalises with the
# ImageNet mean and std, as keras.applications' own V2-B0..B3 preprocessing does.
INPUT_TRANSFORMS = ("identity", "minus1_1", "imagenet")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# Broken checkpoints for tests: "swap" uses two same-shaped variables the wrong way round in the
# forward pass (every shape maps, the features differ); "drop" keeps one kernel out of the
# exported variables (a constant in the graph instead).
CORRUPTIONS = (None, "swap", "drop")


@dataclass(frozen=True)
class _Block:
    kernel: int
    stride: int
    expand: int
    fin: int
    fout: int
    se: float | None
    fused: bool


def _round_filters(filters: float, width: float) -> int:
    filters *= width
    return int(max(_MIN_DEPTH, int(filters + _DEPTH_DIVISOR / 2) // _DEPTH_DIVISOR * _DEPTH_DIVISOR))


def _round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def _decode(block: str) -> dict:
    opts = {}
    for op in block.split("_"):
        m = re.match(r"^([a-z]+)(\d.*)$", op)
        if m:
            opts[m.group(1)] = m.group(2)
    return dict(
        repeats=int(opts["r"]),
        kernel=int(opts["k"]),
        stride=int(opts["s"]),
        expand=int(opts["e"]),
        fin=int(opts["i"]),
        fout=int(opts["o"]),
        se=float(opts["se"]) if "se" in opts else None,
        fused=int(opts.get("c", 0)) == 1,
    )


def automl_plan(variant: str) -> tuple[int, list[_Block], int]:
    """(stem filters, blocks in execution order, head filters) as automl builds `variant`."""
    if variant not in AUTOML_VARIANTS:
        raise ValueError(f"variant={variant!r}: choose one of {sorted(AUTOML_VARIANTS)}")
    strings, width, depth = AUTOML_VARIANTS[variant]
    decoded = [_decode(s) for s in strings]
    stem = _round_filters(decoded[0]["fin"], width)
    blocks: list[_Block] = []
    for d in decoded:
        fin, fout = _round_filters(d["fin"], width), _round_filters(d["fout"], width)
        for j in range(_round_repeats(d["repeats"], depth)):
            blocks.append(
                _Block(d["kernel"], d["stride"] if j == 0 else 1, d["expand"], fin if j == 0 else fout, fout, d["se"], d["fused"])
            )
    return stem, blocks, _round_filters(_FEATURE_SIZE, width)


def _layer_specs(variant: str) -> list[tuple[str, str, dict]]:
    """Checkpoint layers in execution order: (scope path, kind, shapes by parameter name)."""
    stem, blocks, head = automl_plan(variant)
    model = f"efficientnetv2-{variant}"
    specs: list[tuple[str, str, dict]] = []

    def bn(path, c):
        specs.append((path, "bn", {p: (c,) for p in ("gamma", "beta", "moving_mean", "moving_variance")}))

    specs.append((f"{model}/stem/conv2d", "conv", {"kernel": (3, 3, 3, stem)}))
    bn(f"{model}/stem/tpu_batch_normalization", stem)
    for i, b in enumerate(blocks):
        scope = f"{model}/blocks_{i}"
        conv_names = iter(["conv2d", "conv2d_1", "conv2d_2"])
        bn_names = iter(["tpu_batch_normalization", "tpu_batch_normalization_1", "tpu_batch_normalization_2"])
        mid = b.fin * b.expand
        if b.fused:
            if b.expand != 1:
                specs.append((f"{scope}/{next(conv_names)}", "conv", {"kernel": (b.kernel, b.kernel, b.fin, mid)}))
                bn(f"{scope}/{next(bn_names)}", mid)
        else:
            if b.expand != 1:
                specs.append((f"{scope}/{next(conv_names)}", "conv", {"kernel": (1, 1, b.fin, mid)}))
                bn(f"{scope}/{next(bn_names)}", mid)
            specs.append((f"{scope}/depthwise_conv2d", "depthwise", {"depthwise_kernel": (b.kernel, b.kernel, mid, 1)}))
            bn(f"{scope}/{next(bn_names)}", mid)
        if b.se is not None and 0 < b.se <= 1:
            red = max(1, int(b.fin * b.se))
            specs.append((f"{scope}/se/conv2d", "se_reduce", {"kernel": (1, 1, mid, red), "bias": (red,)}))
            specs.append((f"{scope}/se/conv2d_1", "se_expand", {"kernel": (1, 1, red, mid), "bias": (mid,)}))
        k = b.kernel if (b.fused and b.expand == 1) else 1
        specs.append((f"{scope}/{next(conv_names)}", "project", {"kernel": (k, k, mid, b.fout)}))
        bn(f"{scope}/{next(bn_names)}", b.fout)
        if b.stride == 1 and b.fin == b.fout:  # the block adds its input back: this BN ends a residual branch
            specs[-1] = (specs[-1][0], "bn_residual", specs[-1][2])
    specs.append((f"{model}/head/conv2d", "conv", {"kernel": (1, 1, blocks[-1].fout, head)}))
    bn(f"{model}/head/tpu_batch_normalization", head)
    return specs


# gamma of the BatchNorm that ends a residual branch in the deep variants (V2-S, M, L: 40-79 blocks; B0-B3 have
# 21-32 and keep (0.5, 1.5), and with it the margins their tests measure between close input conventions).
# With gamma ~1 there, each of V2-S's 40 blocks adds a branch as large as its input, float32 rounding grows
# through them, and the stand-in is so sensitive that its own conversion's self-check fails (relative error
# 4e-4 to 2e-2 by seed, tol 1e-4); with (0.2, 0.5) it is 4e-7 and the next convention 6e-3 or more.
# Trained EfficientNets' residual gammas are small too.
DEEP_BLOCKS = 33
RESIDUAL_GAMMA_DEEP = (0.2, 0.5)


def _random_value(rng: np.random.Generator, param: str, shape: tuple, kind: str = "", deep: bool = False) -> np.ndarray:
    if param in ("kernel", "depthwise_kernel"):
        # automl's conv_kernel_initializer: N(0, sqrt(2 / fan_out)), fan_out = kh * kw * shape[3]
        # (1 for a depthwise kernel), which keeps the signal alive through all the blocks
        kh, kw, _, cout = shape
        fan_out = kh * kw * cout
        return rng.normal(0.0, math.sqrt(2.0 / fan_out), shape).astype("float32")
    if param == "bias":
        return rng.normal(0.0, 0.1, shape).astype("float32")
    if param == "gamma":
        low, high = RESIDUAL_GAMMA_DEEP if deep and kind == "bn_residual" else (0.5, 1.5)
        return rng.uniform(low, high, shape).astype("float32")
    if param == "beta":
        return rng.normal(0.0, 0.2, shape).astype("float32")
    if param == "moving_mean":
        return rng.normal(0.0, 0.3, shape).astype("float32")
    if param == "moving_variance":
        return rng.uniform(0.5, 2.0, shape).astype("float32")
    raise ValueError(param)


def _build_module(variant: str, seed: int, input_transform: str, corrupt: str | None):
    import tensorflow as tf

    def _swish(x):  # x * sigmoid(x), written out: tf.nn.silu carries a custom gradient
        return x * tf.sigmoid(x)

    _stem, blocks, _head = automl_plan(variant)
    specs = _layer_specs(variant)
    rng = np.random.default_rng(seed)
    deep = len(blocks) >= DEEP_BLOCKS

    names: list[str] = []
    values: dict[str, np.ndarray] = {}
    for path, kind, params in specs:
        for p, shape in params.items():
            name = f"{path}/{p}"
            names.append(name)
            values[name] = _random_value(rng, p, shape, kind, deep)

    # which tensor the forward pass reads for each name (corruptions rewire this)
    use = {n: n for n in names}
    dropped: set[str] = set()
    if corrupt == "swap":
        # two project kernels of the last stage, same shape, used the wrong way round
        proj = [n for n in names if re.search(r"/blocks_\d+/conv2d_1/kernel$", n)]
        a, b = proj[-1], proj[-2]
        assert values[a].shape == values[b].shape
        use[a], use[b] = b, a
    elif corrupt == "drop":
        dw = [n for n in names if n.endswith("depthwise_conv2d/depthwise_kernel")]
        dropped.add(dw[len(dw) // 2])
    elif corrupt is not None:
        raise ValueError(f"corrupt={corrupt!r}: use one of {CORRUPTIONS}")

    class AutomlEffNetV2(tf.Module):
        # hub TF2 SavedModels expose plain attributes `variables` / `trainable_variables`;
        # shadow tf.Module's read-only properties so they can be saved as such
        variables = None
        trainable_variables = None

        def __init__(self):
            super().__init__(name=None)
            trainable = re.compile(r"/(kernel|depthwise_kernel|bias|gamma|beta)$")
            tensors, var_list = {}, []
            for n in names:  # creation order = execution order
                if n in dropped:
                    tensors[n] = tf.constant(values[n], name=n.replace("/", "_"))
                else:
                    v = tf.Variable(values[n], name=n, trainable=bool(trainable.search(n)))
                    tensors[n] = v
                    var_list.append(v)
            self._t = tensors
            self.variables = var_list
            self.trainable_variables = [v for v in var_list if v.trainable]
            self.input_transform = input_transform

        def _get(self, name):
            return self._t[use[name]]

        def _bn(self, x, path):
            g = self._get(f"{path}/gamma")
            b = self._get(f"{path}/beta")
            m = self._get(f"{path}/moving_mean")
            v = self._get(f"{path}/moving_variance")
            return tf.nn.batch_normalization(x, m, v, b, g, _BN_EPSILON)

        def _conv(self, x, path, stride=1):
            return tf.nn.conv2d(x, self._get(f"{path}/kernel"), strides=stride, padding="SAME")

        @tf.function(autograph=False)  # plain Python loops over the blocks: nothing to convert
        def __call__(self, images, training=False):
            # BatchNorm always runs in inference mode here (`training` is accepted for hub
            # compatibility); the converter only ever calls it with training=False.
            x = tf.cast(images, tf.float32)
            if input_transform == "minus1_1":
                x = (x * 255.0 - 128.0) / 128.0
            elif input_transform == "imagenet":
                x = (x - tf.constant(_IMAGENET_MEAN)) / tf.constant(_IMAGENET_STD)
            model = f"efficientnetv2-{variant}"
            x = _swish(self._bn(self._conv(x, f"{model}/stem/conv2d", 2), f"{model}/stem/tpu_batch_normalization"))
            for i, blk in enumerate(blocks):
                scope = f"{model}/blocks_{i}"
                inputs = x
                conv_names = iter(["conv2d", "conv2d_1", "conv2d_2"])
                bn_names = iter(["tpu_batch_normalization", "tpu_batch_normalization_1", "tpu_batch_normalization_2"])
                if blk.fused:
                    if blk.expand != 1:
                        x = self._conv(x, f"{scope}/{next(conv_names)}", blk.stride)
                        x = _swish(self._bn(x, f"{scope}/{next(bn_names)}"))
                else:
                    if blk.expand != 1:
                        x = self._conv(x, f"{scope}/{next(conv_names)}")
                        x = _swish(self._bn(x, f"{scope}/{next(bn_names)}"))
                    dk = self._get(f"{scope}/depthwise_conv2d/depthwise_kernel")
                    x = tf.nn.depthwise_conv2d(x, dk, strides=[1, blk.stride, blk.stride, 1], padding="SAME")
                    x = _swish(self._bn(x, f"{scope}/{next(bn_names)}"))
                if blk.se is not None and 0 < blk.se <= 1:
                    s = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
                    s = _swish(self._conv(s, f"{scope}/se/conv2d") + self._get(f"{scope}/se/conv2d/bias"))
                    s = self._conv(s, f"{scope}/se/conv2d_1") + self._get(f"{scope}/se/conv2d_1/bias")
                    x = tf.sigmoid(s) * x
                project_stride = blk.stride if (blk.fused and blk.expand == 1) else 1
                x = self._conv(x, f"{scope}/{next(conv_names)}", project_stride)
                x = self._bn(x, f"{scope}/{next(bn_names)}")
                if blk.fused and blk.expand == 1:
                    x = _swish(x)
                if blk.stride == 1 and blk.fin == blk.fout:
                    x = x + inputs
            x = _swish(self._bn(self._conv(x, f"{model}/head/conv2d"), f"{model}/head/tpu_batch_normalization"))
            return tf.reduce_mean(x, axis=[1, 2])

    return AutomlEffNetV2()


def export_automl_savedmodel(
    out_dir: str | os.PathLike,
    variant: str = "b0",
    *,
    seed: int = 0,
    input_transform: str = "identity",
    corrupt: str | None = None,
) -> Path:
    """Write a random-weight EfficientNetV2 feature-vector SavedModel in the automl/TF-Hub layout.

    Args:
        out_dir: the SavedModel folder to write (replaced if it already holds a SavedModel;
            any other non-empty folder is refused). Written atomically.
        variant: "b0", "b1", "b2", "b3", "s", "m" or "l" (automl block strings and scaling).
        seed: seed of the random weights.
        input_transform: "identity" (the network sees the [0, 1] input as is), "minus1_1"
            (it first maps [0, 1] to automl's [-1, 1] with (x * 255 - 128) / 128) or "imagenet"
            (ImageNet mean/std normalisation first).
        corrupt: None, or "swap" / "drop" to make a broken checkpoint (see `CORRUPTIONS`).

    Returns the folder. Its `__call__(images, training=False)` takes float32 [N, H, W, 3] in
    [0, 1] and returns [N, head filters] pooled features; `serving_default` does the same.
    """
    import tensorflow as tf

    if input_transform not in INPUT_TRANSFORMS:
        raise ValueError(f"input_transform={input_transform!r}: use one of {INPUT_TRANSFORMS}")
    if corrupt not in CORRUPTIONS:
        raise ValueError(f"corrupt={corrupt!r}: use one of {CORRUPTIONS}")
    out = Path(out_dir)
    if out.exists() and not (out / "saved_model.pb").exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not a SavedModel folder; refusing to overwrite it")

    module = _build_module(variant, seed, input_transform, corrupt)
    spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
    serving = module.__call__.get_concrete_function(spec, training=False)
    module.__call__.get_concrete_function(spec, training=True)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    old = None
    try:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": serving})
        _write_manifest(tmp, {"variant": variant, "seed": seed, "input_transform": input_transform, "corrupt": corrupt})
        if out.exists():
            old = out.parent / f".{out.name}.old.{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old, out)
            old = None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out


# --- the kit's own stand-ins: checked, and remade when damaged ------------------------------------
MANIFEST = "fivek-standin.json"  # inside the folder: what made it, and the size and sha256 of each file


def _file_digests(folder: Path) -> dict[str, list]:
    from ...core.io import file_sha256

    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out[p.relative_to(folder).as_posix()] = [p.stat().st_size, file_sha256(p)]
    return out


def _write_manifest(folder: Path, spec: dict) -> None:
    import json

    record = {"made_by": "fivek_utils.modeling.pretrained.standin.export_automl_savedmodel", "spec": spec,
              "files": _file_digests(folder)}
    (folder / MANIFEST).write_text(json.dumps(record, indent=1) + "\n")  # inside the folder being made: atomic with it


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The stand-in record of a SavedModel folder, or None (not one the kit made, or unreadable)."""
    import json

    try:
        record = json.loads((Path(folder) / MANIFEST).read_text())
        return record if isinstance(record, dict) and isinstance(record.get("spec"), dict) else None
    except (OSError, ValueError):
        return None


def standin_problem(folder: str | os.PathLike, **spec) -> str | None:
    """Why the stand-in in `folder` cannot be used as it is (missing, damaged: a file cut, emptied or with a
    byte changed since it was written, or made with other settings than `spec`), or None when it is intact.
    Hashing its files (tens of MB) costs a fraction of a second, loading it with TensorFlow several seconds."""
    folder = Path(folder)
    if not (folder / "saved_model.pb").exists():
        return "missing" if not folder.exists() else "no saved_model.pb in it"
    record = read_manifest(folder)
    if record is None:
        return f"no readable {MANIFEST} (made by an older kit, or damaged)"
    want = {"variant": "b0", "seed": 0, "input_transform": "identity", "corrupt": None, **spec}
    if any(record["spec"].get(k) != v for k, v in want.items()):
        return f"made with {record['spec']}, not {want}"
    files = record.get("files") or {}
    now = _file_digests(folder)
    for rel, (size, digest) in files.items():
        if rel not in now:
            return f"{rel} is missing"
        if now[rel][0] != size:
            return f"{rel} is {now[rel][0]} bytes, it was written with {size}"
        if now[rel][1] != digest:
            return f"{rel} changed since it was written (its sha256 differs)"
    return None


def ensure_standin(out: str | os.PathLike, **spec) -> Path:
    """The stand-in SavedModel at `out` (`prepare: standin_checkpoint`), written when missing and removed
    and written again, with one line saying why, when it is damaged. Under its lock: another process
    writing it is waited for, then its stand-in is checked and reused."""
    import sys

    from ...core.locks import hold_locks

    out = Path(out)
    with hold_locks([out], wait=True):
        why = standin_problem(out, **spec)
        if why is None:
            return out
        if why == "missing":
            print(f"prepare: writing a stand-in EfficientNetV2 SavedModel to {out}", flush=True)
        else:
            print(f"warning: stand-in SavedModel {out} cannot be used ({why}); removed, writing it again",
                  file=sys.stderr, flush=True)
            if out.is_dir() and ((out / "saved_model.pb").exists() or (out / MANIFEST).exists()):
                shutil.rmtree(out)  # ours (a SavedModel, or our record in it): export refuses any other folder
        return export_automl_savedmodel(out, **spec)


def remake_standin(folder: str | os.PathLike, why: str) -> bool:
    """Write the kit's stand-in at `folder` again from its own record (it did not load: `why`); False when
    `folder` is not a stand-in the kit made (so nothing was done)."""
    record = read_manifest(folder)
    if record is None:
        return False
    import sys

    spec = {k: v for k, v in record["spec"].items() if k in ("variant", "seed", "input_transform", "corrupt")}
    print(f"warning: stand-in SavedModel {folder} does not load ({why}); removed, writing it again",
          file=sys.stderr, flush=True)
    from ...core.locks import hold_locks

    with hold_locks([Path(folder)], wait=True):
        shutil.rmtree(folder, ignore_errors=True)
        export_automl_savedmodel(folder, **spec)
    return True
