"""`gmos demo`: the README's main job in one command.

Makes a rosbag2 from the bundled clip (gmos_core/data/dog_demo.mp4), replays it through the node's logic
with the shipped default model (or the one the model flags choose) and prints the summary and where the
overlay video and the plots are. Every output names the model.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEMO_CLIP = Path(__file__).resolve().parents[1] / "data" / "dog_demo.mp4"
DEFAULT_DEMO_FRAMES = 60


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


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from gmos_core.bags.from_video import VideoBagOptions, video_to_bag
    from gmos_core.bags.replay import Artefacts, ReplayOptions, replay_bag
    from gmos_core.bridge.engine_factory import build_engine
    from gmos_core.cli.devices import check_device
    from gmos_core.cli.replay import (UNTRAINED_BANNER, check_model_choice, model_description, node_maker,
                                      node_params_from_args)

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2 if args.device == "cpu" else 8)))
    source = Path(args.video) if args.video else DEMO_CLIP
    if not source.exists():
        print(f"gmos demo: error: video not found: {source}", file=sys.stderr)
        return 2
    args.camera_info_topic = "/camera/camera_info"
    args.depth_topic = None
    try:
        params = node_params_from_args(args)
        check_device(params.device)
        check_model_choice(params)
        if args.max_frames is not None and args.max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
        description = model_description(params)  # names the model (and fails early if its file is missing)
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
    print(UNTRAINED_BANNER if params.tiny_random_model else f"model: {description}")
    print(f"[1/2] making a rosbag2 from {source}")
    try:
        with tqdm(desc="bag-from-video", unit="frame", disable=args.no_progress or None) as bar:
            made = video_to_bag(source, run_dir / "input_bag",
                                VideoBagOptions(max_frames=args.max_frames, storage=args.storage,
                                                distro=args.ros_distro, frame_id="camera"),
                                progress=lambda n: bar.update(1))
        print(f"      {made.path}: {made.frames} frames {made.width}x{made.height} at {made.fps:.2f} fps "
              f"on {made.image_topic} + {made.camera_info_topic}")
        print(f"[2/2] replaying it through the GMOS node logic ({description})")
        out_bag = run_dir / "output_bag"
        summary = replay_bag(
            made.path, out_bag,
            ReplayOptions(made.image_topic, camera_info_topic=made.camera_info_topic, storage=args.storage,
                          ros_distro=args.ros_distro),
            node_maker(params, build_engine),
            artefacts=Artefacts.beside(out_bag), progress=not args.no_progress,
            model_description=description, handle_signals=True,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"gmos demo: error: {exc}", file=sys.stderr)
        return 2
    print()
    print(summary.format())
    print()
    print(f"output bag:  {out_bag}   (ros2 bag play {out_bag}; or read it with rosbags)")
    for name, path in summary.artefacts.items():
        print(f"{name + ':':<22} {path}")
    if params.tiny_random_model:
        print(UNTRAINED_BANNER)
    if summary.interrupted:
        return 130
    return 0 if summary.accounted else 1
