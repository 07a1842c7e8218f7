"""`gmos replay IN_BAG --image-topic T --out OUT_BAG`: replay a rosbag2 through the node's logic.

Reads rosbag2 (mcap or sqlite3, Humble or Jazzy, or a bare .mcap/.db3), runs every image through
gmos_core.bridge.NodeCore (the live node's logic) and writes the node's topics into a new bag, with the
input topics copied alongside. Prints a summary; writes a motion-timeline plot and an overlay video.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable

UNTRAINED_BANNER = (
    "*** UNTRAINED MODEL: tiny random-weights configuration: masks are meaningless; "
    "leave out --tiny-random-model for the shipped default model ***"
)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Model flags shared by `gmos replay` and `gmos demo` (the vocabulary of gmos_core.cli.model_args, the
    node's modes) plus the node's stream settings."""
    from gmos_core.bridge import params as node_params
    from gmos_core.cli.model_args import add_model_arguments as add_shared

    modes = getattr(node_params, "MODES", None) or node_params.MODELS
    group = add_shared(parser, tuple(modes), "gmos_online",
                       "gmos_online: instances + motion state; gmos_s: foreground only"
                       + ("; geometric: weight-free baseline" if "geometric" in modes else ""),
                       unsafe_pickle=False, old_mode_flag=True)
    group.add_argument("--pixel-limit", type=int, default=None,
                       help="Pi3 pixel budget per frame (default: the model's own; the paper's 255000 for the "
                       "official weights)")
    group.add_argument("--fps", type=float, default=None,
                       help="nominal frame rate (sets the window stride); default: estimated from the stamps")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("in_bag", metavar="IN_BAG", help="input rosbag2 folder, or a .mcap / .db3 file")
    parser.add_argument("--image-topic", required=True, help="sensor_msgs/Image or CompressedImage topic")
    parser.add_argument("--camera-info-topic", default=None, help="sensor_msgs/CameraInfo topic (optional)")
    parser.add_argument("--depth-topic", default=None, help="registered depth Image topic (optional)")
    parser.add_argument("--out", required=True, help="output bag folder (must not exist)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default=None,
                        help="output storage (default: mcap for jazzy, sqlite3 for humble)")
    parser.add_argument("--ros-distro", choices=("humble", "jazzy"), default="jazzy",
                        help="ROS 2 distribution that will read the output (rosbag2 metadata v8 or v9; default jazzy)")
    parser.add_argument("--namespace", default="/gmos", help="namespace of the output topics (default /gmos)")
    parser.add_argument("--no-copy-inputs", action="store_true", help="do not copy the input topics into the output")
    parser.add_argument("--debug-image", action="store_true", help="also write <namespace>/debug_image (rgb8 overlay)")
    parser.add_argument("--no-diagnostics", action="store_true", help="do not write /diagnostics")
    parser.add_argument("--instance-mask-encoding", choices=("mono16", "mono8"), default="mono16")
    parser.add_argument("--sync-slop", type=float, default=0.01,
                        help="max |stamp difference| in seconds pairing camera_info/depth with an image (default 0.01)")
    parser.add_argument("--max-frames", type=int, default=None, help="replay at most this many images")
    parser.add_argument("--overlay", default=None, help="overlay MP4 path (default OUT_overlay.mp4)")
    parser.add_argument("--no-overlay", action="store_true", help="do not write the overlay video")
    parser.add_argument("--timeline", default=None, help="motion timeline PNG path (default OUT_timeline.png)")
    parser.add_argument("--summary-json", default=None, help="summary JSON path (default OUT_summary.json)")
    parser.add_argument("--gt-dir", default=None, help="evaluate against a DAVIS-style folder of label PNGs")
    parser.add_argument("--gt-topic", default=None, help="evaluate against a mono8/mono16 label Image topic")
    parser.add_argument("--gt-bag", default=None, help="bag holding --gt-topic (default IN_BAG)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(parser)


def node_params_from_args(args: argparse.Namespace) -> Any:
    from gmos_core.bridge.params import SPECS_BY_NAME, NodeParams
    from gmos_core.cli.model_args import resolved_mode

    values = dict(
        mode=resolved_mode(args),
        pi3_weights=args.pi3_weights or "",
        head_weights=args.head_weights or "",
        sam2_checkpoint=args.sam2_checkpoint or "",
        tiny_random_model=bool(args.tiny_random_model),
        device=args.device,
        sam2_config=getattr(args, "sam2_config", None) or "",
        precision=args.precision or "auto",
        fps=float(args.fps or 0.0),
        # None = the model's own budget (the parameter's default 0, which engine_factory reads that way)
        pixel_limit=int(args.pixel_limit if getattr(args, "pixel_limit", None) is not None
                        else SPECS_BY_NAME["pixel_limit"].default),
        use_camera_info=bool(getattr(args, "camera_info_topic", None)),
        use_depth=bool(getattr(args, "depth_topic", None)),
        instance_mask_encoding=getattr(args, "instance_mask_encoding", "mono16"),
        publish_debug_image=bool(getattr(args, "debug_image", False)),
        sync_slop_s=float(getattr(args, "sync_slop", 0.01)),
    )
    if "tracker" in SPECS_BY_NAME:
        values["tracker"] = getattr(args, "tracker", "auto")
    return NodeParams(**values)


def check_model_choice(params: Any) -> None:
    """Weight parameters: all three official files, one GMOS-format checkpoint, none (the shipped default model),
    or the tiny random model without files. ValueError names what was wrong."""
    from gmos_core.cli.model_args import check_model_choice as check

    check(argparse.Namespace(pi3_weights=params.pi3_weights, sam2_checkpoint=params.sam2_checkpoint,
                             head_weights=params.head_weights, tiny_random_model=params.tiny_random_model))


def node_maker(params: Any, build_engine: Callable[[Any], Any]) -> Callable[[Callable[[], int]], Any]:
    """clock -> activated NodeCore (what replay_bag wants)."""

    def make(clock_ns: Callable[[], int]) -> Any:
        from gmos_core.bridge.core import NodeCore

        node = NodeCore(params, build_engine, clock_ns=clock_ns, logger=logging.getLogger("gmos.replay"))
        node.activate()
        return node

    return make


def model_description(params: Any) -> str:
    """The model a NodeParams selects, named as every output shows it (read from the checkpoint's metadata
    without building the models)."""
    from gmos_core.cli.model_args import describe_model

    return describe_model(params.mode, getattr(params, "tracker", "auto"), params.tiny_random_model,
                          params.pi3_weights, params.sam2_checkpoint, params.head_weights)


def run(args: argparse.Namespace) -> int:
    import torch

    from gmos_core.bridge.engine_factory import build_engine

    from gmos_core.bags.reader import BagInputError
    from gmos_core.bags.recovery import BagRecoveryError
    from gmos_core.bags.replay import Artefacts, ReplayOptions, replay_bag
    from gmos_core.bags.writer import BagWriteError
    from gmos_core.cli.devices import check_device

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2 if args.device == "cpu" else 8)))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
            raise ValueError(f"--fps must be a positive frame rate, got {args.fps}; leave it out to estimate the "
                             "rate from the stamps")
        params = node_params_from_args(args)
        check_device(params.device)
        check_model_choice(params)
        options = ReplayOptions(
            image_topic=args.image_topic, camera_info_topic=args.camera_info_topic, depth_topic=args.depth_topic,
            namespace=args.namespace, storage=args.storage, ros_distro=args.ros_distro,
            copy_inputs=not args.no_copy_inputs, debug_image=args.debug_image, diagnostics=not args.no_diagnostics,
            max_frames=args.max_frames, sync_slop_s=args.sync_slop,
        )
        out = Path(args.out)
        artefacts = Artefacts.beside(out, overlay=not args.no_overlay)
        if args.overlay:
            artefacts.overlay_mp4 = Path(args.overlay)
        if args.timeline:
            artefacts.timeline_png = Path(args.timeline)
        if args.summary_json:
            artefacts.summary_json = Path(args.summary_json)
        evaluate = None
        if args.gt_dir or args.gt_topic:
            from gmos_core.bags.evaluation import make_evaluator

            evaluate = make_evaluator(gt_dir=Path(args.gt_dir) if args.gt_dir else None,
                                      gt_bag=Path(args.gt_bag or args.in_bag), gt_topic=args.gt_topic)
        description = model_description(params)
        print(UNTRAINED_BANNER if params.tiny_random_model else f"model: {description}", file=sys.stderr)
        summary = replay_bag(
            Path(args.in_bag), out, options, node_maker(params, build_engine),
            artefacts=artefacts, progress=not args.no_progress, model_description=description,
            evaluate=evaluate, handle_signals=True,
        )
    except (BagInputError, BagWriteError, BagRecoveryError, ValueError, FileNotFoundError) as exc:
        print(f"gmos replay: error: {exc}", file=sys.stderr)
        return 2
    print(summary.format())
    if params.tiny_random_model:
        print(UNTRAINED_BANNER)
    if summary.interrupted:
        return 130
    return 0 if summary.accounted else 1
