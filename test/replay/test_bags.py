"""gmos_core.bags without a model: typestore, bag-from-video, writer durability, recovery, reading errors."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gmos_core.bags.from_video import VideoBagOptions, video_to_bag
from gmos_core.bags.reader import BagInputError, open_bag
from gmos_core.bags.recovery import mcap_complete_end, recover_bag
from gmos_core.bags.typestore import TypestoreError, gmos_msg_definitions, make_typestore
from gmos_core.bags.writer import BagWriteError, BagWriter

from ._helpers import IMAGE_TOPIC, INFO_TOPIC, read_bag, stamp_ns


# ---------------------------------------------------------------- typestore
def test_typestore_registers_the_projects_msg_files(repo_root):
    definitions, origin = gmos_msg_definitions()
    assert Path(origin) == repo_root / "gmos_msgs" / "msg"  # the files themselves, not a copy
    files = {f"gmos_msgs/msg/{p.stem}" for p in (repo_root / "gmos_msgs" / "msg").glob("*.msg")}
    assert set(definitions) == files and files
    for distro in ("humble", "jazzy"):
        store = make_typestore(distro)
        for typename in files:
            assert typename in store.types
            text, _ = store.generate_msgdef(typename, ros_version=2)
            assert "std_msgs/Header" in text or "uint" in text
    assert make_typestore("JAZZY") is make_typestore("jazzy")  # cached


def test_typestore_errors():
    with pytest.raises(TypestoreError, match="unsupported ROS distribution 'rolling'"):
        make_typestore("rolling")
    with pytest.raises(TypestoreError, match="no .msg files found"):
        gmos_msg_definitions(Path("/nonexistent/msg"))


# ---------------------------------------------------------------- bag-from-video
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_from_real_video(tmp_path, shared_dir, storage):
    video = shared_dir / "data" / "videos" / "dog.mp4"
    result = video_to_bag(video, tmp_path / "bag", VideoBagOptions(max_frames=4, storage=storage, frame_id="front",
                                                                   start_ns=5 * 10**9, focal_px=600.0))
    assert (result.frames, result.width, result.height, result.storage) == (4, 1280, 720, storage)
    assert abs(result.fps - 30000 / 1001) < 1e-9
    bag = read_bag(tmp_path / "bag")
    images, infos = bag[IMAGE_TOPIC], bag[INFO_TOPIC]
    expected = [5 * 10**9 + round(i * 1e9 * 1001 / 30000) for i in range(4)]
    assert [stamp_ns(m) for _, m in images] == expected == [t for t, _ in images]
    assert [stamp_ns(m) for _, m in infos] == expected
    first = images[0][1]
    assert (first.encoding, first.height, first.width, first.step, first.header.frame_id) == ("rgb8", 720, 1280, 3840, "front")
    from gmos_core.io import iter_video_frames

    decoded = next(iter_video_frames(video, 0, 1))
    assert np.array_equal(first.data.reshape(720, 1280, 3), decoded)
    info = infos[0][1]
    assert (info.width, info.height, info.k[0], info.k[2], info.distortion_model) == (1280, 720, 600.0, 639.5, "plumb_bob")


def test_bag_from_frame_folder_with_encoding_and_resize(tmp_path, demo_clip):
    from PIL import Image

    from gmos_core.bridge.encodings import image_to_rgb
    from gmos_core.io import iter_video_frames

    folder = tmp_path / "frames"
    folder.mkdir()
    frames = list(iter_video_frames(demo_clip, 0, 3))
    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(folder / f"{i:05d}.png")
    result = video_to_bag(folder, tmp_path / "bag", VideoBagOptions(encoding="bgr8", resize=(240, 136),
                                                                    camera_info_topic=None, fps=10.0))
    assert (result.frames, result.fps, result.width, result.height) == (3, 10.0, 240, 136)
    bag = read_bag(tmp_path / "bag")
    assert INFO_TOPIC not in bag
    msgs = [m for _, m in bag[IMAGE_TOPIC]]
    assert [stamp_ns(m) - stamp_ns(msgs[0]) for m in msgs] == [0, 100_000_000, 200_000_000]
    assert msgs[0].encoding == "bgr8"
    expected = np.asarray(Image.fromarray(frames[1]).resize((240, 136), Image.BILINEAR))
    assert np.array_equal(image_to_rgb(msgs[1]), expected)  # the node's own conversion reads it back


def test_bag_from_video_errors(tmp_path, demo_clip):
    with pytest.raises(FileNotFoundError, match="input not found"):
        video_to_bag(tmp_path / "missing.mp4", tmp_path / "a")
    with pytest.raises(ValueError, match="fps must be > 0"):
        VideoBagOptions(fps=0)
    with pytest.raises(ValueError, match="encoding 'yuv420' is not supported"):
        VideoBagOptions(encoding="yuv420")
    with pytest.raises(ValueError, match="absolute topic name"):
        VideoBagOptions(image_topic="image")
    (tmp_path / "exists").mkdir()
    with pytest.raises(BagWriteError, match="exists already"):
        video_to_bag(demo_clip, tmp_path / "exists", VideoBagOptions(max_frames=1))
    with pytest.raises(ValueError, match="no frames"):
        video_to_bag(demo_clip, tmp_path / "b", VideoBagOptions(start_frame=10_000))
    assert not (tmp_path / "b").exists()


def test_bag_from_video_cli(tmp_path, demo_clip, repo_root):
    import os

    env = dict(os.environ, PYTHONPATH=str(repo_root))
    ok = subprocess.run([sys.executable, "-m", "gmos_core", "bag-from-video", str(demo_clip), "--out",
                         str(tmp_path / "bag"), "--max-frames", "2", "--storage", "sqlite3", "--ros-distro", "humble"],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "2 frames 480x270" in ok.stdout and (tmp_path / "bag" / "bag.db3").is_file()
    bad = subprocess.run([sys.executable, "-m", "gmos_core", "bag-from-video", str(demo_clip), "--out",
                          str(tmp_path / "bag2"), "--resize", "big"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "expected WIDTHxHEIGHT" in bad.stderr


# ---------------------------------------------------------------- writer and recovery
def _small_bag(path: Path, storage: str, n: int, close: bool = True) -> BagWriter:
    from gmos_core.bags.messages import InputMessageBuilder

    bag = BagWriter(path, storage=storage)
    build = InputMessageBuilder(bag.typestore)
    bag.add_topic("/img", "sensor_msgs/msg/Image")
    rgb = np.arange(40 * 30 * 3, dtype=np.uint8).reshape(30, 40, 3)
    for i in range(n):
        bag.write("/img", 1000 + i, build.image_from_rgb(build.header(1000 + i, "c"), rgb))
        bag.checkpoint()
    if close:
        bag.close()
    return bag


def test_writer_refuses_undeclared_topics_and_unknown_types(tmp_path):
    with BagWriter(tmp_path / "b", storage="mcap") as bag:
        with pytest.raises(BagWriteError, match="was not declared"):
            bag.write_raw("/nope", 0, b"")
        with pytest.raises(BagWriteError, match="unknown to the jazzy typestore"):
            bag.add_topic("/x", "made_up/msg/Thing")
    with pytest.raises(BagWriteError, match="unsupported storage"):
        BagWriter(tmp_path / "c", storage="rosbag1")
    with pytest.raises(BagWriteError, match="parent folder"):
        BagWriter(tmp_path / "missing" / "bag")


def test_recover_torn_mcap_tail(tmp_path):
    bag = _small_bag(tmp_path / "b", "mcap", 5, close=False)
    bag._writer.storage.bio.close()  # simulate a kill: no close()
    data = tmp_path / "b" / "b.mcap"
    complete = data.read_bytes()
    data.write_bytes(complete + b"\x06" + b"\x00" * 20)  # a chunk record torn after its first bytes
    with pytest.raises(Exception):
        read_bag(tmp_path / "b")
    report = recover_bag(tmp_path / "b")
    assert report.changed and report.bytes_dropped > 0
    assert [stamp_ns(m) for _, m in read_bag(tmp_path / "b")["/img"]] == [1000, 1001, 1002, 1003, 1004]
    assert not recover_bag(tmp_path / "b").changed  # idempotent
    assert mcap_complete_end(data)[1]


def test_recover_sqlite_hot_journal_and_missing_metadata(tmp_path):
    """A process killed inside a big transaction leaves a hot journal and half-written pages; recovery rolls
    the database back to its last commit (rosbags alone opens it immutable and would not)."""
    _small_bag(tmp_path / "b", "sqlite3", 3)
    db = tmp_path / "b" / "b.db3"
    killer = (
        "import os, sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1])\n"
        "conn.execute('PRAGMA cache_size=2'); conn.execute('PRAGMA cache_spill=ON')\n"
        "conn.execute('BEGIN')\n"
        "for i in range(64):\n"
        "    conn.execute('INSERT INTO messages (topic_id, timestamp, data) VALUES (1, ?, ?)', (5 + i, b'x' * 200000))\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", killer, str(db)])
    assert proc.returncode == -9
    assert db.with_name(db.name + "-journal").exists()
    (tmp_path / "b" / "metadata.yaml").unlink()
    report = recover_bag(tmp_path / "b")
    assert any("rolled the interrupted transaction back" in a for a in report.actions)
    assert any("metadata.yaml" in a for a in report.actions)
    assert not db.with_name(db.name + "-journal").exists()
    assert [stamp_ns(m) for _, m in read_bag(tmp_path / "b")["/img"]] == [1000, 1001, 1002]


def test_open_bag_reads_a_folder_without_metadata(tmp_path):
    _small_bag(tmp_path / "b", "mcap", 2)
    (tmp_path / "b" / "metadata.yaml").unlink()
    with open_bag(tmp_path / "b") as source:
        assert source.topics == {"/img": ("sensor_msgs/msg/Image", 2)}
    with pytest.raises(BagInputError, match="not a rosbag2 folder"):
        with open_bag(tmp_path):
            pass


def test_evaluator_against_a_davis_folder(tmp_path):
    """The GT-folder evaluation: a perfect moving prediction scores 1, a miss scores 0."""
    from types import SimpleNamespace

    from gmos_core.bags.evaluation import make_evaluator
    from gmos_core.engine.result import FrameIdentity, FrameResult, MotionState, ObjectResult
    from gmos_core.io import save_indexed_png

    gt = np.zeros((40, 60), np.uint8)
    gt[10:30, 20:40] = 1
    for i in range(3):
        save_indexed_png(tmp_path / f"{i:05d}.png", gt)

    def record(i: int, state: MotionState) -> SimpleNamespace:
        labels = (gt * 7).astype(np.uint16)  # instance id 7
        obj = ObjectResult(7, 3, state, 0.9 if state == MotionState.MOVING else 0.1, 0.8, (20, 10, 20, 20), 400)
        result = FrameResult(FrameIdentity(i, 1000 + i, "c"), "gmos_online", labels, [obj])
        return SimpleNamespace(result=result)

    evaluate = make_evaluator(gt_dir=tmp_path)
    good = evaluate([record(i, MotionState.MOVING) for i in range(3)])
    assert good["frames_evaluated"] == 3 and good["J_mean"] == 1.0 and good["dynamic_mask_IoU_mean"] == 1.0
    bad = evaluate([record(i, MotionState.STATIC) for i in range(3)])
    assert bad["J_mean"] == 0.0 and bad["dynamic_mask_IoU_mean"] == 0.0
    with pytest.raises(ValueError, match="exactly one ground truth"):
        make_evaluator()


def test_fast_mcap_reader_matches_rosbags(tmp_path, demo_clip):
    """The zero-copy mcap path yields exactly what rosbags' reader yields, in the same order."""
    from gmos_core.bags.fast_mcap import fast_messages

    video_to_bag(demo_clip, tmp_path / "bag", VideoBagOptions(max_frames=6, resize=(64, 36)))
    topics = {IMAGE_TOPIC, INFO_TOPIC}
    with open_bag(tmp_path / "bag") as source:
        reference = [(c.topic, t, bytes(raw)) for c, t, raw in source.reader.messages()]
        fast = [(topic, t, bytes(raw)) for topic, t, raw in fast_messages(source.reader, topics)]
        only_images = [t for _, t, _ in fast_messages(source.reader, {IMAGE_TOPIC})]
    assert fast == reference and len(fast) == 12
    assert only_images == [t for topic, t, _ in reference if topic == IMAGE_TOPIC]
    with open_bag(tmp_path / "bag" / "bag.mcap") as source:  # a bare .mcap file works too
        assert fast_messages(source.reader, topics) is not None
    _small_bag(tmp_path / "sq", "sqlite3", 2)
    with open_bag(tmp_path / "sq") as source:
        assert fast_messages(source.reader, {"/img"}) is None  # not mcap: the caller uses rosbags


