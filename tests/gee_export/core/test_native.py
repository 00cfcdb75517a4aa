"""C kernels built by the machine's compiler into the cache, loaded with ctypes, or None."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from gee_export.core import native
from gee_export.core.commands import DETAIL
from gee_export.core.user_cache import user_cache_dir

needs_cc = pytest.mark.skipif(native.compiler() is None, reason="no C compiler on this machine")

SOURCE = "int twice(int x) { return 2 * x; }\n"


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "twice.c"
    path.write_text(SOURCE)
    native.forget()
    yield path
    native.forget()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "built"
    monkeypatch.setenv(native.ENV, str(folder))
    return folder


def test_user_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert user_cache_dir() == tmp_path / "isamap"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert user_cache_dir() == Path.home() / ".cache" / "isamap"


def test_cache_dir_default_and_override(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(native.ENV)
    assert native.cache_dir() == tmp_path / "isamap" / "native"
    monkeypatch.setenv(native.ENV, str(tmp_path / "elsewhere"))
    assert native.cache_dir() == tmp_path / "elsewhere"


@needs_cc
def test_builds_once_then_loads_from_the_cache(source, cache):
    library = native.load(source)
    library.twice.argtypes, library.twice.restype = [ctypes.c_int], ctypes.c_int
    assert library.twice(21) == 42
    built = list(cache.iterdir())
    assert len(built) == 1 and built[0].name.startswith("twice-") and built[0].suffix == ".so"
    assert native.load(source) is library  # same process: loaded once
    stamp = built[0].stat().st_mtime_ns
    native.forget()  # a new process: found in the cache, not built again
    assert native.load(source).twice(4) == 8
    assert built[0].stat().st_mtime_ns == stamp and list(cache.iterdir()) == built


@needs_cc
def test_a_changed_source_is_built_anew(source, cache):
    native.load(source)
    source.write_text(SOURCE.replace("2 * x", "3 * x"))
    native.forget()
    assert native.load(source).twice(2) == 6
    assert len(list(cache.iterdir())) == 2


def test_off_gives_none(source, monkeypatch):
    monkeypatch.setenv(native.ENV, "off")
    assert not native.enabled()
    assert native.load(source) is None


def test_no_compiler_gives_none_and_says_why(source, cache, monkeypatch, caplog):
    monkeypatch.setenv("CC", "no-such-compiler-here")
    with caplog.at_level(DETAIL, logger=native.__name__):
        assert native.load(source) is None
    assert "no C compiler found" in caplog.text
    assert not cache.exists() or not list(cache.iterdir())


@needs_cc
def test_a_failing_build_gives_none_and_leaves_nothing(source, cache, caplog):
    source.write_text("this is not C\n")
    with caplog.at_level(DETAIL, logger=native.__name__):
        assert native.load(source) is None
    assert "failed" in caplog.text and "twice.c" in caplog.text
    assert not list(cache.iterdir())  # no half-written library for the next process
    source.write_text(SOURCE)
    assert native.load(source) is None  # not tried again in this process


@needs_cc
def test_an_unwritable_cache_gives_none(source, tmp_path, monkeypatch):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("")
        monkeypatch.setenv(native.ENV, str(blocker / "sub"))  # a file where a folder must be
    else:
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o500)
        monkeypatch.setenv(native.ENV, str(folder / "sub"))
    assert native.load(source) is None


@needs_cc
def test_each_set_of_options_is_its_own_build(source, cache):
    default = native.load(source)
    other = native.load(source, ("-O0",))
    assert other is not default and other.twice(5) == default.twice(5) == 10
    assert len(list(cache.iterdir())) == 2
