"""Pi3 geometric encoder (Pi3 minus its heads): DINOv2 ViT-L/14-reg + 36 alternating frame/global
RoPE blocks over a window of N frames. State_dict keys are exactly those of the official ``Pi3Encoder``
(a subset of upstream Pi3's ``model.safetensors``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from gmos_core.models.dinov2 import DinoV2
from gmos_core.models.layers.rope import RoPE2D, grid_positions
from gmos_core.models.layers.transformer import ViTBlock

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Pi3EncoderConfig:
    """Architecture of the Pi3 encoder. Defaults = the official full size (``.full()``)."""

    enc_embed_dim: int = 1024
    enc_depth: int = 24
    enc_num_heads: int = 16
    enc_mlp_ratio: float = 4.0
    enc_num_register_tokens: int = 4
    patch_size: int = 14
    img_size: int = 518
    dec_embed_dim: int = 1024
    dec_depth: int = 36
    dec_num_heads: int = 16
    dec_mlp_ratio: float = 4.0
    dec_num_register_tokens: int = 5
    rope_freq: float = 100.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f"Pi3EncoderConfig.{f.name} must be positive, got {getattr(self, f.name)}")
        if self.enc_embed_dim != self.dec_embed_dim:
            raise ValueError("Pi3 decoder width must equal the encoder width "
                             f"(got enc {self.enc_embed_dim}, dec {self.dec_embed_dim})")
        if self.dec_depth % 2:
            raise ValueError(f"dec_depth must be even (frame/global pairs), got {self.dec_depth}")
        for name, dim, heads in (("enc", self.enc_embed_dim, self.enc_num_heads),
                                 ("dec", self.dec_embed_dim, self.dec_num_heads)):
            if dim % heads:
                raise ValueError(f"{name}_embed_dim {dim} not divisible by {name}_num_heads {heads}")
        if (self.dec_embed_dim // self.dec_num_heads) % 4:
            raise ValueError("decoder head dim must be divisible by 4 for 2-D RoPE")

    @classmethod
    def full(cls) -> "Pi3EncoderConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "Pi3EncoderConfig":
        """The reference tiny configuration (fixtures ``pi3_tiny/config.json``): width 64, 2+4 blocks, 4 heads."""
        return cls(enc_embed_dim=64, enc_depth=2, enc_num_heads=4, dec_embed_dim=64, dec_depth=4, dec_num_heads=4)

    def to_dict(self) -> dict:
        return asdict(self)


class Pi3Encoder(nn.Module):
    """Pi3 encoder. ``forward(imgs (B,N,3,H,W) in [0,1]) -> (B,N,H/14,W/14,C)``.

    For sliding windows use ``encode_frames`` once per frame (what a per-frame cache stores) and ``decode``
    per window; ``forward`` == ``decode(encode_frames(...))``.
    The official ``pos_type``/``decoder_size`` arguments are accepted for compatibility (only
    ``'rope100'``/``'large'`` exist in the release).
    """

    def __init__(self, pos_type: str = "rope100", decoder_size: str = "large", **config) -> None:
        super().__init__()
        if pos_type != "rope100" or decoder_size != "large":
            raise ValueError(f"only pos_type='rope100', decoder_size='large' are supported "
                             f"(got {pos_type!r}, {decoder_size!r})")
        self.config = Pi3EncoderConfig(**config)
        cfg = self.config
        self.patch_size = cfg.patch_size
        self.patch_start_idx = cfg.dec_num_register_tokens
        # Parameter first, then buffers, then children: the official state_dict order.
        self.register_token = nn.Parameter(torch.zeros(1, 1, cfg.dec_num_register_tokens, cfg.dec_embed_dim))
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.encoder = DinoV2(embed_dim=cfg.enc_embed_dim, depth=cfg.enc_depth, num_heads=cfg.enc_num_heads,
                              mlp_ratio=cfg.enc_mlp_ratio, patch_size=cfg.patch_size, img_size=cfg.img_size,
                              num_register_tokens=cfg.enc_num_register_tokens, init_values=1.0)
        self.rope = RoPE2D(cfg.rope_freq)
        self.decoder = nn.ModuleList(
            ViTBlock(cfg.dec_embed_dim, cfg.dec_num_heads, cfg.dec_mlp_ratio, norm_eps=1e-6, init_values=0.01,
                     qk_norm=True, qk_norm_eps=1e-5, rope=self.rope)
            for _ in range(cfg.dec_depth))

    @property
    def embed_dim(self) -> int:
        return self.config.dec_embed_dim

    def _check_images(self, imgs: torch.Tensor, ndim: int, layout: str) -> None:
        if imgs.ndim != ndim or imgs.shape[-3] != 3:
            raise ValueError(f"expected images {layout} with 3 channels, got shape {tuple(imgs.shape)}")
        h, w = imgs.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} must be a multiple of {self.patch_size} "
                             "(use gmos_core.preprocess.pi3_target_size)")

    def normalize(self, imgs: torch.Tensor) -> torch.Tensor:
        """[0,1] RGB -> ImageNet-normalised."""
        return (imgs - self.image_mean) / self.image_std

    def encode_frames(self, imgs: torch.Tensor) -> torch.Tensor:
        """(M, 3, H, W) in [0,1] -> DINOv2 normed patch tokens (M, h*w, C) (what the per-frame cache stores)."""
        self._check_images(imgs, 4, "(M, 3, H, W)")
        return self.encoder(self.normalize(imgs))

    def decode(self, hidden: torch.Tensor, N: int, H: int, W: int) -> torch.Tensor:
        """hidden (B*N, h*w, C) -> (B, N, h, w, C): even blocks attend within a frame, odd blocks across the
        window; register tokens at position (0,0), patches at (y+1, x+1); no final norm."""
        h, w = H // self.patch_size, W // self.patch_size
        if hidden.ndim != 3 or hidden.shape[1] != h * w or hidden.shape[0] % N:
            raise ValueError(f"decode expects hidden (B*N, {h}*{w}, C) for N={N}, H={H}, W={W}; "
                             f"got {tuple(hidden.shape)}")
        bn, hw, c = hidden.shape
        b = bn // N
        registers = self.register_token.expand(b, N, -1, -1).reshape(bn, self.patch_start_idx, c)
        hidden = torch.cat([registers.to(hidden.dtype), hidden], dim=1)
        p = hidden.shape[1]
        pos = grid_positions(bn, h, w, hidden.device) + 1
        pos = torch.cat([torch.zeros(bn, self.patch_start_idx, 2, dtype=pos.dtype, device=pos.device), pos], dim=1)
        for i, block in enumerate(self.decoder):
            if i % 2 == 0:  # frame attention
                pos = pos.reshape(bn, p, 2)
                hidden = hidden.reshape(bn, p, c)
            else:  # global attention over the window
                pos = pos.reshape(b, N * p, 2)
                hidden = hidden.reshape(b, N * p, c)
            hidden = block(hidden, pos)
        hidden = hidden.reshape(b, N, p, c)[:, :, self.patch_start_idx:]
        return hidden.reshape(b, N, h, w, c)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        self._check_images(imgs, 5, "(B, N, 3, H, W)")
        b, n, _, height, width = imgs.shape
        hidden = self.encode_frames(imgs.reshape(b * n, 3, height, width))
        return self.decode(hidden, n, height, width)
