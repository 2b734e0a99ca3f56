"""The Zalo 5K data layer: the official layout, the label rules and validation with clear errors.

Layout (as the official archives unzip)::

    <root>/train/images/<image_id>.jpg        <root>/train/train_meta.csv
    <root>/public_test/images/*.jpg           <root>/public_test/public_test_meta.csv
    <root>/private_test/images/*.jpg          <root>/private_test/private_test_meta.csv

Label rules: a blank cell is a missing label; ``5k = mask AND distancing``; a known 0 in
either head makes 5k = 0 even where the file leaves it blank; a stated 5k = 1 means both
heads are 1. Rows with one blank label are kept: the loss ignores only the blank head.
"""

from __future__ import annotations

import csv
import io
import os
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.labels import HEADS, MISSING

TRAIN_COLUMNS = ("image_id", "fname", "mask", "distancing", "5k")
TEST_COLUMNS = ("image_id", "fname")
SPLITS = ("train", "public_test", "private_test")


class DataValidationError(ValueError):
    """A meta file that breaks the official format; the message names the file and rows."""


@dataclass
class Problem:
    """One kind of defect in a meta file: what, how many rows, and the first few of them."""

    kind: str
    message: str
    rows: list[int] = field(default_factory=list)  # 0-based row positions

    def describe(self, path: Path, df: pd.DataFrame | None = None, limit: int = 5) -> str:
        shown = []
        for r in self.rows[:limit]:
            line = f"line {r + 2}"  # +1 for the header, +1 for 1-based lines
            if df is not None and "image_id" in df.columns:
                line += f" (image_id={df['image_id'].iloc[r]!s})"
            shown.append(line)
        more = f" and {len(self.rows) - limit} more" if len(self.rows) > limit else ""
        where = f": {', '.join(shown)}{more}" if shown else ""
        return f"{path}: {self.message} [{len(self.rows)} row(s)]{where}"


