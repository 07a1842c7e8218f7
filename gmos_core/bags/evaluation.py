"""Optional evaluation of a replay against ground truth: a label-image topic of a bag, or a DAVIS-style
folder of palette PNGs (one per frame, sorted by name, frame i = i-th image of the replay).

Scores (through gmos_core.metrics): DAVIS J&F of the *moving* objects (unsupervised convention:
predictions matched to GT objects by the Hungarian algorithm) and the IoU of the dynamic mask with the
GT foreground (every non-zero, non-void GT pixel), per frame averaged.

Streaming (issue 15): each output record is scored as the replay produces it and then dropped, so a
replay's memory does not grow with its length; the sequence-level J&F is accumulated exactly (see
``_SequenceJF``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

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


def _dynamic(result: Any, mask_threshold: Optional[float] = None) -> np.ndarray:
    """The dynamic mask as published (GMOS-S: ``fg_prob > mask_threshold``, the node's parameter)."""
    from gmos_core.bridge.messages import dynamic_mask_array

    return dynamic_mask_array(result, mask_threshold) > 0


def _gt_folder_files(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise ValueError(f"ground-truth folder {folder} has no .png label images; expected DAVIS-style palette PNGs")
    return files


def load_gt_folder(folder: Path) -> list[np.ndarray]:
    """Every label image of a DAVIS-style folder (small folders only: the replay reads them one at a time)."""
    from gmos_core.io import read_indexed_png

    return [read_indexed_png(p) for p in _gt_folder_files(folder)]


def _decode_label_image(msg: Any, topic: str) -> np.ndarray:
    dtype = {"mono8": np.uint8, "8UC1": np.uint8, "mono16": np.uint16, "16UC1": np.uint16}.get(msg.encoding)
    if dtype is None:
        raise ValueError(f"ground-truth topic {topic}: encoding {msg.encoding!r}; expected mono8/8UC1/mono16/16UC1")
    rows = np.frombuffer(np.asarray(msg.data, np.uint8).tobytes(), dtype=np.dtype(dtype).newbyteorder(
        ">" if msg.is_bigendian else "<"))
    itemsize = np.dtype(dtype).itemsize
    return rows.reshape(msg.height, msg.step // itemsize)[:, : msg.width].astype(np.uint16)


def _iter_gt_topic(bag: Path, topic: str):
    """(header stamp ns, (H, W) uint16 label image) of a mono8/mono16 Image topic, in bag order."""
    from gmos_core.bags.messages import stamp_to_ns
    from gmos_core.bags.reader import open_bag

    with open_bag(bag) as source:
        source.require_topic(topic, ("sensor_msgs/msg/Image",), "ground-truth")
        conns = source.connections(topic)
        for conn, _, raw in source.reader.messages(connections=conns):
            msg = source.reader.deserialize(raw, conn.msgtype)
            yield stamp_to_ns(msg.header.stamp), _decode_label_image(msg, topic)


def load_gt_topic(bag: Path, topic: str) -> dict[int, np.ndarray]:
    """{header stamp ns: (H, W) label image} from a mono8/mono16 Image topic (all in memory: small bags only;
    the replay spills them to disk instead, see ``_SpilledGtTopic``)."""
    labels = dict(_iter_gt_topic(bag, topic))
    if not labels:
        raise ValueError(f"ground-truth topic {topic} in {bag} has no messages")
    return labels


class _SpilledGtTopic:
    """A GT label topic read once and spilled to a temporary folder (compressed .npz, one per stamp): memory
    holds the sorted stamps only (8 bytes per GT frame), not the label images (issue 15)."""

    def __init__(self, bag: Path, topic: str) -> None:
        import tempfile

        self._dir = tempfile.TemporaryDirectory(prefix="gmos_gt_")
        stamps = []
        for i, (stamp, label) in enumerate(_iter_gt_topic(bag, topic)):
            small = label.astype(np.uint8) if label.max(initial=0) < 256 else label
            np.savez_compressed(Path(self._dir.name) / f"{i}.npz", label=small)
            stamps.append(stamp)
        if not stamps:
            self.close()
            raise ValueError(f"ground-truth topic {topic} in {bag} has no messages")
        self._stamps = np.asarray(stamps, np.int64)
        self._order = np.argsort(self._stamps, kind="stable")
        self._sorted = self._stamps[self._order]

    def get(self, stamp_ns: int) -> Optional[np.ndarray]:
        # The last message with this stamp wins, as in the dict of load_gt_topic.
        right = int(np.searchsorted(self._sorted, stamp_ns, side="right"))
        if right == 0 or self._sorted[right - 1] != stamp_ns:
            return None
        with np.load(Path(self._dir.name) / f"{int(self._order[right - 1])}.npz") as data:
            return data["label"].astype(np.uint16)

    def close(self) -> None:
        self._dir.cleanup()


class _SequenceJF:
    """DAVIS J&F of a sequence (unsupervised convention, objects from the whole sequence), accumulated
    frame by frame: the same numbers as ``evaluate_davis_sequence(..., convention="unsupervised",
    objects_from_first_frame=False)`` without keeping the frames. Per (prediction, GT object) pair it keeps
    the sums of J and F over frames, which is all the Hungarian matching and the means need.

    The GT object count grows as ids appear; a new id was absent (an empty mask) on every earlier frame, so
    its column for those frames equals the running sums of every prediction against an empty GT object,
    kept in one extra always-empty column. Predictions have at most MAX_IDS ids (``_moving_labels``); row
    MAX_IDS + 1 is always empty and stands for the padding predictions when GT objects outnumber them.
    """

    MAX_IDS = 20

    def __init__(self) -> None:
        self.frames = 0
        self.n_obj = 0
        self.pred_max = 0
        rows = self.MAX_IDS + 1
        self.sum_j = np.zeros((rows, 0))
        self.sum_f = np.zeros((rows, 0))
        self.empty_gt_j = np.zeros(rows)  # sums of J/F against an object absent from every frame so far
        self.empty_gt_f = np.zeros(rows)

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        from gmos_core.metrics.davis import VOID_ID, frame_jf_from_labels

        gt_ids = np.where(gt == VOID_ID, 0, gt)
        frame_max = int(gt_ids.max(initial=0))
        if frame_max > 255:
            raise ValueError(f"ground-truth ids above 255 are not supported (largest {frame_max})")
        pred_max = int(pred.max(initial=0))
        if pred_max > self.MAX_IDS:
            raise ValueError(f"internal error: predicted id {pred_max} > {self.MAX_IDS}")
        if frame_max > self.n_obj:  # new objects: empty on every earlier frame
            new = frame_max - self.n_obj
            self.sum_j = np.hstack([self.sum_j, np.repeat(self.empty_gt_j[:, None], new, axis=1)])
            self.sum_f = np.hstack([self.sum_f, np.repeat(self.empty_gt_f[:, None], new, axis=1)])
            self.n_obj = frame_max
        self.pred_max = max(self.pred_max, pred_max)
        # One more GT column than there are objects (always empty: ids above n_obj are zeroed) and one more
        # prediction row than ids exist (always empty).
        j, f = frame_jf_from_labels(gt_ids, pred, self.n_obj + 1, self.MAX_IDS + 1)
        self.sum_j += j[:, : self.n_obj]
        self.sum_f += f[:, : self.n_obj]
        self.empty_gt_j += j[:, self.n_obj]
        self.empty_gt_f += f[:, self.n_obj]
        self.frames += 1

    def result(self) -> tuple[float, float, float]:
        """(J&F mean, J mean, F mean) over the GT objects after Hungarian matching (NaN without objects)."""
        from scipy.optimize import linear_sum_assignment

        if self.n_obj == 0 or self.frames == 0:
            return float("nan"), float("nan"), float("nan")
        n_pred = max(self.pred_max, self.n_obj)
        rows = [min(p, self.MAX_IDS) for p in range(n_pred)]  # padding predictions: the always-empty row
        mean_j = self.sum_j[rows] / self.frames
        mean_f = self.sum_f[rows] / self.frames
        pred_rows, gt_cols = linear_sum_assignment(-(mean_j + mean_f) / 2)
        j_mean = float(np.mean(mean_j[pred_rows, gt_cols]))
        f_mean = float(np.mean(mean_f[pred_rows, gt_cols]))
        return (j_mean + f_mean) / 2, j_mean, f_mean


class ReplayEvaluation:
    """One replay's evaluation, fed one output record at a time (``add``), scored at the end (``result``).

    Memory stays constant over the replay: each record is scored against its GT frame as it arrives
    (dynamic-mask IoU summed, DAVIS J/F accumulated per object pair) and then dropped. GT frames are read
    one at a time (folder) or from a temporary spill of the GT topic. A GT problem (wrong size, unreadable
    file) stops the evaluation, not the replay: ``result`` raises it as a ValueError afterwards.
    """

    def __init__(self, gt_dir: Optional[Path], gt_bag: Optional[Path], gt_topic: Optional[str]) -> None:
        self._gt_dir, self._gt_bag, self._gt_topic = gt_dir, gt_bag, gt_topic
        self._folder: Optional[list[Path]] = None
        self._folder_done: Optional[bytearray] = None  # GT indices already paired (one bit of state per GT file)
        self._topic: Optional[_SpilledGtTopic] = None
        self._jf = _SequenceJF()
        self._iou_sum = 0.0
        self._pairs = 0
        self._error: Optional[Exception] = None

    def _ground_truth(self, result: Any) -> Optional[np.ndarray]:
        if self._gt_dir is not None:
            from gmos_core.io import read_indexed_png

            if self._folder is None:
                self._folder = _gt_folder_files(self._gt_dir)
                self._folder_done = bytearray(len(self._folder))
            index = int(result.frame.index)
            if not (0 <= index < len(self._folder)) or self._folder_done[index]:
                return None
            self._folder_done[index] = 1
            return read_indexed_png(self._folder[index])
        if self._topic is None:
            self._topic = _SpilledGtTopic(self._gt_bag, self._gt_topic)
        return self._topic.get(int(result.frame.stamp_ns))

    def add(self, record: Any, mask_threshold: Optional[float] = None) -> None:
        """Score one output record; ``mask_threshold``: the node's, so that the mask scored is the one published."""
        if self._error is not None:
            return
        result = record.result
        try:
            gt = self._ground_truth(result)
            if gt is None:
                return
            if gt.shape != result.labels.shape:
                raise ValueError(f"ground truth is {gt.shape[1]}x{gt.shape[0]} but frame {result.frame.index} is "
                                 f"{result.labels.shape[1]}x{result.labels.shape[0]}")
            self._jf.add(gt, _moving_labels(result))
            fg = (gt > 0) & (gt != VOID)
            pred = _dynamic(result, mask_threshold) & (gt != VOID)
            union = np.logical_or(fg, pred).sum()
            self._iou_sum += 1.0 if union == 0 else float(np.logical_and(fg, pred).sum() / union)
            self._pairs += 1
        except (ValueError, OSError) as exc:
            self._error = exc
            self.close()

    def result(self) -> dict[str, Any]:
        self.close()
        if self._error is not None:
            raise ValueError(str(self._error)) from self._error
        if not self._pairs:
            raise ValueError("no ground-truth frame matches a segmented frame (join by header stamp or frame order)")
        jf, j, f = self._jf.result()
        return {"frames_evaluated": self._pairs, "J&F_mean (moving objects)": round(jf, 4),
                "J_mean": round(j, 4), "F_mean": round(f, 4),
                "dynamic_mask_IoU_mean": round(self._iou_sum / self._pairs, 4)}

    def close(self) -> None:
        if self._topic is not None:
            self._topic.close()
            self._topic = None


class ReplayEvaluator:
    """What ``make_evaluator`` returns: ``new_run()`` starts a streaming ``ReplayEvaluation`` (what
    ``replay_bag`` uses); calling it with a list of records scores them at once (tests, small sets)."""

    def __init__(self, gt_dir: Optional[Path], gt_bag: Optional[Path], gt_topic: Optional[str]) -> None:
        self.gt_dir, self.gt_bag, self.gt_topic = gt_dir, gt_bag, gt_topic

    def new_run(self) -> ReplayEvaluation:
        return ReplayEvaluation(self.gt_dir, self.gt_bag, self.gt_topic)

    def __call__(self, records: Iterable[Any]) -> dict[str, Any]:
        run = self.new_run()
        for record in records:
            run.add(record)
        return run.result()


def make_evaluator(gt_dir: Optional[Path] = None, gt_bag: Optional[Path] = None,
                   gt_topic: Optional[str] = None) -> ReplayEvaluator:
    """The ground-truth evaluation for ``replay_bag``: joins predictions to GT by stamp (topic) or order (folder)."""
    if (gt_dir is None) == (gt_topic is None):
        raise ValueError("give exactly one ground truth: a DAVIS-style folder or a bag topic")
    if gt_dir is not None and not Path(gt_dir).is_dir():  # checked before the replay, not after it
        raise ValueError(f"ground-truth folder {gt_dir} not found; expected a folder of DAVIS-style palette PNGs")
    return ReplayEvaluator(Path(gt_dir) if gt_dir is not None else None, Path(gt_bag) if gt_bag else None, gt_topic)
