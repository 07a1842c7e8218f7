"""The `gmos` command: one entry point, one module per sub-command.

Each sub-command module defines ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported lazily so that `gmos eval` does not pay for importing torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# sub-command name -> (module, one-line help)
SUBCOMMANDS = {
    "infer": ("gmos_core.cli.infer", "segment moving objects in videos or frame folders"),
    "eval": ("gmos_core.cli.evaluate", "evaluate predictions (MOS-I, MOS, UVOS, fg/bg)"),
    "replay": ("gmos_core.cli.replay", "replay a rosbag2 through the node logic, write an output bag"),
    "bag-from-video": ("gmos_core.cli.bag_from_video", "turn a video or frame folder into a rosbag2"),
    "convert-weights": ("gmos_core.cli.convert_weights", "convert official checkpoints to safetensors"),
    "demo": ("gmos_core.cli.demo", "the README's main job: bag from a bundled video, replay, summary"),
    "benchmark": ("gmos_core.cli.benchmark", "per-stage time and peak memory of each mode"),
    "train": ("gmos_core.cli.train", "train the GMOS proposer / GMOS-S head (docs/training.md)"),
    "cache-features": ("gmos_core.cli.cache_features", "precompute frozen encoder features for training"),
    "export": ("gmos_core.cli.export", "ONNX export of the encoders and heads with their metadata (docs/gpu.md)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gmos", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        # Argument definitions are cheap to import only if the module keeps heavy imports inside run().
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            p.set_defaults(_missing=True)
            continue
        module.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if getattr(args, "_missing", False):
        print(f"gmos {args.command}: not available in this installation", file=sys.stderr)
        return 2
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
