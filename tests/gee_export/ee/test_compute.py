"""EECU estimates, tiers, and the EECU the service reports for batch tasks."""

from __future__ import annotations

import pytest

from contract.bands import DEFAULT_IMAGE_BANDS
from contract.grid import Grid
from contract.regions import get_region
from core.errors import ConfigError
from gee_export.ee.compute import (
    EECU_S_PER_MEGAPIXEL,
    EECU_S_PER_REQUEST,
    estimate,
    tier_needed,
)
from gee_export.ee.plan import format_plan, make_plan
from gee_export.ee.session import operation_status


def test_estimate_is_the_stated_assumption_times_the_work():
    est = estimate(1000, 1000 * 128 * 128)
    per = EECU_S_PER_REQUEST + EECU_S_PER_MEGAPIXEL * 128 * 128 / 1e6
    assert est.eecu_s_per_request == pytest.approx(per)
    assert est.eecu_hours == pytest.approx(1000 * per / 3600)


@pytest.mark.parametrize(("hours", "tier"), [
    (10, "Community"), (150, "Community"), (151, "Contributor"), (1000, "Contributor"),
    (5000, "Partner"), (200_000, "commercial")])
def test_the_tier_is_the_smallest_allowance_that_holds_the_job(hours, tier):
    assert tier in tier_needed(hours)


def test_the_assumption_can_be_set_from_a_real_run(monkeypatch):
    monkeypatch.setenv("ISAMAP_EECU_S_PER_MPX", "40")
    assert estimate(1, 1e6).eecu_s_per_request == pytest.approx(EECU_S_PER_REQUEST + 40)
    monkeypatch.setenv("ISAMAP_EECU_S_PER_MPX", "-1")
    with pytest.raises(ConfigError, match="ISAMAP_EECU_S_PER_MPX"):
        estimate(1, 1e6)


def test_export_plans_print_compute_tier_and_assumption():
    region = get_region("wuhan")
    grid = Grid("EPSG:32650", 200000.0, 3400000.0, 1008, 848)
    pixels = make_plan(region, grid, ("2019-06",), DEFAULT_IMAGE_BANDS, "worldcover", None,
                       "pixels", "gs://b/p", 16)
    assert pixels.compute.requests == pixels.requests
    assert pixels.compute.pixels_per_request == 128 * 128
    text = format_plan(pixels)
    assert "EECU-hours: Community (150 EECU-h a month)" in text
    assert "EECU-s per request of 0.0164 Mpx" in text
    assert pixels.to_dict()["compute"]["tier"].startswith("Community")
    tasks = make_plan(region, grid, ("2019-06",), DEFAULT_IMAGE_BANDS, "worldcover", None,
                      "tasks", "gs://b/p", 16, patches_per_tile=5)
    assert tasks.compute.requests == tasks.tasks
    assert tasks.compute.pixels_per_request * tasks.tasks == 1008 * 848
    assert "EECU-s per task" in format_plan(tasks)


def test_batch_eecu_is_read_from_the_operation_metadata():
    done = operation_status({"name": "projects/p/operations/ABC", "done": True, "metadata": {
        "state": "SUCCEEDED", "batchEecuUsageSeconds": 1234.5, "description": "t"}})
    running = operation_status({"name": "projects/p/operations/DEF",
                                "metadata": {"state": "RUNNING"}})
    assert done["eecu_seconds"] == 1234.5 and "eecu_seconds" not in running


def test_task_plans_assume_two_batch_tasks_at_once():
    from gee_export.ee.tasks import CONCURRENT_BATCH_TASKS, TASK_MINUTES, tasks_hours

    assert CONCURRENT_BATCH_TASKS == 2
    assert tasks_hours(6) == pytest.approx(3 * TASK_MINUTES / 60)
    assert tasks_hours(7) == pytest.approx(4 * TASK_MINUTES / 60)
    region = get_region("wuhan")
    grid = Grid("EPSG:32650", 200000.0, 3400000.0, 1008, 848)
    tasks = make_plan(region, grid, ("2019-06",), DEFAULT_IMAGE_BANDS, "worldcover", None,
                      "tasks", "gs://b/p", 16, patches_per_tile=5)
    assert tasks.hours_estimate == pytest.approx(tasks_hours(tasks.tasks))
    assert "about 2 batch tasks of a project at once" in format_plan(tasks)


def test_plans_say_what_is_measured_and_what_is_estimated():
    """computePixels answers carry no EECU figure: a plan says its requests are estimated,
    and one model prices requests and tasks (tasks carry no per-request overhead)."""
    region = get_region("wuhan")
    grid = Grid("EPSG:32650", 200000.0, 3400000.0, 1008, 848)
    pixels = make_plan(region, grid, ("2019-06",), DEFAULT_IMAGE_BANDS, "worldcover", None,
                       "pixels", "gs://b/p", 16)
    assert ("computePixels answers carry no EECU: requests are counted at this estimate until "
            "the run's first profiled requests") in format_plan(pixels)
    tasks = make_plan(region, grid, ("2019-06",), DEFAULT_IMAGE_BANDS, "worldcover", None,
                      "tasks", "gs://b/p", 16, patches_per_tile=5)
    assert "each finished task reports its EECU (batchEecuUsageSeconds)" in format_plan(tasks)
    per_mpx = tasks.compute.rate.per_mpx
    assert tasks.compute.eecu_s_per_request == pytest.approx(
        per_mpx * tasks.compute.pixels_per_request / 1e6)  # the same price per pixel
    assert pixels.compute.eecu_s_per_request == pytest.approx(
        EECU_S_PER_REQUEST + per_mpx * 128 * 128 / 1e6)
    assert pixels.to_dict()["compute"]["measured"] is False


def test_a_tasks_report_gives_the_measured_rate():
    from gee_export.ee.compute import measured_rate

    assert measured_rate(0.0, 0.0, 0) is None
    rate = measured_rate(90.0, 3e6, 2)
    assert rate.per_mpx == pytest.approx(30.0) and rate.measured and rate.per_request == 0
    assert rate.source == "measured: 2 batch task(s) reported 90.0 EECU-s for 3.0 Mpx"
