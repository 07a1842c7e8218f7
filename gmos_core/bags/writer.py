"""rosbag2 writing that survives interruption: every checkpoint leaves a bag readable up to that point.

rosbags' own writer keeps everything in flight until ``close()``: the sqlite3 storage commits one
transaction at the end, and the mcap storage buffers a 1 MiB chunk in memory and writes the footer (whose
end magic rosbags' reader requires) only on close. A process killed with SIGKILL cannot run ``close()``,
so such a bag is empty (sqlite3) or unreadable (mcap). The storages below change that:

* sqlite3: each checkpoint commits. Page-cache spilling is off, so uncommitted rows never reach the
  database file; rosbags opens databases ``immutable`` (it ignores a hot journal), so the file must be
  consistent on its own between commits.
* mcap: each checkpoint closes the pending chunk, appends a *provisional* Data End + Footer (summary
  offset 0 = "no summary, scan the file", which both rosbags and the C++ mcap reader accept) and flushes
  to the OS. The next write seeks back over the provisional tail. ``close()`` writes the real summary.
* ``metadata.yaml`` is written when the topics are declared and rewritten (atomically) at checkpoints,
  at most every ``metadata_interval_s``, so ``ros2 bag play``/rosbags find the topic list after a kill.

A kill that lands inside a checkpoint's few-millisecond write can still leave a torn tail; ``recover_bag``
(in ``gmos_core.bags.recovery``) repairs that case.
"""
from __future__ import annotations

import collections
import io
import os
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from gmos_core.bags.typestore import DISTROS, check_distro, make_typestore

STORAGES = ("mcap", "sqlite3")
# MCAP record layouts (little endian): Message = opcode, record length, channel id, sequence, log time,
# publish time; Chunk body header = start, end, uncompressed size, crc (0 = not computed), compression
# string length (0 = none), records length.
_MESSAGE_HEADER = struct.Struct("<BQHIQQ")
_CHUNK_HEADER = struct.Struct("<QQQIIQ")
# Without checkpoints, the pending chunk is written once it holds this much (bounds memory).
_MAX_PENDING_BYTES = 64 * 2**20
MCAP_MAGIC = b"\x89MCAP0\r\n"


class BagWriteError(ValueError):
    """The output bag cannot be created or written as asked."""


def check_storage(storage: str) -> str:
    name = str(storage).strip().lower()
    if name not in STORAGES:
        raise BagWriteError(f"unsupported storage {storage!r}; expected one of {list(STORAGES)}")
    return name


def provisional_mcap_tail() -> bytes:
    """Data End record (crc 0) + Footer with summary_start = 0 (no summary) + end magic: 8 + 13 + 29 + 8."""
    data_end = b"\x0f" + struct.pack("<QI", 4, 0)
    footer = b"\x02" + struct.pack("<QQQI", 20, 0, 0, 0)
    return data_end + footer + MCAP_MAGIC


