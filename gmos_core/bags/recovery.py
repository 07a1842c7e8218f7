"""Make an interrupted or truncated rosbag2 readable again, keeping every complete message.

Three things can be missing after a kill or a cut copy:

* mcap: the end of the file (a torn record, no footer). We keep the records that are complete, drop the
  torn tail and append a summary-less footer (readers then scan the file, as the MCAP spec allows).
* sqlite3: a hot ``-journal`` left by a kill during a commit. Opening the database read-write with SQLite
  rolls the journal back to the last complete commit (rosbags itself opens databases ``immutable`` and
  would ignore the journal).
* ``metadata.yaml``: rebuilt from the storage file (topics, types, counts, time range).
"""
from __future__ import annotations

import shutil
import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from gmos_core.bags.writer import MCAP_MAGIC, provisional_mcap_tail

# opcodes of MCAP records we may meet in the data section
_MCAP_FOOTER = 0x02
_MCAP_DATA_END = 0x0F
_MCAP_MAX_OPCODE = 0x10


class BagRecoveryError(ValueError):
    """The bag is damaged beyond what recovery handles (the message says what was found)."""


@dataclass
class RecoveryReport:
    """What ``recover_bag`` changed; ``actions`` is empty when the bag was already complete."""

    path: Path
    storage: str
    actions: list[str] = field(default_factory=list)
    bytes_dropped: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def storage_file(path: Path) -> tuple[Path, str]:
    """The storage file of a bag folder (or a bare .mcap/.db3 path) and its storage name."""
    path = Path(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".mcap", ".db3"):
            return path, "mcap" if suffix == ".mcap" else "sqlite3"
        raise BagRecoveryError(f"{path}: not a rosbag2 storage file; expected a .mcap or .db3 file or a bag folder")
    if not path.is_dir():
        raise FileNotFoundError(f"bag not found: {path}")
    files = sorted(path.glob("*.mcap")) + sorted(path.glob("*.db3"))
    if not files:
        raise BagRecoveryError(f"{path}: no .mcap or .db3 storage file in the bag folder")
    if len(files) > 1:
        raise BagRecoveryError(f"{path}: several storage files {[f.name for f in files]}; split bags are not supported")
    return files[0], "mcap" if files[0].suffix == ".mcap" else "sqlite3"


def mcap_complete_end(data_path: Path) -> tuple[int, bool]:
    """(offset after the last complete data-section record, whether the file already ends in a footer).

    The offset stops before a torn record, a Data End or a Footer record."""
    size = data_path.stat().st_size
    with data_path.open("rb") as bio:
        head = bio.read(8)
        if head != MCAP_MAGIC:
            raise BagRecoveryError(f"{data_path}: does not start with the MCAP magic; not an mcap file")
        if size >= 8 + 37:
            bio.seek(size - 8)
            if bio.read(8) == MCAP_MAGIC:
                bio.seek(size - 37)
                if bio.read(1) == bytes([_MCAP_FOOTER]):
                    return size, True
        position = 8
        while position + 9 <= size:
            bio.seek(position)
            opcode = bio.read(1)[0]
            (length,) = struct.unpack("<Q", bio.read(8))
            end = position + 9 + length
            if opcode == 0 or opcode > _MCAP_MAX_OPCODE or end > size:
                break  # torn or garbage record: stop before it
            if opcode in (_MCAP_FOOTER, _MCAP_DATA_END):
                break  # the data section ends here; the tail is re-written
            position = end
        return position, False


def _recover_mcap(data_path: Path, report: RecoveryReport) -> None:
    end, complete = mcap_complete_end(data_path)
    if complete:
        return
    size = data_path.stat().st_size
    with data_path.open("r+b") as bio:
        bio.seek(end)
        bio.truncate()
        bio.write(provisional_mcap_tail())
    report.bytes_dropped = max(0, size - end)
    report.actions.append(
        f"mcap: kept the complete records up to byte {end} of {size}, appended a footer without summary"
    )


def _recover_sqlite(data_path: Path, report: RecoveryReport) -> None:
    journal = data_path.with_name(data_path.name + "-journal")
    wal = data_path.with_name(data_path.name + "-wal")
    if not journal.exists() and not wal.exists():
        return
    try:
        conn = sqlite3.connect(str(data_path))
        try:
            # Any read makes SQLite roll back a hot journal / replay a WAL; a checkpoint folds the WAL in.
            conn.execute("SELECT count(*) FROM messages").fetchone()
            if wal.exists():
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("PRAGMA journal_mode=DELETE")
            conn.commit()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BagRecoveryError(f"{data_path}: sqlite3 database is damaged beyond its journal: {exc}") from exc
    report.actions.append("sqlite3: rolled the interrupted transaction back (hot journal)")


def _rebuild_metadata(bag_dir: Path, data_path: Path, storage: str, report: RecoveryReport) -> None:
    """metadata.yaml from the storage file, in the rosbag2 v8 layout (readable by Humble and Jazzy)."""
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.metadata import dump_qos_v8

    from gmos_core.bags.writer import rosbag2_metadata, write_metadata

    with Reader(data_path) as reader:
        count = reader.message_count
        info = rosbag2_metadata(
            version=8, storage=storage, file_name=data_path.name,
            start_ns=reader.start_time if count else 0,
            duration_ns=max(0, reader.end_time - reader.start_time - 1) if count else 0,
            topics=[(c, c.msgcount) for c in reader.connections], dump_qos=dump_qos_v8,
            custom_data={"recovered_by": "gmos_core.bags.recover_bag"})
    write_metadata(bag_dir / "metadata.yaml", info)
    report.actions.append("metadata.yaml: rebuilt from the storage file")


def recover_bag(path: str | Path, rebuild_metadata: Optional[bool] = None) -> RecoveryReport:
    """Repair an interrupted bag in place (see the module doc); returns what was done.

    ``rebuild_metadata``: None = only when metadata.yaml is missing; True = always (counts exact).
    """
    path = Path(path)
    data_path, storage = storage_file(path)
    report = RecoveryReport(path=path, storage=storage)
    if storage == "mcap":
        _recover_mcap(data_path, report)
    else:
        _recover_sqlite(data_path, report)
    if path.is_dir():
        missing = not (path / "metadata.yaml").exists()
        if rebuild_metadata or (rebuild_metadata is None and missing):
            _rebuild_metadata(path, data_path, storage, report)
    return report


def recovered_copy(path: str | Path, workdir: str | Path) -> tuple[Path, RecoveryReport]:
    """Recover a *copy* of ``path`` inside ``workdir`` (for inputs, which are never modified)."""
    path = Path(path)
    data_path, _ = storage_file(path)
    target = Path(workdir) / (path.name if path.is_dir() else path.stem)
    target.mkdir(parents=True, exist_ok=False)
    shutil.copy2(data_path, target / data_path.name)
    for sidecar in (data_path.with_name(data_path.name + "-journal"), data_path.with_name(data_path.name + "-wal")):
        if sidecar.exists():
            shutil.copy2(sidecar, target / sidecar.name)
    return target, recover_bag(target, rebuild_metadata=True)