def split_paths(root: str | os.PathLike, split: str = "train") -> tuple[Path, Path]:
    """Return (images folder, meta CSV) of one split of a dataset in the official layout."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: choose one of {SPLITS}")
    base = Path(root) / split
    return base / "images", base / f"{split}_meta.csv"


def available_splits(root: str | os.PathLike) -> list[str]:
    """Splits whose meta file exists under `root`."""
    return [s for s in SPLITS if split_paths(root, s)[1].exists()]


def _name_key(name: str) -> str:
    """A file name as two spellings of it compare: Unicode NFC (a folder unpacked on macOS spells "ả" as
    "a" and a combining hook, NFD; a CSV written elsewhere as one character) without spaces around it
    (the meta reader strips them)."""
    return unicodedata.normalize("NFC", name).strip()


def respell(names, candidates) -> dict[str, str]:
    """name -> the one candidate spelt otherwise (the same `_name_key`), for each name that no candidate
    is as written; a name that matches no candidate, or several, is left out."""
    candidates = set(candidates)
    by_key: dict[str, list[str]] = {}
    for c in candidates:
        by_key.setdefault(_name_key(c), []).append(c)
    return {n: by_key[_name_key(n)][0] for n in set(names) - candidates if len(by_key.get(_name_key(n), [])) == 1}


def match_fnames(images_dir: str | os.PathLike, fnames) -> dict[str, str]:
    """fname -> the file's name on disk, for the fnames that no file has as written but exactly one file
    has once both are compared by `_name_key` (another Unicode normal form, spaces around it). Empty when
    the folder does not exist."""
    images_dir, fnames = Path(images_dir), [f for f in fnames if f]
    if not images_dir.is_dir():
        return {}
    named, exact = set(fnames), {n for n in os.listdir(images_dir) if not n.startswith(".")}
    if named <= exact:  # every fname is a file as written (the usual case)
        return {}
    out = respell(named, exact)
    # a file is one row's: not one that another fname names as written, nor one that two fnames match
    targets = Counter(out.values())
    return {f: n for f, n in out.items() if n not in named and targets[n] == 1}


def image_paths(images_dir: str | os.PathLike, fnames, source: str | os.PathLike = "the meta file") -> list[str]:
    """Each fname's path in `images_dir`: the file of that name, else the one file whose name differs from
    it only in its Unicode normal form or spaces around it (`match_fnames`; each such row is reported in
    a warning naming `source`)."""
    images_dir, fnames = Path(images_dir), list(fnames)
    matched = match_fnames(images_dir, fnames)
    if matched:
        shown = ", ".join(f"{f!r} -> {n!r}" for f, n in list(matched.items())[:3])
        warnings.warn(f"{len(matched)} fname(s) of {source} name a file of {images_dir} spelt otherwise (another "
                      f"Unicode normal form, or spaces around the name), read from that file: {shown}", stacklevel=2)
    return [str(images_dir / matched.get(f, f)) for f in fnames]


def files_not_in_meta(images_dir: str | os.PathLike, fnames) -> list[str]:
    """Files in an images/ folder that a meta file does not list (hidden files such as .DS_Store aside):
    they get no row, since the meta file defines the rows. A file a fname names in another spelling
    (`match_fnames`) is listed."""
    fnames = list(fnames)
    listed = set(fnames) | set(match_fnames(images_dir, fnames).values())
    return sorted({n for n in os.listdir(images_dir) if not n.startswith(".")} - listed)


# --- reading and checking -------------------------------------------------------------------
def read_csv_strict(path: str | os.PathLike, error: type[Exception] = DataValidationError, *, exact: bool = False) -> pd.DataFrame:
    """A CSV file as a table of stripped strings, or `error` naming the file and the bad lines.

    Stricter than `pandas.read_csv`, which would fill a short row with blanks, shift every
    column when the first data row has one field too many, or stop with a parser message that
    does not name the file: here every row must have as many fields as the header. Accepts a
    UTF-8 byte-order mark, CRLF line ends and spaces around values; skips empty lines.

    `exact` (a file another program will read, such as a submission): a line of empty fields only
    (",,") and a value with spaces around it are errors naming the line, not skipped or stripped:
    pandas reads the first as a row of blanks and keeps the spaces of the second.
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"{path} is a folder, not a CSV file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start:exc.start + 1]!r}); "
                    "save it as UTF-8 CSV") from None
    reader = csv.reader(io.StringIO(text), strict=True)
    rows, lines = [], []
    try:
        for row in reader:
            blank = not any(v.strip() for v in row)
            spaced = next((v for v in row if v != v.strip()), None)
            if exact and row and (blank or spaced is not None):
                what = "has empty fields only" if blank else f"has a value with spaces around it: {spaced!r}"
                raise error(f"{path}: line {reader.line_num} {what} (a reader such as pandas would take it as it is)")
            if not blank:
                rows.append([v.strip() for v in row])
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise error(f"{path}: line {reader.line_num}: {exc} (an unclosed quote?)") from None
    if not rows:
        raise error(f"{path} is empty: expected a header line and one line per image")
    header, body = rows[0], rows[1:]
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise error(f"{path}: the header names column(s) {twice} more than once: {header}")
    bad = [(line, len(r)) for line, r in zip(lines[1:], body, strict=True) if len(r) != len(header)]
    if bad:
        shown = ", ".join(f"line {line} has {n}" for line, n in bad[:5])
        raise error(f"{path}: {len(bad)} line(s) do not have the header's {len(header)} fields {header}: {shown}"
                    + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))
    return pd.DataFrame(body, columns=header, dtype=str) if body else pd.DataFrame(columns=header, dtype=str)


