"""SAM 2 video predictor with GMOS's per-object IoU outputs, built on the unmodified PyPI ``sam2`` 1.1.0.

The official GMOS code vendors a SAM 2 copy with one modelling change (gmos_reference.md §9): every tracked
frame carries ``object_ious`` = max over the SAM decoder's (sigmoid) IoU predictions of the frame's mask
candidates (1.0 when a mask prompt is used as the output). :class:`GMOSVideoPredictor` adds exactly that
on top of the stock class by overriding three hooks, and exposes

* ``add_new_mask(..., with_object_ious=True)`` → 4th return value, the consolidated per-object IoUs of the
  frame with the *official consolidation semantics* (the prompted object's storage kind decides which
  temporary outputs are looked at; objects without an output on the frame get ``NO_OBJ_SCORE``);
* ``propagate_in_video(..., with_object_ious=True)`` → 4th yield value (n_obj, 1).

The state dict is untouched (same keys as ``SAM2VideoPredictor``).
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from sam2.modeling.sam2_base import NO_OBJ_SCORE
from sam2.sam2_video_predictor import SAM2VideoPredictor
import sam2.sam2_video_predictor as _sam2_video_predictor_module

BackboneOut = Dict[str, List[torch.Tensor]]


class MissingFrameFeaturesError(KeyError):
    """A frame was tracked whose SAM 2 features were never supplied (or were already pruned)."""


def _quiet_tqdm(iterable=None, *args, **kwargs):
    from tqdm import tqdm

    kwargs["disable"] = True
    return tqdm(iterable, *args, **kwargs)


class GMOSVideoPredictor(SAM2VideoPredictor):
    """``SAM2VideoPredictor`` + the per-object IoU outputs of the GMOS-vendored SAM 2 (no new weights)."""

    #: show SAM 2's own per-generator tqdm bar (the propagator shows its own progress instead)
    show_sam2_progress: bool = False

    # ---- capture the SAM decoder's IoU predictions -------------------------------------------------
    def _track_step(self, *args, **kwargs):
        current_out, sam_outputs, high_res_features, pix_feat = super()._track_step(*args, **kwargs)
        # sam_outputs[2] = ious (B, M): M = 3 candidates with multimask output, else 1; ones for mask input.
        self._gmos_last_sam_ious = sam_outputs[2]
        return current_out, sam_outputs, high_res_features, pix_feat

    def track_step(self, *args, **kwargs):
        self._gmos_last_sam_ious = None
        current_out = super().track_step(*args, **kwargs)
        ious = self._gmos_last_sam_ious
        self._gmos_last_object_ious = None
        if not self.training and ious is not None:
            current_out["object_ious"] = torch.amax(ious, dim=-1, keepdim=True)
            self._gmos_last_object_ious = current_out["object_ious"]
        return current_out

    def _run_single_frame_inference(self, *args, **kwargs):
        compact_out, pred_masks = super()._run_single_frame_inference(*args, **kwargs)
        ious = getattr(self, "_gmos_last_object_ious", None)
        if ious is not None:
            compact_out["object_ious"] = ious
        return compact_out, pred_masks

    # ---- feature cache: never silently re-encode ---------------------------------------------------
    def _get_image_feature(self, inference_state, frame_idx, batch_size):
        if inference_state.get("gmos_features_only", False) and frame_idx not in inference_state["cached_features"]:
            raise MissingFrameFeaturesError(
                f"no cached SAM 2 features for frame {frame_idx}: supply a backbone_out for every frame "
                "(cached frames: "
                f"{sorted(inference_state['cached_features'])[:5]}...{sorted(inference_state['cached_features'])[-5:]})"
            )
        return super()._get_image_feature(inference_state, frame_idx, batch_size)

    # ---- IoU-aware public API ----------------------------------------------------------------------
    def consolidated_object_ious(self, inference_state, frame_idx: int, is_cond: bool) -> torch.Tensor:
        """Per-object IoUs of a frame, looked up like SAM 2's ``_consolidate_temp_output_across_obj``:
        temp[storage kind][t] → cond[t] → non-cond[t]; ``NO_OBJ_SCORE`` where an object has no output."""
        storage_key = "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"
        n = self._get_obj_num(inference_state)
        out_ious = torch.full((n, 1), NO_OBJ_SCORE, dtype=torch.float32, device=inference_state["storage_device"])
        for obj_idx in range(n):
            out = inference_state["temp_output_dict_per_obj"][obj_idx][storage_key].get(frame_idx)
            if out is None:
                out = inference_state["output_dict_per_obj"][obj_idx]["cond_frame_outputs"].get(frame_idx)
            if out is None:
                out = inference_state["output_dict_per_obj"][obj_idx]["non_cond_frame_outputs"].get(frame_idx)
            if out is None or out.get("object_ious") is None:
                continue
            out_ious[obj_idx:obj_idx + 1] = out["object_ious"].to(out_ious.device, torch.float32)
        return out_ious

    @torch.inference_mode()
    def add_new_mask(self, inference_state, frame_idx, obj_id, mask, with_object_ious: bool = False):
        """Stock ``add_new_mask``; with ``with_object_ious`` also returns the consolidated (n_obj, 1) IoUs."""
        result = super().add_new_mask(inference_state, frame_idx, obj_id, mask)
        if not with_object_ious:
            return result
        obj_idx = inference_state["obj_id_to_idx"][obj_id]
        is_cond = (frame_idx not in inference_state["frames_tracked_per_obj"][obj_idx]
                   or self.add_all_frames_to_correct_as_cond)
        return (*result, self.consolidated_object_ious(inference_state, frame_idx, is_cond))

    @torch.inference_mode()
    def propagate_in_video(self, inference_state, start_frame_idx=None, max_frame_num_to_track=None,
                           reverse=False, with_object_ious: bool = False):
        """Stock ``propagate_in_video``; with ``with_object_ious`` yields a 4th value (n_obj, 1)."""
        inner = super().propagate_in_video(inference_state, start_frame_idx=start_frame_idx,
                                           max_frame_num_to_track=max_frame_num_to_track, reverse=reverse)
        try:
            while True:
                # SAM 2 builds its tqdm bar on the first step; silence it unless asked for.
                with self._maybe_quiet():
                    try:
                        frame_idx, obj_ids, video_res_masks = next(inner)
                    except StopIteration:
                        return
                if not with_object_ious:
                    yield frame_idx, obj_ids, video_res_masks
                    continue
                ious = []
                for obj_idx in range(self._get_obj_num(inference_state)):
                    out_dict = inference_state["output_dict_per_obj"][obj_idx]
                    out = out_dict["cond_frame_outputs"].get(frame_idx)
                    if out is None:
                        out = out_dict["non_cond_frame_outputs"][frame_idx]
                    ious.append(out["object_ious"])
                yield frame_idx, obj_ids, video_res_masks, torch.cat(ious, 0)
        finally:
            inner.close()

    @contextlib.contextmanager
    def _maybe_quiet(self):
        if self.show_sam2_progress:
            yield
            return
        original = _sam2_video_predictor_module.tqdm
        _sam2_video_predictor_module.tqdm = _quiet_tqdm
        try:
            yield
        finally:
            _sam2_video_predictor_module.tqdm = original


def as_gmos_predictor(predictor: SAM2VideoPredictor) -> GMOSVideoPredictor:
    """Give a stock ``SAM2VideoPredictor`` (e.g. from ``build_sam2_video_predictor``) the GMOS IoU outputs.

    The class is swapped in place (no parameters or buffers change, so the state dict stays official).
    """
    if isinstance(predictor, GMOSVideoPredictor):
        return predictor
    if type(predictor) is not SAM2VideoPredictor:
        raise TypeError(f"as_gmos_predictor expects a sam2 SAM2VideoPredictor, got {type(predictor).__name__}")
    predictor.__class__ = GMOSVideoPredictor
    return predictor


def install_fp32_memory_shim(predictor: SAM2VideoPredictor) -> None:
    """Let SAM 2's tracker run in float32 without autocast (fixture README §6): the one shim of
    :func:`gmos_core.models.install_memory_dtype_shim` (idempotent, a no-op under autocast)."""
    from gmos_core.models.sam2_features import install_memory_dtype_shim

    install_memory_dtype_shim(predictor)


def init_state_from_features(
    predictor: SAM2VideoPredictor,
    video_hw: Tuple[int, int],
    backbone_outs: Union[Sequence[BackboneOut], Mapping[int, BackboneOut], None] = None,
    num_frames: Optional[int] = None,
) -> dict:
    """An inference state equal to SAM 2's ``init_state`` output but fed with precomputed features
    (the official ``init_state_lite``): every frame's ``backbone_out`` comes from the engine's single SAM 2
    encode, so SAM 2 never re-encodes a frame (a missing frame raises :class:`MissingFrameFeaturesError`).

    Args:
        video_hw: (H, W) of the original video (outputs are resized to it).
        backbone_outs: per-frame raw ``forward_image`` outputs (list indexed by frame, or {frame: out}).
        num_frames: video length (default: number of ``backbone_outs``); the online propagator grows it.
    """
    H, W = int(video_hw[0]), int(video_hw[1])
    if H <= 0 or W <= 0:
        raise ValueError(f"video_hw must be positive (H, W), got {video_hw!r}")
    if backbone_outs is None:
        backbone_outs = {}
    items = backbone_outs.items() if isinstance(backbone_outs, Mapping) else enumerate(backbone_outs)
    cache = {int(t): out for t, out in items}
    for t, out in cache.items():
        if not isinstance(out, Mapping) or "backbone_fpn" not in out or "vision_pos_enc" not in out:
            raise ValueError(f"backbone_out of frame {t} must be a dict with 'backbone_fpn' and 'vision_pos_enc' "
                             f"(SAM2Base.forward_image output), got {type(out).__name__}")
    if num_frames is None:
        num_frames = len(cache)
    device = predictor.device
    # SAM 2 only calls `.expand` on the image entry of a cache tuple; one shared zero placeholder suffices.
    placeholder = torch.zeros(1, 3, predictor.image_size, predictor.image_size, device=device)
    state = {
        "images": placeholder,
        "num_frames": int(num_frames),
        "offload_video_to_cpu": False,
        "offload_state_to_cpu": False,
        "video_height": H,
        "video_width": W,
        "device": device,
        "storage_device": device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {t: (placeholder, out) for t, out in cache.items()},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
        "gmos_features_only": True,
    }
    return state


def compute_context(device: torch.device, cuda_bf16_autocast: bool = True):
    """The official numerics: bf16 autocast + TF32 on CUDA; plain fp32 elsewhere (always inference mode)."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if torch.device(device).type == "cuda" and cuda_bf16_autocast:
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)

        def _restore():
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old

        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        stack.callback(_restore)
        stack.enter_context(torch.autocast("cuda", dtype=torch.bfloat16))
    return stack


