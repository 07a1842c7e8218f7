"""A recorded stream, replayed through the node's code path: one output per segmented frame, headers
identical to the inputs, written to and read back from a real rosbag2 (rosbags, mcap and sqlite3)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from gmos_core.bridge import OUTPUT_TOPICS, NodeCore, RosbagsMessageFactory, record_messages

from .conftest import PERIOD_NS, image_msg, rgb_frame, tiny_params

T0 = 1_712_000_000 * 10**9 + 17


@pytest.mark.parametrize("storage", ["MCAP", "SQLITE3"])
def test_bag_in_bag_out_headers_identical(tmp_path, tiny_engine_factory, storage):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    factory = RosbagsMessageFactory(store)
    source = tmp_path / "camera_bag"
    with Writer(source, version=9, storage_plugin=getattr(StoragePlugin, storage)) as writer:
        conn = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        for i in range(3):
            msg = image_msg(factory, rgb_frame(i), T0 + i * PERIOD_NS, frame_id="camera_optical")
            writer.write(conn, T0 + i * PERIOD_NS + 5_000_000, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))

    core = NodeCore(tiny_params(use_camera_info=False), tiny_engine_factory, logger=logging.getLogger("t"))
    core.activate()
    inputs, records = [], []
    with AnyReader([source], default_typestore=store) as reader:
        for connection, _, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            inputs.append(msg)
            core.on_image(msg)
            records += core.process_pending()
    records += core.flush()
    assert len(records) == len(inputs) == 3

    result_bag = tmp_path / "gmos_bag"
    with Writer(result_bag, version=9, storage_plugin=getattr(StoragePlugin, storage)) as writer:
        conns = {}
        for record in records:
            for topic, msg in record_messages(factory, record, core.params).items():
                name = "/gmos/" + topic
                if name not in conns:
                    conns[name] = writer.add_connection(name, OUTPUT_TOPICS[topic], typestore=store)
                stamp = record.result.frame.stamp_ns
                writer.write(conns[name], stamp, store.serialize_cdr(msg, OUTPUT_TOPICS[topic]))

    by_topic: dict[str, list] = {}
    with AnyReader([result_bag], default_typestore=store) as reader:
        for connection, _, raw in reader.messages():
            by_topic.setdefault(connection.topic, []).append(reader.deserialize(raw, connection.msgtype))
    assert set(by_topic) == {"/gmos/objects", "/gmos/dynamic_mask", "/gmos/instance_mask"}
    def header_key(msg):  # classes differ between readers (types come from each bag), so compare values
        return msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id

    assert [header_key(m) for m in inputs] == [(1_712_000_000 + i // 8, 17 + i * PERIOD_NS % 10**9, "camera_optical")
                                               for i in range(3)]
    for topic, msgs in by_topic.items():
        assert [header_key(m) for m in msgs] == [header_key(m) for m in inputs], topic
    for mask, source_msg in zip(by_topic["/gmos/dynamic_mask"], inputs):
        assert (mask.height, mask.width, mask.encoding) == (source_msg.height, source_msg.width, "mono8")
        assert set(np.unique(mask.data)) <= {0, 255}
