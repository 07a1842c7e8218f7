"""The full-size SAM 2.1 Hiera-L predictor (random init, no checkpoint needed) through GMOSVideoPredictor:
official key set, and one mask prompt + one tracked frame with per-object IoUs. Features are random tensors
of the real shapes (the Hiera-L image encoder itself is the models area's and too slow to run here)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def hiera_l():
    from hydra.core.global_hydra import GlobalHydra
    from hydra import initialize_config_module
    from sam2.build_sam import build_sam2_video_predictor

    from gmos_core.propagator import as_gmos_predictor

    torch.set_num_threads(2)
    torch.manual_seed(0)
    if not GlobalHydra.instance().is_initialized():
        initialize_config_module("sam2", version_base="1.2")
    with torch.device("cpu"):
        predictor = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_l.yaml", None, device="cpu")
    return as_gmos_predictor(predictor)


def _fake_backbone_out(generator):
    fpn = [torch.randn(1, 32, 256, 256, generator=generator), torch.randn(1, 64, 128, 128, generator=generator),
           torch.randn(1, 256, 64, 64, generator=generator)]
    pos = [torch.randn(1, 256, s, s, generator=generator) for s in (256, 128, 64)]
    return {"backbone_fpn": fpn, "vision_pos_enc": pos}


def test_hiera_l_keys_are_official(hiera_l):
    sd = hiera_l.state_dict()
    assert len(sd) == 903
    assert sum(v.numel() for v in sd.values()) == 224446898
    assert type(hiera_l).__name__ == "GMOSVideoPredictor"


def test_hiera_l_prompt_and_track_with_object_ious(hiera_l):
    from gmos_core.propagator import init_state_from_features, install_fp32_memory_shim

    warnings.filterwarnings("ignore", message=r"(?s).*post-processing")
    g = torch.Generator().manual_seed(1)
    install_fp32_memory_shim(hiera_l)
    state = init_state_from_features(hiera_l, (36, 48), [_fake_backbone_out(g), _fake_backbone_out(g)])
    mask = np.zeros((36, 48), bool)
    mask[8:24, 10:30] = True
    frame, ids, logits, ious = hiera_l.add_new_mask(state, 0, 7, mask, with_object_ious=True)
    assert ids == [7] and logits.shape == (1, 1, 36, 48)
    assert ious.tolist() == [[1.0]]  # a mask prompt is used as the output
    assert ((logits[0, 0] > 0).numpy() == mask).mean() > 0.95
    outs = list(hiera_l.propagate_in_video(state, start_frame_idx=0, with_object_ious=True))
    assert [o[0] for o in outs] == [0, 1]
    assert outs[0][3].tolist() == [[1.0]]
    tracked_iou = float(outs[1][3][0, 0])
    assert 0.0 < tracked_iou < 1.0  # sigmoid IoU prediction of the SAM decoder
    assert "object_ious" in state["output_dict_per_obj"][0]["non_cond_frame_outputs"][1]
