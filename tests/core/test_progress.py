"""core.progress: a bar whose construction is interrupted leaves no traceback behind."""

from __future__ import annotations

import gc
import sys

import pytest

from core.progress import LoggedBar


class _Interrupted:
    """An iterable whose length is asked while tqdm builds the bar, and a Ctrl-C arrives."""

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        raise KeyboardInterrupt


def test_a_ctrl_c_while_the_bar_is_built_prints_no_traceback(monkeypatch):
    """CI saw ``isamap-train``'s Ctrl-C end with "Exception ignored in ... LoggedBar ...
    AttributeError: 'LoggedBar' object has no attribute 'disable'": tqdm's __init__ was
    interrupted before it set ``disable``, and the half-built bar's __del__ closed it."""
    raised = []
    monkeypatch.setattr(sys, "unraisablehook", raised.append)
    with pytest.raises(KeyboardInterrupt):
        LoggedBar(_Interrupted(), desc="tiles")  # what progress_bar gives off a terminal
    gc.collect()
    assert [f"{r.exc_type.__name__}: {r.exc_value}" for r in raised] == []
