"""Image transforms of the official pipeline.

* Pi3: each frame resized with PIL Lanczos to a size holding ≈255k pixels (multiples of 14, aspect kept as
  well as possible; also upscales small videos), then ``uint8 / 255`` (``pil_image_to_tensor_pi3``).
* SAM 2: ``uint8 / 255`` -> resize to 1024x1024 (bilinear, antialias — what torchvision's ``Resize`` does on
  float tensors; aspect ratio NOT kept) -> ImageNet normalisation (``SAM2Transforms(1024)``).
Frames are RGB uint8 (H, W, 3) numpy arrays (or PIL images).
"""
from __future__ import annotations

import math

import numpy as np

PI3_PIXEL_LIMIT = 255000
PI3_PATCH_SIZE = 14
SAM2_IMAGE_SIZE = 1024
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pi3_target_size(width: int, height: int, pixel_limit: int = PI3_PIXEL_LIMIT,
                    patch_size: int = PI3_PATCH_SIZE) -> tuple[int, int]:
    """Pi3 input size ``(H, W)`` for a ``width x height`` video (note the argument order W, H -> H, W).

    scale = sqrt(limit / (W·H)); k, m = round(W·scale / 14), round(H·scale / 14) (Python round); while the
    area exceeds the limit, shrink the side that is too long relative to the aspect ratio.
    """
    for name, value in (("width", width), ("height", height), ("pixel_limit", pixel_limit),
                        ("patch_size", patch_size)):
        if not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"pi3_target_size: {name} must be a positive integer, got {value!r}")
    if pixel_limit < patch_size * patch_size:
        raise ValueError(f"pixel_limit {pixel_limit} is smaller than one {patch_size}x{patch_size} patch")
    scale = math.sqrt(pixel_limit / (width * height))
    target_w, target_h = width * scale, height * scale
    k, m = round(target_w / patch_size), round(target_h / patch_size)
    while (k * patch_size) * (m * patch_size) > pixel_limit:
        if m <= 1 or (k > 1 and k / m > target_w / target_h):
            k -= 1
        else:
            m -= 1
    return patch_size * max(1, m), patch_size * max(1, k)


def _as_uint8_rgb(frame, what: str = "frame") -> np.ndarray:
    try:
        from PIL import Image
        if isinstance(frame, Image.Image):
            frame = np.asarray(frame.convert("RGB"))
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{what} must be an RGB uint8 array (H, W, 3), got dtype {arr.dtype} shape {arr.shape}")
    return arr


def pi3_resize(frame, size_hw: tuple[int, int]) -> np.ndarray:
    """PIL Lanczos resize of one RGB uint8 frame to ``size_hw = (H, W)``; returns uint8 (H, W, 3)."""
    from PIL import Image

    arr = _as_uint8_rgb(frame)
    height, width = size_hw
    if arr.shape[:2] == (height, width):
        return arr
    return np.asarray(Image.fromarray(arr).resize((width, height), Image.LANCZOS))


def pi3_image_tensor(frames, size_hw: tuple[int, int] | None = None, pixel_limit: int = PI3_PIXEL_LIMIT):
    """Frames (one (H,W,3) array or a sequence) -> float32 tensor (N, 3, Hp, Wp) in [0, 1].

    ``size_hw`` defaults to :func:`pi3_target_size` of the first frame (all frames of a video share it).
    """
    import torch

    if isinstance(frames, np.ndarray) and frames.ndim == 3:
        frames = [frames]
    frames = [_as_uint8_rgb(f, f"frame {i}") for i, f in enumerate(frames)]
    if not frames:
        raise ValueError("pi3_image_tensor needs at least one frame")
    if size_hw is None:
        h0, w0 = frames[0].shape[:2]
        size_hw = pi3_target_size(w0, h0, pixel_limit)
    resized = np.stack([pi3_resize(f, size_hw) for f in frames])
    return torch.from_numpy(resized).permute(0, 3, 1, 2).float().div(255)


def sam2_image_tensor(frames, image_size: int = SAM2_IMAGE_SIZE):
    """Frame (H,W,3) -> (3, S, S), or a sequence / (N,H,W,3) array -> (N, 3, S, S): the SAM 2 input.

    ``F.interpolate(mode='bilinear', antialias=True, align_corners=False)`` on the [0,1] float tensor is
    exactly torchvision's ``Resize((S, S))`` for tensors (torchvision ≥ 0.17 default antialias=True).
    """
    import torch
    import torch.nn.functional as F

    single = isinstance(frames, np.ndarray) and frames.ndim == 3
    if single:
        frames = [frames]
    frames = [_as_uint8_rgb(f, f"frame {i}") for i, f in enumerate(frames)]
    if not frames:
        raise ValueError("sam2_image_tensor needs at least one frame")
    outs = []
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for arr in frames:  # frames may differ in size; each is resized on its own
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float().div(255)
        x = F.interpolate(x[None], size=(image_size, image_size), mode="bilinear", align_corners=False,
                          antialias=True)[0]
        outs.append((x - mean) / std)
    out = torch.stack(outs)
    return out[0] if single else out
