"""Where the faces are: the `truth` detector reads only the generator's head boxes, detections are
cached per folder and detector settings, and a broken image has no faces (counted), never a crash."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import run_fivek
from fivek_utils.data.faces import TruthDetector, read_cache
from fivek_utils.data.meta import load_meta
from fivek_utils.data.synth import generate_dataset
from fivek_utils.workflows.faces import detect_dataset, detect_split


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "closeup"
    generate_dataset(root, n_train=12, n_test=4, seed=5, profile="closeup", workers=1, progress=False)
    return root


def scenes(root, split="train"):
    return [json.loads(line) for line in open(root / split / "scenes.jsonl")]


def test_truth_boxes_are_the_generators_head_boxes(synth):
    found = detect_dataset(synth, "train", "truth", cache_dir=None, progress=False).detections
    for record in scenes(synth):
        faces = found[record["fname"]].faces
        heads = [p["head_box"] for p in record["scene"]["people"]]
        assert len(faces) == len(heads)
        for f, h in zip(faces, heads):  # clipped to the photo, otherwise the same
            w, hgt = record["scene"]["width"], record["scene"]["height"]
            assert np.allclose(f.box, [max(0, h[0]), max(0, h[1]), min(w, h[2]), min(hgt, h[3])], atol=0.051)
    summary = found.summary()
    assert summary["images"] == 12 and summary["images_without_faces"] == 0 and summary["detector"]["name"] == "truth"


def test_truth_reads_where_the_faces_are_and_nothing_else(synth, tmp_path):
    # a scenes.jsonl stripped to the head boxes (and the photo's size) gives the same faces: no mask state,
    # clothes or positions are needed, so none can leak into the face stage
    stripped = tmp_path / "scenes.jsonl"
    with open(stripped, "w") as fh:
        for r in scenes(synth):
            s = r["scene"]
            people = [{"head_box": p["head_box"]} for p in s["people"]]
            fh.write(json.dumps({"fname": r["fname"], "scene": {"width": s["width"], "height": s["height"], "people": people}}) + "\n")
    full, bare = TruthDetector(synth / "train" / "scenes.jsonl"), TruthDetector(stripped)
    for r in scenes(synth):
        assert [f.box for f in full.detect(r["fname"])] == [f.box for f in bare.detect(r["fname"])]


def test_truth_needs_synthetic_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="only synthetic data"):
        TruthDetector(tmp_path / "train" / "scenes.jsonl")


class CountingTruth(TruthDetector):
    """The truth detector, counting the images it is asked about."""

    calls = 0

    def detect(self, fname, image=None):
        CountingTruth.calls += 1
        return super().detect(fname, image)


def test_detections_are_cached_per_folder_and_redone_for_a_changed_file(synth, tmp_path):
    df = load_meta(synth, "train")
    paths, fnames = df["path"].tolist(), df["fname"].tolist()
    detector = CountingTruth(synth / "train" / "scenes.jsonl")
    CountingTruth.calls = 0
    first = detect_split(paths, fnames, detector, "train", cache_dir=tmp_path, progress=False)
    assert CountingTruth.calls == 12 and first.path.exists()
    again = detect_split(paths[:5], fnames[:5], detector, "train", cache_dir=tmp_path, progress=False)
    assert CountingTruth.calls == 12 and list(again.detections.images) == fnames[:5]  # all from the cache
    os.utime(paths[2], ns=(1, 1))  # the file changed: only it is looked at again
    detect_split(paths, fnames, detector, "train", cache_dir=tmp_path, progress=False)
    assert CountingTruth.calls == 13
    assert set(read_cache(first.path)) == set(fnames)


def test_a_broken_image_has_no_faces_and_is_counted(synth, tmp_path):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(synth, root)
    (root / "train" / "images" / "3.jpg").write_bytes(b"not a jpeg")
    (root / "train" / "images" / "5.jpg").unlink()
    for detector in ("truth", "mtcnn"):
        found = detect_dataset(root, "train", detector, cache_dir=None, progress=False).detections
        assert found["3.jpg"].faces == [] and "3.jpg" in found["3.jpg"].error
        assert found["5.jpg"].faces == [] and found["5.jpg"].error
        summary = found.summary()
        assert summary["unreadable_images"] == 2 and summary["images"] == 12


def test_fivek_faces_summarises_a_split(synth, tmp_path):
    env = {**os.environ, "FIVEK_ROOT": str(tmp_path)}
    out = run_fivek("faces", str(synth), "--split", "public_test", "--detector", "truth", "--quiet", env=env)
    summary = json.loads(out.stdout)
    assert summary["images"] == 4 and summary["faces"] == sum(len(r["scene"]["people"]) for r in scenes(synth, "public_test"))
    assert summary["cache"].startswith(str(tmp_path)) and os.path.exists(summary["cache"])


class BrokenTruth(TruthDetector):
    """The truth detector, failing for one image the way a broken install would (not an image's fault)."""

    def detect(self, fname, image=None):
        if fname == "2.jpg":
            raise ValueError("a layer got an input of the wrong shape")
        return super().detect(fname, image)


def test_an_image_the_detector_cannot_place_is_counted_but_a_broken_detector_stops_uncached(synth, tmp_path):
    df = load_meta(synth, "train")
    paths, fnames = df["path"].tolist(), df["fname"].tolist()
    lines = (synth / "train" / "scenes.jsonl").read_text().splitlines()
    (tmp_path / "train").mkdir()
    short = tmp_path / "train" / "scenes.jsonl"
    short.write_text("\n".join(line for line in lines if json.loads(line)["fname"] != "4.jpg") + "\n")
    found = detect_split(paths, fnames, TruthDetector(short), "train", cache_dir=None, progress=False).detections
    assert found["4.jpg"].faces == [] and "4.jpg is not in" in found["4.jpg"].error
    assert set(found.errors) == {"4.jpg"}

    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="wrong shape"):
        detect_split(paths, fnames, BrokenTruth(synth / "train" / "scenes.jsonl"), "train", cache_dir=cache,
                     progress=False)
    assert not cache.exists() or not any(cache.iterdir())  # never cached as "no face"


