"""Interrupted runs leave readable bags: real subprocesses killed with SIGKILL, SIGINT and SIGTERM; a
second SIGINT/SIGTERM stops at once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ._helpers import IMAGE_TOPIC, make_video_bag, read_bag, stamp_ns

WRITER_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from gmos_core.bags.writer import BagWriter
    from gmos_core.bags.messages import InputMessageBuilder
    storage, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bag = BagWriter(out, storage=storage)
    build = InputMessageBuilder(bag.typestore)
    bag.add_topic("/img", "sensor_msgs/msg/Image")
    rgb = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    for i in range(n):
        bag.write("/img", i * 10**8, build.image_from_rgb(build.header(i * 10**8, "cam"), rgb))
        bag.checkpoint()
    # one more message that is written but never checkpointed: it may be lost, nothing else may
    bag.write("/img", n * 10**8, build.image_from_rgb(build.header(n * 10**8, "cam"), rgb))
    print("ready", flush=True)
    time.sleep(600)
""")


def _env(repo_root: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo_root) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_writer_killed_with_sigkill_leaves_every_checkpointed_message(tmp_path, repo_root, storage):
    out = tmp_path / "bag"
    proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, storage, str(out), "25"], stdout=subprocess.PIPE,
                            text=True, env=_env(repo_root))
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.kill()  # SIGKILL: no finaliser runs
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    messages = read_bag(out)["/img"]  # plain rosbags, no recovery step
    stamps = [stamp_ns(m) for _, m in messages]
    assert stamps[:25] == [i * 10**8 for i in range(25)]
    assert len(stamps) in (25, 26)


def _wait_for_outputs(out_bag: Path, proc: subprocess.Popen, count: int, timeout_s: float = 240) -> None:
    """Until metadata.yaml (rewritten at checkpoints) reports ``count`` dynamic masks."""
    import yaml

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"replay exited early with {proc.returncode}: {proc.stderr.read()}"
        meta = out_bag / "metadata.yaml"
        if meta.exists():
            try:
                info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
                counts = {t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]}
                if counts.get("/gmos/dynamic_mask", 0) >= count:
                    return
            except (yaml.YAMLError, KeyError, TypeError):
                pass  # caught mid-rename
        time.sleep(0.2)
    raise AssertionError(f"no {count} outputs within {timeout_s} s")


def _replay_cmd(in_bag: Path, out_bag: Path, storage: str) -> list[str]:
    return [sys.executable, "-m", "gmos_core", "replay", str(in_bag), "--image-topic", IMAGE_TOPIC,
            "--out", str(out_bag), "--storage", storage, "--tiny-random-model", "--mode", "gmos_s",
            "--no-overlay", "--no-progress", "--fps", "30"]


@pytest.mark.parametrize("sig,storage", [(signal.SIGKILL, "mcap"), (signal.SIGINT, "sqlite3"),
                                         (signal.SIGTERM, "mcap")])
def test_interrupted_replay_leaves_a_readable_bag(tmp_path, repo_root, demo_clip, sig, storage):
    frames = 40
    in_bag = make_video_bag(demo_clip, tmp_path / "in", frames, storage=storage, camera_info_topic=None)
    out_bag = tmp_path / "out"
    proc = subprocess.Popen(_replay_cmd(in_bag, out_bag, storage), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(repo_root))
    try:
        _wait_for_outputs(out_bag, proc, 2)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    input_stamps = [stamp_ns(m) for _, m in read_bag(in_bag)[IMAGE_TOPIC]]
    outputs = read_bag(out_bag)  # plain rosbags, no recovery step
    masks = [stamp_ns(m) for _, m in outputs["/gmos/dynamic_mask"]]
    objects = [stamp_ns(m) for _, m in outputs["/gmos/objects"]]
    assert len(masks) >= 2 and masks == input_stamps[: len(masks)] and objects == masks
    assert len(outputs[IMAGE_TOPIC]) >= len(masks)  # the copied inputs too
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        assert len(masks) < frames
    else:
        # Ctrl-C / SIGTERM: the replay stops, finalises the bag and says so
        assert proc.returncode == 130, stderr
        assert "INTERRUPTED" in stdout
        import yaml

        info = yaml.safe_load((out_bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        counts = {t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]}
        assert counts["/gmos/dynamic_mask"] == len(masks)
        summary = (tmp_path / "out_summary.json").read_text()
        assert '"interrupted": true' in summary and '"accounted": true' in summary


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_one_signal_finishes_the_frame_a_second_stops_at_once(tmp_path, demo_clip, signum):
    """In-process (replay_bag installs its handlers in the main thread): a signal delivered while a frame is
    in the engine lets that frame finish and be written, then the replay stops; a second signal raises at
    once, inside the frame. Both finalise the bag and report the run as interrupted."""
    from gmos_core.bags.replay import ReplayOptions, replay_bag

    from ._helpers import fast_node_maker

    in_bag = make_video_bag(demo_clip, tmp_path / "in", 12, camera_info_topic=None)
    for signals in (1, 2):
        make = fast_node_maker()
        reached: list[int] = []

        def make_node(clock_ns, signals=signals, make=make, reached=reached):
            node = make(clock_ns)
            process_pending = node.process_pending

            def interrupted(*args, **kwargs):
                records = process_pending(*args, **kwargs)  # frame pushed through the engine
                if node.counters.pushed == 6:
                    for _ in range(signals):
                        os.kill(os.getpid(), signum)  # handled before the next bytecode of this thread
                    reached.append(node.counters.pushed)  # not reached when the handler raises
                return records

            node.process_pending = interrupted
            return node

        out = tmp_path / f"out{signals}"
        previous = signal.getsignal(signum)
        summary = replay_bag(in_bag, out, ReplayOptions(IMAGE_TOPIC), make_node, progress=False, handle_signals=True)
        assert signal.getsignal(signum) == previous  # handlers restored
        masks = [stamp_ns(m) for _, m in read_bag(out)["/gmos/dynamic_mask"]]
        assert summary.interrupted and summary.accounted
        assert summary.frames_in == 6  # no frame read after the signal
        if signals == 1:
            assert reached == [6]  # the frame in hand finished ...
            # ... and its ready outputs were written: frames 1-4 (2 frames of look-ahead at stride 1)
            assert len(masks) == summary.frames_out == 4
        else:
            assert reached == []  # stopped inside the frame
            assert len(masks) == summary.frames_out == 3  # frame 6 completed frame 4's window: not written
        assert summary.frames_pending_at_interrupt == 6 - summary.frames_out
