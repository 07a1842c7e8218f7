"""The refinement stage in the engine (gmos_core.engine.refinement): a default-model file with a ``refiner``
component makes gmos_s / gmos_online fuse the head's probability with the geometric mode's, exactly as
training prepared the refiner's inputs; a file without one behaves as before."""

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def refined_file(tmp_path_factory):
    from gmos_core.models.motion_refiner import MotionRefiner
    from gmos_core.weights.default_model import default_model_path
    from training.refiner_train import RefinerTrainConfig, export

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from gmos_core.weights.metadata import CheckpointMetadata

    tmp = tmp_path_factory.mktemp("refined")
    # the shipped file's GMOS-S part alone (its own refiner, if any, dropped): the base a refiner is trained on
    with safe_open(str(default_model_path()), framework="pt") as handle:
        strings = dict(handle.metadata())
    meta = CheckpointMetadata.from_strings(strings)
    core = tuple(c for c in meta.components if c != "refiner")
    strings = {k: v for k, v in strings.items() if k != "refiner_config"}
    strings.update(meta.with_(components=core, refiner_config={}).to_strings())
    base = tmp / "base.safetensors"
    save_file({k: v for k, v in load_file(str(default_model_path())).items() if not k.startswith("refiner.")},
              str(base), metadata=strings)
    torch.manual_seed(0)
    refiner = MotionRefiner()
    for p in refiner.parameters():  # a refiner whose correction path matters (trained ones do)
        torch.nn.init.normal_(p, std=0.1)
    path = tmp / "m.safetensors"
    export(refiner, base, path, RefinerTrainConfig(name="refined-test"), "test", 0, {})
    return path, base, refiner


@pytest.fixture(scope="module")
def clip():
    from training.synthetic import SyntheticConfig, render_frame, sample_scene

    scene = sample_scene(900001, SyntheticConfig(width=240, height=136, num_frames=14, fps=24.0), kind="normal")
    return [render_frame(scene, t)[0] for t in range(scene.num_frames)]


def _engine(mode, weights, refiner_off=False, edge_snap=None):
    from gmos_core.engine import EngineConfig
    from gmos_core.engine.models import WeightPaths, build_engine_models

    cfg = EngineConfig(mode=mode, fps=24.0, pixel_limit=30000, device="cpu", tracker="iou" if mode != "gmos_s"
                       else "auto")
    if edge_snap is not None:
        cfg.extra["edge_snap"] = edge_snap
    models = build_engine_models(cfg, weights=WeightPaths(head=str(weights)))
    if refiner_off:
        models.refiner = None
    return cfg, models


@pytest.mark.parametrize("snap", [True, False], ids=["edge-snap", "no-edge-snap"])
def test_engine_probabilities_are_the_refiner_on_head_and_geometric_inputs(refined_file, clip, snap):
    from gmos_core.engine.edge_snap import EdgeSnapConfig, snap_to_edges
    from gmos_core.engine.refinement import refiner_inputs
    from gmos_core.engine.streaming import run_clip

    path, base, refiner = refined_file
    cfg, models = _engine("gmos_s", path, edge_snap=None if snap else {"enabled": False})
    assert models.refiner is not None and "refinement with the geometric mode" in models.description
    refined = run_clip(cfg, models, clip)
    head = np.stack([r.fg_prob for r in run_clip(*_engine("gmos_s", path, refiner_off=True), clip)])
    from gmos_core.engine import EngineConfig
    from gmos_core.engine.models import build_engine_models

    geo_cfg = EngineConfig(mode="geometric", fps=24.0, device="cpu")
    motion = np.stack([r.motion_prob for r in run_clip(geo_cfg, build_engine_models(geo_cfg), clip)])
    rgb, h, m = refiner_inputs(clip, head, motion, refiner.config.pixels)
    with torch.inference_mode():
        logits = refiner.eval()(rgb, h, m)
        expected = torch.sigmoid(torch.nn.functional.interpolate(
            logits, size=clip[0].shape[:2], mode="bilinear", align_corners=False))[:, 0].numpy()
    if snap:  # the default: the refined map snapped to each frame's colour edges
        expected = np.stack([snap_to_edges(f, p, EdgeSnapConfig()) for f, p in zip(clip, expected)])
    got = np.stack([r.fg_prob for r in refined])
    assert np.abs(got - head).max() > 0.2  # the stage changes the output ...
    np.testing.assert_allclose(got, expected, atol=1e-4)  # ... exactly as the refiner on the engine's inputs
    stages = {"geometric_prior", "refiner"} | ({"edge_snap"} if snap else set())
    assert all(stages <= set(r.timings_ms) for r in refined)
    assert snap == all("edge_snap" in r.timings_ms for r in refined)


