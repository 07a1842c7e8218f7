"""MOS-I: moving-object segmentation with instance identity over time (the GMOS paper's protocol).

A re-implementation of the official ``metrics/benchmark_mos_i.py`` in numpy/scipy (gmos_reference.md §11)
that reproduces its numbers: every per-sequence and aggregate value of the reference fixture to 1e-9.

Per sequence, over ``n = min(#GT, #predicted)`` frames:

* ground truth channel ``c`` (id ``c+1``, 20 channels) is the GT mask of that id on frames where the time
  annotation says the object moves, and empty otherwise;
* prediction channel ``c`` is the mask of predicted id ``c+1`` (ids > 20 are ignored), optionally zeroed on
  frames whose per-channel motion score (``<seq>___motion.npy``) is <= 0.5; predictions of another size are
  resized channel by channel (bilinear, align_corners False) and re-thresholded at > 0.5;
* prediction channels are matched to GT channels with the Hungarian algorithm on ``1 - IoU`` (20 predicted
  rows x 20 GT columns, ``scipy.optimize.linear_sum_assignment``): once per sequence on the IoU averaged over
  frames ("slhm", the default), or on every frame ("flhm", ``frame_level=True``);
* J_mov (per moving object), FP count (mean over frames of non-empty predictions on non-moving channels) and
  the mtIoU vector over the thresholds 0.50 … 0.95 are then computed from the matched channels.

The dtypes follow the official code: IoU, J_mov and FP count in float32 (reductions in the order PyTorch's CPU
kernels use, see :mod:`gmos_core.metrics.numerics`), mtIoU from exact integer counts in float64.  Only the
per-frame ``21 x 21`` table of (predicted id, GT id) pixel counts is kept per frame, so a sequence never needs
to be held in memory as masks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from gmos_core.metrics.numerics import (
    resize_binary_channels,
    torch_sum_rows_f32,
    torch_sum_wide_rows_f32,
)

__all__ = [
    "MAX_OBJECTS",
    "MOS_I_THRESHOLDS",
    "MotionScoreError",
    "ObjectIdError",
    "FrameTable",
    "frame_table",
    "motion_matrix",
    "MosIScores",
    "MosISequenceResult",
    "MosIAggregate",
    "score_mos_i_sequence",
    "evaluate_mos_i_arrays",
    "aggregate_mos_i",
    "format_mos_i_report",
]

#: Number of object channels in the official protocol (ids 1..20).
MAX_OBJECTS = 20
#: mtIoU thresholds 0.50, 0.55, ..., 0.95 (compared in float32, as a float32 tensor against a Python float).
MOS_I_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)
_EPS = 1e-8
_MOTION_GATE = 0.5


class ObjectIdError(ValueError):
    """A ground-truth id or time-annotation key outside 1..20 (the official script crashes on these)."""


class MotionScoreError(ValueError):
    """A ``<seq>___motion.npy`` file whose shape does not fit the sequence."""


@dataclass
class FrameTable:
    """Pixel counts of one frame: everything the metric needs from the masks.

    ``inter[p, g]`` = pixels of predicted channel p inside GT id g+1 (before motion gating),
    ``pred_area[p]``, ``gt_area[g]`` = channel sizes; ``resized`` = the prediction had another size.
    """

    inter: np.ndarray  # (20, 20) int64
    pred_area: np.ndarray  # (20,) int64
    gt_area: np.ndarray  # (20,) int64
    resized: bool = False


def _check_gt_ids(gt: np.ndarray, where: str) -> None:
    top = int(gt.max()) if gt.size else 0
    if top > MAX_OBJECTS:
        ids = np.unique(gt[gt > MAX_OBJECTS])
        raise ObjectIdError(
            f"{where}: ground-truth object id(s) {ids[:10].tolist()} exceed {MAX_OBJECTS}; the MOS-I protocol "
            f"supports ids 1..{MAX_OBJECTS} (0 = background)"
        )


def frame_table(gt: np.ndarray, pred: np.ndarray, where: str = "frame") -> FrameTable:
    """Count the (predicted channel, GT channel) overlaps of one frame.

    gt: (H, W) integer label map, ids 0..20.  pred: (h, w) integer label map; ids > 20 are ignored (the
    official rule).  A prediction of another size is resized per channel (bilinear, > 0.5).
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.ndim != 2 or pred.ndim != 2:
        raise ValueError(f"{where}: expected 2-D label maps, got GT {gt.shape} and prediction {pred.shape}")
    if pred.shape == gt.shape and gt.dtype == np.uint8 and pred.dtype == np.uint8:
        # Fast path for 8-bit PNGs (one pass, no int64 temporaries): code = pred * 256 + gt, one bincount.
        code = np.left_shift(pred.astype(np.uint16), 8)
        np.bitwise_or(code, gt, out=code, casting="unsafe")
        table = np.bincount(code.ravel(), minlength=256 * 256).reshape(256, 256)
        if table[:, MAX_OBJECTS + 1 :].any():
            _check_gt_ids(gt, where)
        # rows of predicted ids > 20 are ignored (they count as background); GT areas use every row
        return FrameTable(
            inter=table[1 : MAX_OBJECTS + 1, 1 : MAX_OBJECTS + 1].copy(),
            pred_area=table[1 : MAX_OBJECTS + 1, :].sum(axis=1),
            gt_area=table[:, 1 : MAX_OBJECTS + 1].sum(axis=0),
            resized=False,
        )
    _check_gt_ids(gt, where)
    gt16 = gt.astype(np.int64, copy=False)
    if pred.shape == gt.shape:
        pred16 = pred.astype(np.int64, copy=False)
        pred16 = np.where(pred16 > MAX_OBJECTS, 0, pred16)
        table = np.bincount((pred16 * (MAX_OBJECTS + 1) + gt16).ravel(), minlength=(MAX_OBJECTS + 1) ** 2)
        table = table.reshape(MAX_OBJECTS + 1, MAX_OBJECTS + 1)
        return FrameTable(
            inter=table[1:, 1:].copy(),
            pred_area=table[1:, :].sum(axis=1),
            gt_area=table[:, 1:].sum(axis=0),
            resized=False,
        )
    # Official resize branch: one binary channel per id, resized independently (channels may overlap).
    present = np.unique(pred)
    present = present[(present >= 1) & (present <= MAX_OBJECTS)]
    inter = np.zeros((MAX_OBJECTS, MAX_OBJECTS), np.int64)
    pred_area = np.zeros(MAX_OBJECTS, np.int64)
    gt_flat = gt16.ravel()
    if present.size:
        channels = pred[None, :, :] == present[:, None, None]
        resized = resize_binary_channels(channels, gt.shape)
        for k, pid in enumerate(present.tolist()):
            on = resized[k].ravel()
            pred_area[pid - 1] = int(on.sum())
            inter[pid - 1] = np.bincount(gt_flat[on], minlength=MAX_OBJECTS + 1)[1:]
    gt_area = np.bincount(gt_flat, minlength=MAX_OBJECTS + 1)[1:]
    return FrameTable(inter=inter, pred_area=pred_area, gt_area=gt_area, resized=True)


