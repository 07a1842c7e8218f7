"""`gmos convert-weights`: convert an official checkpoint to safetensors (checked against the model).

Reads Pi3 ``model.safetensors``, ``sam2.1_hiera_large.pt`` and the GMOS / GMOS-S ``torch.save`` files
(``model_state_dict`` / ``model`` wrappers, ``module.`` prefixes, CUDA-saved tensors), verifies that every
key the corresponding gmos_core model needs is present with the right shape (model built on the meta
device: no weight allocation), and writes a flat safetensors file. Pickles are read with
``weights_only=True``; ``--allow-unsafe-pickle`` permits full unpickling of a file you trust.
"""
from __future__ import annotations

import argparse
import sys

KINDS = ("auto", "pi3", "gmos", "gmos-s", "sam2")
# A key that identifies each kind of file.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="official weight file (.safetensors, .pt, .pth)")
    parser.add_argument("output", help="output .safetensors path")
    parser.add_argument("--kind", choices=KINDS, default="auto",
                        help="which model the file is for (default: detect from the keys)")
    parser.add_argument("--size", choices=("full", "tiny"), default="full",
                        help="model size to verify against (default: full, the official release)")
    parser.add_argument("--sam2-config", default=None,
                        help="SAM 2 config (packaged name or YAML path) for --kind sam2 "
                             "(default configs/sam2.1/sam2.1_hiera_l.yaml, or the tiny config with --size tiny)")
    parser.add_argument("--keep-extra", action="store_true",
                        help="keep keys the model does not use (e.g. Pi3's point/camera heads); default drops them")
    parser.add_argument("--allow-unsafe-pickle", action="store_true",
                        help="allow full unpickling (can execute code!) for files that weights_only loading refuses")


def detect_kind(state) -> str:
    from gmos_core.weights.loading import CHECKPOINT_SIGNATURES, guess_checkpoint_kind

    kind = guess_checkpoint_kind(state)
    if kind is None:
        raise ValueError("cannot tell which model this file is for (none of "
                         f"{[k for _, k in CHECKPOINT_SIGNATURES]} found); pass --kind")
    return kind


def _meta_model(kind: str, size: str, sam2_config: str | None):
    import torch

    if kind == "sam2":
        from gmos_core.models.sam2_features import PACKAGED_L_CONFIG, TINY_CONFIG_PATH, build_sam2_predictor

        config = sam2_config or (PACKAGED_L_CONFIG if size == "full" else str(TINY_CONFIG_PATH))
        return build_sam2_predictor(config, None, meta=True)
    from gmos_core.models import build_gmos_s, build_pi3_encoder, build_proposer

    builder = {"pi3": build_pi3_encoder, "gmos": build_proposer, "gmos-s": build_gmos_s}[kind]
    with torch.device("meta"):
        return builder(size)


def convert(input_path: str, output_path: str, kind: str = "auto", size: str = "full",
            sam2_config: str | None = None, keep_extra: bool = False, allow_unsafe_pickle: bool = False) -> dict:
    """Convert one file; returns a summary dict (kind, keys written, keys dropped)."""
    from gmos_core.weights.loading import PI3_IGNORED_PREFIXES, check_fit, load_state_dict_file, save_safetensors

    state = load_state_dict_file(input_path, allow_unsafe_pickle=allow_unsafe_pickle)
    if kind == "auto":
        kind = detect_kind(state)
    model = _meta_model(kind, size, sam2_config)
    ignore = PI3_IGNORED_PREFIXES if kind == "pi3" else ()
    # Head checkpoints may carry training-only keys (the release's exact key set is unknown): dropped.
    dropped = check_fit(model, state, source=str(input_path), ignore_prefixes=ignore,
                        allow_unexpected=kind in ("gmos", "gmos-s"))
    if not keep_extra:
        needed = set(model.state_dict())
        state = {k: v for k, v in state.items() if k in needed}
    save_safetensors(state, output_path, metadata={"gmos_kind": kind, "gmos_size": size,
                                                   "converted_from": str(input_path)})
    return {"kind": kind, "written": len(state), "dropped": 0 if keep_extra else len(dropped)}


def _check_output(input_path: str, output_path: str) -> None:
    """Refuse an output that cannot be written, or that is the input, before reading a large checkpoint."""
    from pathlib import Path

    output = Path(output_path)
    if output.is_dir():
        raise ValueError(f"output {output} is a folder; expected a file path such as {output / 'model.safetensors'}")
    for parent in output.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"output {output}: {parent} is a file, not a folder; expected a file path in a folder")
            break
    if output.exists() and Path(input_path).exists() and output.resolve() == Path(input_path).resolve():
        raise ValueError(f"output {output} is the input file; expected a different path (the input would be lost)")


def run(args: argparse.Namespace) -> int:
    from gmos_core.weights.loading import WeightLoadError

    try:
        _check_output(args.input, args.output)
        summary = convert(args.input, args.output, args.kind, args.size, args.sam2_config, args.keep_extra,
                          args.allow_unsafe_pickle)
    except (WeightLoadError, ValueError, FileNotFoundError) as exc:
        print(f"gmos convert-weights: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the output folder cannot be created or written
        print(f"gmos convert-weights: cannot write {args.output} ({exc}); expected a writable file path",
              file=sys.stderr)
        return 1
    print(f"{args.input} -> {args.output}: {summary['kind']}, {summary['written']} tensors written, "
          f"{summary['dropped']} unused keys dropped")
    return 0
