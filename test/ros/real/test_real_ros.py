"""The GMOS node on a real ROS 2 Jazzy: colcon-built workspace, `ros2 launch` / `ros2 run`, real DDS between
processes, the real lifecycle and parameter services, message_filters and the `ros2` CLI.

Each scenario (driver.py) runs once per session and several tests check what it observed. The tiny random
model runs on CPU; its masks are meaningless but deterministic, which is all these tests need.
"""
from __future__ import annotations

import numpy as np
import pytest

from gmos_core.bridge.params import PARAMETER_SPECS

HEADER_TOPICS = ("objects", "dynamic_mask", "dynamic_mask/camera_info", "instance_mask", "masked_depth")


@pytest.fixture(scope="module")
def stream(run_scenario):
    return run_scenario("stream")


@pytest.fixture(scope="module")
def simtime(run_scenario):
    return run_scenario("simtime")


@pytest.fixture(scope="module")
def failures(run_scenario):
    return run_scenario("failures")


@pytest.fixture(scope="module")
def geometric(run_scenario):
    return run_scenario("geometric")


def no_traceback(log: str) -> None:
    assert "Traceback" not in log, log[-4000:]


# ------------------------------------------------------------------------------------------------ stream
def test_launch_autostarts_and_the_cli_sees_it_active(stream):
    assert stream["state_at_start"] == "active"
    cli = stream["cli_lifecycle_get"]
    assert cli["rc"] == 0 and cli["out"].startswith("active"), cli


def test_parameters_are_declared_with_their_descriptors(stream):
    described = stream["descriptors"]
    types = {bool: 1, int: 2, float: 3, str: 4}  # rcl_interfaces ParameterType
    for spec in PARAMETER_SPECS:
        d = described[spec.name]
        assert d["type"] == types[spec.type] and d["description"] == spec.description, spec.name
        assert d["read_only"] == spec.read_only, spec.name
        if spec.value_range is not None:
            assert d["range"] == [list(spec.value_range)], spec.name
        if spec.choices is not None:
            assert all(choice in d["additional_constraints"] for choice in spec.choices), spec.name


def test_every_output_carries_the_header_of_its_source_frame(stream):
    sent = [tuple(h) for h in stream["sent_headers"]]
    outputs = {topic: [tuple(h) for h in headers] for topic, headers in stream["outputs"].items()}
    # every good frame sent (before the lifecycle part) is output once, in order, on every topic
    assert outputs["objects"] == sent
    for topic in HEADER_TOPICS:
        assert outputs[topic] == outputs["objects"], topic
    assert stream["dynamic_mask_encoding"] == ["mono8"]
    assert stream["camera_info_out"] == [["plumb_bob", [50.0, 0.0, 32.0, 0.0, 50.0, 24.0, 0.0, 0.0, 1.0]]]


def test_outputs_and_counted_skips_account_for_every_frame_received(stream):
    d = stream["diagnostics"]
    received = int(d["frames_received"])
    assert received == stream["sent_images"]  # reliable QoS on both sides: nothing lost between processes
    accounted = sum(int(d[k]) for k in ("frames_segmented", "frames_skipped", "frames_dropped", "frames_rejected",
                                        "frames_ignored_disabled", "frames_duplicate"))
    assert accounted == received
    assert int(d["frames_segmented"]) == len(stream["sent_headers"])
    assert d["frames_rejected"] == "1" and d["frames_ignored_disabled"] == "1"
    assert d["mode"] == "gmos_s" and d["active"] == "True"


def test_mask_threshold_set_at_run_time_takes_effect(stream):
    cli = stream["set_threshold_cli_1.0"]
    assert cli["successful"], cli  # `ros2 param set /gmos/gmos_node mask_threshold 1.0`
    assert stream["set_threshold_0.0"]["successful"] and stream["set_threshold_0.44"]["successful"]
    arrays = np.load(stream.out / "arrays.npz")
    fractions: dict[float, list[float]] = {}
    for stamp, threshold in stream["phase_of_output"].items():
        fractions.setdefault(threshold, []).append(float((arrays[f"mask_{stamp}"] > 0).mean()))
    assert fractions[1.0] and max(fractions[1.0]) == 0.0  # fg_prob > 1.0: nothing is dynamic
    assert fractions[0.0] and min(fractions[0.0]) == 1.0  # fg_prob > 0.0: everything is
    # 0.44 lies inside the tiny random model's foreground probabilities on these frames (measured: about
    # [0.40, 0.47]); if the tiny model's initialisation changes, pick a threshold inside its new range
    assert all(0.05 < f < 0.95 for f in fractions[0.44]), ("dynamic fractions at 0.44", fractions[0.44])


