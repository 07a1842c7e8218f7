"""SAM 2 video-predictor based tracking of GMOS proposals.

* :func:`run_two_stage` — the official two-stage offline procedure (``mos-i`` and ``mos`` label maps).
* :class:`OnlinePropagator` — causal, streaming tracking with bounded memory (MOS-I on a live stream).
* :class:`GMOSVideoPredictor` — PyPI ``SAM2VideoPredictor`` + the per-object IoU outputs GMOS needs.
* :class:`PropagatorConfig` — the official constants and the streaming caps.

Heavy imports (torch, sam2) happen when a name is first used, so ``import gmos_core.propagator`` is cheap.
"""
from __future__ import annotations

from importlib import import_module

from .config import PropagatorConfig, PropagatorConfigError

_LAZY = {
    "GMOSVideoPredictor": ".predictor",
    "as_gmos_predictor": ".predictor",
    "install_fp32_memory_shim": ".predictor",
    "init_state_from_features": ".predictor",
    "load_sam2_video_predictor": ".predictor",
    "MissingFrameFeaturesError": ".predictor",
    "run_two_stage": ".two_stage",
    "TwoStageResult": ".two_stage",
    "StageResult": ".two_stage",
    "OnlinePropagator": ".online",
    "OnlineFrameOutput": ".online",
    "FrameProposals": ".online",
    "build_propagator_inputs": ".inputs",
    "select_start_frame": ".inputs",
    "PropagatorInputs": ".inputs",
    "encode_video_features": ".features",
    "sam2_image_tensor": ".features",
}

__all__ = ["PropagatorConfig", "PropagatorConfigError", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
