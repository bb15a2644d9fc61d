"""``package validate`` finds every defect planted in a real submission zip, wherever it sits.

Valid packages are built by ``atst-sed package`` itself, unzipped, one defect is planted, and the
folder is zipped again with :mod:`zipfile` (deflate). Score-file defects go into a file that is
neither the first of its folder nor of the first run, since every file must be parsed in full.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from submission_helpers import CLIPS

from atst_sed.submission import SystemSpec, build_package, validate_package

LABEL = "Doe_UNI_task4_1"
LAST_CLIP = sorted(CLIPS)[-1]
SCORE_FILE = f"task4/{LABEL}/{LABEL}_run2.output/{LAST_CLIP}.tsv"
EVENT_FILE = f"task4/{LABEL}/{LABEL}.output.tsv"


def _unzip(zip_path: Path, target: Path) -> Path:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    return target


@pytest.fixture
def dcase2023(tmp_path, runs, report_pdf, meta_yaml) -> Path:
    out = tmp_path / "sub2023.zip"
    assert build_package([SystemSpec(LABEL, runs)], report_pdf, meta_yaml, out, fmt="dcase2023").ok
    return _unzip(out, tmp_path / "pkg2023")


@pytest.fixture
def dcase2022(tmp_path, runs, report_pdf, meta_yaml) -> Path:
    out = tmp_path / "sub2022.zip"
    assert build_package([SystemSpec(LABEL, runs[:1])], report_pdf, meta_yaml, out).ok
    return _unzip(out, tmp_path / "pkg2022")


def _zip(folder: Path, out: Path, replace: dict[str, bytes] | None = None) -> Path:
    """Zip ``folder`` (members in sorted order, deflated), with some members' bytes replaced."""
    replace = replace or {}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = path.relative_to(folder).as_posix()
            archive.writestr(name, replace.get(name, path.read_bytes()))
    return out


