"""The default model's refinement stage: a small U-Net that fuses the GMOS-S head's foreground probability with
the weight-free geometric mode's independent-motion probability and the image, and predicts the moving mask again.

Not part of the official GMOS (the official checkpoints have no such component). It exists because the small
default model's own masks are coarse (the head predicts 64x64 from a 9x16-token Pi3 window) and miss much of each
object, while the geometric mode (gmos_core.geometric) finds more of the moving pixels but also parallax and flow
edges: the two are complementary (averaging them already lifts the validation mtIoU from 0.117 to 0.155, see
docs/default_model.md), and a few thousand CPU steps teach a small network to combine them with the image edges.

Inputs at the refiner's working resolution (the source scaled to ``pixels``, the geometric mode's internal size):
``rgb`` (B, 3, h, w) in [0, 1], ``head_prob`` and ``motion_prob`` (B, 1, h, w) in [0, 1]. Output: logits
(B, 1, h, w). The last layer adds learned multiples of the two input logits (initialised to their plain sum,
the "logit sum" fusion), so training starts from a working fusion and learns corrections.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
import torch.nn.functional as F

PROB_CLAMP = 1e-4  # probabilities are clamped before the logit: exact 0/1 from the geometric mode are common


@dataclass(frozen=True)
class MotionRefinerConfig:
    """``channels``: widths of the U-Net levels (full, 1/2, 1/4, ...); ``pixels``: working resolution (about
    this many pixels, never upscaled; 240x136 for 16:9, the geometric mode's default internal size)."""

    channels: tuple = (8, 16, 32, 48)
    pixels: int = 240 * 136
    groups: int = 4

    def __post_init__(self) -> None:
        chans = tuple(int(c) for c in self.channels)
        if len(chans) < 2 or any(c < 1 for c in chans):
            raise ValueError(f"MotionRefinerConfig.channels must list >= 2 positive widths, got {self.channels}")
        if any(c % self.groups for c in chans):
            raise ValueError(f"MotionRefinerConfig.channels {chans} must all be divisible by groups={self.groups}")
        if self.pixels < 64 * 36:
            raise ValueError(f"MotionRefinerConfig.pixels must be >= {64 * 36}, got {self.pixels}")
        object.__setattr__(self, "channels", chans)

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, values: dict) -> "MotionRefinerConfig":
        unknown = set(values) - {"channels", "pixels", "groups"}
        if unknown:
            raise ValueError(f"refiner_config has unknown keys {sorted(unknown)}; expected channels, pixels, groups")
        return cls(**{k: (tuple(v) if k == "channels" else v) for k, v in values.items()})


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each with GroupNorm and ReLU."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.ReLU(inplace=True))


def prob_logit(prob: torch.Tensor) -> torch.Tensor:
    p = prob.clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)
    return torch.log(p) - torch.log1p(-p)


class MotionRefiner(nn.Module):
    """forward(rgb, head_prob, motion_prob) -> refined moving-foreground logits (B, 1, h, w); any h, w."""

    IN_CHANNELS = 5  # rgb, head logit / 8, motion logit / 8

    def __init__(self, channels=(8, 16, 32, 48), pixels: int = 240 * 136, groups: int = 4) -> None:
        super().__init__()
        self.config = MotionRefinerConfig(tuple(channels), pixels, groups)
        chans = self.config.channels
        self.down = nn.ModuleList()
        cin = self.IN_CHANNELS
        for c in chans:
            self.down.append(ConvBlock(cin, c, groups))
            cin = c
        self.up = nn.ModuleList(ConvBlock(chans[i + 1] + chans[i], chans[i], groups)
                                for i in reversed(range(len(chans) - 1)))
        self.out = nn.Conv2d(chans[0], 1, kernel_size=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # logits = correction + a * head logit + b * motion logit: the plain logit sum to start with
        self.input_weights = nn.Parameter(torch.ones(2))

    def forward(self, rgb: torch.Tensor, head_prob: torch.Tensor, motion_prob: torch.Tensor) -> torch.Tensor:
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise ValueError(f"rgb must be (B, 3, h, w) in [0, 1], got {tuple(rgb.shape)}")
        for name, t in (("head_prob", head_prob), ("motion_prob", motion_prob)):
            if t.shape != (rgb.shape[0], 1, *rgb.shape[2:]):
                raise ValueError(f"{name} must be {(rgb.shape[0], 1, *rgb.shape[2:])}, got {tuple(t.shape)}")
        head_logit, motion_logit = prob_logit(head_prob.float()), prob_logit(motion_prob.float())
        x = torch.cat([rgb.float() - 0.5, head_logit / 8.0, motion_logit / 8.0], dim=1)
        h, w = x.shape[-2:]
        levels = len(self.down)
        multiple = 2 ** (levels - 1)
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        if pad_h or pad_w:  # replicate: a zero border would read as "no evidence" edges
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        correction = self.out(x)[..., :h, :w]
        return correction + self.input_weights[0] * head_logit + self.input_weights[1] * motion_logit
