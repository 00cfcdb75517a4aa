"""isamap's folder in the user's cache: what a machine measured or built, kept between runs.

The autotune choices, inductor's kernels and the C kernels live side by side under one
folder, so a user who wants them gone removes one place.
"""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/isamap``, else ``~/.cache/isamap`` (not created here)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "isamap"
