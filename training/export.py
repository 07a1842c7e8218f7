"""Export a trained model to the inference checkpoint format (``gmos_core.weights.metadata``) and load it back.

The file holds the components that no official weight file can rebuild (the head always; Pi3 and the SAM 2 image
path when they were trained or randomly initialised) and the metadata the engine checks: variant, window anchor,
frames per window, window length, encoder configurations, SAM 2 config + input size, Pi3 pixel budget, name,
training data and the training command.

When the model was trained at a SAM 2 input size other than its YAML's ``image_size``, the export writes the
YAML with that size next to the checkpoint (``<stem>.sam2.yaml``) and names it in the metadata, so loaders that
resolve ``sam2_config`` relative to the checkpoint build the same encoder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from gmos_core.weights.metadata import CheckpointMetadata, read_checkpoint, write_checkpoint

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "gmos_core" / "configs"


def yaml_image_size(config: str) -> int:
    """``model.image_size`` of a SAM 2 YAML (1024 for packaged configs, the official resolution)."""
    import yaml

    path = Path(config)
    if not path.is_file():
        if (CONFIGS_DIR / config).is_file():
            path = CONFIGS_DIR / config
        else:
            return 1024
    tree = yaml.safe_load(path.read_text()) or {}
    return int(tree.get("model", {}).get("image_size", 1024))


def _sam2_config_for_export(model_cfg, out_path: Path) -> str:
    """Metadata value for ``sam2_config``: the packaged name, a gmos_core/configs file name, or a sibling YAML
    carrying the trained image size."""
    import yaml

    config = model_cfg.sam2_config_path()
    path = Path(config)
    if model_cfg.sam2_image_size and model_cfg.sam2_image_size != yaml_image_size(config):
        if not path.is_file():
            raise ValueError(f"cannot export SAM 2 config {config!r} at image size {model_cfg.sam2_image_size}: "
                             "it is not a YAML file to rewrite; pass model.sam2_config as a YAML path")
        tree = yaml.safe_load(path.read_text())
        tree["model"]["image_size"] = int(model_cfg.sam2_image_size)
        sibling = out_path.with_name(out_path.stem + ".sam2.yaml")
        sibling.write_text("# @package _global_\n# " + f"{path.name} with image_size {model_cfg.sam2_image_size} "
                           "(written by training.export)\n" + yaml.safe_dump(tree, sort_keys=False))
        return sibling.name
    if path.is_file():
        return path.name if path.resolve().parent == CONFIGS_DIR.resolve() else str(path)
    return config


def export_model(model, cfg, path: str | Path, components: Optional[Sequence[str]] = None,
                 training_command: str = "", name: Optional[str] = None, trained_on: Optional[str] = None) -> Path:
    """Write ``model`` (training.model.GMOSTrainModel) trained with ``cfg`` (training.config.TrainConfig)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    comps = tuple(components or ("pi3", "sam2_image_encoder", "head"))
    states = model.component_state_dicts()
    missing = [c for c in comps if c not in states]
    if missing:
        raise ValueError(f"export: the model has no {missing} to export")
    m = cfg.model
    meta = CheckpointMetadata(
        variant=m.variant, anchor=m.anchor, window_size=m.window_size,
        window_seconds=float(cfg.data.val_window_seconds),
        pi3_config=model.pi3.config.to_dict() if model.pi3 is not None else m.pi3_config().to_dict(),
        head_config=model.head.config.to_dict(), sam2_config=_sam2_config_for_export(m, path),
        sam2_image_size=int(m.image_size), pixel_limit=int(m.pixel_limit), components=comps,
        name=name or cfg.name, trained_on=trained_on if trained_on is not None else (cfg.trained_on or _describe(cfg)),
        training_command=training_command)
    return write_checkpoint(path, {c: states[c] for c in comps}, meta)


def _describe(cfg) -> str:
    kinds = sorted({str(e.get("kind")) for e in cfg.data.train if isinstance(e, dict)})
    return "synthetic only" if kinds == ["synthetic"] else "+".join(kinds)


def resolve_sam2_config(name: str, checkpoint: Path) -> str:
    if name.startswith("configs/"):
        return name
    for candidate in (Path(name), checkpoint.parent / name, CONFIGS_DIR / name):
        if candidate.is_file():
            return str(candidate)
    raise ValueError(f"{checkpoint}: sam2_config {name!r} not found (as a path, next to the checkpoint, or in "
                     f"{CONFIGS_DIR})")


def load_exported(path: str | Path, device: str = "cpu", pi3_weights: Optional[str] = None,
                  sam2_checkpoint: Optional[str] = None):
    """(metadata, GMOSTrainModel in eval mode) from an exported checkpoint; components the file does not hold come
    from ``pi3_weights`` / ``sam2_checkpoint`` (official files)."""
    from training.model import GMOSTrainModel, ModelConfig, Sam2ImageEncoder

    path = Path(path)
    meta, parts = read_checkpoint(path)
    if meta is None:
        raise ValueError(f"{path}: no GMOS metadata; expected a checkpoint written by training.export")
    sam2_config = resolve_sam2_config(meta.sam2_config, path)
    mcfg = ModelConfig(variant=meta.variant, size="tiny", pi3=meta.pi3_config, head=meta.head_config,
                       sam2_config=sam2_config, sam2_image_size=meta.sam2_image_size, pixel_limit=meta.pixel_limit,
                       window_size=meta.window_size, anchor=meta.anchor)
    model = GMOSTrainModel(mcfg, ())
    model.head.load_state_dict(parts["head"])
    if "pi3" in parts:
        model.pi3.load_state_dict(parts["pi3"])
    elif pi3_weights:
        from gmos_core.weights import load_pi3_encoder

        load_pi3_encoder(model.pi3, pi3_weights)
    else:
        raise ValueError(f"{path} holds no Pi3 weights; pass pi3_weights (the official Pi3 file)")
    if "sam2_image_encoder" in parts:
        own = model.sam2_image_encoder.state_dict()
        bad = sorted(set(own) ^ set(parts["sam2_image_encoder"]))
        if bad:
            raise ValueError(f"{path}: sam2_image_encoder keys do not fit {sam2_config}: {bad[:5]}")
        model.sam2_image_encoder.load_state_dict(parts["sam2_image_encoder"])
    elif sam2_checkpoint:
        from gmos_core.weights import load_sam2_predictor_weights
        from training.model import build_sam2_image_predictor

        predictor = build_sam2_image_predictor(mcfg)
        load_sam2_predictor_weights(predictor, sam2_checkpoint)
        model.sam2_image_encoder = Sam2ImageEncoder(predictor)
    else:
        raise ValueError(f"{path} holds no SAM 2 image encoder; pass sam2_checkpoint (the official SAM 2 file)")
    return meta, model.to(device).eval()


def load_head_weights(model, path: str | Path) -> None:
    """Initialise ``model.head`` from an exported checkpoint or an official head file (fine-tuning)."""
    from gmos_core import weights as W

    meta, parts = read_checkpoint(path)
    if meta is not None:
        if "head" not in parts:
            raise ValueError(f"{path}: no head component")
        model.head.load_state_dict(parts["head"])
        return
    loader = W.load_gmos_s if model.cfg.variant == "gmos_s" else W.load_proposer
    loader(model.head, str(path))


def sam2_predictor_state(model) -> dict[str, torch.Tensor]:
    """The exported ``sam2_image_encoder`` state under SAM2VideoPredictor key names (for loaders that fill a
    predictor: ``predictor.load_state_dict(state, strict=False)``)."""
    return dict(model.sam2_image_encoder.state_dict())
