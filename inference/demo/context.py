"""What the steps of ``isamap-demo`` share: the context, and when a step's work is stale.

Every step records what its inputs were (``.demo_state/<step>.json``) and redoes itself,
discarding its stale outputs, when they change (:func:`inputs_changed`, :func:`record_inputs`);
finished work is not redone, and its record is not rewritten either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.stack import StackPaths
from core.digest import files_sha256
from core.errors import ConfigError
from core.storage import atomic_write
from gee_export.local.synthetic import SyntheticScene


@dataclass
class DemoContext:
    """What the steps share: options in, outputs out (printed at the end)."""

    out: Path
    seed: int = 0
    size: int = 768
    workers: int = 2
    epochs: int = 15
    threads: int | None = None
    progress: bool = True  # tqdm bars (-q hides them)
    scene: SyntheticScene | None = None
    later: SyntheticScene | None = None
    model_file: Path | None = None
    stack: StackPaths | None = None
    map_class: Path | None = None  # the later date's class COG (what ``assess`` samples)
    change_map: Path | None = None  # the change COG between the two dates
    outputs: dict[str, Any] = field(default_factory=dict)

    def need_scene(self) -> SyntheticScene:
        if self.scene is None:
            raise ConfigError("the 'scene' step must run before this one")
        return self.scene

    def need_stack(self) -> StackPaths:
        if self.stack is None:
            raise ConfigError("the 'stack' step must run before this one")
        return self.stack


LATER_MONTH = "2021-06"  # the scene's second date: two years on, a few blocks built
LATER_GROWTH = 8  # new built-up blocks at the second date


def state_file(ctx: DemoContext, step: str) -> Path:
    return ctx.out / ".demo_state" / f"{step}.json"


def inputs_changed(ctx: DemoContext, step: str, inputs: dict[str, Any]) -> bool:
    """Whether ``step`` last ran on other inputs (a first run has nothing to discard)."""
    path = state_file(ctx, step)
    return path.exists() and json.loads(path.read_text()) != _jsonable(inputs)


def record_inputs(ctx: DemoContext, step: str, inputs: dict[str, Any]) -> None:
    path = state_file(ctx, step)
    if path.exists() and json.loads(path.read_text()) == _jsonable(inputs):
        return  # finished work is not redone, and its record is not rewritten either
    text = json.dumps(_jsonable(inputs), indent=1, sort_keys=True)
    atomic_write(path, lambda fh: fh.write(text.encode()))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def file_hash(*paths: str | Path | None) -> str:
    """Content hash of files (patches and models are small; stacks are hashed by content too)."""
    return files_sha256([p for p in paths if p and Path(p).exists()], 16)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically, unless the file already holds it."""
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    return path
