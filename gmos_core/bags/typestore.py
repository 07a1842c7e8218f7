"""A rosbags typestore that knows the project's own messages (gmos_msgs) next to the standard ones.

The definitions are read from the ``gmos_msgs/msg/*.msg`` files of this checkout (or of an installed
``gmos_ros``/``gmos_msgs`` share folder) so that bags carry exactly the text ROS builds from. A pip install
without the ROS package folder falls back to the texts bundled in ``gmos_core.bridge.interfaces`` (kept
identical to the files by the ROS area's tests).
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Optional

# ROS distributions we write for: (rosbags typestore name, rosbag2 metadata version, default storage).
# Humble (rosbag2 0.15) parses the v8 metadata layout (QoS enums as integers inside a YAML string); the v9
# layout changed the QoS serialisation to string enums, which older yaml-cpp parsers reject
# ("bad conversion", ros2/rosbag2#1520, rqt_bag#146). rosbags writes only versions 8 and 9.
# Humble's default storage is sqlite3 (mcap needs ros-humble-rosbag2-storage-mcap); Iron+ default to mcap.
DISTROS: dict[str, dict[str, Any]] = {
    "humble": {"store": "ROS2_HUMBLE", "bag_version": 8, "default_storage": "sqlite3"},
    "jazzy": {"store": "ROS2_JAZZY", "bag_version": 9, "default_storage": "mcap"},
}
GMOS_MSGS_PACKAGE = "gmos_msgs"


class TypestoreError(ValueError):
    """A message package or distribution could not be found or registered."""


def check_distro(distro: str) -> str:
    """Normalise and validate a ROS distribution name (``humble`` or ``jazzy``)."""
    name = str(distro).strip().lower()
    if name not in DISTROS:
        raise TypestoreError(f"unsupported ROS distribution {distro!r}; expected one of {sorted(DISTROS)}")
    return name


def gmos_msg_dirs() -> list[Path]:
    """Folders that may hold the gmos_msgs ``.msg`` files, most specific first.

    ``GMOS_MSGS_DIR`` (explicit override), the source checkout beside ``gmos_core``, the ``share`` folders
    of a colcon install (``AMENT_PREFIX_PATH``) and of a pip install (``sys.prefix``).
    """
    candidates: list[Path] = []
    if os.environ.get("GMOS_MSGS_DIR"):
        candidates.append(Path(os.environ["GMOS_MSGS_DIR"]))
    package_root = Path(__file__).resolve().parents[2]
    candidates.append(package_root / GMOS_MSGS_PACKAGE / "msg")
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / GMOS_MSGS_PACKAGE / "msg")
    candidates.append(Path(sys.prefix) / "share" / "gmos_ros" / "msg")
    return [c for c in candidates if c.is_dir() and any(c.glob("*.msg"))]


def gmos_msg_definitions(msg_dir: Optional[Path] = None) -> tuple[dict[str, str], str]:
    """``{"gmos_msgs/msg/Name": text}`` and where the texts came from."""
    dirs = [Path(msg_dir)] if msg_dir is not None else gmos_msg_dirs()
    if msg_dir is not None and not (dirs[0].is_dir() and any(dirs[0].glob("*.msg"))):
        raise TypestoreError(f"{msg_dir}: no .msg files found; expected the gmos_msgs/msg folder")
    if dirs:
        found = {
            f"{GMOS_MSGS_PACKAGE}/msg/{path.stem}": path.read_text(encoding="utf-8")
            for path in sorted(dirs[0].glob("*.msg"))
        }
        return found, str(dirs[0])
    try:
        from gmos_core.bridge.interfaces import MSG_DEFINITIONS
    except ImportError as exc:  # pragma: no cover - only without both the files and the bridge
        raise TypestoreError(
            "gmos_msgs definitions not found: no gmos_msgs/msg folder (set GMOS_MSGS_DIR) and no "
            "gmos_core.bridge.interfaces"
        ) from exc
    return dict(MSG_DEFINITIONS), "gmos_core.bridge.interfaces.MSG_DEFINITIONS"


@functools.lru_cache(maxsize=8)
def _cached_typestore(distro: str, msg_dir: Optional[str]) -> Any:
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(getattr(Stores, DISTROS[distro]["store"]))
    definitions, _ = gmos_msg_definitions(Path(msg_dir) if msg_dir else None)
    types: dict = {}
    for typename, text in definitions.items():
        try:
            types.update(get_types_from_msg(text, typename))
        except Exception as exc:
            raise TypestoreError(f"cannot parse message definition {typename}: {exc}") from exc
    store.register(types)
    # Fail here, not at the first serialisation, if a definition references an unknown type.
    for typename in definitions:
        try:
            store.generate_msgdef(typename, ros_version=2)
        except Exception as exc:
            raise TypestoreError(f"{typename} references a type the {distro} typestore lacks: {exc}") from exc
    return store


def make_typestore(distro: str = "jazzy", msg_dir: Optional[Path] = None) -> Any:
    """The rosbags typestore of ``distro`` (humble|jazzy) with the gmos_msgs types registered.

    Cached per (distro, msg_dir): the returned store is shared, so only register further types into it
    if every user may see them.
    """
    return _cached_typestore(check_distro(distro), str(msg_dir) if msg_dir is not None else None)
