"""Zero-copy message iteration over uncompressed, indexed mcap files (the replay hot path).

rosbags' mcap reader copies every message four times on the way out (chunk read, BytesIO of the chunk,
the sized record, the payload), which for 640x480 images costs more than everything else replay does per
frame. For the common case (uncompressed chunks with a summary: what rosbag2's default mcap writer and
our BagWriter produce) this module memory-maps the file and yields ``memoryview`` slices of the payloads,
in log-time order exactly as rosbags does (chunks merged lazily by start time, messages sorted within a
chunk). Once a chunk's last message has been handed out, its pages are dropped from this process's
resident set (``madvise(MADV_DONTNEED)``): a mapped file otherwise stays resident as it is read, so a
long replay's RSS grew by one input image per frame (issue 15). That is safe for a read-only file
mapping: a view still in use re-reads the same bytes from the page cache. rosbags still parses the summary (schemas, channels, chunk indexes); anything else (compressed
chunks, no summary, several storage files, rosbag1) returns None and the caller uses rosbags' reader.
"""
from __future__ import annotations

import heapq
import mmap
import struct
from typing import Any, Iterator, Optional

_RECORD = struct.Struct("<BQ")
_MESSAGE = struct.Struct("<HIQ")  # channel id, sequence, log time


def _mcap_storage(any_reader: Any) -> Any:
    """The single rosbags McapReader behind an AnyReader, or None."""
    from rosbags.rosbag2.storage_mcap import McapReader

    readers = getattr(any_reader, "readers", [])
    if len(readers) != 1:
        return None
    storage = getattr(readers[0], "storage", None)
    if isinstance(storage, McapReader):
        return storage
    storages = getattr(storage, "storages", None)
    if storages and len(storages) == 1 and isinstance(storages[0], McapReader):
        if getattr(storage, "metadata", None) is not None and storage.metadata.compression_mode:
            return None  # per-message compression
        return storages[0]
    return None


def fast_messages(any_reader: Any, topics: set[str]) -> Optional[Iterator[tuple[str, int, memoryview]]]:
    """(topic, log time ns, payload view) for ``topics`` in log-time order, or None if not applicable.

    The views point into a read-only memory map that stays alive as long as any view does.
    """
    storage = _mcap_storage(any_reader)
    if storage is None or not storage.chunks or any(c.compression for c in storage.chunks):
        return None
    wanted = {cid: ch.topic for cid, ch in storage.channels.items() if ch.topic in topics}
    if not wanted:
        return iter(())
    with open(storage.path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapped)
    size = len(view)
    page = mmap.PAGESIZE
    can_release = hasattr(mmap, "MADV_DONTNEED")

    def release(start: int, end: int) -> None:
        """Drop [start, end) from the resident set (page-aligned outwards; contents stay readable)."""
        if not can_release:
            return
        first = start - start % page
        last = min(size, end + (-end) % page)
        if last > first:
            mapped.madvise(mmap.MADV_DONTNEED, first, last - first)

    def chunk_messages(chunk: Any) -> Iterator[tuple[int, int, int, Optional[memoryview]]]:
        # A sentinel first, so that heapq.merge only parses a chunk when its time comes (as rosbags does).
        yield (chunk.message_start_time, -1, 0, None)
        start = chunk.chunk_start_offset + 9 + 40 + len(chunk.compression)
        end = start + chunk.uncompressed_size
        if end > size:
            raise ValueError(f"{storage.path}: chunk at byte {chunk.chunk_start_offset} extends past the end of the file")
        found = []
        position = start
        while position < end:
            opcode, length = _RECORD.unpack_from(view, position)
            if opcode == 0x05:
                channel, _, log_time = _MESSAGE.unpack_from(view, position + 9)
                if channel in wanted:
                    found.append((log_time, position, channel, view[position + 31: position + 9 + length]))
            position += 9 + length
        found.sort(key=lambda m: (m[0], m[1]))
        yield from found
        # Reached when the merge asks this chunk for its next message: every message of it is out.
        del found
        release(chunk.chunk_start_offset, end)

    chunks = [c for c in storage.chunks if any(c.channel_count.get(cid, 0) for cid in wanted)]
    merged = heapq.merge(*(chunk_messages(c) for c in chunks), key=lambda m: (m[0], m[1]))

    def messages() -> Iterator[tuple[str, int, memoryview]]:
        for log_time, _, channel, data in merged:
            if data is not None:
                yield wanted[channel], log_time, data

    return messages()
