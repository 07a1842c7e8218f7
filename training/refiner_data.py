"""Training data of the default model's refinement stage (gmos_core.models.motion_refiner).

A refiner learns from what the engine gives it at run time, so its data is made by the engine itself:

1. Render clips with the synthetic generator (training/synthetic.py) at the engine's test size (480x272, 40 frames,
   24 fps: the same clip settings as benchmarks/heldout_eval.py; textures: the bundled clip and procedural ones,
   as the default model's own training data) from the refiner's own seeds
   (``SEED_BASE``: 300000+, disjoint from the default model's training seeds (1000+, 20000+, 40000+), the
   default model's validation windows (950000+), and the held-out (900000+) and validation (960000+) splits).
2. Run the base model (a GMOS-format file, its own refinement stage switched off) in ``gmos_s`` mode and the
   geometric mode over each clip, as the engine runs them (same windows, same flow chains and smoothing).
3. Keep, per frame and at the refiner's working size (``gmos_core.engine.refinement.refiner_inputs``, the exact
   function the engine uses): the frame, the head's probability, the geometric probability, and the target:
   the area-downsampled mask of the objects moving on that frame (the MOS-I ground truth: an object counts on the
   frames its time annotation marks it moving).

One ``<cache>/<sequence>.npz`` per clip (rgb uint8 (T,3,h,w); head, motion, target float16 (T,h,w)); a clip whose
file exists is not recomputed, so an interrupted preparation continues where it stopped.
"""
from __future__ import annotations

import ast
import csv
import time
from pathlib import Path
from typing import Optional

import numpy as np

SEED_BASE = {"normal": 300000, "static_camera": 310000, "static_scene": 320000}
FPS = 24.0
FRAMES = 40
SIZE = (480, 272)


