"""`python -m build standardize`: one line per file; good files written, bad ones refused; exit code."""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image
from pydicom.data import get_testdata_file

from build import standardize
from build.imaging import standardize_file


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    standardize.add_arguments(parser)
    return standardize.main(parser.parse_args(argv))


def test_one_good_one_bad_file(tmp_path, capsys):
    good = Path(get_testdata_file("MR_small.dcm"))
    bad = tmp_path / "noise.dcm"
    bad.write_bytes(b"\x00\x01 not an image" * 50)
    out = tmp_path / "out"
    assert run([str(good), str(bad), "--out", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    written = [line for line in lines if line.startswith("written ")]
    refused = [line for line in lines if line.startswith("refused ")]
    assert len(written) == 1 and len(refused) == 1
    assert written[0].startswith(f"written {out / 'MR_small.png'} 64x64 window=window clarity=")
    assert refused[0] == f"refused {bad}: not a DICOM (no 'DICM' at byte 128) or image file"
    assert lines[-1] == "standardize: 1 written, 1 refused"
    assert (out / "MR_small.png").read_bytes() == standardize_file(good).png
    assert not (out / "noise.png").exists()


def test_all_good_exits_zero_and_honours_max_side(tmp_path, capsys):
    out = tmp_path / "out"
    assert run([get_testdata_file("JPEG2000.dcm"), "--out", str(out), "--max-side", "100"]) == 0
    with Image.open(out / "JPEG2000.png") as png:
        assert png.size == (25, 100) and png.mode == "L"
    assert " 25x100 window=percentile " in capsys.readouterr().out


def test_same_stem_twice_is_refused_not_overwritten(tmp_path, capsys):
    first, second = tmp_path / "a" / "1.dcm", tmp_path / "b" / "1.dcm"
    for path, name in ((first, "MR_small.dcm"), (second, "CT_small.dcm")):
        path.parent.mkdir()
        path.write_bytes(Path(get_testdata_file(name)).read_bytes())
    out = tmp_path / "out"
    assert run([str(first), str(second), "--out", str(out)]) == 1
    assert "already written" in capsys.readouterr().out
    assert (out / "1.png").read_bytes() == standardize_file(first).png
