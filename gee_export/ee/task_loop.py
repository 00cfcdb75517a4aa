"""Batch tasks started, followed and paid for: one loop for the export's tiles and the map's stack.

Work comes as groups (a tile, whose stack and fine label are one task each); a group is handed
back (``on_ready``) once all its tasks finished or their outputs exist. Tasks are started while
fewer than ``max_pending`` are pending (Earth Engine refuses more than 3,000 per project) and
polled with one session call per poll (the session lists the project's operations in pages).
Task ids are kept in the job's state (``tasks``), so a re-run follows a task an earlier run
started (still running, or finished) instead of starting it again. A failed task stops the run
with Earth Engine's message.

Compute is accounted here: the EECU each finished task reported (``batchEecuUsageSeconds``) is
kept in the state (``eecu``, and the pixels it computed in ``eecu_pixels``), and once a task
reported, its figure prices the tasks left (:func:`gee_export.ee.compute.measured_rate`, per
million pixels): the run logs the calibrated total once, and a ``--max-eecu-hours`` budget
counts the reported figures plus the calibrated price of the tasks not yet reported, so no
group is started whose tasks would take the job past the bound.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import EarthEngineError
from gee_export.ee.budget import ComputeBudget
from gee_export.ee.compute import EecuRate, measured_rate
from gee_export.ee.session import EESession

log = logging.getLogger(__name__)

FINISHED = ("COMPLETED", "SUCCEEDED")
FAILED = ("FAILED", "CANCELLED", "CANCEL_REQUESTED")
LIVE = ("UNSUBMITTED", "READY", "PENDING", "RUNNING")


@dataclass(frozen=True)
class BatchTask:
    """One batch task of a group.

    Attributes:
        key: its name in the state (unique in the job).
        pixels: the output pixels it computes (its price).
        make: builds the task, not started (called only when it must be started).
        exists: whether its output is already there (then it is never started).
    """

    key: str
    pixels: int
    make: Callable[[], Any]
    exists: Callable[[], bool]


@dataclass(frozen=True)
class TaskGroup:
    """Tasks handed back together (``name``: the group's name in messages)."""

    name: str
    tasks: tuple[BatchTask, ...]


class TaskState(Protocol):
    """Where the job keeps what it must remember between runs (task ids, EECU reported)."""

    def read_state(self, name: str) -> Any: ...

    def write_state(self, name: str, value: Any) -> None: ...


@dataclass
class LoopOutcome:
    """What the loop did: groups left unstarted by the budget, tasks started, EECU reported."""

    left: int
    started: int
    eecu_s: float
    reported: int


def run_tasks(session: EESession, groups: Sequence[TaskGroup], state: TaskState, *,
              on_ready: Callable[[TaskGroup], None],
              failed: Callable[[TaskGroup, str, str], str],
              max_pending: int, poll_seconds: float, sleep: Callable[[float], None],
              budget: ComputeBudget | None = None,
              on_wait: Callable[[int], None] = lambda active: None) -> LoopOutcome:
    """Run ``groups`` to the end, or until the budget holds the next one back (see module doc).

    Args:
        session: the Earth Engine seam (starts tasks, reads their statuses).
        groups: the work, in the order to start it.
        state: the job's state (``tasks``, ``eecu`` and ``eecu_pixels`` are read and written).
        on_ready: called with each group once all its tasks finished.
        failed: the message of a run stopped by a group's failed task (group, state,
            Earth Engine's message).
        max_pending: most tasks pending at once.
        poll_seconds: wait between polls while nothing finished.
        sleep: the wait function (tests pass a no-op).
        budget: ``--max-eecu-hours`` (None: no bound).
        on_wait: called with the number of tasks running before each wait.
    """
    loop = _Loop(session, state, budget, [t for g in groups for t in g.tasks])
    queue, active = list(groups), list[TaskGroup]()
    try:
        while queue or active:
            while queue and loop.pending(active) < max_pending:
                if not loop.affordable(queue[0], queue):
                    return LoopOutcome(len(queue), loop.started, *loop.reported_totals())
                group = queue.pop(0)
                loop.start(group)
                active.append(group)
            statuses = loop.poll(active)
            ready = []
            for group in active:
                states = [loop.state_of(task, statuses) for task in group.tasks]
                for task, task_state in zip(group.tasks, states, strict=True):
                    if task_state in FAILED:
                        raise EarthEngineError(failed(group, task_state, str(statuses.get(
                            loop.task_ids.get(task.key, ""), {}).get("error_message",
                                                                     "no message"))))
                if all(s in FINISHED for s in states):
                    ready.append(group)
            for group in ready:
                active.remove(group)
                on_ready(group)
            if active and not ready:
                on_wait(loop.pending(active))
                sleep(poll_seconds)
    finally:
        loop.save()
    return LoopOutcome(0, loop.started, *loop.reported_totals())


class _Loop:
    """The loop's memory: task ids, reported EECU, and the price of what is not reported."""

    def __init__(self, session: EESession, state: TaskState, budget: ComputeBudget | None,
                 tasks: Sequence[BatchTask]) -> None:
        self.session, self.state, self.budget = session, state, budget
        self.task_ids: dict[str, str] = dict(state.read_state("tasks") or {})
        self.eecu: dict[str, float] = dict(state.read_state("eecu") or {})
        self.pixels: dict[str, int] = dict(state.read_state("eecu_pixels") or {})
        self.started = 0
        self.before = budget.spent_s if budget is not None else 0.0  # earlier months of the run
        self.calibrated = False
        self.sizes = {t.key: t.pixels for t in tasks}
        # tasks an earlier run started: one batched read, not one request per tile
        saved = sorted({self.task_ids[t.key] for t in tasks if t.key in self.task_ids})
        self.earlier = self.poll_ids(saved) if saved else {}

    def poll_ids(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        statuses = self.session.task_status(ids) if ids else []
        return {task_id: status for task_id, status in zip(ids, statuses, strict=True)}

    def pending(self, active: Sequence[TaskGroup]) -> int:
        return sum(1 for g in active for t in g.tasks if t.key in self.task_ids)

    def start(self, group: TaskGroup) -> None:
        for task in group.tasks:
            if task.exists():
                continue
            earlier = self.earlier.get(self.task_ids.get(task.key, ""), {}).get("state")
            if task.key in self.task_ids and earlier in (*LIVE, *FINISHED):
                continue  # started by an earlier run: follow it
            self.task_ids[task.key] = self.session.start_task(task.make())
            self.started += 1
        self.state.write_state("tasks", self.task_ids)

    def poll(self, active: Sequence[TaskGroup]) -> dict[str, dict[str, Any]]:
        """Statuses of the active groups' tasks (one session call); records reported EECU."""
        statuses = self.poll_ids([self.task_ids[t.key] for g in active for t in g.tasks
                                  if t.key in self.task_ids])
        for group in active:
            for task in group.tasks:
                status = statuses.get(self.task_ids.get(task.key, ""), {})
                if status.get("state") in FINISHED and "eecu_seconds" in status:
                    self.eecu[task.key] = float(status["eecu_seconds"])
                    self.pixels[task.key] = task.pixels
        return statuses

    def state_of(self, task: BatchTask, statuses: dict[str, dict[str, Any]]) -> str:
        if task.exists():
            return "COMPLETED"
        if task.key not in self.task_ids:
            return "UNKNOWN"
        return str(statuses.get(self.task_ids[task.key], {}).get("state", "UNKNOWN"))

    def rate(self) -> EecuRate | None:
        """The price per Mpx finished tasks reported (None before any did)."""
        return measured_rate(sum(self.eecu.values()), float(sum(self.pixels.values())),
                             len(self.eecu))

    def reported_totals(self) -> tuple[float, int]:
        return sum(self.eecu.values()), len(self.eecu)

    def affordable(self, group: TaskGroup, queue: Sequence[TaskGroup]) -> bool:
        """Whether the budget allows ``group``'s tasks (recounted from what was reported)."""
        rate = self.rate()
        if rate is not None and not self.calibrated:
            self.calibrated = True
            left = [t for g in queue for t in g.tasks if not t.exists()]
            log.info("%s: the %d task(s) left need about %.3g EECU-hours at this price "
                     "(ISAMAP_EECU_S_PER_MPX=%.3g plans later runs from it)", rate.source,
                     len(left), rate.cost_s(0, sum(t.pixels for t in left)) / 3600.0,
                     rate.per_mpx)
        if self.budget is None:
            return True
        unmeasured = [k for k in self.task_ids if k not in self.eecu]
        if rate is not None:
            mean_px = sum(self.sizes.get(k, 0) for k in self.sizes) / max(1, len(self.sizes))
            self.budget.reprice(rate.cost_s(0, mean_px), rate.source)
        self.budget.recount(self.before + sum(self.eecu.values()), len(unmeasured))
        return self.budget.allows(sum(1 for t in group.tasks if not t.exists()))

    def save(self) -> None:
        self.state.write_state("tasks", self.task_ids)
        self.state.write_state("eecu", self.eecu)
        self.state.write_state("eecu_pixels", self.pixels)
        if self.eecu:
            log.info("Earth Engine reports %.2f EECU-hours for %d finished tasks",
                     sum(self.eecu.values()) / 3600.0, len(self.eecu))