def motion_matrix(time_anno: Mapping[str | int, Sequence[Sequence[int]]], n_frames: int) -> np.ndarray:
    """(n_frames, 20) 0/1 matrix of moving objects from a time annotation ``{'id': [[start, end], ...]}``.

    Ranges are inclusive annotation-frame indices, clipped to the evaluated frames like Python slicing.
    """
    m = np.zeros((n_frames, MAX_OBJECTS), np.float32)
    for key, ranges in time_anno.items():
        try:
            obj = int(key)
        except (TypeError, ValueError):
            raise ObjectIdError(f"time annotation key {key!r} is not an object id (expected '1'..'{MAX_OBJECTS}')")
        if not 1 <= obj <= MAX_OBJECTS:
            raise ObjectIdError(
                f"time annotation key {obj} outside 1..{MAX_OBJECTS} (the MOS-I protocol has {MAX_OBJECTS} channels)"
            )
        for rng in ranges:
            if len(rng) != 2:
                raise ValueError(f"time annotation range {rng!r} of object {obj} is not [start, end]")
            start, end = int(rng[0]), int(rng[1])
            m[start : end + 1, obj - 1] = 1.0
    return m


@dataclass
class MosIScores:
    """One matching variant's numbers for one sequence (or the aggregate, see :class:`MosIAggregate`)."""

    mtiou: float
    j_mov: float
    fp_count: float
    mtiou_per_threshold: list[float]
    j_mov_per_object: list[float]
    object_ids: list[int]
    # Per evaluated frame, for plots: for each object in object_ids, GT-moving flags, matched prediction
    # non-empty flags and the IoU of the matched channel (n_frames lists).
    gt_moving: list[list[bool]] = field(default_factory=list, repr=False)
    pred_present: list[list[bool]] = field(default_factory=list, repr=False)
    iou: list[list[float]] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        return {
            "mtiou": self.mtiou,
            "j_mov": self.j_mov,
            "fp_count": self.fp_count,
            "mtiou_per_threshold": list(self.mtiou_per_threshold),
            "j_mov_per_object": list(self.j_mov_per_object),
            "object_ids": list(self.object_ids),
        }


