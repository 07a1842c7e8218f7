"""Turn a video file or a frame folder into a rosbag2 with Image and CameraInfo topics."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from gmos_core.bags.messages import NS_PER_S, WRITABLE_ENCODINGS, InputMessageBuilder
from gmos_core.bags.writer import BagWriter

DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/camera_info"
DEFAULT_FRAME_ID = "camera"
# Fixed default start time: bags from the same video are byte-for-byte repeatable.
DEFAULT_START_NS = 1_700_000_000 * NS_PER_S
DEFAULT_FOLDER_FPS = 30.0


@dataclass
class VideoBagOptions:
    """What ``video_to_bag`` writes; defaults give ``/camera/image_raw`` rgb8 + ``/camera/camera_info``."""

    fps: Optional[float] = None  # None: the video's own rate (frame folders: 30)
    encoding: str = "rgb8"
    frame_id: str = DEFAULT_FRAME_ID
    image_topic: str = DEFAULT_IMAGE_TOPIC
    camera_info_topic: Optional[str] = DEFAULT_CAMERA_INFO_TOPIC  # None: no CameraInfo topic
    start_ns: int = DEFAULT_START_NS
    start_frame: int = 0
    max_frames: Optional[int] = None
    resize: Optional[tuple[int, int]] = None  # (width, height)
    focal_px: Optional[float] = None  # CameraInfo focal length; None = uncalibrated (zeros)
    storage: Optional[str] = None  # mcap | sqlite3; None: the distro's default
    distro: str = "jazzy"

    def __post_init__(self) -> None:
        if self.fps is not None and not (self.fps > 0):
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.encoding not in WRITABLE_ENCODINGS:
            raise ValueError(f"encoding {self.encoding!r} is not supported; expected one of {list(WRITABLE_ENCODINGS)}")
        for name in ("image_topic", "camera_info_topic"):
            topic = getattr(self, name)
            if topic is not None and not (isinstance(topic, str) and topic.startswith("/") and len(topic) > 1):
                raise ValueError(f"{name} must be an absolute topic name like /camera/image_raw, got {topic!r}")
        if self.start_ns < 0:
            raise ValueError(f"start time must be >= 0 ns, got {self.start_ns}")
        if self.start_frame < 0 or (self.max_frames is not None and self.max_frames < 1):
            raise ValueError(f"start_frame must be >= 0 and max_frames >= 1, got {self.start_frame}, {self.max_frames}")
        if self.resize is not None:
            width, height = self.resize
            if width < 2 or height < 2:
                raise ValueError(f"resize must be at least 2x2 pixels, got {width}x{height}")


@dataclass
class VideoBagResult:
    path: Path
    frames: int
    fps: float
    width: int
    height: int
    image_topic: str
    camera_info_topic: Optional[str]
    storage: str


def _frames(source: Path, options: VideoBagOptions) -> tuple[Iterator[np.ndarray], float]:
    from gmos_core.io import iter_frame_folder, iter_video_frames, video_info

    if source.is_dir():
        fps = options.fps or DEFAULT_FOLDER_FPS
        return iter_frame_folder(source, options.start_frame, options.max_frames), fps
    if not source.is_file():
        raise FileNotFoundError(f"input not found: {source}; expected a video file or a frame folder")
    fps = options.fps or video_info(source).fps
    return iter_video_frames(source, options.start_frame, options.max_frames), fps


def _resized(rgb: np.ndarray, size: Optional[tuple[int, int]]) -> np.ndarray:
    if size is None or (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize(tuple(size), Image.BILINEAR))


def video_to_bag(
    source: str | Path,
    out: str | Path,
    options: Optional[VideoBagOptions] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> VideoBagResult:
    """Write ``source`` (video file or frame folder) as a rosbag2 at ``out``.

    Frame i gets header stamp = log time = ``start_ns + round(i * 1e9 / fps)``; the CameraInfo of a frame
    carries the same header. ``progress(i)`` is called after each frame.
    """
    options = options or VideoBagOptions()
    source, out = Path(source), Path(out)
    frames, fps = _frames(source, options)
    count = 0
    size: Optional[tuple[int, int]] = None
    with BagWriter(out, storage=options.storage, distro=options.distro,
                   custom_data={"source": source.name, "fps": f"{fps:.6f}"}) as bag:
        factory = InputMessageBuilder(bag.typestore)
        bag.add_topic(options.image_topic, "sensor_msgs/msg/Image")
        if options.camera_info_topic:
            bag.add_topic(options.camera_info_topic, "sensor_msgs/msg/CameraInfo")
        failure: Optional[ValueError] = None
        try:
            for index, rgb in enumerate(frames):
                rgb = _resized(rgb, options.resize)
                if size is None:
                    size = (rgb.shape[1], rgb.shape[0])
                elif size != (rgb.shape[1], rgb.shape[0]):
                    raise ValueError(f"{source}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, the first was {size[0]}x{size[1]}")
                stamp_ns = options.start_ns + int(round(index * NS_PER_S / fps))
                header = factory.header(stamp_ns, options.frame_id)
                bag.write(options.image_topic, stamp_ns, factory.image_from_rgb(header, rgb, options.encoding))
                if options.camera_info_topic:
                    bag.write(options.camera_info_topic, stamp_ns,
                              factory.camera_info(header, size[0], size[1], options.focal_px))
                bag.checkpoint()
                count += 1
                if progress is not None:
                    progress(count)
        except ValueError as exc:  # a corrupt frame later in the input: keep the frames already written
            failure = exc
        storage = bag.storage
    if count == 0:
        import shutil

        shutil.rmtree(out, ignore_errors=True)  # an empty bag would only mislead
        if failure is not None:
            raise failure
        raise ValueError(f"{source}: no frames (start_frame={options.start_frame}, max_frames={options.max_frames})")
    if failure is not None:
        raise ValueError(f"{failure}; the bag {out} is complete up to that point and keeps the {count} frames "
                         f"written before it") from failure
    return VideoBagResult(out, count, fps, size[0], size[1], options.image_topic, options.camera_info_topic, storage)
