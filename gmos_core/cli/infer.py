"""`gmos infer`: segment moving objects in .mp4 files or frame folders (the official inference scripts'
counterpart), writing the official output layout (see gmos_core.io.layout)."""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

MODES = ("gmos_s", "gmos_online", "gmos_offline")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help=".mp4 files, frame folders (.jpg/.jpeg/.png), or folders of those")
    parser.add_argument("--save-dir", "-o", required=True, help="output root (official layout below it)")
    parser.add_argument("--mode", choices=MODES, default="gmos_offline",
                        help="gmos_offline: official two-stage propagation (mos-i + mos); gmos_online: causal "
                             "streaming tracker (mos-i); gmos_s: foreground/background (prob, mask)")
    parser.add_argument("--fps", type=float, default=None,
                        help="frame rate: sets the stride max(1, int(fps/8)) unless --stride is given; required "
                             "(or --stride) for frame folders; default for mp4: the file's metadata")
    parser.add_argument("--stride", type=int, default=None, help="window stride in frames (wins over --fps)")
    parser.add_argument("--save-mode", default=None,
                        help="'+'-joined outputs: GMOS 'mask', 'mp4' (default mask); GMOS-S 'prob', 'mask', 'mp4' "
                             "(default prob)")
    parser.add_argument("--batch-size", type=int, default=8, help="segmented frames per forward pass")
    parser.add_argument("--model-size", choices=("full", "tiny"), default="full",
                        help="tiny = small RANDOM models for tests (outputs are meaningless)")
    parser.add_argument("--random-weights", action="store_true",
                        help="allow random weights for any file not given (outputs are meaningless)")
    parser.add_argument("--pi3-ckpt", help="Pi3 weights (.safetensors, or .pt/.pth read with weights_only=True)")
    parser.add_argument("--sam2-ckpt", help="SAM 2.1 checkpoint (sam2.1_hiera_large.pt or .safetensors)")
    parser.add_argument("--gmos-ckpt", help="GMOS proposer checkpoint (gmos modes) or GMOS-S checkpoint (gmos_s)")
    parser.add_argument("--allow-unsafe-pickle", action="store_true",
                        help="fully unpickle .pt/.pth checkpoints that weights_only loading rejects (can execute "
                             "code: trusted files only)")
    parser.add_argument("--sam2-config", default=None,
                        help="SAM 2 config: packaged name (configs/sam2.1/sam2.1_hiera_l.yaml) or YAML path")
    parser.add_argument("--pixel-limit", type=int, default=255_000, help="Pi3 pixel budget (official 255000)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="encoder precision (auto: CUDA bf16/fp16 autocast, CPU fp32)")
    parser.add_argument("--max-frames", type=int, default=None, help="only the first N frames of each input")
    parser.add_argument("--seed", type=int, default=0, help="seed for random weights")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


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

    parts = [f"{s} {np.mean([t.get(s, 0.0) for t in timings]):.1f}" for s in STAGES] if timings else []
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
    from gmos_core.engine.models import WeightPaths, build_engine_models
    from gmos_core.io import discover_sources, resolve_fps_stride
    from gmos_core.io.layout import DEFAULT_SAVE_MODE, SequenceOutputWriter, parse_save_mode

    from gmos_core.cli.devices import check_device

    try:
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        if args.threads:
            torch.set_num_threads(args.threads)
        check_device(args.device)
        tokens = parse_save_mode(args.save_mode or DEFAULT_SAVE_MODE[args.mode], args.mode)
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

    random_ok = args.random_weights or args.model_size == "tiny"
    weights = WeightPaths(pi3=args.pi3_ckpt, sam2=args.sam2_ckpt, head=args.gmos_ckpt, sam2_config=args.sam2_config,
                          allow_unsafe_pickle=args.allow_unsafe_pickle)
    try:
        base = EngineConfig(mode=args.mode, pixel_limit=args.pixel_limit, device=args.device,
                            precision=args.precision, batch_size=args.batch_size, fps=30.0,
                            extra={"progress": not args.quiet})
        models = build_engine_models(base, args.model_size, weights, allow_random=random_ok, seed=args.seed)
    except (ValueError, FileNotFoundError) as exc:
        print(f"gmos infer: {exc}", file=sys.stderr)
        return 2
    print(f"gmos infer: {models.description}", file=sys.stderr)
    if models.random_weights:
        print("gmos infer: WARNING: RANDOM WEIGHTS — these outputs are meaningless", file=sys.stderr)

    failures = []
    for source, stride, stamp_fps, out_fps in plans:
        config = EngineConfig(mode=args.mode, fps=stamp_fps, stride=stride, pixel_limit=args.pixel_limit,
                              device=args.device, precision=args.precision, batch_size=args.batch_size,
                              max_buffered_frames=max(256, 5 * stride + args.batch_size),
                              extra={"progress": not args.quiet})
        engine = StreamingEngine(config, models)
        writer = SequenceOutputWriter(args.save_dir, args.mode, tokens, source.name, out_fps)
        start = time.perf_counter()
        try:
            count, timings = run_sequence(source, engine, writer, args.mode, stamp_fps, args.max_frames,
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
