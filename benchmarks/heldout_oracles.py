"""Ceilings of the held-out table: what a PERFECT model of each output kind would score through the shipped
post-processing, with the same MOS-I scoring as ``benchmarks/heldout_eval.py``.

    python3 benchmarks/heldout_oracles.py --out /tmp/heldout [--table docs/default_model_oracles.md]

``--out`` is a heldout_eval working folder (its ``data/`` is rendered first when missing, with the same seeds).
Every oracle is built from the ground truth: the MOS-I label map of a frame (each annotated object on the frames
its time annotation marks it moving). Rows:

  perfect instances                 the MOS-I ground truth itself (the metric's own maximum on this set)
  perfect instances, IoU tracker    what a perfect proposer gives the IoU tracker: every annotated object in view
                                    as a proposal, motion 1 on the frames it moves and 0 on the others, through
                                    gmos_core.tracking.IouTracker with its shipped defaults (track ids are the
                                    tracker's: an object that reappears away from where it was lost gets a new id)
  perfect fg/bg, components         one moving-foreground map per frame (what a perfect GMOS-S outputs) through
                                    the shipped default model's path: connected components -> IoU tracker
  perfect fg/bg at NxN              the same map area-downsampled to NxN and bilinearly upsampled first (the
                                    default model's GMOS-S head predicts a 64x64 map for its 256x256 SAM 2 image)
  perfect fg/bg, one label          the map as a single label, no splitting

Why: MOS-I matches predicted labels to annotated objects one to one, so a foreground/background output loses
whenever objects touch or cross; this table says how much, and so which output kind a bar on mtIoU needs.
"""
from __future__ import annotations

import argparse
import ast
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.heldout_eval import SEED_BASE, generate, mos_i_scores, write_prediction  # noqa: E402


def read_annotations(data_dir: Path, seq: str) -> list[np.ndarray]:
    from gmos_core.io.palette import read_indexed_png

    return [read_indexed_png(p) for p in sorted((data_dir / "Annotations" / seq).glob("*.png"))]


def mos_i_ground_truth(annotations: list[np.ndarray], time_anno: dict) -> list[np.ndarray]:
    """Per frame: annotated object ids on the frames their time annotation marks moving, 0 elsewhere."""
    spans = {int(k): v for k, v in time_anno.items()}
    out = []
    for t, ann in enumerate(annotations):
        moving_ids = [oid for oid, ranges in spans.items() if any(s <= t <= e for s, e in ranges)]
        out.append(np.where(np.isin(ann, moving_ids), ann, 0).astype(np.uint8))
    return out


def downsample_up(mask: np.ndarray, side: int) -> np.ndarray:
    """A binary map area-downsampled to side x side and bilinearly upsampled back: probability in [0, 1]."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    small = F.interpolate(t, size=(side, side), mode="area")
    return F.interpolate(small, size=mask.shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def track_foreground(frames_prob: list[np.ndarray]) -> list[np.ndarray]:
    """The default model's path for a GMOS-S output: components of prob > 0.5 -> IoU tracker -> MOS-I labels."""
    from gmos_core.tracking import IouTracker, IouTrackerConfig, proposals_from_foreground

    tracker = IouTracker(IouTrackerConfig())
    out = []
    for prob in frames_prob:
        tracked = tracker.step(proposals_from_foreground(prob, 0.5, 1.0))
        out.append(np.where(tracked.moving, tracked.labels, 0).astype(np.uint8))
    return out


def track_instances(gt: list[np.ndarray], annotations: list[np.ndarray]) -> list[np.ndarray]:
    """Every annotated object in view as a proposal (motion 1 where ``gt`` has it moving, else 0) -> IoU tracker."""
    from gmos_core.tracking import InstanceProposals, IouTracker, IouTrackerConfig

    tracker = IouTracker(IouTrackerConfig())
    out = []
    for moving, labels in zip(gt, annotations):
        ids = np.array([i for i in np.unique(labels) if i], labels.dtype)
        masks = labels[None] == ids[:, None, None]
        motions = np.array([float((moving == i).any()) for i in ids], np.float32)
        tracked = tracker.step(InstanceProposals(masks, motions, np.ones(len(ids), np.float32)))
        out.append(np.where(tracked.moving, tracked.labels, 0).astype(np.uint8))
    return out


