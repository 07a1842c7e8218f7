"""gmos replay: one output per input with identical headers, both storages; malformed inputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gmos_core.bags.reader import BagInputError
from gmos_core.bags.replay import Artefacts, ReplayOptions, replay_bag

from ._helpers import IMAGE_TOPIC, INFO_TOPIC, make_video_bag, read_bag, stamp_ns, tiny_node_maker

FRAMES = 5  # > the look-ahead (2 frames at stride 1): outputs both in-stream and at the flush


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_one_output_per_input(tmp_path, shared_dir, storage):
    """Frames of the real dog.mp4 -> bag -> replay: each input image yields exactly one output per topic,
    with the input header (stamp and frame_id) verbatim; the output bag re-reads with rosbags."""
    in_bag = make_video_bag(shared_dir / "data" / "videos" / "dog.mp4", tmp_path / "in", FRAMES, storage=storage,
                            frame_id="dog_cam")
    out_bag = tmp_path / "out"
    summary = replay_bag(in_bag, out_bag, ReplayOptions(IMAGE_TOPIC, camera_info_topic=INFO_TOPIC, storage=storage),
                         tiny_node_maker(), artefacts=Artefacts.beside(out_bag), progress=False)
    assert summary.frames_in == FRAMES and summary.frames_out == FRAMES and summary.frames_skipped == 0
    assert summary.accounted and not summary.interrupted
    assert summary.storage == storage
    assert (out_bag / f"out.{'mcap' if storage == 'mcap' else 'db3'}").is_file()

    inputs = read_bag(in_bag)
    outputs = read_bag(out_bag)
    in_headers = [(stamp_ns(m), m.header.frame_id) for _, m in inputs[IMAGE_TOPIC]]
    assert len(set(in_headers)) == FRAMES
    for topic in ("/gmos/objects", "/gmos/dynamic_mask", "/gmos/instance_mask", "/gmos/dynamic_mask/camera_info"):
        headers = sorted((stamp_ns(m), m.header.frame_id) for _, m in outputs[topic])
        assert headers == sorted(in_headers), topic
    for _, mask in outputs["/gmos/dynamic_mask"]:
        assert mask.encoding == "mono8" and (mask.height, mask.width) == (96, 160)
        assert set(np.unique(mask.data)) <= {0, 255}
    for _, objects in outputs["/gmos/objects"]:
        assert objects.instance_mask.encoding == "mono16"
        assert objects.header.frame_id == "dog_cam"
        assert len(objects.window_stamps) >= 1
    # the inputs used are copied alongside, byte for byte
    assert [stamp_ns(m) for _, m in outputs[IMAGE_TOPIC]] == [s for s, _ in in_headers]
    assert np.array_equal(outputs[IMAGE_TOPIC][3][1].data, inputs[IMAGE_TOPIC][3][1].data)
    # look-ahead: the first output is logged when a later input arrived, the last ones at the flush
    first_log, first = outputs["/gmos/objects"][0]
    assert first_log > stamp_ns(first)
    assert "/gmos/replay/skipped" not in outputs  # declared, but nothing was skipped
    # an output is logged when the node would publish it: never before its own frame
    for topic in ("/gmos/objects",):
        for log_time, msg in outputs[topic]:
            assert log_time >= stamp_ns(msg)
    assert Path(summary.artefacts["motion timeline plot"]).stat().st_size > 1000
    assert Path(summary.artefacts["overlay video"]).stat().st_size > 1000
    assert f'"frames_out": {FRAMES}' in Path(summary.artefacts["summary"]).read_text()


def test_humble_output_uses_metadata_v8_with_integer_qos(tmp_path, demo_clip):
    in_bag = make_video_bag(demo_clip, tmp_path / "in", 3, storage="sqlite3", distro="humble")
    out_bag = tmp_path / "out"
    summary = replay_bag(in_bag, out_bag, ReplayOptions(IMAGE_TOPIC, ros_distro="humble"), tiny_node_maker(),
                         progress=False)
    assert summary.storage == "sqlite3" and summary.frames_out == 3
    import yaml

    meta = yaml.safe_load((out_bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8 and meta["storage_identifier"] == "sqlite3"
    assert isinstance(meta["custom_data"], dict) and meta["custom_data"]  # never null (yaml-cpp map conversion)
    topics = {t["topic_metadata"]["name"]: t for t in meta["topics_with_message_count"]}
    assert topics["/gmos/dynamic_mask"]["message_count"] == 3
    assert all(isinstance(t["topic_metadata"]["offered_qos_profiles"], str) for t in topics.values())


def test_wrong_topic_names_the_bags_topics(tmp_path, demo_clip):
    in_bag = make_video_bag(demo_clip, tmp_path / "in", 2)
    with pytest.raises(BagInputError) as info:
        replay_bag(in_bag, tmp_path / "out", ReplayOptions("/camera/rgb"), tiny_node_maker(), progress=False)
    text = str(info.value)
    assert "'/camera/rgb' is not in" in text
    assert "/camera/image_raw [sensor_msgs/msg/Image, 2 msgs]" in text and "/camera/camera_info" in text
    assert not (tmp_path / "out").exists()  # nothing half-made


def test_camera_info_topic_of_wrong_type_is_refused(tmp_path, demo_clip):
    in_bag = make_video_bag(demo_clip, tmp_path / "in", 2)
    with pytest.raises(BagInputError, match="has type sensor_msgs/msg/Image; expected sensor_msgs/msg/CameraInfo"):
        replay_bag(in_bag, tmp_path / "out", ReplayOptions(IMAGE_TOPIC, camera_info_topic=IMAGE_TOPIC),
                   tiny_node_maker(), progress=False)


def _write_bag_with_bad_frames(path: Path, clip: Path, bad: dict[int, str], frames: int = 6) -> list[int]:
    """A bag whose images ``bad`` carry an unsupported encoding (and payloads that do not decode)."""
    from gmos_core.bags.messages import InputMessageBuilder
    from gmos_core.bags.writer import BagWriter
    from gmos_core.io import iter_video_frames
    from PIL import Image

    stamps = []
    with BagWriter(path, storage="mcap") as bag:
        build = InputMessageBuilder(bag.typestore)
        bag.add_topic(IMAGE_TOPIC, "sensor_msgs/msg/Image")
        for i, rgb in enumerate(iter_video_frames(clip, 0, frames)):
            rgb = np.asarray(Image.fromarray(rgb).resize((160, 96)))
            stamp = 2_000_000_000 + i * 33_000_000
            stamps.append(stamp)
            header = build.header(stamp, "cam")
            msg = build.image_from_rgb(header, rgb, "bgr8")
            if i in bad:
                msg = build.image(header, np.zeros((96, 160, 3), np.uint8), bad[i])
            bag.write(IMAGE_TOPIC, stamp, msg)
    return stamps


def test_unsupported_encoding_mid_bag_is_recorded_and_the_run_continues(tmp_path, demo_clip):
    stamps = _write_bag_with_bad_frames(tmp_path / "in", demo_clip, {2: "bayer_rggb8", 3: "32FC3"}, frames=5)
    out_bag = tmp_path / "out"
    summary = replay_bag(tmp_path / "in", out_bag, ReplayOptions(IMAGE_TOPIC), tiny_node_maker(), progress=False)
    assert (summary.frames_in, summary.frames_out, summary.frames_skipped) == (5, 3, 2)
    assert summary.accounted
    assert [s.index for s in summary.skipped] == [2, 3]
    assert all("not supported" in s.reason for s in summary.skipped)
    assert any("bayer_rggb8" in r for r in summary.skipped_by_reason)
    outputs = read_bag(out_bag)
    # every input is accounted for in the bag itself: an output or a skip record, by header stamp
    segmented = {stamp_ns(m) for _, m in outputs["/gmos/dynamic_mask"]}
    skipped = {stamp_ns(m) for _, m in outputs["/gmos/replay/skipped"]}
    assert segmented | skipped == set(stamps) and not segmented & skipped
    record = outputs["/gmos/replay/skipped"][0][1]
    assert "bayer_rggb8" in record.status[0].message and record.header.frame_id == "cam"
    assert {kv.key: kv.value for kv in record.status[0].values}["frame_index"] == "2"
    assert "skipped 1x" in summary.format()


def test_empty_bag_is_a_clear_error(tmp_path):
    from gmos_core.bags.writer import BagWriter

    with BagWriter(tmp_path / "empty", storage="sqlite3") as bag:
        bag.add_topic(IMAGE_TOPIC, "sensor_msgs/msg/Image")
    with pytest.raises(BagInputError, match="has no messages"):
        replay_bag(tmp_path / "empty", tmp_path / "out", ReplayOptions(IMAGE_TOPIC), tiny_node_maker(), progress=False)
    with BagWriter(tmp_path / "no_topics", storage="mcap"):
        pass
    with pytest.raises(BagInputError, match=r"the bag has no topics"):
        replay_bag(tmp_path / "no_topics", tmp_path / "out2", ReplayOptions(IMAGE_TOPIC), tiny_node_maker(),
                   progress=False)


def test_truncated_mcap_input_is_read_up_to_the_cut(tmp_path, demo_clip):
    """A cut copy of an mcap bag (no footer, torn last record): the complete frames are replayed from a
    repaired temporary copy and the summary says so; the input file is left untouched."""
    in_bag = make_video_bag(demo_clip, tmp_path / "in", 6, camera_info_topic=None)
    data = in_bag / "in.mcap"
    blob = data.read_bytes()
    frame_bytes = 160 * 96 * 3
    data.write_bytes(blob[: len(blob) // 2 + frame_bytes // 3])  # cut inside a chunk
    cut = data.read_bytes()
    summary = replay_bag(in_bag, tmp_path / "out", ReplayOptions(IMAGE_TOPIC), tiny_node_maker(), progress=False)
    assert summary.input_recovery and "kept the complete records" in summary.input_recovery
    assert 1 <= summary.frames_in < 6 and summary.frames_out == summary.frames_in
    assert data.read_bytes() == cut


def test_truncated_sqlite_input_is_a_clear_error(tmp_path, demo_clip):
    in_bag = make_video_bag(demo_clip, tmp_path / "in", 4, storage="sqlite3")
    data = in_bag / "in.db3"
    data.write_bytes(data.read_bytes()[:3000])
    with pytest.raises(BagInputError, match=r"cannot read .* as a rosbag2"):
        replay_bag(in_bag, tmp_path / "out", ReplayOptions(IMAGE_TOPIC), tiny_node_maker(), progress=False)


def test_not_a_bag(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BagInputError, match="not a rosbag2 folder"):
        replay_bag(tmp_path, tmp_path / "out", ReplayOptions(IMAGE_TOPIC), tiny_node_maker(), progress=False)
    with pytest.raises(BagInputError, match="input bag not found"):
        replay_bag(tmp_path / "missing", tmp_path / "out", ReplayOptions(IMAGE_TOPIC), tiny_node_maker(),
                   progress=False)


def test_options_are_validated():
    with pytest.raises(ValueError, match="absolute topic name"):
        ReplayOptions("camera/image_raw")
    with pytest.raises(ValueError, match="unsupported ROS distribution"):
        ReplayOptions(IMAGE_TOPIC, ros_distro="foxy")
    with pytest.raises(ValueError, match="unsupported storage"):
        ReplayOptions(IMAGE_TOPIC, storage="rosbag1")


def test_compressed_images_with_depth_and_ground_truth_topic(tmp_path, demo_clip):
    """CompressedImage input (JPEG), a 16UC1 depth topic paired by stamp (one depth missing -> that image is
    recorded as skipped, like the node's synchroniser would drop it), and evaluation against a GT topic."""
    import io

    from PIL import Image

    from gmos_core.bags.messages import InputMessageBuilder
    from gmos_core.bags.writer import BagWriter
    from gmos_core.io import iter_video_frames

    in_bag = tmp_path / "in"
    stamps = []
    with BagWriter(in_bag, storage="sqlite3") as bag:
        build = InputMessageBuilder(bag.typestore)
        bag.add_topic("/cam/image/compressed", "sensor_msgs/msg/CompressedImage")
        bag.add_topic("/cam/depth", "sensor_msgs/msg/Image")
        bag.add_topic("/gt/labels", "sensor_msgs/msg/Image")
        for i, rgb in enumerate(iter_video_frames(demo_clip, 0, 5)):
            rgb = np.asarray(Image.fromarray(rgb).resize((160, 96)))
            stamp = 3_000_000_000 + i * 33_366_667
            stamps.append(stamp)
            jpeg = io.BytesIO()
            Image.fromarray(rgb).save(jpeg, format="JPEG", quality=90)
            header = build.header(stamp, "cam")
            bag.write("/cam/image/compressed", stamp, build.new("sensor_msgs/msg/CompressedImage", header=header,
                                                                 format="jpeg",
                                                                 data=np.frombuffer(jpeg.getvalue(), np.uint8)))
            if i != 3:  # no depth for frame 3
                depth = np.full((96, 160), 1500 + i, np.uint16)
                bag.write("/cam/depth", stamp + 2_000_000,  # 2 ms later, within the 10 ms slop
                          build.image(build.header(stamp + 2_000_000, "depth_cam"), depth, "16UC1"))
            labels = np.zeros((96, 160), np.uint8)
            labels[20:60, 40:100] = 1
            bag.write("/gt/labels", stamp, build.image(header, labels, "mono8"))
    from gmos_core.bags.evaluation import make_evaluator

    out_bag = tmp_path / "out"
    summary = replay_bag(in_bag, out_bag, ReplayOptions("/cam/image/compressed", depth_topic="/cam/depth",
                                                        storage="mcap"),
                         tiny_node_maker(use_depth=True, mask_threshold=0.0), progress=False,
                         evaluate=make_evaluator(gt_bag=in_bag, gt_topic="/gt/labels"))
    assert (summary.frames_in, summary.frames_out, summary.frames_skipped) == (5, 4, 1)
    assert "no depth image on /cam/depth" in summary.skipped[0].reason and summary.skipped[0].index == 3
    outputs = read_bag(out_bag)
    depth_out = outputs["/gmos/masked_depth"]
    assert len(depth_out) == 4 and all(m.header.frame_id == "depth_cam" and m.encoding == "16UC1" for _, m in depth_out)
    assert [stamp_ns(m) for _, m in outputs["/gmos/dynamic_mask"]] == [s for i, s in enumerate(stamps) if i != 3]
    assert summary.evaluation["frames_evaluated"] == 4
    # The evaluation scores the masks as published. mask_threshold 0 (GMOS-S: fg_prob > 0) makes the random
    # model's masks cover every pixel, so the IoU with the 60x40 GT rectangle is known exactly:
    # 2400 / (160 * 96) = 0.15625 (rounded to 4 places in the summary), and recomputed from the bag.
    gt = np.zeros((96, 160), bool)
    gt[20:60, 40:100] = True
    masks = [np.asarray(m.data).reshape(m.height, m.width) > 0 for _, m in outputs["/gmos/dynamic_mask"]]
    assert len(masks) == 4 and all(m.all() for m in masks)
    expected = float(np.mean([(m & gt).sum() / (m | gt).sum() for m in masks]))
    assert expected == 2400 / (160 * 96)
    assert summary.evaluation["dynamic_mask_IoU_mean"] == pytest.approx(expected, abs=5e-5)
    assert "J&F_mean (moving objects)" in summary.evaluation


def test_max_frames_limits_outputs_and_copies(tmp_path, demo_clip):
    in_bag = make_video_bag(demo_clip, tmp_path / "in", 6)
    summary = replay_bag(in_bag, tmp_path / "out", ReplayOptions(IMAGE_TOPIC, camera_info_topic=INFO_TOPIC,
                                                                 max_frames=3), tiny_node_maker(), progress=False)
    assert (summary.frames_in, summary.frames_out) == (3, 3) and summary.accounted
    outputs = read_bag(tmp_path / "out")
    assert len(outputs[IMAGE_TOPIC]) == 3 and len(outputs[INFO_TOPIC]) == 3 and len(outputs["/gmos/objects"]) == 3