@dataclass
class MosISequenceResult:
    name: str
    n_frames: int
    n_gt_frames: int
    n_pred_frames: int
    resized: bool
    motion_scores_used: bool
    num_moving_objects: int
    slhm: MosIScores
    flhm: MosIScores | None = None

    def summary(self) -> dict:
        out = {
            "n_frames": self.n_frames,
            "n_gt_frames": self.n_gt_frames,
            "n_pred_frames": self.n_pred_frames,
            "prediction_resized": self.resized,
            "motion_scores_used": self.motion_scores_used,
            "num_moving_objects": self.num_moving_objects,
            "slhm": self.slhm.summary(),
        }
        if self.flhm is not None:
            out["flhm"] = self.flhm.summary()
        return out


def _iou_matrices(inter: np.ndarray, pred_area: np.ndarray, gt_area: np.ndarray) -> np.ndarray:
    """(n, 20 pred, 20 gt) float32 IoU with both-empty = 1."""
    union = pred_area[:, :, None] + gt_area[:, None, :] - inter
    iou = inter.astype(np.float32) / np.maximum(union, 1).astype(np.float32)
    iou[union == 0] = np.float32(1.0)
    return iou.astype(np.float32)


def _hungarian_slots(iou: np.ndarray) -> np.ndarray:
    """For each GT slot c, the predicted channel assigned to it (cost = 1 - IoU, rows = predictions)."""
    cost = np.float32(1.0) - iou.astype(np.float32)
    rows, cols = linear_sum_assignment(cost)
    slot_to_pred = np.empty(iou.shape[1], np.int64)
    slot_to_pred[cols] = rows
    return slot_to_pred


def _scores_from_matched(
    obj_iou: np.ndarray, pred_nonempty: np.ndarray, m: np.ndarray, keep_timeline: bool
) -> MosIScores:
    """Metrics from matched channels. obj_iou (n,20) float32, pred_nonempty (n,20) bool, m (n,20) float32."""
    n = m.shape[0]
    moving = m > 0
    masked = (obj_iou * m).astype(np.float32)
    j_num = torch_sum_rows_f32(masked)
    m_sum = torch_sum_rows_f32(m)
    j_all = (j_num / (m_sum + np.float32(_EPS))).astype(np.float32)
    objects = np.flatnonzero(m_sum > 0)
    j_per_object = [float(j_all[c]) for c in objects]

    fp_per_frame = (pred_nonempty & ~moving).sum(axis=1).astype(np.float32)
    fp_count = float(np.float32(fp_per_frame.sum(dtype=np.float64)) / np.float32(n)) if n else float("nan")

    hits_value = masked
    p_count = int(pred_nonempty.sum())
    g_count = int(moving.sum())
    mtiou_k = []
    for k in MOS_I_THRESHOLDS:
        i_k = int((hits_value > np.float32(k)).sum())
        mtiou_k.append(i_k / (p_count + g_count - i_k + _EPS))
    scores = MosIScores(
        mtiou=float(np.mean(mtiou_k)),
        j_mov=float(np.mean(j_per_object)) if j_per_object else float("nan"),
        fp_count=fp_count,
        mtiou_per_threshold=[float(v) for v in mtiou_k],
        j_mov_per_object=j_per_object,
        object_ids=[int(c) + 1 for c in objects],
    )
    if keep_timeline:
        scores.gt_moving = [moving[:, c].tolist() for c in objects]
        scores.pred_present = [pred_nonempty[:, c].tolist() for c in objects]
        scores.iou = [[float(v) for v in obj_iou[:, c]] for c in objects]
    return scores


