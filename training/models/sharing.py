"""What the members of one joined forward may share: a scope that lives for that forward only.

:class:`training.models.members.MemberMean` runs its members view by view and opens a
:func:`shared_forward` scope around them; a member that computes something its neighbours
given the same input tensor would compute again (a frozen encoder's features:
:meth:`training.models.encoders.fused.EncoderUNet.features`) keeps it in the scope
(:func:`scope`) and the next member takes it from there. The scope holds one entry, the last,
keyed by the input tensor itself (the same object, not an equal one, unchanged since), and
is dropped when the forward returns, so nothing outlives the forward and two forwards never
share. Under ``torch.compile`` no scope is opened (the entry's checks would break the graph),
and ``ISAMAP_SHARED_FEATURES=off`` opens none (the plain twin: every member computes).

May import: ``core``, torch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch

from core.env_switch import is_off

#: ``off`` (or ``0``, ``false``, ``no``, ``none``): members share nothing (the plain twin)
SHARED_ENV = "ISAMAP_SHARED_FEATURES"


@dataclass
class Entry:
    """What one member computed from ``source`` (at its ``version``), and what it depends on."""

    source: torch.Tensor
    version: int
    same: Callable[[Any], bool]
    value: Any


class Scope:
    """The last entry of one forward."""

    def __init__(self) -> None:
        self.entry: Entry | None = None
        self.hits = 0

    def get(self, source: torch.Tensor, owner: Any) -> Any | None:
        """The value kept for this very ``source`` tensor, if ``owner`` would compute the same."""
        e = self.entry
        if e is None or e.source is not source or e.version != _version(source):
            return None
        if not e.same(owner):
            return None
        self.hits += 1
        return e.value

    def put(self, source: torch.Tensor, same: Callable[[Any], bool], value: Any) -> None:
        """Keep ``value``, computed from ``source``; ``same(other)``: would ``other`` give it."""
        self.entry = Entry(source, _version(source), same, value)


def _version(t: torch.Tensor) -> int:
    """How often ``t`` was changed in place (-1 for an inference-mode tensor).

    An inference tensor, every prediction path's input, keeps no count; no member changes
    its input.
    """
    return -1 if t.is_inference() else t._version


_SCOPE: ContextVar[Scope | None] = ContextVar("isamap_shared_forward", default=None)


@contextlib.contextmanager
def shared_forward() -> Iterator[Scope | None]:
    """A scope for one joined forward (None where sharing is off or the forward is compiled)."""
    if torch.compiler.is_compiling() or is_off(os.environ.get(SHARED_ENV)):
        yield None
        return
    made = Scope()
    token = _SCOPE.set(made)
    try:
        yield made
    finally:
        _SCOPE.reset(token)


def scope() -> Scope | None:
    """The scope of the joined forward running now, or None."""
    if torch.compiler.is_compiling():
        return None
    return _SCOPE.get()
