"""The one rule for an environment variable that switches a feature off.

``ISAMAP_AUTOTUNE_CACHE`` and ``ISAMAP_KEEP_FREED_MEMORY`` each take a value of their own
(a path, a size) or a word that turns the feature off, and ``ISAMAP_SHARED_FEATURES`` the
word alone; the words are the same for all of them, so a user who learnt one knows the
others.
"""

from __future__ import annotations

#: The values (any case, surrounding spaces ignored) that mean "off".
OFF = frozenset({"off", "0", "false", "no", "none"})


def is_off(value: str | None) -> bool:
    """Whether an environment variable's value switches its feature off (unset: no)."""
    return (value or "").strip().lower() in OFF
