"""`mode: geometric` in the node's logic at camera rate: NodeCore + bridge.engine_factory with the worker thread
(as the live rclpy node runs it), fed in real time at --rate Hz with 480x272 frames from a real clip, counting
what the overload policy had to skip.

    OMP_NUM_THREADS=2 python3 benchmarks/geometric_node_rate.py [--video /work/shared/data/videos/bedroom.mp4]
        [--rate 10] [--frames 150] [--size 480x272]

Prints one JSON line: frames in / segmented outputs / skipped windows / dropped frames, output rate, end-to-end
latency (node clock at output minus the frame's stamp: includes the centred window's look-ahead of 2 strides)
and the engine's per-stage times. Frames in = outputs out and no skipped windows is the pass condition.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default="/work/shared/data/videos/bedroom.mp4")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="480x272")
    args = parser.parse_args()
    import cv2
    from rosbags.typesys import Stores, get_typestore

    from gmos_core.bridge import NodeCore, NodeParams, RosbagsMessageFactory
    from gmos_core.bridge.engine_factory import build_engine
    from gmos_core.bridge.messages import image_message

    size = tuple(int(v) for v in args.size.lower().split("x"))
    cap = cv2.VideoCapture(args.video)
    frames = []
    while len(frames) < args.frames:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA))
    factory = RosbagsMessageFactory(get_typestore(Stores.ROS2_HUMBLE))
    period_ns = int(1e9 / args.rate)
    messages = [image_message(factory, factory.header(i * period_ns, "camera"), rgb, "rgb8")
                for i, rgb in enumerate(frames)]
    params = NodeParams(mode="geometric", device="cpu", fps=args.rate)
    start = time.monotonic_ns()
    clock = lambda: time.monotonic_ns() - start  # noqa: E731  stamps and node clock share one time base
    core = NodeCore(params, build_engine, clock_ns=clock, logger=logging.getLogger("gmos.rate"))
    core.activate()
    outputs = []
    lock = threading.Lock()

    def sink(records):
        with lock:
            outputs.extend(records)

    core.start_worker(sink, poll_s=0.005)
    start = time.monotonic_ns()
    for i, msg in enumerate(messages):  # the camera: one frame every period, on time
        while time.monotonic_ns() - start < i * period_ns:
            time.sleep(0.0005)
        core.on_image(msg)
    while core.queue_length:
        time.sleep(0.01)
    time.sleep(0.5)
    core.stop_worker()
    sink(core.flush())
    c = core.counters
    latency = np.array([r.latency_ns for r in outputs[:-2]]) / 1e6  # the last two are flushed at the end
    stages = {}
    for record in outputs:
        for k, v in record.result.timings_ms.items():
            stages.setdefault(k, []).append(v)
    report = {
        "video": args.video, "size": list(size), "rate_hz": args.rate, "frames_in": c.received,
        "outputs": len(outputs), "segmented": c.segmented, "skipped_windows": c.skipped_windows,
        "skipped_frames": c.skipped_frames, "dropped_frames": c.dropped_frames, "failures": c.failures,
        "lookahead_frames": core.engine.lookahead_frames if core.engine else None,
        "latency_ms": {"p50": round(float(np.percentile(latency, 50)), 1),
                       "p95": round(float(np.percentile(latency, 95)), 1), "max": round(float(latency.max()), 1)},
        "engine_ms_mean": {k: round(float(np.mean(v)), 1) for k, v in stages.items()},
        "engine_ms_p95": {k: round(float(np.percentile(v, 95)), 1) for k, v in stages.items()},
        "passed": c.received == len(outputs) and c.skipped_windows == 0 and c.dropped_frames == 0,
    }
    print(json.dumps(report))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
