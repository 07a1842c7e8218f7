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

STAGES = ("pi3_encoder", "pi3_decoder", "sam2_encoder", "head", "propagator", "postprocess", "total")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help=".mp4 file or frame folder")
    parser.add_argument("--mode", choices=("gmos_s", "gmos_online", "gmos_offline"), default="gmos_s")
    parser.add_argument("--model-size", choices=("full", "tiny"), default="tiny")
    parser.add_argument("--frames", type=int, default=7, help="frames to push (from the start of the video)")
    parser.add_argument("--warmup", type=int, default=1, help="segmented frames excluded from the means")
    parser.add_argument("--fps", type=float, default=None, help="stream rate (default: the video's)")
    parser.add_argument("--stride", type=int, default=None, help="window stride (wins over fps)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--pixel-limit", type=int, default=255_000)
    parser.add_argument("--resize", type=str, default=None, help="resize input frames to WxH first (e.g. 640x360)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    parser.add_argument("--pi3-ckpt")
    parser.add_argument("--sam2-ckpt")
    parser.add_argument("--gmos-ckpt")
    parser.add_argument("--sam2-config", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", dest="json_out", default=None, help="also write the figures as JSON here")


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_benchmark(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from gmos_core.engine import EngineConfig, StreamingEngine
    from gmos_core.engine.models import WeightPaths, build_engine_models
    from gmos_core.io import discover_sources, resolve_fps_stride

    from gmos_core.cli.devices import check_device

    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    check_device(args.device)
    source = discover_sources([args.video])[0]
    frames = source.read_all(args.frames)
    if args.resize:
        from PIL import Image

        w, h = (int(v) for v in args.resize.lower().split("x"))
        frames = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])
    fps = args.fps if args.fps is not None else (source.metadata_fps() or 24.0)
    stride = args.stride if args.stride is not None else resolve_fps_stride(fps)
    config = EngineConfig(mode=args.mode, fps=fps, stride=stride, batch_size=args.batch_size,
                          pixel_limit=args.pixel_limit, device=args.device, precision=args.precision)
    rss_before = _peak_rss_mb()
    t0 = time.perf_counter()
    models = build_engine_models(config, args.model_size,
                                 WeightPaths(args.pi3_ckpt, args.sam2_ckpt, args.gmos_ckpt, args.sam2_config),
                                 allow_random=True)
    build_s = time.perf_counter() - t0
    rss_models = _peak_rss_mb()
    if torch.device(args.device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    engine = StreamingEngine(config, models)
    results = []
    t0 = time.perf_counter()
    for i, frame in enumerate(frames):
        results += engine.push(frame, int(round(i * 1e9 / fps)), key=i)
    results += engine.flush()
    wall = time.perf_counter() - t0
    done = [r for r in results if not r.skipped][args.warmup:] or [r for r in results if not r.skipped]
    params = {name: sum(p.numel() for p in module.parameters())
              for name, module in (("pi3", models.pi3), ("head", models.head), ("sam2", models.predictor))}
    report = {
        "mode": args.mode, "model_size": args.model_size, "models": models.description,
        "video": str(args.video), "frames": len(frames), "frame_hw": list(frames.shape[1:3]),
        "pi3_hw": list(models.pi3_target_size(frames.shape[2], frames.shape[1], args.pixel_limit)),
        "stride": stride, "batch_size": args.batch_size, "device": args.device, "precision": args.precision,
        "threads": torch.get_num_threads(), "params": params, "model_build_s": round(build_s, 2),
        "frames_measured": len(done),
        "ms_per_frame": {s: round(float(np.mean([r.timings_ms.get(s, 0.0) for r in done])), 1) for s in STAGES},
        "wall_s": round(wall, 2), "wall_ms_per_frame": round(1000 * wall / len(frames), 1),
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
