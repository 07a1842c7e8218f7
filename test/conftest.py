"""Shared test configuration: where the reference fixtures and data live.

The official-code fixtures are in ``../shared/fixtures/reference`` beside the checkout (override with
GMOS_SHARED=/path/to/shared). Outside CI a missing folder skips those tests with a reason that names the
path; in CI (GMOS_REQUIRE_FIXTURES=1) it fails them, so nothing is skipped silently.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GMOS_SHARED", REPO_ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "reference"


def _require(path: Path) -> Path:
    if path.exists():
        return path
    message = f"reference data not found at {path} (set GMOS_SHARED to the shared/ folder)"
    if os.environ.get("GMOS_REQUIRE_FIXTURES"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """../shared/fixtures/reference"""
    return _require(FIXTURES)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    # Two cores on CI: more threads than cores only adds contention.
    try:
        import torch

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    except ImportError:
        pass
