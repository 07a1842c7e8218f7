"""The tiny configurations fit together (tiny Pi3 -> tiny heads <- tiny SAM 2), and bad configs / inputs
raise errors that name the problem."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gmos_core.models import (GMOSProposer, ProposerConfig, GMOSSConfig, Sam2Features, build_gmos_s,
                              build_pi3_encoder, build_proposer, build_sam2_predictor)
from gmos_core.models.sam2_features import TINY_CONFIG_PATH
from gmos_core.postprocess import label_frame_proposals, select_top_proposals
from gmos_core.preprocess import pi3_image_tensor, pi3_target_size, sam2_image_tensor


def test_tiny_models_chain_on_a_real_frame(shared_dir):
    """Tiny Pi3 -> tiny heads <- tiny SAM 2 on a real video frame, with value checks of each hand-over (the
    parity of each model is tested against the official fixtures elsewhere)."""
    import av

    with av.open(str(shared_dir / "data" / "videos" / "bedroom.mp4")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    frames = [frame] * 5
    torch.manual_seed(0)
    pi3 = build_pi3_encoder("tiny").eval()
    size = pi3_target_size(frame.shape[1], frame.shape[0], pixel_limit=20000)
    pi3_in = pi3_image_tensor(frames, size)[None]
    with torch.no_grad():
        tokens = pi3(pi3_in)
        other = pi3_in.clone()
        other[:, 4] = pi3_in[:, 4].flip(-1)  # a different last frame of the window
        tokens_other = pi3(other)
    assert tokens.shape == (1, 5, size[0] // 14, size[1] // 14, 64)
    # Pi3 treats the frames of a window alike (no frame-specific embedding): 5 equal frames -> 5 equal token
    # maps (measured: exactly equal); global attention mixes the frames: another last frame changes the
    # middle frame's tokens (measured 1.5e-3 on random weights).
    for k in range(5):
        assert torch.equal(tokens[:, k], tokens[:, 2])
    assert (tokens_other[:, 2] - tokens[:, 2]).abs().max() > 1e-4
    assert tokens.std() > 0.1  # not a degenerate (e.g. all-zero) output

    features = Sam2Features(build_sam2_predictor(TINY_CONFIG_PATH, None))
    backbone_out, sam_btn, high_res = features(sam2_image_tensor(frame)[None])
    proposer, gmos_s = build_proposer("tiny").eval(), build_gmos_s("tiny").eval()
    with torch.no_grad():
        out = proposer(tokens[:, 2], sam_btn, high_res)
        fg = gmos_s(tokens[:, 2], sam_btn, high_res)
    assert out["mask"].shape == (1, 10, 256, 256) and fg["fg_mask"].shape == (1, 1, 256, 256)
    assert torch.isfinite(out["mask"]).all() and torch.isfinite(fg["fg_mask"]).all()
    conf_max = ProposerConfig.tiny().conf_max
    assert ((out["conf_pred"] > 1) & (out["conf_pred"] < conf_max)).all()  # official range (1, conf_max)

    proposals = select_top_proposals(out, frame.shape[:2])[0]
    assert proposals.masks.shape == (10, *frame.shape[:2])  # k = min(20, 10 queries)
    # Top-k by motion logit, descending, each slot carrying its own query's mask / motion / iou (values, not
    # only shapes; the order among equal logits is torch.topk's, as officially).
    order = proposals.query_indices
    assert sorted(order.tolist()) == list(range(10))
    logits = out["motion_logits"][0, :, 0]
    np.testing.assert_array_equal(logits[order].numpy(), torch.sort(logits, descending=True).values.numpy())
    np.testing.assert_allclose(proposals.motions, torch.sigmoid(logits[order]).numpy(), rtol=0, atol=1e-7)
    np.testing.assert_array_equal(proposals.ious, out["iou_pred"][0, order, 0].numpy())
    up = torch.nn.functional.interpolate(out["mask"][:, order], size=frame.shape[:2], mode="bilinear",
                                         align_corners=False)[0].numpy()
    np.testing.assert_array_equal(proposals.masks, up)

    # Labels: per pixel the arg-max slot where its logit > 0; used slots ranked ascending -> labels 1..M.
    labels = label_frame_proposals(proposals)
    assert labels.seq_annos.shape == (1, *frame.shape[:2]) and labels.pred_motions.shape == (1, 20, 1)
    winner, keep = up.argmax(0), up.max(0) > 0
    assert keep.any() and not keep.all(), "the random proposer must give foreground and background pixels"
    used = np.unique(winner[keep])
    expected = np.where(keep, np.searchsorted(used, winner) + 1, 0)
    np.testing.assert_array_equal(labels.seq_annos[0], expected)
    np.testing.assert_allclose(labels.pred_motions[0, :len(used), 0], proposals.motions[used], rtol=0, atol=0)
    assert not labels.pred_motions[0, len(used):].any()


def test_head_configs_are_validated():
    with pytest.raises(ValueError, match="divisible by 8"):
        ProposerConfig(embed_dim=36, num_heads=3)
    with pytest.raises(ValueError, match="RoPE"):
        GMOSSConfig(embed_dim=48, num_heads=8)  # head dim 6 cannot be split into 2-D rotary halves
    GMOSSConfig(embed_dim=32, num_heads=4)  # GMOS-S has no cross-attention: head dim 8 is fine
    with pytest.raises(ValueError, match="cross-attention"):
        ProposerConfig(embed_dim=32, num_heads=8, pi3_dim=64, sam_dim=32, mlp_dim=64)
    with pytest.raises(ValueError, match="model size"):
        build_proposer("medium")


def test_head_inputs_are_checked():
    model = GMOSProposer(**ProposerConfig.tiny().to_dict())
    token = torch.zeros(1, 5, 6, 64)
    sam_btn = torch.zeros(1, 32, 64, 64)
    high_res = [torch.zeros(1, 4, 256, 256), torch.zeros(1, 8, 128, 128)]
    with pytest.raises(ValueError, match=r"token must be \(B, h, w, 64\)"):
        model(torch.zeros(1, 64, 5, 6), sam_btn, high_res)
    with pytest.raises(ValueError, match=r"high_res s1 must be \(1, 8, 128, 128\)"):
        model(token, sam_btn, [high_res[0], torch.zeros(1, 8, 64, 64)])
    with pytest.raises(ValueError, match="batch mismatch"):
        model(torch.zeros(2, 5, 6, 64), sam_btn, high_res)
