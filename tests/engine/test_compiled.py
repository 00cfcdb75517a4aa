"""A compiled model for inference: measured by ``auto``, recorded, cached, re-applied, and
dropped cleanly when compiling fails.

Two real inductor compiles of tiny conv nets (seconds each once inductor's own headers are
built, about half a minute on a cold 2-core machine); the failure is a real one: inductor
pointed at a C++ compiler that does not exist, as on a machine without one.
"""

from __future__ import annotations

import pytest
import torch
from torch._inductor import config as inductor_config

from core.commands import DETAIL
from engine import autotune, compiled
from engine.autotune import Setting
from tests.support.clocks import all_cores
from tests.support.models import conv_bn_net, six_band_batch

CPU = torch.device("cpu")
BF16_NHWC = Setting("bf16", True)






def _compiled_fastest(setting: Setting, run) -> float:
    """A ``Measure`` under which the compiled candidate is the fastest (timings are not tested)."""
    run()
    return 0.001 if setting.compile else 0.002


def _probs(module, x: torch.Tensor, setting: Setting) -> torch.Tensor:
    x = x.contiguous(memory_format=setting.memory_format)
    with torch.inference_mode(), setting.autocast("cpu"):
        return torch.softmax(module(x).float(), dim=1)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    path = tmp_path / "autotune.json"
    monkeypatch.setenv(autotune.CACHE_ENV, str(path))
    return path


def test_the_compiled_candidate_agrees_is_recorded_and_a_cached_choice_compiles_again(cache):
    model, x = conv_bn_net(8), six_band_batch(2, 24)
    choice = autotune.choose(model, x, CPU, precision="bf16", channels_last="on", compile=True,
                             measure=_compiled_fastest, cpu_time=all_cores)
    assert choice.label == "bf16/nhwc/compiled"
    assert choice.setting == Setting("bf16", True, compile=True)
    assert choice.errors["bf16/nhwc/compiled"] <= autotune.TOLERANCE
    assert set(choice.ms_per_sample) == {"bf16/nhwc", "bf16/nhwc/compiled"}
    assert choice.compile_seconds > 0
    tags = choice.tags()
    assert tags["runtime"] == "bf16/nhwc/compiled"
    assert float(choice.measurements()["compile_s"]) > 0 and "runtime_compile_s" not in tags
    assert choice.to_dict()["compile_seconds"] == choice.compile_seconds

    def never(setting, run):
        raise AssertionError("a cached choice is not measured again")

    again = autotune.choose(model, x, CPU, precision="bf16", channels_last="on", compile=True,
                            measure=never, cpu_time=all_cores)
    assert again.source == "cache" and again.setting == choice.setting
    run = autotune.apply(again, model, CPU)
    assert isinstance(run, compiled.CompiledForInference)
    reference = _probs(model, x, Setting())
    got = _probs(run, x, again.setting)
    assert run.compiled and run.shape == tuple(x.shape)
    assert run.compile_seconds == 0.0  # the graph auto compiled while measuring, reused
    assert float((got - reference).abs().mean()) <= autotune.TOLERANCE
    # another batch size (a row's short last batch) runs the eager model, not a recompile
    short = _probs(run, x[:1], again.setting)
    assert torch.allclose(short, _probs(model, x[:1], again.setting))
    assert run.shape == tuple(x.shape)


def test_a_compile_failure_drops_the_candidate_with_a_log_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(compiled.CACHE_DIR_ENV, str(tmp_path / "inductor"))  # nothing cached
    model, x = conv_bn_net(5, seed=3), six_band_batch(3, 20)  # kernels this process has not built
    with inductor_config.patch({"cpp.cxx": ("isamap-no-such-compiler",)}), \
            caplog.at_level(DETAIL, logger="engine"):
        choice = autotune.choose(model, x, CPU, precision="bf16", channels_last="on",
                                 compile=True, measure=_compiled_fastest, cache=False,
                                 cpu_time=all_cores)
        assert choice.label == "bf16/nhwc"
        assert "bf16/nhwc/compiled" in choice.rejected
        assert choice.compile_seconds == 0
        assert any("bf16/nhwc/compiled failed" in r.getMessage() for r in caplog.records)
        # a compiled choice applied where compiling fails (the compiler gone since it was
        # cached) runs the model eagerly, with a warning, once
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


def test_compiling_is_tried_only_when_the_job_can_pay_for_it():
    assert autotune.compile_may_pay(10.0, 200_000)  # 2,000 s of model time
    assert not autotune.compile_may_pay(10.0, 100)  # 1 s
    eager, fast = Setting("bf16", True), Setting("bf16", True, compile=True)
    cached = autotune.Choice(fast, "cache", ms_per_sample={eager.label: 10.0, fast.label: 5.0},
                             compile_seconds=20.0)
    # measured: half the time saved, 20 s to compile -> pays from 4,000 samples
    assert autotune._for_job(cached, 5_000).setting == fast
    assert autotune._for_job(cached, 3_000).setting == eager
    untried = autotune.Choice(eager, "cache", ms_per_sample={eager.label: 10.0})
    assert autotune._for_job(untried, 100) is untried
    assert autotune._for_job(untried, 10_000_000) is None  # measured again, compiled tried
    lost = autotune.Choice(eager, "cache", ms_per_sample={eager.label: 10.0, fast.label: 11.0})
    assert autotune._for_job(lost, 10_000_000) is lost


def test_a_short_job_is_not_compiled_and_its_cached_choice_is_measured_again_for_a_long_one(
        cache):
    model, x = conv_bn_net(8), six_band_batch(2, 24)
    seen: list[Setting] = []

    def eager_only(setting: Setting, run) -> float:
        run()
        seen.append(setting)
        return 0.002

    short = autotune.choose(model, x, CPU, precision="bf16", channels_last="on", samples=100,
                            measure=eager_only, cpu_time=all_cores)
    assert short.setting == BF16_NHWC and short.compile_seconds == 0
    assert not any(s.compile for s in seen) and "bf16/nhwc/compiled" not in short.errors
    again = autotune.choose(model, x, CPU, precision="bf16", channels_last="on", samples=200,
                            measure=eager_only, cpu_time=all_cores)
    assert again.source == "cache"
    # the cached timings say a long job could pay for compiling: measured again
    assert autotune._for_job(again, 10**9) is None