def read_meta(path: str | os.PathLike, *, labelled: bool | None = None) -> tuple[pd.DataFrame, list[Problem]]:
    """Read a meta CSV as strings and list its problems (nothing is dropped or coerced yet)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"meta file {path} does not exist (expected the official layout, see data/README.md)")
    raw = read_csv_strict(path)
    if raw.empty:
        raise DataValidationError(f"{path}: a header and no rows; expected one line per image")
    if labelled is None:
        labelled = "mask" in raw.columns or "distancing" in raw.columns or path.name.startswith("train")
    required = TRAIN_COLUMNS if labelled else TEST_COLUMNS
    missing_cols = [c for c in required if c not in raw.columns]
    if missing_cols:
        raise DataValidationError(
            f"{path}: missing column(s) {missing_cols}; found {list(raw.columns)}, expected {list(required)}"
        )
    raw = raw.apply(lambda s: s.str.strip())
    problems: list[Problem] = []

    ids = raw["image_id"]
    bad_ids = [i for i, v in enumerate(ids) if v == ""]
    if bad_ids:
        problems.append(Problem("blank_id", "blank image_id", bad_ids))
    dup = ids[(ids != "") & ids.duplicated(keep=False)]
    if len(dup):
        problems.append(Problem("duplicate_id", f"duplicate image_id values {sorted(set(dup))[:5]}", list(dup.index)))
    names = raw["fname"]
    bad_names = [i for i, v in enumerate(names) if v == ""]
    if bad_names:
        problems.append(Problem("blank_fname", "blank fname", bad_names))
    outside = [i for i, v in enumerate(names) if v and (Path(v).name != v or v in (".", ".."))]
    if outside:
        problems.append(Problem("bad_fname", "fname is not a plain file name in the split's images folder "
                                f"(a folder or path, e.g. {names.iloc[outside[0]]!r})", outside))
    dup_names = names[(names != "") & names.duplicated(keep=False)]
    if len(dup_names):
        problems.append(Problem("duplicate_fname", f"the same fname on several rows {sorted(set(dup_names))[:5]}", list(dup_names.index)))

    if labelled:
        for col in ("mask", "distancing", "5k"):
            bad = [i for i, v in enumerate(raw[col]) if v not in ("", "0", "1", "0.0", "1.0")]
            if bad:
                values = sorted(set(raw[col].iloc[bad]))[:5]
                problems.append(Problem(f"bad_{col}", f"column '{col}' has values outside {{0, 1, blank}}: {values}", bad))
    return raw, problems


def _as_int(col: pd.Series) -> pd.Series:
    out = pd.to_numeric(col.where(col.isin(["0", "1", "0.0", "1.0"])), errors="coerce")
    return out.astype("Int64")


def apply_label_rules(df: pd.DataFrame) -> pd.DataFrame:
    """Add typed labels and what the rules imply.

    Adds ``mask``, ``distancing`` (Int64 with <NA> for blank), ``5k_stated`` (the file's
    value), ``5k`` (the label the rules give: stated, else implied), ``5k_implied`` (True
    where the rules filled a blank 5k), and fills a blank head when a stated 5k fixes it.
    """
    out = df.copy()
    mask, dist = _as_int(out["mask"]), _as_int(out["distancing"])
    stated = _as_int(out["5k"])
    # a stated 5k=1 means both heads are 1; 5k=0 with one head known 1 means the other is 0
    # (comparisons with <NA> are <NA>; `_is` turns them into False so blanks never match)
    fill_mask = mask.isna() & (_is(stated, 1) | (_is(stated, 0) & _is(dist, 1)))
    fill_dist = dist.isna() & (_is(stated, 1) | (_is(stated, 0) & _is(mask, 1)))
    mask = mask.mask(fill_mask, stated)
    dist = dist.mask(fill_dist, stated)
    derived = _derive_5k(mask, dist)
    out["mask"], out["distancing"], out["5k_stated"] = mask, dist, stated
    out["5k"] = stated.fillna(derived)
    out["5k_implied"] = stated.isna() & derived.notna()
    return out


def _is(s: pd.Series, value: int) -> pd.Series:
    """Elementwise s == value with blanks giving False."""
    return (s == value).fillna(False).astype(bool)


def _derive_5k(mask: pd.Series, dist: pd.Series) -> pd.Series:
    """5k from the heads: 0 if either is 0, 1 if both are 1, blank otherwise."""
    derived = pd.Series(pd.NA, index=mask.index, dtype="Int64")
    derived[_is(mask, 0) | _is(dist, 0)] = 0
    derived[_is(mask, 1) & _is(dist, 1)] = 1
    return derived


def label_contradictions(df: pd.DataFrame) -> list[int]:
    """Rows whose stated 5k disagrees with its mask and distancing labels."""
    stated, derived = df["5k_stated"], _derive_5k(df["mask"], df["distancing"])
    bad = stated.notna() & derived.notna() & (stated != derived)
    return list(np.flatnonzero(bad.fillna(False).to_numpy(dtype=bool)))


def load_labels(path: str | os.PathLike) -> pd.DataFrame:
    """A training label file on its own (no images), with the label rules applied; strict."""
    raw, problems = read_meta(path, labelled=True)
    df = apply_label_rules(raw)
    bad = label_contradictions(df)
    if bad:
        problems.append(Problem("contradiction", "stated 5k contradicts mask AND distancing", bad))
    if problems:
        raise DataValidationError("\n".join(p.describe(Path(path), raw) for p in problems))
    return df


def load_meta(
    root: str | os.PathLike,
    split: str = "train",
    *,
    check_files: bool = True,
    strict: bool = True,
) -> pd.DataFrame:
    """Load one split with typed labels and absolute image paths.

    Args:
        root: dataset root in the official layout.
        split: "train", "public_test" or "private_test".
        check_files: also require every fname to exist under images/.
        strict: raise `DataValidationError` on any problem; otherwise attach the list of
            problems as ``df.attrs["problems"]`` (used by `describe`).
    """
    images_dir, meta_path = split_paths(root, split)
    raw, problems = read_meta(meta_path, labelled=split == "train")
    df = raw.copy()
    if split == "train":
        df = apply_label_rules(df)
        bad = label_contradictions(df)
        if bad:
            problems.append(Problem("contradiction", "stated 5k contradicts mask AND distancing", bad))
    df["path"] = image_paths(images_dir, df["fname"], meta_path)
    if check_files:
        if not images_dir.is_dir():
            raise FileNotFoundError(f"images folder {images_dir} does not exist (meta file: {meta_path})")
        on_disk = set(os.listdir(images_dir))
        missing = [i for i, (f, p) in enumerate(zip(df["fname"], df["path"])) if f and Path(p).name not in on_disk]
        if missing:
            problems.append(Problem("missing_file", f"fname with no file in {images_dir}", missing))
    df.attrs["meta_path"] = str(meta_path)
    df.attrs["problems"] = problems
    if strict and problems:
        raise DataValidationError("\n".join(p.describe(meta_path, raw) for p in problems))
    return df


def label_array(df: pd.DataFrame) -> np.ndarray:
    """(N, 2) float32 labels for (mask, distancing) with blanks as MISSING (-1)."""
    return np.stack([df[h].astype("Float64").fillna(MISSING).to_numpy("float32") for h in HEADS], axis=1)


def label_counts(df: pd.DataFrame) -> dict:
    """Counts of 1, 0 and blank per label after the label rules (a stated 5k can fill a blank
    head; the official file has none of those), the stated 5k column, and what the rules add."""
    out = {}
    for col in ("mask", "distancing"):
        s = df[col]
        out[col] = {"1": int((s == 1).sum()), "0": int((s == 0).sum()), "blank": int(s.isna().sum())}
    st = df["5k_stated"]
    out["5k"] = {"1": int((st == 1).sum()), "0": int((st == 0).sum()), "blank": int(st.isna().sum())}
    full = df["mask"].notna() & df["distancing"].notna()
    out["fully_labelled"] = int(full.sum())
    out["one_blank"] = int((df["mask"].isna() ^ df["distancing"].isna()).sum())
    out["both_blank"] = int((df["mask"].isna() & df["distancing"].isna()).sum())
    out["5k_implied"] = {
        "total": int(df["5k_implied"].sum()),
        "mask0_distancing_blank": int(((df["mask"] == 0) & df["distancing"].isna()).sum()),
        "distancing0_mask_blank": int(((df["distancing"] == 0) & df["mask"].isna()).sum()),
    }
    out["5k_known_after_rules"] = int(df["5k"].notna().sum())
    pairs = df[full].groupby(["mask", "distancing"]).size()
    out["co_occurrence"] = {f"({int(m)},{int(d)})": int(n) for (m, d), n in pairs.items()}
    return out


def stratify_key(df: pd.DataFrame) -> pd.Series:
    """Joint (mask, distancing) class with blanks as their own category, e.g. "1|b"."""
    def code(s):
        return s.astype("Float64").map(lambda v: "b" if pd.isna(v) else str(int(v)))

    return code(df["mask"]) + "|" + code(df["distancing"])
