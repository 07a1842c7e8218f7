"""gmos_core.export: exported / compiled encoders for deployment (docs/gpu.md).

* ``onnx_export``: ONNX graphs of the Pi3 encoder (per frame), the Pi3 decoder (per window) and the heads, with
  the checkpoint metadata; ``gmos export`` writes them (``gmos_core.cli.export``).
* ``parity``: onnxruntime (CPU) against the PyTorch modules.
* ``tensorrt_cache``: TensorRT engines built from the export on first use and cached on disk, keyed by GPU
  model, TensorRT version, input size, precision and weights hash; ``trt_status()`` says what is available.

Heavy imports (torch, onnx, onnxruntime, tensorrt) stay inside the submodules.
"""
from __future__ import annotations


def trt_status() -> dict:
    """What the TensorRT path can use here (never raises): see tensorrt_cache.trt_status."""
    from gmos_core.export.tensorrt_cache import trt_status as _status

    return _status()


__all__ = ["trt_status"]
