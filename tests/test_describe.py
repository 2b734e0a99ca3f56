"""`fivek describe` on the official label file with placeholder images, and on defects."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fivek_utils.data.describe import describe_dataset
from fivek_utils.data.images import open_rgb


@pytest.fixture(scope="module")
def real_layout(tmp_path_factory, real_meta_path):
    """The official train_meta.csv with one small placeholder JPEG per row."""
    root = tmp_path_factory.mktemp("zalo")
    (root / "train" / "images").mkdir(parents=True)
    shutil.copy(real_meta_path, root / "train" / "train_meta.csv")
    rng = np.random.default_rng(0)
    for i, f in enumerate(pd.read_csv(real_meta_path)["fname"]):
        w, h = (48, 32) if i % 3 else (32, 48)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "train" / "images" / f, quality=70)
    return root


def test_describe_reports_the_real_counts(real_layout):
    result = subprocess.run(
        [sys.executable, "-m", "fivek_utils.cli", "describe", str(real_layout), "--quiet"],
        capture_output=True, text=True, check=True,
    )
    train = json.loads(result.stdout)["splits"]["train"]
    labels = train["labels"]
    assert labels["mask"]["blank"] == 734
    assert labels["distancing"]["blank"] == 1273
    assert labels["5k"]["blank"] == 2007
    assert labels["fully_labelled"] == 2168
    assert labels["5k_implied"]["total"] == 476 + 415
    assert train["contradictions"] == 0
    assert train["images"] == {**train["images"], "found": 4175, "missing": 0, "unreadable": 0}
    sizes = train["image_sizes"]
    assert sizes["orientation"]["portrait"] == 1392 and sizes["orientation"]["landscape"] == 4175 - 1392
    assert train["duplicates"]["groups"] == 0  # random noise images are all different


def test_describe_counts_missing_unreadable_duplicates_and_test(tmp_path, monkeypatch):
    root = tmp_path
    (root / "train" / "images").mkdir(parents=True)
    meta = pd.DataFrame({
        "image_id": [1, 2, 3, 4, 5], "fname": [f"{i}.jpg" for i in range(1, 6)],
        "mask": ["1", "0", "", "1", "1"], "distancing": ["1", "", "1", "0", "1"], "5k": ["1", "", "", "0", "0"],
    })
    meta.to_csv(root / "train" / "train_meta.csv", index=False)
    img = Image.fromarray(np.random.default_rng(3).integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((64, 48))
    img.save(root / "train" / "images" / "1.jpg", quality=95)
    img.save(root / "train" / "images" / "2.jpg", quality=70)  # near-duplicate of 1
    (root / "train" / "images" / "3.jpg").write_bytes(b"broken")
    Image.new("RGB", (80, 40), (0, 99, 0)).save(root / "train" / "images" / "5.jpg")
    (root / "public_test" / "images").mkdir(parents=True)
    pd.DataFrame({"image_id": [9], "fname": ["9.jpg"]}).to_csv(root / "public_test" / "public_test_meta.csv", index=False)
    Image.new("RGB", (30, 30)).save(root / "public_test" / "images" / "9.jpg")

    out = describe_dataset(root)
    train = out["splits"]["train"]
    assert train["images"]["missing"] == 1 and train["images"]["first_missing"] == ["4.jpg"]
    assert train["images"]["unreadable"] == 1 and "3.jpg" in train["images"]["first_unreadable"][0]
    assert train["contradictions"] == 1  # row 5 states 5k=0 with both heads 1
    assert train["duplicates"] == {**train["duplicates"], "groups": 1, "images_in_groups": 2}
    assert out["splits"]["public_test"]["rows"] == 1 and "labels" not in out["splits"]["public_test"]

    # notebook 01 makes the train table for its own plots and hands it over: one decode per image
    from fivek_utils.data import describe
    from fivek_utils.data.meta import load_meta

    table = describe.image_table(load_meta(root, "train", check_files=False, strict=False), hashes=True)
    decoded = []
    monkeypatch.setattr(describe, "open_rgb", lambda path, **kw: decoded.append(path) or open_rgb(path, **kw))
    again = describe_dataset(root, tables={"train": table})
    assert again["splits"]["train"] == train
    assert [Path(p).name for p in decoded] == ["9.jpg"]  # only the public test image, which had no table


def test_describe_without_any_split_says_what_it_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="train/train_meta.csv"):
        describe_dataset(tmp_path)


def test_describe_catches_truncated_images_and_names_problem_rows(tmp_path):
    root = tmp_path
    images = root / "train" / "images"
    images.mkdir(parents=True)
    pd.DataFrame({"image_id": [1, 2, 3, 3], "fname": ["sub/1.jpg", "2.jpg", "3.jpg", "4.jpg"],
                  "mask": ["1", "0", "2", "1"], "distancing": ["1", "", "1", "0"], "5k": ["1", "", "", "0"]}
                 ).to_csv(root / "train" / "train_meta.csv", index=False)
    buf = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8))
    buf.save(images / "2.jpg", quality=90)
    (images / "3.jpg").write_bytes((images / "2.jpg").read_bytes()[:3000])  # truncated: the header still reads
    buf.save(images / "4.jpg")
    (root / "public_test" / "images").mkdir(parents=True)  # images but no meta file

    out = describe_dataset(root, duplicates=False)
    train = out["splits"]["train"]
    assert train["images"]["unreadable"] == 1 and "3.jpg" in train["images"]["first_unreadable"][0]
    assert train["images"]["missing"] == 1 and train["images"]["first_missing"] == ["sub/1.jpg"]
    details = " | ".join(train["problem_details"])
    assert "line 4 (image_id=3), line 5 (image_id=3)" in details and "values outside {0, 1, blank}: ['2']" in details
    assert "fname is not a plain file name" in details
    assert out["warnings"] == [f"{root / 'public_test' / 'images'} exists but public_test_meta.csv does not: the public_test split is left out"]
