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
    import av

    with av.open(str(shared_dir / "data" / "videos" / "bedroom.mp4")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    frames = [frame] * 5
    torch.manual_seed(0)
    pi3 = build_pi3_encoder("tiny").eval()
    size = pi3_target_size(frame.shape[1], frame.shape[0], pixel_limit=20000)
    with torch.no_grad():
        tokens = pi3(pi3_image_tensor(frames, size)[None])
    assert tokens.shape == (1, 5, size[0] // 14, size[1] // 14, 64)
    features = Sam2Features(build_sam2_predictor(TINY_CONFIG_PATH, None))
    _, sam_btn, high_res = features(sam2_image_tensor(frame)[None])
    proposer, gmos_s = build_proposer("tiny").eval(), build_gmos_s("tiny").eval()
    with torch.no_grad():
        out = proposer(tokens[:, 2], sam_btn, high_res)
        fg = gmos_s(tokens[:, 2], sam_btn, high_res)
    assert out["mask"].shape == (1, 10, 256, 256) and fg["fg_mask"].shape == (1, 1, 256, 256)
    assert torch.isfinite(out["mask"]).all() and torch.isfinite(fg["fg_mask"]).all()
    proposals = select_top_proposals(out, frame.shape[:2])[0]
    assert proposals.masks.shape == (10, *frame.shape[:2])  # k = min(20, 10 queries)
    assert np.all(np.diff(proposals.motions) <= 0)  # sorted by motion, descending
    labels = label_frame_proposals(proposals)
    assert labels.seq_annos.shape == (1, *frame.shape[:2]) and labels.pred_motions.shape == (1, 20, 1)


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
