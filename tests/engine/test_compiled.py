"""A compiled model for inference (``--compile``): recorded, applied, agreeing with fp32, and
run eagerly with one warning when compiling fails.

Two real inductor compiles of tiny conv nets (seconds each once inductor's own headers are
built, about half a minute on a cold 2-core machine); the failure is a real one: inductor
pointed at a C++ compiler that does not exist, as on a machine without one.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch
from torch._inductor import config as inductor_config

from core.commands import DETAIL
from engine import autotune, compiled
from engine.autotune import Setting
from tests.support.models import SignBranch, conv_bn_net, six_band_batch

CPU = torch.device("cpu")
BF16_NHWC = Setting("bf16", True)






def _probs(module, x: torch.Tensor, setting: Setting) -> torch.Tensor:
    x = x.contiguous(memory_format=setting.memory_format)
    with torch.inference_mode(), setting.autocast("cpu"):
        return torch.softmax(module(x).float(), dim=1)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    path = tmp_path / "autotune.json"
    monkeypatch.setenv(autotune.CACHE_ENV, str(path))
    return path


@pytest.mark.slow
def test_compile_runs_the_choice_compiled_and_it_agrees_with_fp32(cache):
    model, x = conv_bn_net(8), six_band_batch(2, 24)
    choice = autotune.choose(model, x, CPU, precision="bf16", channels_last="on", compile=True)
    assert choice.label == "bf16/nhwc/compiled" and choice.source == "explicit"
    assert choice.setting == Setting("bf16", True, compile=True)
    assert choice.tags()["runtime"] == "bf16/nhwc/compiled"
    run = autotune.apply(choice, model, CPU)
    assert isinstance(run, compiled.CompiledForInference)
    reference = _probs(model, x, Setting())
    got = _probs(run, x, choice.setting)
    assert run.compiled and run.shape == tuple(x.shape) and run.compile_seconds > 0
    assert float((got - reference).abs().mean()) <= autotune.TOLERANCE
    recorded = replace(choice, compile_seconds=round(run.compile_seconds, 3))
    assert float(recorded.measurements()["compile_s"]) >= 0
    assert "runtime_compile_s" not in recorded.tags()
    # another batch size (a row's short last batch) runs the eager model, not a recompile
    short = _probs(run, x[:1], choice.setting)
    assert torch.allclose(short, _probs(model, x[:1], choice.setting))
    assert run.shape == tuple(x.shape)


@pytest.mark.slow
def test_a_compile_failure_runs_the_model_eagerly_with_a_log_line(tmp_path, monkeypatch,
                                                                  caplog):
    monkeypatch.setenv(compiled.CACHE_DIR_ENV, str(tmp_path / "inductor"))  # nothing cached
    model, x = conv_bn_net(5, seed=3), six_band_batch(3, 20)  # kernels this process has not built
    with inductor_config.patch({"cpp.cxx": ("isamap-no-such-compiler",)}), \
            caplog.at_level(DETAIL, logger="engine"):
        # a compiled choice applied where compiling fails (no C++ compiler) runs the model
        # eagerly, with a warning, once
        run = autotune.apply(autotune.Choice(Setting("bf16", True, compile=True)), model, CPU)
        out = _probs(run, x, BF16_NHWC)
        assert not run.compiled and run.error
        assert torch.equal(out, _probs(model, x, BF16_NHWC))
        assert any("running the model eagerly" in r.getMessage() for r in caplog.records)
        with pytest.raises(compiled.CompileError):
            compiled.compile_for_inference(model, x.contiguous(
                memory_format=torch.channels_last), autocast=torch.bfloat16)


def test_inductors_cache_goes_beside_isamaps_unless_the_user_moved_it(tmp_path, monkeypatch):
    monkeypatch.delenv(compiled.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compiled.inductor_cache_dir() == tmp_path / "isamap" / "inductor"
    monkeypatch.setenv(compiled.CACHE_DIR_ENV, str(tmp_path / "mine"))
    assert compiled.inductor_cache_dir() == tmp_path / "mine"


@pytest.mark.slow
def test_torchs_own_default_in_the_variable_is_not_taken_for_the_users_choice(tmp_path):
    """Importing inductor's config (the first optimiser step does) writes torch's default
    folder under /tmp into the variable: a fresh process that trained before compiling still
    caches beside isamap's cache."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != compiled.CACHE_DIR_ENV}
    code = ("import os, torch; torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]).step(); "
            f"print(os.environ.get({compiled.CACHE_DIR_ENV!r})); "
            "from engine.compiled import inductor_cache_dir; print(inductor_cache_dir())")
    out = subprocess.run([sys.executable, "-c", code], env={**env, "XDG_CACHE_HOME": str(tmp_path)},
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] != "None"  # torch set it: what this test is about
    assert out[1] == str(tmp_path / "isamap" / "inductor")


def test_a_graph_break_compiles_without_torchs_warnings(caplog):
    """A branch on a tensor's value (the Presto encoder's) breaks the graph: torch warns with
    the code and how to capture it, nothing a user of the map can act on; the run is the
    same. (Its handler writes to the stderr of the time torch was imported: its records, not
    a capture of the stream, show what a user would see.)"""
    model, x = SignBranch().eval(), torch.randn(2, 3, 16, 16)
    with caplog.at_level(logging.INFO):
        run = compiled.compile_for_inference(model, x, backend="eager")
        with torch.inference_mode():
            assert torch.equal(run(x), model(x)) and torch.equal(run(-x), model(-x))
    assert run.compiled
    said = [r.getMessage() for r in caplog.records
            if r.name.startswith("torch") and r.levelno >= logging.WARNING]
    assert not said, said
