"""The geometric mode on the real clips (no ground truth): overlay frames as PNGs for docs/geometric.md and a
per-clip summary (how each frame was read, share of pixels called moving, tracks, time per frame).

    OMP_NUM_THREADS=2 python3 benchmarks/geometric_clips.py [--videos DIR] [--out docs/images] [--frames 150]
        [--size 480x272] [--anchor center|end]

Each clip is resized to --size, streamed through StreamingEngine(mode="geometric") at its own frame rate
(no camera_info: focal-length guess), and frames at 15 %, 40 %, 65 % and 90 % of the run are written side by
side (overlay: moving objects in colour, candidates that are not moving outlined; the probability map below).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def overlay(rgb: np.ndarray, result) -> np.ndarray:
    import cv2

    from gmos_core.engine.result import MotionState
    from gmos_core.io.overlay import overlay_frame

    moving = np.where(result.dynamic_mask, result.labels, 0).astype(np.uint16)
    out = overlay_frame(rgb, ((moving - 1) % 255 + 1).astype(np.uint8) * (moving > 0)).copy()
    for obj in result.objects:
        if obj.state != MotionState.MOVING:
            mask = (result.labels == obj.instance_id).astype(np.uint8)
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, (255, 255, 255), 1)
    prob = (np.clip(result.motion_prob, 0, 1) * 255).astype(np.uint8)
    return np.concatenate([out, np.repeat(prob[..., None], 3, axis=2)], axis=0)


def run_clip(path: Path, frames_max: int, size: tuple[int, int], anchor: str) -> tuple[list, list, dict]:
    import cv2

    from gmos_core.engine import EngineConfig, StreamingEngine
    from gmos_core.engine.models import build_engine_models

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while len(frames) < frames_max:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA))
    config = EngineConfig(mode="geometric", fps=fps, anchor=anchor)
    engine = StreamingEngine(config, build_engine_models(config))
    results = []
    t0 = time.perf_counter()
    for i, rgb in enumerate(frames):
        results += engine.push(rgb, int(round(i * 1e9 / fps)), frame_id=path.stem, key=i)
    results += engine.flush()
    wall = time.perf_counter() - t0
    cases = Counter(r.geometry["case"] for r in results)
    tracks = {o.track_id for r in results for o in r.objects if int(o.state) == 2}
    summary = {
        "clip": path.name, "frames": len(frames), "fps": round(fps, 2), "size": list(size), "anchor": anchor,
        "stride": engine.stride, "cases": dict(cases),
        "moving_pixel_fraction_mean": round(float(np.mean([r.dynamic_mask.mean() for r in results])), 4),
        "frames_with_moving_pixels": round(float(np.mean([r.dynamic_mask.any() for r in results])), 3),
        "moving_tracks": len(tracks),
        "ms_per_frame": {k: round(float(np.mean([r.timings_ms[k] for r in results[2:]])), 1)
                         for k in ("flow", "ego_motion", "residual", "tracking", "postprocess", "total")},
        "wall_ms_per_frame": round(1000 * wall / len(frames), 1),
        "essential_inlier_fraction_median": round(float(np.median(
            [p["inlier_fraction"] for r in results for p in r.geometry["pairs"] if p["model"] == "essential"]
            or [float("nan")])), 3),
    }
    return frames, results, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", default="/work/shared/data/videos")
    parser.add_argument("--out", default=str(REPO / "docs" / "images"))
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="480x272")
    parser.add_argument("--anchor", choices=("center", "end"), default="center")
    parser.add_argument("--json", default=None, help="also write the summaries here")
    args = parser.parse_args()
    import cv2

    size = tuple(int(v) for v in args.size.lower().split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = []
    for path in sorted(Path(args.videos).glob("*.mp4")):
        frames, results, summary = run_clip(path, args.frames, size, args.anchor)
        picks = [int(f * (len(frames) - 1)) for f in (0.15, 0.4, 0.65, 0.9)]
        panel = np.concatenate([overlay(frames[i], results[i]) for i in picks], axis=1)
        name = out / f"geometric_{path.stem}{'' if args.anchor == 'center' else '_end'}.png"
        from PIL import Image  # palette PNG (128 colours): a quarter of the size of an RGB PNG, for the docs

        Image.fromarray(panel).quantize(colors=128).save(name, optimize=True)
        summary["image"] = str(name.relative_to(REPO)) if name.is_relative_to(REPO) else str(name)
        summary["picked_frames"] = picks
        print(json.dumps(summary), flush=True)
        summaries.append(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
