"""Fixtures of the Earth Engine recipe tests.

The synthetic month stack the export tests fetch from, the recipe's images on its grid and
the single-process export of it are built once per test process and shared by the modules
that only read them (test_export, test_export_caps, test_profiles, test_beam_export): those
modules are in the ``ee_stack`` xdist group, so ``--dist loadgroup`` builds them once per
run. The stack's files are checked unchanged when the session ends.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.support.export_dataset import synthetic_stack
from tests.support.killed_export import build_recipe_images, export_job, session_for


@pytest.fixture
def region(ee_offline):
    """A small box near Wuhan, as an Earth Engine geometry built offline."""
    return ee_offline.Geometry.Rectangle([114.2, 30.4, 114.3, 30.5])


def _digests(stack) -> dict[str, str]:
    return {path: hashlib.sha256(Path(path).read_bytes()).hexdigest()
            for path in (stack.image, stack.label, stack.label_fine)}


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    """The synthetic month stack the export tests fetch from (one per test process).

    Tests only read it (the fake server cuts requests from it, check_dataset compares with
    it); that no test wrote into it is checked when the session ends.
    """
    stack = synthetic_stack(tmp_path_factory.mktemp("synthetic"))
    before = _digests(stack)
    yield stack
    assert _digests(stack) == before, "a test modified the shared synthetic stack"


@pytest.fixture(scope="session")
def _built() -> dict[str, Any]:
    """What is built once per test process from ``local_stack`` (by the first test asking)."""
    return {}


@pytest.fixture
def recipe_images(ee_offline, local_stack, _built):
    """The recipe's image and fine label, built offline on the stack's grid (once: the
    images are graphs, which serialize the same under any later initialisation)."""
    if "recipe" not in _built:
        _built["recipe"] = build_recipe_images(ee_offline, local_stack.grid)
    return _built["recipe"]


@pytest.fixture
def reference_export(local_stack, recipe_images, _built, tmp_path_factory):
    """The single-process export of the stack (``export_pixels``, four workers, the tests'
    job) into a local folder, run once: ``(root, summary, transport)``.

    Tests that only read it share it; a test that runs over it copies it first.
    """
    if "reference" not in _built:
        from gee_export.ee.export import export_pixels
        from testing.fake_server import StackTransport

        image, fine = recipe_images
        root = tmp_path_factory.mktemp("reference") / "dataset"
        transport = StackTransport(local_stack, recipe=recipe_images)
        summary = export_pixels(session_for(transport), image, export_job(local_stack.grid),
                                str(root), fine_label=fine, workers=4, progress=False)
        _built["reference"] = (root, summary, transport)
    return _built["reference"]

