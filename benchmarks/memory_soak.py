#!/usr/bin/env python3
"""Memory soak: does memory stay flat over a long stream? (issue 15)

Streams N frames (default 5,000 at 1280x720) through
  (a) `gmos replay`: ``replay_bag`` with the CLI's node maker and its default artefacts (overlay video,
      timeline plot, summary JSON), reading a bag made here from a looped real video, and
  (b) ``NodeCore`` with the engine, fed the same looped frames as sensor_msgs/Image messages
      (``on_image`` + ``process_pending``, as the live node's callback and worker),
sampling the process's resident memory (VmRSS, and its anonymous / file-backed parts) every
``--sample-every`` frames. Prints the slope in MB per 1,000 frames after the warm-up (least squares over
the samples after ``--warmup`` frames), the "floor" slope (of per-window minima, robust to the model's
per-frame temporaries) and the peak; ``--json`` also keeps every sample.

    OMP_NUM_THREADS=1 python3 benchmarks/memory_soak.py --tiny-random-model            # 5,000 frames each
    python3 benchmarks/memory_soak.py --tiny-random-model --frames 600 --paths replay   # shorter
    python3 benchmarks/memory_soak.py                    # the shipped default model (no weight flags)
    python3 benchmarks/memory_soak.py --pi3-weights P --sam2-checkpoint S --head-weights H   # official

The replay input is written as sensor_msgs/CompressedImage (JPEG) by default so that 5,000 720p frames
take ~0.5 GB of disk instead of 14 GB; ``--encoding rgb8`` writes raw images (the path that exposed the
memory-mapped reader's growth). Frames are the first ``--loop-frames`` frames of ``--video`` repeated with
increasing stamps (no bag-loop reset).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_VIDEO = Path("/work/shared/data/videos/blocks.mp4")
IMAGE_TOPIC = "/camera/image_raw"
PERIOD_NS = 33_366_667  # 29.97 fps
FIRST_STAMP_NS = 1_700_000_000_000_000_000


def rss_mb() -> dict[str, float]:
    """VmRSS, RssAnon, RssFile and VmHWM of this process in MB (Linux /proc)."""
    out = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


class Sampler:
    """RSS every ``every`` frames; slope after the warm-up and peak."""

    def __init__(self, every: int, warmup: int, label: str) -> None:
        self.every, self.warmup, self.label = every, warmup, label
        self.frames: list[int] = []
        self.samples: list[dict[str, float]] = []
        self.t0 = time.perf_counter()

    def frame_done(self, count: int, total: int) -> None:
        if count % self.every and count != total:
            return
        sample = rss_mb()
        self.frames.append(count)
        self.samples.append(sample)
        if count % (self.every * 10) == 0 or count == total:
            rate = count / max(1e-9, time.perf_counter() - self.t0)
            print(f"  [{self.label}] {count}/{total} frames ({rate:.2f} frames/s): RSS {sample['VmRSS']:.0f} MB "
                  f"(anon {sample['RssAnon']:.0f}, file {sample['RssFile']:.0f})", flush=True)

    def result(self) -> dict[str, Any]:
        frames = np.asarray(self.frames, np.float64)
        after = frames >= self.warmup
        out: dict[str, Any] = {"frames": int(frames.max()) if len(frames) else 0, "warmup_frames": self.warmup,
                               "samples_after_warmup": int(after.sum()),
                               "wall_s": round(time.perf_counter() - self.t0, 1)}
        for key in ("VmRSS", "RssAnon", "RssFile"):
            values = np.asarray([s[key] for s in self.samples])
            slope = float(np.polyfit(frames[after], values[after], 1)[0] * 1000) if after.sum() >= 3 else float("nan")
            out[f"{key}_slope_MB_per_1000_frames"] = round(slope, 2)
            out[f"{key}_floor_slope_MB_per_1000_frames"] = round(floor_slope(frames[after], values[after]), 2)
            out[f"{key}_peak_MB"] = round(float(values.max()), 1) if len(values) else float("nan")
        out["VmHWM_MB"] = round(max(s["VmHWM"] for s in self.samples), 1) if self.samples else float("nan")
        out["samples"] = [[int(f), round(s["VmRSS"], 1), round(s["RssAnon"], 1), round(s["RssFile"], 1)]
                          for f, s in zip(self.frames, self.samples)]
        return out


def floor_slope(frames: np.ndarray, values: np.ndarray, windows: int = 8) -> float:
    """Slope (MB per 1,000 frames) of the per-window minima: the model's per-frame temporaries swing RSS by
    tens of MB from one frame to the next, which a least-squares slope over a few hundred frames turns
    into tens of MB per 1,000 frames either way; memory that is kept raises the floor, temporaries do not."""
    if len(frames) < 2 * windows:
        return float("nan")
    chunks = np.array_split(np.arange(len(frames)), windows)
    x = [float(np.mean(frames[c])) for c in chunks]
    y = [float(np.min(values[c])) for c in chunks]
    return float(np.polyfit(x, y, 1)[0] * 1000)


def looped_frames(video: Path, loop_frames: int, size: tuple[int, int]) -> list[np.ndarray]:
    from PIL import Image

    from gmos_core.io import iter_video_frames

    frames = []
    for rgb in iter_video_frames(video, 0, loop_frames):
        if (rgb.shape[1], rgb.shape[0]) != size:
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
        frames.append(np.ascontiguousarray(rgb))
    if not frames:
        raise SystemExit(f"memory_soak: no frames decoded from {video}")
    return frames


def node_params(args: argparse.Namespace, **changes: Any) -> Any:
    """NodeParams from the model flags (the field is ``mode``; ``model`` before the issue-11 rename)."""
    from gmos_core.bridge.params import NodeParams

    names = {f.name for f in dataclasses.fields(NodeParams)}
    kwargs: dict[str, Any] = {"mode" if "mode" in names else "model": args.mode,
                              "pi3_weights": args.pi3_weights or "", "sam2_checkpoint": args.sam2_checkpoint or "",
                              "head_weights": args.head_weights or "", "tiny_random_model": args.tiny_random_model,
                              "device": args.device, "precision": args.precision, **changes}
    return NodeParams(**{k: v for k, v in kwargs.items() if k in names})


def make_input_bag(path: Path, frames: list[np.ndarray], total: int, encoding: str) -> None:
    import io

    from PIL import Image

    from gmos_core.bags.messages import InputMessageBuilder
    from gmos_core.bags.writer import BagWriter

    height, width = frames[0].shape[:2]
    jpegs = []
    if encoding == "jpeg":
        for rgb in frames:
            buffer = io.BytesIO()
            Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
            jpegs.append(np.frombuffer(buffer.getvalue(), np.uint8))
    with BagWriter(path, storage="mcap") as bag:
        build = InputMessageBuilder(bag.typestore)
        topic = IMAGE_TOPIC + ("/compressed" if encoding == "jpeg" else "")
        bag.add_topic(topic, "sensor_msgs/msg/CompressedImage" if encoding == "jpeg" else "sensor_msgs/msg/Image")
        for i in range(total):
            stamp = FIRST_STAMP_NS + i * PERIOD_NS
            header = build.header(stamp, "camera")
            if encoding == "jpeg":
                msg = build.new("sensor_msgs/msg/CompressedImage", header=header, format="jpeg",
                                data=jpegs[i % len(jpegs)])
            else:
                msg = build.image_from_rgb(header, frames[i % len(frames)])
            bag.write(topic, stamp, msg)
            if i % 200 == 199:
                bag.checkpoint()
    print(f"  input bag {path}: {total} frames {width}x{height} ({encoding})", flush=True)


def soak_replay(args: argparse.Namespace, frames: list[np.ndarray], workdir: Path,
                build_engine: Callable[[Any], Any]) -> dict[str, Any]:
    from gmos_core.bags.replay import Artefacts, ReplayOptions, replay_bag
    from gmos_core.cli.replay import model_description, node_maker

    in_bag = workdir / "soak_in"
    make_input_bag(in_bag, frames, args.frames, args.encoding)
    params = node_params(args)
    sampler = Sampler(args.sample_every, args.warmup, "replay")
    make = node_maker(params, build_engine)

    def make_node(clock_ns: Callable[[], int]) -> Any:
        node = make(clock_ns)
        process_pending = node.process_pending

        def sampled(*a: Any, **k: Any) -> Any:
            records = process_pending(*a, **k)
            sampler.frame_done(node.counters.pushed, args.frames)
            return records

        node.process_pending = sampled
        return node

    out_bag = workdir / "soak_out"
    topic = IMAGE_TOPIC + ("/compressed" if args.encoding == "jpeg" else "")
    summary = replay_bag(in_bag, out_bag, ReplayOptions(topic), make_node,
                         artefacts=Artefacts.beside(out_bag), progress=False,
                         model_description=model_description(params))
    result = sampler.result()
    result.update(frames_in=summary.frames_in, frames_out=summary.frames_out,
                  output_bag_MB=round(sum(f.stat().st_size for f in out_bag.iterdir()) / 2**20, 1))
    return result


def soak_nodecore(args: argparse.Namespace, frames: list[np.ndarray],
                  build_engine: Callable[[Any], Any]) -> dict[str, Any]:
    from gmos_core.bags.messages import InputMessageBuilder
    from gmos_core.bags.typestore import make_typestore
    from gmos_core.bridge.core import NodeCore

    build = InputMessageBuilder(make_typestore("jazzy"))
    clock = [FIRST_STAMP_NS]
    node = NodeCore(node_params(args), build_engine, clock_ns=lambda: clock[0])
    node.activate()
    sampler = Sampler(args.sample_every, args.warmup, "NodeCore")
    images = [build.image_from_rgb(build.header(0, "camera"), rgb) for rgb in frames]
    outputs = 0
    for i in range(args.frames):
        stamp = FIRST_STAMP_NS + i * PERIOD_NS
        clock[0] = stamp
        template = images[i % len(images)]
        msg = build.new("sensor_msgs/msg/Image", header=build.header(stamp, "camera"), height=template.height,
                        width=template.width, encoding=template.encoding, is_bigendian=template.is_bigendian,
                        step=template.step, data=template.data)
        node.on_image(msg)
        outputs += len(node.process_pending())  # the node's sink would publish these; nothing keeps them
        sampler.frame_done(i + 1, args.frames)
    outputs += len(node.flush())
    result = sampler.result()
    result.update(outputs=outputs, counters=dataclasses.asdict(node.counters))
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=5000, help="frames per path (default 5000)")
    parser.add_argument("--size", default="1280x720", help="frame size WxH (default 1280x720)")
    parser.add_argument("--paths", default="replay,nodecore", help="comma list of replay, nodecore")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="source video (frames are looped)")
    parser.add_argument("--loop-frames", type=int, default=30, help="distinct video frames looped (default 30)")
    parser.add_argument("--encoding", choices=("jpeg", "rgb8"), default="jpeg", help="replay input images")
    parser.add_argument("--warmup", type=int, default=None, help="frames before the slope fit (default 20%%)")
    parser.add_argument("--sample-every", type=int, default=10, help="RSS sample period in frames")
    parser.add_argument("--workdir", type=Path, default=None, help="where the bags go (default a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    model = parser.add_argument_group("model (the project's vocabulary; no weight flags = the shipped default model)")
    model.add_argument("--mode", choices=("gmos_online", "gmos_s"), default="gmos_online")
    model.add_argument("--tiny-random-model", action="store_true", help="tiny random-weights model")
    model.add_argument("--pi3-weights", default=None)
    model.add_argument("--sam2-checkpoint", default=None)
    model.add_argument("--head-weights", default=None)
    model.add_argument("--device", default="cpu")
    model.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must be WxH like 1280x720, got {args.size!r}")
    if args.frames < 10:
        parser.error(f"--frames must be >= 10, got {args.frames}")
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not paths or set(paths) - {"replay", "nodecore"}:
        parser.error(f"--paths must name replay and/or nodecore, got {args.paths!r}")
    args.warmup = args.warmup if args.warmup is not None else max(20, args.frames // 5)

    import torch

    from gmos_core.bridge.engine_factory import build_engine

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    frames = looped_frames(args.video, args.loop_frames, (width, height))
    model_name = ("tiny random model" if args.tiny_random_model else
                  "official weights" if args.head_weights else "shipped default model")
    print(f"memory soak: {args.frames} frames {width}x{height}, {args.mode}, {model_name}, paths {paths}, "
          f"warm-up {args.warmup} frames, RSS every {args.sample_every} frames", flush=True)
    results: dict[str, Any] = {"command": " ".join(sys.argv), "frames": args.frames, "size": f"{width}x{height}",
                               "model": model_name, "mode": args.mode, "paths": {}}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gmos_soak_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for path in paths:
            print(f"({path})", flush=True)
            if path == "replay":
                run_dir = Path(tempfile.mkdtemp(prefix="replay_", dir=workdir))
                try:
                    results["paths"][path] = soak_replay(args, frames, run_dir, build_engine)
                finally:
                    shutil.rmtree(run_dir, ignore_errors=True)
            else:
                results["paths"][path] = soak_nodecore(args, frames, build_engine)
            r = results["paths"][path]
            print(f"  => {path}: slope after warm-up {r['VmRSS_slope_MB_per_1000_frames']:+.2f} MB / 1000 frames "
                  f"(anon {r['RssAnon_slope_MB_per_1000_frames']:+.2f}, file {r['RssFile_slope_MB_per_1000_frames']:+.2f});"
                  f" floor slope {r['VmRSS_floor_slope_MB_per_1000_frames']:+.2f}; peak RSS {r['VmRSS_peak_MB']:.0f} MB,"
                  f" {r['frames']} frames in {r['wall_s']:.0f} s", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({**results, "paths": {k: {n: v for n, v in r.items() if n != "samples"}
                                            for k, r in results["paths"].items()}}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
