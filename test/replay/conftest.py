from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_clip(repo_root: Path) -> Path:
    """The bundled 480x270 clip of dog.mp4 (gmos_core/data)."""
    path = repo_root / "gmos_core" / "data" / "dog_demo.mp4"
    assert path.is_file(), f"bundled demo clip missing: {path}"
    return path
