"""SAM 2 feature extraction on the PyPI sam2 package, with the tiny SAM 2 of the propagator fixture:
features must equal the cached features the official proposer pass stored."""
from __future__ import annotations

import pytest
import torch

from gmos_core.models import Sam2Features, build_sam2_predictor, install_memory_dtype_shim, remove_memory_dtype_shim
from gmos_core.models.sam2_features import TINY_CONFIG_PATH
from gmos_core.preprocess import sam2_image_tensor
from gmos_core.weights import WeightLoadError

from .conftest import load_tensors


@pytest.fixture(scope="module")
def prop_ref(fixtures_dir):
    return load_tensors(fixtures_dir / "propagator_tiny" / "propagator_tiny.safetensors")


@pytest.fixture(scope="module")
def predictor(fixtures_dir):
    return build_sam2_predictor(TINY_CONFIG_PATH, fixtures_dir / "propagator_tiny" / "sam2_tiny_weights.safetensors")


def test_packaged_tiny_config_is_the_fixture_config(fixtures_dir):
    assert TINY_CONFIG_PATH.read_text() == (fixtures_dir / "propagator_tiny" / "sam2_tiny_gmos_fixture.yaml").read_text()


def test_predictor_flags(predictor):
    assert predictor.fill_hole_area == 0  # official run: hole filling ineffective (no sam2._C)
    assert not predictor.training
    assert predictor.binarize_mask_from_pts_for_mem_enc
    assert predictor.sam_mask_decoder.dynamic_multimask_via_stability
    assert all(not p.requires_grad for p in predictor.parameters())


def test_features_match_official_cache(predictor, prop_ref):
    frames = prop_ref["frames"].numpy()
    features = Sam2Features(predictor)
    sam_rgb = sam2_image_tensor(frames)
    outs = [features.encode(sam_rgb[:8]), features.encode(sam_rgb[8:])]  # batches of 8 as the official pass
    levels = [torch.cat([o["backbone_fpn"][i] for o in outs]) for i in range(3)]
    assert [tuple(l.shape) for l in levels] == [(10, 4, 256, 256), (10, 8, 128, 128), (10, 32, 64, 64)]
    # Measured here (torch 2.13 CPU) against the official run (torch 2.15): levels 1.4e-6 / 1.4e-6 / 4.8e-6,
    # channel means <= 9.2e-8, position encodings 0.0. Tolerances ~4-5x above: 2e-5 and 5e-7; PE exact.
    for i, sub in enumerate((16, 8, 4)):
        ref = prop_ref[f"sam_feat/backbone_fpn{i}_c4_sub{sub}"]
        torch.testing.assert_close(levels[i][:, ::4, ::sub, ::sub], ref, atol=2e-5, rtol=0)
        torch.testing.assert_close(levels[i].double().mean((2, 3)), prop_ref[f"sam_feat/backbone_fpn{i}_channel_mean_f64"],
                                   atol=5e-7, rtol=0)
        pos = outs[0]["vision_pos_enc"][i][:1]
        assert torch.equal(pos[:, ::4, ::sub, ::sub], prop_ref[f"sam_feat/vision_pos_enc{i}_frame0_c4_sub{sub}"])


