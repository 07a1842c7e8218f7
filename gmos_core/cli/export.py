"""`gmos export`: ONNX graphs of the Pi3 encoder, Pi3 decoder and head, with the checkpoint metadata.

    gmos export OUT_DIR                                  # the shipped default model
    gmos export OUT_DIR --pi3-weights P --sam2-checkpoint S --head-weights H --mode gmos_s
    gmos export OUT_DIR --tiny-random-model --check      # tiny random model, then onnxruntime parity

Writes ``pi3_encoder.onnx`` (+ ``.data``), ``pi3_decoder.onnx`` (+ ``.data``), ``head.onnx`` and
``manifest.json`` (metadata, inputs/outputs, dynamic dimensions, weights and file hashes); see docs/gpu.md.
"""
from __future__ import annotations

import argparse
import sys

from gmos_core.cli.model_args import add_model_arguments, check_model_choice, resolved_mode, weight_paths

COMPONENTS = ("pi3_encoder", "pi3_decoder", "head")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="folder for the graphs and manifest.json (created)")
    add_model_arguments(parser, modes=("gmos_online", "gmos_s"), default_mode="gmos_online",
                        mode_help="which head to export: gmos_online = the proposer, gmos_s = the GMOS-S head")
    parser.add_argument("--components", default=",".join(COMPONENTS),
                        help=f"comma list of graphs to export (default: all of {','.join(COMPONENTS)})")
    parser.add_argument("--video-size", type=int, nargs=2, default=(854, 480), metavar=("W", "H"),
                        help="camera size the sample input is made for (the graphs accept any H x W within the "
                        "pixel budget; default 854 480)")
    parser.add_argument("--pixel-limit", type=int, default=None,
                        help="Pi3 pixel budget (default: the model's own, 255000 for the official weights)")
    parser.add_argument("--check", action="store_true",
                        help="after exporting, run the graphs with onnxruntime (CPU) against PyTorch and print the "
                        "largest differences")


def _fail(message: str) -> int:
    print(f"gmos export: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    components = [c.strip() for c in args.components.split(",") if c.strip()]
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown or not components:
        return _fail(f"--components {args.components!r}: unknown {unknown}; expected a comma list of {COMPONENTS}")
    if args.pixel_limit is not None and args.pixel_limit < 196:
        return _fail(f"--pixel-limit {args.pixel_limit}: expected an integer >= 196 (one 14x14 patch)")
    if min(args.video_size) < 2:
        return _fail(f"--video-size {args.video_size}: expected a width and height of at least 2 pixels")
    try:
        check_model_choice(args)
    except (ValueError, OSError) as exc:
        return _fail(str(exc))
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401  (the dynamo exporter's translator)
    except ImportError as exc:
        return _fail(f"{exc.name} is not installed; expected `pip install onnx onnxscript onnxruntime` "
                     "(the project's extra: pip install -e .[onnx])")

    import torch

    # Export needs no autograd; no_grad (not set_grad_enabled(False)) so the caller's grad mode survives
    # (`gmos export` runs in-process from tests and scripts).
    with torch.no_grad():
        return _export(args, resolved_mode(args), components)


def _export(args, mode: str, components) -> int:
    from gmos_core.engine.config import EngineConfig
    from gmos_core.engine.models import build_engine_models
    from gmos_core.export.onnx_export import ExportError, export_model_set
    from gmos_core.export.runtime import _metadata_strings
    from gmos_core.preprocess import pi3_target_size

    try:
        config = EngineConfig(mode=mode, device="cpu", precision="fp32")
        models = build_engine_models(config, "tiny" if args.tiny_random_model else "full", weight_paths(args),
                                     allow_random=args.tiny_random_model)
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    metadata = _file_metadata(args) or _metadata_strings(models)
    pixel_limit = args.pixel_limit or getattr(models, "pixel_limit", None) or int(metadata.get("pixel_limit", 255000))
    sample_hw = tuple(pi3_target_size(*args.video_size, pixel_limit=pixel_limit))
    print(f"gmos export: {models.description}; sample Pi3 input {sample_hw[0]}x{sample_hw[1]}, "
          f"pixel budget {pixel_limit}", flush=True)
    try:
        manifest = export_model_set(models.pi3, models.head, args.out_dir, metadata,
                                    window_size=int(models.window_size), sample_hw=sample_hw,
                                    pixel_limit=pixel_limit, components=components,
                                    progress=lambda m: print(m, flush=True))
    except (ExportError, ValueError, OSError) as exc:
        return _fail(str(exc))
    print(f"gmos export: wrote {len(manifest['graphs'])} graph(s) and manifest.json to {args.out_dir}")
    if args.check:
        return _check(models, args.out_dir, components, sample_hw)
    return 0


def _file_metadata(args) -> dict | None:
    """The GMOS metadata strings of the checkpoint in use (a GMOS-format file or the default model)."""
    if args.tiny_random_model:
        return None
    from gmos_core.weights.default_model import require_default_model
    from gmos_core.weights.metadata import read_checkpoint_metadata

    given = [p for p in (args.pi3_weights, args.sam2_checkpoint, args.head_weights) if p]
    path = given[0] if len(given) == 1 else (None if given else require_default_model())
    if path is None:
        return None
    meta = read_checkpoint_metadata(path)
    return meta.to_strings() if meta is not None else None


def _check(models, out_dir, components, sample_hw) -> int:
    """onnxruntime against PyTorch: Pi3 end to end on a small window, the head at the sample token grid."""
    from pathlib import Path

    from gmos_core.export.onnx_export import head_variant, onnx_session
    from gmos_core.export.parity import head_parity, pi3_parity

    out = Path(out_dir)
    rows = []
    if {"pi3_encoder", "pi3_decoder"} <= set(components):
        small = (min(sample_hw[0], 112), min(sample_hw[1], 196))
        rows += pi3_parity(models.pi3, onnx_session(out / "pi3_encoder.onnx"), onnx_session(out / "pi3_decoder.onnx"),
                           [small], window=int(models.window_size))
    if "head" in components:
        rows += head_parity(models.head, head_variant(models.head), onnx_session(out / "head.onnx"),
                            [(sample_hw[0] // 14, sample_hw[1] // 14)])
    for row in rows:
        print(f"  {row['graph']:<24} {row.get('output', ''):<14} {row['input']:<22} max |onnx - torch| = "
              f"{row['max_abs_diff']:.3g} (max |torch| {row['max_abs_ref']:.3g})")
    return 0
