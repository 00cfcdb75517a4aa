"""The source-digest cache: reused for the same bytes, and naming no folder of the maker."""

from __future__ import annotations

import hashlib

from gee_export.local.digests import CACHE_NAME, DigestCache


def test_the_cache_reuses_digests_and_its_file_names_no_path(tmp_path):
    scenes, stacks = tmp_path / "private_scenes", tmp_path / "stacks"
    scenes.mkdir()
    stacks.mkdir()
    source = scenes / "B04.tif"
    source.write_bytes(b"reflectance")
    cache = DigestCache(stacks)
    expected = hashlib.sha256(b"reflectance").hexdigest()
    assert cache.digest(source) == expected
    cache.save()
    text = (stacks / CACHE_NAME).read_text(encoding="utf-8")
    assert "private_scenes" not in text and str(tmp_path) not in text
    assert DigestCache(stacks).digest(source) == expected  # read back from the file
    source.write_bytes(b"other bytes")
    assert DigestCache(stacks).digest(source) == hashlib.sha256(b"other bytes").hexdigest()
