"""Export orchestration end to end: a transport serving the local backend's real stack.

The Earth Engine graph is the real recipe (built offline); only the server is replaced, by
testing/fake_server.py, which answers computePixels and export tasks from the stack
GeoTIFFs that gee_export.local built from a synthetic scene. Patches go to the GCS emulator and
to a local folder through the real storage seam.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest
import rasterio

from contract.bands import DEFAULT_IMAGE_BANDS
from contract.dataset import DatasetSpec, read_index, read_manifest
from contract.grid import patch_id
from contract.splits import assign_splits
from core.errors import ConfigError, EarthEngineError, QuotaError
from core.storage import TEMP_MARK, open_store, temporary_name
from gee_export.ee.export import ExportJob, export_pixels
from gee_export.ee.pixels import Limits
from gee_export.ee.tasks import export_tasks, file_dimensions, plan_tiles, tile_task
from testing.fake_server import HttpError, StackTransport
from tests.support import REPO_ROOT
from tests.support.export_dataset import (
    check_dataset,
    expected_ids,
)
from tests.support.killed_export import (
    MONTH,
    export_job,
    session_for,
    stack_spec,
)

REPO = REPO_ROOT

# the synthetic stack, its recipe images and the reference export are built once (conftest)
pytestmark = pytest.mark.xdist_group("ee_stack")


def job_for(stack, **kw) -> ExportJob:
    return export_job(stack.grid, **kw)


@pytest.mark.parametrize("where", ["gcs", "local"])
def test_pixels_export_end_to_end(where, request, tmp_path, local_stack, recipe_images):
    """Into a bucket, and into a local folder: the local run is the shared reference export
    (conftest's ``reference_export``, this very call), rerun here over a copy of it."""
    image, fine = recipe_images
    if where == "gcs":
        root = f"gs://{request.getfixturevalue('gcs_bucket')}/wuhan"
        transport = StackTransport(local_stack, recipe=recipe_images)
        summary = export_pixels(session_for(transport), image, job_for(local_stack), root,
                                fine_label=fine, workers=4, progress=False)
    else:
        reference, summary, transport = request.getfixturevalue("reference_export")
        root = str(shutil.copytree(reference, tmp_path / "dataset"))
    records = check_dataset(root, local_stack, expect_ids=expected_ids(local_stack, {"r0_c0"}))
    assert summary.written == len(records) > 0
    assert summary.invalid == 1  # r0_c0 has an unlabelled corner: 80 % valid < 90 %
    assert summary.written + summary.invalid == summary.candidates
    # one request for every band and the label, plus one for the fine label, per patch
    assert summary.requests == len(transport.served) == 2 * summary.candidates
    assert {b for _, b in transport.served} == {(*DEFAULT_IMAGE_BANDS, "label"), ("label",)}
    again = export_pixels(session_for(transport), image, job_for(local_stack), root,
                          fine_label=fine, workers=4, progress=False)
    assert again.written == 0 and len(transport.served) == 2 * summary.candidates  # no refetch


def test_a_shared_quota_with_faults_loses_no_patch(tmp_path, local_stack, recipe_images,
                                                   monkeypatch, caplog):
    """The fake server's shared-quota mode: a cap of 1-3 requests moving every 50 ms, 429
    above it, 5xx and time-outs; the adaptive export still writes every patch, and states
    the latency it measured on its first requests."""
    import logging

    from gee_export.ee import export
    from gee_export.ee.session import EESession, RetryPolicy
    from testing.fake_quota import QuotaModel, SharedQuota

    monkeypatch.setattr(export, "MEASURE_AFTER", 6)  # the run has 18 requests in all
    caplog.set_level(logging.INFO, logger="gee_export.ee.export")

    image, fine = recipe_images
    quota = SharedQuota(QuotaModel(cap_low=1, cap_high=3, period_s=0.05, latency_s=0.002,
                                   reject_s=0.0002, error_rate=0.1, timeout_rate=0.05,
                                   timeout_s=0.01, seed=1))
    session = EESession(transport=StackTransport(local_stack, recipe=recipe_images, quota=quota),
                        seed=0, retry=RetryPolicy(max_attempts=6, base_delay=0.002,
                                                  max_delay=0.05))
    root = str(tmp_path / "quota")
    summary = export_pixels(session, image, job_for(local_stack), root, fine_label=fine,
                            workers=8, progress=False)
    check_dataset(root, local_stack, expect_ids=expected_ids(local_stack, {"r0_c0"}))
    assert summary.requests == quota.served == 2 * summary.candidates
    assert quota.throttled > 0 and quota.peak <= 3 and session.limit.ceiling == 8
    assert re.search(r"measured \d+\.\d+ s per request over the first \d+; \d+ requests left "
                     r"at \d+ in flight take about", caplog.text)


@pytest.mark.slow
def test_worker_failure_flushes_progress_and_resumes(tmp_path, local_stack, recipe_images):
    """An exception in a worker (Ctrl-C, a fatal error) still leaves index and state written."""
    root = str(tmp_path / "dataset")
    image, fine = recipe_images
    killer = StackTransport(local_stack, fail_every=7, fault=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        export_pixels(session_for(killer), image, job_for(local_stack), root, fine_label=fine,
                      workers=2, progress=False)
    store = open_store(root)
    done_first = {r["id"] for r in read_index(store)}
    assert 0 < len(done_first) < 9
    assert read_manifest(store)["complete"][MONTH] is False
    invalid_first = set(json.loads(store.read_bytes(f"state/{MONTH}/invalid.json")))
    transport = StackTransport(local_stack, recipe=recipe_images)
    summary = export_pixels(session_for(transport), image, job_for(local_stack), root,
                            fine_label=fine, workers=2, progress=False)
    records = check_dataset(root, local_stack, expect_ids=expected_ids(local_stack, {"r0_c0"}))
    assert done_first <= {r["id"] for r in records}
    fetched = {key for key, bands in transport.served if bands != ("label",)}
    assert len(fetched) == summary.candidates - len(done_first) - len(invalid_first)
    assert summary.already_done == len(done_first)


def position_of(key: str, grid) -> tuple[int, int]:
    """Patch (row, col) of a StackTransport.served key ('west,north,resolution')."""
    west, north, _ = (float(v) for v in key.split(","))
    col, row = (west - grid.x0) / grid.resolution, (grid.y0 - north) / grid.resolution
    assert col % grid.stride == 0 and row % grid.stride == 0
    return int(row) // grid.stride, int(col) // grid.stride


def patch_of(name: str) -> str:
    """Patch id of a patch file name: r1_c2.tif, r1_c2_label.tif, r1_c2_label_x2.tif."""
    return "_".join(name.removesuffix(".tif").split("_")[:2])


def kill_export(tmp_path, local_stack, root, kill_after: int, flush_seconds: float) -> set[str]:
    """Run the export in a subprocess that SIGKILLs itself; check what it left; finished ids."""
    spec = tmp_path / f"spec_{kill_after}.json"
    spec.write_text(json.dumps({"stack": stack_spec(local_stack), "root": str(root),
                                "kill_after": kill_after, "flush_seconds": flush_seconds}))
    proc = subprocess.run([sys.executable, "-m", "tests.support.killed_export", str(spec)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    patches = root / "patches" / MONTH
    for path in patches.glob("*.tif"):  # final names hold whole GeoTIFFs only
        if TEMP_MARK in path.name:  # a temporary the kill cut short (the resume removes it)
            continue
        with rasterio.open(path) as src:
            src.read()
    manifest = root / "manifest.json"
    assert not manifest.exists() or json.loads(manifest.read_text())["complete"][MONTH] is False
    # a patch is finished when its image (written last, carrying the record) exists
    return {p.name[:-4] for p in patches.glob("r*_c*.tif") if "_label" not in p.name}


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates(tmp_path, local_stack, recipe_images):
    """Two real kills (SIGKILL: no finally, no flush), then a resume in-process.

    The first run flushes its index after every patch; the second never flushes, so the
    patches it finished are on disk but missing from the (stale) index, as after a power cut.
    The resume must leave whole files only, no temporaries and a complete index, and fetch
    only the positions still missing, each once.
    """
    root = tmp_path / "dataset"
    done_a = kill_export(tmp_path, local_stack, root, kill_after=11, flush_seconds=0.0)
    assert (root / "index.jsonl").exists() and 0 < len(done_a) < 8
    indexed = {r["id"] for r in read_index(str(root))}
    done_b = kill_export(tmp_path, local_stack, root, kill_after=7, flush_seconds=3600.0)
    assert done_a < done_b and len(done_b) < 8, "the second kill came too early or too late"
    assert {r["id"] for r in read_index(str(root))} == indexed  # stale: run B never flushed
    kept = {p.name: p.stat().st_mtime_ns for p in (root / "patches" / MONTH).glob("*.tif")
            if patch_of(p.name) in done_b}
    state = root / "state" / MONTH / "invalid.json"
    invalid = set(json.loads(state.read_text())) if state.exists() else set()
    assert invalid <= {"r0_c0"}
    # a kill inside a flush leaves the temporary of index.jsonl, manifest.json or the state
    # beside it (seen in about 1 run in 6 here); make sure one of each is there
    for rel in ("index.jsonl", "manifest.json", f"state/{MONTH}/invalid.json"):
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary_name(target).write_bytes(b"{\"half")  # the name the atomic writer uses

    image, fine = recipe_images
    transport = StackTransport(local_stack, recipe=recipe_images)
    summary = export_pixels(session_for(transport), image, job_for(local_stack), str(root),
                            fine_label=fine, workers=2, progress=False)
    assert not [p for p in root.rglob("*") if TEMP_MARK in p.name]
    check_dataset(str(root), local_stack, expect_ids=expected_ids(local_stack, {"r0_c0"}))
    assert summary.already_done == len(done_b)
    assert summary.written == summary.candidates - 1 - len(done_b)
    patches = root / "patches" / MONTH
    assert {n: (patches / n).stat().st_mtime_ns for n in kept} == kept  # not written again
    fetched = [position_of(key, local_stack.grid) for key, bands in transport.served
               if bands != ("label",)]
    assert len(fetched) == len(set(fetched)), "a position was fetched twice"
    assert set(fetched) == {p for p in assign_splits(local_stack.grid)
                            if patch_id(*p) not in done_b | invalid}


def test_retries_then_clear_errors(tmp_path, local_stack, recipe_images):
    image, fine = recipe_images
    flaky = StackTransport(local_stack, recipe=recipe_images, faults=[
        HttpError(429, "Too Many Requests"), HttpError(500, "Internal"), TimeoutError("slow")])
    delays: list[float] = []
    summary = export_pixels(session_for(flaky, delays=delays), image, job_for(local_stack),
                            str(tmp_path / "a"), fine_label=fine, workers=1, progress=False)
    assert summary.retries == 3 and len(delays) == 3
    assert all(0 <= d <= 0.5 * 2 ** i for i, d in enumerate(delays))  # backoff with jitter
    check_dataset(str(tmp_path / "a"), local_stack)

    quota = StackTransport(local_stack, fail_every=1, fault=HttpError(429, "Too Many Requests"))
    # under the adaptive limit 429s are flow control until it is down to one request; then
    # the budget's four attempts count
    with pytest.raises(QuotaError, match=r"after \d+ attempts.*--workers"):
        export_pixels(session_for(quota, attempts=4), image, job_for(local_stack),
                      str(tmp_path / "b"), fine_label=fine, workers=2, progress=False)
    assert quota.calls > 4
    broken = StackTransport(local_stack, fail_every=1, fault=HttpError(503, "Unavailable"))
    with pytest.raises(EarthEngineError, match="kept failing after 3 attempts"):
        export_pixels(session_for(broken, attempts=3), image, job_for(local_stack),
                      str(tmp_path / "c"), fine_label=fine, workers=1, progress=False)
    fatal = StackTransport(local_stack, faults=[ValueError("Image.select: band 'B9' missing")])
    with pytest.raises(EarthEngineError, match="B9"):
        export_pixels(session_for(fatal), image, job_for(local_stack), str(tmp_path / "d"),
                      fine_label=fine, workers=1, progress=False)
    # a non-transient error is not retried, and the patch queued behind it never starts: its
    # worker learns of the failure before it takes that patch (not a race with the main thread)
    assert fatal.calls == 1


@pytest.mark.slow
def test_request_splitting_gives_identical_patches(tmp_path, local_stack, recipe_images):
    image, fine = recipe_images
    transport = StackTransport(local_stack, recipe=recipe_images)
    # 64-pixel sides: 4 tiles of the 128 px patch, 16 of the 256 px fine label
    limits = Limits(max_bytes=128 * 128 * 4 * 3, max_side=64, max_bands=1024)
    summary = export_pixels(session_for(transport), image, job_for(local_stack),
                            str(tmp_path / "split"), fine_label=fine, workers=3, limits=limits,
                            progress=False)
    check_dataset(str(tmp_path / "split"), local_stack)
    assert summary.requests == summary.candidates * (4 + 16)


def test_workers_bounded(tmp_path, local_stack, recipe_images):
    with pytest.raises(ConfigError, match="between 1 and 40"):
        export_pixels(session_for(StackTransport(local_stack)), recipe_images[0],
                      job_for(local_stack), str(tmp_path), fine_label=recipe_images[1],
                      workers=41, progress=False)


def test_a_job_holds_the_dataset_spec_and_only_its_month(local_stack):
    """The dataset's parameters are defined once (DatasetSpec), never repeated by the job."""
    job = job_for(local_stack)
    assert isinstance(job.spec, DatasetSpec) and job.spec.backend == "ee"
    assert {f.name for f in fields(ExportJob)} == {"spec", "month", "sources"}
    with pytest.raises(ConfigError, match="fine_scale 2 but no fine_label"):
        export_pixels(session_for(StackTransport(local_stack)), None, job, "unused")


@pytest.mark.slow
def test_tasks_export_end_to_end(gcs_emulator, gcs_bucket, local_stack, recipe_images):
    image, fine = recipe_images
    root = f"gs://{gcs_bucket}/big"
    transport = StackTransport(local_stack, gcs_client=gcs_emulator.client(),
                               task_bands=(*DEFAULT_IMAGE_BANDS, "label"))
    summary = export_tasks(session_for(transport), image, job_for(local_stack), root,
                           fine_label=fine, patches_per_tile=2, max_pending=3,
                           poll_seconds=0, progress=False)
    tiles = plan_tiles(local_stack.grid, 2)
    assert len(tiles) == 4 and len(transport.tasks) == 8  # image + fine label per tile
    # every split position but r0_c0 (80 % valid < 90 %) is in the index, from every tile
    records = check_dataset(root, local_stack, expect_ids=expected_ids(local_stack, {"r0_c0"}))
    assert summary.invalid == 1
    assert summary.written == len(records) == summary.candidates - 1
    store = open_store(root)
    assert {f"tiles/{MONTH}/{t.name}.tif" for t in tiles} <= set(store.list(f"tiles/{MONTH}/"))
    again = export_tasks(session_for(transport), image, job_for(local_stack), root,
                         fine_label=fine, patches_per_tile=2, poll_seconds=0, progress=False)
    assert again.written == 0 and len(transport.tasks) == 8  # nothing re-exported


@pytest.mark.slow
def test_max_eecu_hours_counts_what_finished_tasks_report(gcs_emulator, gcs_bucket, local_stack,
                                                         recipe_images):
    from core.errors import ComputeBudgetError
    from gee_export.ee.budget import ComputeBudget

    image, fine = recipe_images
    root = f"gs://{gcs_bucket}/bounded"
    # tasks report 30 EECU-s each where 10 are assumed: at the assumption all four tiles
    # (two tasks each) would fit 100 EECU-s, at the reported figure only the first two
    transport = StackTransport(local_stack, gcs_client=gcs_emulator.client(),
                               task_bands=(*DEFAULT_IMAGE_BANDS, "label"), task_eecu_s=30.0)

    def bounded(seconds: float):
        return export_tasks(session_for(transport), image, job_for(local_stack), root,
                            fine_label=fine, patches_per_tile=2, max_pending=3, poll_seconds=0,
                            progress=False, budget=ComputeBudget(seconds / 3600.0, 10.0))

    with pytest.raises(ComputeBudgetError, match="2019-06 has 2 of 4 tiles left"):
        bounded(100.0)
    assert len(transport.tasks) == 4
    bounded(1000.0)  # a higher bound resumes: the other two tiles only
    assert len(transport.tasks) == 8
    check_dataset(root, local_stack, expect_ids=expected_ids(local_stack, {"r0_c0"}))


def test_failed_task_surfaces_its_message(gcs_emulator, gcs_bucket, local_stack,
                                          recipe_images):
    transport = StackTransport(local_stack, gcs_client=gcs_emulator.client(),
                               task_error="User memory limit exceeded.")
    with pytest.raises(EarthEngineError, match=r"tile_r0_c0 \(2019-06\) ended FAILED: User "
                                               "memory limit exceeded"):
        export_tasks(session_for(transport), recipe_images[0], job_for(local_stack),
                     f"gs://{gcs_bucket}/x", fine_label=recipe_images[1], patches_per_tile=2,
                     poll_seconds=0, progress=False)
    state = open_store(f"gs://{gcs_bucket}/x").read_bytes("state/2019-06/tasks.json")
    assert b"tile_r0_c0" in state  # task ids are kept for the next run


def test_tasks_need_gcs(tmp_path, local_stack, recipe_images):
    with pytest.raises(ConfigError, match="gs://"):
        export_tasks(session_for(StackTransport(local_stack)), recipe_images[0],
                     job_for(local_stack), str(tmp_path), fine_label=recipe_images[1])


def test_tile_task_config(ee_offline, local_stack):
    grid = local_stack.grid
    tile = plan_tiles(grid, 2)[3]
    task = tile_task(ee_offline.Image(1).toFloat(), grid, tile.window, "bkt", "p/tiles/t",
                     "isamap_tile")
    cfg = task.config
    opts = cfg["fileExportOptions"]
    assert opts["fileFormat"] == "GEO_TIFF"
    assert opts["cloudStorageDestination"] == {"bucket": "bkt", "filenamePrefix": "p/tiles/t"}
    dims = opts["geoTiffOptions"]["tileDimensions"]
    assert dims["width"] == dims["height"] == file_dimensions(tile.window) == 256
    assert dims["width"] % 256 == 0 and dims["width"] >= tile.window.width
    assert opts["geoTiffOptions"]["skipEmptyFiles"] is True
    assert opts["geoTiffOptions"]["cloudOptimized"] is True
    from tests.support import ee_graph

    (rp,) = ee_graph.find(cfg["expression"], "Image.reproject")
    west, _, _, north = grid.window_bounds(tile.window)
    assert ee_graph.constant(rp["arguments"]["crsTransform"]) == [10.0, 0.0, west, 0.0, -10.0,
                                                                  north]
    assert task.state == "UNSUBMITTED"  # built, never started


def test_tile_task_description_is_one_the_service_accepts(ee_offline, local_stack):
    tile = plan_tiles(local_stack.grid, 2)[0]
    task = tile_task(ee_offline.Image(1).toFloat(), local_stack.grid, tile.window, "bkt", "p",
                     f"isamap_São Paulo_2019-06_{tile.name} (fine x2)")
    assert task.config["description"] == "isamap_Sao_Paulo_2019-06_tile_r0_c0_fine_x2"


@pytest.mark.parametrize("message", ["User memory limit exceeded.",
                                     "Computation timed out."])
def test_a_window_too_big_to_compute_is_fetched_as_halves(local_stack, recipe_images, message):
    from contract.grid import Window
    from gee_export.ee.export import fetch_window

    image, _ = recipe_images
    grid, bands = local_stack.grid, (*local_stack.bands, "label")

    class Limited(StackTransport):  # the service computes at most 150 px a side
        refused = 0

        def compute_pixels(self, request):
            dims = request["grid"]["dimensions"]
            if max(dims["width"], dims["height"]) > 150:
                self.refused += 1
                raise HttpError(400, message)
            return super().compute_pixels(request)

    window = Window(row_off=0, col_off=0, height=288, width=288)
    whole, one = fetch_window(session_for(StackTransport(local_stack, recipe=recipe_images)),
                              image, grid, window, bands)
    limited = Limited(local_stack, recipe=recipe_images)
    halves, requests = fetch_window(session_for(limited), image, grid, window, bands)
    np.testing.assert_array_equal(halves, whole)
    assert one == 1 and requests == 1 + 2 + 4  # refused, refused halves, four quarters
    assert len(limited.served) == 4
    # a time-out may be load: retried once, then halved; a memory error never repeats
    assert limited.refused == 3 * (2 if "timed out" in message else 1)
    big = Window(row_off=0, col_off=0, height=100, width=200)  # under 256 px: not halved
    with pytest.raises(EarthEngineError, match=message.rstrip(".")):
        fetch_window(session_for(Limited(local_stack, recipe=recipe_images)), image, grid,
                     big, bands)


@pytest.mark.slow
def test_max_eecu_hours_stops_a_run_resumably_and_a_higher_bound_finishes_it(
        tmp_path, local_stack, recipe_images, reference_export, caplog):
    """The bound stops the run before its estimate passes it; a higher one resumes to the
    same dataset as an uninterrupted run (the shared reference export), and a stopped run
    exits 1 with one line."""
    from core.commands import run_command
    from core.errors import ComputeBudgetError
    from gee_export.ee.budget import ComputeBudget

    image, fine = recipe_images
    reference, full, _ = reference_export
    whole = str(reference)
    per_request = 0.5  # EECU-seconds charged per request
    bound_h = 10 * per_request / 3600.0  # ten requests: five patches of two requests
    root = str(tmp_path / "bounded")

    class Unprofiled(StackTransport):  # requests stay at the estimate (test_profiles.py)
        def compute_pixels(self, request):
            return super().compute_pixels(request)

    def bounded(hours: float):
        return export_pixels(session_for(Unprofiled(local_stack, recipe=recipe_images)),
                             image, job_for(local_stack), root, fine_label=fine, workers=2,
                             progress=False, budget=ComputeBudget(hours, per_request))

    with pytest.raises(ComputeBudgetError, match="higher --max-eecu-hours") as info:
        bounded(bound_h)
    assert info.value.exit_code == 1
    stopped = read_index(open_store(root))
    assert 0 < len(stopped) <= 5 and not read_manifest(open_store(root))["complete"][MONTH]
    # the same bound again: earlier runs' spending counts, it stops at once, one line, exit 1
    assert run_command("isamap-export", lambda: bounded(bound_h)) == 1
    assert len(read_index(open_store(root))) == len(stopped)
    assert "error: stopped before passing --max-eecu-hours" in caplog.text  # one line
    assert "Traceback" not in caplog.text
    done = bounded(1.0)  # a higher bound resumes
    assert done.already_done == len(stopped) and done.written == full.written - len(stopped)
    records = check_dataset(root, local_stack, expect_ids=expected_ids(local_stack, {"r0_c0"}))
    assert records == read_index(open_store(whole))
    for rec in records:  # byte for byte the uninterrupted run's patches
        for key in ("image", "label", "label_fine"):
            assert open_store(root).read_bytes(rec[key]) == open_store(whole).read_bytes(rec[key])


def test_the_split_advice_after_a_month_counts_its_patches_and_says_what_was_not_read(
        tmp_path, local_stack, recipe_images):
    """After an Earth Engine month whose split came out empty, the advice counted every grid
    position, data or not (the summary carried no positions; the local backend's counts its
    patches). It now counts the patches written, and since the positions its split borders
    dropped were never fetched, says the counts are a lower bound and why."""
    from contract.splits import split_advice

    image, fine = recipe_images
    job = job_for(local_stack, seed=0, block=2)  # 5 of the 9 positions kept, no test split
    root = str(tmp_path / "dataset")
    summary = export_pixels(session_for(StackTransport(local_stack, recipe=recipe_images)),
                            image, job, root, fine_label=fine, workers=4, progress=False)
    assert summary.per_split["test"] == 0 and summary.candidates == 5
    written = tuple(sorted((r["row"], r["col"]) for r in read_index(root)))
    assert summary.written_positions == written and len(written) == 4  # r0_c0 invalid
    assert len(summary.unread_positions) == 4  # dropped at split borders, never fetched
    assert not set(summary.unread_positions) & set(assign_splits(job.spec.grid, block=2))
    assert "written_positions" not in summary.to_dict()
    advice = split_advice(job.spec.grid, summary.per_split, seed=0, block=2,
                          counted=summary.written_positions,
                          unread=len(summary.unread_positions))
    assert advice is not None and "positions this run dropped at split borders were not " \
        "read, so whether they hold data is unknown" in advice
    assert "4 of the 9 positions are known to hold patches" in advice or "at least" in advice
