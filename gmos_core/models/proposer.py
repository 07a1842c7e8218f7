"""GMOSProposer: per-frame proposer predicting up to ``num_obj_tokens`` masks with motion/IoU scores."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from gmos_core.models.heads_common import HEAD_ROPE_BASE, check_head_inputs, fuse_tokens, validate_head_dims
from gmos_core.models.layers import MLP, RoPE2D, TokenProjector, TransformerEncoder, TwoWayTransformer, UpSampling


@dataclass(frozen=True)
class ProposerConfig:
    """Defaults = the official ``GMOSProposer()`` (211 keys). ``pi3_dim``/``sam_dim``/``mlp_dim`` are extra
    knobs (official values hard-coded) so tiny heads can sit on tiny encoders."""

    embed_dim: int = 256
    encoder_depth: int = 3
    decoder_depth: int = 3
    num_heads: int = 8
    num_obj_tokens: int = 100
    conf_max: float = 5.0
    pi3_dim: int = 1024
    sam_dim: int = 256
    mlp_dim: int = 2048
    rope_base: float = HEAD_ROPE_BASE

    def __post_init__(self) -> None:
        validate_head_dims(self.embed_dim, self.num_heads, self.pi3_dim, self.sam_dim, self.mlp_dim,
                           cross_attention=True)
        for name in ("encoder_depth", "decoder_depth", "num_obj_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"ProposerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.conf_max <= 1:
            raise ValueError(f"conf_max must be > 1, got {self.conf_max}")

    @classmethod
    def full(cls) -> "ProposerConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "ProposerConfig":
        """Matches the tiny SAM 2 (d_model 32) and the tiny Pi3 (width 64)."""
        return cls(embed_dim=32, encoder_depth=1, decoder_depth=2, num_heads=2, num_obj_tokens=10,
                   pi3_dim=64, sam_dim=32, mlp_dim=64)

    def to_dict(self) -> dict:
        return asdict(self)


class GMOSProposer(nn.Module):
    """forward(token (B,h,w,pi3_dim), sam_btn (B,sam_dim,64,64), high_res [s0, s1]) ->
    {mask (B,Q,256,256) logits, motion_logits (B,Q,1), iou_pred (B,Q,1), conf_pred (B,Q,1)}; fp32."""

    def __init__(self, embed_dim: int = 256, encoder_depth: int = 3, decoder_depth: int = 3, num_heads: int = 8,
                 num_obj_tokens: int = 100, conf_max: float = 5, pi3_dim: int = 1024, sam_dim: int = 256,
                 mlp_dim: int = 2048, rope_base: float = HEAD_ROPE_BASE) -> None:
        super().__init__()
        self.config = ProposerConfig(embed_dim, encoder_depth, decoder_depth, num_heads, num_obj_tokens,
                                     float(conf_max), pi3_dim, sam_dim, mlp_dim, rope_base)
        # Own parameters first (official state_dict order: obj_token, motion_bias, motion_weight).
        self.obj_token = nn.Parameter(torch.randn(1, num_obj_tokens, embed_dim) * 1e-6)
        self.motion_bias = nn.Parameter(torch.tensor(1.0))  # 0-dim, as in the official checkpoint
        self.motion_weight = nn.Parameter(torch.randn(1) * 0.01)
        self.rope = RoPE2D(rope_base)
        self.pi3_projector = TokenProjector(pi3_dim, embed_dim, p_drop=0.2)
        self.sam_projector = TokenProjector(sam_dim, embed_dim)
        self.merge_projector = TokenProjector(2 * embed_dim, embed_dim)
        self.trans_encoder = TransformerEncoder(encoder_depth, embed_dim, num_heads, mlp_dim, self.rope)
        self.trans_decoder = TwoWayTransformer(decoder_depth, embed_dim, num_heads, mlp_dim, self.rope)
        self.upsampling = UpSampling(embed_dim, num_obj_tokens)
        self.motion_head = MLP(embed_dim, embed_dim, 1, 3)
        self.conf_head = MLP(embed_dim, embed_dim, 1, 3)
        self.iou_head = MLP(embed_dim, embed_dim, 1, 3)

    def forward(self, token: torch.Tensor, sam_btn: torch.Tensor, high_res) -> dict[str, torch.Tensor]:
        cfg = self.config
        check_head_inputs(token, sam_btn, high_res, cfg.pi3_dim, cfg.sam_dim, cfg.embed_dim)
        high_res = [t.float() for t in high_res]
        merged, positions = fuse_tokens(self, token, sam_btn)
        b = merged.shape[0]
        queries, dense = self.trans_decoder(merged, positions, self.obj_token.expand(b, -1, -1))
        mask = self.upsampling(dense, queries, high_res)
        motion_logits = self.motion_head(queries)
        motion_factor = torch.sigmoid(motion_logits)
        # Motion-regulated masks: a per-object additive logit offset weight * (sigmoid(motion) - bias).
        mask = mask + (self.motion_weight * (motion_factor - self.motion_bias)).unsqueeze(-1)
        iou_pred = self.iou_head(queries)
        conf_pred = torch.sigmoid(self.conf_head(queries)) * (cfg.conf_max - 1) + 1
        return {"mask": mask, "motion_logits": motion_logits, "iou_pred": iou_pred, "conf_pred": conf_pred}