def test_read_only_out_of_range_and_wrongly_typed_sets_are_refused_with_the_reason(stream):
    read_only, out_of_range, wrong_type = (stream[k] for k in ("set_read_only", "set_out_of_range",
                                                                "set_wrong_type"))
    assert not read_only["successful"] and "read-only" in read_only["reason"] and "window_size" in read_only["reason"]
    assert not out_of_range["successful"] and "out of range" in out_of_range["reason"]
    assert "1.5" in out_of_range["reason"]
    assert not wrong_type["successful"] and "DOUBLE" in wrong_type["reason"]


def test_masked_depth_is_zero_exactly_where_the_mask_is_dynamic(stream):
    arrays = np.load(stream.out / "arrays.npz")
    stamps = [h[0] for h in stream["outputs"]["masked_depth"]]
    partial = 0
    for stamp in stamps:
        mask, depth, masked = (arrays[f"{k}_{stamp}"] for k in ("mask", "depth", "masked"))
        assert masked.shape == depth.shape == mask.shape
        np.testing.assert_array_equal(masked, np.where(mask > 0, 0, depth))
        partial += 0 < (mask > 0).sum() < mask.size
    assert partial >= 3  # the check ran on masks with both dynamic and static pixels


def test_wrong_encoding_is_counted_and_logged_and_the_node_goes_on(stream):
    assert stream["bad_encoding_logged"]
    assert stream["bad_encoding_stamp"] not in [h[0] for h in stream["outputs"]["objects"]]
    assert [h for h in stream["sent_headers"] if h[0] > stream["bad_encoding_stamp"]]  # later frames were output


def test_enable_and_reset_window_services(stream):
    assert stream["reset_window"] == {"success": True, "message": "window reset"}
    enable = stream["enable"]
    assert enable["off"][0] and "disabled" in enable["off"][1] and enable["on"] == [True, "enabled"]


def test_incompatible_qos_publisher_gets_the_nodes_warning(stream):
    assert stream["incompatible_warned"]
    assert "ros2 topic info -v image" in stream.log()


def test_lifecycle_through_the_real_services(stream):
    s = stream["lifecycle"]
    assert s["deactivate"] and s["after_deactivate"] == "inactive"
    assert s["subscribers_inactive"] == 0 and s["diagnostics_active_inactive"] == "False"  # engine released
    assert s["activate"] and s["after_activate"] == "active" and s["outputs_after_reactivate"] == 3
    # subscribed to the overlay only then: built and published for (some of) those frames, with their stamps
    assert s["debug_images"] and {d[0] for d in s["debug_images"]} <= set(s["reactivated_stamps"])
    assert all(d[1:] == ["rgb8", 48, 64] for d in s["debug_images"]), s["debug_images"]
    assert s["deactivate_again"] and s["cleanup"] and s["after_cleanup"] == "unconfigured"
    assert s["publishers_after_cleanup"] == 0
    assert s["shutdown"] and s["after_shutdown"] == "finalized"


def test_ctrl_c_stops_the_launch_cleanly(stream):
    stop = stream["stop"]
    assert stop["rc"] == 0, stop["log"][-3000:]
    assert "process has finished cleanly" in stop["log"]
    no_traceback(stop["log"])
    errors = [line for line in stop["log"].splitlines() if "ERROR" in line and "frame refused" not in line]
    assert not errors, errors


# ------------------------------------------------------------------------------------------------ simtime
def test_sim_time_diagnostics_follow_clock(simtime):
    stamps = simtime["diagnostics_stamps"]
    assert stamps and all(1000 * 10**9 < s <= simtime["sim_ns_at_end"] for s in stamps)  # not wall time
    assert simtime["sim_ns_at_end"] < simtime["wall_ns_at_end"] // 1000


