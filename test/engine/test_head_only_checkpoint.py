"""A GMOS-format checkpoint holding only the head (what `gmos train` exports with the official frozen encoders,
components="head") runs with the official Pi3 and SAM 2 files: the head comes from the file (its metadata's
variant, head_config, anchor and window), the encoders from the official files. Given alone it is refused with one
line naming the two files it needs. Tiny configurations and random weights throughout."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gmos_core.cli.main import main
from gmos_core.engine import EngineConfig
from gmos_core.engine.models import WeightPaths, build_engine_models
from test.engine.default_checkpoint import tiny_sam2_yaml

PIXEL_LIMIT = 14 * 14 * 12


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Official-format tiny Pi3 and SAM 2 files (unprefixed keys, no metadata) and a head-only GMOS checkpoint
    whose metadata says end-anchored (the official default is centre: a loader ignoring the metadata shows)."""
    from safetensors.torch import save_file

    from gmos_core.models import GMOSS, GMOSSConfig, Pi3Encoder, Pi3EncoderConfig
    from gmos_core.models.sam2_features import build_sam2_predictor
    from gmos_core.weights.metadata import CheckpointMetadata, write_checkpoint

    root = tmp_path_factory.mktemp("head_only")
    yaml = tiny_sam2_yaml(root)  # tiny SAM 2 at input 256 (fast), named in the head's metadata
    torch.manual_seed(7)
    pi3_config = Pi3EncoderConfig.tiny().to_dict()
    head_config = GMOSSConfig.tiny().to_dict()
    pi3, head = Pi3Encoder(**pi3_config), GMOSS(**head_config)
    sam = build_sam2_predictor(str(yaml))
    with torch.no_grad():  # away from the constructors' initialisation, so "loaded" differs from "built"
        for p in list(pi3.parameters()) + list(head.parameters()) + list(sam.parameters()):
            p.add_(0.1 * torch.randn_like(p))
    save_file({k: v.contiguous() for k, v in pi3.state_dict().items()}, str(root / "pi3.safetensors"))
    save_file({k: v.contiguous() for k, v in sam.state_dict().items()}, str(root / "sam2.safetensors"))
    meta = CheckpointMetadata(variant="gmos_s", anchor="end", window_size=5, window_seconds=0.5,
                              pi3_config=pi3_config, head_config=head_config, sam2_config=yaml.name,
                              sam2_image_size=256, pixel_limit=PIXEL_LIMIT, components=("head",),
                              name="gmos-test-head", trained_on="synthetic only",
                              training_command="(test: random head, official frozen encoders)")
    write_checkpoint(root / "head.safetensors", {"head": head.state_dict()}, meta)
    return dict(root=root, pi3=str(root / "pi3.safetensors"), sam2=str(root / "sam2.safetensors"),
                head=str(root / "head.safetensors"), modules=(pi3, head, sam))


def test_head_only_checkpoint_loads_with_the_official_encoders(files):
    from safetensors.torch import load_file

    pi3, head, sam = files["modules"]
    models = build_engine_models(EngineConfig(mode="gmos_s"),
                                 weights=WeightPaths(pi3=files["pi3"], sam2=files["sam2"], head=files["head"]))
    assert models.anchor == "end" and models.window_size == 5  # from the head's metadata, not the official centre
    assert models.pixel_limit == PIXEL_LIMIT and models.head_kind == "gmos_s" and models.name == "gmos-test-head"
    assert not models.random_weights and models.default_tracker == "sam2" and models.sam2_memory_trained
    assert "gmos-test-head" in models.description and files["pi3"] in models.description
    in_file = load_file(files["head"])
    loaded = models.head.state_dict()
    assert set(loaded) == set(in_file)
    for key, tensor in in_file.items():
        assert torch.equal(loaded[key], tensor), key
    for ours, theirs in ((models.pi3, pi3), (models.predictor, sam)):
        theirs_sd = theirs.state_dict()
        for key, tensor in ours.state_dict().items():
            assert torch.equal(tensor, theirs_sd[key]), key


def test_engine_refuses_an_anchor_other_than_the_heads(files):
    from gmos_core.engine.streaming import StreamingEngine

    models = build_engine_models(EngineConfig(mode="gmos_s"),
                                 weights=WeightPaths(pi3=files["pi3"], sam2=files["sam2"], head=files["head"]))
    with pytest.raises(ValueError, match="'end'-anchored"):
        StreamingEngine(EngineConfig(mode="gmos_s", anchor="center"), models)


def test_head_only_checkpoint_alone_is_refused_with_one_line(files, tmp_path, capsys):
    needs = "needs the official Pi3 and SAM 2 files"
    with pytest.raises(ValueError, match=needs):
        build_engine_models(EngineConfig(mode="gmos_s"), weights=WeightPaths(head=files["head"]))
    with pytest.raises(ValueError, match=needs):  # one official encoder is not enough either
        build_engine_models(EngineConfig(mode="gmos_s"), weights=WeightPaths(pi3=files["pi3"], head=files["head"]))
    frames = _frame_folder(tmp_path / "in" / "clip")
    rc = main(["infer", str(frames.parent), "-o", str(tmp_path / "out"), "--mode", "gmos_s", "--head-weights",
               files["head"], "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needs in err[0] and "--pi3-weights" in err[0], err


def test_gmos_infer_runs_a_head_only_checkpoint(files, tmp_path, capsys):
    frames = _frame_folder(tmp_path / "in" / "clip")
    rc = main(["infer", str(frames.parent), "-o", str(tmp_path / "out"), "--mode", "gmos_s", "--head-weights",
               files["head"], "--pi3-weights", files["pi3"], "--sam2-checkpoint", files["sam2"], "--stride", "1",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "gmos-test-head" in err and "RANDOM" not in err
    assert len(list((tmp_path / "out" / "prob" / "clip").iterdir())) == 6  # every frame, end anchor included


def _frame_folder(root, n=6, size=(56, 40)):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / f"f{i:03d}.png")
    return root


def test_describe_model_names_the_head_only_checkpoint(files):
    from gmos_core.cli.model_args import describe_model

    text = describe_model("gmos_online", "auto", False, files["pi3"], files["sam2"], files["head"])
    assert "gmos-test-head" in text and "end-anchored" in text and text.endswith("sam2 tracker")