def score_mos_i_sequence(
    tables: Sequence[FrameTable],
    time_anno: Mapping[str | int, Sequence[Sequence[int]]],
    motion_scores: np.ndarray | None = None,
    frame_level: bool = False,
    name: str = "",
    n_gt_frames: int | None = None,
    n_pred_frames: int | None = None,
    keep_timeline: bool = True,
) -> MosISequenceResult:
    """Score one sequence from its per-frame tables (already cut to the evaluated ``n`` frames).

    motion_scores: optional (>= n, 20[, 1]) per-channel motion scores of the prediction; channel c is
    dropped on frames where its score is <= 0.5.
    """
    n = len(tables)
    if n == 0:
        raise ValueError(f"sequence {name!r}: no frames to evaluate (GT or prediction folder is empty)")
    inter = np.stack([t.inter for t in tables]).astype(np.int64)
    pred_area = np.stack([t.pred_area for t in tables]).astype(np.int64)
    gt_area = np.stack([t.gt_area for t in tables]).astype(np.int64)

    if motion_scores is not None:
        scores = np.asarray(motion_scores, dtype=np.float32)
        if scores.ndim == 3 and scores.shape[2] == 1:
            scores = scores[:, :, 0]
        if scores.ndim != 2 or scores.shape[1] != MAX_OBJECTS or scores.shape[0] < n:
            raise MotionScoreError(
                f"sequence {name!r}: motion scores have shape {np.shape(motion_scores)}, expected "
                f"({n} or more frames, {MAX_OBJECTS}, 1) for the {n} evaluated frames"
            )
        keep = scores[:n] > np.float32(_MOTION_GATE)
        inter = inter * keep[:, :, None]
        pred_area = pred_area * keep

    m = motion_matrix(time_anno, n)
    moving = m > 0
    inter = inter * moving[:, None, :]
    gt_area = gt_area * moving
    iou = _iou_matrices(inter, pred_area, gt_area)  # (n, pred, gt)
    nonempty = pred_area > 0

    def matched(slot_to_pred_per_frame: np.ndarray) -> MosIScores:
        frames = np.arange(n)[:, None]
        slots = np.arange(MAX_OBJECTS)[None, :]
        obj_iou = iou[frames, slot_to_pred_per_frame, slots]
        pred_ne = nonempty[frames, slot_to_pred_per_frame]
        return _scores_from_matched(obj_iou.astype(np.float32), pred_ne, m, keep_timeline)

    mean_iou = torch_sum_wide_rows_f32(iou.reshape(n, -1)).reshape(MAX_OBJECTS, MAX_OBJECTS) / np.float32(n)
    seq_slots = _hungarian_slots(mean_iou.astype(np.float32))
    slhm = matched(np.broadcast_to(seq_slots, (n, MAX_OBJECTS)))
    flhm = None
    if frame_level:
        flhm = matched(np.stack([_hungarian_slots(iou[f]) for f in range(n)]))
    return MosISequenceResult(
        name=name,
        n_frames=n,
        n_gt_frames=n if n_gt_frames is None else n_gt_frames,
        n_pred_frames=n if n_pred_frames is None else n_pred_frames,
        resized=any(t.resized for t in tables),
        motion_scores_used=motion_scores is not None,
        num_moving_objects=int((m.sum(axis=0) > 0).sum()),
        slhm=slhm,
        flhm=flhm,
    )


