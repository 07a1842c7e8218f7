"""Whole models in the GMOS checkpoint format (gmos_core.weights.metadata): one safetensors file holding the three
components of a model (the shipped default model ``gmos_core/data/default_model/gmos_default.safetensors``, or
one retrained with ``training/``). The metadata says how to build each part (``pi3_config``, ``head_config``,
``sam2_config``: a packaged sam2 name, a YAML path, or a file name in gmos_core/configs) and how to run it
(``anchor``, ``window_size``, ``pixel_limit``); ``name`` and ``trained_on`` name it in every output.

Keys are prefixed by component: ``pi3.`` (Pi3Encoder), ``sam2_image_encoder.`` (the SAM 2 predictor keys the
image features depend on: ``image_encoder.*``, ``sam_mask_decoder.conv_s0/conv_s1.*``, ``no_mem_embed``) and
``head.`` (GMOSS or GMOSProposer). The rest of the SAM 2 predictor (memory, prompt encoder, mask decoder) is
built from the YAML and stays random: these models track with the IoU tracker, never the SAM 2 propagator.
Files without metadata (the official checkpoints) are not in this format and load as before.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from gmos_core.weights.loading import WeightLoadError
from gmos_core.weights.metadata import COMPONENTS, CheckpointMetadata, read_checkpoint, read_checkpoint_metadata

DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[1] / "data" / "default_model" / "gmos_default.safetensors"
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
SAM2_IMAGE_KEY_PREFIXES = ("image_encoder.", "sam_mask_decoder.conv_s0.", "sam_mask_decoder.conv_s1.",
                           "no_mem_embed")


class CheckpointFormatError(WeightLoadError):
    """A GMOS-format checkpoint's metadata or keys do not make a whole model (the message names the file)."""


class DefaultModelMissingError(FileNotFoundError):
    """The shipped default model file is not in this installation."""


def trained_on_phrase(meta: CheckpointMetadata) -> str:
    text = meta.trained_on.strip()
    if text.lower() in ("synthetic", "synthetic only", "synthetic data only", "synthetic data"):
        return "trained on synthetic data only"
    return f"trained on {text}" if text else "training data not stated in the file"


def describe_checkpoint(meta: CheckpointMetadata, path: Path) -> str:
    """How outputs name a GMOS-format model: its name and what it was trained on, e.g.
    'gmos-default-s3 (trained on synthetic data only; GMOS-S head, center-anchored 5-frame window)'; a file with a
    refinement stage says so ('GMOS-S head + refinement with the geometric mode')."""
    head = "GMOS-S head" if meta.variant == "gmos_s" else "GMOS proposer head"
    if "refiner" in meta.components:
        head += " + refinement with the geometric mode"
    return (f"{meta.name or Path(path).stem} ({trained_on_phrase(meta)}; {head}, {meta.anchor}-anchored "
            f"{meta.window_size}-frame window)")


def default_model_path() -> Path:
    return DEFAULT_MODEL_PATH


def require_default_model() -> Path:
    path = default_model_path()
    if not path.is_file():
        raise DefaultModelMissingError(
            f"the default model file is missing from this installation: {path} (expected it in the package; "
            f"reinstall, or retrain it (docs/training.md), pass weight files "
            f"(--pi3-weights/--sam2-checkpoint/--head-weights), or use --tiny-random-model for a pipeline check)")
    return path


