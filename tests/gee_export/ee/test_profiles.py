"""computePixels priced from a sample of the requests' computation profiles.

The fake pixel server answers a profiled request with a profile id and a ``getInfo`` of
``Profile.getProfiles`` (built with the real earthengine-api) with the profiler's table of
what those requests were metered, which depends on their pixels.
"""

from __future__ import annotations

import logging

import pytest

from core.storage import open_store
from gee_export.ee.budget import ComputeBudget
from gee_export.ee.export import export_pixels
from gee_export.ee.profiles import (
    PROFILE_BATCH,
    PROFILE_FIRST,
    PixelCost,
    ProfileFormatError,
    ProfileMeter,
    profile_eecu_seconds,
)
from testing.fake_profiles import profile_table
from testing.fake_quota import EecuAccount
from testing.fake_server import StackTransport
from tests.support.killed_export import MONTH, export_job, session_for

# the synthetic stack and its recipe images are built once (conftest)
pytestmark = pytest.mark.xdist_group("ee_stack")


# The layout ee.profilePrinting prints (numbers made up), with a Code Editor-like CurrMem
# column and a row whose EECU is not reported.
TABLE = """ EECU·s CurrMem PeakMem Count  Description
  0.412    1.2M     59k     6  Algorithm Image.reduceRegions
  0.187      0     571k    86  Loading assets: projects/some/asset
      -      0     200     72  Reprojecting pixels from GEOGCS["WGS 84"] to EPSG:32650
  0.001      0     9.0k     3  (plumbing)
"""


def test_the_profile_table_is_read_by_its_eecu_seconds_column():
    assert profile_eecu_seconds(TABLE) == pytest.approx(0.6)
    assert profile_eecu_seconds(profile_table(1.25, 4096, 2)) == pytest.approx(1.25, abs=1e-3)
    ascii_header = TABLE.replace("EECU·s", "EECU-s")  # geetools' parser names it so
    assert profile_eecu_seconds(ascii_header) == pytest.approx(0.6)


@pytest.mark.parametrize("text", [
    "", "no profile here", {"EECU-s": [0.1]},
    " EECU·s PeakMem Count  Description\n",
    " EECU·s PeakMem Count  Description\n  lots    59k     6  Algorithm Image.select\n",
])
def test_a_profile_without_readable_eecu_seconds_is_not_read(text):
    with pytest.raises(ProfileFormatError):
        profile_eecu_seconds(text)


def test_the_first_requests_are_profiled_then_one_in_every():
    meter = ProfileMeter(first=3, every=4)
    picked = [n for n in range(15) if meter.wants(100)]
    assert picked == [0, 1, 2, 6, 10, 14]
    assert meter.sent == 15 and meter.mean_pixels() == 100
    meter.give_up("unreadable")
    assert not meter.wants(100)


def test_what_was_measured_is_kept_and_anything_unreadable_is_nothing():
    cost = PixelCost(3.0, 2e6, 4)
    assert PixelCost.from_dict(cost.to_dict()) == cost
    assert cost.rate().per_mpx == pytest.approx(1.5) and cost.rate().measured
    assert PixelCost.from_dict(None) == PixelCost() and PixelCost().rate() is None
    assert PixelCost.from_dict({"eecu_s": "x"}) == PixelCost()


def export(transport, root, local_stack, recipe_images, budget):
    image, fine = recipe_images
    return export_pixels(session_for(transport), image, export_job(local_stack.grid), root,
                         fine_label=fine, workers=2, progress=False, budget=budget)


