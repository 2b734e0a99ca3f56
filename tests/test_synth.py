"""The synthetic dataset: official layout, labels true to the scenes, blanks like the real file, determinism."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fivek_utils.data import synth

N_TRAIN, N_TEST = 200, 20


@pytest.fixture(scope="module", params=synth.PROFILES)
def dataset(request, tmp_path_factory) -> tuple[Path, dict]:
    """One generated dataset per profile, shared by the read-only tests."""
    out = tmp_path_factory.mktemp(f"synth-{request.param}") / "data"
    return out, synth.generate_dataset(out, n_train=N_TRAIN, n_test=N_TEST, seed=3, profile=request.param, workers=2,
                                       progress=False)


def read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows exactly as written (no pandas type guessing)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def read_scenes(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def person(x: float = 0.0, z: float = 4.0, mask: str = "proper", width: float = 0.45, seed: int = 0) -> synth.Person:
    """A hand-placed person of a given shoulder width."""
    p = synth.sample_person(np.random.default_rng(seed), mask)
    return replace(p, x=x, z=z, width=width, height=1.7, yaw=0.0, scarf=None)


def scene_of(*people: synth.Person, width: int = 400, height: int = 400) -> synth.Scene:
    """A plain scene around hand-placed people: camera 1.6 m high, a 1.7 m person at 4 m fills 70%."""
    focal = 0.7 * height * 4.0 / 1.7
    background = synth.Background("gradient", [(200, 200, 200), (150, 160, 170), (0, 0, 0)], 0.5, 0.0, 10.0, 0.0)
    horizon = 0.95 * height - focal * 1.6 / 4.0
    return synth.Scene(width, height, focal, horizon, 1.6, background, list(people), jpeg_quality=90, noise=0.0,
                       blur=0.0, tint=(1.0, 1.0, 1.0), seed=1)


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path, monkeypatch):
    synth.generate_dataset(tmp_path / "a", n_train=16, n_test=8, seed=11, workers=1, progress=False)
    synth.generate_dataset(tmp_path / "b", n_train=16, n_test=8, seed=11, workers=2, progress=False)
    monkeypatch.setattr(synth.writer.sys, "platform", "darwin")  # spawned workers, as off Linux (writer picks them)
    synth.generate_dataset(tmp_path / "c", n_train=16, n_test=0, seed=11, workers=3, progress=False)
    a, b, c = (all_files(tmp_path / x) for x in "abc")
    assert len(a) == 16 + 8 + 4 + 1  # images, two meta files, two scenes.jsonl, the manifest
    assert a == b
    assert all(a[k] == c[k] for k in c if k.startswith("train"))


def test_another_seed_gives_other_images(tmp_path):
    synth.generate_dataset(tmp_path / "a", n_train=8, n_test=0, seed=1, workers=1, progress=False)
    synth.generate_dataset(tmp_path / "b", n_train=8, n_test=0, seed=2, workers=1, progress=False)
    a, b = all_files(tmp_path / "a"), all_files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.endswith(".jpg"))


def test_ensure_dataset_reuses_a_matching_dataset(tmp_path):
    first = synth.ensure_dataset(tmp_path, n_train=8, n_test=2, seed=5, workers=1, progress=False)
    assert "reused" not in first
    assert synth.ensure_dataset(tmp_path, n_train=8, n_test=2, seed=5)["reused"] is True
    assert "reused" not in synth.ensure_dataset(tmp_path, n_train=9, n_test=2, seed=5, workers=1, progress=False)
    assert len(list((tmp_path / "train" / "images").iterdir())) == 9  # regenerated, no stale files


def test_refuses_to_replace_a_dataset_it_did_not_write(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        synth.generate_dataset(tmp_path, n_train=4, n_test=0, progress=False)
    assert (tmp_path / "train" / "images").is_dir()


# --------------------------------------------------------------------------- layout


def test_train_layout_and_header(dataset):
    out, _ = dataset
    header, rows = read_csv_rows(out / "train" / "train_meta.csv")
    assert header == ["image_id", "fname", "mask", "distancing", "5k"]
    assert [int(r["image_id"]) for r in rows] == list(range(1, N_TRAIN + 1))
    assert all(r["fname"] == f"{r['image_id']}.jpg" for r in rows)
    assert sorted(p.name for p in (out / "train" / "images").iterdir()) == sorted(r["fname"] for r in rows)
    assert (out / "train" / "train_meta.csv").read_text().startswith("image_id,fname,mask,distancing,5k\n")


def test_public_test_layout_has_no_labels(dataset):
    out, _ = dataset
    header, rows = read_csv_rows(out / "public_test" / "public_test_meta.csv")
    assert header == ["image_id", "fname"]
    ids = [int(r["image_id"]) for r in rows]
    assert len(ids) == N_TEST == len(set(ids))
    assert sorted(p.name for p in (out / "public_test" / "images").iterdir()) == sorted(r["fname"] for r in rows)
    scenes = read_scenes(out / "public_test" / "scenes.jsonl")
    assert [s["image_id"] for s in scenes] == ids  # the ground truth the official file lacks


def test_label_cells_are_integers_or_really_empty(dataset):
    out, _ = dataset
    _, rows = read_csv_rows(out / "train" / "train_meta.csv")
    cells = {r[c] for r in rows for c in synth.LABELS}
    assert cells == {"0", "1", ""}
    # written exactly as the official file writes them: a blank mask is "id,fname,,d," on its line
    lines = (out / "train" / "train_meta.csv").read_text().splitlines()
    blank_mask = next(i for i, r in enumerate(rows) if r["mask"] == "")
    r = rows[blank_mask]
    assert lines[blank_mask + 1] == f"{r['image_id']},{r['fname']},,{r['distancing']},"


# --------------------------------------------------------------------------- labels


def test_meta_labels_are_the_labels_of_the_scenes(dataset):
    out, _ = dataset
    meta = pd.read_csv(out / "train" / "train_meta.csv", dtype={c: "Int64" for c in synth.LABELS})
    scenes = read_scenes(out / "train" / "scenes.jsonl")
    assert [s["image_id"] for s in scenes] == meta["image_id"].tolist()
    for record, (_, row) in zip(scenes, meta.iterrows()):
        truth = synth.scene_labels(synth.scene_from_dict(record["scene"]))
        assert (record["mask"], record["distancing"]) == (truth["mask"], truth["distancing"])
        assert record["5k"] == truth["mask"] & truth["distancing"]
        for col in ("mask", "distancing"):
            if not pd.isna(row[col]):
                assert row[col] == truth[col]
        if not pd.isna(row["mask"]) and not pd.isna(row["distancing"]):
            assert row["5k"] == row["mask"] & row["distancing"]


def test_true_labels_have_roughly_the_real_balance(dataset):
    out, summary = dataset
    train = summary["train"]
    assert 0.57 < train["true_mask_1"] / N_TRAIN < 0.8  # real: 0.69 of fully labelled rows
    assert 0.4 < train["true_distancing_1"] / N_TRAIN < 0.65  # real: 0.56
    most = {"closeup": 3, "realistic": 6}[summary["profile"]]
    assert set(train["people_per_image"]) == set(range(1, most + 1))
    assert json.loads((out / synth.MANIFEST).read_text())["profile"] == summary["profile"]


@pytest.mark.parametrize("profile", synth.PROFILES)
@pytest.mark.parametrize("mask,distancing", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_sample_scene_builds_the_requested_labels(mask, distancing, profile):
    rng = np.random.default_rng(mask * 2 + distancing)
    for _ in range(10):
        scene = synth.sample_scene(rng, mask=mask, distancing=distancing, profile=profile)
        assert synth.scene_labels(scene) == {"mask": mask, "distancing": distancing}
        assert 1 <= len(scene.people) <= (3 if profile == "closeup" else 6)
    with pytest.raises(ValueError, match="closeup"):
        synth.sample_scene(rng, profile="portrait")


def test_scene_round_trips_through_json():
    scene = synth.sample_scene(np.random.default_rng(42))
    d = json.loads(json.dumps(scene.to_dict()))
    assert synth.scene_from_dict(d) == scene
    assert {"box", "head_box", "x", "z", "mask", "skin"} <= set(d["people"][0])


def test_a_mask_below_the_nose_is_no_mask():
    assert synth.scene_labels(scene_of(person(mask="proper")))["mask"] == 1
    assert synth.scene_labels(scene_of(person(mask="below_nose")))["mask"] == 0
    assert synth.scene_labels(scene_of(person(mask="chin")))["mask"] == 0
    everyone_but_one = [person(x=-2.0), person(x=2.0, mask="below_nose", seed=1)]
    assert synth.scene_labels(scene_of(*everyone_but_one))["mask"] == 0


def test_one_person_keeps_distance_and_touching_people_do_not():
    assert synth.scene_labels(scene_of(person()))["distancing"] == 1
    assert synth.scene_labels(scene_of(person(x=-0.25), person(x=0.25)))["distancing"] == 0  # shoulder to shoulder
    assert synth.scene_labels(scene_of(person(x=-1.5), person(x=1.5)))["distancing"] == 1
    # distance is on the ground: one behind the other is far apart even though they overlap in the image
    assert synth.scene_labels(scene_of(person(z=3.0), person(z=6.0)))["distancing"] == 1
    assert synth.scene_labels(scene_of(person(x=-1.5), person(x=1.5), person(x=1.9)))["distancing"] == 0


def test_the_drawn_mask_covers_the_nose_only_when_worn_properly():
    colour = (40, 52, 92)
    for state, covered in [("proper", True), ("below_nose", False), ("chin", False)]:
        p = replace(person(mask=state), mask_style="surgical", mask_colour=colour, skin=(224, 172, 130))
        scene = scene_of(p)
        x0, y0, x1, y1 = synth.head_box(scene, p)
        nose = ((x0 + x1) / 2, y0 + (synth.NOSE_TOP + synth.NOSE_TIP) / 2 * (y1 - y0))
        pixel = np.asarray(synth.render_scene(scene), int)[int(nose[1]), int(nose[0])]
        assert (np.abs(pixel - colour).max() < 12) == covered, (state, pixel)


# --------------------------------------------------------------------------- blanks


def test_blanks_follow_the_official_proportions(dataset):
    out, summary = dataset
    meta = pd.read_csv(out / "train" / "train_meta.csv", dtype={c: "Int64" for c in synth.LABELS})
    mask_blank, dist_blank = meta["mask"].isna(), meta["distancing"].isna()
    # exact counts are drawn, so only rounding separates the file from the real 17.6% / 30.5%
    assert abs(mask_blank.mean() - 734 / 4175) <= 1 / N_TRAIN
    assert abs(dist_blank.mean() - 1273 / 4175) <= 1 / N_TRAIN
    assert not (mask_blank & dist_blank).any()
    assert (meta["5k"].isna() == (mask_blank | dist_blank)).all()
    blanks = {"mask": mask_blank.sum(), "distancing": dist_blank.sum(), "5k": (mask_blank | dist_blank).sum()}
    assert summary["train"]["blank"] == blanks


def test_blank_labels_on_a_frame():
    rng = np.random.default_rng(0)
    labels = pd.DataFrame({"mask": rng.integers(0, 2, 400), "distancing": rng.integers(0, 2, 400)})
    labels["5k"] = labels["mask"] & labels["distancing"]
    blanked = synth.blank_labels(labels, np.random.default_rng(1))
    assert blanked["mask"].isna().sum() == 70 and blanked["distancing"].isna().sum() == 122
    assert not (blanked["mask"].isna() & blanked["distancing"].isna()).any()
    kept = blanked.dropna()
    assert (kept == labels.loc[kept.index]).all().all()
    assert labels["mask"].notna().all()  # the input is left alone
    with pytest.raises(ValueError, match="both"):
        synth.blank_labels(labels, rng, mask_rate=0.6, distancing_rate=0.5)


# --------------------------------------------------------------------------- images


def test_images_are_rgb_jpegs_of_varied_size(dataset):
    out, summary = dataset
    scenes = {s["fname"]: s["scene"] for s in read_scenes(out / "train" / "scenes.jsonl")}
    sizes = set()
    for fname, scene in scenes.items():
        with Image.open(out / "train" / "images" / fname) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert im.size == (scene["width"], scene["height"])
            sizes.add(im.size)
    widths, heights = [w for w, _ in sizes], [h for _, h in sizes]
    aspects = [w / h for w, h in sizes]
    if summary["profile"] == "realistic":
        assert 320 <= min(widths) and max(widths) <= 800 and max(widths) - min(widths) > 300
        assert min(aspects) < 0.9 and max(aspects) > 1.7 and all(0.74 < a < 2.01 for a in aspects)
    else:  # heights 256-480, from a portrait 3:4 (one person) to 16:9 (a group keeping its distance)
        assert 256 <= min(heights) and max(heights) <= 480 and max(heights) - min(heights) > 150
        assert min(aspects) < 0.9 and max(aspects) > 1.7 and all(0.74 < a < 1.79 for a in aspects)
    assert len(sizes) > N_TRAIN // 2


def test_nearest_person_is_large_and_farther_people_are_smaller_and_higher():
    for i in range(30):
        scene = synth.sample_scene(np.random.default_rng([7, i]), profile="realistic")
        by_depth = sorted(scene.people, key=lambda p: p.z)
        boxes = [synth.body_box(scene, p) for p in by_depth]
        assert 0.4 < (boxes[0][3] - boxes[0][1]) / scene.height < 0.9
        for near, far, nb, fb in zip(by_depth, by_depth[1:], boxes, boxes[1:]):
            if far.z > near.z:
                assert (fb[3] - fb[1]) / far.height < (nb[3] - nb[1]) / near.height  # fewer pixels per metre
                assert fb[3] < nb[3]  # feet higher in the frame


@pytest.mark.slow
def test_masks_are_visible_in_the_face_pixels_even_at_the_demo_size():
    """Learnable, not trivial: a linear model on each person's head crop tells masked from unmasked
    faces, at full resolution and after the demo's 96 px letterbox (where a head is ~6 px high).
    Finding the faces in the whole image is what a network must learn on top of this."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    crops, y = {"native": [], "96px": []}, []
    for i in range(240):
        scene = synth.sample_scene(np.random.default_rng(1000 + i), profile="realistic")
        image = synth.render_scene(scene)
        s = 96 / max(image.size)
        small = image.resize((max(1, round(image.width * s)), max(1, round(image.height * s))), Image.BILINEAR)
        for p in scene.people:
            box = synth.head_box(scene, p)
            crops["native"].append(np.asarray(image.crop(box).resize((16, 16), Image.BILINEAR), float).ravel() / 255)
            crops["96px"].append(np.asarray(small.crop([v * s for v in box]).resize((8, 8), Image.BILINEAR), float).ravel() / 255)
            y.append(int(synth.wears_mask(p)))
    y = np.array(y)
    n = len(y) * 2 // 3
    assert 0.2 < y.mean() < 0.95 and len(y) > 300
    auc = {k: roc_auc_score(y[n:], LogisticRegression(max_iter=2000).fit(np.array(x[:n]), y[:n]).predict_proba(np.array(x[n:]))[:, 1])
           for k, x in crops.items()}
    assert auc["native"] > 0.9 and auc["96px"] > 0.8, auc


