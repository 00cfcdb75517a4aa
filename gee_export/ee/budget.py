"""``--max-eecu-hours``: the one way a command bounds the Earth Engine compute it spends.

Both commands that make Earth Engine compute (``isamap-export`` and ``isamap-map``) add the
option with :func:`add_eecu_argument`, print it in their plan with :func:`format_budget` and
build the run's :class:`ComputeBudget` with :func:`compute_budget` from the plan's estimate.
The budget is charged where the work is sent: every ``computePixels`` request through the
session that carries it (:class:`gee_export.ee.session.EESession`), at the plan's estimate per
request until the run's profiled requests measured a price (:mod:`gee_export.ee.profiles`),
then at that price (:meth:`ComputeBudget.revalue`); every batch task through the task loop
(:mod:`gee_export.ee.task_loop`), at what Earth Engine reported for finished tasks and, for
the others, at a price calibrated from those reports.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import ComputeBudgetError, ConfigError
from core.parsers import budget, budget_problem
from core.storage import LocalStore
from gee_export.ee.compute import ComputeEstimate
from gee_export.ee.profiles import PixelCost, ProfileMeter

HELP = ("stop (resumably) before the job's Earth Engine compute passes this many EECU-hours: "
        "computePixels requests count at the plan's estimate until the run's profiled "
        "requests measured their price, batch tasks at the EECU Earth Engine reports for them")


def add_eecu_argument(group: argparse._ActionsContainer) -> None:
    """Add ``--max-eecu-hours`` to a command's parser (export and map alike)."""
    group.add_argument("--max-eecu-hours", type=budget, metavar="HOURS", help=HELP)


def check_max_eecu_hours(max_hours: float) -> None:
    """Refuse a ``--max-eecu-hours`` that bounds nothing (:func:`core.parsers.budget_problem`).

    The command line's type refuses it first; a library caller is told the same rule.

    Raises:
        ConfigError: ``max_hours`` is no budget: zero, negative, inf, nan or too large to count.
    """
    problem = budget_problem(max_hours)
    if problem:
        raise ConfigError(f"--max-eecu-hours {problem}")


class ComputeBudget:
    """``--max-eecu-hours``: what a job may spend, what it spent, and when to stop.

    Spending is counted per request (or task) at ``eecu_s_per_request`` until a measured
    figure replaces it: :meth:`recount` sets it from what finished batch tasks reported, and
    :meth:`reprice` sets the price of the work not yet measured from those reports. What
    earlier runs of the same dataset spent counts too (the patches they wrote or found
    invalid at the estimate, the EECU their tasks reported), so the bound covers the
    dataset, not one invocation: a run stopped by it resumes only with a higher bound.
    Thread-safe: request threads charge it. A caller that charged a unit of work up front
    (an export's patch, at its planned requests) runs it :meth:`prepaid`, so the requests
    the session charges inside come out of that prepayment first.

    Args:
        max_hours: the bound in EECU-hours.
        eecu_s_per_request: the estimate charged per request (or task) not yet measured.
        source: what the estimate rests on, as messages say it.
    """

    def __init__(self, max_hours: float, eecu_s_per_request: float,
                 source: str = "the plan's estimate") -> None:
        check_max_eecu_hours(max_hours)
        self.max_hours = max_hours
        self.per_request = eecu_s_per_request
        self.source = source
        self.spent_s = 0.0
        self.units = 0.0  # requests charged at a price per request (revalued when measured)
        self._lock = threading.Lock()
        self._credit = threading.local()  # requests this thread prepaid and has not sent

    @property
    def bound_s(self) -> float:
        return self.max_hours * 3600.0

    def allows(self, requests: float = 1) -> bool:
        """Whether ``requests`` more requests stay within the bound."""
        with self._lock:
            return self.spent_s + requests * self.per_request <= self.bound_s

    def charge(self, requests: float = 1, eecu_s: float | None = None) -> None:
        """Count ``requests`` requests at the estimate, or ``eecu_s`` measured EECU-seconds."""
        with self._lock:
            if eecu_s is None:
                self.units += requests
            self.spent_s += requests * self.per_request if eecu_s is None else eecu_s

    def recount(self, measured_s: float, unmeasured: float) -> None:
        """Set the spending to ``measured_s`` reported EECU-s plus ``unmeasured`` estimates."""
        with self._lock:
            self.spent_s = measured_s + unmeasured * self.per_request

    def reprice(self, eecu_s_per_request: float, source: str) -> None:
        """Price the work not yet measured at ``eecu_s_per_request`` (a measured figure)."""
        with self._lock:
            self.per_request, self.source = eecu_s_per_request, source

    def revalue(self, eecu_s_per_request: float, source: str) -> None:
        """Price every request counted so far, and those to come, at a measured price.

        Requests were charged at the price of their moment (prepaid ones included); they are
        counted again at ``eecu_s_per_request`` (the difference is added).
        """
        with self._lock:
            self.spent_s += self.units * (eecu_s_per_request - self.per_request)
            self.per_request, self.source = eecu_s_per_request, source

    @contextmanager
    def prepaid(self, requests: float) -> Iterator[None]:
        """Requests this thread sends inside are already charged, up to ``requests``."""
        self._credit.left = requests
        try:
            yield
        finally:
            self._credit.left = 0

    def take(self, requests: float) -> bool:
        """Charge ``requests`` requests if they stay within the bound; whether they did.

        Requests the thread prepaid (:meth:`prepaid`) are taken from the prepayment first.
        """
        credit = getattr(self._credit, "left", 0)
        if credit:
            used = min(credit, requests)
            self._credit.left, requests = credit - used, requests - used
            if not requests:
                return True
        with self._lock:
            cost = requests * self.per_request
            if self.spent_s + cost > self.bound_s:
                return False
            self.spent_s += cost
            self.units += requests
            return True

    def describe(self) -> str:
        """One line for the run's log: the bound, the spending so far and the price."""
        return (f"--max-eecu-hours {self.max_hours:g}: {self.spent_s / 3600.0:.3g} EECU-hours "
                f"counted so far; {self.per_request:.3g} EECU-s per request or task "
                f"({self.source})")

    def stopped(self, what: str) -> ComputeBudgetError:
        """The error of a run stopped by the bound, saying how to resume."""
        return ComputeBudgetError(
            f"stopped before passing --max-eecu-hours {self.max_hours:g}: {what}, about "
            f"{self.spent_s / 3600.0:.3g} EECU-hours spent by the runs of this output so far "
            f"({self.per_request:.3g} EECU-s per request or task: {self.source}). Finished "
            "work is kept: run the same command with a higher "
            "--max-eecu-hours to go on")