def test_detections_that_do_not_fit_on_the_disk_are_still_answered(synth, tmp_path, monkeypatch):
    import errno

    from fivek_utils.core import io

    df = load_meta(synth, "train")

    def full(path, *args, **kwargs):  # the disk is full for the cache file only
        raise io.disk_full_error(OSError(errno.ENOSPC, "No space left on device"), path)

    monkeypatch.setattr(io, "atomic_path", full)
    with pytest.warns(UserWarning, match="face detections not cached: no space left"):
        got = detect_split(df["path"].tolist(), df["fname"].tolist(), TruthDetector(synth / "train" / "scenes.jsonl"),
                           "train", cache_dir=tmp_path, progress=False)
    assert len(got.detections) == 12 and got.detections.summary()["faces"] > 0


@pytest.mark.parametrize("damage", ["cut in half", "emptied", "a byte flipped in the middle", "a digit changed",
                                    "another file's bytes", "an older kit's file"])
def test_a_damaged_detections_cache_is_named_and_detected_again(synth, tmp_path, capfd, damage):
    df = load_meta(synth, "train")
    paths, fnames = df["path"].tolist(), df["fname"].tolist()
    detector = CountingTruth(synth / "train" / "scenes.jsonl")
    first = detect_split(paths, fnames, detector, "train", cache_dir=tmp_path, progress=False)
    good = first.path.read_text()
    if damage == "cut in half":
        first.path.write_text(good[: len(good) // 2])
    elif damage == "emptied":
        first.path.write_text("")
    elif damage == "a byte flipped in the middle":
        data = first.path.read_bytes()
        first.path.write_bytes(data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:])
    elif damage == "a digit changed":  # still valid JSON: only the digest tells
        at = next(i for i in range(len(good) // 2, len(good)) if good[i] in "12345678")
        first.path.write_text(good[:at] + str(int(good[at]) + 1) + good[at + 1:])
    elif damage == "another file's bytes":  # the public test split's detections, another folder and settings
        test = load_meta(synth, "public_test")
        other = detect_split(test["path"].tolist(), test["fname"].tolist(), CountingTruth(synth / "public_test" / "scenes.jsonl"),
                             "public_test", cache_dir=tmp_path, progress=False)
        first.path.write_bytes(other.path.read_bytes())
    else:  # written before the digest and folder were recorded: read as it is, nothing detected again
        record = json.loads(good)
        del record["digest"], record["folder"]
        first.path.write_text(json.dumps(record))
    capfd.readouterr()
    CountingTruth.calls = 0
    again = detect_split(paths, fnames, detector, "train", cache_dir=tmp_path, progress=False)
    err = capfd.readouterr().err
    assert {k: v.to_dict() for k, v in again.detections.images.items()} == \
        {k: v.to_dict() for k, v in first.detections.images.items()}
    if damage == "an older kit's file":
        assert CountingTruth.calls == 0 and not err
        return
    lines = [line for line in err.splitlines() if "is damaged" in line]
    assert len(lines) == 1 and str(first.path) in lines[0] and "detecting its faces again" in lines[0], err
    assert CountingTruth.calls == 12  # every image looked at again
    assert set(read_cache(first.path)) == set(fnames) and json.loads(first.path.read_text())["digest"]