def test_online_iou_path_tracks_the_refined_probabilities(refined_file, clip):
    from gmos_core.engine.streaming import run_clip

    path, base, _ = refined_file
    probs = np.stack([r.fg_prob for r in run_clip(*_engine("gmos_s", path), clip)])
    online = run_clip(*_engine("gmos_online", path), clip)
    moving = np.stack([r.dynamic_mask for r in online])
    assert moving.any()
    assert not (moving & (probs <= 0.5)).any()  # moving pixels are components of the refined map
    engine_retained = [k for k in online[0].timings_ms if k in ("geometric_prior", "refiner", "edge_snap")]
    assert engine_retained == ["geometric_prior", "refiner", "edge_snap"]


def test_file_without_refiner_keeps_the_head_probabilities(refined_file, clip):
    from gmos_core.engine.streaming import run_clip

    _, base, _ = refined_file
    cfg, models = _engine("gmos_s", base)
    assert models.refiner is None
    results = run_clip(cfg, models, clip)
    assert not any("refiner" in r.timings_ms for r in results)


def test_bad_edge_snap_settings_are_named(refined_file):
    from gmos_core.engine.edge_snap import EdgeSnapConfigError
    from gmos_core.engine.streaming import run_clip

    path, _, _ = refined_file
    with pytest.raises(TypeError, match="unknown field.*radius"):
        run_clip(*_engine("gmos_s", path, edge_snap={"radius": 3}), [])
    with pytest.raises(EdgeSnapConfigError, match="threshold"):
        run_clip(*_engine("gmos_s", path, edge_snap={"threshold": 1.5}), [])


def _flat_clip(n=12, h=136, w=240):
    """A smooth gradient with a flat disc moving across it: too little texture for the geometric mode to decide
    anything (every frame is its "low_texture" case)."""
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([60 + 0.4 * xx, 90 + 0.3 * yy, 140 + 0.0 * xx], -1)
    frames = []
    for t in range(n):
        frame = background.copy()
        frame[(xx - (60 + 6 * t)) ** 2 + (yy - 70) ** 2 < 14 ** 2] = (230, 200, 40)
        frames.append(frame.clip(0, 255).astype(np.uint8))
    return frames


def test_frames_the_geometric_mode_cannot_decide_get_the_head_alone(refined_file, clip):
    # the refiner reads the geometric mode's empty map as "certainly static"; where the mode decided nothing the
    # engine passes the head's probability on instead (snapped as usual). A refinement stage that ran the refiner
    # on such frames anyway fails the first check; one that skipped it on decided frames fails the second.
    from gmos_core.engine import EngineConfig
    from gmos_core.engine.edge_snap import EdgeSnapConfig, snap_to_edges
    from gmos_core.engine.models import build_engine_models
    from gmos_core.engine.refinement import UNDECIDED_CASES
    from gmos_core.engine.streaming import run_clip

    path, _, _ = refined_file
    flat = _flat_clip()
    geo_cfg = EngineConfig(mode="geometric", fps=24.0, device="cpu")
    cases = [r.geometry["case"] for r in run_clip(geo_cfg, build_engine_models(geo_cfg), flat)]
    assert set(cases) <= UNDECIDED_CASES and cases  # the clip exercises the fallback on every frame
    head = np.stack([r.fg_prob for r in run_clip(*_engine("gmos_s", path, refiner_off=True), flat)])
    got = np.stack([r.fg_prob for r in run_clip(*_engine("gmos_s", path), flat)])
    expected = np.stack([snap_to_edges(f, p, EdgeSnapConfig()) for f, p in zip(flat, head)])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    refined = np.stack([r.fg_prob for r in run_clip(*_engine("gmos_s", path), clip)])
    textured_head = np.stack([snap_to_edges(f, r.fg_prob, EdgeSnapConfig())
                              for f, r in zip(clip, run_clip(*_engine("gmos_s", path, refiner_off=True), clip))])
    assert np.abs(refined - textured_head).max() > 0.2  # a decided clip still goes through the refiner
