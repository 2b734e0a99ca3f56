"""The submission file exactly as judged, written atomically, and its checker naming every problem."""

import pandas as pd
import pytest

from fivek_utils.data.submission import SubmissionError, check_submission, write_submission


@pytest.fixture
def meta_path(tmp_path):
    path = tmp_path / "public_test_meta.csv"
    pd.DataFrame({"image_id": [3, 1, 2], "fname": ["c.jpg", "a.jpg", "b.jpg"]}).to_csv(path, index=False)
    return path


def written(tmp_path, rows, name="submission.csv"):
    frame = pd.DataFrame(rows, columns=["image_id", "fname", "5K"])
    frame["p_5k"] = 0.5
    return write_submission(frame, tmp_path / name)


def test_written_submission_is_exactly_the_judged_format(tmp_path, meta_path):
    path = written(tmp_path, [(3, "c.jpg", True), (1, "a.jpg", False), (2, "b.jpg", 1)])
    assert path.read_text().splitlines() == ["image_id,fname,5K", "3,c.jpg,1", "1,a.jpg,0", "2,b.jpg,1"]
    assert path.with_name("submission_probs.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]  # atomic: no leftovers
    (tmp_path / "plain.csv").write_text("x")  # readable by whoever reads a plainly written file (a grader)
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain.csv").stat().st_mode & 0o777
    assert check_submission(path, meta_path) == {"file": str(path), "rows": 3, "positives": 2, "positive_rate": 0.6667}


@pytest.mark.parametrize("rows, problem", [
    ([(3, "c.jpg", 1), (1, "a.jpg", 0)], "1 test image"),
    ([(3, "c.jpg", 1), (1, "a.jpg", 0), (2, "b.jpg", 1), (4, "d.jpg", 0)], "not in the meta file"),
    ([(3, "c.jpg", 1), (1, "a.jpg", 0), (2, "b.jpg", 1), (2, "b.jpg", 1)], "duplicated"),
    ([(3, "c.jpg", 1), (1, "a.jpg", 0.7), (2, "b.jpg", 1)], "not 0/1"),
    ([(1, "a.jpg", 0), (3, "c.jpg", 1), (2, "b.jpg", 1)], "order"),
    ([(3, "c.jpg", 1), (1, "b.jpg", 0), (2, "a.jpg", 1)], "have no row"),  # names swapped between ids
])
def test_checker_names_the_problem(tmp_path, meta_path, rows, problem):
    path = tmp_path / "bad.csv"
    pd.DataFrame(rows, columns=["image_id", "fname", "5K"]).to_csv(path, index=False)
    with pytest.raises(SubmissionError, match=problem):
        check_submission(path, meta_path)


def test_checker_wants_the_capital_k_header(tmp_path, meta_path):
    path = tmp_path / "lower.csv"
    path.write_text("image_id,fname,5k\n3,c.jpg,1\n1,a.jpg,0\n2,b.jpg,1\n")
    with pytest.raises(SubmissionError, match="capital K"):
        check_submission(path, meta_path)


@pytest.mark.parametrize("content, problem", [(b"", "is empty"), (b"image_id,fname,5K\n1,a.jpg\n", "line 2 has 2"),
                                              (b"\xff\xfe\x00garbage", "not UTF-8"),
                                              (b"image_id,fname,5K\n,,\n3,c.jpg,1\n1,a.jpg,0\n2,b.jpg,1\n", "line 2 has empty fields only"),
                                              (b"image_id,fname,5K\n3,c.jpg,1\n1, a.jpg ,0\n2,b.jpg,1\n",
                                               "line 3 has a value with spaces around it: ' a.jpg '")])
def test_checker_names_unreadable_files(tmp_path, meta_path, content, problem):
    path = tmp_path / "odd.csv"
    path.write_bytes(content)
    with pytest.raises(SubmissionError, match=problem):
        check_submission(path, meta_path)
    good = written(tmp_path, [(3, "c.jpg", 1), (1, "a.jpg", 0), (2, "b.jpg", 1)])
    with pytest.raises(SubmissionError, match="is a folder"):
        check_submission(good, tmp_path)
