"""``auto`` is decided in one function, int8 included; whether int8 can run is checked once."""

import pytest
import torch

from engine import autotune, choice, quantize
from engine.setting import Setting
from tests.support.models import BandConv

CPU = torch.device("cpu")
needs_int8 = pytest.mark.skipif(not quantize.cpu_has_int8(),
                                reason="this CPU has no VNNI/AMX int8 instructions")


def test_int8_availability_is_checked_once_per_process(monkeypatch, tmp_path):
    calls = []

    def refuse(device):
        calls.append(device.type)
        raise quantize.ConfigError("no int8 units here")

    choice.int8_unavailable.cache_clear()
    monkeypatch.setattr(quantize, "check_int8", refuse)
    try:
        assert choice.int8_unavailable("cpu") == "no int8 units here"
        assert choice.int8_unavailable("cpu") == "no int8 units here"
        with pytest.raises(quantize.ConfigError, match="no int8 units"):
            choice.check_int8(CPU)
        assert calls == ["cpu", "cpu"]  # the second: the refusal raised with its own type
        request = choice.Request(precision="auto", budget_s=0.2, cache=False)
        x = torch.randn(2, 6, 16, 16)
        decided = choice.decide(BandConv(6).eval(), x, CPU, request)
        assert decided.choice.precision in ("fp32", "bf16") and decided.int8 is None
        assert calls == ["cpu", "cpu"]  # auto did not check again
        # nor does auto check at all (torchao's import): it never quantizes
        choice.int8_unavailable.cache_clear()
        monkeypatch.setenv("ISAMAP_AUTOTUNE_CACHE", str(tmp_path / "autotune.json"))
        decided = choice.decide(BandConv(6).eval(), x, CPU, choice.Request(budget_s=0.2))
        assert decided.choice.ms_per_sample and calls == ["cpu", "cpu"]
    finally:
        choice.int8_unavailable.cache_clear()


def test_explicit_settings_need_no_batch_and_auto_does():
    model = BandConv(6).eval()
    fixed = choice.fixed(model, CPU, choice.Request(precision="fp32", channels_last="on"))
    assert fixed is not None and fixed.choice.label.startswith("fp32/nhwc")
    assert fixed.choice.source == "explicit"
    assert choice.fixed(model, CPU, choice.Request(precision="auto")) is None


@needs_int8
def test_auto_never_takes_int8_even_after_an_int8_run(tmp_path, monkeypatch):
    pytest.importorskip("torchao")
    monkeypatch.setenv("ISAMAP_AUTOTUNE_CACHE", str(tmp_path / "autotune.json"))
    weights = BandConv(6).state_dict()
    x = torch.randn(4, 6, 32, 32, generator=torch.Generator().manual_seed(2))
    x[:, 0] = torch.sign(x[:, 0]) * (x[:, 0].abs() + 0.5)  # no pixel on the class boundary

    def run(precision: str) -> choice.Decided:
        model = BandConv(6).eval()  # a fresh copy: auto leaves a model in its chosen layout
        model.load_state_dict(weights)
        with torch.inference_mode():
            return choice.decide(model, x, CPU, choice.Request(precision=precision,
                                                                budget_s=0.5), isa_class=1)

    explicit = run("int8")
    assert explicit.choice.source == "explicit" and explicit.int8 is not None
    assert explicit.choice.int8["class_agreement"] >= 0.99
    assert not (tmp_path / "int8.json").exists()  # nothing remembered for auto
    assert run("auto").choice.precision != "int8"


@pytest.fixture
def cudnn_flags():
    """The process's cuDNN flags, set to what a training run may leave, given back after."""
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


def deterministic() -> bool:
    return (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == (False, True)


def test_inference_runs_cudnn_deterministic_never_by_a_timing_race(cudnn_flags):
    cuda = torch.device("cuda")  # only the candidates' list: nothing runs on it
    for precision, layout in (("auto", "auto"), ("fp16", "on"), ("fp32", "auto")):
        assert not any(s.cudnn_benchmark for s in autotune.candidates(cuda, precision, layout))
    # training may time cudnn.benchmark: its model is an input of a map, not one of its runs
    assert any(s.cudnn_benchmark for s in autotune.candidates(cuda, "auto", "auto", "training"))
    model = BandConv(6).eval()
    fixed = choice.fixed(model, CPU, choice.Request(precision="fp32", channels_last="off"))
    assert fixed is not None and deterministic()
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False
    decided = choice.decide(model, torch.randn(2, 6, 16, 16), CPU,
                            choice.Request(budget_s=0.2, cache=False))
    assert decided.choice.ms_per_sample and deterministic()
    # strips an earlier isamap recorded at a benchmarked runtime go on without it
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False
    recorded = autotune.Choice(Setting.from_label("fp16/nhwc/cudnn-bench"), "measured")
    resumed = choice.resumed(model, CPU, choice.Request(), recorded)
    assert resumed.choice.label == "fp16/nhwc" and deterministic()


def test_training_after_a_prediction_runs_cudnn_as_its_setting_says(cudnn_flags):
    """A prediction left ``deterministic`` on; training after it in the process ran so.

    Its result then depended on what ran before it: the training setting now sets both flags.
    """
    model = BandConv(6)
    for device, bench, flags in ((CPU, None, (False, False)),
                                 (torch.device("cuda"), True, (True, False)),
                                 (torch.device("cuda"), False, (False, False))):
        autotune.apply(autotune.Choice(Setting("fp32"), "explicit"), model.eval(), device)
        assert deterministic()
        autotune.apply(autotune.Choice(Setting("fp32", False, bench), "explicit", "training"),
                       model.train(), device)  # only the flags: nothing runs on the device
        assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == flags
