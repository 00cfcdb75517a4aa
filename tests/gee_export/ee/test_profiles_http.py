"""computePixels profiles through the real earthengine-api client over HTTP.

``ee_http`` answers the client's requests as the REST service would
(tests/support/ee_http.py): ``image:computePixels`` with the bytes of the requested format, a
profile id header when the request asks for profiling, and ``value:compute`` of
``Profile.getProfiles`` with the profiler's table of what those requests were metered. Nothing
between :class:`EETransport` and the HTTP layer is patched: the header the client sends, the
hook it calls and the table it returns are the real client's.
"""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from rasterio.io import MemoryFile

from core.errors import EarthEngineError
from gee_export.ee.profiles import ProfileMeter
from gee_export.ee.session import HIGH_VOLUME_URL, STANDARD_URL, EESession, EETransport
from testing.fake_profiles import ROWS
from tests.support.ee_http import urllib_opener

EE_PROJECT = "offline"  # the project the ee_http fixture initialises the client with
PROFILING = "x-earth-engine-computation-profiling"
TAG = "isamap-profiles-http"
# request windows (width, height) of one run: their cost depends on their pixels
SIZES = ((8, 8), (16, 8), (4, 4), (32, 16), (8, 8), (12, 10), (20, 20), (6, 6))


def initialise(ee, transport, url: str) -> None:
    """``ee.Initialize`` on ``url`` through the stand-in (as ``EESession.initialize`` names it)."""
    previous = urllib.request._opener
    urllib.request.install_opener(urllib_opener())  # the deprecated-asset catalogue
    try:
        ee.Initialize(None, project=EE_PROJECT, http_transport=transport, opt_url=url)
    finally:
        urllib.request.install_opener(previous)


def pixel_request(ee, width: int, height: int, file_format: str = "NUMPY_NDARRAY") -> dict:
    image = ee.Image.constant([1, 2]).rename(["B4", "B8"])
    return {"expression": image, "fileFormat": file_format, "bandIds": ["B4", "B8"],
            "grid": {"dimensions": {"width": width, "height": height},
                     "affineTransform": {"scaleX": 10.0, "shearX": 0.0, "translateX": 500000.0,
                                         "shearY": 0.0, "scaleY": -10.0,
                                         "translateY": 3400000.0},
                     "crsCode": "EPSG:32650"}}


def expected_band(k: int, width: int, height: int) -> np.ndarray:
    """What the stand-in computes for band ``k``: 1000 k plus the pixel's row-major index."""
    return (np.arange(width * height).reshape(height, width) + 1000 * k).astype(np.float32)


@pytest.mark.parametrize("url", [STANDARD_URL, HIGH_VOLUME_URL])
def test_profiled_requests_over_http_price_the_run_at_what_the_service_metered(
        ee_http, _ee_http_transport, url):
    import ee

    initialise(ee, _ee_http_transport, url)
    session = EESession(EE_PROJECT, transport=EETransport(ee, EE_PROJECT, TAG),
                        sleep=lambda s: None)
    meter = session.meter = ProfileMeter(first=2, every=3, batch=2)

    for width, height in SIZES:
        pixels = session.compute_pixels(pixel_request(ee, width, height))
        assert pixels.dtype.names == ("B4", "B8") and pixels.shape == (height, width)
        assert np.array_equal(pixels["B8"], expected_band(1, width, height))
    session.read_profiles(flush=True)

    sent = ee_http.calls("POST", "image:computePixels")
    assert {r.host for r in sent} == {url.removeprefix("https://")}
    assert [r.body["fileFormat"] for r in sent] == ["NPY"] * len(SIZES)
    assert all(r.body["workloadTag"] == TAG for r in sent)
    # the header on the sampled requests only (the first two, then one in three), absent
    # elsewhere; each profiled answer carried an id
    assert [i for i, r in enumerate(sent) if PROFILING in r.headers] == [0, 1, 4, 7]
    assert all(r.headers[PROFILING] == "1" for r in sent if PROFILING in r.headers)
    metered = ee_http.compute.metered
    ids = [m.profile_id for m in metered if m.profile_id is not None]
    assert len(ids) == 4 and len(set(ids)) == 4
    # the ids the client handed to the hook reached the meter and were read back in batches,
    # by getProfiles requests that are not profiled themselves
    assert ee_http.compute.profiles.reads == [ids[:2], ids[2:]]
    reads = ee_http.calls("POST", "value:compute")
    assert len(reads) == 2 and not any(PROFILING in r.headers for r in reads)
    assert meter.failed == ""

    profiled = [m for m in metered if m.profile_id is not None]
    eecu_s = sum(m.eecu_s for m in profiled)
    mpx = sum(m.pixels for m in profiled) / 1e6
    table_rounding = 0.5e-4 * len(ROWS) * 2  # two tables, each row to four decimals
    assert meter.measured.requests == 4 and meter.measured.pixels == mpx * 1e6
    assert meter.measured.eecu_s == pytest.approx(eecu_s, abs=table_rounding)
    rate = meter.measured.rate()
    assert rate is not None and rate.measured
    assert rate.per_mpx == pytest.approx(eecu_s / mpx, abs=table_rounding / mpx)
    assert meter.sent == len(SIZES)