class _SpilledChunkIndexes:
    """Stands in for rosbags' ``McapWriter.chunks`` (a list of Chunk Index records, written in the summary on
    close): the records go to a temporary file as they are made and come back, in order, when ``close``
    iterates them. With a checkpoint per frame that is one record per frame, ~235 bytes of Python objects
    each, which grew replay memory by ~0.23 MB per 1,000 frames (issue 15)."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="gmos_mcap_chunk_index_")
        self._count = 0

    def append(self, record: io.BytesIO) -> None:
        data = record.getbuffer()
        self._file.write(struct.pack("<Q", len(data)))
        self._file.write(data)
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self):
        self._file.flush()
        self._file.seek(0)
        try:
            for _ in range(self._count):
                (length,) = struct.unpack("<Q", self._file.read(8))
                record = io.BytesIO()
                record.write(self._file.read(length))  # write_record uses tell() as the length
                yield record
        finally:
            self._file.seek(0, io.SEEK_END)

    def close(self) -> None:
        self._file.close()


def _storage_classes() -> dict:
    """Durable subclasses of rosbags' storage writers (built lazily: rosbags is an optional dependency)."""
    from rosbags.rosbag2.storage_mcap import McapWriter
    from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer
    from rosbags.rosbag2.enums import CompressionMode, StoragePlugin

    class DurableSqlite3Writer(Sqlite3Writer):
        """sqlite3 storage that commits at every checkpoint and never spills uncommitted pages."""

        def __init__(self, path: Path, compression: Any) -> None:
            import sqlite3

            if compression == CompressionMode.STORAGE:
                raise BagWriteError("the sqlite3 storage does not support storage-side compression")
            # As rosbags' Sqlite3Writer.__init__, plus settings that must precede the schema.
            self.path = path / f"{path.name}.db3"
            self.conn = sqlite3.connect(f"file:{self.path}", uri=True)
            # 64 KiB pages: an image is a few overflow pages instead of hundreds (the page size is fixed
            # once the first table exists). rosbag2's C++ reader accepts any page size.
            self.conn.execute("PRAGMA page_size=65536")
            # No spill: uncommitted pages stay in memory, so the file only changes inside COMMIT.
            self.conn.execute("PRAGMA cache_spill=OFF")
            # Process kills (not power loss) are what we guard against: the OS keeps written pages.
            self.conn.execute("PRAGMA synchronous=OFF")
            # One writer: keeping the lock between commits saves ~0.4 ms per frame. Readers are not
            # blocked: rosbags opens databases immutable, without locking; a killed process drops the lock.
            self.conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            self.conn.executescript(self.SQLITE_SCHEMA)
            self.cursor = self.conn.cursor()

        def checkpoint(self) -> None:
            self.conn.commit()

        def abort(self) -> None:
            # Keep what was written: every row is a complete message.
            try:
                self.conn.commit()
            finally:
                self.conn.close()

    class DurableMcapWriter(McapWriter):
        """mcap storage whose file ends in a valid (summary-less) footer after every checkpoint."""

        def __init__(self, path: Path, compression: Any) -> None:
            super().__init__(path, compression)
            self.chunks = _SpilledChunkIndexes()  # type: ignore[assignment]
            self._tail_at: Optional[int] = None
            self._pieces: list[Any] = []  # pending chunk content, in order (bytes / memoryviews)
            self._pending = 0  # its length in bytes

        def _drop_provisional_tail(self) -> None:
            if self._tail_at is not None:
                self.bio.seek(self._tail_at)
                self.bio.truncate()
                self._tail_at = None

        def write(self, connection: Any, timestamp: int, data: bytes | memoryview) -> None:
            # Same bookkeeping as rosbags, but the payload is not copied into a chunk buffer: the pending
            # chunk is a list of pieces written to the file at the next checkpoint (rosbags copies every
            # message twice in memory before the file write). The file is only touched at checkpoints, so
            # between them it always ends in a valid footer.
            if self.compression:
                super().write(connection, timestamp, data)
                return
            self.message_start_time = min(timestamp, self.message_start_time)
            self.message_end_time = max(timestamp, self.message_end_time)
            self.channel_stats[connection.id] += 1
            chunk = self.chunk
            if chunk.bio.tell():  # schema/channel records rosbags put in the chunk buffer: keep their order
                self._pieces.append(chunk.bio.getvalue())
                self._pending += chunk.bio.tell()
                chunk.bio.seek(0)
                chunk.bio.truncate()
            chunk.message_start_time = min(timestamp, chunk.message_start_time)
            chunk.message_end_time = max(timestamp, chunk.message_end_time)
            chunk.msgs[connection.id].append((timestamp, self._pending))
            self._pieces.append(_MESSAGE_HEADER.pack(0x05, 22 + len(data), connection.id, 0, timestamp, timestamp))
            self._pieces.append(data)
            self._pending += 31 + len(data)
            if self._pending > _MAX_PENDING_BYTES:
                self.checkpoint()

        def close_chunk(self) -> None:
            self._drop_provisional_tail()
            if self.compression:
                super().close_chunk()
                return
            chunk = self.chunk
            if chunk.bio.tell():
                self._pieces.append(chunk.bio.getvalue())
                self._pending += chunk.bio.tell()
            size = self._pending
            head = _CHUNK_HEADER.pack(chunk.message_start_time, chunk.message_end_time, size, 0, 0, size)
            chunk_start = self.bio.tell()
            self.bio.write(struct.pack("<BQ", 0x06, len(head) + size))
            self.bio.write(head)
            for piece in self._pieces:
                self.bio.write(piece)
            self._pieces, self._pending = [], 0
            chunk_end = self.bio.tell()
            offsets: list[tuple[int, int]] = []
            for cid, msgs in chunk.msgs.items():
                offsets.append((cid, self.bio.tell()))
                entries = b"".join(struct.pack("<QQ", ts, offset) for ts, offset in msgs)
                self.bio.write(struct.pack("<BQHI", 0x07, 6 + len(entries), cid, len(entries)))
                self.bio.write(entries)
            index = io.BytesIO()
            index.write(struct.pack("<QQQQI", chunk.message_start_time, chunk.message_end_time, chunk_start,
                                    chunk_end - chunk_start, len(offsets) * 10))
            for cid, offset in offsets:
                index.write(struct.pack("<HQ", cid, offset))
            index.write(struct.pack("<QIQQ", self.bio.tell() - chunk_end, 0, size, size))
            self.chunks.append(index)
            self.chunk = type(chunk)(2**63 - 1, 0, io.BytesIO(), collections.defaultdict(list))

        def _has_pending(self) -> bool:
            return bool(self._pending or self.chunk.bio.tell())

        def checkpoint(self) -> None:
            if self._has_pending():
                self.close_chunk()
            self._drop_provisional_tail()
            self._tail_at = self.bio.tell()
            self.bio.write(provisional_mcap_tail())
            self.bio.flush()

        def close(self, version: int, metadata: str) -> None:
            if self._has_pending():
                self.close_chunk()
            self._drop_provisional_tail()
            try:
                super().close(version, metadata)
            finally:
                self.chunks.close()

        def abort(self) -> None:
            try:
                self.checkpoint()
            finally:
                self.bio.close()
                self.chunks.close()

    return {StoragePlugin.SQLITE3: DurableSqlite3Writer, StoragePlugin.MCAP: DurableMcapWriter}


