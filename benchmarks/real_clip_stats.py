"""What a model did on a real clip without ground truth, read from its output bag (gmos replay / gmos demo).

    python3 benchmarks/real_clip_stats.py OUT_BAG [OUT_BAG ...]

Per bag: frames, the fraction of frames with any moving pixel, the mean moving-pixel fraction over those frames,
the number of tracks that were ever moving, and the median / longest time a track stays in view (frames in which
its id appears in /gmos/instance_mask). Many short tracks = flickering, fragmented output.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def image_array(msg) -> np.ndarray:
    dtype = {"mono8": np.uint8, "8UC1": np.uint8, "mono16": np.uint16, "16UC1": np.uint16}[msg.encoding]
    data = np.frombuffer(bytes(msg.data), dtype=dtype)
    if msg.is_bigendian and dtype == np.uint16:
        data = data.byteswap()
    return data.reshape(msg.height, msg.step // np.dtype(dtype).itemsize)[:, :msg.width]


def stats(bag: Path) -> dict:
    from rosbags.highlevel import AnyReader

    from gmos_core.bags.typestore import make_typestore

    moving_fraction, frames_seen = [], Counter()
    with AnyReader([bag], default_typestore=make_typestore("jazzy")) as reader:
        conns = [c for c in reader.connections if c.topic in ("/gmos/dynamic_mask", "/gmos/instance_mask")]
        if not conns:
            raise SystemExit(f"{bag}: no /gmos/dynamic_mask or /gmos/instance_mask topic; expected an output bag "
                             "of gmos replay / gmos demo")
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            img = image_array(msg)
            if conn.topic == "/gmos/dynamic_mask":
                moving_fraction.append(float((img > 0).mean()))
            else:
                frames_seen.update(int(v) for v in np.unique(img) if v > 0)
    frac = np.array(moving_fraction)
    lengths = np.array(sorted(frames_seen.values())) if frames_seen else np.zeros(0)
    return {"frames": len(frac), "frames_with_motion": float((frac > 0).mean()) if len(frac) else 0.0,
            "mean_moving_fraction": float(frac[frac > 0].mean()) if (frac > 0).any() else 0.0,
            "tracks": len(frames_seen), "median_track_frames": float(np.median(lengths)) if len(lengths) else 0.0,
            "longest_track_frames": int(lengths.max()) if len(lengths) else 0}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bags", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print("| bag | frames | frames with motion | moving area when any | tracks | median / longest track (frames) |")
    print("|---|---|---|---|---|---|")
    for bag in args.bags:
        s = stats(bag)
        print(f"| {bag.parent.parent.name}/{bag.name} | {s['frames']} | {100 * s['frames_with_motion']:.0f} % | "
              f"{100 * s['mean_moving_fraction']:.1f} % | {s['tracks']} | {s['median_track_frames']:.0f} / "
              f"{s['longest_track_frames']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
