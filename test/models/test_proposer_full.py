"""GMOSProposer at full size vs the official numbers (gmos_proposer_full fixture)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gmos_core.models import GMOSProposer, build_proposer
from gmos_core.postprocess import label_frame_proposals, label_proposals, select_top_proposals

from .conftest import weights_from

VIDEO_HW = (90, 160)

# Tolerances: max abs difference to the fixture measured on this machine (torch 2.13 CPU fp32; the fixture came
# from torch 2.15) -> the tolerance used, about 3-6x above it (docs/models.md lists them).
TOL = {
    "motion_logits": 3e-6,  # measured 1.1e-6; top-k order is only stable to ~1e-5 (fixture README)
    "iou_pred": 4e-6,  # 8.4e-7
    "conf_pred": 4e-6,  # 7.2e-7
    "mask": 3e-5,  # 6.9e-6 (|x| <= 6.8)
    "mask_mean": 5e-6,  # 1.4e-6
    "mask_std": 3e-6,  # 5.4e-7
    "pi3_projector": 2e-5,  # 3.1e-6
    "sam_projector": 2e-5,  # 4.5e-6
    "merge_projector": 2e-5,  # 5.2e-6
    "trans_encoder_layer0": 2e-5,  # 6.2e-6
    "trans_encoder": 2e-5,  # 3.6e-6
    "trans_decoder_queries": 1.5e-5,  # 2.4e-6
    "trans_decoder_keys": 1.5e-5,  # 1.9e-6
    "masks_top20_up": 2e-5,  # 4.1e-6
    "pred_motions": 2e-6,  # 2.4e-7
    "pred_ious": 4e-6,  # 6.9e-7
}


@pytest.fixture(scope="module")
def model(proposer_ref):
    model = build_proposer("full").eval()
    model.load_state_dict(weights_from(proposer_ref), strict=True)
    return model


@pytest.fixture(scope="module")
def run(model, head_inputs):
    """One full-size forward (the expensive part) with hooks recording the intermediates."""
    inter = {}

    def keep(name):
        def hook(_module, _inputs, output):
            inter[name] = output
        return hook

    handles = [model.pi3_projector.register_forward_hook(keep("pi3_projector")),
               model.sam_projector.register_forward_hook(keep("sam_projector")),
               model.merge_projector.register_forward_hook(keep("merge_projector")),
               model.trans_encoder.layers[0].register_forward_hook(keep("trans_encoder_layer0")),
               model.trans_encoder.register_forward_hook(keep("trans_encoder")),
               model.trans_decoder.register_forward_hook(keep("trans_decoder"))]
    token, sam_btn, high_res = head_inputs
    try:
        with torch.no_grad():
            out = model(token, sam_btn, high_res)
    finally:
        for h in handles:
            h.remove()
    return out, inter


def _close(actual, expected, atol):
    diff = (actual.float() - expected.float()).abs().max().item()
    assert diff <= atol, f"max abs diff {diff} > {atol}"


def test_default_constructor_is_official():
    model = GMOSProposer()
    sd = model.state_dict()
    assert len(sd) == 211 and sum(v.numel() for v in sd.values()) == 9_911_941
    assert sd["motion_bias"].shape == () and sd["motion_weight"].shape == (1,)


def test_outputs(run, proposer_ref):
    out, _ = run
    assert set(out) == {"mask", "motion_logits", "iou_pred", "conf_pred"}
    assert out["mask"].shape == (2, 100, 256, 256)
    # top-k order is only stable to ~1e-5 (README): the motion logits must be much closer than that.
    _close(out["motion_logits"], proposer_ref["outputs/motion_logits"], TOL["motion_logits"])
    _close(out["iou_pred"], proposer_ref["outputs/iou_pred"], TOL["iou_pred"])
    _close(out["conf_pred"], proposer_ref["outputs/conf_pred"], TOL["conf_pred"])
    _close(out["mask"][:, :, ::8, ::8], proposer_ref["outputs/mask_sub8"], TOL["mask"])
    _close(out["mask"][:, :, 101:103, :], proposer_ref["outputs/mask_rows101_102"], TOL["mask"])
    mask64 = out["mask"].double()
    _close(mask64.mean(dim=(2, 3)), proposer_ref["outputs/mask_mean"], TOL["mask_mean"])
    _close(mask64.flatten(2).std(dim=2), proposer_ref["outputs/mask_std"], TOL["mask_std"])


def _trunk_diffs(inter, r) -> dict:
    """Max abs difference of the fusion trunk's intermediates (projectors, first encoder layer); a forward of
    only the first batch item is compared with the first item of the fixture."""
    def d(a, b):
        return float((a.float() - b[:a.shape[0]].float()).abs().max())
    return {"pi3_projector": d(inter["pi3_projector"][..., ::4], r["inter/pi3_projector_c4"]),
            "sam_projector": d(inter["sam_projector"][:, ::4, ::4, ::8], r["inter/sam_projector_sub"]),
            "merge_projector": d(inter["merge_projector"][:, ::4, ::4, ::8], r["inter/merge_projector_sub"]),
            "trans_encoder_layer0": d(inter["trans_encoder_layer0"][:, ::8, ::8], r["inter/trans_encoder_layer0_sub"])}


def test_intermediates(run, proposer_ref):
    _, inter = run
    r = proposer_ref
    for name, diff in _trunk_diffs(inter, r).items():
        assert diff <= TOL[name], f"{name}: max abs diff {diff} > {TOL[name]}"
    _close(inter["trans_encoder"][:, ::8, ::4, ::4], r["inter/trans_encoder_sub"], TOL["trans_encoder"])
    queries, keys = inter["trans_decoder"]
    _close(queries, r["inter/trans_decoder_queries"], TOL["trans_decoder_queries"])
    _close(keys[:, ::8, ::4, ::4], r["inter/trans_decoder_keys_sub"], TOL["trans_decoder_keys"])


def test_postprocessing(run, proposer_ref, fixtures_dir):
    out, _ = run
    r = proposer_ref
    frames = select_top_proposals(out, VIDEO_HW)
    assert len(frames) == 2
    for b, fp in enumerate(frames):
        np.testing.assert_array_equal(fp.query_indices, r["postproc/topk_indices"][b].numpy())
        assert fp.masks.shape == (20, *VIDEO_HW)
        np.testing.assert_allclose(fp.masks[:, ::4, ::4], r["postproc/masks_top20_up_sub4"][b].numpy(),
                                   atol=TOL["masks_top20_up"], rtol=0)
    labels = label_proposals(frames)
    expected = r["postproc/seq_annos"].numpy()
    # A pixel's label can only flip where the top two upsampled logits (or the top one and 0) are closer than
    # twice the logit error; measured: all 28800 pixels identical here. Pixels with a margin below
    # 2 x TOL["masks_top20_up"] may differ (fewer than 1 % on the fixture); every other pixel must be exact.
    margin = r["postproc/hardmax_margin"].numpy()
    stable = margin >= 2 * TOL["masks_top20_up"]
    assert stable.mean() > 0.99
    assert labels.seq_annos.dtype == np.uint8 and labels.seq_annos.shape == expected.shape
    np.testing.assert_array_equal(labels.seq_annos[stable], expected[stable])
    meta = json.loads((fixtures_dir / "gmos_proposer_full" / "meta.json").read_text())["postproc"]
    for t in range(2):  # the labels present (meta.json; a label used on one frame only leaves a gap on the other)
        assert sorted(np.unique(labels.seq_annos[t][labels.seq_annos[t] > 0]).tolist()) == meta["labels_present"][t]
        assert set(np.unique(expected[t]).tolist()) == {0, *meta["labels_present"][t]}
    # meta.json's margin statistics describe the stored margins (so `stable` above excludes what it says).
    counts = meta["hard_max_margins"]
    assert int((margin < 1e-4).sum()) == counts["pixels_with_margin_below_1e-4"]
    assert margin.size == counts["total_pixels"]
    np.testing.assert_allclose(labels.pred_motions, r["postproc/pred_motions"].numpy(), atol=TOL["pred_motions"], rtol=0)
    np.testing.assert_allclose(labels.pred_ious, r["postproc/pred_ious"].numpy(), atol=TOL["pred_ious"], rtol=0)
    for t in range(2):  # the official PNGs hold the same label maps
        png = np.array(Image.open(fixtures_dir / "gmos_proposer_full" / f"postproc_seq_annos_{t}.png"))
        np.testing.assert_array_equal(png[stable[t]], labels.seq_annos[t][stable[t]])


def test_per_frame_labelling_ranks_within_the_frame(run):
    out, _ = run
    frames = select_top_proposals(out, VIDEO_HW)
    whole = label_proposals(frames)
    single = label_frame_proposals(frames[1])
    # Frame 1 alone: its non-empty slots are relabelled 1..M without the gap whole-video labelling leaves.
    present = np.unique(whole.seq_annos[1])
    present = present[present > 0]
    assert sorted(np.unique(single.seq_annos[0][single.seq_annos[0] > 0]).tolist()) == list(range(1, len(present) + 1))
    # Same pixels are foreground, and the partition into objects is the same.
    np.testing.assert_array_equal(single.seq_annos[0] > 0, whole.seq_annos[1] > 0)
    remap = dict(zip(present.tolist(), range(1, len(present) + 1)))
    remapped = np.vectorize(lambda v: remap.get(v, 0))(whole.seq_annos[1])
    np.testing.assert_array_equal(single.seq_annos[0], remapped)


def _set(monkeypatch, modules, attr, value):
    for module in modules:
        monkeypatch.setattr(module, attr, value)


def _projector_eps(model, monkeypatch):
    from gmos_core.models.layers.projector import TokenProjector

    _set(monkeypatch, [m.norm for m in model.modules() if isinstance(m, TokenProjector)], "eps", 1e-5)


def _rope_base(model, monkeypatch):
    from gmos_core.models.layers.rope import RoPE2D

    ropes = [m for m in model.modules() if isinstance(m, RoPE2D)]
    _set(monkeypatch, ropes, "base", 100.0)  # Pi3's value instead of the heads' 100*36/64
    _set(monkeypatch, ropes, "_cache", {})  # fresh angle tables for the mutant; the originals come back after


def _interpolation(**forced):
    def apply(model, monkeypatch):
        import types

        import torch.nn.functional as F

        import gmos_core.models.heads_common as heads_common

        def interpolate(x, size=None, **_ignored):
            return F.interpolate(x, size=size, **forced)
        monkeypatch.setattr(heads_common, "F", types.SimpleNamespace(interpolate=interpolate))
    return apply


# Pitfalls applied to the real model: the fusion trunk (projectors + first encoder layer, a cheap partial
# forward) must then fail parity at TOL. Measured max diffs with each mutant (real model: <= 6.2e-6):
# projector LayerNorm eps 1e-5 (official 1e-6) -> 1.3e-4 (merge_projector); RoPE base 100 -> 0.15 (layer 0);
# Pi3-grid resize bicubic -> 1.46, bilinear align_corners=True -> 2.6, nearest -> 3.2.
# (The encoder's post-norm LayerNorms use PyTorch's 1e-5 officially; setting them to 1e-6 moves layer 0 by
# 2.1e-5 and the masks by 2.2e-5 -- only 3x the measured noise, so it is not asserted here.)
# bilinear with antialias=True is not a pitfall: 9x16 -> 64x64 only upsamples, where antialias is a no-op.
TRUNK_PITFALLS = {
    "projector_layernorm_eps_1e-5": _projector_eps,
    "rope_base_100": _rope_base,
    "pi3_resize_bicubic": _interpolation(mode="bicubic", align_corners=False),
    "pi3_resize_align_corners": _interpolation(mode="bilinear", align_corners=True),
    "pi3_resize_nearest": _interpolation(mode="nearest"),
}


class _StopAfterLayer0(Exception):
    pass


def _trunk_forward(model, head_inputs) -> dict:
    inter = {}

    def keep(name):
        return lambda _m, _i, out: inter.__setitem__(name, out)

    def stop(_m, _i, out):
        inter["trans_encoder_layer0"] = out
        raise _StopAfterLayer0

    handles = [model.pi3_projector.register_forward_hook(keep("pi3_projector")),
               model.sam_projector.register_forward_hook(keep("sam_projector")),
               model.merge_projector.register_forward_hook(keep("merge_projector")),
               model.trans_encoder.layers[0].register_forward_hook(stop)]
    token, sam_btn, high_res = head_inputs
    try:
        with torch.no_grad(), pytest.raises(_StopAfterLayer0):
            model(token[:1], sam_btn[:1], [h[:1] for h in high_res])  # first batch item only (cheaper)
    finally:
        for h in handles:
            h.remove()
    return inter


@pytest.mark.parametrize("pitfall", sorted(TRUNK_PITFALLS))
def test_known_pitfalls_break_parity(pitfall, model, head_inputs, proposer_ref, monkeypatch):
    with monkeypatch.context() as mp:
        TRUNK_PITFALLS[pitfall](model, mp)
        diffs = _trunk_diffs(_trunk_forward(model, head_inputs), proposer_ref)
    assert any(diffs[k] > TOL[k] for k in diffs), f"{pitfall} passes the trunk parity checks: {diffs}"


def test_trunk_check_passes_on_the_real_model(model, head_inputs, proposer_ref):
    diffs = _trunk_diffs(_trunk_forward(model, head_inputs), proposer_ref)
    assert all(diffs[k] <= TOL[k] for k in diffs), diffs


@pytest.mark.parametrize("forced", [dict(mode="bicubic", align_corners=False),
                                    dict(mode="bilinear", align_corners=True),
                                    dict(mode="bilinear", align_corners=False, antialias=True)],
                         ids=["bicubic", "align_corners", "antialias"])
def test_proposal_upsampling_pitfalls_break_parity(forced, run, proposer_ref, monkeypatch):
    """The official post-processing upsamples 256x256 -> 90x160 bilinearly, align_corners False, without
    antialias (a downsample here, so antialias would matter). Measured with the mutants: upsampled masks off
    by 1.2 / 4.0 / 3.6 and 4493 / 12810 / 21346 of 28800 label pixels changed."""
    out, _ = run
    real_interpolate = torch.nn.functional.interpolate
    monkeypatch.setattr(torch.nn.functional, "interpolate",
                        lambda x, size=None, **_ignored: real_interpolate(x, size=size, **forced))
    frames = select_top_proposals(out, VIDEO_HW)
    diff = max(float(np.abs(fp.masks[:, ::4, ::4] - proposer_ref["postproc/masks_top20_up_sub4"][b].numpy()).max())
               for b, fp in enumerate(frames))
    assert diff > TOL["masks_top20_up"]