def _writer_class():
    from rosbags.rosbag2 import Writer

    class DurableWriter(Writer):
        STORAGE_PLUGINS = _storage_classes()

    return DurableWriter


@dataclass
class TopicSpec:
    """One output topic: name, message type and the QoS profiles recorded for playback."""

    name: str
    msgtype: str
    qos: Sequence[Any] = field(default_factory=tuple)


class BagWriter:
    """Write a rosbag2 (sqlite3 or mcap) for ROS 2 ``humble`` or ``jazzy`` that stays readable if killed.

    Usage::

        with BagWriter(out, storage="mcap", distro="jazzy") as bag:
            bag.add_topic("/gmos/dynamic_mask", "sensor_msgs/msg/Image")
            bag.write("/gmos/dynamic_mask", stamp_ns, msg)       # a rosbags message object
            bag.checkpoint()                                      # after each frame's messages

    ``distro`` selects rosbags' typestore and the rosbag2 metadata version (humble: 8, jazzy: 9).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        storage: Optional[str] = None,
        distro: str = "jazzy",
        typestore: Any = None,
        metadata_interval_s: float = 1.0,
        custom_data: Optional[dict[str, str]] = None,
    ) -> None:
        self.distro = check_distro(distro)
        self.storage = check_storage(storage or DISTROS[self.distro]["default_storage"])
        self.path = Path(path)
        if self.path.exists():
            raise BagWriteError(f"output bag {self.path} exists already; choose a new path or delete it")
        if not self.path.parent.is_dir():
            raise BagWriteError(f"output bag {self.path}: parent folder {self.path.parent} does not exist")
        self.typestore = typestore if typestore is not None else make_typestore(self.distro)
        self.metadata_interval_s = float(metadata_interval_s)
        from rosbags.rosbag2.enums import StoragePlugin

        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = _writer_class()(self.path, version=DISTROS[self.distro]["bag_version"], storage_plugin=plugin)
        # A non-empty custom_data map: older yaml-cpp readers cannot convert a null node to a map.
        self._writer.set_custom_data("generator", "gmos_ros replay (rosbags)")
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(str(key), str(value))
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self._serializers: dict[str, Any] = {}
        self._last_metadata = 0.0
        self._metadata_stale = True
        self.closed = False
        self.bytes_written = 0

    # -- topics ------------------------------------------------------------------------------------
    def add_topic(self, name: str, msgtype: str, qos: Sequence[Any] = (), msgdef: Optional[str] = None,
                  digest: Optional[str] = None) -> None:
        """Declare a topic before writing to it. ``msgdef``/``digest`` copy an input bag's definition."""
        if name in self._connections:
            raise BagWriteError(f"topic {name} declared twice in {self.path}")
        if msgdef is None and msgtype not in self.typestore.fielddefs:
            raise BagWriteError(f"topic {name}: message type {msgtype} is unknown to the {self.distro} typestore")
        kwargs: dict[str, Any] = {"offered_qos_profiles": list(qos)}
        if msgdef is not None and digest:
            kwargs.update(msgdef=msgdef, rihs01=digest)
        else:
            kwargs["typestore"] = self.typestore
        self._connections[name] = self._writer.add_connection(name, msgtype, **kwargs)
        self._metadata_stale = True  # written at the next checkpoint

    @property
    def topics(self) -> dict[str, str]:
        return {name: conn.msgtype for name, conn in self._connections.items()}

    def message_counts(self) -> dict[str, int]:
        return {name: self._writer.counts[conn.id] for name, conn in self._connections.items()}

    # -- writing -----------------------------------------------------------------------------------
    def write(self, topic: str, log_time_ns: int, msg: Any) -> None:
        """Serialise ``msg`` (a rosbags message of the topic's type) and write it at ``log_time_ns``."""
        conn = self._connection(topic)
        self.write_raw(topic, log_time_ns, self.typestore.serialize_cdr(msg, conn.msgtype))

    def write_raw(self, topic: str, log_time_ns: int, raw: bytes | memoryview) -> None:
        """Write already CDR-serialised bytes (e.g. an input message copied verbatim). The mcap storage keeps
        a reference until the next checkpoint: do not modify ``raw`` in place before then."""
        conn = self._connection(topic)
        self._writer.write(conn, int(log_time_ns), raw)
        self.bytes_written += len(raw)

    def checkpoint(self) -> None:
        """Make everything written so far durable and readable (commit / chunk + provisional footer)."""
        if self.closed:
            return
        self._writer.storage.checkpoint()
        self._write_metadata(force=False)

    def flush_metadata(self) -> None:
        """Rewrite metadata.yaml now (e.g. right after declaring the topics)."""
        if not self.closed:
            self._write_metadata(force=True)

    def close(self) -> None:
        """Finalise: storage summary/commit and the final metadata.yaml."""
        if self.closed:
            return
        self.closed = True
        self._writer.close()

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        # Always finalise, also on errors and Ctrl-C: what was written is complete and worth keeping.
        self.close()

    # -- internals ---------------------------------------------------------------------------------
    def _connection(self, topic: str) -> Any:
        try:
            return self._connections[topic]
        except KeyError:
            raise BagWriteError(
                f"topic {topic} was not declared in {self.path}; declared: {sorted(self._connections)}"
            ) from None

    def _write_metadata(self, force: bool) -> None:
        now = time.monotonic()
        if not (force or self._metadata_stale) and now - self._last_metadata < self.metadata_interval_s:
            return
        self._last_metadata = now
        self._metadata_stale = False
        write_provisional_metadata(self._writer)


