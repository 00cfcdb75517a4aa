"""``auto`` is decided in one function, int8 included; whether int8 can run is checked once."""

import json

import pytest
import torch

from engine import choice, quantize
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
        # nor does auto check at all (torchao's import) where no int8 model was remembered
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
def test_auto_takes_int8_only_when_a_remembered_int8_model_is_faster(tmp_path, monkeypatch):
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

    assert run("auto").choice.precision != "int8"  # never quantized by auto on its own
    explicit = run("int8")
    assert explicit.choice.source == "explicit" and explicit.int8 is not None
    records = tmp_path / "int8.json"
    data = json.loads(records.read_text())
    (entry,) = data["entries"].values()
    assert entry["ms_per_sample"] > 0 and entry["class_agreement"] >= 0.99

    def remembered_ms(ms: float) -> None:
        entry["ms_per_sample"] = ms
        records.write_text(json.dumps(data))

    remembered_ms(1e-9)  # remembered as far faster than any float setting
    chosen = run("auto").choice
    assert chosen.label == "int8/nchw" and chosen.source == "cache"
    assert len(chosen.ms_per_sample) > 1 and chosen.int8["calibration"]
    remembered_ms(1e9)  # remembered as slower: auto keeps its own choice
    assert run("auto").choice.precision != "int8"
    # auto never fails where a fixed precision works: a remembered int8 model that cannot be
    # rebuilt this time (export or compilation fails) leaves auto with its own choice
    from core.errors import ConfigError
    from engine.compiled import CompileError

    remembered_ms(1e-9)
    for failure in (ConfigError("BandConv cannot be exported for int8 quantization"),
                    CompileError("a truncated kernel in the compile cache")):
        def fails(*args, failure=failure, **kwargs):
            raise failure

        monkeypatch.setattr(quantize, "build_int8", fails)
        kept = run("auto")
        assert kept.choice.precision != "int8" and kept.int8 is None
