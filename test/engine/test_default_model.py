"""The default-model path (a GMOS-format checkpoint) end to end, on a small random-weight checkpoint written in
that format: loading (anchor, window, pixel budget, name), the IoU-tracked online/offline modes, refusals, and
clear errors for malformed files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from gmos_core.engine import EngineConfig, EngineConfigError, StreamingEngine
from gmos_core.engine.models import WeightPaths, build_engine_models
from gmos_core.tracking import IouTracker, proposals_from_foreground
from gmos_core.weights import default_model
from test.engine.default_checkpoint import NAME, PIXEL_LIMIT, write_tiny_checkpoint
from test.engine.test_engine_tiny import stream, synthetic_video

FPS = 8.0  # stride 1


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    # fg bias 0.3: random weights then give a foreground of one large and many small components (measured:
    # 10-20 per frame on the synthetic video), so the tracker has births, deaths and continuing tracks.
    return write_tiny_checkpoint(tmp_path_factory.mktemp("model") / "gmos_test.safetensors", fg_bias=0.3)


@pytest.fixture(scope="module")
def models(checkpoint):
    return build_engine_models(EngineConfig(mode="gmos_online"), weights=WeightPaths(head=str(checkpoint)))


def config(mode, **changes):
    return EngineConfig(mode=mode, fps=FPS, anchor="end", pixel_limit=PIXEL_LIMIT, **changes)


def test_metadata_sets_anchor_window_budget_name_and_tracker(models, checkpoint):
    assert models.anchor == "end" and models.window_size == 5 and models.pixel_limit == PIXEL_LIMIT
    assert models.head_kind == "gmos_s" and models.default_tracker == "iou" and not models.sam2_memory_trained
    assert not models.random_weights
    assert models.description.startswith(NAME) and "trained on synthetic data only" in models.description
    # every component holds the file's tensors (not a fresh random init)
    with safe_open(str(checkpoint), framework="pt") as f:
        for module, prefix in ((models.pi3, "pi3."), (models.head, "head.")):
            for key, value in module.state_dict().items():
                assert torch.equal(value, f.get_tensor(prefix + key)), key
        sam_keys = [k for k in f.keys() if k.startswith("sam2_image_encoder.")]
        own = models.predictor.state_dict()
        assert len(sam_keys) > 10
        for key in sam_keys:
            assert torch.equal(own[key[len("sam2_image_encoder."):]], f.get_tensor(key)), key
    # the SAM 2 input follows the model's image size (256 here), not the official 1024
    assert models.sam_inputs([np.zeros((40, 56, 3), np.uint8)]).shape[-2:] == (256, 256)


def test_engine_refuses_a_mismatched_anchor_and_the_sam2_tracker(models):
    with pytest.raises(EngineConfigError, match="anchor"):
        StreamingEngine(EngineConfig(mode="gmos_online", fps=FPS), models)  # centre-anchored config
    with pytest.raises(EngineConfigError, match="tracker='sam2'.*use tracker 'iou'"):
        StreamingEngine(config("gmos_online", tracker="sam2"), models)


def test_online_iou_tracking_equals_tracker_over_the_gmos_s_foreground(models):
    """gmos_online on a GMOS-S model = the IoU tracker over the connected components of the gmos_s mode's
    foreground, frame by frame (same models, same frames): ids, labels, states and the moving mask."""
    frames = synthetic_video(8)
    fg = stream(StreamingEngine(config("gmos_s"), models), frames, FPS)
    online = stream(StreamingEngine(config("gmos_online"), models), frames, FPS)
    tracker = IouTracker()
    components = 0
    for fg_result, result in zip(fg, online):
        proposals = proposals_from_foreground(fg_result.fg_prob, 0.5, max_instances=20)
        components += len(proposals.masks)
        expected = tracker.step(proposals)
        assert result.mode == "gmos_online" and result.labels.dtype == np.uint16
        np.testing.assert_array_equal(result.labels, expected.labels)
        np.testing.assert_array_equal(result.dynamic_mask, expected.moving)
        assert {o.instance_id: (o.track_id, o.state) for o in result.objects} == {
            i: (v["track_id"], v["state"]) for i, v in expected.info.items()}
        for o in result.objects:
            assert o.pixel_count == int((result.labels == o.instance_id).sum())
    assert components >= 8 * 5  # the data exercises association (several components on every frame)
    # the largest component keeps track 0 on every frame
    assert all(any(o.track_id == 0 for o in r.objects) for r in online)


def test_offline_iou_mode_keeps_objects_that_moved(models):
    frames = synthetic_video(8)
    online = stream(StreamingEngine(config("gmos_online"), models), frames, FPS)
    offline = stream(StreamingEngine(config("gmos_offline"), models), frames, FPS)
    for a, b in zip(online, offline):
        # every tracked object moved at some point (births need motion > 0.5), so MOS = all tracks and MOS-I = the
        # objects moving on the frame: the online labels
        np.testing.assert_array_equal(b.labels, a.labels)
        np.testing.assert_array_equal(b.labels_mos_i, np.where(a.dynamic_mask, a.labels, 0))


def test_gmos_s_head_cannot_run_the_gmos_s_mode_of_a_proposer_model(tmp_path):
    path = write_tiny_checkpoint(tmp_path / "proposer.safetensors", variant="proposer", anchor="center")
    proposer = build_engine_models(EngineConfig(mode="gmos_online"), weights=WeightPaths(head=str(path)))
    assert proposer.head_kind == "proposer" and proposer.anchor == "center"
    with pytest.raises(EngineConfigError, match="needs a GMOS-S head"):
        StreamingEngine(EngineConfig(mode="gmos_s", fps=FPS), proposer)
    results = stream(StreamingEngine(EngineConfig(mode="gmos_online", fps=FPS, pixel_limit=PIXEL_LIMIT), proposer),
                     synthetic_video(6), FPS)
    assert len(results) == 6 and all(r.labels.dtype == np.uint16 for r in results)


def test_no_weights_loads_the_shipped_default_and_says_when_it_is_missing(tmp_path, monkeypatch, checkpoint):
    monkeypatch.setattr(default_model, "DEFAULT_MODEL_PATH", tmp_path / "absent.safetensors")
    with pytest.raises(FileNotFoundError, match="the default model file is missing from this installation: .*absent"):
        build_engine_models(EngineConfig(mode="gmos_online"))
    monkeypatch.setattr(default_model, "DEFAULT_MODEL_PATH", checkpoint)
    models = build_engine_models(EngineConfig(mode="gmos_online"))
    assert models.name == NAME and models.anchor == "end"


def _rewrite(src, dst, metadata_changes=None, key_filter=None, tensor_changes=None):
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys() if key_filter is None or key_filter(k)}
    meta.update(metadata_changes or {})
    tensors.update(tensor_changes or {})
    save_file(tensors, str(dst), metadata=meta)
    return dst


def test_malformed_checkpoints_name_the_file_and_what_was_expected(tmp_path, checkpoint):
    for yaml in checkpoint.parent.glob("*.yaml"):  # the checkpoint's SAM 2 config sits beside it
        (tmp_path / yaml.name).write_text(yaml.read_text())

    def load(path):
        return build_engine_models(EngineConfig(mode="gmos_online"), weights=WeightPaths(head=str(path)))

    bad = _rewrite(checkpoint, tmp_path / "v2.safetensors", {"gmos_format": "2"})
    with pytest.raises(ValueError, match=r"v2\.safetensors.*gmos_format='2'.*format '1'"):
        load(bad)
    bad = _rewrite(checkpoint, tmp_path / "nohead.safetensors", {"components": "pi3,sam2_image_encoder"},
                   key_filter=lambda k: not k.startswith("head."))
    with pytest.raises(ValueError, match=r"nohead\.safetensors.*lacks \['head'\].*whole model"):
        load(bad)
    bad = _rewrite(checkpoint, tmp_path / "missing_keys.safetensors",
                   key_filter=lambda k: not k.startswith("pi3.decoder"))
    with pytest.raises(ValueError, match=r"missing_keys\.safetensors \[pi3\.\].*missing keys"):
        load(bad)
    head_config = json.loads(safe_open(str(checkpoint), framework="pt").metadata()["head_config"])
    bad = _rewrite(checkpoint, tmp_path / "shapes.safetensors",
                   {"head_config": json.dumps({**head_config, "mlp_dim": head_config["mlp_dim"] * 2})})
    with pytest.raises(ValueError, match=r"shapes\.safetensors \[head\.\].*misshaped keys"):
        load(bad)
    key = next(k for k in safe_open(str(checkpoint), framework="pt").keys() if k.startswith("sam2_image_encoder.image"))
    bad = _rewrite(checkpoint, tmp_path / "sam.safetensors", tensor_changes={key: torch.zeros(3)})
    with pytest.raises(ValueError, match=r"sam\.safetensors \[sam2_image_encoder\.\].*misshaped"):
        load(bad)
    with pytest.raises(ValueError, match="pass it alone"):
        build_engine_models(EngineConfig(mode="gmos_online"),
                            weights=WeightPaths(head=str(checkpoint), pi3=str(checkpoint)))
