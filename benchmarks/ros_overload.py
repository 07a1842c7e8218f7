"""The node under a 2x overload: frames arrive twice as fast as the engine processes them.

    python3 benchmarks/ros_overload.py --frames 120 --out benchmarks/ros_overload_results

A simulated clock drives the input, and the engine's real compute time drives the clock: the worker takes
one queued frame, the CPU time that step takes advances the simulated clock, and every frame whose
arrival time has passed is handed to NodeCore.on_image before the next step (exactly what the live
node's callback does meanwhile). The clock is also the node clock, so the latency NodeCore records is
"output time - source stamp" as /diagnostics reports it.

CPU time (torch on one thread), not wall time, so that other load on the machine does not change the
overload ratio between the measurement of T and the run; on an otherwise idle machine the two agree.

1. measure: the engine's processing time per segmented frame, T (tiny model, after warm-up);
2. run the node logic with input period T/2, with the overload policy (defaults) and, for contrast,
   without it (an unbounded queue, never skipping): latency p50/p95/max, outputs, skipped windows,
   dropped frames; a plot of latency over the stream.

The tiny random model stands in for the real one (its outputs are meaningless; its compute cost is what
matters here). Results: JSON + PNG under --out; the figures are quoted in docs/ros.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gmos_core.bridge import NodeCore, NodeParams, RosbagsMessageFactory  # noqa: E402
from gmos_core.bridge.messages import IMAGE  # noqa: E402

HEIGHT, WIDTH = 60, 80


class SimClock:
    def __init__(self, start_ns: int):
        self.now = start_ns

    def __call__(self) -> int:
        return self.now


def make_frames(factory, count: int, period_ns: int, start_ns: int):
    """(arrival_ns, Image) pairs: a bright square moving over noise; stamp = arrival (zero transport delay)."""
    frames = []
    rng = np.random.default_rng(0)
    for i in range(count):
        rgb = (rng.random((HEIGHT, WIDTH, 3)) * 60).astype(np.uint8)
        x = (4 + 2 * i) % (WIDTH - 16)
        rgb[20:36, x:x + 14] = (230, 40, 40)
        stamp = start_ns + i * period_ns
        msg = factory.new(IMAGE, header=factory.header(stamp, "camera"), height=HEIGHT, width=WIDTH,
                          encoding="rgb8", is_bigendian=0, step=WIDTH * 3, data=factory.uint8_array(rgb.reshape(-1)))
        frames.append((stamp, msg))
    return frames


def tiny_params(**changes) -> NodeParams:
    base = dict(mode="gmos_s", device="cpu", precision="fp32", tiny_random_model=True, fps=8.0,
                pixel_limit=14 * 14 * 24)
    base.update(changes)
    return NodeParams(**base)


def measure_processing_time(engine_factory, factory, frames: int) -> float:
    """Mean wall seconds per segmented frame, after 2 warm-up frames (synchronous, no overload)."""
    core = NodeCore(tiny_params(), engine_factory, logger=logging.getLogger("bench"))
    core.activate()
    period = 125_000_000
    times = []
    for i, (_, msg) in enumerate(make_frames(factory, frames + 2, period, 10**18)):
        core.on_image(msg)
        start = time.process_time()
        core.process_pending()
        if i >= 2 + core.engine.lookahead_frames:  # every step now emits one segmented frame
            times.append(time.process_time() - start)
    return float(np.mean(times))


def simulate(engine_factory, factory, params: NodeParams, count: int, period_ns: int, progress: bool) -> dict:
    from tqdm import tqdm

    start = 10**18
    clock = SimClock(start)
    core = NodeCore(params, engine_factory, clock_ns=clock, logger=logging.getLogger("bench"))
    core.activate()
    frames = make_frames(factory, count, period_ns, start)
    next_arrival = 0
    outputs = []
    bar = tqdm(total=count, desc="frames arrived", disable=not progress)
    while True:
        while next_arrival < count and frames[next_arrival][0] <= clock.now:  # the callback side
            core.on_image(frames[next_arrival][1])
            next_arrival += 1
            bar.update(1)
        if core.queue_length == 0:
            if next_arrival >= count:
                break
            clock.now = frames[next_arrival][0]  # idle until the next frame arrives
            continue
        started = time.process_time()
        records = core.process_pending(max_frames=1)  # the worker side: one frame
        clock.now += int((time.process_time() - started) * 1e9)
        outputs += [(clock.now, r.latency_ns) for r in records]
    bar.close()
    latency_ms = np.array([lat for _, lat in outputs]) / 1e6
    c = core.counters
    return {
        "frames_in": count,
        "outputs": len(outputs),
        "latency_ms": {"p50": float(np.percentile(latency_ms, 50)), "p95": float(np.percentile(latency_ms, 95)),
                       "max": float(latency_ms.max()),
                       "last_quarter_mean": float(latency_ms[-max(1, len(latency_ms) // 4):].mean())}
        if len(outputs) else None,
        "skipped_windows": c.skipped_windows,
        "frames_context_only": c.skipped_frames,
        "frames_dropped": c.dropped_frames,
        "frames_left_in_engine": count - c.dropped_frames - c.skipped_frames - len(outputs),
        "series": [((t - start) / 1e9, lat / 1e6) for t, lat in outputs],
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, res in results.items():
        if res["series"]:
            t, lat = zip(*res["series"])
            ax.plot(t, lat, ".-", label=f"{name}: {res['outputs']} outputs, p95 {res['latency_ms']['p95']:.0f} ms")
    ax.set_xlabel("stream time (s, simulated clock)")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_title(f"GMOS node logic at 2x overload (tiny model, T = {results['with policy']['T_ms']:.0f} ms)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=120, help="input frames with the overload policy")
    parser.add_argument("--baseline-frames", type=int, default=60, help="input frames without the policy")
    parser.add_argument("--measure-frames", type=int, default=6, help="frames to measure T")
    parser.add_argument("--overload", type=float, default=2.0, help="input rate / processing rate")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/ros_overload_results"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # CPU time of the step == its compute time
    from rosbags.typesys import Stores, get_typestore

    from gmos_core.bridge.engine_factory import engine_config
    from gmos_core.engine.models import build_engine_models
    from gmos_core.engine.streaming import StreamingEngine

    models = {}

    def engine_factory(params):
        config = engine_config(params)
        if params.mode not in models:
            models[params.mode] = build_engine_models(config, size="tiny", allow_random=True)
        return StreamingEngine(config, models[params.mode])

    factory = RosbagsMessageFactory(get_typestore(Stores.ROS2_HUMBLE))
    t_seconds = measure_processing_time(engine_factory, factory, args.measure_frames)
    period_ns = int(t_seconds / args.overload * 1e9)
    print(f"processing time per segmented frame T = {t_seconds * 1e3:.0f} ms; input period "
          f"{period_ns / 1e6:.0f} ms ({args.overload:g}x overload)")
    results = {}
    for name, params, count in (
        ("with policy", tiny_params(), args.frames),
        ("no policy", tiny_params(max_queue_frames=1000, skip_backlog_frames=1000), args.baseline_frames),
    ):
        res = simulate(engine_factory, factory, params, count, period_ns, not args.no_progress)
        res.update(T_ms=t_seconds * 1e3, input_period_ms=period_ns / 1e6,
                   policy={"max_queue_frames": params.max_queue_frames,
                           "skip_backlog_frames": params.skip_backlog_frames})
        results[name] = res
        lat = res["latency_ms"]
        print(f"{name:12s} frames in {count:4d}  outputs {res['outputs']:4d}  skipped windows "
              f"{res['skipped_windows']:3d}  context-only {res['frames_context_only']:3d}  dropped "
              f"{res['frames_dropped']:3d}  latency ms p50 {lat['p50']:.0f} p95 {lat['p95']:.0f} max {lat['max']:.0f} "
              f"(max = {lat['max'] / res['T_ms']:.1f} T)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {k: {kk: vv for kk, vv in v.items() if kk != "series"} for k, v in results.items()}, indent=2))
    plot(results, args.out / "latency.png")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'latency.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
