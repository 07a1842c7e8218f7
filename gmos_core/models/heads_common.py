"""The fusion trunk shared by GMOSProposer and GMOS-S: project Pi3 and SAM 2 tokens, merge, RoPE encoder."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from gmos_core.models.layers.rope import grid_positions

HEAD_ROPE_BASE = 100.0 * 36 / 64  # 56.25: official RotaryPositionEmbedding2D frequency for the heads


def validate_head_dims(embed_dim: int, num_heads: int, pi3_dim: int, sam_dim: int, mlp_dim: int,
                       cross_attention: bool) -> None:
    for name, value in (("embed_dim", embed_dim), ("num_heads", num_heads), ("pi3_dim", pi3_dim),
                        ("sam_dim", sam_dim), ("mlp_dim", mlp_dim)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if embed_dim % 8:
        raise ValueError(f"embed_dim must be divisible by 8 (mask upsampling widths C/4, C/8), got {embed_dim}")
    if embed_dim % num_heads or (embed_dim // num_heads) % 4:
        raise ValueError(f"embed_dim/num_heads must be an integer divisible by 4 for 2-D RoPE "
                         f"(got {embed_dim}/{num_heads})")
    if cross_attention and ((embed_dim // 2) % num_heads or (embed_dim // 2 // num_heads) % 4):
        raise ValueError(f"cross-attention head dim (embed_dim/2/num_heads) must be divisible by 4 "
                         f"(got {embed_dim}/2/{num_heads})")


def check_head_inputs(token: torch.Tensor, sam_btn: torch.Tensor, high_res, pi3_dim: int, sam_dim: int,
                      embed_dim: int) -> None:
    """Clear errors for mis-shaped head inputs (the official code would fail deep inside a matmul)."""
    if token.ndim != 4 or token.shape[-1] != pi3_dim:
        raise ValueError(f"token must be (B, h, w, {pi3_dim}) channels-last, got {tuple(token.shape)}")
    if sam_btn.ndim != 4 or sam_btn.shape[1] != sam_dim:
        raise ValueError(f"sam_btn must be (B, {sam_dim}, 64, 64), got {tuple(sam_btn.shape)}")
    if len(high_res) != 2:
        raise ValueError(f"high_res must be [s0 (B,{embed_dim // 8},4h,4w), s1 (B,{embed_dim // 4},2h,2w)], "
                         f"got {len(high_res)} tensors")
    s0, s1 = high_res
    b, _, h, w = sam_btn.shape
    if token.shape[0] != b:
        raise ValueError(f"batch mismatch: token {token.shape[0]} vs sam_btn {b}")
    expected = {"s0": (b, embed_dim // 8, 4 * h, 4 * w), "s1": (b, embed_dim // 4, 2 * h, 2 * w)}
    for name, t in (("s0", s0), ("s1", s1)):
        if tuple(t.shape) != expected[name]:
            raise ValueError(f"high_res {name} must be {expected[name]}, got {tuple(t.shape)}")


def fuse_tokens(module: nn.Module, token: torch.Tensor, sam_btn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1–5 of the official heads: returns (merged (B,C,h,w) after the encoder, positions (B,h*w,2)).

    ``module`` provides pi3_projector, sam_projector, merge_projector, trans_encoder.
    """
    b, _, h, w = sam_btn.shape
    p = module.pi3_projector(token.float()).permute(0, 3, 1, 2)
    # Non-square Pi3 grids are stretched onto the square SAM grid (bilinear, no antialias).
    p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
    s = module.sam_projector(sam_btn.float().permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    merged = module.merge_projector(torch.cat([p, s], dim=1).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    positions = grid_positions(b, h, w, merged.device)  # no +1 shift for the heads (unlike Pi3)
    return module.trans_encoder(merged, positions), positions
