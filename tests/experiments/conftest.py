"""The experiments' tests read the real sample sets (``shared_data``, tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.naip import NAIP_FOLDER


@pytest.fixture(scope="session")
def naip_dir(shared_data) -> Path:
    return shared_data / NAIP_FOLDER
