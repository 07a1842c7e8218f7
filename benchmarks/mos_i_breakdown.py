"""Where a prediction loses its MOS-I score: every moving (frame, object) pair and every predicted (frame, id)
pair, sorted into what went wrong.

    python3 benchmarks/mos_i_breakdown.py --data DIR --pred DIR [--json FILE]

DIR (data) holds ``Annotations/<seq>/*.png`` and ``time_annotation.csv`` (what ``benchmarks/heldout_eval.py`` and
``tracker_sweep.py`` generate); DIR (pred) holds ``<seq>/*.png`` label images. The matching is MOS-I's own
(sequence-level Hungarian, ``gmos_core.metrics.mos_i``); mtIoU_k = I_k / (P + G - I_k), so:

* G, the moving (frame, object) pairs, splits into **hit** (matched IoU > 0.5), **low IoU** (the matched id
  is there, IoU <= 0.5), and **no prediction** (the matched id is absent), the last one further into
  *merged* (at least half of the object is labelled, by an id that also covers 30 % of another object),
  *other id* (at least half labelled, by an id of its own that MOS-I matched elsewhere: a split track) and
  *not detected* (by object size: below 0.2 % of the frame, the tracker's area floor; 0.2-0.5 %; 0.5-2 %; more);
* P, the non-empty predicted (frame, id) pairs, splits into those on a moving object's frames (hit or low IoU),
  those on **static frames** of a matched object (before it starts, after it stops), and **extra** ids
  matched to no moving object.

"What if" rows give the pooled mtIoU@0.5 with one kind of error removed. Pooled numbers weigh long clips more
than MOS-I's mean over sequences does; they are for finding where the score goes, not for reporting it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# object sizes (fractions of the frame; 0.002 = the IoU tracker's min_area_fraction): (upper edge, name)
SIZE_BINS = ((0.002, "< 0.2 %"), (0.005, "0.2-0.5 %"), (0.02, "0.5-2 %"), (float("inf"), ">= 2 %"))
MERGE_COVER = 0.3  # an id covering this much of a second object merges the two


def _size_bin(fraction: float) -> str:
    return next(name for edge, name in SIZE_BINS if fraction < edge)


def breakdown_sequence(gt_frames: list[np.ndarray], pred_frames: list[np.ndarray], time_anno: dict,
                       name: str = "") -> dict:
    """Counts of one sequence (label images of equal size; ids 1..20 scored, as MOS-I)."""
    from gmos_core.metrics.mos_i import frame_table, score_mos_i_sequence

    n = min(len(gt_frames), len(pred_frames))
    gt_frames, pred_frames = gt_frames[:n], pred_frames[:n]
    for f, (gt, pred) in enumerate(zip(gt_frames, pred_frames)):
        if gt.shape != pred.shape:
            raise ValueError(f"{name} frame {f}: prediction {pred.shape} and ground truth {gt.shape} differ in "
                             "size; this breakdown needs predictions at the annotation size")
    tables = [frame_table(g, p, f"{name} frame {f}") for f, (g, p) in enumerate(zip(gt_frames, pred_frames))]
    scores = score_mos_i_sequence(tables, time_anno, name=name, keep_timeline=True).slhm
    counts = {"G": 0, "hit": 0, "low_iou": 0, "no_prediction": 0, "merged": 0, "other_id": 0,
              "not_detected": {}, "P": 0, "P_on_moving": 0, "P_static_frames": 0, "P_extra": 0}
    counts["P"] = int(sum(np.count_nonzero(t.pred_area) for t in tables))
    pixels = gt_frames[0].size if n else 1
    for obj, moving, present, iou in zip(scores.object_ids, scores.gt_moving, scores.pred_present, scores.iou):
        moving, present, iou = np.asarray(moving), np.asarray(present), np.asarray(iou)
        counts["G"] += int(moving.sum())
        hit = moving & (iou > 0.5)
        counts["hit"] += int(hit.sum())
        counts["low_iou"] += int((moving & present & ~hit).sum())
        counts["P_on_moving"] += int((moving & present).sum())
        counts["P_static_frames"] += int((~moving & present).sum())
        for f in np.flatnonzero(moving & ~present):
            counts["no_prediction"] += 1
            gt, pred = gt_frames[f], pred_frames[f]
            on_object = gt == obj
            labelled = pred[on_object]
            labelled = labelled[(labelled > 0) & (labelled <= 20)]
            if on_object.any() and labelled.size >= 0.5 * on_object.sum():
                owner = np.bincount(labelled).argmax()
                owned = pred == owner
                others = [o for o in np.unique(gt[owned]) if o not in (0, obj)
                          and np.count_nonzero(owned & (gt == o)) >= MERGE_COVER * np.count_nonzero(gt == o)]
                counts["merged" if others else "other_id"] += 1
            else:
                size = _size_bin(np.count_nonzero(on_object) / pixels)
                counts["not_detected"][size] = counts["not_detected"].get(size, 0) + 1
    counts["P_extra"] = counts["P"] - counts["P_on_moving"] - counts["P_static_frames"]
    counts["mtiou"] = scores.mtiou
    return counts


def pooled(per_sequence: dict[str, dict]) -> dict:
    total: dict = {"not_detected": {}}
    for counts in per_sequence.values():
        for key, value in counts.items():
            if key == "not_detected":
                for size, k in value.items():
                    total["not_detected"][size] = total["not_detected"].get(size, 0) + k
            elif key != "mtiou":
                total[key] = total.get(key, 0) + value
    return total


def what_if(total: dict) -> dict[str, float]:
    """Pooled mtIoU@0.5 as measured and with one kind of error removed."""
    g, p, i = total["G"], total["P"], total["hit"]

    def score(hits, preds):
        return hits / max(1, preds + g - hits)

    return {
        "as measured": score(i, p),
        "no extra ids": score(i, p - total["P_extra"]),
        "no static-frame predictions": score(i, p - total["P_static_frames"]),
        "low-IoU pairs made hits": score(i + total["low_iou"], p),
        "merged and other-id pairs made hits": score(i + total["merged"] + total["other_id"],
                                                     p + total["merged"] + total["other_id"]),
        "undetected pairs made hits": score(i + sum(total["not_detected"].values()),
                                            p + sum(total["not_detected"].values())),
    }


def format_report(total: dict) -> str:
    g, p = max(1, total["G"]), max(1, total["P"])
    undetected = sum(total["not_detected"].values())
    lines = [f"moving (frame, object) pairs G = {total['G']}",
             f"  hit (IoU > 0.5)        {total['hit']:6d}  {total['hit'] / g:.2f}",
             f"  low IoU                {total['low_iou']:6d}  {total['low_iou'] / g:.2f}",
             f"  no prediction          {total['no_prediction']:6d}  {total['no_prediction'] / g:.2f}",
             f"    merged with another  {total['merged']:6d}  {total['merged'] / g:.2f}",
             f"    under another id     {total['other_id']:6d}  {total['other_id'] / g:.2f}",
             f"    not detected         {undetected:6d}  {undetected / g:.2f}"]
    for _, size in SIZE_BINS:
        k = total["not_detected"].get(size, 0)
        lines.append(f"      object {size:<10}   {k:6d}  {k / g:.2f}")
    lines += [f"predicted (frame, id) pairs P = {total['P']}",
              f"  on moving frames       {total['P_on_moving']:6d}  {total['P_on_moving'] / p:.2f}",
              f"  on static frames       {total['P_static_frames']:6d}  {total['P_static_frames'] / p:.2f}",
              f"  extra ids              {total['P_extra']:6d}  {total['P_extra'] / p:.2f}",
              "pooled mtIoU@0.5:"]
    lines += [f"  {name:<38} {value:.3f}" for name, value in what_if(total).items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    from gmos_core.metrics.readers import list_frames, load_time_annotations, read_label_png

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with Annotations/ and time_annotation.csv")
    parser.add_argument("--pred", type=Path, required=True, help="folder of predicted label PNGs, one folder per clip")
    parser.add_argument("--json", type=Path, default=None, help="write the per-clip and pooled counts here")
    args = parser.parse_args(argv)

    annotations = load_time_annotations(args.data / "time_annotation.csv")
    per_sequence = {}
    for k, (seq, anno) in enumerate(annotations.items()):
        gt = [read_label_png(p) for p in list_frames(args.data / "Annotations" / seq, "ground-truth")]
        pred = [read_label_png(p) for p in list_frames(args.pred / seq, "prediction")]
        per_sequence[seq] = breakdown_sequence(gt, pred, anno, seq)
        print(f"[{k + 1}/{len(annotations)}] {seq}: mtIoU {per_sequence[seq]['mtiou']:.3f}", file=sys.stderr)
    total = pooled(per_sequence)
    print(format_report(total))
    if args.json:
        args.json.write_text(json.dumps({"pooled": total, "what_if": what_if(total),
                                         "per_sequence": per_sequence}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