def write_provisional_metadata(writer: Any) -> None:
    """Write metadata.yaml for a bag that is still open (counts so far), atomically (tmp + rename).

    Same layout as rosbags' ``Writer.close()`` so that rosbags and ``ros2 bag`` read it.
    """
    from rosbags.rosbag2.metadata import dump_qos_v8, dump_qos_v9

    dump_qos = dump_qos_v9 if writer.version >= 9 else dump_qos_v8
    storage_name = f"{writer.path.name}.{'mcap' if writer.storage_plugin.name.lower() == 'mcap' else 'db3'}"
    count = sum(writer.counts.values())
    info = rosbag2_metadata(
        version=writer.version, storage=writer.storage_plugin.name.lower(), file_name=storage_name,
        start_ns=writer.min_timestamp if count else 0,
        duration_ns=max(0, writer.max_timestamp - writer.min_timestamp) if count else 0,
        topics=[(conn, writer.counts[conn.id]) for conn in writer.connections], dump_qos=dump_qos,
        custom_data=dict(writer.custom_data))
    write_metadata(writer.metapath, info)


def rosbag2_metadata(*, version: int, storage: str, file_name: str, start_ns: int, duration_ns: int,
                     topics: list[tuple[Any, int]], dump_qos: Any, custom_data: dict[str, str]) -> dict:
    """The ``rosbag2_bagfile_information`` of a one-file bag, in the layout of rosbags' ``Writer.close()``.

    topics: (rosbags connection, message count) pairs; dump_qos: rosbags' dump_qos_v8 or dump_qos_v9.
    """
    count = sum(n for _, n in topics)
    return {
        "version": version,
        "storage_identifier": storage,
        "relative_file_paths": [file_name],
        "duration": {"nanoseconds": duration_ns},
        "starting_time": {"nanoseconds_since_epoch": start_ns},
        "message_count": count,
        "topics_with_message_count": [
            {
                "topic_metadata": {
                    "name": conn.topic,
                    "type": conn.msgtype,
                    "serialization_format": conn.ext.serialization_format,
                    "offered_qos_profiles": dump_qos(conn.ext.offered_qos_profiles),
                    "type_description_hash": conn.digest,
                },
                "message_count": n,
            }
            for conn, n in topics
        ],
        "compression_format": "",
        "compression_mode": "",
        "files": [
            {
                "path": file_name,
                "starting_time": {"nanoseconds_since_epoch": start_ns},
                "duration": {"nanoseconds": duration_ns},
                "message_count": count,
            }
        ],
        # Never null: older yaml-cpp readers cannot convert a null node to a map.
        "custom_data": custom_data,
        "ros_distro": "rosbags",
    }


def write_metadata(path: Path, info: dict) -> None:
    """metadata.yaml, atomically (tmp + rename): a reader never sees a half-written file."""
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(dump_yaml({"rosbag2_bagfile_information": info}), "utf8")
    os.replace(tmp, path)


def dump_yaml(data: dict) -> str:
    """Block-style YAML (PyYAML's C emitter when available: ruamel takes ~20 ms per metadata file)."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, default_flow_style=False, sort_keys=False)