def test_profiling_in_one_thread_leaves_the_requests_of_the_others_alone(ee_http):
    """The client's profiling hook is per thread: the session's workers share one client."""
    import ee

    session = EESession(EE_PROJECT, transport=EETransport(ee, EE_PROJECT, TAG),
                        sleep=lambda s: None)
    recorded: list[tuple[str, int]] = []

    class RecordingMeter(ProfileMeter):
        def record(self, profile_id: str, pixels: int) -> None:
            recorded.append((profile_id, pixels))
            super().record(profile_id, pixels)

    meter = session.meter = RecordingMeter(first=3, every=4, batch=3)
    sizes = [(4 + n, 4) for n in range(24)]  # every request's pixel count differs
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda size: session.compute_pixels(pixel_request(ee, *size)), sizes))
    session.read_profiles(flush=True)

    sent = ee_http.calls("POST", "image:computePixels")
    headed = sorted(r.body["grid"]["dimensions"]["width"] * 4 for r in sent
                    if PROFILING in r.headers)
    profiled = sorted(m.pixels for m in ee_http.compute.metered if m.profile_id is not None)
    assert len(headed) == 3 + 21 // 4 and headed == profiled
    # each id was recorded with the pixels of the request whose answer carried it
    assert len(recorded) == len(headed) and all(
        ee_http.compute.profiles.costs[profile_id][1] == pixels for profile_id, pixels in recorded)
    assert meter.measured.requests == len(headed) and meter.measured.pixels == sum(headed)
    assert sorted(i for ids in ee_http.compute.profiles.reads for i in ids) == sorted(
        m.profile_id for m in ee_http.compute.metered if m.profile_id is not None)


def test_geotiff_pixels_arrive_on_the_requested_grid_with_their_profile(ee_http):
    import ee

    ids: list[str] = []
    transport = EETransport(ee, EE_PROJECT, TAG)
    data = transport.compute_pixels(pixel_request(ee, 6, 4, "GEO_TIFF"), profile=ids.append)

    (sent,) = ee_http.calls("POST", "image:computePixels")
    assert sent.body["fileFormat"] == "GEO_TIFF" and sent.headers[PROFILING] == "1"
    assert ids == [ee_http.compute.metered[0].profile_id] and ids[0]
    with MemoryFile(data) as memory, memory.open() as tif:
        assert (tif.count, tif.width, tif.height) == (2, 6, 4)
        assert tif.crs.to_epsg() == 32650
        assert tuple(tif.transform)[:6] == (10.0, 0.0, 500000.0, 0.0, -10.0, 3400000.0)
        assert tif.descriptions == ("B4", "B8")
        assert np.array_equal(tif.read(2), expected_band(1, 6, 4))


def test_an_unprofiled_request_carries_no_header_and_an_unknown_format_is_refused(ee_http):
    import ee

    session = EESession(EE_PROJECT, transport=EETransport(ee, EE_PROJECT, TAG),
                        sleep=lambda s: None)
    session.compute_pixels(pixel_request(ee, 4, 4))  # no meter: nothing is profiled
    with pytest.raises(EarthEngineError, match="Unsupported file format 'PNG'"):
        session.compute_pixels(pixel_request(ee, 4, 4, "PNG"))

    sent = ee_http.calls("POST", "image:computePixels")
    assert len(sent) == 2 and not any(PROFILING in r.headers for r in sent)
    assert [m.profile_id for m in ee_http.compute.metered] == [None]  # the refusal: unmetered
    assert ee_http.calls("POST", "value:compute") == []