def load_sam2_video_predictor(config_file: Union[str, Path], weights_file: Union[str, Path],
                              device: Union[str, torch.device] = "cpu",
                              overrides: Sequence[str] = ()) -> GMOSVideoPredictor:
    """Build a SAM 2 video predictor from a YAML config *file* and a safetensors state dict (strict).

    Used for the tiny test model and for converted checkpoints; the engine normally builds the predictor
    through ``gmos_core.weights``. ``overrides`` are extra Hydra overrides (e.g. ``"++model.image_size=128"``
    for a cheap test model; sizes that change parameter shapes fail the strict load). Hydra's global state
    is restored to sam2's own config module afterwards.
    """
    from hydra import initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from safetensors.torch import load_file
    from sam2.build_sam import build_sam2_video_predictor

    config_file = Path(config_file).resolve()
    weights_file = Path(weights_file)
    if not config_file.is_file():
        raise FileNotFoundError(f"SAM 2 config not found: {config_file}")
    if not weights_file.is_file() or weights_file.suffix != ".safetensors":
        raise ValueError(f"SAM 2 weights must be an existing .safetensors file, got {weights_file}")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_file.parent), version_base="1.2"):
            predictor = build_sam2_video_predictor(config_file.name, None, device=str(device),
                                                   hydra_overrides_extra=list(overrides))
    finally:
        GlobalHydra.instance().clear()
        initialize_config_module("sam2", version_base="1.2")
    state_dict = load_file(str(weights_file), device=str(device))
    missing, unexpected = predictor.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise KeyError(f"SAM 2 weights {weights_file.name} do not match the config {config_file.name}: "
                       f"missing {missing[:10]}{'...' if len(missing) > 10 else ''}, "
                       f"unexpected {unexpected[:10]}{'...' if len(unexpected) > 10 else ''}")
    predictor.eval()
    return as_gmos_predictor(predictor)
