"""Choose the default model's post-processing (foreground threshold, component grouping, IoU tracker thresholds) on
the VALIDATION split, without re-running the network for every setting.

    OMP_NUM_THREADS=2 python3 benchmarks/tracker_sweep.py --out /tmp/val [--weights FILE] \
        [--variants benchmarks/tracker_sweep_variants.json] [--split validation] \
        [--normal 16 --static-camera 6 --static-scene 6]   (the clip counts, as heldout_eval.py's)

1. Runs the model once per clip in ``gmos_s`` mode and caches its (refined) foreground probability at the source
   size (``<out>/fg_prob/<seq>.npz``, float16). These are exactly the maps that ``gmos_online --tracker iou``
   turns into proposals (same windows, same refinement stage).
2. For each variant (a JSON object: ``threshold``, ``merge_px`` (components closer than that are one proposal),
   ``guided`` ({"radius", "eps", "subsample", "color"}: a guided filter of the cached map by the frame before
   thresholding) and any ``gmos_core.tracking.IouTrackerConfig`` field) runs connected components -> IoU tracker
   on the cached maps, writes MOS-I predictions (``<out>/pred_sweep/<key>/``: ``shipped`` for ``{}``, else a digest of
   the variant, named in ``variant.json`` there) and scores them as ``benchmarks/heldout_eval.py`` does (MOS-I slhm
   over the clips with moving objects; static-scene FP rate). Each result is appended to
   ``<out>/tracker_sweep.jsonl``.

The cache holds what the engine gives at the time it is made; it is re-made when the weights file, the clip count
or any Python file of ``gmos_core`` but the tracker's changes (a digest of them is part of its stamp). The empty
variant ``{}`` is then the shipped path: its row must equal heldout_eval's ``default`` row on the same split (a
check that the cache is faithful; it did: 0.432 both).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.heldout_eval import (  # noqa: E402
    SEED_BASE, VALIDATION_SEED_BASE, FPS, code_stamp, generate, mos_i_scores, read_frames, static_fp_rate,
    write_prediction)

DEFAULT_VARIANTS = [{}]


# What the cached maps do not depend on: the tracker runs on them, after the cache (editing it must not make the
# network run again on every clip).
AFTER_THE_CACHE = ("tracking",)


def cache_probabilities(out: Path, weights: str | None, seqs: list[str], data_dir: Path, device: str) -> Path:
    from gmos_core.engine import EngineConfig
    from gmos_core.engine.models import WeightPaths, build_engine_models
    from gmos_core.engine.streaming import run_clip
    from gmos_core.weights.default_model import default_model_path
    from gmos_core.weights.metadata import read_checkpoint_metadata

    path = Path(weights or default_model_path()).resolve()
    st = path.stat()
    # the engine's code is part of the stamp: a cache made before an engine change must not be reused
    code = code_stamp(REPO / "gmos_core", AFTER_THE_CACHE)
    stamp = f"{path} size={st.st_size} mtime={st.st_mtime_ns} seqs={len(seqs)} code={code}"
    cache = out / "fg_prob"
    marker = cache / ".complete"
    if marker.is_file() and marker.read_text() == stamp:
        return cache
    info = read_checkpoint_metadata(path)
    config = EngineConfig(mode="gmos_s", fps=FPS, anchor=info.anchor, window_size=info.window_size,
                          pixel_limit=info.pixel_limit, device=device)
    models = build_engine_models(config, weights=WeightPaths(head=str(path)))
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i, seq in enumerate(seqs):
        results = run_clip(config, models, read_frames(data_dir / "JPEGImages" / seq))
        probs = np.stack([r.fg_prob for r in results]).astype(np.float16)
        ious = np.array([max((o.predicted_iou for o in r.objects), default=0.0) for r in results], np.float32)
        np.savez_compressed(cache / f"{seq}.npz", prob=probs, iou=ious)
        print(f"[cache] {i + 1}/{len(seqs)} {seq} ({time.perf_counter() - t0:.0f} s)", flush=True)
    marker.write_text(stamp)
    return cache


def variant_key(variant: dict) -> str:
    """The folder name of a variant's predictions and scores: the same variant always writes to the same folder,
    whatever else a call sweeps (``{}``, the shipped path, is ``shipped``)."""
    import hashlib

    if not variant:
        return "shipped"
    return "v" + hashlib.sha1(json.dumps(variant, sort_keys=True).encode()).hexdigest()[:10]


def grouped_proposals(prob: np.ndarray, threshold: float, merge_px: int, iou: float):
    """Connected components of prob > threshold; with ``merge_px`` > 0, components closer than that many pixels
    are one proposal (their pixels only, not the gap)."""
    from scipy import ndimage

    from gmos_core.tracking import InstanceProposals, proposals_from_foreground

    if merge_px <= 0:
        return proposals_from_foreground(prob, threshold, iou)
    mask = prob > threshold
    grown = ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool), iterations=merge_px)
    groups, count = ndimage.label(grown, structure=np.ones((3, 3), bool))
    groups = np.where(mask, groups, 0)
    if count == 0 or not mask.any():
        return InstanceProposals.empty(*prob.shape)
    index = np.arange(1, count + 1)
    areas = np.bincount(groups.reshape(-1), minlength=count + 1)[1:]
    means = np.asarray(ndimage.mean(prob, groups, index), np.float32)
    keep = [i for i in np.argsort(-areas, kind="stable") if areas[i] > 0][:20]
    masks = groups[None] == index[keep][:, None, None]
    return InstanceProposals(masks, means[keep], np.full(len(keep), iou, np.float32))


def run_variant(variant: dict, cache: Path, seqs: list[str], data_dir: Path) -> dict[str, list[np.ndarray]]:
    from gmos_core.engine.edge_snap import guided_filter
    from gmos_core.tracking import IouTracker, IouTrackerConfig

    variant = dict(variant)
    threshold = float(variant.pop("threshold", 0.5))
    merge_px = int(variant.pop("merge_px", 0))
    guided = variant.pop("guided", None)
    out = {}
    for seq in seqs:
        data = np.load(cache / f"{seq}.npz")
        tracker = IouTracker(IouTrackerConfig(**variant))
        labels = []
        probs = data["prob"].astype(np.float32)
        if guided:
            frames = read_frames(data_dir / "JPEGImages" / seq)
            probs = [guided_filter(f.astype(np.float32) / 255.0 if guided.get("color", True)
                                   else f.astype(np.float32).mean(-1) / 255.0, p, int(guided["radius"]),
                                   float(guided["eps"]), int(guided.get("subsample", 1))) for f, p in zip(frames, probs)]
        for prob, iou in zip(probs, data["iou"]):
            tracked = tracker.step(grouped_proposals(prob, threshold, merge_px, float(iou)))
            labels.append(np.where(tracked.moving, tracked.labels, 0).astype(np.uint8))
        out[seq] = labels
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="heldout_eval working folder")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--split", choices=("heldout", "validation"), default="validation")
    parser.add_argument("--variants", default=None,
                        help="JSON file or inline JSON: a list of variant objects (default: the shipped settings)")
    parser.add_argument("--normal", type=int, default=16, help="clips with moving camera and moving objects")
    parser.add_argument("--static-camera", type=int, default=6, help="clips with a static camera")
    parser.add_argument("--static-scene", type=int, default=6, help="static-only clips (only the camera moves)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.variants is None:
        variants = DEFAULT_VARIANTS
    elif not args.variants.lstrip().startswith("[") and Path(args.variants).is_file():
        variants = json.loads(Path(args.variants).read_text())
    else:
        variants = json.loads(args.variants)
    seed_base = SEED_BASE if args.split == "heldout" else VALIDATION_SEED_BASE
    data_dir = args.out / "data"
    meta = generate(data_dir, {"normal": args.normal, "static_camera": args.static_camera,
                                "static_scene": args.static_scene}, 40, (480, 272), seed_base)
    seqs = meta["sequences"]
    moving = [s for s, m in seqs.items() if m["moving_ids"]]
    static = [s for s, m in seqs.items() if m["kind"] == "static_scene"]
    cache = cache_probabilities(args.out, args.weights, list(seqs), data_dir, args.device)

    results_path = args.out / "tracker_sweep.jsonl"
    for variant in variants:
        name = json.dumps(variant, sort_keys=True)
        key = variant_key(variant)
        pred_dir = args.out / "pred_sweep" / key
        labels = run_variant(variant, cache, list(seqs), data_dir)
        for seq, frames in labels.items():
            write_prediction(pred_dir, seq, frames)
        (pred_dir / "variant.json").write_text(name + "\n")
        scores = mos_i_scores(pred_dir, data_dir, moving, args.out / "eval_sweep" / key)
        scores["static_fp"] = static_fp_rate(pred_dir, static)[0]
        with results_path.open("a") as fh:
            fh.write(json.dumps({"split": args.split, "variant": variant, "pred_dir": str(pred_dir), **scores}) + "\n")
        print(f"{scores['mtiou']:.3f} mtIoU  {scores['j_mov']:.3f} J_mov  {scores['fp_count']:.2f} FP  "
              f"{scores['static_fp']:.3f} static  {name}  -> {pred_dir}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
