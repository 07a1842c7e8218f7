"""`gmos infer`: segment moving objects in .mp4 files or frame folders (the official inference scripts'
counterpart), writing the official output layout (see gmos_core.io.layout)."""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from gmos_core.cli.model_args import add_model_arguments, check_model_choice, resolved_mode, weight_paths

MODES = ("gmos_s", "gmos_online", "gmos_offline", "geometric")


def _layout_mode(mode: str) -> str:
    """The output layout a mode writes: the geometric mode writes MOS-I outputs, as gmos_online does."""
    return "gmos_online" if mode == "geometric" else mode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help=".mp4 files, frame folders (.jpg/.jpeg/.png), or folders of those")
    parser.add_argument("--save-dir", "-o", required=True, help="output root (official layout below it)")
    parser.add_argument("--fps", type=float, default=None,
                        help="frame rate: sets the stride max(1, int(fps/8)) unless --stride is given; required "
                             "(or --stride) for frame folders; default for mp4: the file's metadata")
    parser.add_argument("--stride", type=int, default=None, help="window stride in frames (wins over --fps)")
    parser.add_argument("--save-mode", default=None,
                        help="'+'-joined outputs: GMOS 'mask', 'mp4' (default mask); GMOS-S 'prob', 'mask', 'mp4' "
                             "(default prob)")
    parser.add_argument("--batch-size", type=int, default=8, help="segmented frames per forward pass")
    parser.add_argument("--pixel-limit", type=int, default=None,
                        help="Pi3 pixel budget (default: the model's own; official 255000)")
    parser.add_argument("--max-frames", type=int, default=None, help="only the first N frames of each input")
    parser.add_argument("--seed", type=int, default=0, help="seed for random weights")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_arguments(parser, MODES, "gmos_offline",
                        "gmos_offline: official two-stage propagation (mos-i + mos); gmos_online: causal streaming "
                        "tracker (mos-i); gmos_s: foreground/background (prob, mask); geometric: weight-free two-view "
                        "geometry on the CPU (mos-i)")


def _mos_i_labels(result):
    """MOS-I label image of a result: the offline result carries it; online = objects moving on the frame."""
    import numpy as np

    if getattr(result, "labels_mos_i", None) is not None:
        return result.labels_mos_i
    moving = result.dynamic_mask if result.dynamic_mask is not None else np.zeros(result.labels.shape, bool)
    return np.where(moving, result.labels, 0).astype(result.labels.dtype)


def _write_result(writer, result, rgb, mode):
    if mode == "gmos_s":
        writer.write(result.frame.index, rgb, {"": result.labels}, prob=result.fg_prob)
    elif mode == "gmos_online":
        writer.write(result.frame.index, rgb, {"mos-i": _mos_i_labels(result)})
    else:
        writer.write(result.frame.index, rgb, {"mos-i": _mos_i_labels(result), "mos": result.labels})


STAGES = ("pi3_encoder", "pi3_decoder", "sam2_encoder", "head", "propagator", "postprocess", "total")


def timing_summary(name: str, timings: list[dict], num_frames: int, wall_s: float) -> str:
    """One line: frames, wall time, mean ms/frame per stage over the segmented frames."""
    import numpy as np

    stages = STAGES if not timings or "pi3_encoder" in timings[0] else list(timings[0])  # geometric: its own
    parts = [f"{s} {np.mean([t.get(s, 0.0) for t in timings]):.1f}" for s in stages] if timings else []
    rate = num_frames / wall_s if wall_s > 0 else float("inf")
    return f"[{name}] {num_frames} frames in {wall_s:.1f} s ({rate:.2f} frames/s); ms/frame: " + ", ".join(parts)


def run_sequence(source, engine, writer, mode, fps_for_stamps, max_frames, progress):
    """Stream one input through the engine and write its outputs. Returns (frame count, per-frame timings)."""
    from collections import deque

    from tqdm import tqdm

    period_ns = 1e9 / fps_for_stamps
    total = source.num_frames()
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    pending_rgb: deque = deque()
    keep_rgb = "mp4" in writer.tokens and mode != "gmos_offline"
    offline_results = []
    timings = []
    count = 0
    bar = tqdm(total=total or None, desc=source.name, unit="frame", disable=not progress, leave=False)

    def consume(batch):
        nonlocal count
        for result in batch:
            rgb = pending_rgb.popleft() if keep_rgb else None
            if mode == "gmos_offline":
                offline_results.append(result)
            else:
                _write_result(writer, result, rgb, mode)
            if not result.skipped:
                timings.append(result.timings_ms)
            count += 1

    first_shape = None
    for index, rgb in enumerate(source.frames(0, max_frames)):
        if first_shape is None:
            first_shape = rgb.shape
        elif rgb.shape != first_shape:
            raise ValueError(f"{source.path}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, the first frame is "
                             f"{first_shape[1]}x{first_shape[0]}; expected all frames of a sequence to have one size")
        if keep_rgb:
            pending_rgb.append(rgb)
        consume(engine.push(rgb, int(round(index * period_ns)), frame_id=source.name, key=index))
        bar.update(1)
    consume(engine.flush())
    bar.close()
    if mode == "gmos_offline":
        # Results arrive together at the end (whole-video propagation); re-read frames for the overlays.
        frames = source.frames(0, max_frames) if "mp4" in writer.tokens else None
        for result in offline_results:
            rgb = next(frames) if frames is not None else None
            _write_result(writer, result, rgb, mode)
    writer.close()
    return count, timings


