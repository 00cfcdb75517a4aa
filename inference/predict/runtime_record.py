"""The runtime (precision, layout, compiling) is part of a map's identity, as its tiling is.

A map's bytes depend on its inputs, its model and the runtime its tags record, never on a
timing race (``--precision auto`` measures). So:

- the checkpoint strips of a run are computed at one runtime, recorded beside them
  (``runtime.json``) before the first strip is written. A resumed run takes it where its
  options say ``auto`` (nothing is measured again: resumed work equals uninterrupted work);
  an explicit option asking for another runtime is refused like a changed tiling (``--restart``
  discards the strips);
- a finished map whose tags record another runtime than an explicit option asks for is not
  the asked map: it is mapped again (``auto`` accepts the recorded one).

:func:`inference.cog.maps.map_identity` is what products made from a map (change maps, a
consistent series) compare, so they are redone when their maps were.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch

from core.errors import ConfigError
from core.storage import atomic_write
from engine import choice as engine_choice
from engine.choice_value import Choice
from engine.devices import check_precision, layout_flag
from engine.quantize import Int8UnavailableError
from engine.setting import Setting
from inference.predict.runtime import TilePredictor

log = logging.getLogger(__name__)

#: the runtime of a work folder's strips
RUNTIME_FILE = "runtime.json"


def recorded(work: Path) -> Choice | None:
    """The runtime a work folder's strips were computed at (None: not recorded)."""
    path = work / RUNTIME_FILE
    if not path.exists():
        return None
    return Choice.from_dict(json.loads(path.read_text()))


def record(work: Path, choice: Choice, compile: bool) -> None:
    """Record the strips' runtime once (``compile``: what was asked; the first record stays)."""
    path = work / RUNTIME_FILE
    if path.exists():
        return
    settled = choice.to_dict()
    settled["setting"] = {**settled["setting"], "compile": compile}
    text = json.dumps(settled, indent=1)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def check_strips(work: Path, predictor: TilePredictor, restart: bool) -> bool:
    """Whether a work folder's strips must be discarded for their runtime.

    Strips without a record (an earlier isamap wrote them) cannot be trusted to match any
    runtime: they are discarded with a warning, whatever was asked (recomputing is safe), as
    are strips an earlier isamap computed with ``cudnn.benchmark``.

    Raises:
        ConfigError: an explicit option, or the runtime a series holds under ``auto``, asks
            for another runtime than the strips', without ``restart``.
    """
    theirs = recorded(work)
    if theirs is None:
        log.warning("%s holds strips an earlier isamap wrote without recording their runtime "
                    "(precision, layout), so they cannot be trusted to match this run's: "
                    "discarding them and computing them again", work)
        return True
    if theirs.setting.cudnn_benchmark:  # resumed without it, one map would mix two runtimes
        log.warning("%s holds strips an earlier isamap computed with cudnn.benchmark (%s), "
                    "which this isamap's inference never runs: discarding them and computing "
                    "them again", work, theirs.label)
        return True
    o, request = predictor.options, predictor.request
    asked = replace(request, precision=o.precision, channels_last=layout_flag(o.channels_last))
    option = engine_choice.conflict(asked, theirs.setting)
    held = None if option is not None or o.held is None else engine_choice.conflict(
        request, theirs.setting)
    if (option is None and held is None) or restart:
        return option is not None or held is not None
    if option is not None:
        raise ConfigError(
            f"{work} holds strips computed at {theirs.label}; this run gives {option}: give "
            f"the interrupted run's option (or auto) to resume them, or {discard_advice(work)}")
    assert o.held is not None
    raise ConfigError(
        f"{work} holds strips computed at {theirs.label}, but the series it belongs to is "
        f"mapped at {o.held.label} (under auto a series holds the runtime its dates record): "
        f"{discard_advice(work)} and its date is mapped again at {o.held.label}, or give "
        f"the strips' runtime ({flags(theirs.setting)}) to map the whole series at it")


def discard_advice(work: Path) -> str:
    """How to discard a work folder's strips: right for isamap-map and isamap-predict alike."""
    return (f"delete {work} to discard them (isamap-predict: or pass --restart, Python: "
            "restart=True, or choose another --work-dir)")


def flags(setting: Setting) -> str:
    """The options that ask for ``setting``'s precision and layout."""
    return (f"--precision {setting.precision} --channels-last "
            f"{'on' if setting.channels_last else 'off'}")


def continue_strips(work: Path, predictor: TilePredictor, has_strips: bool) -> None:
    """Set ``predictor`` to the strips' runtime (``auto``) and record its choice beside them.

    Called once :func:`check_strips` accepted the folder. A choice settled now (explicit
    options, or taken from the strips) is recorded now; one ``auto`` settles on the first
    batch is recorded then, before any strip is written.
    """
    theirs = recorded(work) if has_strips else None
    if theirs is not None:
        if predictor.options.precision == "auto":  # an explicit one is checked as given
            check_runs_here(theirs, predictor.device, f"the strips in {work} were computed",
                            f"resume them on a device that runs {theirs.precision}, or "
                            f"{discard_advice(work)}")
        predictor.resume(theirs)
        log.info("resuming at the runtime the interrupted run used: %s", theirs.label)
    else:
        (work / RUNTIME_FILE).unlink(missing_ok=True)  # no strip: nothing it describes
    asked = bool(predictor.options.compile)
    if predictor.choice is not None:
        record(work, predictor.choice, asked)
    predictor.on_choice = lambda choice: record(work, choice, asked)


def check_runs_here(choice: Choice, device: torch.device, what: str, advice: str,
                    whose: str = "") -> None:
    """Refuse a recorded runtime ``device`` cannot run, as an explicit one is refused.

    Strips or a series recorded on another machine (fp16 on a GPU, resumed on a CPU; int8 on
    a CPU with int8 units, on one without) would otherwise go on at it, or fail at the first
    batch. ``what`` says what recorded it, ``whose`` (after the runtime) how it is known,
    ``advice`` what to do.

    Raises:
        ConfigError: the precision is not one this device type runs.
        Int8UnavailableError: int8 cannot run here.
    """
    try:
        check_precision(choice.precision, device.type)
        if choice.precision == "int8":
            engine_choice.check_int8(device)
    except (ConfigError, Int8UnavailableError) as exc:
        raise type(exc)(f"{what} at {choice.label}{whose}, which this {device.type} cannot run "
                        f"({exc}): {advice}") from exc


def other_runtime(path: str, tags: Mapping[str, str], request: engine_choice.Request) -> bool:
    """Whether a finished map was computed at another runtime than an explicit option asks.

    Then it is not the asked map: it is mapped again, and the log says why. ``auto`` accepts
    the recorded runtime; a map whose tags name none this can read satisfies any.
    """
    setting = Setting.from_label(tags.get("runtime", ""))
    option = None if setting is None else engine_choice.conflict(request, setting,
                                                                 compiled=False)
    if option is not None:
        log.info("%s was computed at runtime %s; this run asks %s: mapping it again", path,
                 tags["runtime"], option)
    return option is not None

