"""The node's accelerated path: TensorRT engines behind the EngineModels interface, and warm-up at activate.

``accelerate_models(models, params)`` returns the models unchanged (PyTorch) unless the node has an
``engine_cache_dir``, runs on CUDA and TensorRT is installed; then it returns :class:`TensorRTModels`, which
on the first frame (when the input size is known) exports the ONNX graphs once per weights into
``engine_cache_dir/onnx/<weights hash>/`` and builds (or reuses from the cache) one TensorRT engine per graph
for that size, precision, GPU and TensorRT version. Any TensorRT failure is logged once and the PyTorch path
carries on: the outputs never depend on whether an engine could be built.

``warm_up(engine, params)`` pushes ``warmup_frames`` synthetic frames of ``warmup_image_size`` through the
engine at activate (first-call costs: CUDA context, cuBLAS/cuDNN plans, TensorRT engine builds) and resets it.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Optional

from gmos_core.export.tensorrt_cache import (EngineCache, TensorRTUnavailable, build_engine_bytes, key_for,
                                             say_once, select_backend)

_log = logging.getLogger("gmos.export")


def parse_image_size(text: str) -> tuple[int, int]:
    """"WIDTHxHEIGHT" → (width, height); ValueError naming the expected form."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match or int(match.group(1)) < 2 or int(match.group(2)) < 2:
        raise ValueError(f"image size {text!r}; expected WIDTHxHEIGHT in pixels, e.g. '640x480'")
    return int(match.group(1)), int(match.group(2))


def trt_precision(precision: str, device: str) -> str:
    """The TensorRT precision of the encoders for the node's ``precision``: auto = bf16 on compute capability
    >= 8 (the official numerics) where TensorRT supports it, else fp16."""
    if precision in ("fp32", "fp16", "bf16"):
        return precision
    try:
        import tensorrt as trt
        import torch

        major, _ = torch.cuda.get_device_capability(device)
        if major >= 8 and hasattr(trt.BuilderFlag, "BF16"):
            return "bf16"
    except Exception:
        pass
    return "fp16"


def accelerate_models(models, params, logger: Any = None):
    """TensorRTModels over ``models`` where the node's parameters and this machine allow it, else ``models``."""
    cache_dir = getattr(params, "engine_cache_dir", "") or ""
    if getattr(models, "pi3", None) is None:  # weight-free pipelines (geometric) have nothing to accelerate
        return models
    backend, why = select_backend(str(params.device), cache_dir, logger)
    if backend != "tensorrt":
        (logger or _log).info(f"GMOS: PyTorch path ({why})")
        if getattr(params, "torch_compile", False):
            if str(params.device).startswith("cuda"):
                compile_pi3_decoder(models)
            else:
                say_once("torch-compile-cpu", "GMOS: torch_compile applies on CUDA only; running eager on "
                         f"{params.device}", logger)
        return models
    return TensorRTModels(models, EngineCache(cache_dir, logger), trt_precision(params.precision, params.device),
                          logger=logger)


def compile_pi3_decoder(models, backend: str = "inductor"):
    """Replace ``models.pi3.decode`` by its ``torch.compile`` (static shapes: one compile per camera size, at the
    first window or during warm-up). Measured on an H200 in bf16: decoder 76.5 → 47.2 ms, 16.8 s to compile
    (docs/gpu.md); DINOv2 gained nothing, so only the decoder is compiled. Returns ``models``."""
    import torch

    pi3 = models.pi3
    if getattr(pi3, "_gmos_compiled_decode", False):
        return models
    pi3.decode = torch.compile(pi3.decode, dynamic=False, backend=backend)
    pi3._gmos_compiled_decode = True
    return models


