"""The trained default GMOS model's GMOS-S part ("gmos-default-s3"; the shipped file "gmos-default-s4" adds a
refinement stage, gmos_core/models/motion_refiner.py): its architecture, built from the real GMOS modules.

Same structure as the official GMOS-S pipeline, in a configuration small enough to train from scratch on
2 CPU cores and to run in real time on them:

* ``Pi3Encoder`` (DINOv2-style patch encoder + alternating frame/global RoPE blocks over the 5-frame window)
  at a small pixel budget (``PIXEL_LIMIT``, 224x126 for a 16:9 video), width 96, 4 + 6 blocks;
* the SAM 2 Hiera image encoder + FPN neck (``sam2`` package) from ``gmos_core/configs/sam2_default.yaml``
  at image size 256 (bottleneck 16x16, skips 32x32 / 64x64);
* the ``GMOSS`` head (fg/bg logits at 64x64) with embed_dim 64.

``DefaultGMOS`` is the training view: it runs the three parts with gradients (the engine runs the same
modules under ``inference_mode``). ``sam2_image_state_dict`` / ``load_sam2_image_state_dict`` define the
``sam2_image_encoder`` component of the checkpoint: the predictor keys the image features depend on
(``image_encoder.*``, ``sam_mask_decoder.conv_s0/conv_s1.*``, ``no_mem_embed``).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# One definition of the ``sam2_image_encoder`` component (its key prefixes and how it is read out of / loaded into a
# predictor), shared with the engine's loader.
from gmos_core.weights.default_model import (SAM2_IMAGE_KEY_PREFIXES, load_sam2_image_encoder,
                                             sam2_image_state_dict)

NAME = "gmos-default-s3"  # s2 + CPU training (training/configs/default_cpu_continue.yaml); s1 (width 64, 3 + 4 blocks) was the first, weaker file
# The shipped file: s3's tensors unchanged + the refinement stage (gmos_core/models/motion_refiner.py) trained on
# them by training/refiner_train.py (training/configs/default_refiner.yaml names it).
SHIPPED_NAME = "gmos-default-s4"
VARIANT = "gmos_s"
ANCHOR = "center"
WINDOW_SIZE = 5
WINDOW_SECONDS = 0.5  # 5 frames at the official stride (fps/8): frames t-2s..t+2s span ~0.5 s at 8 Hz sampling
PIXEL_LIMIT = 30_000  # Pi3 input 126x224 for 16:9 video (9x16 patches of 14 px)
SAM2_IMAGE_SIZE = 256
SAM2_CONFIG_NAME = "sam2_default.yaml"
SAM2_CONFIG_PATH = Path(__file__).resolve().parents[1] / "gmos_core" / "configs" / SAM2_CONFIG_NAME

# Chosen among four sizes trained side by side (docs/default_model.md, "Choosing the size"): the wider, deeper Pi3
# learned the most per GPU-minute at the same step budget.
PI3_CONFIG = dict(enc_embed_dim=96, enc_depth=4, enc_num_heads=6, img_size=224,
                  dec_embed_dim=96, dec_depth=6, dec_num_heads=6)
HEAD_CONFIG = dict(embed_dim=64, encoder_depth=2, num_heads=4, pi3_dim=96, sam_dim=64, mlp_dim=128)
# The instance variant (``variant: proposer`` in a training config): the GMOSProposer head at the same width, with
# 10 object queries (the generator has at most 3 moving objects per clip). Experimental: not the shipped file.
PROPOSER_HEAD_CONFIG = dict(embed_dim=64, encoder_depth=2, decoder_depth=2, num_heads=4, num_obj_tokens=10,
                            pi3_dim=96, sam_dim=64, mlp_dim=128)
VARIANTS = ("gmos_s", "proposer")


def build_pi3(config: dict | None = None):
    from gmos_core.models import Pi3Encoder

    return Pi3Encoder(**(config or PI3_CONFIG))


def default_head_config(variant: str = VARIANT) -> dict:
    if variant not in VARIANTS:
        raise ValueError(f"default-model variant {variant!r}: expected one of {VARIANTS}")
    return dict(HEAD_CONFIG if variant == "gmos_s" else PROPOSER_HEAD_CONFIG)


def build_head(config: dict | None = None, variant: str = VARIANT):
    from gmos_core.models.gmos_s import GMOSS
    from gmos_core.models.proposer import GMOSProposer

    cls = GMOSS if variant == "gmos_s" else GMOSProposer
    return cls(**(config or default_head_config(variant)))


def build_sam2(config_path: str | Path = SAM2_CONFIG_PATH, device: str = "cpu"):
    from gmos_core.models.sam2_features import build_sam2_predictor

    return build_sam2_predictor(str(config_path), None, device=device)


def load_sam2_image_state_dict(predictor, state: dict[str, torch.Tensor]) -> None:
    """Load the ``sam2_image_encoder`` component strictly for its own keys (the rest of the predictor —
    memory, prompt encoder, mask decoder — is unused by the default model and stays as built); ValueError
    (CheckpointFormatError) names missing, unexpected and misshaped keys."""
    load_sam2_image_encoder(predictor, state, "sam2_image_encoder component")


class DefaultGMOS(nn.Module):
    """Pi3 + SAM 2 image encoder + a GMOS head (GMOS-S, or the proposer with ``variant="proposer"``),
    differentiable end to end (training view).

    forward(pi3_imgs (B,N,3,Hp,Wp) in [0,1], sam_imgs (B,3,S,S) SAM-normalised of the anchor frame)
    -> the head's outputs for the anchor frame (GMOS-S: {fg_mask (B,1,S/4,S/4) logits, iou_pred, conf_pred};
    proposer: {mask (B,Q,S/4,S/4) logits, motion_logits, iou_pred, conf_pred}).
    """

    def __init__(self, pi3=None, predictor=None, head=None, anchor: str = ANCHOR,
                 pi3_config: dict | None = None, head_config: dict | None = None, variant: str = VARIANT) -> None:
        super().__init__()
        self.pi3 = pi3 if pi3 is not None else build_pi3(pi3_config)
        self.sam2 = predictor if predictor is not None else build_sam2()
        self.head = head if head is not None else build_head(head_config, variant)
        self.anchor = anchor
        for name, p in self.sam2.named_parameters():
            p.requires_grad_(name.startswith(SAM2_IMAGE_KEY_PREFIXES))

    def sam_features(self, sam_imgs: torch.Tensor):
        """The head inputs exactly as ``gmos_core.models.Sam2Features.head_inputs`` computes them."""
        predictor = self.sam2
        backbone_out = predictor.forward_image(sam_imgs)
        _, vision_feats, _, feat_sizes = predictor._prepare_backbone_features(backbone_out)
        if predictor.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + predictor.no_mem_embed
        b = vision_feats[-1].shape[1]
        feats = [f.permute(1, 2, 0).reshape(b, -1, *s) for f, s in zip(vision_feats, feat_sizes)]
        return feats[-1], feats[:-1]

    def forward(self, pi3_imgs: torch.Tensor, sam_imgs: torch.Tensor) -> dict[str, torch.Tensor]:
        b, n = pi3_imgs.shape[:2]
        position = n // 2 if self.anchor == "center" else n - 1
        tokens = self.pi3(pi3_imgs)[:, position]
        sam_btn, high_res = self.sam_features(sam_imgs)
        return self.head(tokens, sam_btn, high_res)

    def component_state_dicts(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"pi3": self.pi3.state_dict(), "sam2_image_encoder": sam2_image_state_dict(self.sam2),
                "head": self.head.state_dict()}


def load_checkpoint(path: str | Path) -> tuple["DefaultGMOS", object]:
    """A default-model file -> (DefaultGMOS with its weights, its CheckpointMetadata), built by the engine's own
    loader (``build_gmos_format_models``: sizes from the metadata, strict key checks), so experiments with other
    sizes load too."""
    from gmos_core.weights.default_model import build_gmos_format_models

    pi3, head, predictor, meta, _ = build_gmos_format_models(path)
    return DefaultGMOS(pi3=pi3, predictor=predictor, head=head), meta


def calibration_offset(path: str | Path) -> float:
    """The decision-threshold offset folded into ``head.fg_out.bias`` (metadata ``calibration``), 0 if none."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        record = (handle.metadata() or {}).get("calibration")
    return float(json.loads(record)["head.fg_out.bias offset"]) if record else 0.0
