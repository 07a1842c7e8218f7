"""GMOS-S: the lighter foreground/background head (one moving-foreground logit map per frame)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from gmos_core.models.heads_common import HEAD_ROPE_BASE, check_head_inputs, fuse_tokens, validate_head_dims
from gmos_core.models.layers import MLP, RoPE2D, TokenProjector, TransformerEncoder
from gmos_core.models.layers.upsampling import MaskUpsampler


@dataclass(frozen=True)
class GMOSSConfig:
    """Defaults = the official ``GMOS_S()`` (80 keys)."""

    embed_dim: int = 256
    encoder_depth: int = 3
    num_heads: int = 8
    conf_max: float = 5.0
    pi3_dim: int = 1024
    sam_dim: int = 256
    mlp_dim: int = 2048
    rope_base: float = HEAD_ROPE_BASE

    def __post_init__(self) -> None:
        validate_head_dims(self.embed_dim, self.num_heads, self.pi3_dim, self.sam_dim, self.mlp_dim,
                           cross_attention=False)
        if self.encoder_depth < 1:
            raise ValueError(f"GMOSSConfig.encoder_depth must be >= 1, got {self.encoder_depth}")
        if self.conf_max <= 1:
            raise ValueError(f"conf_max must be > 1, got {self.conf_max}")

    @classmethod
    def full(cls) -> "GMOSSConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "GMOSSConfig":
        return cls(embed_dim=32, encoder_depth=1, num_heads=2, pi3_dim=64, sam_dim=32, mlp_dim=64)

    def to_dict(self) -> dict:
        return asdict(self)


class GMOSS(nn.Module):
    """forward(token, sam_btn, high_res) -> {fg_mask (B,1,256,256) logits, iou_pred (B,1), conf_pred (B,1)}."""

    def __init__(self, embed_dim: int = 256, encoder_depth: int = 3, num_heads: int = 8, conf_max: float = 5,
                 pi3_dim: int = 1024, sam_dim: int = 256, mlp_dim: int = 2048,
                 rope_base: float = HEAD_ROPE_BASE) -> None:
        super().__init__()
        self.config = GMOSSConfig(embed_dim, encoder_depth, num_heads, float(conf_max), pi3_dim, sam_dim,
                                  mlp_dim, rope_base)
        self.rope = RoPE2D(rope_base)
        self.pi3_projector = TokenProjector(pi3_dim, embed_dim, p_drop=0.2)
        self.sam_projector = TokenProjector(sam_dim, embed_dim)
        self.merge_projector = TokenProjector(2 * embed_dim, embed_dim)
        self.trans_encoder = TransformerEncoder(encoder_depth, embed_dim, num_heads, mlp_dim, self.rope)
        self.fg_upscaling = MaskUpsampler(embed_dim)
        self.fg_out = nn.Conv2d(embed_dim // 8, 1, kernel_size=1)
        self.iou_head = MLP(embed_dim, embed_dim, 1, 3)
        self.conf_head = MLP(embed_dim, embed_dim, 1, 3)

    def forward(self, token: torch.Tensor, sam_btn: torch.Tensor, high_res) -> dict[str, torch.Tensor]:
        cfg = self.config
        check_head_inputs(token, sam_btn, high_res, cfg.pi3_dim, cfg.sam_dim, cfg.embed_dim)
        high_res = [t.float() for t in high_res]
        merged, _ = fuse_tokens(self, token, sam_btn)
        fg_mask = self.fg_out(self.fg_upscaling(merged, high_res))
        pooled = merged.mean(dim=(2, 3))
        iou_pred = self.iou_head(pooled)
        conf_pred = torch.sigmoid(self.conf_head(pooled)) * (cfg.conf_max - 1) + 1
        return {"fg_mask": fg_mask, "iou_pred": iou_pred, "conf_pred": conf_pred}
