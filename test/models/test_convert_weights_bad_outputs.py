"""`gmos convert-weights` with a bad output path: refused up front with one message, the input untouched."""
from __future__ import annotations

import torch

from gmos_core.cli.main import main
from gmos_core.models import build_gmos_s


def _checkpoint(tmp_path):
    path = tmp_path / "gmos_s.pt"
    torch.save({"model_state_dict": build_gmos_s("tiny").state_dict()}, path)
    return path


def test_output_is_a_folder_or_under_a_file(tmp_path, capsys):
    source = _checkpoint(tmp_path)
    (tmp_path / "folder").mkdir()
    assert main(["convert-weights", str(source), str(tmp_path / "folder"), "--size", "tiny"]) == 1
    assert "is a folder; expected a file path" in capsys.readouterr().err
    (tmp_path / "file.txt").write_text("x")
    assert main(["convert-weights", str(source), str(tmp_path / "file.txt" / "out.safetensors"),
                 "--size", "tiny"]) == 1
    err = capsys.readouterr().err
    assert "file.txt is a file, not a folder" in err and "Traceback" not in err


def test_output_is_the_input(tmp_path, capsys):
    source = _checkpoint(tmp_path)
    before = source.read_bytes()
    assert main(["convert-weights", str(source), str(source), "--size", "tiny"]) == 1
    assert "is the input file" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_good_conversion_still_works(tmp_path, capsys):
    out = tmp_path / "new" / "gmos_s.safetensors"
    assert main(["convert-weights", str(_checkpoint(tmp_path)), str(out), "--size", "tiny"]) == 0
    assert out.is_file() and "gmos-s" in capsys.readouterr().out
