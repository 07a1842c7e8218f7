"""One vocabulary for choosing a model across `gmos infer/replay/demo/benchmark`; the old flags still work for
one release and warn; with no weight flag every entry point (and the node's engine factory) loads the shipped
default model and names it in its outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gmos_core.cli.main import build_parser, main
from gmos_core.weights import default_model
from test.engine.default_checkpoint import NAME, PIXEL_LIMIT, write_tiny_checkpoint

COMMANDS = {"infer": ["x.mp4", "-o", "out"], "replay": ["bag", "--image-topic", "/t", "--out", "o"], "demo": [],
            "benchmark": ["x.mp4"]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("model") / "gmos_test.safetensors", fg_bias=0.3)


@pytest.fixture
def shipped(monkeypatch, checkpoint):
    """The tiny GMOS-format checkpoint stands in for gmos_core/data/default_model/gmos_default.safetensors."""
    monkeypatch.setattr(default_model, "DEFAULT_MODEL_PATH", checkpoint)
    return checkpoint


def _frame_folder(root, n=6, size=(56, 40)):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / f"f{i:03d}.png")
    return root


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_entry_point_has_the_same_model_flags(command):
    args = build_parser().parse_args([command, *COMMANDS[command], "--mode", "gmos_s", "--pi3-weights", "p",
                                      "--sam2-checkpoint", "s", "--head-weights", "h", "--tracker", "iou",
                                      "--device", "cpu", "--precision", "fp32"])
    assert (args.mode, args.pi3_weights, args.sam2_checkpoint, args.head_weights, args.tracker, args.precision) == (
        "gmos_s", "p", "s", "h", "iou", "fp32")
    args = build_parser().parse_args([command, *COMMANDS[command], "--tiny-random-model", "--sam2-config", "c.yaml"])
    assert args.tiny_random_model and args.sam2_config == "c.yaml" and args.tracker == "auto"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_old_flags_map_to_the_new_ones_and_warn(command, capsys):
    args = build_parser().parse_args([command, *COMMANDS[command], "--pi3-ckpt", "p", "--sam2-ckpt", "s",
                                      "--gmos-ckpt", "h"])
    assert (args.pi3_weights, args.sam2_checkpoint, args.head_weights) == ("p", "s", "h")
    err = capsys.readouterr().err
    for old, new in (("--pi3-ckpt", "--pi3-weights"), ("--sam2-ckpt", "--sam2-checkpoint"),
                     ("--gmos-ckpt", "--head-weights")):
        assert f"{old} is deprecated and will be removed in the next release; use {new}" in err
    for old in (["--model-size", "tiny"], ["--random-weights"]):
        assert build_parser().parse_args([command, *COMMANDS[command], *old]).tiny_random_model
        assert "use --tiny-random-model" in capsys.readouterr().err
    assert build_parser().parse_args([command, *COMMANDS[command]]).tiny_random_model is False
    assert capsys.readouterr().err == ""  # new (or no) flags: no warning


def test_replay_and_demo_keep_model_as_an_alias_of_mode(capsys):
    for command in ("replay", "demo"):
        args = build_parser().parse_args([command, *COMMANDS[command], "--model", "gmos_s"])
        assert args.mode == "gmos_s" and "--model is deprecated" in capsys.readouterr().err


def test_old_infer_flags_still_run_end_to_end(tmp_path, capsys):
    _frame_folder(tmp_path / "in" / "clip")
    rc = main(["infer", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--mode", "gmos_s", "--model-size",
               "tiny", "--stride", "1", "--pixel-limit", "2000", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and "--model-size tiny is deprecated" in err and "RANDOM WEIGHTS" in err
    assert len(list((tmp_path / "out" / "prob" / "clip").iterdir())) == 6


def test_infer_without_weights_uses_and_names_the_default_model(tmp_path, capsys, shipped):
    _frame_folder(tmp_path / "in" / "clip")
    rc = main(["infer", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--mode", "gmos_online", "--stride", "1",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"model: {NAME} (trained on synthetic data only" in err and "RANDOM" not in err
    assert "deprecated" not in err
    assert len(list((tmp_path / "out" / "mos-i_frame" / "clip").iterdir())) == 6
    # the tracker the default model cannot run is refused before any input is read, naming what to use
    rc = main(["infer", str(tmp_path / "in"), "-o", str(tmp_path / "out2"), "--mode", "gmos_online", "--stride", "1",
               "--tracker", "sam2", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "use tracker 'iou'" in err and not (tmp_path / "out2").exists()


def test_missing_default_model_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(default_model, "DEFAULT_MODEL_PATH", tmp_path / "gone.safetensors")
    _frame_folder(tmp_path / "in" / "clip", n=2)
    assert main(["infer", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--stride", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the default model file is missing from this installation: " in err and "gone.safetensors" in err
    assert "Traceback" not in err


def test_node_engine_factory_loads_the_default_model(shipped):
    from gmos_core.bridge.engine_factory import build_engine
    from gmos_core.bridge.params import NodeParams
    from gmos_core.engine import EngineConfigError

    engine = build_engine(NodeParams(device="cpu"))
    assert engine.models.name == NAME and "trained on synthetic data only" in engine.models.description
    # the anchor is the model's; the pixel budget left at its default is the model's own
    assert engine.config.anchor == "end" and engine.config.pixel_limit == PIXEL_LIMIT
    assert type(engine._mode).__name__ == "IouTrackedHandler"
    assert build_engine(NodeParams(device="cpu", pixel_limit=5000)).config.pixel_limit == 5000
    with pytest.raises(EngineConfigError, match="tracker='sam2'"):
        build_engine(NodeParams(device="cpu", tracker="sam2"))


def test_node_log_names_the_model(shipped):
    from gmos_core.bridge.core import NodeCore
    from gmos_core.bridge.engine_factory import build_engine
    from gmos_core.bridge.params import NodeParams

    class Log:
        def __init__(self):
            self.lines = []

        def info(self, message):
            self.lines.append(message)

        debug = warning = error = info

    log = Log()
    NodeCore(NodeParams(device="cpu"), build_engine, logger=log).activate()
    assert any("engine ready" in line and f"model: {NAME} (trained on synthetic data only" in line
               for line in log.lines), log.lines


def test_replay_without_weights_names_the_default_model_everywhere(tmp_path, capsys, shipped):
    from test.replay._helpers import IMAGE_TOPIC, make_video_bag

    from gmos_core.cli.demo import DEMO_CLIP

    bag = make_video_bag(DEMO_CLIP, tmp_path / "bag", frames=6, size=(96, 64))
    out = tmp_path / "out"
    rc = main(["replay", str(bag), "--image-topic", IMAGE_TOPIC, "--out", str(out), "--no-progress", "--fps", "8"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"model: gmos_online, {NAME} (trained on synthetic data only" in captured.err  # the log line
    assert f"model: gmos_online, {NAME} (trained on synthetic data only" in captured.out  # the summary
    assert "UNTRAINED" not in captured.out + captured.err and "deprecated" not in captured.err
    summary = json.loads((tmp_path / "out_summary.json").read_text())
    assert NAME in summary["model"] and "iou tracker" in summary["model"]
    assert (tmp_path / "out_timeline.png").stat().st_size > 0
    # the overlay video names the model too: white caption text on a darkened strip across the top
    from gmos_core.io import iter_video_frames

    first = next(iter(iter_video_frames(tmp_path / "out_overlay.mp4", 0, 1))).astype(int)
    assert first[:12].max() > 200 and first[:12].mean() < 0.7 * first[20:].mean()


def test_caption_frame_draws_only_in_its_strip():
    from gmos_core.io.overlay import caption_frame

    frame = np.full((60, 200, 3), 100, np.uint8)
    out = caption_frame(frame, f"model: {NAME}")
    text_rows = np.nonzero((out == 255).all(-1).any(1))[0]
    assert text_rows.size and text_rows.max() < 16  # text in the top strip
    assert (out[text_rows.max() + 4:] == 100).all()  # the rest of the frame untouched
    assert set(np.unique(out[:text_rows.max()])) == {40, 255}  # darkened band (100 * 2 // 5) and ink
    assert caption_frame(frame, "") is frame


def test_demo_without_weights_uses_the_default_model(tmp_path, capsys, shipped):
    rc = main(["demo", "--out-dir", str(tmp_path / "demo"), "--no-progress", "--max-frames", "4", "--mode", "gmos_s"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert captured.out.count(f"{NAME} (trained on synthetic data only") >= 3  # banner, step line, summary
    assert "UNTRAINED" not in captured.out
