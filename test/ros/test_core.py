"""NodeCore on the real tiny engine: header propagation, one output per segmented frame, resets, the
overload policy, refusals and diagnostics. Driven synchronously (as replay does) so counts are exact."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from gmos_core.bridge import NodeCore, frame_output_messages, record_messages
from gmos_core.bridge.engine_factory import build_engine

from .conftest import HEIGHT, PERIOD_NS, WIDTH, image_msg, rgb_frame, tiny_params

T0 = 1_700_000_000 * 10**9


class SimClock:
    """A node clock under use_sim_time: it shows the stamp of the newest frame played."""

    def __init__(self):
        self.now = 0

    def __call__(self) -> int:
        return self.now


def make_core(factory, params=None, clock=None, caplog=None):
    core = NodeCore(params or tiny_params(), factory, clock_ns=clock or SimClock(),
                    logger=logging.getLogger("test.gmos"))
    core.activate()
    return core


@pytest.mark.parametrize("model", ["gmos_s", "gmos_online"])
def test_stream_gives_one_output_per_frame_with_the_source_header(tiny_engine_factory, bag_factory, model):
    clock = SimClock()
    core = make_core(tiny_engine_factory, tiny_params(mode=model), clock=clock)
    inputs, records = [], []
    for i in range(5):
        msg = image_msg(bag_factory, rgb_frame(i), T0 + i * PERIOD_NS, frame_id="camera_color_optical_frame",
                        encoding="bgr8" if i % 2 else "rgb8")
        inputs.append(msg)
        clock.now = T0 + i * PERIOD_NS
        assert core.on_image(msg)
        records += core.process_pending()
        if i == 2:  # centred window of 5 at stride 1: a frame is decided when 2 more have arrived
            assert [r.header for r in records] == [inputs[0].header]
            assert records[0].latency_ns == 2 * PERIOD_NS  # node clock (sim time) minus source stamp
    records += core.flush()
    assert len(records) == len(inputs)
    for record, msg in zip(records, inputs):
        assert record.header is msg.header  # verbatim: the very header object of the input
        assert record.result.labels.shape == (HEIGHT, WIDTH)
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec in record.result.window_stamps_ns
        out = record_messages(bag_factory, record, core.params, debug=True)
        assert set(out) == {"objects", "dynamic_mask", "instance_mask", "debug_image"}
        for topic, built in out.items():
            assert built.header is msg.header, topic
            if topic != "objects":
                assert (built.height, built.width) == (HEIGHT, WIDTH)
        assert out["dynamic_mask"].encoding == "mono8"
        assert set(np.unique(out["dynamic_mask"].data)) <= {0, 255}
    c = core.counters
    assert (c.received, c.segmented, c.skipped_frames, c.dropped_frames, c.resets) == (5, 5, 0, 0, 0)
    values = core.diagnostics()[0].values
    assert values["frames_segmented"] == "5" and values["lookahead_frames"] == "2"
    assert float(values["latency_ms_max"]) == pytest.approx(2 * PERIOD_NS / 1e6)
    for stage in ("pi3_encoder", "sam2_encoder", "head") + (("propagator",) if model == "gmos_online" else ()):
        assert float(values[f"time_ms_{stage}_mean"]) > 0
    assert all(r.result.mode == model for r in records)
    assert values["input_rate_hz"] == "8.00"


def test_time_jump_back_and_size_change_reset_the_window(tiny_engine_factory, bag_factory, caplog):
    core = make_core(tiny_engine_factory)
    first = image_msg(bag_factory, rgb_frame(1), T0 + PERIOD_NS)
    core.on_image(first)
    with caplog.at_level(logging.WARNING, logger="test.gmos"):
        looped = image_msg(bag_factory, rgb_frame(0), T0)  # the bag started again
        core.on_image(looped)
    assert "time jumped backwards by 0.125 s" in caplog.text
    records = core.process_pending()
    assert core.counters.resets == 1
    with caplog.at_level(logging.WARNING, logger="test.gmos"):
        bigger = image_msg(bag_factory, rgb_frame(1, HEIGHT + 14, WIDTH), T0 + PERIOD_NS)
        core.on_image(bigger)
    assert f"image size changed from {WIDTH}x{HEIGHT} to {WIDTH}x{HEIGHT + 14}" in caplog.text
    records += core.process_pending()
    records += core.flush()
    assert core.counters.resets == 2
    # frames received before a reset end the old stream (flushed), so every frame gets its output,
    # with its own header, in order; the engine itself never saw a discontinuity
    assert [r.header for r in records] == [first.header, looped.header, bigger.header]
    assert [len(r.result.window_stamps_ns) for r in records] == [5, 5, 5]
    assert records[1].result.window_stamps_ns == [T0] * 5  # a fresh window: only the looped frame
    assert records[2].result.labels.shape == (HEIGHT + 14, WIDTH)


def test_reset_service_flushes_pushed_frames_first(tiny_engine_factory, bag_factory):
    core = make_core(tiny_engine_factory)
    msgs = [image_msg(bag_factory, rgb_frame(i), T0 + i * PERIOD_NS) for i in range(2)]
    for msg in msgs:
        core.on_image(msg)
        assert core.process_pending() == []  # waiting for look-ahead
    core.request_reset("test")
    records = core.process_pending()
    assert [r.header for r in records] == [m.header for m in msgs]
    assert core.engine.window_fill == 0


def test_overload_drops_whole_windows_and_bounds_the_queue(tiny_engine_factory, bag_factory):
    params = tiny_params(max_queue_frames=5, skip_backlog_frames=3)
    core = make_core(tiny_engine_factory, params)
    for i in range(12):  # the worker is stuck: nothing is processed meanwhile
        core.on_image(image_msg(bag_factory, rgb_frame(i), T0 + i * PERIOD_NS))
        assert core.queue_length <= params.max_queue_frames
    c = core.counters
    assert (c.dropped_frames, c.skipped_windows, core.queue_length) == (10, 2, 2)
    diag = core.diagnostics()[0]
    assert diag.level == 1 and "overloaded" in diag.message
    assert diag.values["frames_dropped"] == "10" and diag.values["windows_skipped"] == "2"


def test_backlog_at_a_window_boundary_skips_the_next_window(tiny_engine_factory, bag_factory):
    params = tiny_params(max_queue_frames=10, skip_backlog_frames=3)
    core = make_core(tiny_engine_factory, params)
    msgs = [image_msg(bag_factory, rgb_frame(i), T0 + i * PERIOD_NS) for i in range(6)]
    for msg in msgs[:5]:
        core.on_image(msg)
    # backlog 4 >= 3 at the first window boundary: the 5 frames are pushed as context only
    assert core.process_pending() == []
    assert (core.counters.skipped_windows, core.counters.skipped_frames, core.counters.pushed) == (1, 5, 5)
    for msg in msgs[5:]:  # the worker has caught up: one frame waits at the next boundary
        core.on_image(msg)
    records = core.process_pending() + core.flush()
    assert [r.header for r in records] == [m.header for m in msgs[5:]]
    assert all(not r.result.skipped for r in records)
    # the context frames are in the segmented frame's window
    assert records[0].result.window_stamps_ns[:2] == [T0 + 3 * PERIOD_NS, T0 + 4 * PERIOD_NS]


def test_refusals_duplicates_and_disabled(tiny_engine_factory, bag_factory, caplog):
    core = make_core(tiny_engine_factory)
    with caplog.at_level(logging.ERROR, logger="test.gmos"):
        for i in range(3):
            bad = image_msg(bag_factory, rgb_frame(i), T0 + i * PERIOD_NS)
            bad.encoding = "bayer_rggb8"
            assert not core.on_image(bad)
    refusals = [r for r in caplog.records if "bayer_rggb8" in r.getMessage()]
    assert len(refusals) == 1  # one clear line, not one per frame
    assert "expected one of rgb8, bgr8" in refusals[0].getMessage()
    assert core.counters.rejected == 3
    diag = core.diagnostics()[0]
    assert diag.level == 1 and "bayer_rggb8" in diag.message and diag.values["frames_rejected"] == "3"
    good = image_msg(bag_factory, rgb_frame(0), T0)
    assert core.on_image(good)
    assert not core.on_image(image_msg(bag_factory, rgb_frame(0), T0))  # same stamp again
    assert core.counters.duplicates == 1
    core.set_enabled(False)
    assert not core.on_image(image_msg(bag_factory, rgb_frame(1), T0 + PERIOD_NS))
    assert core.counters.ignored_disabled == 1
    assert core.queue_length == 1  # the frame received before disabling is still processed
    assert core.diagnostics()[0].message == "disabled"


def test_malformed_image_is_refused_in_the_worker_without_stopping_it(tiny_engine_factory, bag_factory):
    core = make_core(tiny_engine_factory)
    broken = image_msg(bag_factory, rgb_frame(0), T0)
    broken.data = broken.data[:10]
    assert core.on_image(broken)  # cheap checks pass in the callback
    assert core.process_pending() == []
    assert core.counters.rejected == 1 and "data has 10 bytes" in core.diagnostics()[0].values["last_problem"]
    assert core.on_image(image_msg(bag_factory, rgb_frame(1), T0 + PERIOD_NS))
    assert len(core.process_pending() + core.flush()) == 1


def test_gmos_s_mask_threshold_rethresholds_the_foreground_probability(tiny_engine_factory, bag_factory):
    core = make_core(tiny_engine_factory)
    core.on_image(image_msg(bag_factory, rgb_frame(0), T0))
    (record,) = core.process_pending() + core.flush()
    prob = record.result.fg_prob
    assert prob is not None and prob.shape == (HEIGHT, WIDTH)
    threshold = float(np.median(prob))
    msgs = frame_output_messages(bag_factory, record.result, record.header, mask_threshold=threshold)
    mask = np.asarray(msgs["dynamic_mask"].data).reshape(HEIGHT, WIDTH)
    np.testing.assert_array_equal(mask == 255, prob > threshold)


def test_default_engine_factory_builds_the_tiny_engine():
    engine = build_engine(tiny_params())
    assert engine.lookahead_frames == 2 and engine.config.mode == "gmos_s"
    # a weight file that is not there is named (no weights at all means the shipped default model: see
    # gmos_core.weights, not this factory)
    with pytest.raises(FileNotFoundError, match="/nope/pi3.safetensors"):
        build_engine(tiny_params(tiny_random_model=False, pi3_weights="/nope/pi3.safetensors",
                                 sam2_checkpoint="/nope/sam2.pt", head_weights="/nope/head.safetensors"))


def test_process_before_activate_is_an_error(bag_factory):
    core = NodeCore(tiny_params(), lambda p: None)
    core.on_image(image_msg(bag_factory, rgb_frame(0), T0))
    with pytest.raises(RuntimeError, match="before activate"):
        core.process_pending()


def test_unsupported_depth_is_dropped_with_one_line_and_the_frame_still_segmented(tiny_engine_factory, bag_factory,
                                                                                caplog):
    core = make_core(tiny_engine_factory, tiny_params(use_depth=True))
    with caplog.at_level(logging.ERROR, logger="test.gmos"):
        for i in range(2):
            depth = image_msg(bag_factory, rgb_frame(i), T0 + i * PERIOD_NS, encoding="rgb8")  # not a depth
            assert core.on_image(image_msg(bag_factory, rgb_frame(i), T0 + i * PERIOD_NS), depth=depth)
    assert [r.getMessage() for r in caplog.records if "depth encoding" in r.getMessage()] == [
        "GMOS: depth image ignored: depth encoding 'rgb8' is not supported; expected one of ['16UC1', '32FC1', "
        "'mono16']; the image is segmented without it (no masked_depth)"]
    assert (core.counters.depth_rejected, core.counters.rejected, core.queue_length) == (2, 0, 2)
    records = core.process_pending() + core.flush()
    assert len(records) == 2 and all(r.source.depth is None for r in records)
    assert "masked_depth" not in record_messages(bag_factory, records[0], core.params)
