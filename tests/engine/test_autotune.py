"""``--precision auto`` measures: agreement with fp32, the cache, explicit choices kept.

Timings are never asserted: a fake ``measure`` decides which candidate is "fastest", so the
tests check what ``auto`` does with the timings (and what it records), not how fast it is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest
import torch

from core.errors import ConfigError
from engine import allocator, autotune
from engine.autotune import Setting
from tests.support.clocks import all_cores, no_cores
from tests.support.models import conv_bn_net, six_band_batch
from tests.support.page_faults import pages, run_fault_child

CPU = torch.device("cpu")






def _fake(ms: dict[tuple[str, bool], float], seen: list | None = None) -> autotune.Measure:
    """A ``Measure`` that runs the candidate once and reports the made-up time of its
    (precision, channels_last)."""
    def measure(setting: Setting, run) -> float:
        run()
        if seen is not None:
            seen.append(setting)
        return ms[(setting.precision, setting.channels_last)] / 1000
    return measure


def _probs(model, x, setting: Setting) -> torch.Tensor:
    model = model.to(memory_format=setting.memory_format)
    with torch.inference_mode(), setting.autocast("cpu"):
        out = model(x.contiguous(memory_format=setting.memory_format))
    return torch.softmax(out.float(), 1)




BF16_FASTEST = {("bf16", True): 1.0, ("bf16", False): 2.0, ("fp32", True): 3.0,
                ("fp32", False): 4.0}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache" / "autotune.json"
    monkeypatch.setenv(autotune.CACHE_ENV, str(path))
    return path


def test_auto_picks_the_fastest_candidate_that_agrees_with_fp32(cache):
    model, x = conv_bn_net(), six_band_batch()
    choice = autotune.choose(model, x, CPU, measure=_fake(BF16_FASTEST), cache=False)
    assert (choice.precision, choice.channels_last, choice.source) == ("bf16", True, "measured")
    assert len(choice.errors) == 4 and not choice.rejected  # every candidate was checked
    assert choice.errors[choice.label] <= choice.tolerance == autotune.TOLERANCE
    reference = _probs(model, x, Setting())
    assert float((_probs(model, x, choice.setting) - reference).abs().mean()) <= choice.tolerance
    # a bound that bf16 cannot meet: it is rejected (never timed), the fastest fp32 wins
    seen: list[Setting] = []
    strict = autotune.choose(model, x, CPU, measure=_fake(BF16_FASTEST, seen), cache=False,
                             tolerance=1e-9)
    assert strict.precision == "fp32" and {s.precision for s in seen} == {"fp32"}
    assert any(label.startswith("bf16") for label in strict.rejected)
    assert all(strict.errors[label] > 1e-9 for label in strict.rejected)
    assert float((_probs(model, x, strict.setting) - reference).abs().mean()) <= 1e-9


def test_explicit_precision_and_layout_are_never_overridden():
    model, x = conv_bn_net(), six_band_batch()
    seen: list[Setting] = []
    fixed = autotune.choose(model, x, CPU, precision="fp32", channels_last="off",
                            measure=_fake(BF16_FASTEST, seen), cache=False)
    assert (fixed.label, fixed.source, seen) == ("fp32/nchw", "explicit", [])
    assert autotune.explicit("bf16", True, CPU).label == "bf16/nhwc"
    assert autotune.explicit("auto", "on", CPU) is None
    # an explicit precision with a measured layout: only that precision is tried
    layout_only = autotune.choose(model, x, CPU, precision="fp32", measure=_fake(
        BF16_FASTEST, seen), cache=False)
    assert layout_only.precision == "fp32" and layout_only.channels_last
    assert {s.precision for s in seen} == {"fp32"}
    bf16 = autotune.choose(model, x, CPU, precision="bf16", channels_last="auto",
                           measure=_fake({**BF16_FASTEST, ("bf16", False): 0.5}),
                           cache=False, tolerance=1e-9)  # kept even though it disagrees
    assert (bf16.precision, bf16.channels_last) == ("bf16", False)
    with pytest.raises(ConfigError, match="fp16 autocast is for CUDA"):
        autotune.choose(model, x, CPU, precision="fp16")
    with pytest.raises(ConfigError, match="channels_last must be"):
        autotune.choose(model, x, CPU, channels_last="sideways")  # type: ignore[arg-type]


def test_the_cache_is_written_reused_and_ignored_for_another_model_or_shape(cache,
                                                                            monkeypatch):
    model, x = conv_bn_net(), six_band_batch()
    first = autotune.choose(model, x, CPU, measure=_fake(BF16_FASTEST), cpu_time=all_cores)
    stored = json.loads(cache.read_text())
    assert stored["format"] == autotune.CACHE_FORMAT
    assert stored["entries"][first.key]["setting"]["precision"] == "bf16"

    def never(setting, run):
        raise AssertionError("a cached choice must not be measured again")

    # the same architecture and shape
    again = autotune.choose(conv_bn_net(), six_band_batch(), CPU, measure=never,
                            cpu_time=all_cores)
    assert (again.source, again.setting, again.ms_per_sample) == (
        "cache", first.setting, first.ms_per_sample)
    fp32_fastest = {k: (0.5 if k == ("fp32", False) else 9.0) for k in BF16_FASTEST}
    other_shape = autotune.choose(model, six_band_batch(2, 48), CPU, measure=_fake(fp32_fastest),
                                  cpu_time=all_cores)
    other_model = autotune.choose(conv_bn_net(width=12), x, CPU, measure=_fake(fp32_fastest),
                                  cpu_time=all_cores)
    for choice in (other_shape, other_model):
        assert choice.source == "measured" and choice.label.startswith("fp32/nchw")
        assert choice.key != first.key
    assert len(json.loads(cache.read_text())["entries"]) == 3
    # disabled: measured every time, nothing written; a corrupt file is ignored and replaced
    monkeypatch.setenv(autotune.CACHE_ENV, "off")
    assert autotune.cache_file() is None
    assert autotune.choose(model, x, CPU, measure=_fake(BF16_FASTEST),
                           cpu_time=all_cores).source == "measured"
    monkeypatch.setenv(autotune.CACHE_ENV, str(cache))
    cache.write_text("{not json")
    assert autotune.choose(model, x, CPU, measure=_fake(BF16_FASTEST),
                           cpu_time=all_cores).source == "measured"
    assert len(json.loads(cache.read_text())["entries"]) == 1


def test_cache_file_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.delenv(autotune.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert autotune.cache_file() == tmp_path / "isamap" / "autotune.json"


def test_training_measures_whole_steps_on_a_copy_and_leaves_the_run_untouched():
    torch.manual_seed(3)
    model = conv_bn_net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = six_band_batch(4, 16), torch.randint(0, 2, (4, 16, 16))
    rng = torch.get_rng_state()
    steps: list[int] = []

    def loss(out, batch):
        steps.append(batch["image"].shape[0])
        assert batch["label"].shape[0] == batch["image"].shape[0]  # cut alike
        return torch.nn.functional.cross_entropy(out.float(), batch["label"])

    step = autotune.TrainStep(loss, lambda p: torch.optim.Adam(p, lr=1e-2), {"label": y})
    choice = autotune.choose(model, x, CPU, mode="training", step=step,
                             measure=_fake(BF16_FASTEST), cache=False)
    assert choice.mode == "training" and choice.precision in ("fp32", "bf16")
    assert len(steps) >= 4  # a real step (loss, backward, update) per candidate at least
    assert model.training and all(torch.equal(v, before[k])
                                  for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    with pytest.raises(ValueError, match="TrainStep"):
        autotune.choose(model, x, CPU, mode="training")


def test_the_measurement_is_cut_to_the_budget_but_keyed_by_the_real_shape():
    model, x = conv_bn_net(), six_band_batch(4, 128)
    tiny = autotune.choose(model, x, CPU, budget_s=0.0, measure=_fake(BF16_FASTEST),
                           cache=False)
    assert tiny.shape == (4, 6, 128, 128)
    # the batch shrinks to its smallest, the tile is never cropped
    assert (tiny.measured_batch, tiny.measured_size) == (1, (128, 128))
    d = tiny.to_dict()
    assert autotune.Choice.from_dict(json.loads(json.dumps(d))) == tiny
    # even past the budget every candidate is checked and timed: none loses by default
    assert set(tiny.ms_per_sample) | set(tiny.rejected) == {
        s.label for s in autotune.candidates(CPU, "auto", "auto")}
    assert not tiny.skipped
    tags = tiny.tags()
    assert tags["runtime"] == tiny.label and f"{tiny.label}=" in tiny.measurements()["ms_per_tile"]
    # a map's tags carry the choice, never this machine's timings or whether a cache was warm
    assert not any("ms" in k or "device" in k or "share" in k for k in tags)
    assert tags["runtime_source"] == "auto"
    assert replace(tiny, source="cache").tags() == tags


APPLIED_CHILD = """
    import torch
    from engine import autotune

    out = {"before": faults(64)}
    choice = autotune.explicit("fp32", "off", torch.device("cpu"))
    autotune.apply(choice, torch.nn.Conv2d(1, 1, 1), torch.device("cpu"))
    out["after"] = faults(64)
    print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.skipif(allocator._glibc() is None, reason="mallopt is glibc's")