def _corrupt_member(zip_path: Path, name: str) -> None:
    """Overwrite the start of a member's deflate stream with an invalid block type (zlib.error)."""
    with zipfile.ZipFile(zip_path) as archive:
        info = archive.getinfo(name)
    raw = bytearray(zip_path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    raw[start: start + 4] = b"\xff\xff\xff\xff"
    zip_path.write_bytes(bytes(raw))


def _score_table(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / name, sep="\t")


def _tsv(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, sep="\t", index=False)
    return buffer.getvalue().encode()


def _nan_score(folder, name=SCORE_FILE):
    table = _score_table(folder, name)
    table.loc[5, "Dog"] = float("nan")
    return {name: _tsv(table)}


def _text_score(folder, name=SCORE_FILE):
    table = _score_table(folder, name).astype({"Cat": object})
    table.loc[7, "Cat"] = "high"
    return {name: _tsv(table)}


def _decreasing_times(folder, name=SCORE_FILE):
    """Frames listed backwards in time, still chained (each onset = previous offset)."""
    table = _score_table(folder, name).iloc[::-1].reset_index(drop=True)
    table[["onset", "offset"]] = table[["offset", "onset"]].to_numpy()
    return {name: _tsv(table)}


def _swapped_frames(folder, name=SCORE_FILE):
    table = _score_table(folder, name)
    order = list(range(len(table)))
    order[10], order[11] = 11, 10
    return {name: _tsv(table.iloc[order])}


def _no_frames(folder, name=SCORE_FILE):
    return {name: (folder / name).read_bytes().split(b"\n", 1)[0] + b"\n"}


def _repeated_column(folder, name=SCORE_FILE):
    """A second Dog column after the others (pandas would read it as 'Dog.1')."""
    lines = (folder / name).read_text().splitlines()
    lines = [lines[0] + "\tDog"] + [line + "\t0.5" for line in lines[1:]]
    return {name: ("\n".join(lines) + "\n").encode()}


SCORE_DEFECTS = {
    "nan score": (_nan_score, f"{SCORE_FILE}: not a valid sed_scores_eval score file: line 7: column 'Dog': "
                              "value nan is not a finite number"),
    "text score": (_text_score, f"{SCORE_FILE}: not a valid sed_scores_eval score file: line 9: column 'Cat': "
                                "value 'high' is not a finite number"),
    "decreasing times": (_decreasing_times, "line 2: frame offset 9.96 s is not after its onset 10 s"),
    "swapped frames": (_swapped_frames, "line 12: frame onset 0.44 s differs from the previous frame's offset 0.4 s"),
    "no frames": (_no_frames, f"{SCORE_FILE}: not a valid sed_scores_eval score file: line 2: no frames"),
    "repeated column": (_repeated_column, "line 1: column name 'Dog' appears more than once in the header"),
}


@pytest.mark.parametrize("defect", list(SCORE_DEFECTS))
def test_a_score_file_defect_anywhere_is_reported(tmp_path, dcase2023, defect):
    plant, expected = SCORE_DEFECTS[defect]
    package = _zip(dcase2023, tmp_path / "bad.zip", plant(dcase2023))
    problems = validate_package(package).problems
    assert len(problems) == 1 and problems[0].startswith(SCORE_FILE) and expected in problems[0], problems


def test_an_infinite_event_offset_is_reported(tmp_path, dcase2022):
    table = (dcase2022 / EVENT_FILE).read_text().splitlines()
    cells = table[2].split("\t")
    cells[2] = "inf"
    table[2] = "\t".join(cells)
    package = _zip(dcase2022, tmp_path / "bad.zip", {EVENT_FILE: ("\n".join(table) + "\n").encode()})
    assert validate_package(package).problems == [f"{EVENT_FILE}: line 3: onset/offset is not a finite number"]


def test_a_repeated_event_column_is_reported(tmp_path, dcase2022):
    text = (dcase2022 / EVENT_FILE).read_text().replace("event_label", "onset", 1)
    package = _zip(dcase2022, tmp_path / "bad.zip", {EVENT_FILE: text.encode()})
    assert validate_package(package).problems == [
        f"{EVENT_FILE}: line 1: column name 'onset' appears more than once in the header"]


@pytest.mark.parametrize("member", [SCORE_FILE, f"task4/{LABEL}/{LABEL}.meta.yaml",
                                    "task4/Doe_UNI_task4_technical_report.pdf"])
def test_a_corrupt_zip_member_is_one_problem_line(tmp_path, dcase2023, member):
    package = _zip(dcase2023, tmp_path / "bad.zip")
    _corrupt_member(package, member)
    with zipfile.ZipFile(package) as archive, pytest.raises(Exception) as raised:
        archive.read(member)  # what the validator used to let through as a traceback
    problems = validate_package(package).problems
    assert problems == [f"{member}: corrupt or unreadable zip member ({type(raised.value).__name__}: "
                        f"{str(raised.value).splitlines()[0]})"]


def test_all_planted_defects_are_reported_together(tmp_path, dcase2023):
    replace = {}
    others = sorted(CLIPS)[1:]
    planted = [(_nan_score, f"task4/{LABEL}/{LABEL}_run1.output/{others[0]}.tsv"),
               (_text_score, f"task4/{LABEL}/{LABEL}_run2.output/{others[1]}.tsv"),
               (_decreasing_times, f"task4/{LABEL}/{LABEL}_run3.output/{others[0]}.tsv"),
               (_no_frames, f"task4/{LABEL}/{LABEL}_run3.output/{others[1]}.tsv")]
    for plant, name in planted:
        replace.update(plant(dcase2023, name))
    package = _zip(dcase2023, tmp_path / "bad.zip", replace)
    corrupt = f"task4/{LABEL}/{LABEL}_run2.output/{others[0]}.tsv"
    _corrupt_member(package, corrupt)
    problems = validate_package(package).problems
    assert sorted(p.split(":", 1)[0] for p in problems) == sorted([name for _, name in planted] + [corrupt])