def evaluate_mos_i_arrays(
    gt_frames: Sequence[np.ndarray],
    pred_frames: Sequence[np.ndarray],
    time_anno: Mapping[str | int, Sequence[Sequence[int]]],
    motion_scores: np.ndarray | None = None,
    frame_level: bool = False,
    name: str = "",
) -> MosISequenceResult:
    """MOS-I of one sequence given in memory: lists of (H, W) GT / predicted label maps.

    Extra frames of the longer list are ignored (official ``n = min(#GT, #pred)``).
    """
    n = min(len(gt_frames), len(pred_frames))
    tables = [frame_table(gt_frames[i], pred_frames[i], f"{name or 'sequence'} frame {i}") for i in range(n)]
    return score_mos_i_sequence(
        tables, time_anno, motion_scores, frame_level, name, len(gt_frames), len(pred_frames)
    )


@dataclass
class MosIAggregate:
    """Official aggregation: J_mov pooled over objects, FP count and mtIoU averaged over sequences."""

    mtiou: float
    j_mov: float
    fp_count: float
    mtiou_per_threshold: list[float]
    mtiou_per_threshold_per_sequence: list[list[float]]
    j_mov_per_object: list[float]
    fp_count_per_sequence: list[float]

    def summary(self) -> dict:
        return {
            "mtiou": self.mtiou,
            "j_mov": self.j_mov,
            "fp_count": self.fp_count,
            "mtiou_per_threshold": list(self.mtiou_per_threshold),
            "mtiou_per_threshold_per_sequence": [list(v) for v in self.mtiou_per_threshold_per_sequence],
            "j_mov_per_object": list(self.j_mov_per_object),
            "fp_count_per_sequence": list(self.fp_count_per_sequence),
        }


def aggregate_mos_i(scores: Iterable[MosIScores]) -> MosIAggregate:
    scores = list(scores)
    if not scores:
        raise ValueError("no sequences to aggregate (after filtering the time annotation)")
    per_seq = np.array([s.mtiou_per_threshold for s in scores], dtype=np.float64)
    per_threshold = per_seq.mean(axis=0)
    j_pool = [v for s in scores for v in s.j_mov_per_object]
    fps = [s.fp_count for s in scores]
    return MosIAggregate(
        mtiou=float(per_threshold.mean()),
        j_mov=float(np.mean(np.asarray(j_pool, np.float64))) if j_pool else float("nan"),
        fp_count=float(np.mean(np.asarray(fps, np.float64))),
        mtiou_per_threshold=[float(v) for v in per_threshold],
        mtiou_per_threshold_per_sequence=per_seq.tolist(),
        j_mov_per_object=j_pool,
        fp_count_per_sequence=fps,
    )


def format_mos_i_report(
    dataset: str,
    results: Sequence[MosISequenceResult],
    slhm: MosIAggregate,
    flhm: MosIAggregate | None = None,
    verbose: bool = True,
) -> str:
    """The official script's printed output (same line formats, %.4f)."""

    def line(a: MosIAggregate) -> str:
        return f"mtiou: {a.mtiou:.4f}  j_mov: {a.j_mov:.4f}  fp_count: {a.fp_count:.4f}"

    out = [f"Dataset: {dataset}, {len(results)} sequences"]
    if flhm is None:
        out.append(line(slhm))
    else:
        out += ["=== Sequence-level Hungarian match ===", "  " + line(slhm)]
        out += ["=== Frame-level Hungarian match ===", "  " + line(flhm)]
    if verbose:
        variants = [("sequence-level", "slhm")] + ([("frame-level", "flhm")] if flhm is not None else [])
        for title, key in variants:
            out.append("")
            out.append(f"Per-sequence results ({title} Hungarian match):")
            for r in results:
                s: MosIScores = getattr(r, key)
                out.append(f"  {r.name:<30}  j_mov: {s.j_mov:.4f}  mtiou: {s.mtiou:.4f}")
    return "\n".join(out) + "\n"
