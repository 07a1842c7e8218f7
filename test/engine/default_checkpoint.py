"""A small random-weight model in the GMOS checkpoint format (what training/ exports and the package ships as
gmos_core/data/default_model/gmos_default.safetensors), written with gmos_core.weights.metadata: tests load it
through every entry point before (and independently of) the trained default model."""
from __future__ import annotations

from pathlib import Path

NAME = "gmos-test-tiny"
PIXEL_LIMIT = 14 * 14 * 12  # a tiny Pi3 grid (fast)
SAM2_IMAGE_SIZE = 256  # as the real default model: exercises the non-1024 SAM 2 input path


def tiny_sam2_yaml(folder: Path, image_size: int = SAM2_IMAGE_SIZE) -> Path:
    """The packaged tiny SAM 2 config at another input size, written beside the checkpoint."""
    from gmos_core.models.sam2_features import TINY_CONFIG_PATH

    text = TINY_CONFIG_PATH.read_text()
    assert "image_size: 1024" in text
    path = Path(folder) / f"sam2_tiny_{image_size}.yaml"
    path.write_text(text.replace("image_size: 1024", f"image_size: {image_size}"))
    return path


def write_tiny_checkpoint(path: Path, variant: str = "gmos_s", anchor: str = "end", seed: int = 0,
                          fg_bias: float = 0.0, **metadata_changes) -> Path:
    """Random tiny Pi3 + tiny SAM 2 image encoder + tiny head, saved in the GMOS format.

    fg_bias: added to the GMOS-S output bias so that random weights give a foreground with several connected
    components (the IoU tracker then has something to track).
    """
    import torch

    from gmos_core.models import GMOSProposer, GMOSS, GMOSSConfig, Pi3Encoder, Pi3EncoderConfig, ProposerConfig
    from gmos_core.models.sam2_features import build_sam2_predictor
    from gmos_core.weights.default_model import sam2_image_state_dict
    from gmos_core.weights.metadata import COMPONENTS, CheckpointMetadata, write_checkpoint

    path = Path(path)
    yaml = tiny_sam2_yaml(path.parent)
    torch.manual_seed(seed)
    pi3_config = Pi3EncoderConfig.tiny().to_dict()
    head_config = (GMOSSConfig.tiny() if variant == "gmos_s" else ProposerConfig.tiny()).to_dict()
    pi3 = Pi3Encoder(**pi3_config)
    head = GMOSS(**head_config) if variant == "gmos_s" else GMOSProposer(**head_config)
    if fg_bias:
        with torch.no_grad():
            head.fg_out.bias.add_(fg_bias)
    predictor = build_sam2_predictor(str(yaml), None)
    meta = CheckpointMetadata(variant=variant, anchor=anchor, window_size=5, window_seconds=0.5,
                              pi3_config=pi3_config, head_config=head_config, sam2_config=yaml.name,
                              sam2_image_size=SAM2_IMAGE_SIZE, pixel_limit=PIXEL_LIMIT, components=COMPONENTS,
                              name=NAME, trained_on="synthetic only", training_command="(test: random weights)")
    if metadata_changes:
        meta = meta.with_(**metadata_changes)
    write_checkpoint(path, {"pi3": pi3.state_dict(), "sam2_image_encoder": sam2_image_state_dict(predictor),
                            "head": head.state_dict()}, meta)
    return path