@pytest.mark.slow
def test_profiled_requests_price_the_export_and_a_rerun_starts_from_what_they_measured(
        tmp_path, local_stack, recipe_images, caplog):
    """computePixels was priced at the plan's estimate only: now its profiles price it."""
    account = EecuAccount(per_mpx_s=10.0, per_request_s=0.02)  # 2.5 x isamap's assumption
    transport = StackTransport(local_stack, recipe=recipe_images, account=account)
    transport.profiles.faults = [503]  # the first read is retried, as every call
    root = str(tmp_path / "ds")
    budget = ComputeBudget(1.0, 0.05, "the plan's estimate")
    with caplog.at_level(logging.INFO):
        done = export(transport, root, local_stack, recipe_images, budget)
    sent = done.requests
    costs = transport.profiles.costs
    assert len(costs) == PROFILE_FIRST + (sent - PROFILE_FIRST) // 50
    reads = transport.profiles.reads
    assert reads[0] == reads[1] == sorted(costs)[:PROFILE_BATCH]  # a 503, then read
    assert sum(len(r) for r in reads[1:]) == len(costs)  # every profile read once
    want = sum(c for c, _ in costs.values()) / sum(p for _, p in costs.values()) * 1e6
    state = open_store(root).read_bytes(f"state/{MONTH}/profiled.json")
    measured = PixelCost.from_dict(__import__("json").loads(state))
    assert measured.requests == len(costs)
    assert measured.rate().per_mpx == pytest.approx(want, rel=1e-3)
    assert budget.source.startswith(f"measured from {len(costs)} profiled request(s)")
    # the run is counted at the measured rate, near what the service metered for it
    assert budget.spent_s == pytest.approx(account.spent_today_s, rel=0.15)
    assert f"measured from {PROFILE_BATCH} profiled request(s)" in caplog.text
    again = ComputeBudget(1.0, 0.05, "the plan's estimate")
    served = len(transport.served)
    export(transport, root, local_stack, recipe_images, again)  # nothing left to fetch
    assert len(transport.served) == served
    assert again.source == budget.source and again.per_request == pytest.approx(
        measured.eecu_s / measured.requests)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["answer", "refused"])
def test_an_unreadable_profile_leaves_the_estimate_and_says_so_once(
        tmp_path, local_stack, recipe_images, caplog, fault):
    transport = StackTransport(local_stack, recipe=recipe_images)
    if fault == "answer":
        transport.profiles.answer = "Profile: 12 operations, 0.3 s"  # no EECU-s column
    else:  # refused on every attempt the session's retry loop makes (session_for: 4)
        transport.profiles.faults = [400] * 4
    budget = ComputeBudget(1.0, 0.05, "the plan's estimate")
    root = str(tmp_path / "ds")
    done = export(transport, root, local_stack, recipe_images, budget)
    assert done.written > 0 and len(transport.profiles.reads) == (1 if fault == "answer" else 4)
    assert caplog.text.count("computePixels profiles could not be read") == 1
    assert "the plan's estimate" in caplog.text.split("could not be read")[1]
    assert budget.source == "the plan's estimate"
    assert budget.spent_s == pytest.approx(0.05 * done.requests)
    assert not open_store(root).exists(f"state/{MONTH}/profiled.json")


def test_a_profile_refused_once_is_read_again_as_the_official_client_reads_it(
        tmp_path, local_stack, recipe_images, caplog):
    """One refused ``getProfiles`` read (a profile the service has not stored yet: a 400)
    ended the profiling for the run; earthengine-api's ``ee.profilePrinting`` retries the
    read after any error, and so does the session's one retry loop now."""
    transport = StackTransport(local_stack, recipe=recipe_images)
    transport.profiles.faults = [400, 404]
    budget = ComputeBudget(1.0, 0.05, "the plan's estimate")
    with caplog.at_level(logging.INFO):
        export(transport, str(tmp_path / "ds"), local_stack, recipe_images, budget)
    reads = transport.profiles.reads
    assert len(reads) == 3 and reads[0] == reads[1] == reads[2]  # refused twice, then read
    assert "could not be read" not in caplog.text
    assert budget.source.startswith("measured from")


class _NoProfileIds(StackTransport):
    """A server whose profiled answers carry no profile header (a proxy dropped it)."""

    def compute_pixels(self, request, profile=None):
        return super().compute_pixels(request)


def test_answers_without_a_profile_id_say_once_that_the_estimate_stays(
        tmp_path, local_stack, recipe_images, caplog):
    """Answers that carried no profile id left the guard on the plan's estimate without a
    word: the run says so once."""
    transport = _NoProfileIds(local_stack, recipe=recipe_images)
    budget = ComputeBudget(1.0, 0.05, "the plan's estimate")
    with caplog.at_level(logging.INFO):
        done = export(transport, str(tmp_path / "ds"), local_stack, recipe_images, budget)
    assert done.written > 0 and not transport.profiles.reads
    assert caplog.text.count("carried no profile id") == 1
    line = next(r.getMessage() for r in caplog.records if "no profile id" in r.getMessage())
    assert line.endswith("counts requests at the plan's estimate until answers carry one")
    assert budget.source == "the plan's estimate"