def test_a_cpu_run_keeps_freed_memory_for_its_next_forward():
    """The chosen setting puts the process in the allocator mode the forwards are timed in."""
    out = run_fault_child(APPLIED_CHILD, ISAMAP_KEEP_FREED_MEMORY="")
    assert out["before"] > pages(64) // 2  # a fresh process gives a freed 64 MiB block back
    assert out["after"] < pages(64) // 20  # after apply() the next one comes from the heap


SLOW_FP32 = {k: (0.5 if k == ("fp32", False) else 9.0) for k in BF16_FASTEST}


def test_a_measurement_the_process_got_too_little_cpu_for_is_discarded_not_cached(cache,
                                                                                 caplog):
    """Real timings under a scripted CPU clock that says other work held the cores: the run
    keeps its choice, the log says why nothing is cached, and nothing is; with all its
    threads' time the same call measures and caches."""
    model, x = conv_bn_net(), six_band_batch()
    with caplog.at_level(logging.INFO, logger="engine.autotune"):
        starved = autotune.choose(model, x, CPU, budget_s=1.0, cpu_time=no_cores)
    assert starved.source == "measured" and starved.ms_per_sample and not cache.exists()
    assert "the measurement is discarded, not cached" in caplog.text
    quiet = autotune.choose(model, x, CPU, budget_s=1.0, cpu_time=all_cores)
    assert quiet.source == "measured" and quiet.key in json.loads(cache.read_text())["entries"]