def render_clips(data_dir: Path, counts: dict, frames: int = FRAMES, size: tuple = SIZE,
                 seed_base: Optional[dict] = None) -> list[dict]:
    """Render the clips that are not there yet; returns one row per clip (name, kind, time_anno)."""
    from training.default_data import training_texture_videos
    from training.synthetic import SyntheticConfig, sample_scene, write_sequence

    seed_base = seed_base or SEED_BASE
    # the default model's training textures: the bundled clip only (+ procedural ones), so the command makes the
    # same data on any machine and the real clips of /work/shared/data/videos stay unseen (the held-out and
    # validation sets crop them; the real-video check runs on them)
    cfg = SyntheticConfig(width=size[0], height=size[1], num_frames=frames, fps=FPS,
                          texture_videos=training_texture_videos())
    index_path = data_dir / "clips.csv"
    done = {}
    if index_path.is_file():
        with index_path.open(newline="") as fh:
            done = {r["seq_name"]: r for r in csv.DictReader(fh)}
    rows = []
    t0 = time.perf_counter()
    for kind, n in counts.items():
        if kind not in seed_base:
            raise ValueError(f"clip kind {kind!r}: expected one of {sorted(seed_base)}")
        for i in range(n):
            seed = seed_base[kind] + i
            scene = sample_scene(seed, cfg, kind=kind)
            row = done.get(scene.name)
            if row is None or not (data_dir / "JPEGImages" / scene.name / f"{frames - 1:05d}.jpg").is_file():
                row = write_sequence(scene, data_dir)
            rows.append({"seq_name": scene.name, "kind": kind, "time_anno": row["time_anno"]})
    data_dir.mkdir(parents=True, exist_ok=True)
    with index_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=("seq_name", "kind", "time_anno"))
        writer.writeheader()
        writer.writerows(rows)
    print(f"refiner data: {len(rows)} clips ready in {data_dir} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows


def moving_masks(data_dir: Path, seq: str, time_anno: str) -> np.ndarray:
    """(T, H, W) bool: the objects moving on each frame (annotation ids on the frames of their time spans)."""
    from gmos_core.io.palette import read_indexed_png

    spans = {int(k): v for k, v in ast.literal_eval(time_anno).items()} if time_anno else {}
    out = []
    for t, path in enumerate(sorted((data_dir / "Annotations" / seq).glob("*.png"))):
        ann = read_indexed_png(path)
        ids = [oid for oid, ranges in spans.items() if any(s <= t <= e for s, e in ranges)]
        out.append(np.isin(ann, ids) if ids else np.zeros(ann.shape, bool))
    return np.stack(out)


def read_frames(data_dir: Path, seq: str) -> list[np.ndarray]:
    import cv2

    return [cv2.imread(str(p))[..., ::-1].copy() for p in sorted((data_dir / "JPEGImages" / seq).glob("*.jpg"))]


def build_engines(base_weights: str, device: str = "cpu"):
    """((config, models) of the base model in gmos_s mode without its refinement stage, (config, models) of the
    geometric mode)."""
    from gmos_core.engine import EngineConfig
    from gmos_core.engine.models import WeightPaths, build_engine_models
    from gmos_core.weights.metadata import read_checkpoint_metadata

    info = read_checkpoint_metadata(base_weights)
    if info is None or info.variant != "gmos_s":
        raise ValueError(f"--base {base_weights}: expected a GMOS-format GMOS-S model (the default model's file)")
    base_cfg = EngineConfig(mode="gmos_s", fps=FPS, anchor=info.anchor, window_size=info.window_size,
                            pixel_limit=info.pixel_limit, device=device)
    base = build_engine_models(base_cfg, weights=WeightPaths(head=str(base_weights)))
    base.refiner = None  # the refiner learns on the head's own probabilities
    geo_cfg = EngineConfig(mode="geometric", fps=FPS, device=device)
    return (base_cfg, base), (geo_cfg, build_engine_models(geo_cfg))


def prepare_cache(data_dir: Path, cache_dir: Path, rows: list[dict], base_weights: str, pixels: int,
                  device: str = "cpu") -> list[Path]:
    """One npz per clip (skipped when present); returns the paths in ``rows`` order."""
    import torch

    from gmos_core.engine.refinement import area_resize, refiner_inputs
    from gmos_core.engine.streaming import run_clip

    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = [cache_dir / f"{r['seq_name']}.npz" for r in rows]
    todo = [(r, p) for r, p in zip(rows, paths) if not p.is_file()]
    if not todo:
        return paths
    (base_cfg, base), (geo_cfg, geo) = build_engines(base_weights, device)
    t0 = time.perf_counter()
    for i, (row, path) in enumerate(todo):
        seq = row["seq_name"]
        frames = read_frames(data_dir, seq)
        head = np.stack([r.fg_prob for r in run_clip(base_cfg, base, frames)])
        motion = np.stack([r.motion_prob for r in run_clip(geo_cfg, geo, frames)])
        rgb, head_t, motion_t = refiner_inputs(frames, head, motion, pixels)
        target = torch.from_numpy(moving_masks(data_dir, seq, row["time_anno"]).astype(np.float32))[:, None]
        target = area_resize(target, tuple(rgb.shape[-2:]))
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, rgb=(rgb * 255).round().clamp(0, 255).byte().numpy(),
                 head=head_t[:, 0].numpy().astype(np.float16), motion=motion_t[:, 0].numpy().astype(np.float16),
                 target=target[:, 0].numpy().astype(np.float16), kind=np.array(row["kind"]))
        tmp.replace(path)
        elapsed = time.perf_counter() - t0
        print(f"refiner data: engine outputs {i + 1}/{len(todo)} {seq} "
              f"(eta {elapsed / (i + 1) * (len(todo) - i - 1) / 60:.1f} min)", flush=True)
    return paths


def load_cache(paths: list[Path]) -> dict:
    """All clips stacked: rgb uint8 (N,3,h,w), head/motion/target float16 (N,h,w), clip index per frame."""
    parts = {"rgb": [], "head": [], "motion": [], "target": []}
    clip = []
    for i, path in enumerate(paths):
        with np.load(path) as data:
            for key in parts:
                parts[key].append(data[key])
            clip.append(np.full(len(data["head"]), i, np.int32))
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["clip"] = np.concatenate(clip)
    return out