class TensorRTModels:
    """EngineModels whose Pi3 encoder, Pi3 decoder and head run as TensorRT engines (SAM 2 and the propagator
    stay in PyTorch). Everything not overridden is the wrapped models' own."""

    def __init__(self, base, cache: EngineCache, precision: str, logger: Any = None) -> None:
        self._base = base
        self._cache = cache
        self._precision = precision
        self._log = logger or _log
        self._graphs: dict[str, Any] = {}
        self._size: Optional[tuple[int, int]] = None
        self._failed: Optional[str] = None
        self.engine_paths: dict[str, Path] = {}

    def __getattr__(self, name):  # only called for attributes not found on this object
        return getattr(self._base, name)

    @property
    def backend(self) -> str:
        return "pytorch" if self._failed or not self._graphs else "tensorrt"

    # ------------------------------------------------------------------ engines
    def _export_dir(self) -> Path:
        from gmos_core.export.onnx_export import state_dict_sha256

        if not hasattr(self, "_weights_hash"):
            self._weights_hash = state_dict_sha256(self._base.pi3)[:16] + state_dict_sha256(self._base.head)[:16]
        return self._cache.directory / "onnx" / self._weights_hash

    def _ensure(self, height: int, width: int) -> bool:
        """Engines for a (height, width) Pi3 input; False (PyTorch path) after any failure."""
        if self._failed:
            return False
        if self._size == (height, width):
            return True
        try:
            self._build(height, width)
            self._size = (height, width)
            return True
        except Exception as exc:  # TensorRT problems must never stop the node: fall back, say it once
            self._failed = f"{type(exc).__name__}: {exc}"
            say_once("tensorrt-failed", f"GMOS: TensorRT engines unavailable ({self._failed}); running the PyTorch "
                     "path", self._log, level="error")
            self._graphs = {}
            return False

    def _build(self, height: int, width: int) -> None:
        from gmos_core.export.onnx_export import export_model_set, head_variant, read_manifest
        from gmos_core.export.tensorrt_cache import TrtGraph

        from gmos_core.export.tensorrt_cache import gpu_identity, tensorrt_version

        base = self._base
        index = _device_index(base.device)
        gpu_identity(index), tensorrt_version()  # fail before exporting anything when TensorRT cannot run
        out = self._export_dir()
        window = int(base.window_size)
        try:
            manifest = read_manifest(out)
        except FileNotFoundError:
            self._log.info(f"GMOS: exporting ONNX graphs to {out} (once per weights; minutes for the full model)")
            manifest = export_model_set(base.pi3, base.head, out, _metadata_strings(base), window_size=window,
                                        sample_hw=(height, width), progress=self._log.info)
        graphs = {g["name"]: g for g in manifest["graphs"]}
        h, w = height // 14, width // 14
        c = int(base.pi3.embed_dim)
        head_cfg = getattr(base.head, "config", None)
        pi3_dim, sam_dim = int(getattr(head_cfg, "pi3_dim", c)), int(getattr(head_cfg, "sam_dim", 256))
        shapes = {
            "pi3_encoder": [("images", (1, 3, height, width))],
            "pi3_decoder": [("tokens", (window, h, w, c))],
            "head": [("token", (1, h, w, pi3_dim)), ("sam_btn", (1, sam_dim, 64, 64)),
                     ("high_res_0", (1, sam_dim // 8, 256, 256)), ("high_res_1", (1, sam_dim // 4, 128, 128))],
        }
        for name, input_shapes in shapes.items():
            graph = graphs[name]
            onnx_path = out / graph["file"]
            precision = "fp32" if name == "head" else self._precision  # heads run fp32, as the PyTorch path
            key = key_for(name, onnx_path, graph["weights_sha256"], input_shapes, precision, device_index=index,
                          onnx_sha256=graph["files_sha256"][graph["file"]])
            path, built = self._cache.get_or_build(
                key, lambda p=onnx_path, s=input_shapes, q=precision: build_engine_bytes(p, s, q))
            self.engine_paths[name] = path
            self._graphs[name] = TrtGraph(path)
            self._log.info(f"GMOS: TensorRT {name} engine {'built' if built else 'reused'}: {path.name}")
        self._head_outputs = head_variant(base.head)

    # ------------------------------------------------------------------ the EngineModels interface
    def encode_tokens(self, images):
        import torch

        if not self._ensure(int(images.shape[-2]), int(images.shape[-1])):
            return self._base.encode_tokens(images)
        graph = self._graphs["pi3_encoder"]
        tokens = [graph(images[i:i + 1].float())[0] for i in range(images.shape[0])]
        out = torch.cat(tokens)
        return out.reshape(out.shape[0], -1, out.shape[-1])

    def decode_anchor(self, hidden, num_frames: int, height: int, width: int, position: int):
        import torch

        if not self._ensure(height, width) or num_frames != int(self._base.window_size):
            return self._base.decode_anchor(hidden, num_frames, height, width, position)
        graph = self._graphs["pi3_decoder"]
        h, w = height // 14, width // 14
        windows = hidden.reshape(-1, num_frames, h, w, hidden.shape[-1])
        return torch.stack([graph(win)[0][position] for win in windows]).float()

    def run_head(self, token, sam_btn, high_res) -> dict:
        from gmos_core.export.onnx_export import HEAD_OUTPUTS

        if self._failed or "head" not in self._graphs:
            return self._base.run_head(token, sam_btn, high_res)
        graph = self._graphs["head"]
        outs = [graph(token[b:b + 1].float(), sam_btn[b:b + 1].float(), high_res[0][b:b + 1].float(),
                      high_res[1][b:b + 1].float()) for b in range(token.shape[0])]
        import torch

        names = HEAD_OUTPUTS[self._head_outputs]
        return {name: torch.cat([o[i] for o in outs]) for i, name in enumerate(names)}


def _device_index(device) -> int:
    index = getattr(device, "index", None)
    return int(index) if index is not None else 0


def _metadata_strings(models) -> dict:
    """The GMOS checkpoint metadata of the running models (the contract of gmos_core.weights.metadata)."""
    from gmos_core.weights.metadata import CheckpointMetadata

    variant = "gmos_s" if getattr(models, "mode", "") == "gmos_s" else "proposer"
    meta = getattr(models, "metadata", None)
    if not isinstance(meta, CheckpointMetadata):
        pi3_cfg = models.pi3.config.to_dict() if hasattr(models.pi3.config, "to_dict") else {}
        head_cfg = models.head.config.to_dict() if hasattr(getattr(models.head, "config", None), "to_dict") else {}
        meta = CheckpointMetadata(variant=variant, anchor=models.anchor, window_size=int(models.window_size),
                                  pi3_config=pi3_cfg, head_config=head_cfg,
                                  components=("pi3", "sam2_image_encoder", "head"),
                                  name=getattr(models, "name", "") or "", trained_on=str(models.description))
    return meta.to_strings()


def warm_up(engine, params, logger: Any = None) -> int:
    """Push ``params.warmup_frames`` synthetic frames of ``params.warmup_image_size`` through ``engine`` and
    reset it (nothing is published). Returns the number of frames pushed."""
    import numpy as np

    frames = int(getattr(params, "warmup_frames", 0) or 0)
    if frames <= 0:
        return 0
    width, height = parse_image_size(getattr(params, "warmup_image_size", "640x480"))
    period_ns = int(1e9 / (params.fps or 30.0))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    for i in range(frames):
        engine.push(image, (i + 1) * period_ns, "warm-up")
    engine.flush()
    engine.reset()
    (logger or _log).info(f"GMOS: warmed up with {frames} frames of {width}x{height}")
    return frames
