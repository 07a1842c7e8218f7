"""Pi3Encoder at the reference tiny configuration vs every tensor of the pi3_tiny fixture."""
from __future__ import annotations

import json

import pytest
import torch

from gmos_core.models import Pi3Encoder, Pi3EncoderConfig, Pi3TokenCache, build_pi3_encoder, encode_pi3_with_cache

# Measured on this machine (torch 2.13 CPU fp32) against the fixture (official code, torch 2.15): max abs
# difference 3.8e-6 over every compared tensor (|x| up to ~10); the official fp32-vs-fp64 noise is 4.5e-6.
# 1.5e-5 is ~4x the measured difference, absolute only: rtol would add up to 1e-3 on |x| ~ 10 and let the
# LayerNorm-eps mutants through (they move the tensors by 2.5e-5 .. 8e-5, see test_known_pitfalls_break_parity).
TOL = dict(atol=1.5e-5, rtol=0)


@pytest.fixture(scope="module")
def model(pi3_tiny_ref):
    m = build_pi3_encoder("tiny").eval()
    m.load_state_dict({k[len("weights/"):]: v for k, v in pi3_tiny_ref.items() if k.startswith("weights/")},
                      strict=True)
    return m


@pytest.fixture(scope="module")
def images(pi3_tiny_ref):
    return pi3_tiny_ref["input/images_u8"].float() / 255


def test_tiny_config_matches_reference_config(fixtures_dir):
    cfg = json.loads((fixtures_dir / "pi3_tiny" / "config.json").read_text())
    tiny = Pi3EncoderConfig.tiny()
    assert (tiny.enc_embed_dim, tiny.enc_depth, tiny.enc_num_heads) == (
        cfg["dinov2"]["embed_dim"], cfg["dinov2"]["depth"], cfg["dinov2"]["num_heads"])
    assert (tiny.dec_embed_dim, tiny.dec_depth, tiny.dec_num_heads, tiny.rope_freq) == (
        cfg["decoder"]["dim"], cfg["decoder"]["depth"], cfg["decoder"]["num_heads"], cfg["decoder"]["rope_freq"])
    shapes = {k: tuple(v.shape) for k, v in Pi3Encoder(**tiny.to_dict()).state_dict().items()}
    assert shapes == {k: tuple(v) for k, v in cfg["state_dict_keys"].items()}
    assert list(shapes) == list(cfg["state_dict_keys"])  # same order too


def test_dinov2_tokens_and_blocks(model, images, pi3_tiny_ref):
    r = pi3_tiny_ref
    frames = model.normalize(images[0])
    with torch.no_grad():
        pos = model.encoder.interpolate_pos_encoding(30, 70, 84, torch.float32)
        torch.testing.assert_close(pos, r["dinov2/pos_embed_interpolated"], **TOL)
        x = model.encoder.prepare_tokens(frames)
        torch.testing.assert_close(x, r["dinov2/tokens_before_blocks"], **TOL)
        for i, block in enumerate(model.encoder.blocks):
            x = block(x)
            torch.testing.assert_close(x, r[f"dinov2/block{i}_out"], **TOL)
        tokens = model.encode_frames(images[0])
    torch.testing.assert_close(tokens, r["dinov2/x_norm_patchtokens"], **TOL)


def test_decoder_blocks_and_output(model, images, pi3_tiny_ref):
    r = pi3_tiny_ref
    outs = {}
    handles = [blk.register_forward_hook(lambda m, i, o, k=k: outs.__setitem__(k, o))
               for k, blk in enumerate(model.decoder)]
    try:
        with torch.no_grad():
            final = model(images)
    finally:
        for h in handles:
            h.remove()
    for i in range(4):
        assert outs[i].shape == r[f"decoder/block{i}_out"].shape  # even: (B*N,P,C), odd: (B,N*P,C)
        torch.testing.assert_close(outs[i], r[f"decoder/block{i}_out"], **TOL)
    assert final.shape == (1, 5, 5, 6, 64)
    torch.testing.assert_close(final, r["output/final"], **TOL)
    torch.testing.assert_close(final[:, 2], r["output/mid_frame"], **TOL)


def test_cache_windows_and_entries(model, images, pi3_tiny_ref, fixtures_dir):
    r = pi3_tiny_ref
    clip = images[:, :3]
    idx_a = r["cache/window_a_indices"]
    cache: dict = {}
    with torch.no_grad():
        out_a = encode_pi3_with_cache(model, clip[:, idx_a[0]], idx_a, cache)
    torch.testing.assert_close(out_a, r["cache/window_a_output"], **TOL)

    idx_b = r["cache/windows_b_indices"]
    windows = torch.stack([clip[0, row] for row in idx_b])
    cache = {}
    calls = []
    handle = model.encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        with torch.no_grad():
            out_b = encode_pi3_with_cache(model, windows, idx_b, cache)
            direct = model(windows)
    finally:
        handle.remove()
    torch.testing.assert_close(out_b, r["cache/windows_b_output"], **TOL)
    assert calls[0] == 3, "each distinct frame must go through DINOv2 exactly once"
    checks = json.loads((fixtures_dir / "pi3_tiny" / "meta.json").read_text())["checks"]
    assert list(cache) == checks["cache_b_insertion_order"]
    for k in range(3):
        torch.testing.assert_close(cache[k], r[f"cache/entries_b/frame{k}"], **TOL)
    # The cache is only a speed-up: equal to the direct forward (official: meta.json checks, max abs 0.0).
    assert float((out_b - direct).abs().max()) == checks["windows_b_cache_vs_direct_forward_max_abs"] == 0.0


