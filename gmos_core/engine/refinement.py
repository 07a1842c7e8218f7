"""The refinement stage of a default model that has one (checkpoint component ``refiner``): runtime side.

For each segmented frame, the GMOS-S head's foreground probability is combined with the weight-free geometric
mode's independent-motion probability of the same window (gmos_core.geometric: the mode's own handler, run on
the same WindowJobs, so flow steps, the previous frame's smoothing and the grayscale cache work as in
``--mode geometric``) and the image, by ``gmos_core.models.motion_refiner.MotionRefiner``; the refined
probability replaces the head's for everything downstream (components, IoU tracker, ``fg_prob``).

The three inputs are brought to the refiner's working size the way training prepared them
(training/refiner_data.py): the head's logits bilinearly upsampled to the source size and passed through a
sigmoid, the geometric probability at the source size, and the frame, each area-downsampled with
``F.interpolate(mode="area")``. On a frame where the geometric mode decided nothing (``UNDECIDED_CASES``: too
little texture, an unreliable camera fit, no neighbours; it writes exact zeros there) the refiner is skipped and
the head's probability goes on alone: the refiner learned the geometric map as evidence, and an empty map reads as
"certainly static" to it (on a validation clip with a smooth background it erased, on every frame, a moving
object the head had found). The refined map, bilinearly enlarged to the source size, is then snapped to the
frame's colour edges (gmos_core.engine.edge_snap; ``EngineConfig.extra["edge_snap"]``, an EdgeSnapConfig or
mapping, default on). One instance per stream (a reset builds a new handler and so a new stage).
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from gmos_core.engine.edge_snap import EdgeSnapConfig, snap_to_edges
from gmos_core.geometric.config import UNDECIDED_CASES  # FrameResult.geometry["case"]: no geometric decision


def working_size(width: int, height: int, pixels: int) -> tuple[int, int]:
    """(w, h) the refiner runs at: the source scaled to about ``pixels`` (never up), as the geometric mode's
    internal size."""
    from gmos_core.geometric.motion import internal_size

    return internal_size(width, height, pixels)


def area_resize(array, size_hw: tuple[int, int]):
    """(N, C, H, W) tensor -> (N, C, h, w) by area averaging (identity at the same size)."""
    import torch.nn.functional as F

    if tuple(array.shape[-2:]) == tuple(size_hw):
        return array
    return F.interpolate(array, size=tuple(size_hw), mode="area")


def refiner_inputs(rgb_frames, head_probs, motion_probs, pixels: int):
    """Tensors (rgb (N,3,h,w) in [0,1], head (N,1,h,w), motion (N,1,h,w)) at the working size, from source-size
    uint8 RGB frames and (N, H, W) probability maps (numpy or torch)."""
    import torch

    height, width = rgb_frames[0].shape[:2]
    w, h = working_size(width, height, pixels)
    rgb = torch.from_numpy(np.stack([np.ascontiguousarray(f) for f in rgb_frames])).permute(0, 3, 1, 2).float()
    rgb = area_resize(rgb / 255.0, (h, w))
    head = area_resize(torch.as_tensor(np.asarray(head_probs), dtype=torch.float32)[:, None], (h, w))
    motion = area_resize(torch.as_tensor(np.asarray(motion_probs), dtype=torch.float32)[:, None], (h, w))
    return rgb, head, motion


class RefinementStage:
    """Per stream: the geometric prior for each job and the refiner on top of the head's probabilities."""

    def __init__(self, config, models) -> None:
        from gmos_core.geometric.config import GeometricConfig
        from gmos_core.geometric.engine import GeometricHandler

        self.refiner = models.refiner
        self.pixels = self.refiner.config.pixels
        # the geometric mode's own handler with its defaults (what the refiner was trained on); its tracker
        # runs too (a few ms) but its tracks are not used
        geometric = getattr(models, "refiner_geometric", None) or GeometricConfig()
        self.geometric = GeometricHandler(config, SimpleNamespace(geometric=geometric))
        self.edge_snap = EdgeSnapConfig.from_mapping(config.extra.get("edge_snap"))

    def refine(self, jobs, head_probs: np.ndarray, video_hw) -> tuple[np.ndarray, dict]:
        """(N, H, W) refined probabilities for the jobs' frames (in order) and per-frame timings (ms)."""
        import torch
        import torch.nn.functional as F

        t0 = time.perf_counter()
        geometric = [result for _, result in self.geometric.process(jobs, None, None, video_hw)]
        # no geometric decision: the head alone, without running the refiner (module docstring)
        decided = [i for i, result in enumerate(geometric) if result.geometry["case"] not in UNDECIDED_CASES]
        probs = np.array(head_probs, dtype=np.float32)
        t1 = time.perf_counter()
        if decided:
            with torch.inference_mode():
                rgb, head, prior = refiner_inputs([jobs[i].frame.rgb for i in decided], probs[decided],
                                                  [geometric[i].motion_prob for i in decided], self.pixels)
                device = next(self.refiner.parameters()).device
                logits = self.refiner(rgb.to(device), head.to(device), prior.to(device)).float()
                up = F.interpolate(logits, size=tuple(video_hw), mode="bilinear", align_corners=False)
                probs[decided] = torch.sigmoid(up)[:, 0].cpu().numpy()
        t2 = time.perf_counter()
        if self.edge_snap.enabled:
            probs = np.stack([snap_to_edges(job.frame.rgb, prob, self.edge_snap) for job, prob in zip(jobs, probs)])
        t3 = time.perf_counter()
        n = max(1, len(jobs))
        timings = {"geometric_prior": 1000.0 * (t1 - t0) / n, "refiner": 1000.0 * (t2 - t1) / n}
        if self.edge_snap.enabled:
            timings["edge_snap"] = 1000.0 * (t3 - t2) / n
        return probs, timings

    def retained(self) -> dict[str, int]:
        return {f"refiner_{k}": v for k, v in self.geometric.retained().items()}

    def close(self) -> None:
        self.geometric.close()


def head_probabilities(head_out: dict, video_hw):
    """(N, H, W) sigmoid of the GMOS-S head's logits bilinearly upsampled to the source size."""
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        up = F.interpolate(head_out["fg_mask"].float(), size=tuple(video_hw), mode="bilinear", align_corners=False)
        return torch.sigmoid(up)[:, 0].cpu().numpy()


def make_refinement(config, models):
    """A RefinementStage when the models carry a refiner and the head is GMOS-S, else None."""
    if getattr(models, "refiner", None) is None:
        return None
    try:
        import cv2  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{getattr(models, 'name', 'this model')} has a refinement stage that runs the geometric "
                          "mode, which needs OpenCV: pip install opencv-python-headless") from exc
    return RefinementStage(config, models)
