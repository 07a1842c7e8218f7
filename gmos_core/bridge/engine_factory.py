"""NodeParams → a StreamingEngine (what the node and replay call on activate)."""
from __future__ import annotations

from typing import Any

from .params import NodeParams


def engine_config(params: NodeParams) -> Any:
    """The EngineConfig the node's parameters describe (validated by EngineConfig itself)."""
    from gmos_core.engine.config import EngineConfig

    return EngineConfig(
        mode=params.mode,
        fps=params.fps or None,
        stride=params.stride or None,
        window_size=params.window_size,
        pixel_limit=params.pixel_limit,
        device=params.device,
        precision=params.precision,
        batch_size=1,  # lowest latency: one segmented frame at a time
        on_discontinuity="reset",  # NodeCore resets first (with a warning); this is the safety net
    )


def build_engine(params: NodeParams) -> Any:
    """Build the models (official weights, or the tiny random test model) and the streaming engine.

    Missing weight files raise FileNotFoundError naming the file; with ``tiny_random_model`` every
    weight path may be empty and the outputs are meaningless (pipeline tests only).
    """
    from gmos_core.engine.models import WeightPaths, build_engine_models
    from gmos_core.engine.streaming import StreamingEngine

    config = engine_config(params)
    weights = WeightPaths(
        pi3=params.pi3_weights or None,
        sam2=params.sam2_checkpoint or None,
        head=params.head_weights or None,
        sam2_config=params.sam2_config or None,
    )
    size = "tiny" if params.tiny_random_model else "full"
    models = build_engine_models(config, size=size, weights=weights, allow_random=params.tiny_random_model)
    return StreamingEngine(config, models)
