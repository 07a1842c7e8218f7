"""The trainable GMOS model: Pi3 encoder + SAM 2 image path + head, each frozen or trainable.

``GMOSTrainModel.forward(batch)`` runs what the engine runs at inference (Pi3 over the window, the anchor
frame's Pi3 feature, SAM 2 features of the anchor frame, the head) but with autograd where an encoder is
trainable.  ``forward_cached(batch)`` starts from cached encoder features (frozen encoders).

The SAM 2 image path is :class:`Sam2ImageEncoder`, an ``nn.Module`` holding exactly the predictor modules the
heads use (``image_encoder``, ``sam_mask_decoder.conv_s0/conv_s1``, ``no_mem_embed``) under their predictor
names, so its state_dict loads back into a ``SAM2VideoPredictor`` (``strict=False``) and its outputs equal
``gmos_core.models.Sam2Features.head_inputs`` (tested).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import nn

ENCODER_NAMES = ("pi3", "sam2_image_encoder")


@dataclass
class ModelConfig:
    """Architecture and input geometry of the trained model.

    size: "tiny" (the small configurations: Pi3EncoderConfig.tiny, gmos_core/configs/sam2_tiny.yaml, tiny heads)
    or "full" (the official architecture); ``pi3`` / ``head`` override single config fields.
    """

    variant: str = "proposer"            # proposer | gmos_s
    size: str = "tiny"
    pi3: dict = field(default_factory=dict)
    head: dict = field(default_factory=dict)
    sam2_config: Optional[str] = None    # None: tiny YAML for size tiny, packaged Hiera-L for full
    sam2_image_size: Optional[int] = None  # None: the YAML's image_size (1024 for the official configs)
    pixel_limit: int = 255000            # Pi3 pixel budget
    window_size: int = 5
    anchor: str = "center"               # center | end

    def __post_init__(self) -> None:
        if self.variant not in ("proposer", "gmos_s"):
            raise ValueError(f"model.variant must be 'proposer' or 'gmos_s', got {self.variant!r}")
        if self.size not in ("tiny", "full"):
            raise ValueError(f"model.size must be 'tiny' or 'full', got {self.size!r}")
        if self.anchor not in ("center", "end"):
            raise ValueError(f"model.anchor must be 'center' or 'end', got {self.anchor!r}")
        if self.window_size < 1:
            raise ValueError(f"model.window_size must be >= 1, got {self.window_size}")
        if self.sam2_image_size is not None and (self.sam2_image_size < 64 or self.sam2_image_size % 16):
            raise ValueError(f"model.sam2_image_size must be a multiple of 16 >= 64, got {self.sam2_image_size}")
        if self.pixel_limit < 196:
            raise ValueError(f"model.pixel_limit must be >= 196 (one 14x14 patch), got {self.pixel_limit}")

    @property
    def image_size(self) -> int:
        """SAM 2 input size: ``sam2_image_size``, else the YAML's ``model.image_size`` (1024 when packaged)."""
        if self.sam2_image_size:
            return int(self.sam2_image_size)
        from training.export import yaml_image_size

        return yaml_image_size(self.sam2_config_path())

    @property
    def anchor_position(self) -> int:
        return self.window_size // 2 if self.anchor == "center" else self.window_size - 1

    def sam2_config_path(self) -> str:
        from gmos_core.models.sam2_features import PACKAGED_L_CONFIG, TINY_CONFIG_PATH

        if self.sam2_config:
            return self.sam2_config
        return str(TINY_CONFIG_PATH) if self.size == "tiny" else PACKAGED_L_CONFIG

    def pi3_config(self):
        from gmos_core.models import Pi3EncoderConfig

        base = Pi3EncoderConfig.tiny() if self.size == "tiny" else Pi3EncoderConfig.full()
        return Pi3EncoderConfig(**{**base.to_dict(), **self.pi3})

    def head_config(self):
        from gmos_core.models import GMOSSConfig, ProposerConfig

        cls = ProposerConfig if self.variant == "proposer" else GMOSSConfig
        base = cls.tiny() if self.size == "tiny" else cls.full()
        return cls(**{**base.to_dict(), **self.head})

    def to_dict(self) -> dict:
        return asdict(self)


