"""NodeParams → a StreamingEngine (what the node and replay call on activate)."""
from __future__ import annotations

from typing import Any

from .params import NodeParams

DEFAULT_PIXEL_LIMIT = 255_000  # the paper's budget: models that do not state their own (official weights)


def engine_config(params: NodeParams) -> Any:
    """The EngineConfig the node's parameters describe (validated by EngineConfig itself)."""
    from gmos_core.engine.config import EngineConfig

    return EngineConfig(
        mode=params.mode,
        fps=params.fps or None,
        stride=params.stride or None,
        window_size=params.window_size,
        pixel_limit=params.pixel_limit or DEFAULT_PIXEL_LIMIT,  # 0: the model's own, set in build_engine
        device=params.device,
        precision=params.precision,
        batch_size=1,  # lowest latency: one segmented frame at a time
        on_discontinuity="reset",  # NodeCore resets first (with a warning); this is the safety net
        tracker=params.tracker,
    )


def build_engine(params: NodeParams) -> Any:
    """Build the models and the streaming engine: the official weights (all three files), a GMOS-format
    checkpoint given alone, the tiny random test model (``tiny_random_model``: meaningless outputs), or with no
    weight file at all the shipped default model.

    The window anchor comes from the model (a property of its training). ``pixel_limit`` 0 (the default)
    means the model's own budget (the default model's metadata; 255000 for the official weights). Missing weight
    files raise FileNotFoundError naming the file.
    """
    import dataclasses

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
    changes: dict[str, Any] = {"anchor": getattr(models, "anchor", None) or config.anchor}
    own_budget = getattr(models, "pixel_limit", None)
    if own_budget and params.pixel_limit == 0:
        changes["pixel_limit"] = own_budget
    from gmos_core.export.runtime import accelerate_models, warm_up

    models = accelerate_models(models, params)  # TensorRT engines with an engine_cache_dir, else PyTorch (docs/gpu.md)
    engine = StreamingEngine(dataclasses.replace(config, **changes), models)
    warm_up(engine, params)  # warmup_frames synthetic frames at activate, then a fresh stream
    return engine