def run(args: argparse.Namespace) -> int:
    import torch

    from gmos_core.engine import EngineConfig, StreamingEngine
    from gmos_core.engine.models import build_engine_models
    from gmos_core.io import discover_sources, resolve_fps_stride
    from gmos_core.io.layout import DEFAULT_SAVE_MODE, SequenceOutputWriter, parse_save_mode

    from gmos_core.cli.devices import check_device

    args.mode = resolved_mode(args)
    try:
        check_model_choice(args)
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        if args.threads:
            torch.set_num_threads(args.threads)
        check_device(args.device)
        layout = _layout_mode(args.mode)
        tokens = parse_save_mode(args.save_mode or DEFAULT_SAVE_MODE[layout], layout)
        save_dir = Path(args.save_dir)
        if save_dir.exists() and not save_dir.is_dir():
            raise NotADirectoryError(f"--save-dir {save_dir} is an existing file; expected a folder (new or existing)")
        sources = discover_sources(args.inputs)
        if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
            raise ValueError(f"--fps must be a positive frame rate, got {args.fps}")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.max_frames is not None and args.max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
        # Stride per input, with the official precedence, before loading any model.
        plans = []
        for source in sources:
            meta_fps = source.metadata_fps()
            if source.kind == "frames":
                source.num_frames()  # a frame folder's file list is checked here (e.g. mixed extensions)
            fps = args.fps if args.fps is not None else meta_fps
            stride = resolve_fps_stride(fps, args.stride, source=str(source.path))
            # MP4 output rate: the file's metadata fps; frame folders: --fps or 24 (official).
            out_fps = meta_fps if meta_fps else (args.fps or 24.0)
            plans.append((source, stride, fps or out_fps, out_fps))
    except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"gmos infer: {exc}", file=sys.stderr)
        return 2

    try:
        if args.pixel_limit is not None:
            EngineConfig(pixel_limit=args.pixel_limit)  # refuses a bad budget before any model is loaded
        base = EngineConfig(mode=args.mode, pixel_limit=args.pixel_limit or 255_000, device=args.device,
                            precision=args.precision, batch_size=args.batch_size, fps=30.0, tracker=args.tracker,
                            extra={"progress": not args.quiet})
        models = build_engine_models(base, "tiny" if args.tiny_random_model else "full", weight_paths(args),
                                     allow_random=args.tiny_random_model, seed=args.seed)
        pixel_limit = args.pixel_limit if args.pixel_limit is not None else (models.pixel_limit or 255_000)
        # The anchor and window are properties of the trained weights; building an engine once here refuses a
        # mode/tracker the model cannot run (e.g. --tracker sam2 with the default model) before any input is read.
        StreamingEngine(EngineConfig(mode=args.mode, fps=30.0, anchor=models.anchor, window_size=models.window_size,
                                     pixel_limit=pixel_limit, tracker=args.tracker, device=args.device), models)
    except (ValueError, FileNotFoundError) as exc:
        print(f"gmos infer: {exc}", file=sys.stderr)
        return 2
    print(f"gmos infer: model: {models.description}", file=sys.stderr)
    if models.random_weights:
        print("gmos infer: WARNING: RANDOM WEIGHTS — these outputs are meaningless", file=sys.stderr)

    failures = []
    for source, stride, stamp_fps, out_fps in plans:
        config = EngineConfig(mode=args.mode, fps=stamp_fps, stride=stride, pixel_limit=pixel_limit,
                              anchor=models.anchor, window_size=models.window_size, tracker=args.tracker,
                              device=args.device, precision=args.precision, batch_size=args.batch_size,
                              max_buffered_frames=max(256, models.window_size * stride + args.batch_size),
                              extra={"progress": not args.quiet})
        engine = StreamingEngine(config, models)
        writer = SequenceOutputWriter(args.save_dir, layout, tokens, source.name, out_fps)
        start = time.perf_counter()
        try:
            count, timings = run_sequence(source, engine, writer, layout, stamp_fps, args.max_frames,
                                          not args.quiet)
        except (ValueError, OSError) as exc:  # bad input data (corrupt video/frame, size change): next input
            writer.close()
            failures.append(f"{source.name}: {exc}")
            print(f"gmos infer: FAILED {source.name} after {writer.frames_written} written frames (reported at "
                  f"the end); going on with the other inputs", file=sys.stderr)
            continue
        print(timing_summary(source.name, timings, count, time.perf_counter() - start) + f" (stride {stride})",
              file=sys.stderr)
    print(f"gmos infer: outputs in {Path(args.save_dir)}", file=sys.stderr)
    if failures:
        print(f"gmos infer: {len(failures)} of {len(plans)} inputs failed (their outputs are missing or "
              f"incomplete; the others are complete):", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    return 0