ORACLES = {  # name -> f(MOS-I ground truth per frame, annotations per frame) -> predicted labels per frame
    "perfect instances": lambda gt, ann: gt,
    "perfect instances, IoU tracker": track_instances,
    "perfect fg/bg, components": lambda gt, ann: track_foreground([(g > 0).astype(np.float32) for g in gt]),
    "perfect fg/bg at 64x64": lambda gt, ann: track_foreground([downsample_up(g > 0, 64) for g in gt]),
    "perfect fg/bg at 32x32": lambda gt, ann: track_foreground([downsample_up(g > 0, 32) for g in gt]),
    "perfect fg/bg at 16x16": lambda gt, ann: track_foreground([downsample_up(g > 0, 16) for g in gt]),
    "perfect fg/bg, one label": lambda gt, ann: [(g > 0).astype(np.uint8) for g in gt],
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="heldout_eval working folder")
    parser.add_argument("--normal", type=int, default=16)
    parser.add_argument("--static-camera", type=int, default=6)
    parser.add_argument("--static-scene", type=int, default=6)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", default="480x272")
    parser.add_argument("--table", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)

    w, h = (int(v) for v in args.size.lower().split("x"))
    data_dir = args.out / "data"
    meta = generate(data_dir, {"normal": args.normal, "static_camera": args.static_camera,
                               "static_scene": args.static_scene}, args.frames, (w, h), SEED_BASE)
    seqs = meta["sequences"]
    moving = [s for s, m in seqs.items() if m["moving_ids"]]
    with (data_dir / "time_annotation.csv").open(newline="") as fh:
        time_anno = {r["seq_name"]: ast.literal_eval(r["time_anno"]) for r in csv.DictReader(fh)}
    anns = {seq: read_annotations(data_dir, seq) for seq in moving}
    gts = {seq: mos_i_ground_truth(anns[seq], time_anno[seq]) for seq in moving}
    if not any(g.any() for seq in moving for g in gts[seq]):
        raise RuntimeError(f"{data_dir}: the MOS-I ground truth is empty on every frame; expected moving objects")

    rows = {}
    for name, oracle in ORACLES.items():
        pred_dir = args.out / "pred_oracle" / name.replace(" ", "_").replace(",", "").replace("/", "")
        for seq in moving:
            write_prediction(pred_dir, seq, oracle(gts[seq], anns[seq]))
        rows[name] = mos_i_scores(pred_dir, data_dir, moving, args.out / "eval_oracle" / pred_dir.name)
        print(f"{name}: {rows[name]}", flush=True)

    lines = [f"Ceilings on the held-out synthetic set ({len(moving)} clips with moving objects, {args.frames} "
             f"frames at {w}x{h}; seeds {', '.join(f'{k} {v}+' for k, v in SEED_BASE.items())}): perfect "
             "outputs of each kind through the shipped post-processing, scored with `gmos eval --protocol mos-i`.",
             "", "| oracle | mtIoU | J_mov | FP count |", "|---|---|---|---|"]
    lines += [f"| {name} | {r['mtiou']:.3f} | {r['j_mov']:.3f} | {r['fp_count']:.2f} |" for name, r in rows.items()]
    lines += ["", "Command: `python3 benchmarks/heldout_oracles.py " + " ".join(sys.argv[1:] if argv is None else argv)
              + "`"]
    text = "\n".join(lines) + "\n"
    (args.out / "oracle_table.md").write_text(text)
    (args.out / "oracle_scores.json").write_text(json.dumps(rows, indent=1))
    if args.table:
        args.table.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