class Sam2ImageEncoder(nn.Module):
    """SAM 2 image path of the heads, as a trainable module with the predictor's key names."""

    def __init__(self, predictor) -> None:
        super().__init__()
        if predictor.num_feature_levels != 3 or not predictor.use_high_res_features_in_sam:
            raise ValueError("the GMOS heads need a SAM 2 config with 3 feature levels and high-res features")
        self.image_encoder = predictor.image_encoder
        self.sam_mask_decoder = nn.Module()
        self.sam_mask_decoder.conv_s0 = predictor.sam_mask_decoder.conv_s0
        self.sam_mask_decoder.conv_s1 = predictor.sam_mask_decoder.conv_s1
        self.no_mem_embed = predictor.no_mem_embed
        self.add_no_mem_embed = bool(predictor.directly_add_no_mem_embed)
        self.image_size = int(predictor.image_size)

    def forward(self, sam_rgb: torch.Tensor):
        """(B, 3, S, S) normalised -> (sam_btn (B, C, S/16, S/16), [s0 (B, C/8, S/4, S/4), s1 (B, C/4, S/8, S/8)])."""
        fpn = self.image_encoder(sam_rgb)["backbone_fpn"][-3:]
        s0 = self.sam_mask_decoder.conv_s0(fpn[0])
        s1 = self.sam_mask_decoder.conv_s1(fpn[1])
        btn = fpn[2]
        if self.add_no_mem_embed:
            btn = btn + self.no_mem_embed.view(1, -1, 1, 1)
        return btn.float(), [s0.float(), s1.float()]


def build_sam2_image_predictor(cfg: ModelConfig, device: str = "cpu"):
    """A random-weight SAM2VideoPredictor of the configured YAML and input size."""
    from gmos_core.models.sam2_features import build_sam2_predictor

    overrides = [f"++model.image_size={cfg.sam2_image_size}"] if cfg.sam2_image_size else []
    return build_sam2_predictor(cfg.sam2_config_path(), None, device, hydra_overrides=overrides)


class GMOSTrainModel(nn.Module):
    """Pi3 + SAM 2 image path + head.  ``trainable`` names the encoders that get gradients."""

    def __init__(self, cfg: ModelConfig, trainable: tuple = (), *, build_encoders: bool = True) -> None:
        super().__init__()
        from gmos_core.models import GMOSProposer, GMOSS, Pi3Encoder

        bad = [t for t in trainable if t not in ENCODER_NAMES]
        if bad:
            raise ValueError(f"trainable encoders {bad} unknown; expected names from {ENCODER_NAMES}")
        self.cfg = cfg
        self.trainable = tuple(trainable)
        head_cls = GMOSProposer if cfg.variant == "proposer" else GMOSS
        self.head = head_cls(**cfg.head_config().to_dict())
        self.pi3: Optional[nn.Module] = None
        self.sam2_image_encoder: Optional[nn.Module] = None
        if build_encoders:
            self.pi3 = Pi3Encoder(**cfg.pi3_config().to_dict())
            self.sam2_image_encoder = Sam2ImageEncoder(build_sam2_image_predictor(cfg))
            for name in ENCODER_NAMES:
                module = getattr(self, name)
                module.requires_grad_(name in self.trainable)
                if name not in self.trainable:
                    module.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        for name in ENCODER_NAMES:  # frozen encoders stay in eval mode (no dropout / drop-path)
            module = getattr(self, name, None)
            if module is not None and name not in self.trainable:
                module.eval()
        return self

    def encoder_features(self, pi3_frames: torch.Tensor, sam_rgb: torch.Tensor):
        """pi3_frames (B, N, 3, Hp, Wp) in [0,1]; sam_rgb (B, 3, S, S) normalised ->
        (token (B, h, w, C), sam_btn, high_res) of the anchor frame."""
        pos = self.cfg.anchor_position
        with torch.set_grad_enabled(torch.is_grad_enabled() and "pi3" in self.trainable):
            token = self.pi3(pi3_frames)[:, pos].float()
        with torch.set_grad_enabled(torch.is_grad_enabled() and "sam2_image_encoder" in self.trainable):
            sam_btn, high_res = self.sam2_image_encoder(sam_rgb)
        return token, sam_btn, high_res

    def forward(self, batch: dict) -> dict:
        if "token" in batch:  # cached features
            token, sam_btn, high_res = batch["token"], batch["sam_btn"], [batch["s0"], batch["s1"]]
        else:
            pi3_frames = batch["pi3"]
            if pi3_frames.dtype == torch.uint8:
                pi3_frames = pi3_frames.float().div_(255)
            token, sam_btn, high_res = self.encoder_features(pi3_frames, batch["sam"])
        return self.head(token.float(), sam_btn.float(), [h.float() for h in high_res])

    def component_state_dicts(self) -> dict:
        """{component: state_dict} as exported (``gmos_core.weights.metadata`` component names)."""
        out = {"head": self.head.state_dict()}
        if self.pi3 is not None:
            out["pi3"] = self.pi3.state_dict()
        if self.sam2_image_encoder is not None:
            out["sam2_image_encoder"] = self.sam2_image_encoder.state_dict()
        return out
