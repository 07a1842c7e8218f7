"""One vocabulary for choosing a model, shared by `gmos infer`, `gmos replay`, `gmos demo` and `gmos benchmark`
(docs/engine.md, "Choosing a model"):

  --mode {gmos_s,gmos_online,gmos_offline,...}   pipeline (offline: files only)
  --pi3-weights / --sam2-checkpoint / --head-weights   official weight files (all three), or one
                                                  GMOS-format checkpoint (a whole model) as any of them;
                                                  a head-only GMOS-format checkpoint goes in --head-weights
                                                  with the official Pi3 and SAM 2 files
  --sam2-config                                   SAM 2 config for the official weights
  --tiny-random-model                             tiny random test model (meaningless outputs)
  --tracker {auto,sam2,iou}                       auto: sam2 for the official weights, iou for the default model
  --device, --precision {auto,fp32,bf16,fp16}
With no weight flag at all the shipped default model is used.

Old flags keep working for one release and print a deprecation warning: --pi3-ckpt, --sam2-ckpt, --gmos-ckpt,
--model-size tiny / --random-weights (→ --tiny-random-model), --model (→ --mode).
"""
from __future__ import annotations

import argparse
import sys

TRACKERS = ("auto", "sam2", "iou")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
WEIGHT_FLAGS = ("--pi3-weights", "--sam2-checkpoint", "--head-weights")


def deprecation_warning(old: str, new: str, prog: str = "gmos") -> None:
    print(f"{prog}: warning: {old} is deprecated and will be removed in the next release; use {new}",
          file=sys.stderr)


class _DeprecatedStore(argparse.Action):
    """Stores into the new flag's destination and warns (old name → new name)."""

    def __init__(self, option_strings, dest, new_flag: str, **kwargs) -> None:
        self.new_flag = new_flag
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        deprecation_warning(option_string, self.new_flag, parser.prog)
        setattr(namespace, self.dest, values)


