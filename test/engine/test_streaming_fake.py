"""StreamingEngine behaviour with a cheap stand-in model: identities, order, windows, laziness, memory,
timestamps (jitter, drops, restarts)."""
from __future__ import annotations

import numpy as np
import pytest

from gmos_core.engine import EngineConfig, EngineConfigError, StreamDiscontinuity, StreamingEngine
from gmos_core.io.stride import group_list_with_stride

from .fakes import FakeModels, coded_frame

PERIOD_NS = 1e9 / 30


def stamp(i: float) -> int:
    return int(round(i * PERIOD_NS))


def run(engine, numbers, stamps=None, segment=None):
    results = []
    for k, n in enumerate(numbers):
        seg = True if segment is None else segment(n)
        results += engine.push(coded_frame(n), stamps[k] if stamps else stamp(n), frame_id=f"cam{n}",
                               key=("hdr", n), segment=seg)
    return results + engine.flush()


@pytest.mark.parametrize("batch_size", [1, 3])
def test_one_result_per_frame_in_order_with_identity(batch_size):
    models = FakeModels()
    engine = StreamingEngine(EngineConfig(mode="gmos_s", fps=30.0, batch_size=batch_size), models)
    results = run(engine, list(range(17)))
    assert [r.frame.index for r in results] == list(range(17))
    assert [r.frame.key for r in results] == [("hdr", n) for n in range(17)]
    assert [r.frame.frame_id for r in results] == [f"cam{n}" for n in range(17)]
    assert [r.frame.stamp_ns for r in results] == [stamp(n) for n in range(17)]
    # windows: exactly the official clamped index windows (stride 3 at 30 fps)
    expected = group_list_with_stride(list(range(17)), 5, 3)
    assert [r.window_indices for r in results] == expected
    assert [r.window_stamps_ns for r in results] == [[stamp(i) for i in w] for w in expected]
    assert models.windows == expected  # the decoder saw these frames, in this order
    # the head's answer belongs to the frame itself (even: left column, odd: right column)
    for r in results:
        n = r.frame.index
        assert r.labels.dtype == np.uint16 and r.labels.shape == (8, 10)
        assert r.dynamic_mask[:, :5].all() == (n % 2 == 0) and r.dynamic_mask[:, 5:].all() == (n % 2 == 1)
        assert set(r.timings_ms) >= {"pi3_encoder", "pi3_decoder", "sam2_encoder", "head", "propagator",
                                     "postprocess", "total"}
    # DINOv2 once per frame, SAM 2 once per segmented frame
    assert sorted(models.encoded) == list(range(17))
    assert sorted(models.sam_encoded) == list(range(17))


def test_results_wait_for_two_strides_of_lookahead():
    engine = StreamingEngine(EngineConfig(mode="gmos_s", fps=30.0), FakeModels())
    assert engine.lookahead_frames == 6
    out = [len(engine.push(coded_frame(i), stamp(i))) for i in range(10)]
    assert out == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert engine.window_fill == pytest.approx(10 / 13)  # span of a stride-3 window: 13 frames
    for i in range(10, 14):
        engine.push(coded_frame(i), stamp(i))
    assert engine.window_fill == 1.0
    tail = engine.flush()
    assert [r.frame.index for r in tail] == [8, 9, 10, 11, 12, 13]


def test_end_anchor_needs_matching_models():
    with pytest.raises(EngineConfigError, match="center"):
        StreamingEngine(EngineConfig(mode="gmos_s", fps=30.0, anchor="end"), FakeModels(anchor="center"))
    with pytest.raises(EngineConfigError, match="window"):
        StreamingEngine(EngineConfig(mode="gmos_s", fps=30.0, window_size=3), FakeModels())
    models = FakeModels(anchor="end")
    engine = StreamingEngine(EngineConfig(mode="gmos_s", fps=30.0, anchor="end"), models)
    assert engine.lookahead_frames == 0
    for i in range(8):
        results = engine.push(coded_frame(i), stamp(i))
        assert [r.frame.index for r in results] == [i]  # no delay
        assert results[0].window_indices == [max(0, i - 3 * k) for k in (4, 3, 2, 1, 0)]


def test_context_only_frames_are_skipped_and_encoded_lazily():
    models = FakeModels()
    engine = StreamingEngine(EngineConfig(mode="gmos_s", fps=30.0), models)
    # segment only every 10th frame: most frames are context only, and most are never in any window
    results = run(engine, list(range(40)), segment=lambda n: n % 10 == 0)
    assert [r.frame.index for r in results] == list(range(40))
    skipped = [r for r in results if r.skipped]
    assert len(skipped) == 36 and all(r.skip_reason and not r.labels.any() for r in skipped)
    assert all(r.labels.shape == (8, 10) for r in skipped)
    windows = [w for r in results if not r.skipped for w in [r.window_indices]]
    assert windows == [group_list_with_stride(list(range(40)), 5, 3)[c] for c in (0, 10, 20, 30)]
    used = sorted({i for w in windows for i in w})
    assert sorted(models.encoded) == used  # DINOv2 ran only for frames some segmented window used
    assert sorted(models.sam_encoded) == [0, 10, 20, 30]


