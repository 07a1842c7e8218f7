"""Optional evaluation of a replay against ground truth: a label-image topic of a bag, or a DAVIS-style
folder of palette PNGs (one per frame, sorted by name, frame i = i-th image of the replay).

Scores (through gmos_core.metrics): DAVIS J&F of the *moving* objects (unsupervised convention:
predictions matched to GT objects by the Hungarian algorithm) and the IoU of the dynamic mask with the
GT foreground (every non-zero, non-void GT pixel), per frame averaged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

VOID = 255


def _moving_labels(result: Any, max_ids: int = 20) -> np.ndarray:
    """Instance labels of the moving objects only, renumbered 1..k (k <= max_ids, by motion probability)."""
    from gmos_core.engine.result import MotionState

    moving = sorted((o for o in result.objects if o.state == MotionState.MOVING), key=lambda o: -o.motion_prob)
    out = np.zeros(result.labels.shape, np.uint8)
    for new_id, obj in enumerate(moving[:max_ids], start=1):
        out[result.labels == obj.instance_id] = new_id
    return out


def _dynamic(result: Any) -> np.ndarray:
    from gmos_core.bridge.messages import dynamic_mask_array

    return dynamic_mask_array(result) > 0


def load_gt_folder(folder: Path) -> list[np.ndarray]:
    from gmos_core.io import read_indexed_png

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise ValueError(f"ground-truth folder {folder} has no .png label images; expected DAVIS-style palette PNGs")
    return [read_indexed_png(p) for p in files]


def load_gt_topic(bag: Path, topic: str) -> dict[int, np.ndarray]:
    """{header stamp ns: (H, W) label image} from a mono8/mono16 Image topic."""
    from gmos_core.bags.messages import stamp_to_ns
    from gmos_core.bags.reader import open_bag

    labels: dict[int, np.ndarray] = {}
    with open_bag(bag) as source:
        source.require_topic(topic, ("sensor_msgs/msg/Image",), "ground-truth")
        conns = source.connections(topic)
        for conn, _, raw in source.reader.messages(connections=conns):
            msg = source.reader.deserialize(raw, conn.msgtype)
            dtype = {"mono8": np.uint8, "8UC1": np.uint8, "mono16": np.uint16, "16UC1": np.uint16}.get(msg.encoding)
            if dtype is None:
                raise ValueError(f"ground-truth topic {topic}: encoding {msg.encoding!r}; expected mono8/8UC1/mono16/16UC1")
            rows = np.frombuffer(np.asarray(msg.data, np.uint8).tobytes(), dtype=np.dtype(dtype).newbyteorder(
                ">" if msg.is_bigendian else "<"))
            itemsize = np.dtype(dtype).itemsize
            image = rows.reshape(msg.height, msg.step // itemsize)[:, : msg.width]
            labels[stamp_to_ns(msg.header.stamp)] = image.astype(np.uint16)
    if not labels:
        raise ValueError(f"ground-truth topic {topic} in {bag} has no messages")
    return labels


def make_evaluator(gt_dir: Optional[Path] = None, gt_bag: Optional[Path] = None,
                   gt_topic: Optional[str] = None) -> Callable[[list[Any]], dict[str, Any]]:
    """An ``evaluate(records)`` for ``replay_bag``: joins predictions to GT by stamp (topic) or order (folder)."""
    if (gt_dir is None) == (gt_topic is None):
        raise ValueError("give exactly one ground truth: a DAVIS-style folder or a bag topic")
    if gt_dir is not None and not Path(gt_dir).is_dir():  # checked before the replay, not after it
        raise ValueError(f"ground-truth folder {gt_dir} not found; expected a folder of DAVIS-style palette PNGs")

    def evaluate(records: list[Any]) -> dict[str, Any]:
        from gmos_core.metrics.davis import evaluate_davis_sequence

        results = [r.result for r in records]
        if gt_dir is not None:
            gt = load_gt_folder(gt_dir)
            by_index = {r.frame.index: r for r in results}
            pairs = [(gt[i], by_index[i]) for i in range(len(gt)) if i in by_index]
        else:
            gt_map = load_gt_topic(gt_bag, gt_topic)
            pairs = [(gt_map[r.frame.stamp_ns], r) for r in results if r.frame.stamp_ns in gt_map]
        if not pairs:
            raise ValueError("no ground-truth frame matches a segmented frame (join by header stamp or frame order)")
        for g, r in pairs:
            if g.shape != r.labels.shape:
                raise ValueError(f"ground truth is {g.shape[1]}x{g.shape[0]} but frame {r.frame.index} is "
                                 f"{r.labels.shape[1]}x{r.labels.shape[0]}")
        gt_frames = [g for g, _ in pairs]
        pred_frames = [_moving_labels(r) for _, r in pairs]
        jf = evaluate_davis_sequence(gt_frames, pred_frames, convention="unsupervised", name="replay",
                                     objects_from_first_frame=False)
        ious = []
        for g, r in pairs:
            fg = (g > 0) & (g != VOID)
            pred = _dynamic(r) & (g != VOID)
            union = np.logical_or(fg, pred).sum()
            ious.append(1.0 if union == 0 else float(np.logical_and(fg, pred).sum() / union))
        return {"frames_evaluated": len(pairs), "J&F_mean (moving objects)": round(jf.jf_mean, 4),
                "J_mean": round(jf.j_mean, 4), "F_mean": round(jf.f_mean, 4),
                "dynamic_mask_IoU_mean": round(float(np.mean(ious)), 4)}

    return evaluate
