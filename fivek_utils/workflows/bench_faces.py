"""`fivek bench faces`: how fast the face stage's parts are on this machine.

RetinaFace (on the enlarged photo), BlazeFace (with its tiles) and MTCNN on real photos (the two public-domain photos the kit ships, written out at several sizes, so
the timing includes decoding as a run does), the `truth` boxes and the crops on the benchmarks'
synthetic close-up set, and the face-crop model's inference on those crops.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ..core.config import PHOTOS_DIR


def _rate(n: int, seconds: float) -> float:
    return round(n / max(seconds, 1e-9), 2)


def detector_speed(name: str = "mtcnn", sizes=(512, 1024, 2048), repeats: int = 5) -> list[dict]:
    """A photo detector's images/s per photo size (decode included), at the kit's default settings, and
    the faces it found (one per photo)."""
    from PIL import Image

    from ..modeling.face_detector import TUNED
    from .faces import detect_images, detector_for

    # RetinaFace and BlazeFace at their settings chosen on real photos (BlazeFace's tiles included); MTCNN at
    # its own (20 px, 0.9), as before
    settings = TUNED[name] if name != "mtcnn" else {}
    detector = detector_for(name, PHOTOS_DIR, **settings)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            paths = []
            for p in sorted(PHOTOS_DIR.glob("*.jpg")):
                out = Path(tmp) / f"{p.stem}-{size}.jpg"
                Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(out, quality=92)
                paths.extend([out] * repeats)
            fnames = [f"{i}-{p.name}" for i, p in enumerate(paths)]
            detect_images(paths[:1], fnames[:1], detector, progress=False)  # warm-up: traces the three nets
            t0 = time.perf_counter()
            found = detect_images(paths, fnames, detector, progress=False)
            seconds = time.perf_counter() - t0
            rows.append({"photo_px": size, "images": len(paths), "images_per_second": _rate(len(paths), seconds),
                         "faces_per_image": round(float(found.counts().mean()), 3)})
            print(f"{name} {size:>5} px: {rows[-1]['images_per_second']:6.2f} images/s, "
                  f"{rows[-1]['faces_per_image']} face(s) per photo")
    return rows


def bench_faces(*, data_dir: str | None = None, crop_size: int = 40, repeats: int = 5, batch_size: int = 256,
                sizes: tuple[int, ...] = (512, 1024, 2048)) -> dict:
    """RetinaFace's, BlazeFace's and MTCNN's speed on real photos; truth boxes, crops and face-model inference
    on the close-up set."""
    from ..data.crops import extract_crops
    from ..data.meta import load_meta
    from ..modeling.face_model import build_face_model, predict_faces
    from .bench import _machine, _write, bench_data
    from .faces import detect_dataset

    result = {"machine": _machine(), "settings": {"crop_size": crop_size, "repeats": repeats, "sizes": list(sizes)}}
    result["retinaface"] = detector_speed("retinaface", sizes, repeats=repeats)
    result["blazeface"] = detector_speed("blazeface", sizes, repeats=repeats)
    result["mtcnn"] = detector_speed("mtcnn", sizes, repeats=repeats)
    root = bench_data(data_dir)
    df = load_meta(root, "train")
    t0 = time.perf_counter()
    found = detect_dataset(root, "train", "truth", cache_dir=None, progress=False).detections
    t_truth = time.perf_counter() - t0
    t0 = time.perf_counter()
    crops = extract_crops(df["path"].tolist(), df["fname"].tolist(), found, crop_size, progress=False)
    t_crops = time.perf_counter() - t0
    model = build_face_model("EfficientNetV2B0")
    predict_faces(model, crops.crops[:batch_size], flip=False, batch_size=batch_size)  # warm-up
    t0 = time.perf_counter()
    predict_faces(model, crops.crops, flip=False, batch_size=batch_size)
    t_model = time.perf_counter() - t0
    result["synthetic"] = {
        "images": len(df), "faces": int(crops.counts.sum()),
        "truth_images_per_second": _rate(len(df), t_truth),
        "crops_images_per_second": _rate(len(df), t_crops),
        "face_model_crops_per_second": _rate(len(crops.crops), t_model),
    }
    s = result["synthetic"]
    print(f"truth boxes: {s['truth_images_per_second']} images/s; crops at {crop_size} px: "
          f"{s['crops_images_per_second']} images/s; EfficientNetV2-B0 face model: {s['face_model_crops_per_second']} crops/s")
    _write("faces", result)
    return result

