"""The geometric mode keeps the StreamingEngine contract and fails clearly on bad options."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from gmos_core.engine import EngineConfig, StreamingEngine
from gmos_core.engine.models import build_engine_models
from gmos_core.geometric import GeometricConfig, GeometricConfigError
from gmos_core.geometric.engine import choose_neighbours, intrinsics_from_camera_info
from gmos_core.geometric.motion import internal_size, scale_intrinsics

from . import scenes


def make_engine(**changes):
    config = EngineConfig(mode="geometric", fps=30.0, **changes)
    return StreamingEngine(config, build_engine_models(config))


@pytest.fixture(scope="module")
def frames():
    return scenes.sequence("static_object", 12)[0]


def test_one_result_per_frame_in_push_order_with_context_only_frames(frames):
    engine = make_engine()
    assert engine.lookahead_frames == 6  # centred 5-frame window at stride max(1, int(30 / 8)) = 3
    results = []
    for i, frame in enumerate(frames):
        results += engine.push(frame, i * 33_333_333, frame_id="cam", key=("k", i), segment=i != 5)
    results += engine.flush()
    assert [r.frame.index for r in results] == list(range(len(frames)))
    assert [r.frame.key for r in results] == [("k", i) for i in range(len(frames))]
    assert results[5].skipped and not results[5].dynamic_mask.any()
    assert not any(r.skipped for i, r in enumerate(results) if i != 5)
    for r in results:
        if r.skipped:
            continue
        assert r.mode == "geometric"
        assert r.labels.dtype == np.uint16 and r.labels.shape == frames.shape[1:3]
        assert r.fg_prob is None  # FrameResult contract: GMOS-S only (the node would threshold it otherwise)
        assert r.motion_prob.dtype == np.float32 and 0.0 <= r.motion_prob.min() <= r.motion_prob.max() <= 1.0
        assert r.motion_prob.shape == r.labels.shape
        assert r.dynamic_mask.dtype == bool
        assert r.frame.index in r.window_indices and len(r.window_indices) == 5
        assert set(r.timings_ms) >= {"flow", "ego_motion", "residual", "tracking", "postprocess", "total"}
        for obj in r.objects:  # objects describe the label image
            assert obj.pixel_count == int((r.labels == obj.instance_id).sum())
            assert obj.instance_id == obj.track_id + 1
    # the context-only frame still serves as a window member of its neighbours
    assert any(5 in r.window_indices for r in results if not r.skipped)


def test_discontinuity_restarts_the_stream_and_reset_forgets(frames):
    engine = make_engine()
    reasons = []
    engine.add_reset_listener(reasons.append)
    out = []
    for i in range(6):
        out += engine.push(frames[i], i * 33_333_333)
    out += engine.push(frames[6], 0)  # time went backwards: the old stream is flushed first
    assert [r.frame.index for r in out] == list(range(6)) and reasons
    assert engine.retained["buffered_frames"] == 1
    engine.reset()
    assert engine.retained["buffered_frames"] == 0 and engine.flush() == []


def test_memory_is_bounded_by_the_window(frames):
    engine = make_engine()
    flows = []
    for i in range(40):
        engine.push(frames[i % len(frames)], i * 33_333_333)
        held = engine.retained
        assert held["buffered_frames"] <= 13 + 1  # window span at stride 3, plus the newest frame
        flows.append(held["geometric_cached_flows"])
    # cached DIS steps: at most one forward and one backward step per frame of the window span; a plateau
    assert max(flows) <= 2 * 13 and max(flows[-20:]) <= max(flows[:20]), flows


def test_camera_info_intrinsics_are_read_and_rescaled():
    k = scenes.intrinsics()
    info = SimpleNamespace(k=k.reshape(9), width=960, height=544)  # calibrated at twice the image size
    got = intrinsics_from_camera_info(info, 480, 272)
    assert got[0, 0] == pytest.approx(k[0, 0] / 2) and got[0, 2] == pytest.approx((k[0, 2] + 0.5) / 2 - 0.5)
    assert intrinsics_from_camera_info(SimpleNamespace(k=np.zeros(9), width=480, height=272), 480, 272) is None
    assert np.allclose(scale_intrinsics(k, (480, 272), (480, 272)), k)


def test_internal_size_and_neighbour_choice():
    assert internal_size(480, 272, 240 * 136) == (240, 136)
    assert internal_size(100, 50, 10**6) == (100, 50)  # never enlarged
    members = [SimpleNamespace(identity=SimpleNamespace(index=i)) for i in (0, 3, 6, 9, 12)]
    pick = lambda n: [m.identity.index for m in choose_neighbours(members, 6, n)]  # noqa: E731
    assert pick(4) == [0, 3, 9, 12] and pick(2) == [0, 12] and pick(1) == [0]
    clamped = [SimpleNamespace(identity=SimpleNamespace(index=i)) for i in (0, 0, 0, 3, 6)]
    assert [m.identity.index for m in choose_neighbours(clamped, 0, 4)] == [3, 6]
    end = [SimpleNamespace(identity=SimpleNamespace(index=i)) for i in (0, 3, 6, 9, 12)]
    assert [m.identity.index for m in choose_neighbours(end, 12, 2)] == [0, 9]  # farthest, then nearest


@pytest.mark.parametrize("changes, word", [
    ({"flow_preset": "slow"}, "flow_preset"), ({"internal_pixels": 10}, "internal_pixels"),
    ({"intrinsics": (0, 1, 2, 3)}, "intrinsics"), ({"moving_exit": 0.9}, "moving_exit"),
    ({"score_blur": 4}, "score_blur"), ({"max_neighbours": 0}, "max_neighbours"),
    ({"smoothing": 1.0}, "smoothing"), ({"flow_finest_scale": 9}, "flow_finest_scale")])
def test_bad_options_are_refused_with_their_name(changes, word):
    with pytest.raises(GeometricConfigError, match=word):
        GeometricConfig(**changes)


def test_unknown_option_in_engine_config_is_refused():
    with pytest.raises(GeometricConfigError, match="unknown geometric option"):
        build_engine_models(EngineConfig(mode="geometric", extra={"geometric": {"focal": 3}}))