def is_gmos_format(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a GMOS-format checkpoint (safetensors with ``gmos_format`` metadata); torch.save files
    (the official .pt checkpoints) are never read here."""
    if Path(path).suffix != ".safetensors":
        return False
    return read_checkpoint_metadata(path) is not None


def whole_model_metadata(path: str | os.PathLike) -> CheckpointMetadata:
    """The metadata of a GMOS-format checkpoint that holds a whole model (all three components)."""
    path = Path(path)
    meta = read_checkpoint_metadata(path)
    if meta is None:
        raise CheckpointFormatError(f"{path}: no GMOS checkpoint metadata (gmos_format); expected a model written "
                                    f"by training/ (an official checkpoint goes with --pi3-weights/"
                                    f"--sam2-checkpoint/--head-weights, all three)")
    if meta.components == HEAD_ONLY:
        raise CheckpointFormatError(head_only_alone_message(path))
    lacking = [c for c in COMPONENTS if c not in meta.components]
    if lacking:
        raise CheckpointFormatError(f"{path}: metadata components={','.join(meta.components)!r} lacks {lacking}; "
                                    f"expected {','.join(COMPONENTS)} (a whole model)")
    if meta.window_size % 2 == 0:
        raise CheckpointFormatError(f"{path}: metadata window_size={meta.window_size}; expected an odd number "
                                    "(the engine's windows are symmetric or end-anchored over 2n+1 frames)")
    return meta


HEAD_ONLY = ("head",)


def head_only_alone_message(path) -> str:
    return (f"{path} holds only a GMOS head (metadata components='head': exported with the official frozen "
            f"encoders); it needs the official Pi3 and SAM 2 files beside it: --head-weights {path} "
            f"--pi3-weights PI3.safetensors --sam2-checkpoint SAM2.pt")


def head_only_metadata(path: str | os.PathLike) -> Optional[CheckpointMetadata]:
    """The metadata of a GMOS-format checkpoint that holds only the head (``gmos train`` with the official frozen
    encoders), else None (an official head file, or a GMOS-format file with more components)."""
    if not Path(path).is_file() or not is_gmos_format(path):
        return None  # a missing file is the loaders' to report (they name the flag)
    meta = read_checkpoint_metadata(path)
    if meta.components != HEAD_ONLY:
        return None
    if meta.window_size % 2 == 0:
        raise CheckpointFormatError(f"{path}: metadata window_size={meta.window_size}; expected an odd number "
                                    "(the engine's windows are symmetric or end-anchored over 2n+1 frames)")
    return meta


def resolve_sam2_config(name: str, checkpoint: Path) -> str:
    """A sam2 config named in metadata: packaged name (configs/...), an existing YAML path, or a file name in
    gmos_core/configs."""
    if name.startswith("configs/"):
        return name
    for candidate in (Path(name), CONFIGS_DIR / name, checkpoint.parent / name):
        if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
            return str(candidate)
    raise CheckpointFormatError(f"{checkpoint}: metadata sam2_config={name!r} is neither a packaged sam2 config "
                                f"(configs/...) nor a YAML file here or in {CONFIGS_DIR}")


def sam2_image_state_dict(predictor) -> dict:
    """The part of a SAM 2 predictor's state_dict that the image features (and so the heads) depend on."""
    return {k: v for k, v in predictor.state_dict().items() if k.startswith(SAM2_IMAGE_KEY_PREFIXES)}


def load_sam2_image_encoder(predictor, state: dict, source: str) -> None:
    """Load the ``sam2_image_encoder`` component strictly for its own keys."""
    own = sam2_image_state_dict(predictor)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = [f"{len(v)} {what} keys: {v[:5]}" for what, v in (("missing", missing), ("unexpected", unexpected),
                                                                  ("misshaped", misshaped)) if v]
    if problems:
        raise CheckpointFormatError(f"{source} does not fit the SAM 2 image encoder of its sam2_config: "
                                    + "; ".join(problems))
    predictor.load_state_dict(state, strict=False)


def _build_pi3_and_head(meta: CheckpointMetadata, path: Path):
    """(Pi3Encoder, GMOSS | GMOSProposer) of the sizes in the metadata, untrained."""
    from gmos_core import models as M

    try:
        pi3 = M.Pi3Encoder(**meta.pi3_config)
        head_cls = M.GMOSS if meta.variant == "gmos_s" else M.GMOSProposer
        return pi3, head_cls(**meta.head_config)
    except (TypeError, ValueError) as exc:
        raise CheckpointFormatError(f"{path}: pi3_config/head_config do not build the models ({exc}); expected "
                                    f"Pi3Encoder and {meta.variant} head constructor arguments") from exc


def build_gmos_format_models(path: str | os.PathLike, device: str = "cpu"):
    """Build and load the three parts of a GMOS-format checkpoint.

    Returns (pi3 Pi3Encoder, head GMOSS|GMOSProposer, predictor SAM2VideoPredictor, metadata, description).
    """
    from gmos_core import models as M
    from gmos_core.weights.loading import load_into

    path = Path(path)
    meta = whole_model_metadata(path)
    pi3, head = _build_pi3_and_head(meta, path)
    predictor = M.build_sam2_predictor(resolve_sam2_config(meta.sam2_config, path), None, device="cpu")
    if int(predictor.image_size) != meta.sam2_image_size:
        raise CheckpointFormatError(f"{path}: metadata sam2_image_size={meta.sam2_image_size} but its sam2_config "
                                    f"{meta.sam2_config!r} builds image size {predictor.image_size}")
    _, parts = read_checkpoint(path)
    load_into(pi3, parts["pi3"], source=f"{path} [pi3.]")
    load_into(head, parts["head"], source=f"{path} [head.]")
    load_sam2_image_encoder(predictor, parts["sam2_image_encoder"], f"{path} [sam2_image_encoder.]")
    return pi3, head, predictor.to(device), meta, describe_checkpoint(meta, path)


def build_refiner(path: str | os.PathLike, device: str = "cpu"):
    """The refinement stage of a GMOS-format checkpoint (gmos_core.models.motion_refiner), loaded strictly and
    frozen, or None when the file has no ``refiner`` component."""
    from gmos_core.models.motion_refiner import MotionRefiner, MotionRefinerConfig
    from gmos_core.weights.loading import load_into

    path = Path(path)
    meta = whole_model_metadata(path)
    if "refiner" not in meta.components:
        return None
    try:
        refiner = MotionRefiner(**MotionRefinerConfig.from_dict(meta.refiner_config).to_dict())
    except (TypeError, ValueError) as exc:
        raise CheckpointFormatError(f"{path}: refiner_config does not build the refiner ({exc}); expected "
                                    f"MotionRefinerConfig keyword arguments") from exc
    _, parts = read_checkpoint(path)
    load_into(refiner, parts["refiner"], source=f"{path} [refiner.]")
    refiner.eval().to(device)
    for p in refiner.parameters():
        p.requires_grad_(False)
    return refiner


def build_head_only_models(path: str | os.PathLike, pi3_weights: str, sam2_checkpoint: str,
                           sam2_config: Optional[str] = None, device: str = "cpu",
                           allow_unsafe_pickle: bool = False):
    """A head-only GMOS-format checkpoint with the official Pi3 and SAM 2 files it was trained on (frozen).

    The encoders are built from the head file's metadata (``pi3_config``; ``sam2_config`` unless ``sam2_config``
    is given) and filled from the official files; the head from ``head_config`` and the file's ``head`` keys.
    Returns (pi3, head, predictor, metadata, description).
    """
    from gmos_core import models as M
    from gmos_core.weights import load_pi3_encoder
    from gmos_core.weights.loading import load_into

    path = Path(path)
    meta = head_only_metadata(path)
    if meta is None:
        raise CheckpointFormatError(f"{path}: expected a GMOS-format checkpoint holding only the head "
                                    f"(metadata components='head')")
    pi3, head = _build_pi3_and_head(meta, path)
    _, parts = read_checkpoint(path)
    load_into(head, parts["head"], source=f"{path} [head]")
    load_pi3_encoder(pi3, pi3_weights, allow_unsafe_pickle=allow_unsafe_pickle)
    config = sam2_config or resolve_sam2_config(meta.sam2_config, path)
    predictor = M.build_sam2_predictor(config, sam2_checkpoint, device=device,
                                       allow_unsafe_pickle=allow_unsafe_pickle)
    if int(predictor.image_size) != meta.sam2_image_size:
        raise CheckpointFormatError(f"{path}: metadata sam2_image_size={meta.sam2_image_size} but the SAM 2 config "
                                    f"{config!r} builds image size {predictor.image_size}; expected the config "
                                    f"the head was trained with ({meta.sam2_config!r})")
    description = (f"{describe_checkpoint(meta, path)} with the official Pi3 from {pi3_weights} and "
                   f"SAM 2 {os.path.basename(str(config))} from {sam2_checkpoint}")
    return pi3, head, predictor, meta, description
