#!/usr/bin/env python3
"""Replay throughput excluding the model: bag read + deserialisation, the node's image conversion and
bookkeeping (the real gmos_core.bridge.NodeCore), building the output messages, CDR serialisation and
storage writes with a checkpoint per frame.

The model is replaced by ``NoOpModelStandIn`` (defined here, used nowhere else): an engine that returns an
empty segmentation for every pushed frame at once. Everything else is the code `gmos replay` runs.

    python3 benchmarks/replay_throughput.py                 # 300 frames 640x480 rgb8, mcap and sqlite3
    python3 benchmarks/replay_throughput.py --profile       # + cProfile of the hot path (top 25)
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class NoOpModelStandIn:
    """BENCHMARK ONLY. Stands in for the model: one empty FrameResult per push, no look-ahead."""

    lookahead_frames = 0
    window_fill = 1.0

    def push(self, rgb, stamp_ns, frame_id="", key=None, segment=True):
        from gmos_core.engine.result import FrameIdentity, FrameResult

        self._index = getattr(self, "_index", -1) + 1
        height, width = rgb.shape[:2]
        return [FrameResult(frame=FrameIdentity(self._index, int(stamp_ns), frame_id, key), mode="noop",
                            labels=np.zeros((height, width), np.uint16), objects=[],
                            dynamic_mask=np.zeros((height, width), bool), window_stamps_ns=[int(stamp_ns)])]

    def flush(self):
        return []

    def reset(self):
        self._index = -1


def make_input_bag(path: Path, frames: int, width: int, height: int, storage: str) -> None:
    from gmos_core.bags.messages import InputMessageBuilder
    from gmos_core.bags.writer import BagWriter

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(8)]
    with BagWriter(path, storage=storage) as bag:
        build = InputMessageBuilder(bag.typestore)
        bag.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        bag.add_topic("/camera/camera_info", "sensor_msgs/msg/CameraInfo")
        for i in range(frames):
            stamp = 1_700_000_000_000_000_000 + i * 33_333_333
            header = build.header(stamp, "camera")
            bag.write("/camera/image_raw", stamp, build.image_from_rgb(header, images[i % len(images)]))
            bag.write("/camera/camera_info", stamp, build.camera_info(header, width, height, 500.0))
        bag.checkpoint()


def run_once(in_bag: Path, out_bag: Path, storage: str, copy_inputs: bool, camera_info: bool) -> tuple[float, object]:
    from gmos_core.bags.replay import Artefacts, ReplayOptions, replay_bag
    from gmos_core.bridge.core import NodeCore
    from gmos_core.bridge.params import NodeParams

    params = NodeParams(device="cpu", precision="fp32", tiny_random_model=True, use_camera_info=camera_info)

    def make_node(clock_ns):
        node = NodeCore(params, lambda p: NoOpModelStandIn(), clock_ns=clock_ns)
        node.activate()
        return node

    options = ReplayOptions("/camera/image_raw", camera_info_topic="/camera/camera_info" if camera_info else None,
                            storage=storage, copy_inputs=copy_inputs)
    t0, c0 = time.perf_counter(), time.process_time()
    summary = replay_bag(in_bag, out_bag, options, make_node, artefacts=Artefacts(), progress=False)
    summary.cpu_s = time.process_time() - c0  # CPU time of this process (less sensitive to a busy machine)
    return time.perf_counter() - t0, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--storage", choices=("mcap", "sqlite3", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs (the machine is shared)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--workdir", default=None, help="where to put the bags (default: a temp folder)")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gmos_replay_bench_"))
    storages = ("mcap", "sqlite3") if args.storage == "both" else (args.storage,)
    print(f"{args.frames} frames {args.width}x{args.height} rgb8 + camera_info; model = NoOpModelStandIn; "
          f"outputs: objects (with mono16 instance mask), dynamic_mask, instance_mask, dynamic_mask/camera_info, "
          f"/diagnostics; inputs copied; checkpoint per frame")
    try:
        for storage in storages:
            in_bag = workdir / f"in_{storage}"
            if not in_bag.exists():
                make_input_bag(in_bag, args.frames, args.width, args.height, storage)
            for variant, copy_inputs in (("with input copy", True), ("outputs only", False)):
                best = best_cpu = None
                for repeat in range(args.repeats):
                    out_bag = workdir / f"out_{storage}_{repeat}"
                    shutil.rmtree(out_bag, ignore_errors=True)
                    if args.profile and repeat == 0 and copy_inputs:
                        import cProfile
                        import pstats

                        profiler = cProfile.Profile(time.process_time)  # CPU time: robust to a busy machine
                        profiler.enable()
                        seconds, summary = run_once(in_bag, out_bag, storage, copy_inputs, True)
                        profiler.disable()
                        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
                    else:
                        seconds, summary = run_once(in_bag, out_bag, storage, copy_inputs, True)
                    assert summary.frames_out == args.frames, summary.format()
                    best = seconds if best is None else min(best, seconds)
                    best_cpu = summary.cpu_s if best_cpu is None else min(best_cpu, summary.cpu_s)
                    shutil.rmtree(out_bag, ignore_errors=True)
                stages = ", ".join(f"{k} {v['mean']:.2f}" for k, v in summary.stage_ms.items())
                print(f"{storage:8s} {variant:16s}: {args.frames / best:7.1f} frames/s wall (best of {args.repeats}: "
                      f"{best:.2f} s), {args.frames / best_cpu:7.1f} frames per CPU-second; "
                      f"last run per-frame ms: {stages}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
