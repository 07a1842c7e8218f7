"""Precision policy of the official pipeline.

Encoders (Pi3, SAM 2 image encoder) run under CUDA autocast in bf16 (fp16 below compute capability 8);
the heads run in fp32 (they cast their inputs with ``.float()``); on CPU everything is fp32.
"""
from __future__ import annotations

import contextlib

import torch


def encoder_autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """bf16 on CUDA with compute capability >= 8, fp16 on older CUDA GPUs, None (fp32) elsewhere."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def encoder_autocast(device: torch.device | str, enabled: bool | torch.dtype = True):
    """Context manager: the official encoder autocast for ``device`` (a no-op on CPU or when disabled).

    ``enabled``: True = official policy, False = fp32, or an explicit CUDA autocast dtype (bf16/fp16).
    """
    if isinstance(enabled, torch.dtype):
        dtype = enabled if torch.device(device).type == "cuda" and enabled != torch.float32 else None
    else:
        dtype = encoder_autocast_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)
