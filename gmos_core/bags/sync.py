"""Pairing each image of a bag with its camera_info and depth, in one pass, in bag order.

The live node pairs them with an ApproximateTimeSynchronizer (``sync_slop_s``). Replay does the same by
header stamp: for each image, the camera_info/depth whose header stamp is nearest, if within the slop.
An image is released as soon as no better partner can still arrive (a partner stamped later than the
image stamp + slop was read, or the bag ended), so memory stays bounded by the slop, not the bag.
"""
from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass
from typing import Any, Deque, Iterable, Iterator, Optional

from gmos_core.bags.messages import stamp_to_ns


@dataclass
class BagFrame:
    """One input image with its partners and where it was in the bag."""

    index: int  # position among the image topic's messages (0-based)
    log_time_ns: int  # bag receive time of the image
    stamp_ns: int  # header stamp of the image
    image: Any  # deserialised sensor_msgs/Image or CompressedImage
    camera_info: Any = None
    depth: Any = None
    problem: str = ""  # non-empty: the frame cannot be used (why)


@dataclass
class PassThrough:
    """A message read on the way (for copying input topics into the output bag verbatim)."""

    topic: str
    log_time_ns: int
    raw: bytes


class _Partner:
    """A stream of partner messages (camera_info or depth) buffered around the pending images."""

    def __init__(self, topic: str, slop_ns: int):
        self.topic = topic
        self.slop_ns = slop_ns
        self.stamps: list[int] = []
        self.msgs: list[Any] = []
        self.latest = -1

    def add(self, stamp: int, msg: Any) -> None:
        if stamp >= self.latest:
            self.stamps.append(stamp)
            self.msgs.append(msg)
        else:  # out of order: keep the list sorted
            at = bisect.bisect_right(self.stamps, stamp)
            self.stamps.insert(at, stamp)
            self.msgs.insert(at, msg)
        self.latest = max(self.latest, stamp)

    def settled(self, stamp: int) -> bool:
        return self.latest > stamp + self.slop_ns

    def match(self, stamp: int) -> Any:
        if not self.stamps:
            return None
        at = bisect.bisect_left(self.stamps, stamp)
        best = None
        for j in (at - 1, at):
            if 0 <= j < len(self.stamps) and abs(self.stamps[j] - stamp) <= self.slop_ns:
                if best is None or abs(self.stamps[j] - stamp) < abs(self.stamps[best] - stamp):
                    best = j
        return self.msgs[best] if best is not None else None

    def forget_before(self, stamp: int) -> None:
        cut = bisect.bisect_left(self.stamps, stamp - self.slop_ns)
        if cut:
            del self.stamps[:cut]
            del self.msgs[:cut]


def synchronised_frames(
    messages: Iterable[tuple[str, int, bytes]],
    deserialize: Any,
    image_topic: str,
    image_type: str,
    camera_info_topic: Optional[str] = None,
    depth_topic: Optional[str] = None,
    slop_ns: int = 10_000_000,
    copy_topics: frozenset[str] = frozenset(),
) -> Iterator[BagFrame | PassThrough]:
    """Yield, in bag order, ``PassThrough`` for every message of ``copy_topics`` and one ``BagFrame`` per
    image (``problem`` set when it cannot be decoded or lacks a required partner).

    ``messages`` yields (topic, log_time_ns, raw CDR bytes); ``deserialize(raw, msgtype)``.
    """
    partners: dict[str, _Partner] = {}
    if camera_info_topic:
        partners[camera_info_topic] = _Partner(camera_info_topic, slop_ns)
    if depth_topic:
        partners[depth_topic] = _Partner(depth_topic, slop_ns)
    pending: Deque[BagFrame] = collections.deque()
    index = 0

    def release(final: bool) -> Iterator[BagFrame]:
        while pending:
            frame = pending[0]
            if frame.problem:
                yield pending.popleft()
                continue
            if not final and not all(p.settled(frame.stamp_ns) for p in partners.values()):
                return
            pending.popleft()
            if camera_info_topic:
                frame.camera_info = partners[camera_info_topic].match(frame.stamp_ns)
                if frame.camera_info is None:
                    frame.problem = (f"no camera_info on {camera_info_topic} within {slop_ns / 1e6:g} ms of the "
                                     f"image stamp (as the node's synchroniser, the image is not used)")
            if depth_topic and not frame.problem:
                frame.depth = partners[depth_topic].match(frame.stamp_ns)
                if frame.depth is None:
                    frame.problem = f"no depth image on {depth_topic} within {slop_ns / 1e6:g} ms of the image stamp"
            for partner in partners.values():
                partner.forget_before(frame.stamp_ns)
            yield frame

    for topic, log_time, raw in messages:
        if topic in copy_topics:
            yield PassThrough(topic, log_time, raw)
        if topic == image_topic:
            frame = BagFrame(index=index, log_time_ns=log_time, stamp_ns=log_time, image=None)
            index += 1
            try:
                frame.image = deserialize(raw, image_type)
                frame.stamp_ns = stamp_to_ns(frame.image.header.stamp)
            except Exception as exc:  # a message that does not decode as its type: record, continue
                frame.problem = f"undecodable {image_type} message ({type(exc).__name__}: {exc})"
            pending.append(frame)
        elif topic in partners:
            partner = partners[topic]
            try:
                msg = deserialize(raw, "sensor_msgs/msg/CameraInfo" if topic == camera_info_topic
                                  else "sensor_msgs/msg/Image")
                partner.add(stamp_to_ns(msg.header.stamp), msg)
            except Exception:
                pass  # an undecodable partner is like a missing one: the images it belonged to say so
        yield from release(final=False)
    yield from release(final=True)
