"""The rule a job too short to measure runs: capabilities the device reports, explicit values
kept (the check against fp32 is in test_autotune's short-job tests)."""

from __future__ import annotations

import torch

from engine import autotune, prior
from engine.execution import Setting
from tests.support.models import conv_bn_net, six_band_batch

CPU = torch.device("cpu")


def test_the_rule_follows_the_reported_capabilities_among_the_candidates_left_to_auto():
    everything = autotune.candidates(CPU, "auto", "auto")
    onednn = torch.backends.mkldnn.is_available()
    assert prior.preferred(CPU, everything, lambda d: "bf16") == Setting("bf16", onednn)
    assert prior.preferred(CPU, everything, lambda d: None) == Setting("fp32", onednn)
    # explicit values are never overridden: only what is left to auto is picked
    fp32_only = autotune.candidates(CPU, "fp32", "auto")
    assert prior.preferred(CPU, fp32_only, lambda d: "bf16") == Setting("fp32", onednn)
    nchw = autotune.candidates(CPU, "auto", "off")
    assert prior.preferred(CPU, nchw, lambda d: "bf16") == Setting("bf16", False)
    # no rule on a GPU: its first candidate
    gpu = [Setting("fp32", False, False), Setting("bf16", True, True)]
    assert prior.preferred(torch.device("cuda"), gpu, lambda d: "bf16") == gpu[0]
    # the query itself: what torch reports (bf16 only with oneDNN), nothing on a GPU
    assert prior.native_reduced_precision(CPU) in (None, "bf16")
    assert prior.native_reduced_precision(torch.device("cuda")) is None


class FixedSize(torch.nn.Module):
    """A model made for one input size: it refuses the check crop."""

    def __init__(self) -> None:
        super().__init__()
        self.net = conv_bn_net()

    def forward(self, x):
        if x.shape[-1] != 192:
            raise ValueError("this model takes 192-pixel tiles only")
        return self.net(x)


def test_a_model_that_refuses_the_crop_is_checked_on_whole_tiles():
    model, x = FixedSize().eval(), six_band_batch(2, 192)
    everything = autotune.candidates(CPU, "auto", "auto")
    short = prior.short_job(model, x, CPU, everything, checked=True, tolerance=0.02,
                            native=lambda d: "bf16")
    assert short.precision == "bf16" and not short.rejected
    assert 0 < short.errors[short.label] <= 0.02
    measured = autotune.choose(model, x, CPU, cache=False, measure=lambda s, run: run() or 1.0)
    assert set(measured.errors) == {s.label for s in everything} and not measured.rejected
