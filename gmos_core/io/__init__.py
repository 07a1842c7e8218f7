"""Video / frame-folder input, DAVIS palette PNGs, overlays and MP4 output (no torch needed)."""
from gmos_core.io.frames import (
    IMAGE_EXTENSIONS,
    VideoSource,
    discover_sources,
    iter_frame_folder,
    list_frame_files,
    read_frame,
    read_frame_folder,
)
from gmos_core.io.overlay import build_indexed_masks, label_boundaries, overlay_frame, overlay_masks
from gmos_core.io.palette import (
    DAVIS_PALETTE,
    probability_to_uint8,
    read_indexed_png,
    save_indexed_png,
    save_probability_png,
)
from gmos_core.io.stride import group_list_with_stride, resolve_fps_stride, stride_from_fps, window_indices
from gmos_core.io.video import VideoInfo, VideoWriter, iter_video_frames, read_video, video_info, write_video

__all__ = [
    "DAVIS_PALETTE", "IMAGE_EXTENSIONS", "VideoInfo", "VideoSource", "VideoWriter", "build_indexed_masks",
    "discover_sources", "group_list_with_stride", "iter_frame_folder", "iter_video_frames", "label_boundaries",
    "list_frame_files", "overlay_frame", "overlay_masks", "probability_to_uint8", "read_frame",
    "read_frame_folder", "read_indexed_png", "read_video", "resolve_fps_stride", "save_indexed_png",
    "save_probability_png", "stride_from_fps", "video_info", "window_indices", "write_video",
]
