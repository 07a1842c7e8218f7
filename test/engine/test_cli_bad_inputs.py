"""`gmos infer` / `gmos benchmark` with bad inputs: exit non-zero, one clear message (no traceback), and the
outputs of the inputs that did work stay complete."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gmos_core.cli.main import main

TINY = ["--tiny-random-model", "--quiet", "--pixel-limit", "3000", "--batch-size", "2"]


def _frames(folder, sizes):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return folder


def test_second_input_corrupt_first_outputs_complete(tmp_path, capsys):
    inputs = tmp_path / "inputs"
    _frames(inputs / "a_good", [(32, 48)] * 3)
    bad = _frames(inputs / "b_bad", [(32, 48)] * 3)
    (bad / "00001.png").write_text("not an image")
    out = tmp_path / "out"
    rc = main(["infer", str(inputs), "-o", str(out), "--mode", "gmos_s", "--fps", "24", *TINY])
    err = capsys.readouterr().err
    assert rc == 1
    assert "Traceback" not in err
    assert "1 of 2 inputs failed" in err and "00001.png: cannot be read as an image" in err
    written = sorted(p.name for p in (out / "prob" / "a_good").iterdir())
    assert written == ["00000.png", "00001.png", "00002.png"]
    for name in written:
        with Image.open(out / "prob" / "a_good" / name) as image:
            assert image.size == (48, 32)


def test_frames_of_different_sizes(tmp_path, capsys):
    folder = _frames(tmp_path / "sizes", [(32, 48), (32, 48), (40, 48)])
    rc = main(["infer", str(folder), "-o", str(tmp_path / "out"), "--mode", "gmos_s", "--fps", "24", *TINY])
    err = capsys.readouterr().err
    assert rc == 1
    assert "frame 2 is 48x40, the first frame is 48x32; expected all frames of a sequence to have one size" in err


@pytest.mark.parametrize("extra, message", [
    (["--fps", "0"], "--fps must be a positive frame rate, got 0.0"),
    (["--fps", "-5", "--stride", "1"], "--fps must be a positive frame rate, got -5.0"),
    (["--stride", "0"], "stride must be an integer >= 1, got 0"),
])
def test_bad_rates_refused_before_loading_models(tmp_path, capsys, extra, message):
    folder = _frames(tmp_path / "f", [(32, 48)] * 2)
    rc = main(["infer", str(folder), "-o", str(tmp_path / "out"), *extra, *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "RANDOM WEIGHTS" not in err


def test_mixed_extensions_refused_up_front(tmp_path, capsys):
    folder = _frames(tmp_path / "mixed", [(32, 48)] * 2)
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(folder / "00002.jpg")
    rc = main(["infer", str(folder), "-o", str(tmp_path / "out"), "--fps", "24", *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and "mixed image extensions ['.jpg', '.png']; expected one extension per folder" in err


def test_save_dir_is_a_file(tmp_path, capsys):
    folder = _frames(tmp_path / "f", [(32, 48)] * 2)
    target = tmp_path / "file.txt"
    target.write_text("x")
    rc = main(["infer", str(folder), "-o", str(target), "--fps", "24", *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and "is an existing file; expected a folder" in err


def test_benchmark_fps_zero(tmp_path, capsys):
    folder = _frames(tmp_path / "f", [(32, 48)] * 2)
    rc = main(["benchmark", str(folder), "--frames", "2", "--fps", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "frame rate must be a positive finite number, got 0.0" in err


@pytest.mark.parametrize("extra, message", [
    (["--pixel-limit", "0"], "pixel_limit=0: expected an integer >= 196"),
    (["--threads", "-1"], "--threads must be >= 1, got -1"),
    (["--device", "foo"], "--device 'foo' is not a torch device; expected cpu, cuda or cuda:N"),
])
def test_bad_parameters_one_line_no_traceback(tmp_path, capsys, extra, message):
    folder = _frames(tmp_path / "f", [(32, 48)] * 2)
    rc = main(["infer", str(folder), "-o", str(tmp_path / "out"), "--fps", "24", *TINY, *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err
    assert not (tmp_path / "out").exists()


def test_cuda_device_without_cuda(tmp_path, capsys, monkeypatch):
    import torch

    # Runs everywhere: on a machine with a GPU, CUDA is made to look absent.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    folder = _frames(tmp_path / "f", [(32, 48)] * 2)
    for argv in (["infer", str(folder), "-o", str(tmp_path / "out"), "--fps", "24", "--device", "cuda", *TINY],
                 ["benchmark", str(folder), "--frames", "2", "--device", "cuda"]):
        assert main(argv) == 2
        assert "--device cuda: CUDA is not available" in capsys.readouterr().err
