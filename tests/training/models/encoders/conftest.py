"""The published encoder files, from ``../shared/weights`` beside the checkout.

Tests that need them skip, saying why, only where the folder is absent; under CI (the
``CI`` variable set) a missing folder fails instead, since CI must have it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

WEIGHTS = Path(__file__).resolve().parents[4].parent / "shared" / "weights"


def _weights(sub: str, name: str) -> Path:
    path = WEIGHTS / sub / name
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the published encoder file {path} is missing; CI must have "
                        "../shared/weights")
        pytest.skip(f"the published encoder file {path} is absent (../shared/weights not "
                    "beside this checkout)")
    return path


@pytest.fixture(scope="session")
def presto_file() -> Path:
    """Presto's published ``default_model.pt``."""
    return _weights("presto", "default_model.pt")


@pytest.fixture(scope="session")
def galileo_file() -> Path:
    """The Galileo nano encoder's published ``encoder.pt``."""
    return _weights("galileo_nano", "encoder.pt")
