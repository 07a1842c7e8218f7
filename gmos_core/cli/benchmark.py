"""`gmos benchmark`: per-stage time per frame and peak memory of one engine mode on a video.

Measures what the engine itself reports (FrameResult.timings_ms) over the segmented frames after a warm-up,
the wall time, the process's peak resident memory (resource.getrusage; includes the models) and, on CUDA,
torch.cuda.max_memory_allocated. Run one mode per process for a clean memory peak
(benchmarks/engine_benchmark.py does that for all modes).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from gmos_core.cli.model_args import add_model_arguments, check_model_choice, resolved_mode, weight_paths

STAGES = ("pi3_encoder", "pi3_decoder", "sam2_encoder", "head", "propagator", "postprocess", "total")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help=".mp4 file or frame folder")
    parser.add_argument("--frames", type=int, default=7, help="frames to push (from the start of the video)")
    parser.add_argument("--warmup", type=int, default=1, help="segmented frames excluded from the means")
    parser.add_argument("--fps", type=float, default=None, help="stream rate (default: the video's)")
    parser.add_argument("--stride", type=int, default=None, help="window stride (wins over fps)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--pixel-limit", type=int, default=None,
                        help="Pi3 pixel budget (default: the model's own; official 255000)")
    parser.add_argument("--resize", type=str, default=None, help="resize input frames to WxH first (e.g. 640x360)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", dest="json_out", default=None, help="also write the figures as JSON here")
    parser.add_argument("--random-full-model", action="store_true",
                        help="the official architecture with random weights for any weight file not given (speed and "
                        "memory only: outputs are meaningless)")
    add_model_arguments(parser, ("gmos_s", "gmos_online", "gmos_offline", "geometric"), "gmos_s",
                        "engine mode to measure (geometric: weight-free, CPU; --threads also sets OpenCV's threads)",
                        unsafe_pickle=False)


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_benchmark(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from gmos_core.engine import EngineConfig, StreamingEngine
    from gmos_core.engine.models import build_engine_models
    from gmos_core.io import discover_sources, resolve_fps_stride

    from gmos_core.cli.devices import check_device

    args.mode = resolved_mode(args)
    # `--model-size full` (deprecated) meant the official architecture, random where no file was given
    random_full = args.random_full_model or args.model_size_full
    if not random_full:
        check_model_choice(args)
    if args.tiny_random_model and random_full:
        raise ValueError("--tiny-random-model and --random-full-model exclude each other")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
        if args.mode == "geometric":
            import cv2

            cv2.setNumThreads(args.threads)
    check_device(args.device)
    source = discover_sources([args.video])[0]
    frames = source.read_all(args.frames)
    if args.resize:
        from PIL import Image

        w, h = (int(v) for v in args.resize.lower().split("x"))
        frames = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])
    fps = args.fps if args.fps is not None else (source.metadata_fps() or 24.0)
    stride = args.stride if args.stride is not None else resolve_fps_stride(fps)
    if args.pixel_limit is not None:
        EngineConfig(pixel_limit=args.pixel_limit)  # refuses a bad budget before any model is loaded
    config = EngineConfig(mode=args.mode, fps=fps, stride=stride, batch_size=args.batch_size,
                          pixel_limit=args.pixel_limit or 255_000, device=args.device, precision=args.precision,
                          tracker=args.tracker)
    rss_before = _peak_rss_mb()
    t0 = time.perf_counter()
    size = "tiny" if args.tiny_random_model else "full"
    models = build_engine_models(config, size, weight_paths(args), allow_random=args.tiny_random_model or random_full)
    build_s = time.perf_counter() - t0
    import dataclasses

    config = dataclasses.replace(config, anchor=models.anchor, window_size=models.window_size,
                                 pixel_limit=args.pixel_limit or models.pixel_limit or 255_000)
    rss_models = _peak_rss_mb()
    if torch.device(args.device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    engine = StreamingEngine(config, models)
    results = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i, frame in enumerate(frames):
        results += engine.push(frame, int(round(i * 1e9 / fps)), key=i)
    results += engine.flush()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    done = [r for r in results if not r.skipped][args.warmup:] or [r for r in results if not r.skipped]
    weight_free = getattr(models, "weight_free", False)  # geometric mode: no networks, its own stages
    refiner = getattr(models, "refiner", None)
    params = {} if weight_free else {name: sum(p.numel() for p in module.parameters()) for name, module in
                                     (("pi3", models.pi3), ("head", models.head), ("sam2", models.predictor),
                                      ("refiner", refiner)) if module is not None}
    if weight_free:
        from gmos_core.geometric.engine import STAGES as stages

        import cv2
    elif refiner is not None:  # the default model's refinement stage: the geometric prior and the refiner
        stages = tuple(s for s in STAGES if s != "total") + ("geometric_prior", "refiner", "edge_snap", "total")
    else:
        stages = STAGES
    report = {
        "mode": args.mode, "model": models.description, "tracker": args.tracker,
        "video": str(args.video), "frames": len(frames), "frame_hw": list(frames.shape[1:3]),
        "pi3_hw": None if weight_free else list(models.pi3_target_size(frames.shape[2], frames.shape[1],
                                                                         config.pixel_limit)),
        "pixel_limit": config.pixel_limit,
        "stride": stride, "batch_size": args.batch_size, "device": args.device, "precision": args.precision,
        "threads": cv2.getNumThreads() if weight_free else torch.get_num_threads(), "params": params,
        "model_build_s": round(build_s, 2),
        "frames_measured": len(done),
        "ms_per_frame": {s: round(float(np.mean([r.timings_ms.get(s, 0.0) for r in done])), 1) for s in stages},
        "wall_s": round(wall, 2), "wall_ms_per_frame": round(1000 * wall / len(frames), 1),
        # CPU time of this process (all threads) per frame: what the frames cost when others load the machine
        "cpu_ms_per_frame": round(1000 * cpu / len(frames), 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1), "rss_after_model_build_mb": round(rss_models, 1),
        "rss_at_start_mb": round(rss_before, 1),
    }
    if torch.device(args.device).type == "cuda":
        report["cuda_max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return report


def run(args: argparse.Namespace) -> int:
    try:
        report = run_benchmark(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"gmos benchmark: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        with open(args.json_out, "w") as handle:
            handle.write(text + "\n")
    return 0
