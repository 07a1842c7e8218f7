"""How good the weight-free geometric mode's per-pixel motion probability is, per GeometricConfig setting, on the
VALIDATION split (or the held-out one): the map the default model's refinement stage takes as evidence.

    OMP_NUM_THREADS=2 python3 benchmarks/geometric_probe.py --out /tmp/val \
        [--variants '[{}, {"planar_fraction": 1.0}]'] [--split validation]

``--out`` is a heldout_eval working folder (its ``data/`` is rendered first when missing, with the same seeds).
For each variant (a JSON object of GeometricConfig fields) the geometric mode runs over every clip through the
engine and the script prints one line, appended to ``<out>/geometric_probe.jsonl``:

  precision / recall / IoU   of ``motion_prob > 0.5`` against the objects moving on each frame (their MOS-I
                             ground truth), pooled over the pixels of the clips with moving objects, and over the
                             moving-camera clips alone (where parallax can be mistaken for motion)
  static flagged             fraction of the static-only clips' frames with > 0.5 % of the pixels above 0.5
  cases                      how many frames each ego-motion case read (``FrameResult.geometry["case"]``)

It scores the probability map, not the mode's tracks: use heldout_eval / tracker_sweep for MOS-I.
"""
from __future__ import annotations

import argparse
import ast
import collections
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.heldout_eval import (  # noqa: E402
    FPS, SEED_BASE, STATIC_FP_PIXEL_FRACTION, VALIDATION_SEED_BASE, generate, read_frames)


def probe(data_dir: Path, meta: dict, overrides: dict) -> dict:
    from gmos_core.engine import EngineConfig
    from gmos_core.engine.models import build_engine_models
    from gmos_core.engine.streaming import run_clip
    from gmos_core.metrics.mos_i import motion_matrix
    from gmos_core.metrics.readers import read_label_png

    with (data_dir / "time_annotation.csv").open(newline="") as fh:
        annotation = {r["seq_name"]: ast.literal_eval(r["time_anno"]) for r in csv.DictReader(fh)}
    counts = {"all": np.zeros(3, np.int64), "moving_camera": np.zeros(3, np.int64)}  # tp, fp, fn
    cases, flagged, static_frames = collections.Counter(), 0, 0
    for seq, info in sorted(meta["sequences"].items()):
        frames = read_frames(data_dir / "JPEGImages" / seq)
        config = EngineConfig(mode="geometric", fps=FPS, device="cpu")
        config.extra["geometric"] = overrides
        results = run_clip(config, build_engine_models(config), frames)
        cases.update(r.geometry["case"] for r in results)
        if info["kind"] == "static_scene":
            flagged += sum(int((r.motion_prob > 0.5).mean() > STATIC_FP_PIXEL_FRACTION) for r in results)
            static_frames += len(results)
            continue
        labels = [read_label_png(p) for p in sorted((data_dir / "Annotations" / seq).glob("*.png"))]
        moving_ids = motion_matrix(annotation[seq], len(labels)) if annotation[seq] else None
        for t, (result, label) in enumerate(zip(results, labels)):
            target = np.zeros(label.shape, bool)
            if moving_ids is not None:
                for object_id in np.flatnonzero(moving_ids[t]) + 1:
                    target |= label == object_id
            called = result.motion_prob > 0.5
            row = np.array([(called & target).sum(), (called & ~target).sum(), (~called & target).sum()])
            counts["all"] += row
            if info["kind"] == "normal":
                counts["moving_camera"] += row
    out = {"variant": overrides, "cases": dict(cases),
           "static_flagged": flagged / static_frames if static_frames else float("nan")}
    for name, (tp, fp, fn) in counts.items():
        out[name] = {"precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn),
                     "iou": tp / max(1, tp + fp + fn)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="heldout_eval working folder")
    parser.add_argument("--split", choices=("heldout", "validation"), default="validation")
    parser.add_argument("--variants", default="[{}]", help="JSON list of GeometricConfig overrides")
    args = parser.parse_args(argv)
    try:
        variants = json.loads(args.variants)
        if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
            raise ValueError("not a list of objects")
    except ValueError as exc:
        print(f"error: --variants {args.variants!r}: expected a JSON list of objects ({exc})", file=sys.stderr)
        return 2
    from gmos_core.geometric.config import GeometricConfig

    for variant in variants:  # refuse a bad field before any work
        try:
            GeometricConfig.from_mapping(variant)
        except (TypeError, ValueError) as exc:
            print(f"error: variant {json.dumps(variant)}: {exc}", file=sys.stderr)
            return 2
    seed_base = VALIDATION_SEED_BASE if args.split == "validation" else SEED_BASE
    data_dir = args.out / "data"
    meta = generate(data_dir, {"normal": 16, "static_camera": 6, "static_scene": 6}, 40, (480, 272), seed_base)
    for variant in variants:
        result = {"split": args.split, **probe(data_dir, meta, variant)}
        with (args.out / "geometric_probe.jsonl").open("a") as fh:
            fh.write(json.dumps(result) + "\n")
        a, m = result["all"], result["moving_camera"]
        print(f"{json.dumps(variant)}: all P {a['precision']:.3f} R {a['recall']:.3f} IoU {a['iou']:.3f} | moving "
              f"camera P {m['precision']:.3f} R {m['recall']:.3f} IoU {m['iou']:.3f} | static flagged "
              f"{result['static_flagged']:.3f} | {result['cases']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
