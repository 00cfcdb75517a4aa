"""Keep freed memory in the process for reuse, so a model's forward does not page-fault.

A forward pass allocates its activations (megabytes to hundreds of megabytes each) and frees
them again before the next call. With glibc's defaults a block above the mmap threshold (128
KiB, rising to at most 32 MiB as such blocks are freed) is returned to the kernel when it is
freed, and free memory above 128 KiB at the top of the heap is trimmed, so every call maps
its activations afresh and the kernel zero-fills every page on first touch: tens of thousands
of minor page faults per forward of a large model, which then takes measurably longer
(``benchmarks/bench_allocator.py`` measures it side by side).

:func:`keep_freed_memory` raises both thresholds (``mallopt``), so freed blocks stay in the
heap and the next forward reuses them: no faults after the first call. The price is that the
process keeps up to its high-water mark of freed memory instead of returning it (a higher
peak RSS, which the mapping benchmark reports; docs/performance.md).

Only glibc has ``mallopt``; elsewhere (macOS, Windows, musl) nothing changes.
``ISAMAP_KEEP_FREED_MEMORY`` tunes it: ``off`` keeps the C library's defaults (for a process
that must give memory back between runs); a number sets both thresholds in MiB instead of the
default 256. Models whose activations are larger (the x10 super-resolution model) gain from
more, at the price of a larger peak RSS (``benchmarks/bench_allocator.py``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading

from core.env_switch import is_off
from core.errors import ConfigError

log = logging.getLogger(__name__)

#: Environment variable: ``off`` (or ``0``, ``false``, ``no``), or both thresholds in MiB.
ENV = "ISAMAP_KEEP_FREED_MEMORY"
#: Blocks up to this size come from the heap and go back to it when freed (glibc's
#: ``M_MMAP_THRESHOLD``), and as much free memory stays at the heap's top instead of being
#: trimmed (``M_TRIM_THRESHOLD``). Above the activations of the predictors' batches (a 512
#: px tile batch of the benchmark U-Net, one tile of the HRNet); more made those no faster
#: and the mapping benchmark's peak RSS larger.
DEFAULT_MIB = 256
#: ``mallopt`` takes an ``int``.
MAX_MIB = 2047

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_GLIBC_INITIAL_THRESHOLD = 128 * 1024  # both thresholds' values when a process starts

_lock = threading.Lock()
_applied: bool | None = None  # None: not tried yet in this process


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (the only one with these ``mallopt`` knobs)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (an AttributeError says: not glibc)
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks for reuse; True when the process now does so.

    Idempotent and cheap after the first call; a no-op (False) off glibc or when
    :data:`ENV` says ``off``. Affects the whole process from now on: blocks already returned
    are not brought back, blocks freed from now on are kept.

    Raises:
        ConfigError: :data:`ENV` holds neither ``off`` nor a size (see :func:`threshold_mib`).
    """
    global _applied
    with _lock:
        if _applied is not None:
            return _applied
        mib = threshold_mib()  # commands checked it first (core.commands.run_command)
        _applied = False
        if mib is None:
            log.debug("%s is off: the C library's allocator defaults are kept", ENV)
            return False
        libc = _glibc()
        if libc is None:
            log.debug("not glibc: freed memory is returned as the C library decides")
            return False
        mmap_ok = libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(mib << 20))
        trim_ok = libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(mib << 20))
        _applied = bool(mmap_ok and trim_ok)
        log.debug("freed memory up to %d MiB kept for reuse: %s (mallopt mmap %d, trim %d)",
                  mib, _applied, mmap_ok, trim_ok)
        return _applied


def threshold_mib() -> int | None:
    """Both thresholds in MiB as :data:`ENV` asks (None: off).

    Raises:
        ConfigError: the variable is neither ``off`` nor a whole number of MiB in range.
    """
    value = os.environ.get(ENV, "").strip().lower()
    if not value:
        return DEFAULT_MIB
    if is_off(value):
        return None
    if not value.isdigit() or not 1 <= int(value) <= MAX_MIB:
        raise ConfigError(f"{ENV}={value!r} is neither 'off' nor a size in MiB from 1 to "
                          f"{MAX_MIB}; unset it for the default ({DEFAULT_MIB})")
    return int(value)


#: What commands that run a model pass to ``run_command(checks=...)``: a bad
#: :data:`ENV` is refused before any work, not at the first forward.
CHECKS = (threshold_mib,)


def give_back_freed_memory() -> bool:
    """Return freed memory to the kernel as glibc does at start-up; True when done.

    Both thresholds go back to glibc's initial 128 KiB (fixed: the dynamic rise of the mmap
    threshold does not come back once ``mallopt`` has set it) and free heap memory is
    released (``malloc_trim``). For a long-lived process (a notebook) that is done mapping,
    and for the benchmark that times both ways in one process. :func:`keep_freed_memory`
    may be called again afterwards.
    """
    global _applied
    with _lock:
        libc = _glibc()
        if libc is None:
            return False
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_GLIBC_INITIAL_THRESHOLD))
              and libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_GLIBC_INITIAL_THRESHOLD)))
        libc.malloc_trim(ctypes.c_size_t(0))
        _applied = None
        return bool(ok)
