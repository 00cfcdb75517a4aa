"""The rule a job too short to measure runs: capabilities the device reports, explicit values
kept (the check against fp32 is in test_autotune's short-job tests)."""

from __future__ import annotations

import torch

from engine import autotune, prior
from engine.execution import Setting

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
