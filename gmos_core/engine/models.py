"""The models the engine runs, behind one small interface, and ``build_engine_models``.

``EngineModels`` is the only thing StreamingEngine calls; it wraps the pure nn.Modules of gmos_core.models
(Pi3Encoder, GMOSProposer / GMOSS, Sam2Features over a SAM2VideoPredictor) and the official pre-processing.
Keeping the interface small lets tests drive the engine with a cheap stand-in model (in test/ only).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

RANDOM_WEIGHTS_WARNING = "RANDOM WEIGHTS: outputs are meaningless (for tests and demos only)"


@dataclass
class WeightPaths:
    """Official weight files. None = random initialisation (only allowed with ``allow_random=True``)."""

    pi3: Optional[str] = None
    sam2: Optional[str] = None
    head: Optional[str] = None  # GMOS proposer checkpoint (gmos_online/offline) or GMOS-S checkpoint (gmos_s)
    sam2_config: Optional[str] = None  # packaged name or YAML path; default by model size
    allow_unsafe_pickle: bool = False  # full unpickling of .pt files (can execute code): trusted files only


class EngineModels:
    """Everything model-side the engine needs.

    anchor:      "center" (official weights) or "end"; where the segmented frame sits in its window.
    window_size: frames per Pi3 window the model was trained with.
    description: human-readable summary naming the model, with a loud warning when weights are random.
    head_kind:   "gmos_s" or "proposer" (the head the models carry).
    default_tracker: what EngineConfig.tracker="auto" means: "sam2" (official weights) or "iou" (default model).
    sam2_memory_trained: whether the SAM 2 video memory holds trained weights (False for the default model,
                 whose SAM 2 checkpoint component is the image encoder only).
    pixel_limit: the Pi3 pixel budget the model was trained with (None = the official 255000).
    name:        the model's name (GMOS-format checkpoints), e.g. "gmos-default-s3".
    refiner:     the refinement stage of a default model that has one (gmos_core.models.motion_refiner), else
                 None; the GMOS-S handlers then fuse the head's probability with the geometric mode's
                 (gmos_core.engine.refinement). ``refiner_geometric``: the GeometricConfig it runs (defaults).
    """

    refiner = None
    refiner_geometric = None

    def __init__(self, pi3, head, sam_features, *, mode: str, anchor: str = "center", window_size: int = 5,
                 description: str = "", random_weights: bool = False, device: str = "cpu",
                 precision: str = "auto", head_kind: Optional[str] = None, default_tracker: str = "sam2",
                 sam2_memory_trained: bool = True, pixel_limit: Optional[int] = None, name: str = "") -> None:
        import torch

        self.pi3 = pi3.eval()
        self.head = head.eval()
        self.sam = sam_features
        self.mode = mode
        self.anchor = anchor
        self.window_size = window_size
        self.random_weights = random_weights
        self.head_kind = head_kind or ("gmos_s" if mode == "gmos_s" else "proposer")
        self.default_tracker = default_tracker
        self.sam2_memory_trained = sam2_memory_trained
        self.pixel_limit = pixel_limit
        self.name = name
        self.description = description + (f" — {RANDOM_WEIGHTS_WARNING}" if random_weights else "")
        self.device = torch.device(device)
        self.precision = precision
        self.sam.autocast = precision != "fp32"

    # ---------------------------------------------------------------- precision
    def encoder_autocast(self):
        """Encoders: CUDA autocast (bf16 on cc >= 8, else fp16, or the forced dtype); CPU: fp32."""
        import torch

        if self.device.type != "cuda" or self.precision == "fp32":
            return contextlib.nullcontext()
        if self.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if self.precision == "fp16":
            return torch.autocast("cuda", dtype=torch.float16)
        from gmos_core.models import encoder_autocast

        return encoder_autocast(self.device)

    # ---------------------------------------------------------------- Pi3
    @property
    def patch_size(self) -> int:
        return int(self.pi3.patch_size)

    def pi3_target_size(self, width: int, height: int, pixel_limit: int) -> tuple[int, int]:
        from gmos_core.preprocess import pi3_target_size

        return tuple(pi3_target_size(width, height, pixel_limit=pixel_limit))

    def pi3_inputs(self, frames: Sequence[np.ndarray], size_hw: tuple[int, int]):
        """(M, 3, Hp, Wp) float in [0,1]: PIL Lanczos resize + ToTensor, as the official loader."""
        from gmos_core.preprocess import pi3_image_tensor

        return pi3_image_tensor(list(frames), tuple(size_hw)).to(self.device)

    def encode_tokens(self, images):
        """DINOv2 normed patch tokens (M, h*w, C) — what the per-frame cache stores."""
        import torch

        with torch.inference_mode(), self.encoder_autocast():
            return self.pi3.encode_frames(images)

    def decode_anchor(self, hidden, num_frames: int, height: int, width: int, position: int):
        """Pi3 decoder over B windows; returns the feature of window position ``position``: (B, h, w, C) fp32."""
        import torch

        with torch.inference_mode(), self.encoder_autocast():
            out = self.pi3.decode(hidden, num_frames, height, width)
        return out[:, position].float()

    # ---------------------------------------------------------------- SAM 2
    def sam_inputs(self, frames: Sequence[np.ndarray]):
        from gmos_core.preprocess import sam2_image_tensor

        return sam2_image_tensor(list(frames), self.sam.image_size).to(self.device)

    def sam_encode(self, images) -> list[dict]:
        """One SAM 2 image-encoder pass per frame; per-frame raw ``backbone_out`` (cached, shared with the
        propagator)."""
        return self.sam.split(self.sam.encode(images))

    def sam_head_inputs(self, backbone_outs: Sequence[dict]):
        import torch

        batched = {
            "vision_features": torch.cat([b["vision_features"] for b in backbone_outs]),
            "vision_pos_enc": [torch.cat(x) for x in zip(*[b["vision_pos_enc"] for b in backbone_outs])],
            "backbone_fpn": [torch.cat(x) for x in zip(*[b["backbone_fpn"] for b in backbone_outs])],
        }
        return self.sam.head_inputs(batched)

    # ---------------------------------------------------------------- heads (fp32)
    def run_head(self, token, sam_btn, high_res) -> dict:
        import torch

        with torch.inference_mode():
            return self.head(token.float(), sam_btn.float(), [h.float() for h in high_res])

    # ---------------------------------------------------------------- propagator
    @property
    def predictor(self):
        return self.sam.predictor


def _check_file(path: Optional[str], what: str) -> Optional[str]:
    if path is not None and not os.path.isfile(path):
        raise FileNotFoundError(f"{what} weights not found: {path}")
    return path


def build_engine_models(config, size: str = "full", weights: Optional[WeightPaths] = None,
                        allow_random: bool = False, seed: int = 0) -> EngineModels:
    """Build the models for ``config.mode``.

    size: "full" (official architecture) or "tiny" (small random configurations for tests/demos).
    weights: weight files. With none at all (and not ``allow_random``) the shipped default model
    (gmos_core/data/default_model/gmos_default.safetensors) is loaded; a GMOS-format checkpoint (metadata
    ``gmos_format``, e.g. one retrained with training/) passed alone, as any of the three files, is loaded the
    same way. Otherwise the files are the official ones, and every file left None keeps random weights, which
    requires ``allow_random=True`` and is announced in ``EngineModels.description`` (outputs are meaningless).
    """
    if config.mode == "geometric":  # weight-free (gmos_core.geometric): no files, no torch; weights are ignored
        from gmos_core.geometric.engine import build_geometric_models

        return build_geometric_models(config)
    weights = weights or WeightPaths()
    if size not in ("full", "tiny"):
        raise ValueError(f"model size must be 'full' or 'tiny', got {size!r}")
    given = [p for p in (weights.pi3, weights.sam2, weights.head) if p]
    if size == "full":
        from gmos_core.weights.default_model import (head_only_alone_message, head_only_metadata, is_gmos_format,
                                                     require_default_model)

        for path in given:
            _check_file(path, "model")
        if weights.head and head_only_metadata(weights.head) is not None:
            # a head exported with the official frozen encoders: the official Pi3 and SAM 2 files go with it
            if not (weights.pi3 and weights.sam2):
                raise ValueError(head_only_alone_message(weights.head))
            others = [p for p in (weights.pi3, weights.sam2) if is_gmos_format(p)]
            if others:
                raise ValueError(f"{others[0]} is a GMOS-format checkpoint; with the head-only checkpoint "
                                 f"{weights.head} the Pi3 and SAM 2 files must be the official ones")
            return _build_head_only(config, weights)
        gmos_files = [p for p in given if is_gmos_format(p)]
        if gmos_files and len(given) > 1:
            raise ValueError(f"{gmos_files[0]} is a GMOS-format checkpoint holding a whole model; pass it alone "
                             f"(e.g. --head-weights {gmos_files[0]}), not with other weight files")
        if gmos_files:
            return _build_gmos_format(config, gmos_files[0], weights)
        if not given and not allow_random:
            return _build_gmos_format(config, str(require_default_model()), weights)
    return _build_official(config, size, weights, allow_random, seed)


def _frozen_on(device: str, *modules) -> None:
    """Inference only: the modules on ``device`` with no parameter tracking gradients."""
    for module in modules:
        module.to(device)
        for p in module.parameters():
            p.requires_grad_(False)


def _from_metadata(config, pi3, head, predictor, meta, description: str, *, sam2_memory_trained: bool):
    """EngineModels of a GMOS-format checkpoint: anchor, window, head kind, pixel budget and name from its
    metadata; the SAM 2 tracker only where SAM 2's video memory is trained (official SAM 2 file)."""
    from gmos_core import models as M

    return EngineModels(pi3, head, M.Sam2Features(predictor), mode=config.mode, anchor=meta.anchor,
                        window_size=meta.window_size, description=description, random_weights=False,
                        device=config.device, precision=config.precision, head_kind=meta.variant,
                        default_tracker="sam2" if sam2_memory_trained else "iou",
                        sam2_memory_trained=sam2_memory_trained, pixel_limit=meta.pixel_limit, name=meta.name)