def test_closeup_faces_take_a_real_share_of_the_frame_and_realistic_ones_do_not():
    """The profiles' reason to exist, measured on the scenes: the face height against the longer side."""
    share = {}
    for profile in synth.PROFILES:
        faces = []
        for i in range(400):
            scene = synth.sample_scene(np.random.default_rng([11, i]), profile=profile).to_dict()
            faces += [f / max(scene["width"], scene["height"]) for f in synth.face_heights(scene)]
        share[profile] = np.median(faces)
    assert 0.18 < share["closeup"] < 0.32 and 0.04 < share["realistic"] < 0.09, share
    # the help text and docs/synthetic-data.md quote these
    assert synth.face_heights(synth.sample_scene(np.random.default_rng(0), profile="closeup").to_dict(), 64)


def test_closeup_people_stand_side_by_side_whole_faces_in_frame():
    for i in range(40):
        scene = synth.sample_scene(np.random.default_rng([5, i]), profile="closeup")
        zs = [p.z for p in scene.people]
        assert max(zs) - min(zs) <= 0.41 and 1.3 <= min(zs) and max(zs) <= 2.8  # one row, close to the camera
        for p in scene.people:
            x0, y0, x1, y1 = synth.head_box(scene, p)
            assert 0 <= x0 and x1 <= scene.width and 0 <= y0 and y1 <= 0.85 * scene.height
            _, foot, body, _ = synth.project(scene, p)
            assert foot - 0.3 * body >= scene.height  # the knees below the frame: no whole bodies
        xs = [synth.project(scene, p)[0] for p in scene.people]
        assert xs == sorted(xs)  # left to right, as in scenes.jsonl


def test_profile_is_part_of_the_dataset_identity(tmp_path):
    a = synth.ensure_dataset(tmp_path, n_train=6, n_test=0, seed=1, profile="closeup", workers=1, progress=False)
    assert not a.get("reused")
    assert synth.ensure_dataset(tmp_path, n_train=6, n_test=0, seed=1, profile="closeup")["reused"]
    b = synth.ensure_dataset(tmp_path, n_train=6, n_test=0, seed=1, profile="realistic", workers=1, progress=False)
    assert not b.get("reused") and b["profile"] == "realistic"
    people = [len(json.loads(line)["scene"]["people"]) for line in (tmp_path / "train" / "scenes.jsonl").open()]
    assert json.loads((tmp_path / synth.MANIFEST).read_text())["profile"] == "realistic" and len(people) == 6
