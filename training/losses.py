"""Hungarian matching and the GMOS losses (paper, §training), on the outputs of ``gmos_core.models``.

Proposer, per query q of a frame, with rescaled confidence c̃ = conf_pred ∈ [1, c_max]::

    L_q = λ_iou·L_iou + c̃·(λ_mask·L_mask + λ_motion·L_motion) − [λ_conf_mov·m + λ_conf_sta·(1 − m)]·log c̃

averaged over queries and frames; (λ_mask, λ_motion, λ_iou, λ_conf_mov, λ_conf_sta) = (20, 1, 1, 0.1, 0.001).

* ``L_mask`` = focal (α 0.25, γ 2, mean over pixels) + dice / 20: "focal and dice mixed 20:1" read as in SAM 2's
  training losses (weight 20 on focal, 1 on dice), whose focal weight *is* λ_mask = 20; so
  λ_mask·L_mask = 20·focal + 1·dice.  Dice uses SAM's +1 smoothing: 1 − (2·Σpt + 1)/(Σp + Σt + 1).
* ``L_motion`` = binary cross-entropy of the motion logit against m.
* ``L_iou`` = (iou_pred − IoU(mask > 0, target))², the actual IoU detached; an empty prediction of an empty
  target has IoU 1 (the MOS-I convention).
* Targets: every annotated object visible at the frame, with m its motion state and an empty target mask when
  m = 0 (training.datasets).

**Unmatched queries (our decision; the paper does not say).**  Queries are matched one-to-one to the targets by
the Hungarian algorithm on the cost λ_mask·L_mask + λ_motion·L_motion (the loss's own mask and motion terms,
with the same target masks).  Every query that is not matched is supervised exactly like a matched *static*
target: empty target mask, m = 0, its IoU target computed against the empty mask, and the confidence term with
λ_conf_sta.  Reasons: the loss is "averaged over queries", so every query has a term; and at inference every one
of the 100 queries can win pixels in the top-20 arg-max labelling, so an unsupervised query would paint false
positives -- pushing its mask to empty and its motion to 0 is what keeps background clean.

GMOS-S, per frame: ``L = λ_iou·L_iou + c̃·λ_mask·L_mask − λ_conf·log c̃`` with (λ_mask, λ_iou, λ_conf) =
(20, 1, 0.5), one target mask (union of the moving objects), one IoU and one confidence.

The confidence term: for a fixed per-query error A = λ_mask·L_mask + λ_motion·L_motion, the loss in c̃ is
c̃·A − λ·log c̃, minimised at c̃ = λ / A (clipped to [1, c_max]): easy samples (small A) push c̃ up, ambiguous ones
(large A) push it down to 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ProposerLossWeights:
    mask: float = 20.0
    motion: float = 1.0
    iou: float = 1.0
    conf_moving: float = 0.1
    conf_static: float = 0.001
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    dice_per_focal: float = 1.0 / 20.0  # "focal and dice mixed 20:1"


@dataclass(frozen=True)
class GMOSSLossWeights:
    mask: float = 20.0
    iou: float = 1.0
    conf: float = 0.5
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    dice_per_focal: float = 1.0 / 20.0


# ---------------------------------------------------------------------------------------------- terms


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss, mean over the last dimension (pixels): (..., P) -> (...)."""
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 − (2·Σ p·t + 1) / (Σ p + Σ t + 1) over the last dimension: (..., P) -> (...)."""
    prob = torch.sigmoid(logits)
    return 1 - (2 * (prob * targets).sum(-1) + 1) / (prob.sum(-1) + targets.sum(-1) + 1)


def mask_loss(logits, targets, alpha=0.25, gamma=2.0, dice_per_focal=1.0 / 20.0) -> torch.Tensor:
    """L_mask = focal + dice_per_focal · dice (per mask)."""
    return focal_loss(logits, targets, alpha, gamma) + dice_per_focal * dice_loss(logits, targets)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of (logits > 0) with binary targets over the last dimension; both empty -> 1."""
    pred = (logits > 0).float()
    inter = (pred * targets).sum(-1)
    union = pred.sum(-1) + targets.sum(-1) - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-6), torch.ones_like(union))


# ---------------------------------------------------------------------------------------------- matching


@torch.no_grad()
def matching_cost(mask_logits: torch.Tensor, motion_logits: torch.Tensor, target_masks: torch.Tensor,
                  target_motion: torch.Tensor, weights: ProposerLossWeights = ProposerLossWeights()) -> torch.Tensor:
    """(Q, M) cost λ_mask·L_mask + λ_motion·L_motion for every query/target pair.

    mask_logits (Q, P), motion_logits (Q,), target_masks (M, P) in {0, 1}, target_motion (M,) in {0, 1}."""
    x = mask_logits.float()
    t = target_masks.float()
    P = x.shape[-1]
    prob = torch.sigmoid(x)
    ce_pos = F.softplus(-x)  # -log p
    ce_neg = F.softplus(x)   # -log(1 - p)
    a, g = weights.focal_alpha, weights.focal_gamma
    focal_pos = a * (1 - prob) ** g * ce_pos
    focal_neg = (1 - a) * prob ** g * ce_neg
    focal = (focal_pos @ t.T + focal_neg @ (1 - t).T) / P
    dice = 1 - (2 * prob @ t.T + 1) / (prob.sum(-1)[:, None] + t.sum(-1)[None, :] + 1)
    z = motion_logits.float()[:, None]
    m = target_motion.float()[None, :]
    bce = F.softplus(-z) * m + F.softplus(z) * (1 - m)
    return weights.mask * (focal + weights.dice_per_focal * dice) + weights.motion * bce


