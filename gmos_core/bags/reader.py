"""Opening input bags (rosbag2 sqlite3/mcap as written by Humble and Jazzy, bare .mcap/.db3 files) with
clear errors, and checking the topics a replay asks for."""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from gmos_core.bags.recovery import BagRecoveryError, recovered_copy, storage_file

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPES = ("sensor_msgs/msg/CameraInfo",)
DEPTH_TYPES = ("sensor_msgs/msg/Image",)


class BagInputError(ValueError):
    """An input bag or topic is not what the command needs (the message says what was expected)."""


@dataclass
class OpenedBag:
    """An open rosbags ``AnyReader`` plus what was needed to open it."""

    reader: Any
    path: Path
    recovered: Optional[str] = None  # what recovery did to a copy of a truncated input, else None

    @property
    def topics(self) -> dict[str, tuple[str, int]]:
        """``{topic: (msgtype, message count)}``."""
        return {name: (info.msgtype or "?", info.msgcount) for name, info in self.reader.topics.items()}

    def describe_topics(self) -> str:
        topics = self.topics
        if not topics:
            return "(the bag has no topics)"
        return ", ".join(f"{name} [{msgtype}, {count} msgs]" for name, (msgtype, count) in sorted(topics.items()))

    def connections(self, topic: str) -> list[Any]:
        return [c for c in self.reader.connections if c.topic == topic]

    def require_topic(self, topic: str, allowed_types: Sequence[str], role: str) -> str:
        """Check ``topic`` exists with one of ``allowed_types``; return its type. Errors list the bag's topics."""
        topics = self.topics
        if topic not in topics:
            raise BagInputError(
                f"{role} topic {topic!r} is not in {self.path}; the bag has: {self.describe_topics()}"
            )
        msgtype = topics[topic][0]
        if msgtype not in allowed_types:
            raise BagInputError(
                f"{role} topic {topic!r} in {self.path} has type {msgtype}; expected {' or '.join(allowed_types)}"
            )
        return msgtype


def _is_truncation(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("magic", "footer", "summary", "exceeds", "not enough", "torn", "invalid"))


@contextlib.contextmanager
def open_bag(path: str | Path, typestore: Any = None, allow_recovery: bool = True) -> Iterator[OpenedBag]:
    """Open a bag for reading. A truncated mcap (no footer: an interrupted recording or a cut copy) is read
    from a repaired copy in a temporary folder when ``allow_recovery``; the input itself is never modified.
    """
    from rosbags.highlevel import AnyReader
    from rosbags.interfaces import ConnectionExtRosbag2  # noqa: F401  (rosbags present)

    path = Path(path)
    if not path.exists():
        raise BagInputError(f"input bag not found: {path}")
    if path.is_dir() and not (path / "metadata.yaml").exists():
        # A bag folder without metadata.yaml (e.g. recorder killed): read its storage file directly.
        try:
            data_path, _ = storage_file(path)
        except BagRecoveryError as exc:
            raise BagInputError(f"{path} is not a rosbag2 folder: {exc}") from exc
        read_path = data_path
    else:
        read_path = path
    kwargs = {"default_typestore": typestore} if typestore is not None else {}
    with contextlib.ExitStack() as stack:
        recovered = None
        try:
            reader = AnyReader([read_path], **kwargs)
            reader.open()
        except Exception as exc:
            if not allow_recovery or read_path.suffix.lower() == ".db3" or not _is_truncation(exc):
                detail = " ".join(str(exc).split())  # one line (YAML parser errors span several)
                raise BagInputError(f"cannot read {path} as a rosbag2 (mcap or sqlite3): {detail}; expected a "
                                    "rosbag2 folder (metadata.yaml + .mcap/.db3) or a .mcap/.db3 file") from exc
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="gmos_bag_recovery_"))
            try:
                copy, report = recovered_copy(read_path if read_path.is_file() else path, workdir)
                reader = AnyReader([copy], **kwargs)
                reader.open()
            except Exception as exc2:
                raise BagInputError(
                    f"cannot read {path}: {exc}; recovering a copy failed too: {exc2}"
                ) from exc2
            recovered = "; ".join(report.actions) or "copy read after recovery"
        stack.callback(reader.close)
        yield OpenedBag(reader=reader, path=path, recovered=recovered)
