"""`gmos bag-from-video VIDEO|DIR --out BAG`: a video or frame folder as a rosbag2 (Image + CameraInfo)."""
from __future__ import annotations

import argparse
import sys


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 640x480, got {text!r}") from None
    return width, height


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gmos_core.bags.from_video import (DEFAULT_CAMERA_INFO_TOPIC, DEFAULT_FOLDER_FPS, DEFAULT_FRAME_ID,
                                           DEFAULT_IMAGE_TOPIC, DEFAULT_START_NS)
    from gmos_core.bags.messages import WRITABLE_ENCODINGS

    parser.add_argument("source", metavar="VIDEO|DIR", help="a video file (mp4, ...) or a folder of .jpg/.png frames")
    parser.add_argument("--out", required=True, help="output bag folder (must not exist)")
    parser.add_argument("--fps", type=float, default=None,
                        help=f"frame rate for the header stamps (default: the video's; frame folders: {DEFAULT_FOLDER_FPS:g})")
    parser.add_argument("--encoding", default="rgb8", choices=WRITABLE_ENCODINGS, help="Image encoding (default rgb8)")
    parser.add_argument("--frame-id", default=DEFAULT_FRAME_ID, help=f"header.frame_id (default {DEFAULT_FRAME_ID})")
    parser.add_argument("--image-topic", default=DEFAULT_IMAGE_TOPIC, help=f"default {DEFAULT_IMAGE_TOPIC}")
    parser.add_argument("--camera-info-topic", default=DEFAULT_CAMERA_INFO_TOPIC,
                        help=f"default {DEFAULT_CAMERA_INFO_TOPIC}; pass '' for none")
    parser.add_argument("--start-time", type=float, default=DEFAULT_START_NS / 1e9,
                        help="stamp of the first frame in seconds since the epoch (default %(default).0f, fixed so that "
                             "bags are repeatable)")
    parser.add_argument("--start-frame", type=int, default=0, help="skip this many frames first")
    parser.add_argument("--max-frames", type=int, default=None, help="write at most this many frames")
    parser.add_argument("--resize", type=_size, default=None, metavar="WxH", help="resize frames (bilinear), e.g. 640x480")
    parser.add_argument("--focal-px", type=float, default=None,
                        help="CameraInfo focal length in pixels (default: none, intrinsics all zero = uncalibrated)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default=None,
                        help="storage plugin (default: mcap for jazzy, sqlite3 for humble)")
    parser.add_argument("--ros-distro", choices=("humble", "jazzy"), default="jazzy",
                        help="ROS 2 distribution that will read the bag (metadata version 8 or 9; default jazzy)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from gmos_core.bags.from_video import VideoBagOptions, video_to_bag

    try:
        options = VideoBagOptions(
            fps=args.fps, encoding=args.encoding, frame_id=args.frame_id, image_topic=args.image_topic,
            camera_info_topic=args.camera_info_topic or None, start_ns=int(round(args.start_time * 1e9)),
            start_frame=args.start_frame, max_frames=args.max_frames, resize=args.resize, focal_px=args.focal_px,
            storage=args.storage, distro=args.ros_distro,
        )
        with tqdm(desc="bag-from-video", unit="frame", disable=None) as bar:
            result = video_to_bag(Path(args.source), Path(args.out), options, progress=lambda n: bar.update(1))
    except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"gmos bag-from-video: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {result.path} ({result.storage}): {result.frames} frames {result.width}x{result.height} "
          f"at {result.fps:.3f} fps on {result.image_topic}"
          + (f" and {result.camera_info_topic}" if result.camera_info_topic else ""))
    return 0
