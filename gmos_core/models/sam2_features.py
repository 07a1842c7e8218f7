"""SAM 2.1 on top of the PyPI ``sam2==1.1.0`` package: building the video predictor and extracting the
features the GMOS heads consume.

One image-encoder pass per frame gives the raw ``backbone_out`` (cached by the engine and reused by the
propagator) and, from it, the heads' inputs exactly as the official pipeline computes them:
``forward_image`` (applies ``conv_s0``/``conv_s1`` to the two high-resolution levels), then
``_prepare_backbone_features``, ``bottleneck + no_mem_embed`` (not in place), reshaped back to NCHW.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from gmos_core.models.precision import encoder_autocast

PACKAGED_L_CONFIG = "configs/sam2.1/sam2.1_hiera_l.yaml"
TINY_CONFIG_PATH = Path(__file__).resolve().parents[1] / "configs" / "sam2_tiny.yaml"

# The builder's post-processing overrides (as sam2.build_sam.build_sam2_video_predictor applies them),
# except hole filling: the official run has no compiled sam2._C, so its fill_hole_area=8 is a no-op; we set
# 0 so that an install *with* _C behaves the same (reference §9).
_POSTPROCESSING_OVERRIDES = [
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
]


def _compose_sam2_config(config: str | os.PathLike, overrides: list[str]):
    """Compose a SAM 2 Hydra config given a packaged name (``configs/sam2.1/...``) or a YAML file path.

    The global Hydra state is restored afterwards, so other users of ``sam2`` (which initialises Hydra on
    import) are unaffected.
    """
    import sam2  # noqa: F401  (initialises Hydra with the sam2 config module)
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    path = Path(config)
    is_file = path.suffix in (".yaml", ".yml") and path.is_file()
    if not is_file and (path.is_absolute() or not str(config).startswith("configs/")):
        raise FileNotFoundError(
            f"SAM 2 config {str(config)!r} is neither an existing YAML file nor a packaged sam2 config name "
            f"(expected e.g. {PACKAGED_L_CONFIG!r} or a path to a .yaml file)")
    backup = get_gh_backup()
    try:
        GlobalHydra.instance().clear()
        if is_file:
            with initialize_config_dir(config_dir=str(path.resolve().parent), version_base="1.2"):
                return compose(config_name=path.name, overrides=overrides)
        with initialize_config_module("sam2", version_base="1.2"):
            return compose(config_name=str(config), overrides=overrides)
    finally:
        restore_gh_from_backup(backup)


@contextlib.contextmanager
def _meta_device():
    """Build modules on the meta device (no weight allocation). Hiera computes its drop-path schedule with
    ``torch.linspace(...).item()``, which meta tensors cannot do, so linspace stays on the CPU here."""
    real_linspace = torch.linspace

    def cpu_linspace(*args, **kwargs):
        kwargs.setdefault("device", "cpu")
        return real_linspace(*args, **kwargs)

    torch.linspace = cpu_linspace
    try:
        with torch.device("meta"):
            yield
    finally:
        torch.linspace = real_linspace


def build_sam2_predictor(config: str | os.PathLike = PACKAGED_L_CONFIG,
                         checkpoint: str | os.PathLike | None = None,
                         device: str | torch.device = "cpu", *, allow_unsafe_pickle: bool = False,
                         hydra_overrides: list[str] | None = None, meta: bool = False,
                         memory_dtype_shim: bool = False,
                         target: str = "sam2.sam2_video_predictor.SAM2VideoPredictor"):
    """Build a PyPI ``SAM2VideoPredictor`` (eval mode, ``fill_hole_area=0``) and load a checkpoint.

    ``config``: packaged name (``configs/sam2.1/sam2.1_hiera_l.yaml``) or a YAML path (e.g. the tiny
    :data:`TINY_CONFIG_PATH`). ``checkpoint``: the official ``sam2.1_hiera_large.pt`` (``{"model": sd}``,
    read with ``weights_only=True``) or a safetensors file; None keeps random weights. Loading is strict:
    missing / unexpected / misshaped keys raise ``WeightLoadError``. ``meta=True`` builds on the meta
    device without allocating weights (key/shape checks). ``memory_dtype_shim=True`` installs
    :func:`install_memory_dtype_shim` (needed to track in float32 without autocast, e.g. on CPU).
    ``target``: the predictor class to instantiate (dotted path), e.g. a subclass adding object IoUs.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    overrides = [f"++model._target_={target}",
                 *_POSTPROCESSING_OVERRIDES, *(hydra_overrides or [])]
    cfg = _compose_sam2_config(config, overrides)
    OmegaConf.resolve(cfg)
    if meta:
        with _meta_device():
            predictor = instantiate(cfg.model, _recursive_=True)
    else:
        predictor = instantiate(cfg.model, _recursive_=True)
    predictor.fill_hole_area = 0
    if checkpoint is not None:
        if meta:
            raise ValueError("cannot load a checkpoint into a meta-device predictor")
        from gmos_core.weights import load_sam2_predictor_weights

        load_sam2_predictor_weights(predictor, checkpoint, allow_unsafe_pickle=allow_unsafe_pickle)
    if not meta:
        predictor = predictor.to(device)
    predictor.eval()
    for p in predictor.parameters():
        p.requires_grad_(False)
    if memory_dtype_shim:
        install_memory_dtype_shim(predictor)
    return predictor