def test_default_profile_accepts_reliable_and_best_effort_compressed_publishers(simtime):
    counts = simtime["received"]
    assert counts["after_reliable"] - counts["start"] == 3
    # best effort between processes may lose frames here (see ../shared/ros2/README.md): what holds is that
    # some arrive and every frame received is accounted for
    assert counts["after_best_effort"] > counts["after_reliable"]
    d = simtime["diagnostics"]
    accounted = sum(int(d[k]) for k in ("frames_segmented", "frames_skipped", "frames_dropped", "frames_rejected",
                                        "frames_ignored_disabled", "frames_duplicate"))
    assert accounted == int(d["frames_received"]) and simtime["objects_out"] == int(d["frames_segmented"])


def test_sigterm_exits_cleanly(simtime):
    log = simtime["stop"]["log"]
    assert simtime["node_stopped_by_sigterm"], (simtime["sigterm_to_exit_s"], log[-3000:])
    assert f"process has finished cleanly [pid {simtime['node_pid']}]" in log, log[-3000:]
    no_traceback(log)


# ------------------------------------------------------------------------------------------------ failures
def test_failing_activate_says_why_and_leaves_no_engine(failures):
    assert failures["initial_state"] == "unconfigured" and failures["configure"]
    assert failures["activate"] is False and failures["state_after_failed_activate"] == "inactive"
    log = failures.log()
    (line,) = [line for line in log.splitlines() if "could not build the engine" in line]
    assert any(path in line for path in failures["missing_files"]), line
    d = failures["diagnostics_after_failed_activate"]
    assert d["active"] == "False" and d["message"] == "inactive"


def test_configure_after_cleanup_creates_each_publisher_once(failures):
    assert failures["publishers_after_configure"] == 1
    assert failures["cleanup"] and failures["configure_again"]
    assert failures["publishers_after_reconfigure"] == 1
    assert failures["shutdown"] and failures["state_after_shutdown"] == "finalized"
    assert failures["stop"]["rc"] == 0
    no_traceback(failures["stop"]["log"])


def test_refused_params_file_values_give_one_line_each_and_no_configure(failures):
    assert failures["bad_params_state"] == "unconfigured"
    log = failures.log("bad_params.log")
    fps = [line for line in log.splitlines() if "parameter 'fps' = 30 (int)" in line]
    assert len(fps) == 1 and "expected a float in [0.0, 1000.0] (write 30.0)" in fps[0], log
    threshold = [line for line in log.splitlines() if "parameter 'mask_threshold' = 1.5" in line]
    assert len(threshold) == 1 and "in [0.0, 1.0]" in threshold[0], log
    assert "configure refused" in log
    # SIGTERM to the node under `ros2 run`. (Once, in a whole-suite run, it did not exit within 30 s and could not be
    # reproduced in 5 targeted runs: the message keeps the node's log tail for the next time.)
    stop = failures["bad_stop"]
    assert stop["rc"] == 0, (f"rc {stop['rc']} after {stop['stop_s']} s (SIGTERM to pid {stop['signalled']}, "
                             f"`ros2 run` pid {stop['run_pid']}); node log tail:\n{stop['log'][-3000:]}")
    no_traceback(log)


# --------------------------------------------------------------------------------------------- geometric
def test_geometric_mode_runs_at_camera_rate_without_weights(geometric):
    """mode:=geometric, no weight file, default device (cuda) on a CPU-only machine: 480x272 at 10 Hz in real
    time, every frame segmented (no skipped window) with its own header; the running dog is found."""
    assert geometric["state_at_start"] == "active"
    sent = geometric["sent"]
    for topic, stamps in geometric["outputs"].items():
        assert stamps == sent[:len(stamps)], topic  # the source headers, in order
        assert len(stamps) >= len(sent) - 2, topic  # all but the look-ahead of the last frames
    d = geometric["diagnostics"]
    assert d["mode"] == "geometric"
    assert int(d["frames_received"]) == len(sent)
    assert int(d["frames_skipped"]) == 0 and int(d["windows_skipped"]) == 0 and int(d["frames_dropped"]) == 0
    assert d["lookahead_frames"] == "2"  # centred window, stride max(1, int(10/8)) = 1
    moving = geometric["moving_pixels"]
    # the dog runs through the clip: most frames have moving pixels and objects
    assert sum(1 for n in moving if n > 0) >= len(moving) // 2, moving
    assert max(geometric["objects_per_frame"]) >= 1
    assert geometric["stop"]["rc"] == 0
    no_traceback(geometric.log())
