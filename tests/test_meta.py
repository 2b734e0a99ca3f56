"""Label rules and every validation error of the data layer."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fivek_utils.core.labels import MISSING
from fivek_utils.data.meta import (
    DataValidationError,
    apply_label_rules,
    label_array,
    label_counts,
    load_labels,
    load_meta,
    read_meta,
    stratify_key,
)


def write_dataset(root, rows, *, make_files=True, columns=("image_id", "fname", "mask", "distancing", "5k")):
    (root / "train" / "images").mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows, columns=list(columns))
    df.to_csv(root / "train" / "train_meta.csv", index=False)
    if make_files:
        for f in df["fname"]:
            Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "train" / "images" / f)
    return root


def rows(*triples):
    return [(i + 1, f"{i + 1}.jpg", *t) for i, t in enumerate(triples)]


def test_label_rules_fill_only_what_is_implied():
    raw = pd.DataFrame(rows(
        ("0", "", ""),   # known mask 0 -> 5k 0 although blank
        ("1", "", ""),   # mask 1, distancing blank -> 5k unknown
        ("", "0", ""),   # distancing 0 -> 5k 0
        ("1", "1", "1"),
        ("", "1", "1"),  # stated 5k=1 -> mask must be 1
        ("1", "", "0"),  # 5k=0 with mask 1 -> distancing 0
    ), columns=["image_id", "fname", "mask", "distancing", "5k"])
    df = apply_label_rules(raw)
    assert df["5k"].iloc[[0, 2, 3, 4, 5]].tolist() == [0, 0, 1, 1, 0]
    assert pd.isna(df["5k"][1])
    assert df["5k_implied"].tolist() == [True, False, True, False, False, False]
    assert df["mask"][4] == 1 and df["distancing"][5] == 0
    assert pd.isna(df["distancing"][0]) and pd.isna(df["mask"][2])  # blanks stay blank


def test_rows_with_one_blank_are_kept_and_encoded(tmp_path):
    write_dataset(tmp_path, rows(("1", "", ""), ("", "0", ""), ("0", "1", "0")))
    df = load_meta(tmp_path)
    assert len(df) == 3
    y = label_array(df)
    assert y.tolist() == [[1, MISSING], [MISSING, 0], [0, 1]]
    assert stratify_key(df).tolist() == ["1|b", "b|0", "0|1"]


@pytest.mark.parametrize("bad, expect", [
    (("2", "1", ""), "column 'mask' has values outside {0, 1, blank}"),
    (("1", "yes", ""), "column 'distancing' has values outside {0, 1, blank}"),
    (("1", "1", "5"), "column '5k' has values outside"),
    (("0", "1", "1"), "stated 5k contradicts mask AND distancing"),
    (("1", "1", "0"), "stated 5k contradicts"),
])
def test_bad_labels_name_file_line_and_count(tmp_path, bad, expect):
    write_dataset(tmp_path, rows(("1", "1", "1"), bad, ("0", "0", "0")))
    with pytest.raises(DataValidationError) as err:
        load_meta(tmp_path)
    msg = str(err.value)
    assert expect in msg
    assert "train_meta.csv" in msg and "line 3 (image_id=2)" in msg and "[1 row(s)]" in msg


def test_missing_columns(tmp_path):
    write_dataset(tmp_path, [(1, "1.jpg", "1")], columns=("image_id", "fname", "mask"))
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['distancing', '5k'\]"):
        load_meta(tmp_path)


def test_duplicate_ids(tmp_path):
    write_dataset(tmp_path, [(1, "1.jpg", "1", "1", "1"), (1, "2.jpg", "0", "", ""), (3, "3.jpg", "", "1", "")])
    with pytest.raises(DataValidationError, match=r"duplicate image_id.*\[2 row\(s\)\]: line 2 \(image_id=1\), line 3"):
        load_meta(tmp_path)


def test_fname_without_file_is_named(tmp_path):
    write_dataset(tmp_path, rows(("1", "1", "1"), ("0", "", ""), ("1", "0", "0")))
    (tmp_path / "train" / "images" / "2.jpg").unlink()
    with pytest.raises(DataValidationError, match=r"fname with no file .*\[1 row\(s\)\]: line 3 \(image_id=2\)"):
        load_meta(tmp_path)
    assert len(load_meta(tmp_path, check_files=False)) == 3


def test_many_problems_are_counted_and_truncated(tmp_path):
    write_dataset(tmp_path, rows(*[("7", "1", "")] * 9))
    with pytest.raises(DataValidationError, match=r"\[9 row\(s\)\].*and 4 more"):
        load_meta(tmp_path)


def test_missing_meta_file_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_meta.csv does not exist"):
        load_meta(tmp_path)


def test_test_split_needs_only_id_and_name(tmp_path):
    (tmp_path / "public_test" / "images").mkdir(parents=True)
    pd.DataFrame({"image_id": [5, 6], "fname": ["a.jpg", "b.jpg"]}).to_csv(tmp_path / "public_test" / "public_test_meta.csv", index=False)
    for f in ("a.jpg", "b.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / "public_test" / "images" / f)
    df = load_meta(tmp_path, "public_test")
    assert df["fname"].tolist() == ["a.jpg", "b.jpg"] and df["path"].str.endswith("a.jpg").iloc[0]


def test_real_label_file_counts(real_meta_path):
    counts = label_counts(load_labels(real_meta_path))
    assert counts["mask"] == {"1": 2295, "0": 1146, "blank": 734}
    assert counts["distancing"] == {"1": 1524, "0": 1378, "blank": 1273}
    assert counts["5k"] == {"1": 996, "0": 1172, "blank": 2007}
    assert counts["fully_labelled"] == 2168 and counts["one_blank"] == 2007 and counts["both_blank"] == 0
    assert counts["5k_implied"]["mask0_distancing_blank"] == 476
    assert counts["5k_implied"]["distancing0_mask_blank"] == 415
    assert counts["co_occurrence"] == {"(0,0)": 461, "(0,1)": 209, "(1,0)": 502, "(1,1)": 996}
    assert np.isclose(counts["5k_known_after_rules"], 2168 + 476 + 415)


@pytest.mark.parametrize("content, problem", [
    (b"", "is empty"),
    (b"image_id,fname,mask,distancing,5k\n", "a header and no rows"),
    (b"image_id,fname,mask,distancing,5k\n1,1.jpg,1,0,0,9\n2,2.jpg,1,1,1\n", r"line 2 has 6"),  # pandas would shift columns
    (b"image_id,fname,mask,distancing,5k\n1,1.jpg,1,0,0\n2,2.jpg,1\n", r"line 3 has 3"),  # pandas would fill blanks
    (b'image_id,fname,mask,distancing,5k\n1,"1.jpg,1,0,0\n', "unclosed quote"),
    ("image_id,fname,mask,distancing,5k\n1,café.jpg,1,0,0\n".encode("latin-1"), "not UTF-8"),
    (b"image_id,fname,fname,mask,distancing,5k\n1,1.jpg,2.jpg,1,0,0\n", r"column\(s\) \['fname'\] more than once"),
])
def test_broken_csv_files_are_named_with_the_problem(tmp_path, content, problem):
    path = tmp_path / "train_meta.csv"
    path.write_bytes(content)
    with pytest.raises(DataValidationError, match=problem) as err:
        read_meta(path)
    assert str(path) in str(err.value)


def test_csv_with_bom_crlf_and_padding_reads_cleanly(tmp_path):
    path = tmp_path / "train_meta.csv"
    path.write_bytes("\ufeffimage_id, fname ,mask,distancing,5k\r\n1, 1.jpg ,1,,\r\n\r\n2,2.jpg,0,1,0\r\n".encode())
    raw, problems = read_meta(path)
    assert list(raw.columns) == ["image_id", "fname", "mask", "distancing", "5k"] and not problems
    assert raw["fname"].tolist() == ["1.jpg", "2.jpg"] and raw["distancing"].tolist() == ["", "1"]


def test_fnames_must_be_plain_unique_names(tmp_path):
    path = tmp_path / "train_meta.csv"
    path.write_text("image_id,fname,mask,distancing,5k\n1,../../public_test/images/9.jpg,1,1,1\n2,2.jpg,0,1,0\n3,2.jpg,0,1,0\n")
    _, problems = read_meta(path)
    assert {p.kind: p.rows for p in problems} == {"bad_fname": [0], "duplicate_fname": [1, 2]}


def test_a_fname_spelt_otherwise_on_disk_reads_that_file_and_says_so(tmp_path):
    """A folder unpacked on macOS names "ảnh.jpg" in Unicode NFD while the CSV has NFC, and the meta reader
    strips the spaces of " 7.jpg": each row reads the one file that matches it so, with a warning; a name
    that two files match stays missing, named."""
    import unicodedata

    from fivek_utils.data.meta import files_not_in_meta
    from fivek_utils.workflows.predict import read_test_folder

    nfc = unicodedata.normalize("NFC", "ảnh 1.jpg")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    root = write_dataset(tmp_path, [(1, nfc, "1", "1", "1"), (2, "7.jpg", "0", "1", "0")], make_files=False)
    images = root / "train" / "images"
    for name in (nfd, " 7.jpg"):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(images / name)
    with pytest.warns(UserWarning, match=r"2 fname\(s\) of .*train_meta.csv name a file .* spelt otherwise"):
        df = load_meta(root, "train")
    assert [p.split("/")[-1] for p in df["path"]] == [nfd, " 7.jpg"]
    assert list(df["fname"]) == [nfc, "7.jpg"]  # the rows keep the meta file's names
    assert files_not_in_meta(images, df["fname"]) == []
    # a test folder the same way, and "9.jpg" that two files would match is not guessed
    test = tmp_path / "public_test"
    (test / "images").mkdir(parents=True)
    pd.DataFrame({"image_id": [1, 2], "fname": [nfc, "9.jpg"]}).to_csv(test / "public_test_meta.csv", index=False)
    for name in (nfd, " 9.jpg", "9.jpg "):
        Image.new("RGB", (8, 8)).save(test / "images" / name, format="JPEG")
    with pytest.warns(UserWarning, match=r"1 fname\(s\)"):
        meta, _ = read_test_folder(test)
    assert meta["path"].iloc[0].endswith(nfd) and meta["path"].iloc[1].endswith("/9.jpg")
    assert files_not_in_meta(test / "images", meta["fname"]) == [" 9.jpg", "9.jpg "]
    (images / " 7.jpg").rename(images / "7.jpg ")
    Image.new("RGB", (8, 8)).save(images / "\t7.jpg", format="JPEG")
    with pytest.raises(DataValidationError, match=r"fname with no file .*line 3 \(image_id=2\)"), \
            pytest.warns(UserWarning, match=r"1 fname\(s\)"):  # the NFD one still matches
        load_meta(root, "train")


def test_a_file_is_matched_to_one_row_only(tmp_path):
    """Two rows, one spelling the file as it is on disk and one in another Unicode form, do not share the
    file: the second stays without one (a missing file, named), as do two rows that match one file."""
    import unicodedata

    from fivek_utils.data.meta import match_fnames

    nfc = unicodedata.normalize("NFC", "ô.jpg")
    nfd = unicodedata.normalize("NFD", nfc)
    Image.new("RGB", (8, 8)).save(tmp_path / nfd, format="JPEG")
    assert match_fnames(tmp_path, [nfd, nfc]) == {}
    assert match_fnames(tmp_path, [nfc, " " + nfc]) == {}
    assert match_fnames(tmp_path, iter([nfc])) == {nfc: nfd}