def _cast_memory_to_curr_dtype(module, args, kwargs):
    """Forward pre-hook for ``memory_attention``: cast ``memory`` (bf16 maskmem features) to ``curr``'s dtype."""
    curr = kwargs.get("curr", args[0] if args else None)
    memory = kwargs.get("memory", args[1] if len(args) > 1 else None)
    if curr is None or memory is None:
        return None
    if torch.is_autocast_enabled(memory.device.type):
        return None  # under autocast (the official CUDA run) the dtypes already agree: no cast, as officially
    curr_dtype = (curr[0] if isinstance(curr, (list, tuple)) else curr).dtype
    if memory.dtype == curr_dtype:
        return None
    memory = memory.to(curr_dtype)
    if "memory" in kwargs:
        kwargs = {**kwargs, "memory": memory}
    else:
        args = (args[0], memory, *args[2:])
    return args, kwargs


def install_memory_dtype_shim(predictor):
    """CPU float32 shim (fixtures README §6): SAM2VideoPredictor stores ``maskmem_features`` in bf16; on a
    frame whose memory has no object-pointer tokens that bf16 tensor reaches a float32 Linear and raises
    without autocast. The hook casts ``memory`` to ``curr``'s dtype (values stay bf16-rounded, exactly what
    the reference run did). Needed for float32 runs (CPU); harmless under CUDA autocast.
    Returns the hook handle (``.remove()`` undoes it); installing twice is a no-op.
    """
    existing = getattr(predictor, "_gmos_memory_dtype_shim", None)
    if existing is not None:
        return existing
    handle = predictor.memory_attention.register_forward_pre_hook(_cast_memory_to_curr_dtype, with_kwargs=True)
    predictor._gmos_memory_dtype_shim = handle
    return handle


def remove_memory_dtype_shim(predictor) -> bool:
    """Undo :func:`install_memory_dtype_shim`; returns whether a shim was installed."""
    handle = getattr(predictor, "_gmos_memory_dtype_shim", None)
    if handle is None:
        return False
    handle.remove()
    predictor._gmos_memory_dtype_shim = None
    return True


class Sam2Features:
    """SAM 2 image features for the GMOS heads from a ``SAM2VideoPredictor`` (not an nn.Module: the
    predictor owns the weights; this adds the official feature path).

    ``encode(sam_rgb (B,3,1024,1024)) -> backbone_out`` (raw, what the propagator caches; high-res levels
    already through conv_s0/conv_s1); ``head_inputs(backbone_out) -> (sam_btn (B,C,64,64), [s0, s1])`` in
    float32; ``split(backbone_out)`` -> per-frame ``backbone_out`` dicts (bottleneck cloned) for caching.
    """

    def __init__(self, predictor, autocast: bool | torch.dtype = True) -> None:
        """``autocast``: True = official policy (bf16 / fp16 on CUDA, fp32 on CPU), False = fp32, or a dtype."""
        self.predictor = predictor
        self.autocast = autocast

    @property
    def device(self) -> torch.device:
        return next(self.predictor.parameters()).device

    @property
    def image_size(self) -> int:
        return int(self.predictor.image_size)

    @torch.inference_mode()
    def encode(self, sam_rgb: torch.Tensor) -> dict:
        size = self.image_size
        if sam_rgb.ndim != 4 or tuple(sam_rgb.shape[1:]) != (3, size, size):
            raise ValueError(f"sam_rgb must be (B, 3, {size}, {size}) normalised (gmos_core.preprocess."
                             f"sam2_image_tensor), got {tuple(sam_rgb.shape)}")
        sam_rgb = sam_rgb.to(self.device)
        with encoder_autocast(self.device, enabled=self.autocast):
            return self.predictor.forward_image(sam_rgb)

    @torch.inference_mode()
    def head_inputs(self, backbone_out: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
        predictor = self.predictor
        _, vision_feats, _, feat_sizes = predictor._prepare_backbone_features(backbone_out)
        if predictor.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + predictor.no_mem_embed  # not in place: backbone_out kept raw
        batch = vision_feats[-1].shape[1]
        feats = [feat.permute(1, 2, 0).reshape(batch, -1, *size).float()
                 for feat, size in zip(vision_feats, feat_sizes)]
        return feats[-1], feats[:-1]

    def __call__(self, sam_rgb: torch.Tensor):
        """encode + head_inputs: returns (backbone_out, sam_btn, high_res)."""
        backbone_out = self.encode(sam_rgb)
        sam_btn, high_res = self.head_inputs(backbone_out)
        return backbone_out, sam_btn, high_res

    @staticmethod
    def split(backbone_out: dict) -> list[dict]:
        """Per-frame views of a batched ``backbone_out`` (batch dim kept as 1), as the official feature cache
        stores them; the bottleneck level is cloned so later in-place edits of one frame cannot leak."""
        fpn = backbone_out["backbone_fpn"]
        pos = backbone_out["vision_pos_enc"]
        frames = []
        for i in range(fpn[0].shape[0]):
            levels = [level[i:i + 1] for level in fpn]
            levels[-1] = levels[-1].clone()
            frames.append({"vision_features": levels[-1], "vision_pos_enc": [p[i:i + 1] for p in pos],
                           "backbone_fpn": levels})
        return frames