@contextmanager
def kept_in(budget: ComputeBudget | None, path: Path,
            meter: ProfileMeter | None = None) -> Iterator[None]:
    """Count what earlier runs recorded at ``path`` (JSON), and record the total at the end.

    For outputs whose files do not say what they cost (a map's strips): the bound then covers
    the output, not one invocation, as a dataset's finished patches make it cover the dataset.
    What the runs' profiled requests measured (``meter``) is kept there too, and a re-run
    starts from it. The record is rewritten atomically when the run ends, also when it
    stopped or failed.
    """
    if budget is None and meter is None:
        yield
        return
    saved = _record(path)
    if meter is not None and not meter.measured.requests:
        meter.measured = PixelCost.from_dict(saved.get("profiled"))
    if budget is not None:
        budget.charge(eecu_s=float(saved.get("eecu_s", 0.0)))
        price = meter.price() if meter is not None else None
        if price is not None:  # priced at once at what was measured
            budget.revalue(*price)
    try:
        yield
    finally:
        record: dict[str, object] = {k: v for k, v in saved.items()}
        if budget is not None:
            record.update(eecu_s=round(budget.spent_s, 3), counted=budget.source)
        if meter is not None:
            record["profiled"] = meter.measured.to_dict()
        path.parent.mkdir(parents=True, exist_ok=True)
        LocalStore(path.parent).write_bytes(path.name, json.dumps(record).encode())


def _record(path: Path) -> dict:
    """What earlier runs recorded at ``path`` (empty when none); a damaged record is refused."""
    if not path.exists():
        return {}
    try:
        saved = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        saved = None
    if not isinstance(saved, dict):
        raise ConfigError(f"{path} is not the compute record isamap writes (damaged or edited): "
                          "delete it to count this output's compute from zero, or restore it")
    return saved


def compute_budget(max_hours: float | None, est: ComputeEstimate | None) -> ComputeBudget | None:
    """The run's budget at the plan's estimate per request or task (None: no bound)."""
    if max_hours is None:
        return None
    if est is None:
        raise ConfigError("--max-eecu-hours bounds Earth Engine compute, and this run sends "
                          "Earth Engine nothing to compute: leave it out")
    return ComputeBudget(max_hours, est.eecu_s_per_request,
                         f"the plan's estimate, {est.rate.source}")


def format_budget(max_hours: float | None, est: ComputeEstimate | None, unit: str,
                  width: int = 10) -> list[str]:
    """The plan's budget line: whether the whole job fits, or where the run stops."""
    if max_hours is None or est is None:
        return []
    per = est.eecu_s_per_request
    units = int(max_hours * 3600.0 / per) if per else 0
    total = est.requests
    fits = units >= total
    return [f"  {'budget':<{width}}--max-eecu-hours {max_hours:g}: "
            + (f"the whole job fits ({total:,} {unit})" if fits else
               f"the run stops after about {units:,} of {total:,} {unit}, resumable with a "
               "higher bound")]
