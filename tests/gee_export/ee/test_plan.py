"""The dry-run plan: pure arithmetic on the grid and the service limits."""

from __future__ import annotations

import pytest

from contract.bands import DEFAULT_IMAGE_BANDS
from contract.grid import Grid
from contract.regions import get_region
from contract.splits import assign_splits
from gee_export.ee.plan import choose_method, format_plan, make_plan


def test_plan_numbers():
    region = get_region("wuhan")
    grid = Grid("EPSG:32650", 200000.0, 3400000.0, 1008, 848)  # 12 x 10 patch positions
    plan = make_plan(region, grid, ("2019-06", "2019-07"), DEFAULT_IMAGE_BANDS, "worldcover",
                     4, "pixels", "gs://b/p", 16)
    kept = len(assign_splits(grid))
    assert plan.positions == 2 * 120 and plan.patches == 2 * kept
    assert plan.requests_per_patch == 2  # stack + fine label
    assert plan.requests == 2 * 2 * kept
    assert plan.bytes_per_patch == 128 * 128 * 7 * 4 + 512 * 512 * 4
    assert plan.tasks == 0
    tasks = make_plan(region, grid, ("2019-06",), DEFAULT_IMAGE_BANDS, "worldcover", None,
                      "tasks", "gs://b/p", 16, patches_per_tile=5)
    assert tasks.tiles == 3 * 2 and tasks.tasks == 6 and tasks.requests == 0
    assert tasks.tile_pixels % 256 == 0
    text = format_plan(tasks)
    assert "6 Export.image.toCloudStorage tasks" in text and "3,000" in text


def test_an_area_of_more_positions_than_one_export_holds_is_refused_before_the_split():
    """A dry run of a near-global box grew to 18 GB over 8 minutes and had to be killed (a
    new user's walk): the split of every position was built before anything was said."""
    import time

    import pytest

    from contract.splits import MAX_POSITIONS
    from core.errors import ConfigError

    side = 80 * int(MAX_POSITIONS ** 0.5 + 2) + 48  # a square of just over the bound
    grid = Grid("EPSG:6933", 0.0, 0.0, side, side)
    assert grid.patch_count > MAX_POSITIONS
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"patch positions .*; one dataset holds at most "
                                          r"10,000,000: export it in parts"):
        make_plan(get_region("wuhan"), grid, ("2019-06",), DEFAULT_IMAGE_BANDS,
                  "worldcover", None, "pixels", "gs://b/p", 16)
    assert time.perf_counter() - started < 5.0


def test_the_documented_region_of_dataflow_exports_is_under_the_bound():
    """docs/beam.md's Yangtze River Economic Belt plan (6,129,497 positions at EPSG:6933) was
    refused by a first bound of 5,000,000 (a new user's walk)."""
    from contract.splits import MAX_POSITIONS

    grid = Grid.from_lonlat_bounds(get_region("yreb").bbox, "EPSG:6933")
    assert grid.patch_count == 6_129_497 < MAX_POSITIONS


def test_a_real_export_of_such_an_area_is_refused_before_any_work_too(tmp_path, capsys):
    """The bound sat in the plan alone, which a real run without --max-eecu-hours never
    makes: its split of the whole grid came first (a review)."""
    from cli.export import main

    out = tmp_path / "world"
    assert main(["--bbox=-180,-80,180,80", "--months", "2019-06", "--project", "p",
                 "--out", str(out), "-q"]) == 2
    assert "one dataset holds at most 10,000,000: export it in parts" in capsys.readouterr().err
    assert not out.exists()


def test_choose_method():
    small = Grid("EPSG:32650", 0.0, 0.0, 1000, 1000)  # 100 km2
    big = Grid("EPSG:32650", 0.0, 0.0, 30000, 30000)  # 90,000 km2
    assert choose_method("auto", small, "gs://b") == "pixels"
    assert choose_method("auto", big, "gs://b") == "tasks"
    assert choose_method("auto", big, "/data") == "pixels"  # tasks need a bucket
    assert choose_method("tasks", small, "gs://b") == "tasks"


def test_durations_are_readable_for_small_and_large_exports():
    from gee_export.ee.plan import format_duration

    assert format_duration(2.345) == "2.3 h"
    assert format_duration(0.25) == "15 min"
    assert format_duration(0.0001) == "1 s"
    assert format_duration(0.005) == "18 s"


@pytest.mark.slow
def test_the_province_plan_on_the_beam_page_is_what_the_dry_run_prints(capsys):
    """docs/beam.md quotes a dry run's plan; the console block is what the command prints
    (its 'assumed' line had gone stale and the 'measured' line was missing: a docs walk)."""
    from cli.export import main
    from tests.support.page_text import page

    command = ("--bbox 108.35,29.03,116.13,33.28 --months 2019-06 --method pixels "
               "--workers 40 --max-eecu-hours 150 --out gs://my-bucket/isamap/hubei --dry-run")
    assert main(command.split()) == 0
    printed = capsys.readouterr().out.strip()
    text = page("beam.md")
    start = text.index("Export plan (dry run", text.index("--out gs://my-bucket/isamap/hubei"))
    assert text[start:text.index("```", start)].strip() == printed


def test_the_dry_runs_split_advice_says_it_counts_positions_not_patches():
    """The plan cannot read Earth Engine's pixels, so its advice counts grid positions; it said
    'positions' alone, read as patches a run would write (positions without data give none)."""
    grid = Grid("EPSG:32650", 200000.0, 3400000.0, 448, 368)  # 5 x 4 positions
    plan = make_plan(get_region("wuhan"), grid, ("2019-06",), DEFAULT_IMAGE_BANDS,
                     "worldcover", None, "pixels", "gs://b/p", 16)
    assert plan.split_advice is not None and "use --split-block" in plan.split_advice
    assert "these are grid positions, not patches: a position without data gives none" \
        in plan.split_advice
    assert "WARNING" in format_plan(plan)
