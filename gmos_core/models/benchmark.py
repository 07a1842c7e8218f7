"""Per-module CPU/GPU timing of the GMOS models (random weights: speed does not depend on the values).

    python -m gmos_core.models.benchmark --size full --pixel-limit 255000 --repeats 2

Reports, per module, the median wall time of ``--repeats`` runs after one warm-up, and the process peak RSS.
Engine-level (end-to-end) numbers live in the engine's benchmarks.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time


def _timed(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--video-wh", type=int, nargs=2, default=(854, 480), metavar=("W", "H"))
    parser.add_argument("--pixel-limit", type=int, default=255000, help="Pi3 pixel budget (official 255000)")
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", nargs="*", default=[], choices=("pi3", "sam2", "proposer", "gmos_s"))
    args = parser.parse_args(argv)

    import torch

    from gmos_core.models import (Sam2Features, build_gmos_s, build_pi3_encoder, build_proposer,
                                  build_sam2_predictor, encoder_autocast)
    from gmos_core.models.sam2_features import PACKAGED_L_CONFIG, TINY_CONFIG_PATH
    from gmos_core.preprocess import pi3_target_size

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    hp, wp = pi3_target_size(*args.video_wh, pixel_limit=args.pixel_limit)
    rows = []
    print(f"device {device}, threads {args.threads}, size {args.size}, Pi3 input {hp}x{wp}, window {args.window}",
          flush=True)

    with torch.inference_mode():
        pi3_dim = 1024 if args.size == "full" else 64
        token = torch.randn(1, hp // 14, wp // 14, pi3_dim, device=device)
        if "pi3" not in args.skip:
            pi3 = build_pi3_encoder(args.size).to(device).eval()
            frames = torch.rand(args.window, 3, hp, wp, device=device)
            with encoder_autocast(device):
                hidden = pi3.encode_frames(frames[:1]).expand(args.window, -1, -1).contiguous()

                def enc_one():
                    pi3.encode_frames(frames[:1]); sync()

                def dec():
                    pi3.decode(hidden, args.window, hp, wp); sync()

                rows.append(("Pi3 DINOv2 encode, 1 frame", _timed(enc_one, args.repeats, args.warmup)))
                rows.append((f"Pi3 decoder, 1 window of {args.window}", _timed(dec, args.repeats, args.warmup)))
            del pi3, hidden
        sam_dim = 256 if args.size == "full" else 32
        if "sam2" not in args.skip:
            config = PACKAGED_L_CONFIG if args.size == "full" else str(TINY_CONFIG_PATH)
            features = Sam2Features(build_sam2_predictor(config, None, device))
            image = torch.randn(1, 3, 1024, 1024, device=device)

            def sam():
                features(image); sync()

            rows.append(("SAM 2 image encoder + head inputs, 1 frame", _timed(sam, args.repeats, args.warmup)))
            del features
        e = sam_dim
        sam_btn = torch.randn(1, sam_dim, 64, 64, device=device)
        high_res = [torch.randn(1, e // 8, 256, 256, device=device), torch.randn(1, e // 4, 128, 128, device=device)]
        if args.size == "tiny":
            high_res = [torch.randn(1, 4, 256, 256, device=device), torch.randn(1, 8, 128, 128, device=device)]
        if "proposer" not in args.skip:
            head = build_proposer(args.size).to(device).eval()

            def prop():
                head(token, sam_btn, high_res); sync()

            rows.append(("GMOSProposer head, 1 frame (fp32)", _timed(prop, args.repeats, args.warmup)))
        if "gmos_s" not in args.skip:
            head_s = build_gmos_s(args.size).to(device).eval()

            def gmos_s():
                head_s(token, sam_btn, high_res); sync()

            rows.append(("GMOS-S head, 1 frame (fp32)", _timed(gmos_s, args.repeats, args.warmup)))

    width = max(len(name) for name, _ in rows)
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds * 1000:10.1f} ms")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")
    if device.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
