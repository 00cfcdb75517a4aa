"""The one owner of content digests: values pinned, since resumes compare persisted digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from core.digest import (
    CHUNK,
    canonical_json,
    combined_digest,
    file_sha256,
    files_sha256,
    json_digest,
    text_sha256,
    update_from_file,
)
from tests.support.sources import where

# Written by the implementations this module replaced; a change here breaks every resume of an
# existing dataset, prediction, map or autotune cache.
PINNED_FILE = "7d471e4af16db5a30ce10aebbc29f5178b2edbad6c7dc2e8ff8ee6e4848a726f"
PINNED_JSON = "b649bb117135db06f8230f303b8eee17689cf4ec3a9d3052fa3964c2b941e68c"
PINNED_COMBINED = "sha256:44c43f2f4d4c93823ecde71ed575b9341a131b4c14c807f1040f2f2bf08f82be"


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.bin"
    path.write_bytes(bytes(range(256)) * 5000)  # 1.2 MiB: more than one CHUNK
    assert path.stat().st_size > CHUNK
    return path


def test_file_digest_is_the_sha256_of_the_bytes_streamed(sample):
    assert file_sha256(sample) == PINNED_FILE == hashlib.sha256(sample.read_bytes()).hexdigest()
    assert file_sha256(sample, 16) == PINNED_FILE[:16]


def test_several_files_are_one_digest_of_their_bytes_in_order(sample, tmp_path):
    other = tmp_path / "other.bin"
    other.write_bytes(b"isamap\n")
    joined = sample.read_bytes() + other.read_bytes()
    assert files_sha256([sample, other]) == hashlib.sha256(joined).hexdigest()
    assert files_sha256([other, sample]) != files_sha256([sample, other])


def test_update_from_file_serves_any_hash(sample):
    md5 = hashlib.md5()
    update_from_file(md5, sample)
    assert md5.digest() == hashlib.md5(sample.read_bytes()).digest()


def test_json_digest_is_of_sorted_json_with_the_default_separators():
    value = {"b": [1, 2.5, None], "a": "x"}
    assert canonical_json(value) == '{"a": "x", "b": [1, 2.5, null]}'
    assert json_digest(value) == PINNED_JSON
    assert json_digest(value, 24) == PINNED_JSON[:24]
    assert json_digest({"a": "x", "b": (1, 2.5, None)}) == PINNED_JSON  # a tuple is a list


def test_json_digest_has_one_policy_for_values_json_cannot_write(tmp_path):
    assert canonical_json({"p": tmp_path, "s": {"b", "a"}, "n": np.float32(0.5)}) == (
        f'{{"n": 0.5, "p": "{tmp_path}", "s": ["a", "b"]}}')
    with pytest.raises(TypeError, match="no canonical JSON form"):
        json_digest({"model": object()})  # str() would hold a memory address: never hashed


def test_text_and_combined_digests():
    assert text_sha256("gs://b/m.pt") == hashlib.sha256(b"gs://b/m.pt").hexdigest()
    assert combined_digest(["a", "b=c"]) == PINNED_COMBINED
    assert combined_digest(["ab", "c"]) != combined_digest(["a", "bc"])


def test_digests_are_written_only_here():
    """SHA-256 and the file-streaming loop have one owner; Cloud Storage's MD5 reuses the loop."""
    assert set(where(r"\bsha256\(|hashlib\.new\(")) == {"core/digest.py"}
    assert set(where(r"iter\(lambda")) == {"core/digest.py"}
    assert set(where(r"^import hashlib")) == {
        "core/digest.py",
        "core/storage/base.py",  # the MD5 Cloud Storage reports, not an identity
        "benchmarks/bench_mapping.py",  # counts distinct responses, never persisted
    }
