"""SAM 2 per-frame features in the form the propagator caches (the official proposer pass, §2).

The engine normally supplies these (one SAM 2 encode per frame, shared with the proposer). This module is
the stand-alone path used by tests and offline tools: frames → ``SAM2Transforms(1024)`` semantics →
``forward_image`` in batches → per-frame slices with the bottleneck level cloned (as the official
``sam_feat_cache`` stores them).
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def sam2_image_tensor(rgb: np.ndarray, resolution: int = 1024) -> torch.Tensor:
    """(H, W, 3) uint8 RGB → (3, R, R) float32, like SAM 2's ``SAM2Transforms``: ToTensor (/255), a
    bilinear antialiased resize to R×R (aspect ratio not kept; torchvision's tensor ``Resize``), ImageNet
    normalisation.

    Uses ``gmos_core.preprocess.sam2_image_tensor`` when the models area provides it (one implementation),
    else this local equivalent (torchvision is not a dependency).
    """
    try:  # prefer the shared implementation
        from gmos_core.preprocess import sam2_image_tensor as shared  # type: ignore
    except ImportError:
        shared = None
    if shared is not None:
        return shared(np.asarray(rgb), image_size=resolution)
    return _sam2_image_tensor_local(rgb, resolution)


def _sam2_image_tensor_local(rgb: np.ndarray, resolution: int = 1024) -> torch.Tensor:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(255.0)
    x = F.interpolate(x[None], size=(resolution, resolution), mode="bilinear", align_corners=False,
                      antialias=True)[0]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def split_backbone_out(backbone_out: Dict[str, List[torch.Tensor]], index: int) -> Dict[str, List[torch.Tensor]]:
    """One frame's slice of a batched ``forward_image`` output (bottleneck level cloned, as officially)."""
    fpn = [level[index:index + 1] for level in backbone_out["backbone_fpn"]]
    fpn[-1] = fpn[-1].clone()
    pos = [p[index:index + 1] for p in backbone_out["vision_pos_enc"]]
    return {"backbone_fpn": fpn, "vision_pos_enc": pos}


@torch.inference_mode()
def encode_video_features(predictor, frames: Sequence[np.ndarray], batch_size: int = 8,
                          progress: bool = False) -> List[Dict[str, List[torch.Tensor]]]:
    """Per-frame SAM 2 ``backbone_out`` dicts for (T, H, W, 3) uint8 frames (batches of ``batch_size``)."""
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    outs: List[Dict[str, List[torch.Tensor]]] = []
    starts = range(0, len(frames), batch_size)
    for s in tqdm(starts, desc="SAM 2 features", disable=not progress):
        batch = torch.stack([sam2_image_tensor(f, predictor.image_size) for f in frames[s:s + batch_size]])
        bo = predictor.forward_image(batch.to(predictor.device))
        outs.extend(split_backbone_out(bo, i) for i in range(batch.shape[0]))
    return outs