def hungarian_match(cost: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(query indices, target indices) of the minimum-cost one-to-one assignment (scipy)."""
    from scipy.optimize import linear_sum_assignment

    c = cost.detach().float().cpu().numpy()
    if not np.isfinite(c).all():
        raise FloatingPointError("matching cost has NaN/inf entries (diverged model outputs?)")
    rows, cols = linear_sum_assignment(c)
    return rows.astype(np.int64), cols.astype(np.int64)


# ---------------------------------------------------------------------------------------------- proposer


def assign_targets(outputs: dict, masks: torch.Tensor, motion: torch.Tensor, valid: torch.Tensor,
                   weights: ProposerLossWeights = ProposerLossWeights()):
    """Per-query targets after matching: (target masks (B, Q, P), motion (B, Q), matched (B, Q) bool)."""
    logits = outputs["mask"].flatten(2)
    motion_logits = outputs["motion_logits"][..., 0]
    B, Q, P = logits.shape
    tgt_masks = torch.zeros(B, Q, P, device=logits.device)
    tgt_motion = torch.zeros(B, Q, device=logits.device)
    matched = torch.zeros(B, Q, dtype=torch.bool, device=logits.device)
    flat_targets = masks.flatten(2).to(logits.device).float()
    for b in range(B):
        keep = torch.nonzero(valid[b]).flatten().to(logits.device)
        if keep.numel() == 0:
            continue
        if keep.numel() > Q:
            keep = keep[:Q]  # more targets than queries: the extra ones cannot be predicted anyway
        cost = matching_cost(logits[b], motion_logits[b], flat_targets[b, keep], motion[b, keep].to(logits.device),
                             weights)
        q_idx, t_idx = hungarian_match(cost)
        q = torch.as_tensor(q_idx, device=logits.device)
        t = keep[torch.as_tensor(t_idx, device=logits.device)]
        tgt_masks[b, q] = flat_targets[b, t]
        tgt_motion[b, q] = motion[b].to(logits.device)[t].float()
        matched[b, q] = True
    return tgt_masks, tgt_motion, matched


def proposer_loss(outputs: dict, batch: dict, weights: ProposerLossWeights = ProposerLossWeights(),
                  assignment=None):
    """Total loss (scalar) and a dict of detached mean terms for logging.

    batch: ``masks`` (B, M, h, w) target masks (already empty for static objects), ``motion`` (B, M),
    ``valid`` (B, M) bool. ``assignment``: the result of ``assign_targets`` for these outputs and batch, when the
    caller needs it too (so the Hungarian matching runs once)."""
    logits = outputs["mask"].float().flatten(2)
    motion_logits = outputs["motion_logits"][..., 0].float()
    iou_pred = outputs["iou_pred"][..., 0].float()
    conf = outputs["conf_pred"][..., 0].float()
    if assignment is None:
        assignment = assign_targets(outputs, batch["masks"], batch["motion"], batch["valid"], weights)
    tgt_masks, tgt_motion, matched = assignment
    l_mask = mask_loss(logits, tgt_masks, weights.focal_alpha, weights.focal_gamma, weights.dice_per_focal)
    l_motion = F.binary_cross_entropy_with_logits(motion_logits, tgt_motion, reduction="none")
    with torch.no_grad():
        actual_iou = mask_iou(logits, tgt_masks)
    l_iou = (iou_pred - actual_iou) ** 2
    conf_weight = weights.conf_moving * tgt_motion + weights.conf_static * (1 - tgt_motion)
    per_query = (weights.iou * l_iou + conf * (weights.mask * l_mask + weights.motion * l_motion)
                 - conf_weight * torch.log(conf))
    total = per_query.mean()
    terms = {"loss": total.detach(), "mask": l_mask.mean().detach(), "motion": l_motion.mean().detach(),
             "iou": l_iou.mean().detach(), "conf": conf.mean().detach(),
             "matched_iou": (actual_iou[matched].mean() if matched.any() else actual_iou.new_tensor(float("nan"))).detach()}
    return total, terms


# ---------------------------------------------------------------------------------------------- GMOS-S


def gmos_s_loss(outputs: dict, batch: dict, weights: GMOSSLossWeights = GMOSSLossWeights()):
    """GMOS-S: batch ``fg`` (B, 1, h, w) union of the moving objects' masks."""
    logits = outputs["fg_mask"].float().flatten(1)
    target = batch["fg"].to(logits.device).float().flatten(1)
    iou_pred = outputs["iou_pred"].float().reshape(-1)
    conf = outputs["conf_pred"].float().reshape(-1)
    l_mask = mask_loss(logits, target, weights.focal_alpha, weights.focal_gamma, weights.dice_per_focal)
    with torch.no_grad():
        actual_iou = mask_iou(logits, target)
    l_iou = (iou_pred - actual_iou) ** 2
    per_frame = weights.iou * l_iou + conf * weights.mask * l_mask - weights.conf * torch.log(conf)
    total = per_frame.mean()
    terms = {"loss": total.detach(), "mask": l_mask.mean().detach(), "iou": l_iou.mean().detach(),
             "conf": conf.mean().detach(), "matched_iou": actual_iou.mean().detach()}
    return total, terms


def compute_loss(variant: str, outputs: dict, batch: dict):
    if variant == "proposer":
        return proposer_loss(outputs, batch)
    if variant == "gmos_s":
        return gmos_s_loss(outputs, batch)
    raise ValueError(f"variant must be 'proposer' or 'gmos_s', got {variant!r}")
