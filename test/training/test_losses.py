"""Loss terms against hand-computed values, matching invariances, and the confidence term's behaviour."""
from __future__ import annotations

import math

import pytest
import torch

from training import losses as L

LN2 = math.log(2.0)


def _sig(x):
    return 1 / (1 + math.exp(-x))


def _focal(x, t, a=0.25, g=2.0):
    p = _sig(x)
    ce = -math.log(p) if t else -math.log(1 - p)
    pt = p if t else 1 - p
    return (a if t else 1 - a) * (1 - pt) ** g * ce


def test_focal_dice_iou_by_hand():
    logits = torch.tensor([[0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0]])
    # p = 0.5: positive pixel 0.25 * 0.5^2 * ln2, negative pixel 0.75 * 0.5^2 * ln2, mean over 2 pixels
    assert L.focal_loss(logits, targets).item() == pytest.approx((0.25 * 0.25 * LN2 + 0.75 * 0.25 * LN2) / 2, rel=1e-6)
    # dice: 1 - (2*0.5 + 1) / (1 + 1 + 1) = 1/3
    assert L.dice_loss(logits, targets).item() == pytest.approx(1 / 3, rel=1e-6)
    assert L.mask_loss(logits, targets).item() == pytest.approx(
        (0.25 * 0.25 * LN2 + 0.75 * 0.25 * LN2) / 2 + (1 / 3) / 20, rel=1e-6)
    iou = L.mask_iou(torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]]),
                     torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    assert iou.tolist() == pytest.approx([1 / 3, 1.0, 0.0])


def _proposer_outputs(mask_logits, motion, iou, conf):
    q = len(mask_logits)
    return {"mask": torch.tensor(mask_logits, dtype=torch.float32).view(1, q, 1, -1),
            "motion_logits": torch.tensor(motion, dtype=torch.float32).view(1, q, 1),
            "iou_pred": torch.tensor(iou, dtype=torch.float32).view(1, q, 1),
            "conf_pred": torch.tensor(conf, dtype=torch.float32).view(1, q, 1)}


def test_proposer_loss_by_hand():
    # 2 queries, 2 pixels, one moving target [1, 0]; query 0 fits it, query 1 is unmatched.
    out = _proposer_outputs([[3.0, -3.0], [-3.0, -2.0]], [2.0, -2.0], [0.9, 0.5], [2.0, 1.5])
    batch = {"masks": torch.tensor([[[[1.0, 0.0]]]]), "motion": torch.tensor([[1.0]]), "valid": torch.tensor([[True]])}
    total, terms = L.proposer_loss(out, batch)

    def query_loss(xs, ts, motion_logit, m, iou_pred, iou_true, conf, lam_conf):
        focal = sum(_focal(x, t) for x, t in zip(xs, ts)) / 2
        ps = [_sig(x) for x in xs]
        dice = 1 - (2 * sum(p * t for p, t in zip(ps, ts)) + 1) / (sum(ps) + sum(ts) + 1)
        l_mask = focal + dice / 20
        bce = -math.log(_sig(motion_logit)) if m else -math.log(1 - _sig(motion_logit))
        return 1 * (iou_pred - iou_true) ** 2 + conf * (20 * l_mask + 1 * bce) - lam_conf * math.log(conf)

    # query 0: prediction (3>0, -3<0) = target -> IoU 1, m = 1 (λ_conf_mov = 0.1)
    q0 = query_loss([3.0, -3.0], [1, 0], 2.0, 1, 0.9, 1.0, 2.0, 0.1)
    # query 1 (unmatched): empty target, m = 0, empty prediction -> IoU 1, λ_conf_sta = 0.001
    q1 = query_loss([-3.0, -2.0], [0, 0], -2.0, 0, 0.5, 1.0, 1.5, 0.001)
    assert total.item() == pytest.approx((q0 + q1) / 2, rel=1e-5)


def test_static_target_has_empty_mask_and_low_confidence_weight():
    # the same query scored against a static target (empty mask, m=0) equals the unmatched supervision
    out = _proposer_outputs([[3.0, -3.0]], [2.0], [0.9], [2.0])
    static = {"masks": torch.zeros(1, 1, 1, 2), "motion": torch.tensor([[0.0]]), "valid": torch.tensor([[True]])}
    nothing = {"masks": torch.zeros(1, 1, 1, 2), "motion": torch.tensor([[0.0]]), "valid": torch.tensor([[False]])}
    assert L.proposer_loss(out, static)[0].item() == pytest.approx(L.proposer_loss(out, nothing)[0].item(), rel=1e-6)


