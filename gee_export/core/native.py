"""Small C kernels, built on first use by the machine's C compiler and loaded with ctypes.

A few passes between the model's forwards are memory-bound loops whose layout torch's
element-wise kernels handle through a strided inner loop (the tiles normalised into a
channels-last batch, :mod:`inference.predict.normalise`). A C loop of a dozen lines does them
in fewer CPU-seconds, and shipping it as source keeps the package pure Python: no wheel per
platform. Nothing depends on it: where there is no compiler, the build fails, or
``ISAMAP_NATIVE`` is ``off``, :func:`load` returns None and the caller runs its torch pass,
which gives the same values.

The library is built once per source text, compiler, flags and platform into
``$XDG_CACHE_HOME/isamap/native`` (``ISAMAP_NATIVE`` may name another folder) and written
atomically, so processes building it at the same time never load half a file. Kernels are
built for the architecture, never for one CPU (no ``-march=native``), so a cache folder shared
by machines of different CPUs stays valid.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from gee_export.core.commands import DETAIL
from gee_export.core.digest import chunks_sha256
from gee_export.core.env_switch import is_off
from gee_export.core.storage.local import atomic_path
from gee_export.core.user_cache import user_cache_dir

log = logging.getLogger(__name__)

#: Environment variable: ``off`` (:data:`~gee_export.core.env_switch.OFF`) builds and loads
#: nothing (callers run their own fallback); a path is the folder of the built libraries
#: instead of the user cache's ``native``.
ENV = "ISAMAP_NATIVE"
#: The compiler's flags besides the optimisation: position-independent, no fused
#: multiply-add contraction (a kernel's rounding is then the same as torch's separate multiply
#: and add).
FLAGS = ("-ffp-contract=off", "-fPIC", "-shared")
#: The optimisation a kernel is built with unless its caller asks for others
#: (:mod:`inference.predict.normalise` builds its loop two ways and keeps the faster).
OPTIMISE = ("-O2",)
#: Seconds a build may take before it is given up.
BUILD_TIMEOUT_S = 120

_lock = threading.Lock()
_loaded: dict[tuple[Path, tuple[str, ...]], ctypes.CDLL | None] = {}


def enabled() -> bool:
    """Whether C kernels may be used (``ISAMAP_NATIVE`` is not off, :func:`is_off`)."""
    return not is_off(os.environ.get(ENV))


def cache_dir() -> Path:
    """The folder of the built libraries."""
    env = os.environ.get(ENV, "").strip()
    return Path(env).expanduser() if env and enabled() else user_cache_dir() / "native"


def compiler() -> str | None:
    """The C compiler: ``$CC`` when set, else ``cc``, ``gcc`` or ``clang`` on the PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"].split()[0])
    return next((path for name in ("cc", "gcc", "clang") if (path := shutil.which(name))), None)


def load(source: Path, optimise: tuple[str, ...] = OPTIMISE) -> ctypes.CDLL | None:
    """The library built from the C file ``source`` (``optimise``: compiler options), or None.

    Built on the first call on a machine (then loaded from the cache). None where it cannot be
    had: the reason is logged once per source, and a failed build is not tried again in this
    process.
    """
    with _lock:
        if (source, optimise) in _loaded:
            return _loaded[source, optimise]
        library = None
        if not enabled():
            log.debug("C kernels off (%s); %s is not built", ENV, source.name)
        else:
            try:
                library = ctypes.CDLL(str(_built(source, optimise)))
            except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
                log.log(DETAIL, "C kernel %s not available (%s); its caller's fallback runs "
                        "instead", source.name, exc)
        _loaded[source, optimise] = library
        return library


def _built(source: Path, optimise: tuple[str, ...]) -> Path:
    """The shared library of ``source`` in the cache, built there when absent."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC)")
    flags = (*optimise, *FLAGS)
    text = source.read_bytes()
    key = chunks_sha256([text, cc.encode(), " ".join(flags).encode(),
                         f"{sys.platform} {platform.machine()}".encode()], length=16)
    target = cache_dir() / f"{source.stem}-{key}.so"
    if target.is_file():
        return target
    with atomic_path(target) as tmp:
        done = subprocess.run([cc, *flags, "-o", str(tmp), str(source)], capture_output=True,
                              text=True, timeout=BUILD_TIMEOUT_S, check=False)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no message"])[0]
            raise RuntimeError(f"{Path(cc).name} failed: {first}")
    log.debug("built %s", target)
    return target


def forget() -> None:
    """Load again on the next call (tests that change ``ISAMAP_NATIVE`` or ``CC``)."""
    with _lock:
        _loaded.clear()
