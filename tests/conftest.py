"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real radiographs in ``../shared/data`` (relative to the repo root), or skip.

    ``JSNQ_DATA`` overrides the location. The data are never copied into the repository.
    """
    override = os.environ.get("JSNQ_DATA")
    root = Path(override) if override else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not root.is_dir():
        pytest.skip(f"../shared/data not found ({root}): real-data test skipped")
    return root
