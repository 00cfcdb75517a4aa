"""A damaged entry of isamap's compile cache is rebuilt, never fatal.

A compilation killed while writing can leave a truncated kernel that every later compilation
loads and fails on. The backend here stands for inductor reading its cache: it fails while
the damaged entry is there, as inductor does on a truncated kernel.
"""

from __future__ import annotations

import pytest
import torch

from core.errors import IsamapError
from engine import compiled


def _reading_the_cache(calls: list[str]):
    def backend(graph_module, example_inputs):
        damaged = compiled.inductor_cache_dir() / "kernel.so"
        calls.append("damaged" if damaged.exists() else "fresh")
        if damaged.exists():
            raise OSError(f"{damaged}: file too short")
        return graph_module.forward
    return backend


def test_a_damaged_cache_entry_is_rebuilt_once_then_compiles(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(compiled.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = compiled.inductor_cache_dir()
    cache.mkdir(parents=True)
    (cache / "kernel.so").write_bytes(b"\x7fELF")  # what a killed compilation left
    calls: list[str] = []
    model, x = torch.nn.Conv2d(3, 2, 1).eval(), torch.zeros(1, 3, 8, 8)
    run = compiled.CompiledForInference(model, backend=_reading_the_cache(calls),
                                        freezing=False)
    run.compile(x)
    assert run.compiled and calls == ["damaged", "fresh"]
    assert not (cache / "kernel.so").exists()
    assert "compiling again with isamap's inductor cache emptied" in caplog.text


def test_a_users_own_cache_is_left_alone_and_the_failure_is_one_line(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "kernel.so").write_bytes(b"\x7fELF")
    monkeypatch.setenv(compiled.CACHE_DIR_ENV, str(mine))
    run = compiled.CompiledForInference(torch.nn.Conv2d(3, 2, 1).eval(),
                                        backend=_reading_the_cache([]), freezing=False)
    with pytest.raises(compiled.CompileError) as caught:
        run.compile(torch.zeros(1, 3, 8, 8))
    assert isinstance(caught.value, IsamapError) and caught.value.exit_code == 1
    assert (mine / "kernel.so").exists()