def test_a_job_too_short_for_measuring_to_pay_runs_the_first_candidate_unmeasured(cache):
    """fp32 NCHW (the plain path) where both are auto, the user's precision where given;
    never measured nor cached; a cached choice for the same tiles comes first."""
    def never(setting, run):
        raise AssertionError("a short job is not measured")

    model, x = conv_bn_net(), six_band_batch()
    short = autotune.choose(model, x, CPU, samples=10, measure=never)
    assert (short.source, short.label, short.errors) == ("short-job", "fp32/nchw", {})
    given = autotune.choose(model, x, CPU, precision="bf16", samples=10, measure=never)
    assert (given.source, given.label) == ("short-job", "bf16/nchw")
    assert not cache.exists()
    long = autotune.choose(model, six_band_batch(4), CPU, samples=10_000,
                           measure=_fake(BF16_FASTEST))
    assert (long.source, long.label) == ("measured", "bf16/nhwc")
    again = autotune.choose(model, six_band_batch(2), CPU, samples=4, measure=never)
    assert (again.source, again.label, again.shape) == ("cache", "bf16/nhwc", (2, 6, 32, 32))


def test_compile_runs_the_choice_compiled_without_measuring_a_compiled_candidate(cache):
    seen: list[Setting] = []
    model, x = conv_bn_net(), six_band_batch()
    compiled = autotune.choose(model, x, CPU, compile=True, measure=_fake(BF16_FASTEST, seen))
    assert compiled.label == "bf16/nhwc/compiled" and not any(s.compile for s in seen)
    cached = json.loads(cache.read_text())["entries"][compiled.key]
    assert cached["label"] == "bf16/nhwc"  # what was measured, eager
    eager = autotune.choose(model, x, CPU, measure=_fake(BF16_FASTEST))
    assert (eager.source, eager.label) == ("cache", "bf16/nhwc")
