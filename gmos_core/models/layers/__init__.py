"""Small reusable layers shared by the Pi3 encoder and the GMOS heads.

Every layer keeps the official parameter names (they become state_dict keys), so the modules built from
them load the official checkpoints unchanged.
"""
from gmos_core.models.layers.attention import Attention, FusedQKVAttention
from gmos_core.models.layers.mlp import MLP, ViTMlp
from gmos_core.models.layers.norm import LayerNorm2d, LayerScale
from gmos_core.models.layers.projector import TokenProjector
from gmos_core.models.layers.rope import RoPE2D, grid_positions
from gmos_core.models.layers.transformer import (
    SelfAttentionBlock,
    TransformerEncoder,
    TwoWayAttentionBlock,
    TwoWayTransformer,
    ViTBlock,
)
from gmos_core.models.layers.upsampling import MaskUpsampler, UpSampling

__all__ = [
    "Attention",
    "FusedQKVAttention",
    "MLP",
    "ViTMlp",
    "LayerNorm2d",
    "LayerScale",
    "TokenProjector",
    "RoPE2D",
    "grid_positions",
    "SelfAttentionBlock",
    "TransformerEncoder",
    "TwoWayAttentionBlock",
    "TwoWayTransformer",
    "ViTBlock",
    "MaskUpsampler",
    "UpSampling",
]
