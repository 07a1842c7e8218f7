"""The real-clip PNGs of docs/default_model.md from `gmos demo` runs: frame 45 of the side-by-side video (model
left, geometric mode right) and frames 10, 30, 60, 80 of the model's overlay in a 2x2 grid.

    python3 -m gmos_core demo --video /work/shared/data/videos/dog.mp4 --max-frames 90 --out-dir /tmp/rc/dog
    python3 benchmarks/real_clip_pngs.py --run /tmp/rc/dog/<run folder> --name dog --out docs/images

Fixed frames, not chosen ones.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIDE_BY_SIDE_FRAME = 45
GRID_FRAMES = (10, 30, 60, 80)


def resize(frame: np.ndarray, width: int) -> np.ndarray:
    from PIL import Image

    height = round(frame.shape[0] * width / frame.shape[1])
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))


def main(argv=None) -> int:
    from PIL import Image

    from gmos_core.io.video import iter_video_frames

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a gmos demo run folder")
    parser.add_argument("--name", required=True, help="clip name used in the file names")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args(argv)

    side = list(iter_video_frames(str(args.run / "side_by_side_overlay.mp4")))
    model = list(iter_video_frames(str(args.run / "output_bag_gmos_online_overlay.mp4")))
    args.out.mkdir(parents=True, exist_ok=True)
    if len(side) <= SIDE_BY_SIDE_FRAME or len(model) <= max(GRID_FRAMES):
        raise SystemExit(f"{args.run}: need at least {max(GRID_FRAMES) + 1} frames, got {len(side)} / {len(model)}")
    Image.fromarray(resize(side[SIDE_BY_SIDE_FRAME], 960)).save(args.out / f"default_model_{args.name}_045.png")
    tiles = [resize(model[i], 360) for i in GRID_FRAMES]
    grid = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)
    Image.fromarray(grid).save(args.out / f"default_model_{args.name}_frames.png")
    print(f"wrote {args.out}/default_model_{args.name}_045.png and _frames.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
