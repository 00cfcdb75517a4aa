"""The prediction stack's batch export: one status call per poll, reported EECU kept."""

from __future__ import annotations

import json

import pytest

from contract.grid import Grid
from gee_export.ee.prediction_stack import export_prediction_stack
from testing.fake_server import StackTransport
from tests.support.mapping import session_for, write_month_stack
from tests.support.rasters import BANDS, smooth_stack


class Metered(StackTransport):
    """Tasks report the EECU they used; every status call is recorded."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.status_calls: list[list[str]] = []

    def task_status(self, task_ids):
        self.status_calls.append(list(task_ids))
        return [{**s, "eecu_seconds": 90.0} if s["state"] == "COMPLETED" else s
                for s in super().task_status(task_ids)]


def test_one_status_call_per_poll_and_at_resume_and_eecu_recorded(
        ee_offline, tmp_path, gcs_emulator, gcs_bucket):
    ee = ee_offline
    stack = write_month_stack(tmp_path, smooth_stack(300, 300))
    grid = Grid(stack.grid.crs, stack.grid.x0, stack.grid.y0, 300, 300)
    out = f"gs://{gcs_bucket}/stacks"
    first = Metered(stack, gcs_client=gcs_emulator.client(), task_bands=BANDS)
    image = ee.Image.constant([0] * len(BANDS)).rename(list(BANDS))
    done = export_prediction_stack(session_for(first), image, grid, BANDS, out, "s",
                                   tile_px=256, progress=False)
    assert done.tiles == 4 and done.tasks_started == 4
    assert first.status_calls == [sorted(first.tasks)]  # the 4 tasks in one call
    bucket = gcs_emulator.client().bucket(gcs_bucket)
    eecu = json.loads(bucket.blob("stacks/s/eecu.json").download_as_bytes())
    assert sorted(eecu.values()) == [90.0] * 4

    for name in ("tile_000000_000000", "tile_000256_000256"):  # two tiles lost
        bucket.blob(f"stacks/s/{name}.tif").delete()
    again = Metered(stack, gcs_client=gcs_emulator.client(), task_bands=BANDS)
    export_prediction_stack(session_for(again), image, grid, BANDS, out, "s", tile_px=256,
                            progress=False)
    saved = json.loads(bucket.blob("stacks/s/tasks.json").download_as_bytes())
    assert len(again.status_calls) == 2  # the saved ids at resume, then one poll
    assert len(again.status_calls[0]) == 2  # both saved ids of the lost tiles, one call
    assert again.status_calls[1] == sorted(again.tasks)
    assert set(saved.values()) >= set(again.tasks)


def test_an_s1_only_date_asks_nothing_of_sentinel_2(ee_http):
    """The S1-only export still sent the S2 clear-count request (an EECU cost for nothing):
    the export now takes its windows from the map's rule, ``composite_windows``."""
    import ee

    from gee_export.ee.prediction_stack import DateRecipe, composite_windows
    from gee_export.ee.recipe import EERecipe
    from gee_export.ee.sentinel2 import month_window
    from gee_export.ee.session import EESession, EETransport, RetryPolicy
    from tests.support.sources import where

    session = EESession("offline", transport=EETransport(ee, "offline"), sleep=lambda s: None,
                        seed=0, retry=RetryPolicy(max_attempts=2))
    region = ee.Geometry.Rectangle([114.2, 30.5, 114.25, 30.55])
    ee_http.compute_result = 4  # the month's Sentinel-1 scenes (and clear counts)
    date = composite_windows(session, region, "r", DateRecipe(
        EERecipe(bands=("VV", "VH")), None, month_window("2019-06")))
    asked = [r.body for r in ee_http.calls("POST", "value:compute")]
    assert len(asked) == 1 and "COPERNICUS/S1_GRD" in str(asked[0])
    assert "S2_SR" not in str(asked[0]) and date.s2_window == month_window("2019-06")
    composite_windows(session, region, "r", DateRecipe(
        EERecipe(bands=("B2", "VV")), None, month_window("2019-06")))
    assert len(ee_http.calls("POST", "value:compute")) == 3  # S2 clear count, S1 scenes
    # one owner: the export and the map choose a date's windows through composite_windows
    assert set(where(r"choose_window\(")) == {"gee_export/ee/prediction_stack.py",
                                             "gee_export/ee/sentinel2.py"}


