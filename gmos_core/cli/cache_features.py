"""`gmos cache-features`: precompute frozen Pi3 / SAM 2 features of the training samples (sharded safetensors),
then `gmos train --feature-cache DIR` trains the head from them (see docs/training.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="training YAML (the data.train entries and model)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="cache folder to write")
    parser.add_argument("--passes", type=int, default=1, help="windows drawn per annotated frame (default 1)")
    parser.add_argument("--shard-size", type=int, default=256, help="samples per shard file (default 256)")
    parser.add_argument("--batch-size", type=int, default=4, help="encoder batch size (default 4)")
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16",
                        help="storage dtype of the features (default float16)")
    parser.add_argument("--pi3-weights", default=None, help="official Pi3 weights")
    parser.add_argument("--sam2-checkpoint", default=None, help="official SAM 2 checkpoint")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from gmos_core.cli.train import import_training

    import_training()  # the sam2 wheel ships a top-level 'training' package too
    from training.config import load_config

    overrides = list(args.overrides)
    for key, value in (("pi3_weights", args.pi3_weights), ("sam2_checkpoint", args.sam2_checkpoint),
                       ("device", args.device)):
        if value is not None:
            overrides.append(f"{key}={value}")
    try:
        cfg = load_config(args.config, overrides)
        if cfg.trainable_encoders:
            raise ValueError(f"the config trains encoders {cfg.trainable_encoders}; cached features need frozen "
                             "encoders (set trainable_encoders: [])")
        from training.features import cache_features

        out = cache_features(cfg, args.out, passes=args.passes, shard_size=args.shard_size,
                             batch_size=args.batch_size, dtype=args.dtype, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f"gmos cache-features: {exc}", file=sys.stderr)
        return 2
    print(f"wrote feature cache {out}")
    return 0
