"""Square face crops with a margin, cut from the photo at full detail; rows kept in order."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fivek_utils.data.crops import FaceCrops, crop_square, extract_crops, square_box
from fivek_utils.data.faces import Detections, Face, ImageFaces
from fivek_utils.data.images import PAD_VALUE


def test_square_box_is_centred_with_the_margin():
    assert square_box((10, 20, 30, 60), 1.5) == (-10.0, 10.0, 50.0, 70.0)  # 1.5 x the longer side (40)


def test_crop_holds_the_face_and_pads_beyond_the_photo():
    image = Image.new("RGB", (100, 80), (0, 0, 0))
    image.paste((255, 0, 0), (40, 30, 60, 50))  # a red 20 px "face"
    crop = crop_square(image, (40, 30, 60, 50), 32, margin=2.0)  # a 40 px square around it
    assert crop.shape == (32, 32, 3)
    assert (crop[12:20, 12:20, 0] > 200).all() and (crop[2:5, 2:5].max() < 30)  # face in the middle, black round it
    corner = crop_square(image, (0, 0, 20, 20), 32, margin=2.0)  # half of the square is outside the photo
    assert (corner[:6, :6] == PAD_VALUE).all() and (corner[-6:, -6:] == 0).all()


def test_extract_crops_keeps_rows_and_largest_faces_first(tmp_path):
    paths = []
    for i, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        im = Image.new("RGB", (200, 100), colour)
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    (tmp_path / "2.png").write_bytes(b"broken")
    det = Detections({"name": "test"}, {
        "0.png": ImageFaces("0.png", 200, 100, [Face((10, 10, 30, 30)), Face((50, 10, 110, 70))]),
        "1.png": ImageFaces("1.png", 200, 100, []),
        "2.png": ImageFaces("2.png", 200, 100, [Face((10, 10, 50, 50))]),
    })
    crops = extract_crops(paths, ["0.png", "1.png", "2.png"], det, 24, max_faces=5, progress=False)
    assert crops.counts.tolist() == [2, 0, 0] and crops.image_index.tolist() == [0, 0]
    assert 2 in crops.errors and "2.png" in crops.errors[2]  # faces found before, unreadable now: counted
    one = extract_crops(paths[:1], ["0.png"], det, 24, max_faces=1, progress=False)
    assert one.counts.tolist() == [1]
    # the one kept is the larger face: the 60 px box with a margin fits inside the photo, so no grey padding
    assert not (one.crops[0] == PAD_VALUE).all(axis=-1).any()


def test_subset_reindexes_in_the_order_asked():
    crops = FaceCrops(np.arange(6)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8), np.array([0, 0, 2, 2, 2, 3]),
                      np.array([2, 0, 3, 1]))
    sub = crops.subset(np.array([3, 0, 1]))
    assert sub.counts.tolist() == [1, 2, 0] and sub.image_index.tolist() == [0, 1, 1]
    assert sub.crops[:, 0, 0, 0].tolist() == [5, 0, 1]


def test_concat_keeps_each_images_crops_and_reindexes():
    a = FaceCrops(np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3), np.array([0, 0, 2]), np.array([2, 0, 1]),
                  {1: "unreadable"})
    b = FaceCrops(np.full((1, 2, 2, 3), 200, np.uint8), np.array([1]), np.array([0, 1]), {0: "no crop"})
    both = a.concat(b)
    assert both.counts.tolist() == [2, 0, 1, 0, 1] and both.image_index.tolist() == [0, 0, 2, 4]
    assert both.errors == {1: "unreadable", 3: "no crop"}
    assert np.array_equal(both.subset(np.array([4])).crops, b.crops) and np.array_equal(both.subset(np.array([0, 2])).crops, a.crops)