def test_mcap_files_read_with_the_reference_mcap_library(tmp_path):
    """Final and provisional (interrupted) mcap files are valid for Foxglove's reference reader too."""
    import mcap.reader as mcap_reader  # the PyPI 'mcap' package: in the test extra, so never skipped
    _small_bag(tmp_path / "final", "mcap", 4)
    bag = _small_bag(tmp_path / "open", "mcap", 4, close=False)
    bag._writer.storage.bio.close()  # as after a kill: no summary, provisional footer
    for name in ("final", "open"):
        with (tmp_path / name / f"{name}.mcap").open("rb") as stream:
            reader = mcap_reader.make_reader(stream)
            logs = [message.log_time for _, _, message in reader.iter_messages()]
        assert logs == [1000, 1001, 1002, 1003], name


def test_motion_timeline_matrix_and_plot(tmp_path):
    from types import SimpleNamespace as N

    from gmos_core.bags.replay import MotionTimeline

    timeline = MotionTimeline()
    for i in range(6):
        objects = [N(track_id=9, state=2 if 2 <= i < 4 else 1)] + ([N(track_id=3, state=0)] if i < 2 else [])
        timeline.add(N(frame=N(stamp_ns=i * 10**8), objects=objects, mode="gmos_online", dynamic_mask=None))
    grid, tracks = timeline.matrix()
    assert tracks == [3, 9]
    assert grid.tolist() == [[0, 0, -1, -1, -1, -1], [1, 1, 2, 2, 1, 1]]
    gmos_s = MotionTimeline()
    gmos_s.add(N(frame=N(stamp_ns=0), objects=[], mode="gmos_s", dynamic_mask=np.ones((2, 2), bool)))
    assert gmos_s.matrix()[0].tolist() == [[2]]  # one "foreground" row
    assert timeline.plot(tmp_path / "t.png").stat().st_size > 2000