def test_head_inputs_add_no_mem_embed_without_touching_backbone_out(predictor):
    features = Sam2Features(predictor)
    backbone_out = features.encode(torch.randn(2, 3, 1024, 1024))
    raw_bottleneck = backbone_out["backbone_fpn"][2].clone()
    sam_btn, high_res = features.head_inputs(backbone_out)
    assert sam_btn.shape == (2, 32, 64, 64) and sam_btn.dtype == torch.float32
    assert [tuple(h.shape) for h in high_res] == [(2, 4, 256, 256), (2, 8, 128, 128)]
    expected = raw_bottleneck + predictor.no_mem_embed.view(1, -1, 1, 1)
    torch.testing.assert_close(sam_btn, expected)
    assert torch.equal(backbone_out["backbone_fpn"][2], raw_bottleneck)  # raw features kept for the propagator
    assert torch.equal(high_res[0], backbone_out["backbone_fpn"][0])
    frames = Sam2Features.split(backbone_out)
    assert len(frames) == 2 and frames[1]["backbone_fpn"][2].shape == (1, 32, 64, 64)
    assert frames[1]["vision_features"] is frames[1]["backbone_fpn"][2]
    assert frames[1]["backbone_fpn"][2].data_ptr() != backbone_out["backbone_fpn"][2].data_ptr()
    with pytest.raises(ValueError, match="1024"):
        features.encode(torch.zeros(1, 3, 512, 512))


def test_memory_dtype_shim(predictor):
    d = 32
    curr = torch.randn(64 * 64, 1, d)
    memory = torch.randn(64 * 64, 1, 16).to(torch.bfloat16)
    kwargs = dict(curr=[curr], curr_pos=[torch.zeros_like(curr)], memory=memory,
                  memory_pos=torch.zeros(64 * 64, 1, 16), num_obj_ptr_tokens=0)
    with torch.no_grad():
        with pytest.raises(RuntimeError):
            predictor.memory_attention(**kwargs)
        handle = install_memory_dtype_shim(predictor)
        assert install_memory_dtype_shim(predictor) is handle  # idempotent
        try:
            out = predictor.memory_attention(**kwargs)
            expected = predictor.memory_attention(**{**kwargs, "memory": memory.float()})
        finally:
            assert remove_memory_dtype_shim(predictor)
        assert not remove_memory_dtype_shim(predictor)
        with pytest.raises(RuntimeError):  # removed: the float32 Linear meets bf16 memory again
            predictor.memory_attention(**kwargs)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected)


def test_build_option_installs_the_shim(fixtures_dir):
    predictor = build_sam2_predictor(TINY_CONFIG_PATH, None, memory_dtype_shim=True)
    assert remove_memory_dtype_shim(predictor)


def test_strict_checkpoint_loading(tmp_path, fixtures_dir):
    from safetensors.torch import load_file, save_file

    state = load_file(str(fixtures_dir / "propagator_tiny" / "sam2_tiny_weights.safetensors"))
    state.pop("no_mem_embed")
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(WeightLoadError, match="no_mem_embed"):
        build_sam2_predictor(TINY_CONFIG_PATH, tmp_path / "broken.safetensors")
    torch.save({"model": load_file(str(fixtures_dir / "propagator_tiny" / "sam2_tiny_weights.safetensors"))},
               tmp_path / "tiny.pt")
    predictor = build_sam2_predictor(str(TINY_CONFIG_PATH), tmp_path / "tiny.pt")  # official {"model": sd} form
    assert predictor.no_mem_embed.shape == (1, 1, 32)


def test_unknown_config_is_named():
    with pytest.raises(FileNotFoundError, match="neither an existing YAML"):
        build_sam2_predictor("/nonexistent/sam2.yaml", None)


def test_predictor_class_can_be_chosen():
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    predictor = build_sam2_predictor(TINY_CONFIG_PATH, None, target=f"{__name__}._SubclassForTest")
    assert type(predictor) is _SubclassForTest and isinstance(predictor, SAM2VideoPredictor)


def test_encoder_autocast_policy():
    import contextlib

    from gmos_core.models import encoder_autocast, encoder_autocast_dtype

    assert encoder_autocast_dtype("cpu") is None
    assert isinstance(encoder_autocast("cpu"), contextlib.nullcontext)
    assert isinstance(encoder_autocast("cpu", torch.bfloat16), contextlib.nullcontext)  # CPU stays fp32


def _make_subclass():
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    class _SubclassForTest(SAM2VideoPredictor):
        pass

    return _SubclassForTest


_SubclassForTest = _make_subclass()
