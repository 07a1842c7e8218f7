"""Loading and converting the official weight files (safetensors or ``torch.save`` pickles).

Every key a model needs must be found with the right shape; otherwise :class:`WeightLoadError` names
the offending keys (the official loaders use ``strict=False`` and would silently keep random layers).
Pickles are read with ``weights_only=True``; full unpickling (which can execute code) only with
``allow_unsafe_pickle=True``.
"""
from gmos_core.weights.loading import (
    PI3_IGNORED_PREFIXES,
    UnsafeCheckpointError,
    WeightLoadError,
    check_fit,
    extract_state_dict,
    load_gmos_s,
    load_into,
    load_pi3_encoder,
    load_proposer,
    load_sam2_predictor_weights,
    load_state_dict_file,
    save_safetensors,
)


def build_sam2_predictor(*args, **kwargs):
    """See :func:`gmos_core.models.sam2_features.build_sam2_predictor` (re-exported here)."""
    from gmos_core.models.sam2_features import build_sam2_predictor as _build

    return _build(*args, **kwargs)


__all__ = [
    "PI3_IGNORED_PREFIXES",
    "UnsafeCheckpointError",
    "WeightLoadError",
    "check_fit",
    "build_sam2_predictor",
    "extract_state_dict",
    "load_gmos_s",
    "load_into",
    "load_pi3_encoder",
    "load_proposer",
    "load_sam2_predictor_weights",
    "load_state_dict_file",
    "save_safetensors",
]