def test_a_series_month_without_scenes_is_refused_naming_it(ee_http):
    """A series stack's earlier month with no Sentinel-2 scene (an empty collection's median
    has no band: the export and the map failed server-side mid-run): composite_windows counts
    each month and sensor the bands reach, in one request, and refuses naming the month."""
    import json

    import ee

    from contract.bands import stack_series_bands
    from core.errors import EmptyCompositeError
    from gee_export.ee.prediction_stack import DateRecipe, composite_windows
    from gee_export.ee.recipe import EERecipe
    from gee_export.ee.sentinel2 import month_window
    from gee_export.ee.session import EESession, EETransport, RetryPolicy

    session = EESession("offline", transport=EETransport(ee, "offline"), sleep=lambda s: None,
                        seed=0, retry=RetryPolicy(max_attempts=2))
    region = ee.Geometry.Rectangle([114.2, 30.5, 114.25, 30.55])
    bands = stack_series_bands(("B2", "VV"), 3)
    counts = [5, 6, 4, 6]  # (months before, sensor) in order: (1, S1), (1, S2), (2, S1), (2, S2)

    def answer(body):  # the own month's counts, then the series' fewest, then each
        text = json.dumps(body)
        if "2019-04-01" not in text:
            return 4
        return min(counts) if "Reducer.min" in text else list(counts)

    ee_http.compute_result = answer
    date = composite_windows(session, region, "r", DateRecipe(
        EERecipe(bands=bands), None, month_window("2019-06")))
    assert date.s2_window == month_window("2019-06")
    asked = [json.dumps(r.body) for r in ee_http.calls("POST", "value:compute")]
    assert len(asked) == 3  # S2 clear count, S1 scenes, the series' months' fewest
    for start in ("2019-05-01", "2019-04-01"):
        assert start in asked[2] and "COPERNICUS/S1_GRD" in asked[2] and "S2_SR" in asked[2]
    counts[3] = 0
    with pytest.raises(EmptyCompositeError, match=r"no Sentinel-2 scene .* in 2019-04, which "
                       r"the series stack of 2019-06 reads \(2 month\(s\) before it\)") as e:
        composite_windows(session, region, "r", DateRecipe(
            EERecipe(bands=bands), None, month_window("2019-06")))
    assert "\n" not in str(e.value) and len(ee_http.calls("POST", "value:compute")) == 7


def test_a_series_count_answered_with_nothing_is_refused_in_one_line(ee_http):
    """The second count of the earlier months (each month's, asked when the fewest is none)
    answered null raised a TypeError in ``zip``; it is refused as the fewest's null is, as
    a month without scenes, naming the months. The months and sensors counted are the
    composites the stack is built of (one owner, ``recipe.sentinel_composites_of``)."""
    import ee

    from contract.bands import stack_series_bands
    from core.errors import EmptyCompositeError
    from gee_export.ee.prediction_stack import DateRecipe, composite_windows
    from gee_export.ee.recipe import EERecipe, sentinel_composites_of
    from gee_export.ee.sentinel2 import month_window
    from gee_export.ee.session import EESession, EETransport, RetryPolicy
    from tests.support.sources import where

    session = EESession("offline", transport=EETransport(ee, "offline"), sleep=lambda s: None,
                        seed=0, retry=RetryPolicy(max_attempts=2))
    region = ee.Geometry.Rectangle([114.2, 30.5, 114.25, 30.55])
    bands = stack_series_bands(("B2", "VV"), 3)
    ee_http.compute_result = lambda body: 4 if "2019-04-01" not in json.dumps(body) else None
    with pytest.raises(EmptyCompositeError, match=r"no Sentinel-1/2 scene count over region "
                       r"'r' for 2019-04, 2019-05, which the series stack of 2019-06 reads; "
                       r"choose another month") as e:
        composite_windows(session, region, "r", DateRecipe(
            EERecipe(bands=bands), None, month_window("2019-06")))
    assert "\n" not in str(e.value) and len(ee_http.calls("POST", "value:compute")) == 4
    assert sentinel_composites_of(bands) == {
        (0, "S2"): ("B2",), (0, "S1"): ("VV",), (1, "S2"): ("B2",), (1, "S1"): ("VV",),
        (2, "S2"): ("B2",), (2, "S1"): ("VV",)}
    # one owner of which (months before, sensor) composites the bands need
    grouped = {path for path in where(r"\.months_before, ") if path.startswith("gee_export/")}
    assert grouped == {"gee_export/ee/recipe.py"}
