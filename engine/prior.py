"""What a job too short to measure runs: a rule from what the device reports, checked.

``--precision auto`` measures (:mod:`engine.autotune`). A job whose model time cannot pay for
measuring (:data:`engine.autotune.MEASURE_SHARE`) and finds no cached choice runs the
candidate this rule prefers instead. The rule names capabilities the device reports, never a
speed measured on some machine:

- **Precision.** bf16 on a CPU for which torch reports bf16 dot-product instructions
  (AVX512-BF16 or AMX tiles: ``torch.cpu._is_avx512_bf16_supported``,
  ``torch.cpu._is_amx_tile_supported``): oneDNN computes its convolutions in bf16 there,
  while a CPU without them emulates bf16 (slower than fp32), so it keeps fp32. On CUDA the
  rule names nothing: fp32 NCHW, the first candidate.
- **Layout.** channels-last where torch runs CPU convolutions through oneDNN
  (``torch.backends.mkldnn.is_available()``): oneDNN computes on channels-last (or blocked)
  activations, so a channels-first model's activations are reordered before and after
  every convolution.

Explicit values are kept (the rule picks only among the candidates left to ``auto``). A
reduced precision the rule picks under ``--precision auto`` passes the agreement check the
measuring applies (fp32 NCHW against it on a crop of the first tile,
:meth:`~engine.execution.SettingRunner.check_batch`: 128 pixels a side, a sixteenth of a
512-pixel tile) or is rejected, and the job runs fp32. What a map records is the setting it
ran, so its bytes are a function of that setting, as for a measured choice. A cached
measured choice comes first and a longer job measures: the rule decides only what no
measurement pays for (here, and in :mod:`engine.autotune` when the budget leaves no time for
any timed call) or what a measurement could not rank (training while other work holds the
CPU: the choice is never cached, so a quiet machine measures its own).

May import: ``engine.execution``, ``engine.choice_value``, ``core``, torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from core.commands import DETAIL
from engine.choice_value import Choice, Source
from engine.execution import Dtype, Mode, Setting, SettingRunner

log = logging.getLogger(__name__)


def native_reduced_precision(device: torch.device) -> Dtype | None:
    """The reduced precision ``device`` computes natively, as torch reports it (None: none)."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return None
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    if any(bool(getattr(cpu, name, lambda: False)()) for name in checks):
        return "bf16"
    return None


def preferred(device: torch.device, cands: list[Setting],
              native: Callable[[torch.device], Dtype | None] | None = None) -> Setting:
    """The candidate the rule prefers (module docstring); ``cands[0]`` on a GPU.

    ``native``: the capability query (None: :func:`native_reduced_precision`).
    """
    if device.type != "cpu":
        return cands[0]
    precision = (native or native_reduced_precision)(device) or "fp32"
    channels_last = torch.backends.mkldnn.is_available()
    # the first candidate of the wanted precision, then of the wanted layout (stable sort)
    return sorted(cands, key=lambda s: (s.precision != precision,
                                        s.channels_last != channels_last))[0]


def short_job(model: nn.Module, example: torch.Tensor, device: torch.device,
              cands: list[Setting], *, checked: bool, tolerance: float, mode: Mode = "inference",
              native: Callable[[torch.device], Dtype | None] | None = None,
              loaded: bool = False) -> Choice:
    """The choice of a job too short to measure: :func:`preferred`, checked when ``checked``.

    Also what training runs when other work holds the CPU (``loaded``, source ``loaded``):
    steps timed then would rank the load, not the candidates.

    Args:
        model: the eval-mode model on ``device`` (left in the layout of its last check).
        example: the job's first batch of normalised tiles.
        device: where it runs.
        cands: the candidates ``auto`` chooses among (explicit values already fixed).
        checked: whether the precision is ``auto``'s to choose, so a reduced one must
            agree with fp32 (an explicit one is the user's and is kept).
        tolerance: the agreement bound, mean |p - p_fp32|.
        mode: recorded in the choice.
        native: the capability query (None: :func:`native_reduced_precision`).
        loaded: the reason is a loaded machine, not a short job (the log and the source).
    """
    pick = preferred(device, cands, native)
    errors: dict[str, float] = {}
    rejected: tuple[str, ...] = ()
    if checked and pick.precision != "fp32":
        with torch.random.fork_rng(devices=[]):
            runner = SettingRunner(model, {"image": example.to(device)}, device, "inference",
                                   None)
            try:
                error = runner.disagreement(pick, *runner.check_reference())
            finally:
                runner.close()
        errors = {Setting().label: 0.0, pick.label: float(f"{error:.4g}")}
        if error > tolerance:
            log.log(DETAIL, "autotune: %s disagrees with fp32 (%.3g > %g); running fp32",
                    pick.label, error, tolerance)
            rejected = (pick.label,)
            pick = preferred(device, [c for c in cands if c.precision == "fp32"] or cands,
                             lambda _: None)
    log.log(DETAIL, "autotune: %s; running %s (the device rule, engine.prior)",
            "the machine is loaded" if loaded else "too few samples for measuring to pay",
            pick.label)
    source: Source = "explicit" if len(cands) == 1 else "loaded" if loaded else "short-job"
    return Choice(pick, source, mode,
                  tuple(int(s) for s in example.shape), errors=errors, rejected=rejected,
                  tolerance=tolerance)