def test_bounded_cache_evicts_oldest():
    cache = Pi3TokenCache(max_frames=2)
    for i in range(4):
        cache[i] = torch.zeros(1)
    assert list(cache) == [2, 3]
    with pytest.raises(ValueError):
        Pi3TokenCache(0)


def test_square_37x37_input_uses_the_stored_pos_embed(model):
    # Official shortcut: hw == 1369 and H == W -> pos_embed as stored (no bicubic resampling).
    assert model.encoder.interpolate_pos_encoding(1369, 518, 518, torch.float32) is model.encoder.pos_embed
    # 1369 patches but not square (impossible for 37x37 grids except H == W): any other size resamples.
    resampled = model.encoder.interpolate_pos_encoding(36 * 36, 504, 504, torch.float32)
    assert resampled.shape == (1, 1 + 36 * 36, 64)


def test_bad_inputs_are_named(model):
    with pytest.raises(ValueError, match="multiple of 14"):
        model(torch.zeros(1, 2, 3, 70, 85))
    with pytest.raises(ValueError, match=r"\(B, N, 3, H, W\)"):
        model(torch.zeros(2, 3, 70, 84))
    with pytest.raises(ValueError, match="decode expects"):
        model.decode(torch.zeros(5, 29, 64), 5, 70, 84)
    with pytest.raises(ValueError, match="rope100"):
        Pi3Encoder(pos_type="rope10")
    with pytest.raises(ValueError, match="enc_depth"):
        Pi3EncoderConfig(enc_depth=0)


def _max_parity_diff(model, images, r) -> float:
    """The largest difference of the checks above (DINOv2 blocks, decoder blocks, final output)."""
    outs = {}
    handles = [blk.register_forward_hook(lambda m, i, o, k=k: outs.__setitem__(k, o))
               for k, blk in enumerate(model.decoder)]
    try:
        with torch.no_grad():
            x = model.encoder.prepare_tokens(model.normalize(images[0]))
            diffs = [(x - r["dinov2/tokens_before_blocks"]).abs().max()]
            for i, block in enumerate(model.encoder.blocks):
                x = block(x)
                diffs.append((x - r[f"dinov2/block{i}_out"]).abs().max())
            diffs.append((model(images) - r["output/final"]).abs().max())
    finally:
        for h in handles:
            h.remove()
    diffs += [(outs[i] - r[f"decoder/block{i}_out"]).abs().max() for i in range(4)]
    return max(float(d) for d in diffs)


def _set_layernorm_eps(model, prefix, old, new):
    changed = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.LayerNorm) and name.startswith(prefix) and module.eps == old:
            module.eps = new
            changed += 1
    assert changed, f"no LayerNorm with eps {old} under {prefix!r}"


def _set_rope_base(model, base):
    from gmos_core.models.layers.rope import RoPE2D

    for module in model.modules():
        if isinstance(module, RoPE2D):
            module.base = base
            module._cache.clear()


# Known pitfalls of a re-implementation, each applied to the real model: parity at TOL must then fail, so the
# tolerance cannot drift up to where it would hide them. Measured max differences with each mutant (the real
# model: 3.8e-6): DINOv2 LN eps 1e-5 -> 7.8e-5; decoder block LN eps 1e-5 -> 5.9e-5; qk-norm eps 1e-6
# (official 1e-5) -> 2.5e-5; RoPE base 56.25 (the heads' value) -> 0.23; bilinear pos-embed -> 0.074;
# bicubic without antialias -> 2.7; align_corners=True -> 0.89.
PITFALLS = {
    "dinov2_layernorm_eps_1e-5": lambda m, mp: _set_layernorm_eps(m, "encoder", 1e-6, 1e-5),
    "decoder_layernorm_eps_1e-5": lambda m, mp: _set_layernorm_eps(m, "decoder", 1e-6, 1e-5),
    "qk_norm_eps_1e-6": lambda m, mp: _set_layernorm_eps(m, "decoder", 1e-5, 1e-6),
    "rope_base_56.25": lambda m, mp: _set_rope_base(m, 56.25),
    "pos_embed_bilinear": lambda m, mp: mp.setattr(
        dinov2_module(), "F", _functional_with(mode="bilinear", antialias=True)),
    "pos_embed_no_antialias": lambda m, mp: mp.setattr(
        dinov2_module(), "F", _functional_with(mode="bicubic", antialias=False)),
    "pos_embed_align_corners": lambda m, mp: mp.setattr(
        dinov2_module(), "F", _functional_with(mode="bicubic", antialias=True, align_corners=True)),
}


def dinov2_module():
    import gmos_core.models.dinov2 as dinov2

    return dinov2


def _functional_with(**forced):
    """A stand-in for ``torch.nn.functional`` in one module whose ``interpolate`` ignores the caller's
    mode / antialias / align_corners and uses ``forced`` instead."""
    import types

    import torch.nn.functional as F

    def interpolate(x, size=None, **_kwargs):
        return F.interpolate(x, size=size, **forced)
    return types.SimpleNamespace(interpolate=interpolate)


def test_real_model_is_within_tolerance(model, images, pi3_tiny_ref):
    assert _max_parity_diff(model, images, pi3_tiny_ref) <= TOL["atol"]


@pytest.mark.parametrize("pitfall", sorted(PITFALLS))
def test_known_pitfalls_break_parity(pitfall, pi3_tiny_ref, images, monkeypatch):
    mutant = build_pi3_encoder("tiny").eval()
    mutant.load_state_dict({k[len("weights/"):]: v for k, v in pi3_tiny_ref.items() if k.startswith("weights/")})
    PITFALLS[pitfall](mutant, monkeypatch)
    assert _max_parity_diff(mutant, images, pi3_tiny_ref) > TOL["atol"], f"{pitfall} passes Pi3 parity"
