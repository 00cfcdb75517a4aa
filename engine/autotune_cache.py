"""Where ``auto``'s measured choices are remembered, and under what key.

A :class:`~engine.choice_value.Choice` is cached in ``$XDG_CACHE_HOME/isamap/autotune.json``
under a hash of everything the measurement depends on (:func:`cache_key`): the model's
architecture and arguments, the input (for inference, tile) shape, the device in words
(:func:`describe_device`, with its thread count), the torch version, what was left to measure
and the tolerance. ``ISAMAP_AUTOTUNE_CACHE=off`` disables it, ``=/some/file.json`` moves it.
The file carries a ``format`` tag (a file of another format, or one that cannot be read,
counts as empty and is rewritten), holds at most :data:`CACHE_ENTRIES` entries (the oldest
dropped first) and is written atomically; a home that cannot be written must not stop a map,
so a failed write is a warning.

May import: ``core``, ``engine.choice_value``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.digest import json_digest, text_sha256
from core.env_switch import is_off
from core.storage import atomic_write
from core.user_cache import user_cache_dir
from engine.choice_value import Choice

CACHE_ENV = "ISAMAP_AUTOTUNE_CACHE"
# /3 entries could hold a choice measured under load; /4 ones were measured while a joined
# encoder model encoded each window once per member (now once per view: other timings); /5
# inference choices on CUDA could say cudnn.benchmark, which inference no longer runs
CACHE_FORMAT = "isamap-autotune/6"
CACHE_ENTRIES = 256  # oldest entries are dropped beyond this

log = logging.getLogger(__name__)


def describe_device(device: torch.device) -> str:
    """The device in words, part of the cache key (a different machine measures again)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return f"{torch.cuda.get_device_name(index)} (sm_{major}{minor})"
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return (f"{name} ({torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads)")


def cache_file() -> Path | None:
    """The cache's path, or None when ``ISAMAP_AUTOTUNE_CACHE`` is off (:func:`is_off`)."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if is_off(env):
        return None
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "autotune.json"


def cache_key(model: nn.Module, shape: tuple[int, ...], device: torch.device, mode: str,
              precision: str, layout: str, compile: bool, tolerance: float) -> str:
    """A hash of everything the measurement depends on.

    The architecture and its arguments (the module tree's repr holds every layer's sizes),
    the parameter count, the input shape, the device (with its thread count), the torch
    version, what was left to measure and the tolerance. For inference the shape is the
    tile's, without the batch: the measured batch is cut to the budget whatever the job's,
    so a map of a few tiles (a short job, a row narrower than a batch) reuses the choice
    measured for a larger map of the same tiles.
    """
    arch = f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}"
    params = sum(p.numel() for p in model.parameters())
    fields = {"format": CACHE_FORMAT, "mode": mode,
              "arch": text_sha256(arch), "params": params,
              "shape": list(shape[1:] if mode == "inference" else shape),
              "device": describe_device(device),
              "torch": torch.__version__, "precision": precision, "layout": layout,
              "compile": compile, "tolerance": tolerance}
    return json_digest(fields, 24)


def read_cache(path: Path) -> dict[str, Any]:
    """The cached choices by key (empty when missing, unreadable or of another format)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring the unreadable autotune cache %s (%s); it will be rewritten",
                    path, exc)
        return {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def write_cache(path: Path, key: str, choice: Choice) -> None:
    """Remember ``choice`` under ``key``, the newest entry (the oldest dropped beyond the bound)."""
    entries = read_cache(path)
    entries.pop(key, None)
    entries[key] = choice.to_dict()
    while len(entries) > CACHE_ENTRIES:
        entries.pop(next(iter(entries)))
    text = json.dumps({"format": CACHE_FORMAT, "entries": entries}, indent=1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda fh: fh.write(text.encode()))
    except OSError as exc:  # a read-only home must not stop a prediction
        log.warning("could not write the autotune cache %s (%s)", path, exc)
