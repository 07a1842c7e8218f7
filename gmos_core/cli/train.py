"""`gmos train`: train the GMOS proposer or GMOS-S head (and, for small configurations, the encoders).

    gmos train --config training/configs/tiny_synthetic.yaml --output-dir runs/tiny
    torchrun --nproc_per_node 2 -m training.trainer --config cfg.yaml      # DistributedDataParallel

See docs/training.md. Options override the YAML; ``--set key.sub=value`` overrides any config field.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def import_training():
    """Import this project's ``training`` package.

    The PyPI ``sam2`` 1.1.0 wheel also installs a top-level package named ``training`` (SAM 2's own training
    code) into site-packages, which comes before an editable checkout on ``sys.path`` when ``gmos`` runs as a
    console script.  If that one was found, put the checkout holding ``gmos_core`` first and import again.
    """
    import importlib

    root = Path(__file__).resolve().parents[2]
    module = importlib.import_module("training")
    if (Path(module.__file__).resolve().parent / "synthetic.py").is_file():
        return module
    if not (root / "training" / "synthetic.py").is_file():
        raise ImportError(f"the GMOS training package is not importable: 'training' resolves to {module.__file__} "
                          "(the sam2 wheel's own training code); install GMOS from a source checkout with "
                          "pip install -e '.[training]'")
    for name in [n for n in sys.modules if n == "training" or n.startswith("training.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    return importlib.import_module("training")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="training YAML (training/configs/*.yaml); "
                        "default: the paper's defaults (proposer, synthetic data)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set optim.lr=3e-4 --set model.anchor=end (repeatable)")
    parser.add_argument("--output-dir", type=Path, default=None, help="run folder: logs, checkpoints, export")
    parser.add_argument("--variant", choices=("proposer", "gmos_s"), default=None, help="head to train")
    parser.add_argument("--anchor", choices=("center", "end"), default=None,
                        help="window anchor: center (official) or end (zero look-ahead)")
    parser.add_argument("--trainable", nargs="*", choices=("pi3", "sam2_image_encoder"), default=None,
                        help="encoders to train too (paper: none; tiny models: both)")
    parser.add_argument("--pi3-weights", default=None, help="official Pi3 weights (frozen encoder)")
    parser.add_argument("--sam2-checkpoint", default=None, help="official SAM 2 checkpoint (frozen encoder)")
    parser.add_argument("--head-weights", default=None, help="initialise the head from this file (fine-tuning)")
    parser.add_argument("--feature-cache", default=None, help="train the head from a `gmos cache-features` folder")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=None,
                        help="autocast dtype (auto: bf16/fp16 on CUDA, fp32 on CPU)")
    parser.add_argument("--max-steps", type=int, default=None, help="optimizer steps (optim.max_steps)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--no-resume", action="store_true", help="start over even if OUTPUT_DIR has a checkpoint")
    parser.add_argument("--export", type=Path, default=None,
                        help="exported model file (default OUTPUT_DIR/model.safetensors)")
    parser.add_argument("--name", default=None, help="model name written into the export's metadata")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _overrides(args) -> list[str]:
    out = list(args.overrides)
    simple = {"output_dir": args.output_dir, "model.variant": args.variant, "model.anchor": args.anchor,
              "pi3_weights": args.pi3_weights, "sam2_checkpoint": args.sam2_checkpoint,
              "head_weights": args.head_weights, "data.feature_cache": args.feature_cache, "device": args.device,
              "precision": args.precision, "optim.max_steps": args.max_steps, "seed": args.seed,
              "threads": args.threads, "name": args.name}
    for key, value in simple.items():
        if value is not None:
            out.append(f"{key}={value}")
    if args.trainable is not None:
        out.append(f"trainable_encoders=[{','.join(args.trainable)}]")
    return out


def run(args) -> int:
    import_training()
    from training.config import load_config

    try:
        cfg = load_config(args.config, _overrides(args))
    except (ValueError, TypeError) as exc:
        print(f"gmos train: {exc}", file=sys.stderr)
        return 2
    from training.trainer import Trainer

    command = "gmos train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["train"] else \
        " ".join(shlex.quote(a) for a in sys.argv)
    try:
        trainer = Trainer(cfg, resume=not args.no_resume, progress=not args.no_progress, command=command)
    except (ValueError, FileNotFoundError) as exc:
        print(f"gmos train: {exc}", file=sys.stderr)
        return 2
    try:
        summary = trainer.train()
        export = trainer.export(args.export or Path(cfg.output_dir) / "model.safetensors")
    finally:
        trainer.close()
    if trainer.is_main:
        print(f"trained {summary['steps']} steps; loss {summary['first_loss']} -> {summary['last_loss']}; "
              f"{summary['samples_per_s']:.2f} samples/s")
        if summary.get("val"):
            print("validation: " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in summary["val"].items()))
        print(f"exported {export}")
    return 0
