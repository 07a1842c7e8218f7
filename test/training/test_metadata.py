"""gmos_core.weights.metadata: the checkpoint contract shared by the training export and the engine."""
from __future__ import annotations

import pytest
import torch

from gmos_core.weights.metadata import (CheckpointMetadata, CheckpointMetadataError, read_checkpoint,
                                        read_checkpoint_metadata, write_checkpoint)


def _meta(**kw):
    base = dict(variant="proposer", anchor="end", window_size=3, window_seconds=0.4,
                pi3_config={"enc_embed_dim": 64}, head_config={"embed_dim": 32}, sam2_config="sam2_tiny.yaml",
                sam2_image_size=256, pixel_limit=40000, components=("pi3", "head"), name="t",
                trained_on="synthetic only", training_command="gmos train --config x.yaml")
    base.update(kw)
    return CheckpointMetadata(**base)


def test_round_trip_multi_component(tmp_path):
    tensors = {"pi3": {"a.weight": torch.randn(2, 3)}, "head": {"b": torch.arange(4.0)}}
    path = write_checkpoint(tmp_path / "m.safetensors", tensors, _meta())
    meta, comps = read_checkpoint(path)
    assert meta == _meta()
    assert set(comps) == {"pi3", "head"}
    assert torch.equal(comps["pi3"]["a.weight"], tensors["pi3"]["a.weight"])
    assert torch.equal(comps["head"]["b"], tensors["head"]["b"])
    strings = meta.to_strings()
    assert strings["gmos_format"] == "1" and strings["components"] == "pi3,head" and strings["anchor"] == "end"
    assert all(isinstance(v, str) for v in strings.values())


def test_single_component_keeps_official_key_names(tmp_path):
    from safetensors.torch import load_file

    path = write_checkpoint(tmp_path / "h.safetensors", {"head": {"obj_token": torch.zeros(1, 2, 3)}},
                            _meta(components=("head",)))
    assert list(load_file(str(path))) == ["obj_token"]
    assert read_checkpoint(path)[1]["head"]["obj_token"].shape == (1, 2, 3)


def test_files_without_metadata_read_as_official(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    torch.save({"model_state_dict": {"x": torch.zeros(1)}}, tmp_path / "official.pt")
    assert read_checkpoint_metadata(tmp_path / "plain.safetensors") is None
    assert read_checkpoint_metadata(tmp_path / "official.pt") is None
    official = CheckpointMetadata.official()
    assert (official.anchor, official.window_size, official.window_seconds, official.pixel_limit) == (
        "center", 5, 0.5, 255000)


@pytest.mark.parametrize("change, message", [
    ({"variant": "mask2former"}, "variant"), ({"anchor": "left"}, "anchor"), ({"window_size": 0}, "window_size"),
    ({"components": ("pi3", "decoder")}, "components"), ({"sam2_image_size": 100}, "sam2_image_size")])
def test_invalid_metadata_is_named(change, message):
    with pytest.raises(CheckpointMetadataError, match=message):
        _meta(**change)


def test_bad_strings_and_mismatched_components(tmp_path):
    strings = _meta().to_strings()
    with pytest.raises(CheckpointMetadataError, match="gmos_format"):
        CheckpointMetadata.from_strings({**strings, "gmos_format": "7"})
    with pytest.raises(CheckpointMetadataError, match="window_size"):
        CheckpointMetadata.from_strings({**strings, "window_size": "five"})
    with pytest.raises(CheckpointMetadataError, match="same"):
        write_checkpoint(tmp_path / "x.safetensors", {"head": {"b": torch.zeros(1)}}, _meta())


def test_refiner_component_and_its_config_go_together(tmp_path):
    refiner_cfg = {"channels": [8, 16], "groups": 4, "pixels": 32640}
    meta = _meta(components=("pi3", "head", "refiner"), refiner_config=refiner_cfg)
    tensors = {"pi3": {"a": torch.zeros(1)}, "head": {"b": torch.ones(2)}, "refiner": {"c": torch.ones(3)}}
    read_meta, comps = read_checkpoint(write_checkpoint(tmp_path / "r.safetensors", tensors, meta))
    assert read_meta.refiner_config == refiner_cfg and set(comps) == {"pi3", "head", "refiner"}
    # a file without a refiner keeps exactly its old keys (no empty refiner_config string)
    assert "refiner_config" not in _meta().to_strings()
    with pytest.raises(CheckpointMetadataError, match="refiner_config"):
        _meta(components=("pi3", "head", "refiner"))
    with pytest.raises(CheckpointMetadataError, match="refiner_config"):
        _meta(refiner_config=refiner_cfg)
