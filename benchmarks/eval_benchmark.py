"""Time `gmos eval --protocol mos-i` on a GMOS-2K-sized synthetic benchmark.

Generates N sequences (default 280) of F frames (default 30) at 854x480 with a few moving/static objects:
DAVIS-palette GT PNGs, `gmos infer`-style predictions (`<root>/pred/mos-i_frame/<seq>/`, shifted, eroded,
with identity swaps and false positives) and a time_annotation.csv, then runs the CLI in a subprocess and
reports the wall time.

    python3 benchmarks/eval_benchmark.py --root /tmp/gmos_eval_bench [--sequences 280 --frames 30 --workers 2]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

H, W = 480, 854
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128, 0, 128, 128, 128, 128, 128]


def _save(path: Path, labels: np.ndarray) -> None:
    from PIL import Image

    img = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.astype(np.uint8).tobytes())
    img.putpalette(PALETTE + [0] * (768 - len(PALETTE)))
    img.save(path)


def _make_sequence(job: tuple) -> str:
    root, index, n_frames = job
    rng = np.random.default_rng(index)
    name = f"seq{index:04d}"
    n_obj = int(rng.integers(1, 5))
    yy, xx = np.mgrid[0:H, 0:W]
    centres = rng.uniform([60, 60], [H - 60, W - 60], size=(n_obj, 2))
    velocity = rng.uniform(-6, 6, size=(n_obj, 2))
    radii = rng.uniform(25, 70, size=(n_obj, 2))
    moving = rng.random(n_obj) < 0.8
    moving[0] = True
    swap_from = int(rng.integers(n_frames // 2, n_frames)) if n_obj > 1 and rng.random() < 0.3 else None
    (root / "anno" / name).mkdir(parents=True, exist_ok=True)
    (root / "pred" / "mos-i_frame" / name).mkdir(parents=True, exist_ok=True)
    for t in range(n_frames):
        gt = np.zeros((H, W), np.uint8)
        pred = np.zeros((H, W), np.uint8)
        for k in range(n_obj):
            c = centres[k] + (velocity[k] * t if moving[k] else 0)
            inside = ((yy - c[0]) / radii[k, 0]) ** 2 + ((xx - c[1]) / radii[k, 1]) ** 2 <= 1
            gt[inside] = k + 1
            if moving[k]:
                shift = rng.integers(-4, 5, size=2)
                p_inside = ((yy - c[0] - shift[0]) / (radii[k, 0] * 0.95)) ** 2 + (
                    (xx - c[1] - shift[1]) / (radii[k, 1] * 0.95)
                ) ** 2 <= 1
                pid = k + 1
                if swap_from is not None and t >= swap_from and k < 2:
                    pid = 2 - k  # identity swap of the first two objects
                pred[p_inside] = pid
        if rng.random() < 0.2:  # occasional false positive blob
            y, x = rng.integers(0, H - 30), rng.integers(0, W - 30)
            pred[y : y + 30, x : x + 30] = 7
        _save(root / "anno" / name / f"{t:05d}.png", gt)
        _save(root / "pred" / "mos-i_frame" / name / f"{t:05d}.png", pred)
    anno = {str(k + 1): [[0, n_frames - 1]] for k in range(n_obj) if moving[k]}
    return f'{name},"{anno}",{n_frames},{n_frames},davis,test'


def generate(root: Path, n_seq: int, n_frames: int, workers: int) -> Path:
    from tqdm import tqdm

    root.mkdir(parents=True, exist_ok=True)
    jobs = [(root, i, n_frames) for i in range(n_seq)]
    with mp.get_context("fork").Pool(workers) as pool:
        rows = list(tqdm(pool.imap(_make_sequence, jobs), total=n_seq, desc="generating", unit="seq"))
    csv = root / "time_annotation.csv"
    csv.write_text("seq_name,time_anno,ann_frames,vid_frames,dataset,split\n" + "\n".join(rows) + "\n")
    return csv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/gmos_eval_bench"))
    parser.add_argument("--sequences", type=int, default=280)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--frame-level-match", action="store_true")
    parser.add_argument("--plots", action="store_true", help="also write per-sequence plots (--out)")
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()

    csv = args.root / "time_annotation.csv"
    if args.regenerate or not csv.is_file():
        t0 = time.perf_counter()
        generate(args.root, args.sequences, args.frames, args.workers)
        print(f"generated {args.sequences} x {args.frames} frames in {time.perf_counter() - t0:.1f} s")
    cmd = [sys.executable, "-m", "gmos_core.cli.main", "eval", "--protocol", "mos-i", "--dataset", "davis17-im",
           "--pred", str(args.root / "pred"), "--anno", str(args.root / "anno"), "--time-anno", str(csv),
           "--workers", str(args.workers), "--brief"]
    if args.frame_level_match:
        cmd.append("--frame-level-match")
    if args.plots:
        cmd += ["--out", str(args.root / "results")]
    else:
        cmd += ["--out", str(args.root / "results"), "--no-plots"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    load = os.getloadavg()[0]
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return proc.returncode
    frames = args.sequences * args.frames
    print(f"command: {' '.join(cmd[2:])}")
    print(f"gmos eval wall time: {elapsed:.1f} s for {args.sequences} sequences / {frames} frames "
          f"({frames * 2 / elapsed:.0f} PNGs/s, {args.workers} workers)")
    print(f"CPU time (all processes): {cpu:.1f} s -> {cpu / args.workers:.1f} s wall on {args.workers} idle cores; "
          f"1-min load average at the end: {load:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
