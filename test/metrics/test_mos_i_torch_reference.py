"""MOS-I against an independent torch transcription of gmos_reference.md §11 on random sequences.

The transcription below works on whole mask tensors with torch operations (channels built with ==,
F.interpolate for the resize branch, IoU from boolean tensors, torch mean, scipy Hungarian on the
20 x 20 pred x gt matrix), the way the official script does; the library works on per-frame pixel-count
tables in numpy. The acceptance tolerance is 1e-6; measured here they agree exactly (0.0), so the test uses
1e-12 (last-bit room only): a reduction-order or float32/float64 slip of the library would show.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.optimize import linear_sum_assignment

from gmos_core.metrics import aggregate_mos_i, evaluate_mos_i_arrays

TOL = 1e-12  # measured 0.0 (module docstring)

THRESHOLDS = np.arange(0.5, 1.0, 0.05)


def _torch_iou(pred, gt):
    """pred (..., P, H, W) bool, gt (..., G, H, W) bool -> (..., P, G) float32, both-empty = 1."""
    p = pred.flatten(-2).float()
    g = gt.flatten(-2).float()
    inter = p @ g.transpose(-1, -2)
    union = p.sum(-1)[..., :, None] + g.sum(-1)[..., None, :] - inter
    iou = inter / union.clamp(min=1)
    return torch.where(union == 0, torch.ones_like(iou), iou)


def _torch_reference(gt_frames, pred_frames, time_anno, motion=None, frame_level=False):
    n = min(len(gt_frames), len(pred_frames))
    gt = torch.from_numpy(np.stack(gt_frames[:n]).astype(np.int64))
    pred = torch.from_numpy(np.stack(pred_frames[:n]).astype(np.int64))
    ids = torch.arange(1, 21)[None, :, None, None]
    gt_m = gt[:, None] == ids
    pred_m = pred[:, None] == ids
    if pred_m.shape[-2:] != gt_m.shape[-2:]:
        pred_m = F.interpolate(pred_m.float(), size=gt_m.shape[-2:], mode="bilinear", align_corners=False) > 0.5
    m = torch.zeros(n, 20)
    for k, ranges in time_anno.items():
        for s, e in ranges:
            m[s : e + 1, int(k) - 1] = 1
    gt_m = gt_m & (m[:, :, None, None] > 0)
    if motion is not None:
        keep = torch.from_numpy(motion[:n, :, 0]) > 0.5
        pred_m = pred_m & keep[:, :, None, None]
    iou = _torch_iou(pred_m, gt_m)  # (n, 20 pred, 20 gt)

    def metrics(slot_to_pred):  # (n, 20)
        f = torch.arange(n)[:, None]
        matched = pred_m[f, torch.from_numpy(np.ascontiguousarray(slot_to_pred))]
        obj_iou = torch.diagonal(_torch_iou(matched, gt_m), dim1=-2, dim2=-1)
        j = (obj_iou * m).sum(0) / (m.sum(0) + 1e-8)
        objs = (m.sum(0) > 0).nonzero()[:, 0]
        nonempty = matched.flatten(-2).any(-1)
        fp = (nonempty & (m == 0)).float().sum(1).mean()
        p_count, g_count = int(nonempty.sum()), int(m.sum())
        mt = []
        for k in THRESHOLDS:
            i_k = int(((obj_iou * m) > k).sum())
            mt.append(i_k / (p_count + g_count - i_k + 1e-8))
        return [float(v) for v in j[objs]], float(fp), mt

    def hungarian(mat):
        rows, cols = linear_sum_assignment(1 - mat.numpy())
        out = np.empty(20, np.int64)
        out[cols] = rows
        return out

    seq = hungarian(iou.mean(0))
    res = {"slhm": metrics(np.broadcast_to(seq, (n, 20)))}
    if frame_level:
        res["flhm"] = metrics(np.stack([hungarian(iou[f]) for f in range(n)]))
    return res


def _random_sequence(rng, n_gt, n_pred, shape, pred_shape):
    h, w = shape
    n_obj = int(rng.integers(1, 6))
    gts, preds = [], []
    centres = rng.uniform(0, 1, (n_obj, 2)) * [h, w]
    vel = rng.uniform(-2, 2, (n_obj, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    for t in range(max(n_gt, n_pred)):
        g = np.zeros((h, w), np.uint8)
        for k in range(n_obj):
            c = centres[k] + vel[k] * t
            g[(yy - c[0]) ** 2 + (xx - c[1]) ** 2 < (0.15 * min(h, w)) ** 2] = k + 1
        p = np.where(rng.random((h, w)) < 0.05, 0, g)
        p = np.roll(p, int(rng.integers(-2, 3)), axis=1).astype(np.uint8)
        perm = np.arange(256, dtype=np.uint8)
        perm[1 : n_obj + 1] = rng.permutation(np.arange(1, n_obj + 1)) if rng.random() < 0.5 else perm[1 : n_obj + 1]
        p = perm[p]
        if rng.random() < 0.3:
            p[: h // 5, : w // 5] = rng.integers(6, 25)  # false positive, sometimes an id > 20
        if pred_shape != shape:
            p = np.asarray(Image.fromarray(p).resize(pred_shape[::-1], Image.NEAREST))
        gts.append(g)
        preds.append(p)
    anno = {}
    for k in range(n_obj):
        if k == 0 or rng.random() < 0.8:
            s = 0 if k == 0 else int(rng.integers(0, n_gt))
            anno[str(k + 1)] = [[s, int(rng.integers(s, n_gt + 3))]]
    if not anno:
        anno["1"] = [[0, n_gt - 1]]
    return gts[:n_gt], preds[:n_pred], anno


@pytest.mark.parametrize("seed", range(6))
def test_library_equals_torch_transcription(seed):
    rng = np.random.default_rng(100 + seed)
    shape = (36, 52)
    pred_shape = shape if seed % 3 else (18, 26)
    n_gt = int(rng.integers(5, 14))
    gts, preds, anno = _random_sequence(rng, n_gt, n_gt + int(rng.integers(-1, 2)), shape, pred_shape)
    motion = None
    if seed % 2:
        motion = rng.uniform(0, 1, (len(preds), 20, 1)).astype(np.float32)
    ref = _torch_reference(gts, preds, anno, motion, frame_level=True)
    mine = evaluate_mos_i_arrays(gts, preds, anno, motion, frame_level=True)
    assert mine.resized == (pred_shape != shape)
    assert mine.slhm.j_mov_per_object, "the random sequence must have moving objects"
    for variant in ("slhm", "flhm"):
        j, fp, mt = ref[variant]
        s = getattr(mine, variant)
        np.testing.assert_allclose(s.j_mov_per_object, j, rtol=0, atol=TOL)
        assert s.fp_count == pytest.approx(fp, abs=TOL)
        np.testing.assert_allclose(s.mtiou_per_threshold, mt, rtol=0, atol=TOL)
    assert aggregate_mos_i([mine.slhm]).mtiou == pytest.approx(float(np.mean(ref["slhm"][2])), abs=TOL)
