"""Pure ``nn.Module``s whose state_dicts match the official GMOS checkpoints.

* :class:`Pi3Encoder` (+ :class:`Pi3EncoderConfig`): frozen geometric encoder.
* :class:`GMOSProposer` / :class:`GMOSS`: the trainable heads (fp32).
* :class:`Sam2Features` / :func:`build_sam2_predictor`: SAM 2.1 feature extraction on the PyPI ``sam2``.
* factories ``build_pi3_encoder(size)``, ``build_proposer(size)``, ``build_gmos_s(size)`` with
  ``size in ('full', 'tiny')``.

Runtime logic (windows, caches, tracking) lives in the engine and propagator, not here.
"""
from __future__ import annotations

from gmos_core.models.gmos_s import GMOSS, GMOSSConfig
from gmos_core.models.pi3_cache import Pi3TokenCache, encode_pi3_with_cache
from gmos_core.models.pi3_encoder import Pi3Encoder, Pi3EncoderConfig
from gmos_core.models.precision import encoder_autocast, encoder_autocast_dtype
from gmos_core.models.proposer import GMOSProposer, ProposerConfig
from gmos_core.models.sam2_features import (
    Sam2Features,
    build_sam2_predictor,
    install_memory_dtype_shim,
    remove_memory_dtype_shim,
)

MODEL_SIZES = ("full", "tiny")


def _check_size(size: str) -> str:
    if size not in MODEL_SIZES:
        raise ValueError(f"model size must be one of {MODEL_SIZES}, got {size!r}")
    return size


def build_pi3_encoder(size: str = "full", **overrides) -> Pi3Encoder:
    """Randomly initialised Pi3 encoder of the named size (load weights with gmos_core.weights)."""
    cfg = Pi3EncoderConfig.full() if _check_size(size) == "full" else Pi3EncoderConfig.tiny()
    return Pi3Encoder(**{**cfg.to_dict(), **overrides})


def build_proposer(size: str = "full", **overrides) -> GMOSProposer:
    cfg = ProposerConfig.full() if _check_size(size) == "full" else ProposerConfig.tiny()
    return GMOSProposer(**{**cfg.to_dict(), **overrides})


def build_gmos_s(size: str = "full", **overrides) -> GMOSS:
    cfg = GMOSSConfig.full() if _check_size(size) == "full" else GMOSSConfig.tiny()
    return GMOSS(**{**cfg.to_dict(), **overrides})


__all__ = [
    "GMOSS",
    "GMOSSConfig",
    "GMOSProposer",
    "ProposerConfig",
    "Pi3Encoder",
    "Pi3EncoderConfig",
    "Pi3TokenCache",
    "encode_pi3_with_cache",
    "Sam2Features",
    "build_sam2_predictor",
    "install_memory_dtype_shim",
    "remove_memory_dtype_shim",
    "encoder_autocast",
    "encoder_autocast_dtype",
    "build_pi3_encoder",
    "build_proposer",
    "build_gmos_s",
    "MODEL_SIZES",
]
