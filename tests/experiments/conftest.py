"""The experiments' tests read the real sample sets (``shared_data``, tests/conftest.py).

``products_in_process``: a test's product commands run in its process
(tests/experiments/products.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.naip import NAIP_FOLDER
from tests.experiments.products import in_process


@pytest.fixture
def products_in_process() -> Iterator[None]:
    """The test's product commands run in its process (:func:`in_process`)."""
    with in_process():
        yield


@pytest.fixture(scope="session")
def naip_dir(shared_data) -> Path:
    return shared_data / NAIP_FOLDER
