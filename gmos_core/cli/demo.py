"""`gmos demo`: the README's main job in one command.

Makes a rosbag2 from the bundled clip (gmos_core/data/dog_demo.mp4), replays it through the node's logic
and prints the summary and where the overlay video and the plots are. Every output names the model.

With no model flag it shows the shipped trained default model `gmos-default-s4` first and the weight-free
geometric mode beside it, then a side-by-side overlay video of the two. Why this order (docs/default_model.md):
on the held-out synthetic set the model is ahead of the geometric mode on every score, and on the three real
clips its masks cover the dog, the hands and the children with fewer stray regions (it uses the geometric mode's
evidence as one of its inputs). Any model flag (--mode, weight files, --tiny-random-model) runs that model alone.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEMO_CLIP = Path(__file__).resolve().parents[1] / "data" / "dog_demo.mp4"
DEFAULT_DEMO_FRAMES = 60
# No model flag: (mode, why) in the order shown, the better one first (docs/default_model.md: held-out synthetic
# scores and the real clips); re-order if the weight-free mode ever beats the shipped model.
COMPARISON = (("gmos_online", "main result: the shipped trained default model (held-out synthetic mtIoU 0.514 vs "
                              "the geometric mode's 0.086, J_mov 0.610 vs 0.301; docs/default_model.md)"),
              ("geometric", "beside it: the weight-free geometric mode (no learning; the default model uses its "
                            "evidence as one input)"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gmos_core.cli.replay import add_model_arguments

    parser.add_argument("--out-dir", default="gmos_demo",
                        help="folder for the demo's bags, video and plots (default ./gmos_demo; each run gets a "
                             "new sub-folder)")
    parser.add_argument("--video", default=None, help="use this video (or frame folder) instead of the bundled clip")
    parser.add_argument("--max-frames", type=int, default=DEFAULT_DEMO_FRAMES,
                        help=f"use at most this many frames (default {DEFAULT_DEMO_FRAMES}: 2 s of the clip, about two "
                             "minutes on 2 CPU cores; the clip has 100)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)")
    parser.add_argument("--ros-distro", choices=("humble", "jazzy"), default="jazzy")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_model_arguments(parser)


def _model_flags_given(args: argparse.Namespace) -> bool:
    return bool(args.mode or args.tiny_random_model or args.pi3_weights or args.sam2_checkpoint or args.head_weights)


def run(args: argparse.Namespace) -> int:
    import copy

    import torch
    from tqdm import tqdm

    from gmos_core.bags.from_video import VideoBagOptions, video_to_bag
    from gmos_core.cli.devices import check_device
    from gmos_core.cli.replay import UNTRAINED_BANNER, check_model_choice, model_description, node_params_from_args

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2 if args.device == "cpu" else 8)))
    source = Path(args.video) if args.video else DEMO_CLIP
    if not source.exists():
        print(f"gmos demo: error: video not found: {source}", file=sys.stderr)
        return 2
    args.camera_info_topic = "/camera/camera_info"
    args.depth_topic = None
    runs = []  # (label, params, description, why)
    try:
        if args.max_frames is not None and args.max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
        choices = [(args, "")] if _model_flags_given(args) else []
        for mode, why in ([] if choices else COMPARISON):
            run_args = copy.copy(args)
            run_args.mode = mode
            choices.append((run_args, why))
        for run_args, why in choices:
            params = node_params_from_args(run_args)
            check_device(params.device)
            check_model_choice(params)
            # names the model (and fails early if its file is missing)
            runs.append((params.mode, params, model_description(params), why))
    except (ValueError, FileNotFoundError) as exc:  # bad parameters: refused before anything is written
        print(f"gmos demo: error: {exc}", file=sys.stderr)
        return 2
    run_dir = Path(args.out_dir) / time.strftime("run-%Y%m%d-%H%M%S")
    suffix = 1
    while run_dir.exists():
        run_dir = Path(args.out_dir) / f"{time.strftime('run-%Y%m%d-%H%M%S')}-{suffix}"
        suffix += 1
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:  # e.g. --out-dir is an existing file
        print(f"gmos demo: error: cannot create the run folder {run_dir} ({exc.strerror}); expected --out-dir "
              f"to be a folder (new or existing)", file=sys.stderr)
        return 2
    for _, params, description, _ in runs:
        print(UNTRAINED_BANNER if params.tiny_random_model else f"model: {description}")
    steps = len(runs) + 1
    print(f"[1/{steps}] making a rosbag2 from {source}")
    try:
        with tqdm(desc="bag-from-video", unit="frame", disable=args.no_progress or None) as bar:
            made = video_to_bag(source, run_dir / "input_bag",
                                VideoBagOptions(max_frames=args.max_frames, storage=args.storage,
                                                distro=args.ros_distro, frame_id="camera"),
                                progress=lambda n: bar.update(1))
        print(f"      {made.path}: {made.frames} frames {made.width}x{made.height} at {made.fps:.2f} fps "
              f"on {made.image_topic} + {made.camera_info_topic}")
        results = []
        for step, (label, params, description, why) in enumerate(runs, start=2):
            print(f"[{step}/{steps}] replaying it through the GMOS node logic ({description})"
                  + (f"\n      {why}" if why else ""))
            out_bag = run_dir / ("output_bag" if len(runs) == 1 else f"output_bag_{label}")
            results.append((label, description, why, out_bag,
                            _replay(args, made, out_bag, params, description)))
    except (ValueError, FileNotFoundError) as exc:
        print(f"gmos demo: error: {exc}", file=sys.stderr)
        return 2
    for label, description, why, out_bag, summary in results:
        print()
        if len(results) > 1:
            print(f"=== {label}: {description}" + (f" ({why})" if why else ""))
        print(summary.format())
        print()
        print(f"output bag:  {out_bag}   (ros2 bag play {out_bag}; or read it with rosbags)")
        for name, path in summary.artefacts.items():
            print(f"{name + ':':<22} {path}")
    overlays = [s.artefacts.get("overlay video") for *_, s in results]
    if len(results) > 1 and all(overlays):
        side_by_side = run_dir / "side_by_side_overlay.mp4"
        frames = _side_by_side(overlays, side_by_side, made.fps)
        print(f"\nside-by-side overlay ({' | '.join(label for label, *_ in results)}): {side_by_side} "
              f"({frames} frames)")
    if any(params.tiny_random_model for _, params, _, _ in runs):
        print(UNTRAINED_BANNER)
    if any(s.interrupted for *_, s in results):
        return 130
    return 0 if all(s.accounted for *_, s in results) else 1


def _replay(args: argparse.Namespace, made, out_bag: Path, params, description: str):
    from gmos_core.bags.replay import Artefacts, ReplayOptions, replay_bag
    from gmos_core.bridge.engine_factory import build_engine
    from gmos_core.cli.replay import node_maker

    return replay_bag(
        made.path, out_bag,
        ReplayOptions(made.image_topic, camera_info_topic=made.camera_info_topic, storage=args.storage,
                      ros_distro=args.ros_distro),
        node_maker(params, build_engine),
        artefacts=Artefacts.beside(out_bag), progress=not args.no_progress,
        model_description=description, handle_signals=True,
    )


def _side_by_side(videos: list[str], out: Path, fps: float) -> int:
    """The overlay videos next to each other, frame by frame (streamed: one frame of each in memory)."""
    import numpy as np

    from gmos_core.io.video import VideoWriter, iter_video_frames

    count = 0
    with VideoWriter(out, fps) as writer:
        for frames in zip(*(iter_video_frames(v) for v in videos)):
            height = min(f.shape[0] for f in frames)
            writer.write(np.concatenate([f[:height] for f in frames], axis=1))
            count += 1
    return count
