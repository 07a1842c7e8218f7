"""ONNX export of the GMOS networks: Pi3 encoder (DINOv2, per frame), Pi3 decoder (per window) and the heads.

The exported graphs are thin wrappers around the same ``nn.Module``s the PyTorch path runs (the PyTorch path
stays the reference); only the input/output layout is made explicit so that every size is a tensor dimension:

* ``pi3_encoder.onnx``  images (M, 3, H, W) float32 in [0, 1]  →  tokens (M, H/14, W/14, C)
* ``pi3_decoder.onnx``  tokens (N, h, w, C), one window of N frames  →  features (N, h, w, C)
* ``head.onnx``         token (B, h, w, C), sam_btn (B, S, 64, 64), high_res_0 (B, S/8, 256, 256),
                        high_res_1 (B, S/4, 128, 128)  →  the head's outputs (HEAD_OUTPUTS, in that order)

H and W, M and B are dynamic; the window length N is fixed (the model's window size). H and W must be
multiples of 14: the graphs do not check it (onnxruntime runs other sizes with a truncated patch grid, where
PyTorch raises), so feed them what ``gmos_core.preprocess.pi3_target_size`` gives, as the engine does.
Exported with ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript), opset ``OPSET``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

OPSET = 18  # Resize with antialias (DINOv2's bicubic position-embedding resize) needs opset >= 18
HEAD_OUTPUTS = {
    "gmos_s": ("fg_mask", "iou_pred", "conf_pred"),
    "proposer": ("mask", "motion_logits", "iou_pred", "conf_pred"),
}
PATCH = 14


class ExportError(RuntimeError):
    """A model could not be exported (the message says which graph and why)."""


@contextlib.contextmanager
def export_friendly_rope():
    """Swap RoPE2D's cached angle table (its size depends on the *values* of the positions, which torch.export
    cannot trace) for angles computed from the positions directly. Same float32 products, same cast before
    cos/sin, so the values are identical (checked by test/export). Restored on exit."""
    from gmos_core.models.layers.rope import RoPE2D

    original = RoPE2D.forward

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        half = tokens.shape[-1] // 2
        inv_freq = 1.0 / (self.base ** (torch.arange(0, half, 2, device=tokens.device).float() / half))

        def rotate(part: torch.Tensor, pos1d: torch.Tensor) -> torch.Tensor:
            angles = (pos1d.float()[..., None] * inv_freq).to(tokens.dtype)
            angles = torch.cat((angles, angles), dim=-1)[:, None]
            return part * angles.cos() + self._rotate_half(part) * angles.sin()

        y, x = tokens.chunk(2, dim=-1)
        return torch.cat((rotate(y, positions[:, :, 0]), rotate(x, positions[:, :, 1])), dim=-1)

    RoPE2D.forward = forward
    try:
        yield
    finally:
        RoPE2D.forward = original


class Pi3EncoderGraph(nn.Module):
    """images (M, 3, H, W) in [0, 1] → DINOv2 tokens (M, H/14, W/14, C) (what the engine caches per frame)."""

    def __init__(self, pi3) -> None:
        super().__init__()
        self.pi3 = pi3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m, _, height, width = images.shape
        tokens = self.pi3.encode_frames(images)
        return tokens.reshape(m, height // PATCH, width // PATCH, tokens.shape[-1])


class Pi3DecoderGraph(nn.Module):
    """tokens (N, h, w, C) of one window → decoded features (N, h, w, C)."""

    def __init__(self, pi3) -> None:
        super().__init__()
        self.pi3 = pi3

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, h, w, c = tokens.shape
        return self.pi3.decode(tokens.reshape(n, h * w, c), n, h * PATCH, w * PATCH)[0]


class HeadGraph(nn.Module):
    """A GMOS head with positional inputs and a tuple of outputs (HEAD_OUTPUTS[variant] order)."""

    def __init__(self, head, variant: str) -> None:
        super().__init__()
        if variant not in HEAD_OUTPUTS:
            raise ValueError(f"head variant {variant!r}; expected one of {sorted(HEAD_OUTPUTS)}")
        self.head, self.variant = head, variant

    def forward(self, token, sam_btn, high_res_0, high_res_1):
        out = self.head(token, sam_btn, [high_res_0, high_res_1])
        return tuple(out[name] for name in HEAD_OUTPUTS[self.variant])


def head_variant(head) -> str:
    from gmos_core.models import GMOSS

    return "gmos_s" if isinstance(head, GMOSS) else "proposer"


def head_sample_inputs(head, token_hw: tuple[int, int], batch: int = 1, seed: int = 0):
    """Random inputs of the shapes the engine feeds ``head`` (from its config: pi3_dim, sam_dim)."""
    cfg = head.config if hasattr(head, "config") else None
    pi3_dim = int(getattr(cfg, "pi3_dim", 1024))
    sam_dim = int(getattr(cfg, "sam_dim", 256))
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, *token_hw, pi3_dim, generator=g),
            torch.randn(batch, sam_dim, 64, 64, generator=g),
            torch.randn(batch, sam_dim // 8, 256, 256, generator=g),
            torch.randn(batch, sam_dim // 4, 128, 128, generator=g))


def max_patches(pixel_limit: int) -> int:
    """Most 14x14 patches a frame can have under the Pi3 pixel budget (the bound of the dynamic H, W)."""
    return max(1, int(pixel_limit) // (PATCH * PATCH))


def _dims(pixel_limit: int):
    from torch.export import Dim

    side = max(2, max_patches(pixel_limit))
    return Dim("h_patches", min=1, max=side), Dim("w_patches", min=1, max=side)


def _export(module: nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_shapes,
            external_data: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with export_friendly_rope(), torch.no_grad(), contextlib.redirect_stdout(None):
        try:
            program = torch.onnx.export(module, args, dynamo=True, input_names=list(input_names),
                                        output_names=list(output_names), dynamic_shapes=dynamic_shapes,
                                        opset_version=OPSET, optimize=True, verbose=False)
        except Exception as exc:  # the exporter's own errors are long: keep the first line, chain the rest
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"ONNX export of {path.name} failed: {first}") from exc
    for stale in (path, path.with_name(path.name + ".data")):
        if stale.exists():
            stale.unlink()
    program.save(str(path), external_data=external_data)


def export_pi3_encoder(pi3, path: str | Path, sample_hw: tuple[int, int], pixel_limit: int = 255000,
                       external_data: bool = True) -> Path:
    """Export the per-frame DINOv2 encoder with dynamic frame count and H x W (multiples of 14)."""
    from torch.export import Dim

    hp, wp = _dims(pixel_limit)
    images = torch.rand(2, 3, *sample_hw)
    shapes = {"images": {0: Dim("frames", min=1, max=64), 2: PATCH * hp, 3: PATCH * wp}}
    path = Path(path)
    _export(Pi3EncoderGraph(pi3), (images,), path, ["images"], ["tokens"], shapes, external_data)
    return path


def export_pi3_decoder(pi3, path: str | Path, window_size: int, sample_hw: tuple[int, int],
                       pixel_limit: int = 255000, external_data: bool = True) -> Path:
    """Export the window decoder (N = ``window_size`` frames) with dynamic h x w patches."""
    hp, wp = _dims(pixel_limit)
    tokens = torch.randn(window_size, sample_hw[0] // PATCH, sample_hw[1] // PATCH, pi3.embed_dim)
    shapes = {"tokens": {1: hp, 2: wp}}
    path = Path(path)
    _export(Pi3DecoderGraph(pi3), (tokens,), path, ["tokens"], ["features"], shapes, external_data)
    return path


def export_head(head, path: str | Path, sample_token_hw: tuple[int, int], pixel_limit: int = 255000,
                external_data: bool = False) -> Path:
    """Export a GMOS-S or proposer head with dynamic batch and Pi3 token grid."""
    from torch.export import Dim

    variant = head_variant(head)
    hp, wp = _dims(pixel_limit)
    batch = Dim("batch", min=1, max=64)
    args = head_sample_inputs(head, sample_token_hw, batch=2)
    shapes = {"token": {0: batch, 1: hp, 2: wp}, "sam_btn": {0: batch}, "high_res_0": {0: batch},
              "high_res_1": {0: batch}}
    path = Path(path)
    _export(HeadGraph(head, variant), args, path, ["token", "sam_btn", "high_res_0", "high_res_1"],
            HEAD_OUTPUTS[variant], shapes, external_data)
    return path


# ---------------------------------------------------------------------------------------------- running
def onnx_session(path: str | Path, threads: Optional[int] = None):
    """An onnxruntime CPU session (raises ImportError naming the missing package)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError("onnxruntime is not installed; expected `pip install onnxruntime` "
                          "(or the project's extra: pip install -e .[onnx])") from exc
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def run_session(session, *inputs: torch.Tensor) -> list:
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(inputs):
        raise ValueError(f"the ONNX graph takes inputs {names}; got {len(inputs)} arrays")
    return session.run(None, {n: x.detach().cpu().numpy() for n, x in zip(names, inputs)})


