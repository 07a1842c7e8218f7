"""`gmos infer` end to end on tiny random models: the official output layout."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gmos_core.cli import infer
from gmos_core.cli.main import build_parser
from gmos_core.io import DAVIS_PALETTE, video_info


def run_cli(argv):
    args = build_parser().parse_args(["infer", *argv])
    return infer.run(args)


def test_gmos_s_on_real_video_writes_official_layout(shared_dir, tmp_path, capsys):
    video = shared_dir / "data" / "videos" / "dog.mp4"
    out = tmp_path / "out"
    rc = run_cli([str(video), "-o", str(out), "--mode", "gmos_s", "--tiny-random-model", "--max-frames", "3",
                  "--pixel-limit", "3000", "--save-mode", "prob+mask+mp4", "--batch-size", "2", "--quiet"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "RANDOM WEIGHTS" in err and "[dog] 3 frames" in err and "pi3_decoder" in err and "(stride 3)" in err
    probs = sorted((out / "prob" / "dog").iterdir())
    masks = sorted((out / "frame" / "dog").iterdir())
    assert [p.name for p in probs] == [p.name for p in masks] == ["00000.png", "00001.png", "00002.png"]
    prob = Image.open(probs[0])
    assert prob.mode == "L" and prob.size == (1280, 720)
    mask = Image.open(masks[0])
    assert mask.mode == "P" and mask.size == (1280, 720)
    assert np.array(mask).max() <= 1
    np.testing.assert_array_equal(np.array(mask.getpalette(), np.uint8).reshape(-1, 3), DAVIS_PALETTE)
    # mask == prob > 0.5 <=> u8 >= 128 (up to truncation at exactly 0.5)
    assert ((np.array(mask) == 1) == (np.array(prob) >= 128)).mean() > 0.999
    info = video_info(out / "mp4" / "dog.mp4")
    assert (info.width, info.height, info.num_frames) == (1280, 720, 3)
    assert info.fps == pytest.approx(29.97, abs=0.01)


def _frame_folder(root, n=5, size=(48, 36)):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / f"f{i:03d}.jpg")
    return root


def test_offline_on_frame_folder_writes_mos_and_mos_i(tmp_path, capsys):
    seq = _frame_folder(tmp_path / "in" / "walk")
    out = tmp_path / "out"
    rc = run_cli([str(tmp_path / "in"), "-o", str(out), "--mode", "gmos_offline", "--tiny-random-model",
                  "--stride", "1", "--pixel-limit", "2000", "--save-mode", "mask+mp4", "--quiet"])
    assert rc == 0
    for stream in ("mos-i", "mos"):
        pngs = sorted((out / f"{stream}_frame" / "walk").iterdir())
        assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(5)]
        assert all(Image.open(p).mode == "P" and Image.open(p).size == (48, 36) for p in pngs)
        info = video_info(out / f"{stream}_mp4" / "walk.mp4")
        assert info.num_frames == 5 and info.fps == pytest.approx(24.0)  # frame folders: --fps or 24
    assert seq.exists()


def test_bad_arguments_fail_clearly(tmp_path, capsys):
    seq = _frame_folder(tmp_path / "seq", n=2)
    assert run_cli([str(seq), "-o", str(tmp_path / "o"), "--tiny-random-model"]) == 2
    assert "--fps or --stride" in capsys.readouterr().err
    assert run_cli([str(seq), "-o", str(tmp_path / "o"), "--fps", "24", "--mode", "gmos_s", "--save-mode", "mos"]) == 2
    assert "--save-mode" in capsys.readouterr().err
    assert run_cli([str(seq), "-o", str(tmp_path / "o"), "--fps", "24", "--pi3-weights", str(seq / "f000.jpg")]) == 2
    assert "weight files given for --pi3-weights but not --sam2-checkpoint, --head-weights" in capsys.readouterr().err
    assert run_cli([str(tmp_path / "missing"), "-o", str(tmp_path / "o"), "--fps", "24"]) == 2


def test_batch_size_does_not_change_outputs(tmp_path):
    seq = _frame_folder(tmp_path / "in" / "clip", n=5)
    pngs = {}
    for batch in (1, 3):
        out = tmp_path / f"out{batch}"
        assert run_cli([str(seq), "-o", str(out), "--mode", "gmos_s", "--tiny-random-model", "--stride", "1",
                        "--pixel-limit", "2000", "--save-mode", "prob+mask", "--batch-size", str(batch),
                        "--quiet"]) == 0
        pngs[batch] = [np.array(Image.open(out / "prob" / "clip" / f"{i:05d}.png")).astype(int) for i in range(5)]
    for a, b in zip(pngs[1], pngs[3]):
        assert np.abs(a - b).max() <= 1 and (a == b).mean() > 0.999  # float noise may move a truncation by 1