def test_memory_is_bounded_over_thousands_of_frames():
    models = FakeModels()
    engine = StreamingEngine(EngineConfig(mode="gmos_s", fps=30.0), models)
    rng = np.random.default_rng(1)
    peak = {"buffered_frames": 0, "cached_tokens": 0, "waiting": 0, "unemitted": 0}
    count = 0
    for i in range(2500):
        jitter = rng.uniform(-0.2, 0.2)
        results = engine.push(coded_frame(i), stamp(i + jitter), segment=bool(i % 4 != 3))
        count += len(results)
        for key in peak:
            peak[key] = max(peak[key], engine.retained[key])
    count += len(engine.flush())
    assert count == 2500
    # window span 4*3+1 = 13 frames, one frame of tolerance either side, plus the 6-frame look-ahead queue
    assert peak["buffered_frames"] <= 15
    assert peak["cached_tokens"] <= 15
    assert peak["waiting"] <= 7 and peak["unemitted"] <= 8
    assert len(models.encoded) == len(set(models.encoded))  # never re-encoded


def test_jitter_and_drops():
    models = FakeModels()
    engine = StreamingEngine(EngineConfig(mode="gmos_s", fps=30.0), models)
    rng = np.random.default_rng(2)
    numbers = [i for i in range(30) if i not in (9, 10, 17)]
    stamps = [stamp(i + rng.uniform(-0.15, 0.15)) for i in numbers]
    results = run(engine, numbers, stamps)
    assert [r.frame.key[1] for r in results] == numbers
    by_number = {r.frame.key[1]: r for r in results}
    # indices are stream positions; map them back to frame numbers
    window_numbers = {n: [numbers[i] for i in r.window_indices] for n, r in by_number.items()}
    assert window_numbers[6] == [0, 3, 6, 8, 12]  # 9 dropped: 8 (toward the centre); 12 present
    assert window_numbers[13] == [7, 11, 13, 16, 19]  # 10 dropped -> 11 (toward the centre); 16 present
    assert window_numbers[20] == [14, 17 - 1, 20, 23, 26] or window_numbers[20] == [14, 18, 20, 23, 26]
    assert window_numbers[29] == [23, 26, 29, 29, 29]  # clamped at the end of stream


def test_restart_on_backwards_time_flushes_and_starts_over():
    reasons = []
    engine = StreamingEngine(EngineConfig(mode="gmos_s", fps=30.0), FakeModels(), on_reset=reasons.append)
    results = []
    for i in range(8):
        results += engine.push(coded_frame(i), stamp(100 + i))
    assert engine.check_discontinuity(coded_frame(0), stamp(50)) is not None
    for i in range(8):  # the clock jumped back (e.g. a bag restarted)
        results += engine.push(coded_frame(100 + i), stamp(i))
    results += engine.flush()
    assert len(reasons) == 1 and "not after" in reasons[0]
    assert [r.frame.key for r in results] == [None] * 16
    assert [r.frame.index for r in results] == list(range(8)) + list(range(8))  # index restarts
    assert [r.frame.stamp_ns for r in results] == [stamp(100 + i) for i in range(8)] + [stamp(i) for i in range(8)]
    # the first stream's last windows were clamped at its own end, never mixing streams
    assert results[7].window_indices == [1, 4, 7, 7, 7]
    assert results[8].window_indices == [0, 0, 0, 3, 6]


def test_size_change_resets_and_raise_policy():
    engine = StreamingEngine(EngineConfig(mode="gmos_s", fps=30.0), FakeModels())
    engine.push(coded_frame(0), stamp(0))
    out = engine.push(coded_frame(1, 16, 20), stamp(1))
    assert [r.frame.index for r in out] == [0] and out[0].labels.shape == (8, 10)
    assert engine.flush()[0].labels.shape == (16, 20)
    strict = StreamingEngine(EngineConfig(mode="gmos_s", fps=30.0, on_discontinuity="raise"), FakeModels())
    strict.push(coded_frame(0), stamp(5))
    with pytest.raises(StreamDiscontinuity, match="not after"):
        strict.push(coded_frame(1), stamp(5))


def test_fps_estimated_from_stamps():
    models = FakeModels()
    engine = StreamingEngine(EngineConfig(mode="gmos_s"), models)  # no fps, no stride
    results = run(engine, list(range(20)), [int(i * 1e9 / 60) for i in range(20)])
    assert engine.stride is None  # reset after flush
    assert results[10].window_indices == [0, 3, 10, 17, 19]  # 60 fps -> stride 7


def test_bad_input_is_rejected_with_clear_errors():
    engine = StreamingEngine(EngineConfig(mode="gmos_s", fps=30.0), FakeModels())
    with pytest.raises(ValueError, match="RGB image"):
        engine.push(np.zeros((8, 10), np.uint8), 0)
    with pytest.raises(ValueError, match="uint8"):
        engine.push(np.zeros((8, 10, 3), np.float32), 0)
    with pytest.raises(TypeError, match="nanoseconds"):
        engine.push(coded_frame(0), 0.5)
    with pytest.raises(EngineConfigError, match="mode"):
        EngineConfig(mode="fast")
    with pytest.raises(EngineConfigError, match="fps"):
        EngineConfig(fps=-1)
    with pytest.raises(EngineConfigError, match="needs a GMOS-S head"):
        StreamingEngine(EngineConfig(mode="gmos_s", fps=30.0), FakeModels(mode="gmos_online"))
