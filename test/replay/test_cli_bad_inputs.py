"""`gmos bag-from-video` / `gmos replay` / `gmos demo` with bad inputs: exit non-zero with one clear message,
and a bag already written up to a bad frame stays readable."""
from __future__ import annotations

import numpy as np
from PIL import Image

from gmos_core.cli.main import main


def _frames(folder, count, size=(32, 48)):
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((*size, 3), 10 * i, np.uint8)).save(folder / f"{i:05d}.png")
    return folder


def test_bag_from_video_keeps_frames_before_an_unreadable_one(tmp_path, capsys):
    folder = _frames(tmp_path / "frames", 5)
    (folder / "00003.png").write_text("not an image")
    out = tmp_path / "bag"
    rc = main(["bag-from-video", str(folder), "--out", str(out), "--fps", "10"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "00003.png: cannot be read as an image" in err and "keeps the 3 frames written before it" in err
    from gmos_core.bags.reader import open_bag

    with open_bag(out, allow_recovery=False) as bag:  # complete as written, no recovery needed
        assert bag.topics["/camera/image_raw"] == ("sensor_msgs/msg/Image", 3)


def test_bag_from_truncated_video_leaves_no_bag(shared_dir, tmp_path, capsys):
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes((shared_dir / "data" / "videos" / "dog.mp4").read_bytes()[:20000])
    out = tmp_path / "bag"
    rc = main(["bag-from-video", str(bad), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "truncated.mp4: corrupt or truncated video, cannot decode frame 0" in err
    assert not out.exists()


def test_replay_refuses_non_positive_fps(tmp_path, capsys):
    bag = tmp_path / "bag"
    assert main(["bag-from-video", str(_frames(tmp_path / "f", 2)), "--out", str(bag), "--fps", "10"]) == 0
    capsys.readouterr()
    rc = main(["replay", str(bag), "--image-topic", "/camera/image_raw", "--out", str(tmp_path / "out"),
               "--tiny-random-model", "--fps", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "--fps must be a positive frame rate, got 0.0" in err
    assert not (tmp_path / "out").exists()


def test_demo_out_dir_is_a_file(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    rc = main(["demo", "--out-dir", str(target), "--no-progress", "--max-frames", "2", "--tiny-random-model"])
    err = capsys.readouterr().err
    assert rc == 2 and "expected --out-dir to be a folder" in err and "Traceback" not in err


def test_demo_bad_parameters_write_nothing(tmp_path, capsys):
    import torch

    cases = [(["--max-frames", "0"], "--max-frames must be >= 1, got 0"),
             (["--device", "foo"], "parameter 'device' = 'foo'")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "--device cuda: CUDA is not available"))
    for extra, message in cases:
        rc = main(["demo", "--out-dir", str(tmp_path / "demo"), "--no-progress", *extra])
        err = capsys.readouterr().err
        assert rc == 2 and message in err
        assert not (tmp_path / "demo").exists()


def test_replay_ground_truth_errors(tmp_path, capsys):
    bag = tmp_path / "bag"
    assert main(["bag-from-video", str(_frames(tmp_path / "f", 2)), "--out", str(bag), "--fps", "10"]) == 0
    capsys.readouterr()
    common = ["replay", str(bag), "--image-topic", "/camera/image_raw", "--tiny-random-model", "--no-progress",
              "--no-overlay"]
    # A missing GT folder is refused before the replay runs.
    assert main([*common, "--out", str(tmp_path / "out1"), "--gt-dir", str(tmp_path / "nope")]) == 2
    assert "ground-truth folder" in capsys.readouterr().err and not (tmp_path / "out1").exists()
    # A wrong GT topic is only found after the replay: the output bag and the summary are kept, and said so.
    out = tmp_path / "out2"
    assert main([*common, "--out", str(out), "--gt-topic", "/nope"]) == 2
    err = capsys.readouterr().err
    assert "ground-truth topic '/nope' is not in" in err and f"output bag {out} is complete" in err
    from gmos_core.bags.reader import open_bag

    with open_bag(out, allow_recovery=False) as opened:
        assert opened.topics["/gmos/dynamic_mask"][1] == 2
    assert (tmp_path / "out2_summary.json").is_file()


def test_replay_broken_metadata_is_one_line(tmp_path, capsys):
    bag = tmp_path / "bag"
    assert main(["bag-from-video", str(_frames(tmp_path / "f", 2)), "--out", str(bag), "--fps", "10"]) == 0
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed")
    capsys.readouterr()
    rc = main(["replay", str(bag), "--image-topic", "/camera/image_raw", "--out", str(tmp_path / "out"),
               "--tiny-random-model", "--no-progress", "--no-overlay"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("gmos replay: error: cannot read") and "expected a rosbag2 folder" in err[-1]
    assert not err[-1].endswith(":") and len([line for line in err if "yaml" in line.lower()]) == 1
