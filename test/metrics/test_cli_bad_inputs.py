"""`gmos eval` with bad inputs: one clear message naming what was wrong, no traceback."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gmos_core.cli.main import main
from gmos_core.io.palette import save_indexed_png


@pytest.fixture()
def folders(tmp_path):
    for root in ("anno", "pred"):
        for seq in ("a", "b"):
            for i in range(2):
                labels = np.zeros((16, 24), np.uint8)
                labels[2:8, 3:10] = 1
                save_indexed_png(tmp_path / root / seq / f"{i:05d}.png", labels)
    return tmp_path


def _eval(folders, *extra):
    return main(["eval", "--protocol", "mos", "--no-plots", "--quiet", "--pred", str(folders / "pred"),
                 "--anno", str(folders / "anno"), *extra])


def test_out_is_an_existing_file(folders, capsys):
    target = folders / "report.txt"
    target.write_text("x")
    rc = _eval(folders, "--out", str(target))
    err = capsys.readouterr().err
    assert rc == 2 and "--out" in err and "is an existing file; expected a folder" in err
    assert target.read_text() == "x"


def test_wrong_png_mode_and_missing_sequence(folders, capsys):
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(folders / "pred" / "b" / "00000.png")
    assert _eval(folders) == 1
    assert "PNG mode 'RGB'; expected a palette-indexed" in capsys.readouterr().err
    for p in (folders / "pred" / "b").iterdir():
        p.unlink()
    (folders / "pred" / "b").rmdir()
    assert _eval(folders) == 1
    assert "sequence folder(s) missing under the predictions" in capsys.readouterr().err


def test_time_annotation_not_utf8(folders, capsys):
    bad = folders / "time.csv"
    bad.write_bytes(b"seq_name,time_anno\n\xff\xfe,{}\n")
    rc = main(["eval", "--protocol", "mos-i", "--dataset", "custom", "--no-plots", "--quiet", "--pred",
               str(folders / "pred"), "--anno", str(folders / "anno"), "--time-anno", str(bad)])
    err = capsys.readouterr().err
    assert rc == 1 and "time.csv: not a readable CSV" in err and "expected a UTF-8 CSV" in err


def test_sequences_file_not_found(folders, capsys):
    assert _eval(folders, "--sequences", str(folders / "missing.txt")) == 1
    assert "missing.txt: file not found; expected a text file" in capsys.readouterr().err
    assert _eval(folders, "--sequences", "a,b") == 0