def _build_gmos_format(config, path: str, weights: WeightPaths) -> EngineModels:
    """A whole model from one GMOS-format checkpoint (the shipped default model or a retrained one)."""
    from gmos_core.weights.default_model import build_gmos_format_models

    if weights.sam2_config:
        raise ValueError(f"--sam2-config cannot be combined with the GMOS-format checkpoint {path}: its SAM 2 "
                         f"config is part of the model (its metadata)")
    from gmos_core.weights.default_model import build_refiner

    pi3, head, predictor, meta, description = build_gmos_format_models(path, device=config.device)
    _frozen_on(config.device, pi3, head)
    # the SAM 2 video memory of a whole GMOS-format model is untrained: instances come from the IoU tracker
    models = _from_metadata(config, pi3, head, predictor, meta, description, sam2_memory_trained=False)
    models.refiner = build_refiner(path, device=config.device)
    return models


def _build_head_only(config, weights: WeightPaths) -> EngineModels:
    """A head-only GMOS-format checkpoint (head_config, anchor, window from its metadata) with the official Pi3
    and SAM 2 files (the whole SAM 2 checkpoint: its video memory is trained, so the SAM 2 tracker applies)."""
    import torch

    from gmos_core import models as M
    from gmos_core.weights.default_model import build_head_only_models

    pi3, head, predictor, meta, description = build_head_only_models(
        weights.head, weights.pi3, weights.sam2, sam2_config=weights.sam2_config, device=config.device,
        allow_unsafe_pickle=weights.allow_unsafe_pickle)
    if torch.device(config.device).type == "cpu":
        M.install_memory_dtype_shim(predictor)
    _frozen_on(config.device, pi3, head)
    return _from_metadata(config, pi3, head, predictor, meta, description, sam2_memory_trained=True)


