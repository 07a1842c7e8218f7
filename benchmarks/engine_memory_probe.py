"""Retained-state probe: gmos_online on real tiny models with crafted proposals (a moving square), printing
``StreamingEngine.retained`` every few frames, so the plateau of the engine's buffer and of the propagator's
SAM 2 state can be seen on a longer stream than the unit tests afford.

Usage (repository root): python3 benchmarks/engine_memory_probe.py [--frames 64] [--every 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--every", type=int, default=2, help="segment every N-th frame")
    args = parser.parse_args()
    import torch

    from gmos_core.engine import EngineConfig, StreamingEngine
    from gmos_core.engine.models import build_engine_models
    from test.engine.test_engine_tiny import PIXEL_LIMIT, CraftedProposer, synthetic_video

    torch.set_num_threads(2)
    config = EngineConfig(mode="gmos_online", fps=8.0, pixel_limit=PIXEL_LIMIT)
    models = build_engine_models(config, "tiny", allow_random=True, seed=0)
    crafted = CraftedProposer()
    steps = iter(range(10**9))

    def head(token, sam_btn, high_res):
        crafted.next_frame = min(next(steps) // 3, 11)
        return crafted(token, sam_btn, high_res)

    models.run_head = head
    engine = StreamingEngine(config, models)
    video = synthetic_video(12)
    start = time.perf_counter()
    for i in range(args.frames):
        engine.push(video[min(i // 6, 11)], int(round(i * 1e9 / 8)), key=i, segment=i % args.every == 0)
        if i % 4 == 0:
            print(i, engine.retained, flush=True)
    engine.flush()
    print(f"{args.frames} frames in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