# ---------------------------------------------------------------------------------------------- manifests
def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def state_dict_sha256(module: nn.Module) -> str:
    """Hash of a module's weights (names, shapes, dtypes and bytes): the weights part of an engine-cache key."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass
class ExportedGraph:
    name: str
    file: str
    inputs: list
    outputs: list
    dynamic: dict
    weights_sha256: str
    files_sha256: dict = field(default_factory=dict)
    seconds: float = 0.0


MANIFEST = "manifest.json"


def export_model_set(pi3, head, out_dir: str | Path, metadata: dict, *, window_size: int = 5,
                     sample_hw: tuple[int, int] = (378, 672), pixel_limit: int = 255000,
                     components: Sequence[str] = ("pi3_encoder", "pi3_decoder", "head"),
                     progress=print) -> dict:
    """Export the named graphs into ``out_dir`` with a ``manifest.json`` holding the checkpoint metadata
    (``metadata``: the GMOS metadata strings), per graph the input/output names, dynamic dimensions, the
    weights hash and the files' sha256. Returns the manifest."""
    import onnx

    known = ("pi3_encoder", "pi3_decoder", "head")
    unknown = [c for c in components if c not in known]
    if unknown:
        raise ValueError(f"unknown export component(s) {unknown}; expected names from {list(known)}")
    if sample_hw[0] % PATCH or sample_hw[1] % PATCH:
        raise ValueError(f"sample size {sample_hw} must be multiples of {PATCH} (gmos_core.preprocess.pi3_target_size)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graphs = []
    token_hw = (sample_hw[0] // PATCH, sample_hw[1] // PATCH)
    pi3_hash = state_dict_sha256(pi3) if {"pi3_encoder", "pi3_decoder"} & set(components) else ""
    for name in components:
        t0 = time.monotonic()
        path = out_dir / f"{name}.onnx"
        progress(f"exporting {name} → {path}")
        if name == "pi3_encoder":
            export_pi3_encoder(pi3, path, sample_hw, pixel_limit)
            graph = ExportedGraph(name, path.name, ["images"], ["tokens"],
                                  {"images": ["frames", "3", "14*h_patches", "14*w_patches"]}, pi3_hash)
        elif name == "pi3_decoder":
            export_pi3_decoder(pi3, path, window_size, sample_hw, pixel_limit)
            graph = ExportedGraph(name, path.name, ["tokens"], ["features"],
                                  {"tokens": [str(window_size), "h_patches", "w_patches", "C"]}, pi3_hash)
        else:
            export_head(head, path, token_hw, pixel_limit)
            variant = head_variant(head)
            graph = ExportedGraph(name, path.name, ["token", "sam_btn", "high_res_0", "high_res_1"],
                                  list(HEAD_OUTPUTS[variant]), {"token": ["batch", "h_patches", "w_patches", "C"],
                                                                "sam_btn": ["batch"], "high_res_0": ["batch"],
                                                                "high_res_1": ["batch"]},
                                  state_dict_sha256(head))
        # the checkpoint metadata travels inside every graph too (onnx metadata_props)
        model = onnx.load(str(path), load_external_data=False)
        del model.metadata_props[:]
        for key, value in {**metadata, "gmos_graph": name, "weights_sha256": graph.weights_sha256}.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = str(key), str(value)
        onnx.save(model, str(path))
        files = [path] + ([path.with_name(path.name + ".data")] if path.with_name(path.name + ".data").exists() else [])
        graph.files_sha256 = {f.name: sha256_file(f) for f in files}
        graph.seconds = round(time.monotonic() - t0, 1)
        graphs.append(graph)
        progress(f"  {name}: {sum(f.stat().st_size for f in files) / 2**20:.1f} MiB in {graph.seconds} s")
    manifest = {
        "format": "gmos-onnx-1",
        "opset": OPSET,
        "torch": torch.__version__,
        "window_size": window_size,
        "pixel_limit": pixel_limit,
        "max_patches_per_frame": max_patches(pixel_limit),
        "sample_hw": list(sample_hw),
        "metadata": dict(metadata),
        "graphs": [asdict(g) for g in graphs],
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def read_manifest(out_dir: str | Path) -> dict:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no export manifest; expected a folder written by `gmos export`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != "gmos-onnx-1":
        raise ValueError(f"{path}: format {manifest.get('format')!r}; expected 'gmos-onnx-1'")
    return manifest
