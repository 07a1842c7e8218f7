"""Region similarity J, contour accuracy F and their statistics as the DAVIS 2017 evaluator defines them.

Re-implements the definitions of ``davis2017-evaluation`` (``davis2017/metrics.py``, ``utils.py``,
``evaluation.py``):

* J = |S ∩ G| / |S ∪ G| per frame, void pixels excluded, ``J = 1`` when the union is empty (``db_eval_iou``).
* F = boundary F-measure (``f_measure``): boundaries by ``_seg2bmap`` (a pixel is on the boundary when it
  differs from its right, lower or lower-right neighbour), matched within a disk of radius
  ``ceil(0.008 * ||(H, W)||)`` (``bound_th = 0.008``; cv2 dilation, scipy fallback with identical result);
  precision/recall conventions for empty boundaries as the official code.
* Statistics per object (``db_statistics``): mean, recall = fraction of frames > 0.5, decay = mean of the
  first quarter minus mean of the last quarter (bins ``round(linspace(1, n, 5)) - 1``).
* Objects: GT ids 1..max(id in the first annotated frame) (``get_all_masks``); GT value 255 is read as
  background.  The official code builds its "void" masks from the already-binarised object masks, so no
  pixel is ever excluded as void; the same here (``db_eval_iou`` / ``f_measure`` still accept void masks).
  Predicted objects: ids 1..max(predicted id over the evaluated frames) (``Results.read_masks``).
* ``semi-supervised`` convention: predicted id k is object k (no matching), first and last frame dropped,
  the number of predicted ids must equal the number of GT objects (the official evaluator exits otherwise).
* ``unsupervised`` convention: up to 20 predicted ids, all frames, fewer predictions padded with empty ones,
  predictions matched to GT objects by the Hungarian algorithm maximising the mean over frames of
  (J + F) / 2 (``linear_sum_assignment(-cost)``, predictions as rows).  Per-object results are listed in GT
  order here (the official lists them in prediction-row order under GT names; the set of values, and every
  mean, is the same).

Everything is vectorised per frame: each mask's boundary and its dilation are computed once and reused for
every (prediction, object) pair, which gives the same counts as the official pairwise loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "BOUND_TH",
    "MAX_PROPOSALS",
    "db_eval_iou",
    "seg2bmap",
    "disk",
    "f_measure",
    "db_statistics",
    "frame_jf_tables",
    "frame_jf_from_labels",
    "ObjectScores",
    "DavisSequenceResult",
    "evaluate_davis_sequence",
    "DavisAggregate",
    "aggregate_davis",
]

BOUND_TH = 0.008
MAX_PROPOSALS = 20
VOID_ID = 255


def db_eval_iou(annotation: np.ndarray, segmentation: np.ndarray, void_pixels: np.ndarray | None = None):
    """Jaccard index of binary masks (..., H, W); 1 where the union is empty."""
    annotation = np.asarray(annotation).astype(bool)
    segmentation = np.asarray(segmentation).astype(bool)
    if annotation.shape != segmentation.shape:
        raise ValueError(f"J: annotation shape {annotation.shape} != segmentation shape {segmentation.shape}")
    keep = np.ones_like(annotation) if void_pixels is None else ~np.asarray(void_pixels).astype(bool)
    inters = np.sum((segmentation & annotation) & keep, axis=(-2, -1))
    union = np.sum((segmentation | annotation) & keep, axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        j = inters / union
    if np.ndim(j) == 0:
        return 1.0 if np.isclose(union, 0) else float(j)
    j[np.isclose(union, 0)] = 1
    return j


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """Boundary map of a binary mask (``_seg2bmap`` at the mask's own size)."""
    seg = np.asarray(seg).astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def disk(radius: int) -> np.ndarray:
    """skimage.morphology.disk: uint8 disk of the given radius."""
    r = int(radius)
    grid = np.arange(-r, r + 1)
    x, y = np.meshgrid(grid, grid)
    return (x**2 + y**2 <= r**2).astype(np.uint8)


def _bound_pix(shape: tuple[int, int], bound_th: float) -> int:
    return int(bound_th if bound_th >= 1 else math.ceil(bound_th * np.linalg.norm(shape)))


def _dilate(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    try:
        import cv2
    except ImportError:  # scipy gives the same result (zero border, symmetric structuring element)
        from scipy.ndimage import binary_dilation

        return binary_dilation(mask, structure=kernel.astype(bool))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def _precision_recall_f(n_fg: int, n_gt: int, fg_match: float, gt_match: float) -> float:
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = fg_match / float(n_fg)
        recall = gt_match / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def f_measure(
    foreground_mask: np.ndarray,
    gt_mask: np.ndarray,
    void_pixels: np.ndarray | None = None,
    bound_th: float = BOUND_TH,
) -> float:
    """Boundary F-measure of one frame (prediction ``foreground_mask`` against ``gt_mask``)."""
    fg = np.asarray(foreground_mask).astype(bool)
    gt = np.asarray(gt_mask).astype(bool)
    if fg.shape != gt.shape or fg.ndim != 2:
        raise ValueError(f"F: expected two (H, W) masks of the same size, got {fg.shape} and {gt.shape}")
    keep = np.ones_like(fg) if void_pixels is None else ~np.asarray(void_pixels).astype(bool)
    kernel = disk(_bound_pix(fg.shape, bound_th))
    fg_b = seg2bmap(fg & keep)
    gt_b = seg2bmap(gt & keep)
    fg_dil = _dilate(fg_b, kernel)
    gt_dil = _dilate(gt_b, kernel)
    return _precision_recall_f(
        int(fg_b.sum()), int(gt_b.sum()), float((fg_b & gt_dil).sum()), float((gt_b & fg_dil).sum())
    )


def db_statistics(per_frame_values: np.ndarray) -> tuple[float, float, float]:
    """(mean, recall = fraction > 0.5, decay = first-quarter mean − last-quarter mean), NaNs ignored."""
    values = np.asarray(per_frame_values, dtype=np.float64)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(values)
        recall = np.nanmean(values > 0.5)
        ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.uint8)
        bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return float(mean), float(recall), float(decay)


def frame_jf_tables(
    gt_masks: np.ndarray, pred_masks: np.ndarray, void: np.ndarray | None, bound_th: float = BOUND_TH
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every (prediction, GT object) pair on one frame.

    gt_masks (K, H, W) bool, pred_masks (P, H, W) bool, void (H, W) bool or None.
    Returns (J, F), each (P, K) float64, identical to calling ``db_eval_iou`` / ``f_measure`` per pair.
    """
    n_pred, n_gt = pred_masks.shape[0], gt_masks.shape[0]
    h, w = gt_masks.shape[1:]
    keep = np.ones((h, w), bool) if void is None else ~void
    gt_k = (gt_masks & keep).reshape(n_gt, -1)
    pr_k = (pred_masks & keep).reshape(n_pred, -1)
    inter = pr_k.astype(np.float32) @ gt_k.T.astype(np.float32)  # exact counts (< 2^24 pixels)
    union = pr_k.sum(1)[:, None] + gt_k.sum(1)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        j = inter / union
    j[np.isclose(union, 0)] = 1

    kernel = disk(_bound_pix((h, w), bound_th))

    def bounds(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = np.zeros((masks.shape[0], h * w), bool)
        d = np.zeros((masks.shape[0], h * w), bool)
        for i, m in enumerate(masks):
            if m.any():
                bm = seg2bmap(m & keep)
                b[i] = bm.ravel()
                d[i] = _dilate(bm, kernel).ravel()
        return b, d

    pb, pd = bounds(pred_masks)
    gb, gd = bounds(gt_masks)
    fg_match = pb.astype(np.float32) @ gd.T.astype(np.float32)  # (P, K)
    gt_match = pd.astype(np.float32) @ gb.T.astype(np.float32)  # (P, K)
    n_fg = pb.sum(1)
    n_gtb = gb.sum(1)
    f = np.zeros((n_pred, n_gt))
    for p in range(n_pred):
        for k in range(n_gt):
            f[p, k] = _precision_recall_f(int(n_fg[p]), int(n_gtb[k]), float(fg_match[p, k]), float(gt_match[p, k]))
    return j.astype(np.float64), f


def frame_jf_from_labels(
    gt_labels: np.ndarray, pred_labels: np.ndarray, n_obj: int, n_pred: int, bound_th: float = BOUND_TH
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every (predicted id 1..n_pred, GT id 1..n_obj) pair on one frame of label maps (no void).

    Same numbers as :func:`frame_jf_tables` on the one-hot masks, computed from one pixel-count table
    (``bincount`` of ``pred << 8 | gt``) and from the boundary pixels only.
    """
    h, w = gt_labels.shape
    if pred_labels.shape != (h, w):
        raise ValueError(f"prediction size {pred_labels.shape} != annotation size {(h, w)}")
    gt = gt_labels.astype(np.uint16)
    gt[gt > n_obj] = 0  # ids beyond the object count are background (official one-hot masks)
    code = np.left_shift(pred_labels.astype(np.uint16), 8)
    np.bitwise_or(code, gt, out=code)
    table = np.bincount(code.ravel(), minlength=256 * 256).reshape(256, 256)
    inter = table[1 : n_pred + 1, 1 : n_obj + 1].astype(np.float64)
    pred_area = table[1 : n_pred + 1, :].sum(axis=1).astype(np.float64)
    gt_area = table[:, 1 : n_obj + 1].sum(axis=0).astype(np.float64)
    union = pred_area[:, None] + gt_area[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        j = inter / union
    j[np.isclose(union, 0)] = 1

    kernel = disk(_bound_pix((h, w), bound_th))

    def bounds(labels: np.ndarray, count: int, areas: np.ndarray):
        idx, dil = [], []
        for k in range(count):
            if areas[k] == 0:
                idx.append(np.empty(0, np.int64))
                dil.append(None)
                continue
            bm = seg2bmap(labels == k + 1)
            idx.append(np.flatnonzero(bm))
            dil.append(_dilate(bm, kernel).ravel())
        return idx, dil

    p_idx, p_dil = bounds(pred_labels, n_pred, pred_area)
    g_idx, g_dil = bounds(gt, n_obj, gt_area)
    f = np.zeros((n_pred, n_obj))
    for p in range(n_pred):
        for k in range(n_obj):
            fg_match = np.count_nonzero(g_dil[k][p_idx[p]]) if g_dil[k] is not None else 0
            gt_match = np.count_nonzero(p_dil[p][g_idx[k]]) if p_dil[p] is not None else 0
            f[p, k] = _precision_recall_f(len(p_idx[p]), len(g_idx[k]), float(fg_match), float(gt_match))
    return j, f


@dataclass
class ObjectScores:
    """Per-frame J and F of one GT object (after matching) and their statistics."""

    object_id: int
    matched_pred_id: int
    j: list[float]
    f: list[float]

    @property
    def j_stats(self) -> tuple[float, float, float]:
        return db_statistics(np.array(self.j))

    @property
    def f_stats(self) -> tuple[float, float, float]:
        return db_statistics(np.array(self.f))

    def summary(self) -> dict:
        jm, jr, jd = self.j_stats
        fm, fr, fd = self.f_stats
        return {
            "object_id": self.object_id,
            "matched_pred_id": self.matched_pred_id,
            "J_mean": jm,
            "J_recall": jr,
            "J_decay": jd,
            "F_mean": fm,
            "F_recall": fr,
            "F_decay": fd,
        }


@dataclass
class DavisSequenceResult:
    name: str
    convention: str
    n_frames: int
    objects: list[ObjectScores] = field(default_factory=list)

    @property
    def j_mean(self) -> float:
        return float(np.mean([o.j_stats[0] for o in self.objects])) if self.objects else float("nan")

    @property
    def f_mean(self) -> float:
        return float(np.mean([o.f_stats[0] for o in self.objects])) if self.objects else float("nan")

    @property
    def jf_mean(self) -> float:
        return (self.j_mean + self.f_mean) / 2

    def summary(self) -> dict:
        return {
            "convention": self.convention,
            "n_frames": self.n_frames,
            "J&F_mean": self.jf_mean,
            "J_mean": self.j_mean,
            "F_mean": self.f_mean,
            "objects": [o.summary() for o in self.objects],
        }


def evaluate_davis_sequence(
    gt_frames: Sequence[np.ndarray],
    pred_frames: Sequence[np.ndarray],
    convention: str = "unsupervised",
    name: str = "",
    objects_from_first_frame: bool = True,
    bound_th: float = BOUND_TH,
) -> DavisSequenceResult:
    """J/F of one sequence of label maps, DAVIS 2017 conventions.

    gt_frames / pred_frames: equally long lists of (H, W) label maps (0 background, 255 void in GT).
    objects_from_first_frame: the official evaluator takes the number of GT objects from the first annotated
    frame (``max(masks[0])``); False uses the largest id of the whole sequence (objects entering later).
    """
    if convention not in ("unsupervised", "semi-supervised"):
        raise ValueError(f"convention must be 'unsupervised' or 'semi-supervised', got {convention!r}")
    if len(gt_frames) != len(pred_frames):
        raise ValueError(
            f"sequence {name!r}: {len(gt_frames)} annotated frames but {len(pred_frames)} predicted frames"
        )
    if not gt_frames:
        raise ValueError(f"sequence {name!r}: no annotated frames")
    gt_stack = np.stack([np.asarray(g) for g in gt_frames])
    gt_ids = np.where(gt_stack == VOID_ID, 0, gt_stack)
    first = gt_ids[0] if objects_from_first_frame else gt_ids
    n_obj = int(first.max())
    frames = range(len(gt_frames))
    if convention == "semi-supervised":
        frames = range(1, len(gt_frames) - 1)
    pred_max = max((int(np.asarray(pred_frames[i]).max()) if np.asarray(pred_frames[i]).size else 0) for i in frames) \
        if len(frames) else 0
    if convention == "semi-supervised" and pred_max != n_obj:
        raise ValueError(
            f"sequence {name!r}: largest predicted id is {pred_max} but the annotation has {n_obj} objects "
            "(semi-supervised convention: predicted id k must be GT object k, for every object)"
        )
    if convention == "unsupervised" and pred_max > MAX_PROPOSALS:
        raise ValueError(
            f"sequence {name!r}: predicted id {pred_max} exceeds the {MAX_PROPOSALS} proposals the unsupervised "
            "DAVIS convention allows"
        )
    n_pred = max(pred_max, n_obj)
    if pred_max > 255 or n_obj > 255:
        raise ValueError(f"sequence {name!r}: ids above 255 are not supported (largest {max(pred_max, n_obj)})")
    j_all = np.zeros((n_pred, n_obj, len(frames)))
    f_all = np.zeros((n_pred, n_obj, len(frames)))
    for t, fi in enumerate(frames):
        pred = np.asarray(pred_frames[fi])
        if pred.shape != gt_ids[fi].shape:
            raise ValueError(
                f"sequence {name!r} frame {fi}: prediction size {pred.shape} != annotation size {gt_ids[fi].shape}"
            )
        # No void exclusion (see the module docstring). Semi-supervised uses only the diagonal; computing
        # the full table keeps one code path.
        j, f = frame_jf_from_labels(gt_ids[fi], pred, n_obj, n_pred, bound_th)
        j_all[:, :, t], f_all[:, :, t] = j, f
    result = DavisSequenceResult(name=name, convention=convention, n_frames=len(frames))
    if n_obj == 0:
        return result
    if convention == "semi-supervised":
        pairs = [(k, k) for k in range(n_obj)]
    else:
        cost = (j_all.mean(axis=2) + f_all.mean(axis=2)) / 2
        rows, cols = linear_sum_assignment(-cost)
        pairs = sorted(zip(rows.tolist(), cols.tolist()), key=lambda rc: rc[1])
    for p, k in pairs:
        result.objects.append(
            ObjectScores(object_id=k + 1, matched_pred_id=p + 1, j=j_all[p, k].tolist(), f=f_all[p, k].tolist())
        )
    return result


@dataclass
class DavisAggregate:
    """Dataset-level numbers: every statistic averaged over all objects of all sequences."""

    jf_mean: float
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float
    n_objects: int

    def summary(self) -> dict:
        return {
            "J&F_mean": self.jf_mean,
            "J_mean": self.j_mean,
            "J_recall": self.j_recall,
            "J_decay": self.j_decay,
            "F_mean": self.f_mean,
            "F_recall": self.f_recall,
            "F_decay": self.f_decay,
            "n_objects": self.n_objects,
        }


def aggregate_davis(results: Sequence[DavisSequenceResult]) -> DavisAggregate:
    objs = [o for r in results for o in r.objects]
    if not objs:
        raise ValueError("no annotated objects in the evaluated sequences")
    js = np.array([o.j_stats for o in objs])
    fs = np.array([o.f_stats for o in objs])
    jm, jr, jd = (float(np.mean(js[:, i])) for i in range(3))
    fm, fr, fd = (float(np.mean(fs[:, i])) for i in range(3))
    return DavisAggregate((jm + fm) / 2, jm, jr, jd, fm, fr, fd, len(objs))
