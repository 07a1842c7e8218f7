"""`gmos demo` (the README's main job) on a few frames of the bundled clip with the tiny random model (the shipped
default model is tested in test/engine/test_model_flags.py and test/default_model/)."""
from __future__ import annotations

from pathlib import Path

from gmos_core.cli.main import main

from ._helpers import read_bag, stamp_ns


def test_demo_makes_bag_replays_and_reports(tmp_path, capsys):
    rc = main(["demo", "--out-dir", str(tmp_path / "demo"), "--max-frames", "4", "--no-progress",
               "--tiny-random-model"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.count("UNTRAINED MODEL") == 2 and "masks are meaningless" in out  # loud, start and end
    assert "frames: 4 in, 4 segmented, 0 skipped" in out and "gmos_online" in out
    run_dir = next((tmp_path / "demo").iterdir())
    for name in ("output_bag_overlay.mp4", "output_bag_timeline.png", "output_bag_summary.json"):
        path = run_dir / name
        assert path.stat().st_size > 500 and str(path) in out
    inputs, outputs = read_bag(run_dir / "input_bag"), read_bag(run_dir / "output_bag")
    assert [stamp_ns(m) for _, m in outputs["/gmos/objects"]] == [stamp_ns(m) for _, m in inputs["/camera/image_raw"]]


def test_demo_without_model_flags_shows_the_default_model_then_geometric_beside_it(tmp_path, capsys):
    """No model flag: the shipped trained model (better on held-out data and real video) first, the weight-free
    geometric mode beside it, and a side-by-side video of both overlays, frame by frame."""
    from gmos_core.io.video import iter_video_frames, video_info

    rc = main(["demo", "--out-dir", str(tmp_path / "demo"), "--max-frames", "8", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "UNTRAINED" not in out
    first, second = out.index("=== gmos_online: "), out.index("=== geometric: ")
    assert first < second  # the better one is shown first
    assert "gmos-default-s4" in out[first:second]  # the trained model is named
    run_dir = next((tmp_path / "demo").iterdir())
    inputs = read_bag(run_dir / "input_bag")["/camera/image_raw"]
    for label in ("geometric", "gmos_online"):
        outputs = read_bag(run_dir / f"output_bag_{label}")
        assert [stamp_ns(m) for _, m in outputs["/gmos/objects"]] == [stamp_ns(m) for _, m in inputs]
    side = run_dir / "side_by_side_overlay.mp4"
    single = video_info(run_dir / "output_bag_gmos_online_overlay.mp4")
    frames = list(iter_video_frames(side))
    assert len(frames) == len(inputs) == 8
    assert frames[0].shape[1] == 2 * single.width  # two overlays next to each other