def test_gmos_s_loss_by_hand():
    out = {"fg_mask": torch.tensor([[[[2.0, -1.0]]]]), "iou_pred": torch.tensor([[0.4]]), "conf_pred": torch.tensor([[3.0]])}
    batch = {"fg": torch.tensor([[[[1.0, 1.0]]]])}
    total, _ = L.gmos_s_loss(out, batch)
    focal = (_focal(2.0, 1) + _focal(-1.0, 1)) / 2
    ps = [_sig(2.0), _sig(-1.0)]
    dice = 1 - (2 * sum(ps) + 1) / (sum(ps) + 2 + 1)
    iou_true = 0.5  # predicted {pixel 0}, target {0, 1}
    expected = 1 * (0.4 - iou_true) ** 2 + 3.0 * 20 * (focal + dice / 20) - 0.5 * math.log(3.0)
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_matching_cost_matches_the_loss_terms():
    torch.manual_seed(0)
    x, z = torch.randn(4, 9), torch.randn(4)
    t, m = (torch.rand(3, 9) > 0.5).float(), torch.tensor([1.0, 0.0, 1.0])
    cost = L.matching_cost(x, z, t, m)
    for q in range(4):
        for k in range(3):
            direct = 20 * L.mask_loss(x[q:q + 1], t[k:k + 1]) + torch.nn.functional.binary_cross_entropy_with_logits(
                z[q:q + 1], m[k:k + 1])
            assert cost[q, k].item() == pytest.approx(direct.item(), rel=1e-5)


def test_matching_finds_the_planted_assignment_and_is_permutation_invariant():
    torch.manual_seed(1)
    Q, M, P = 7, 3, 64
    targets = (torch.rand(1, M, 1, P) > 0.6).float()
    motion = torch.tensor([[1.0, 0.0, 1.0]])
    masks = targets * motion[..., None, None]
    logits = torch.randn(1, Q, 1, P) - 4
    planted = [5, 1, 3]  # query 5 <- target 0, 1 <- 1, 3 <- 2
    for k, q in enumerate(planted):
        logits[0, q] = (masks[0, k] * 2 - 1) * 8
    out = {"mask": logits, "motion_logits": torch.randn(1, Q, 1), "iou_pred": torch.rand(1, Q, 1),
           "conf_pred": 1 + 4 * torch.rand(1, Q, 1)}
    for k, q in enumerate(planted):
        out["motion_logits"][0, q, 0] = 8.0 if motion[0, k] else -8.0
    batch = {"masks": masks, "motion": motion, "valid": torch.ones(1, M, dtype=torch.bool)}
    tgt_masks, tgt_motion, matched = L.assign_targets(out, masks, motion, batch["valid"])
    assert matched[0].nonzero().flatten().tolist() == sorted(planted)
    for k, q in enumerate(planted):
        assert torch.equal(tgt_masks[0, q], masks[0, k].flatten())
    base = L.proposer_loss(out, batch)[0].item()
    perm = torch.randperm(Q)
    permuted = {k: v[:, perm] for k, v in out.items()}
    assert L.proposer_loss(permuted, batch)[0].item() == pytest.approx(base, rel=1e-6)
    tperm = torch.tensor([2, 0, 1])
    batch_t = {"masks": masks[:, tperm], "motion": motion[:, tperm], "valid": batch["valid"]}
    assert L.proposer_loss(out, batch_t)[0].item() == pytest.approx(base, rel=1e-6)


def _train_confidence(mask_logit: float, motion_logit: float, steps: int = 300) -> float:
    """Optimise only the confidence (through its logit, as the model's sigmoid head) on a fixed prediction."""
    conf_logit = torch.zeros(1, requires_grad=True)  # c̃ starts at 3
    opt = torch.optim.SGD([conf_logit], lr=0.5)
    target = torch.tensor([[[[1.0] * 8 + [0.0] * 8]]])
    logits = torch.where(target > 0, torch.tensor(mask_logit), torch.tensor(-mask_logit)).view(1, 1, 1, 16)
    for _ in range(steps):
        out = {"mask": logits, "motion_logits": torch.tensor([[[motion_logit]]]), "iou_pred": torch.tensor([[[1.0]]]),
               "conf_pred": (torch.sigmoid(conf_logit) * 4 + 1).view(1, 1, 1)}
        loss, _ = L.proposer_loss(out, {"masks": target, "motion": torch.tensor([[1.0]]),
                                        "valid": torch.tensor([[True]])})
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(torch.sigmoid(conf_logit.detach()) * 4 + 1)


def test_confidence_rises_on_easy_and_falls_on_ambiguous_samples():
    easy = _train_confidence(12.0, 12.0)     # confident, correct mask and motion: error ~ 0
    ambiguous = _train_confidence(0.0, 0.0)  # p = 0.5 everywhere: large error
    assert easy > 4.5, easy
    assert ambiguous < 1.2, ambiguous
    # the optimum of c·A − λ·log c is λ/A: check the sign of the gradient at c̃ = 3 directly
    for mask_logit, sign in ((12.0, -1), (0.0, 1)):
        conf = torch.tensor([[[3.0]]], requires_grad=True)
        out = {"mask": torch.full((1, 1, 1, 4), mask_logit) * torch.tensor([1.0, 1.0, -1.0, -1.0]),
               "motion_logits": torch.tensor([[[mask_logit]]]), "iou_pred": torch.tensor([[[1.0]]]), "conf_pred": conf}
        L.proposer_loss(out, {"masks": torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]]), "motion": torch.tensor([[1.0]]),
                              "valid": torch.tensor([[True]])})[0].backward()
        assert math.copysign(1, conf.grad.item()) == sign