class _DeprecatedTiny(argparse.Action):
    """--random-weights (flag) and --model-size {full,tiny} (value) → --tiny-random-model."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == "--model-size":
            if values == "tiny":
                deprecation_warning("--model-size tiny", "--tiny-random-model", parser.prog)
                namespace.tiny_random_model = True
            else:
                deprecation_warning("--model-size full", "no flag (full size is implied by weight files)",
                                    parser.prog)
                namespace.model_size_full = True
            return
        deprecation_warning(option_string, "--tiny-random-model", parser.prog)
        namespace.tiny_random_model = True


def add_model_arguments(parser: argparse.ArgumentParser, modes: tuple[str, ...], default_mode: str,
                        mode_help: str, *, unsafe_pickle: bool = True, old_mode_flag: bool = False,
                        old_ckpt_flags: bool = True, default_device: str = "cpu") -> argparse._ArgumentGroup:
    """Add the shared model flags (and their deprecated spellings) to ``parser``."""
    group = parser.add_argument_group(
        "model (docs/engine.md, 'Choosing a model')",
        "No weight flag: the shipped default model (gmos_core/data/default_model/gmos_default.safetensors, trained "
        "on synthetic data only). Official weights: all three of --pi3-weights, --sam2-checkpoint, --head-weights.")
    group.add_argument("--mode", choices=modes, default=None, help=f"{mode_help} (default {default_mode})")
    parser.set_defaults(mode=None, default_mode=default_mode, tiny_random_model=False, model_size_full=False)
    group.add_argument("--pi3-weights", default=None,
                       help="Pi3 weights (official model.safetensors, or .pt read with weights_only=True)")
    group.add_argument("--sam2-checkpoint", default=None, help="SAM 2.1 checkpoint (sam2.1_hiera_large.pt or "
                       ".safetensors)")
    group.add_argument("--head-weights", default=None, help="GMOS proposer checkpoint (gmos_online/offline) or "
                       "GMOS-S checkpoint (gmos_s); or alone: a GMOS-format checkpoint holding a whole model")
    group.add_argument("--sam2-config", default=None,
                       help="SAM 2 config for the official weights: packaged name (configs/sam2.1/sam2.1_hiera_l.yaml) "
                       "or YAML path")
    group.add_argument("--tiny-random-model", action="store_true",
                       help="tiny randomly initialised model (tests and pipeline checks: outputs are meaningless)")
    group.add_argument("--tracker", choices=TRACKERS, default="auto",
                       help="instance tracker of gmos_online/gmos_offline: sam2 (SAM 2 video predictor), iou (mask "
                       "IoU + Hungarian matching); auto = sam2 for the official weights, iou for the default model")
    group.add_argument("--device", default=default_device, help=f"torch device (cpu, cuda, cuda:1, ...; default "
                       f"{default_device})")
    group.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="encoder precision (auto: CUDA bf16/fp16 autocast as the official code, CPU fp32)")
    if unsafe_pickle:
        group.add_argument("--allow-unsafe-pickle", action="store_true",
                           help="fully unpickle .pt/.pth checkpoints that weights_only loading rejects (can execute "
                           "code: trusted files only)")
    # Deprecated spellings (one release): hidden from --help, warn when used.
    if old_ckpt_flags:
        for old, new, dest in (("--pi3-ckpt", "--pi3-weights", "pi3_weights"),
                               ("--sam2-ckpt", "--sam2-checkpoint", "sam2_checkpoint"),
                               ("--gmos-ckpt", "--head-weights", "head_weights")):
            group.add_argument(old, dest=dest, action=_DeprecatedStore, new_flag=new, help=argparse.SUPPRESS)
        group.add_argument("--model-size", choices=("full", "tiny"), action=_DeprecatedTiny, dest="tiny_random_model",
                           help=argparse.SUPPRESS)
        group.add_argument("--random-weights", nargs=0, action=_DeprecatedTiny, dest="tiny_random_model",
                           help=argparse.SUPPRESS)
    if old_mode_flag:
        group.add_argument("--model", dest="mode", choices=modes, action=_DeprecatedStore, new_flag="--mode",
                           help=argparse.SUPPRESS)
    return group


def resolved_mode(args: argparse.Namespace) -> str:
    return args.mode or args.default_mode


def check_model_choice(args: argparse.Namespace) -> None:
    """--tiny-random-model excludes weight files; the official weights come as three files, or one GMOS-format
    checkpoint alone; no weight flag = the shipped default model. ValueError names what was wrong."""
    given = {flag: getattr(args, flag[2:].replace("-", "_")) for flag in WEIGHT_FLAGS}
    given = {flag: path for flag, path in given.items() if path}
    if args.tiny_random_model:
        if given:
            raise ValueError(f"--tiny-random-model cannot be combined with weight files ({', '.join(given)})")
        return
    if len(given) in (0, 3):
        return
    from gmos_core.weights.default_model import head_only_alone_message, head_only_metadata, is_gmos_format

    head = given.get("--head-weights")
    try:
        head_only = head is not None and head_only_metadata(head) is not None
    except (ValueError, OSError):
        head_only = False  # unreadable or missing: the loader names the problem
    if head_only:  # a head exported with the official frozen encoders: it needs the official Pi3 and SAM 2 files
        raise ValueError(head_only_alone_message(head))
    if len(given) == 1:
        path = next(iter(given.values()))
        try:
            if is_gmos_format(path):
                return
        except ValueError:
            pass  # unreadable: the loader names the problem below
    missing = [flag for flag in WEIGHT_FLAGS if flag not in given]
    raise ValueError(f"weight files given for {', '.join(given)} but not {', '.join(missing)}; pass all three "
                     f"official files, one GMOS-format checkpoint alone, or none (the shipped default model)")


def weight_paths(args: argparse.Namespace):
    from gmos_core.engine.models import WeightPaths

    return WeightPaths(pi3=args.pi3_weights, sam2=args.sam2_checkpoint, head=args.head_weights,
                       sam2_config=args.sam2_config,
                       allow_unsafe_pickle=bool(getattr(args, "allow_unsafe_pickle", False)))


def describe_model(mode: str, tracker: str, tiny_random_model: bool, pi3_weights: str | None = None,
                   sam2_checkpoint: str | None = None, head_weights: str | None = None) -> str:
    """The model a set of flags selects, named as outputs show it, without building it (GMOS-format files are
    described from their metadata, exactly as EngineModels.description names them).

    Raises the loader's error when the default model file is missing or a GMOS-format file is malformed.
    """
    from gmos_core.weights.default_model import (describe_checkpoint, is_gmos_format, require_default_model,
                                                 whole_model_metadata)

    given = [p for p in (pi3_weights, sam2_checkpoint, head_weights) if p]
    if tiny_random_model:
        return f"{mode}, tiny random test model (UNTRAINED: masks are meaningless)"
    if mode == "geometric":
        return "geometric (weight-free baseline, no learned model)"
    gmos_file = given[0] if len(given) == 1 and is_gmos_format(given[0]) else None
    if not given or gmos_file:
        path = gmos_file or require_default_model()
        used = tracker if tracker != "auto" else "iou"
        return (f"{mode}, {describe_checkpoint(whole_model_metadata(path), path)}"
                + (f", {used} tracker" if mode != "gmos_s" else ""))
    used = tracker if tracker != "auto" else "sam2"
    from gmos_core.weights.default_model import head_only_metadata

    head_meta = head_only_metadata(head_weights) if head_weights and len(given) == 3 else None
    if head_meta is not None:  # a head exported with the official frozen encoders
        return (f"{mode}, {describe_checkpoint(head_meta, head_weights)} with the official Pi3 {pi3_weights} and "
                f"SAM 2 {sam2_checkpoint}" + (f", {used} tracker" if mode != "gmos_s" else ""))
    return (f"{mode}, official GMOS weights {', '.join(given)}" + (f", {used} tracker" if mode != "gmos_s" else ""))