def _build_official(config, size: str, weights: WeightPaths, allow_random: bool, seed: int) -> EngineModels:
    import torch

    from gmos_core import models as M

    missing = [name for name in ("pi3", "sam2", "head") if getattr(weights, name) is None]
    if missing and not allow_random:
        raise ValueError(
            f"no weight file given for {missing}; pass all three official weight files, none (the shipped default "
            f"model), or allow_random=True (--tiny-random-model) for meaningless test outputs"
        )
    torch.manual_seed(seed)
    pi3 = M.build_pi3_encoder(size)
    head = M.build_gmos_s(size) if config.mode == "gmos_s" else M.build_proposer(size)
    if weights.pi3:
        from gmos_core.weights import load_pi3_encoder

        load_pi3_encoder(pi3, _check_file(weights.pi3, "Pi3"), allow_unsafe_pickle=weights.allow_unsafe_pickle)
    if weights.head:
        from gmos_core import weights as W

        loader = W.load_gmos_s if config.mode == "gmos_s" else W.load_proposer
        loader(head, _check_file(weights.head, "GMOS head"), allow_unsafe_pickle=weights.allow_unsafe_pickle)
    sam_config = weights.sam2_config or (str(M.sam2_features.TINY_CONFIG_PATH) if size == "tiny"
                                         else M.sam2_features.PACKAGED_L_CONFIG)
    predictor = M.build_sam2_predictor(sam_config, _check_file(weights.sam2, "SAM 2"), device=config.device,
                                       allow_unsafe_pickle=weights.allow_unsafe_pickle)
    if torch.device(config.device).type == "cpu":
        M.install_memory_dtype_shim(predictor)
    _frozen_on(config.device, pi3, head)
    random = bool(missing)
    if size == "tiny" and random and not any((weights.pi3, weights.sam2, weights.head)):
        description = "tiny random test model (--tiny-random-model)"
    else:
        description = (f"official GMOS architecture (Pi3 {'from ' + str(weights.pi3) if weights.pi3 else 'random'}, "
                       f"SAM 2 {os.path.basename(str(sam_config))} "
                       f"{'from ' + str(weights.sam2) if weights.sam2 else 'random'}, "
                       f"{'GMOS-S' if config.mode == 'gmos_s' else 'GMOS proposer'} "
                       f"{'from ' + str(weights.head) if weights.head else 'random'})")
        if size == "tiny":
            description = "tiny " + description
    return EngineModels(pi3, head, M.Sam2Features(predictor), mode=config.mode, anchor="center",
                        window_size=5, description=description, random_weights=random,
                        device=config.device, precision=config.precision)
