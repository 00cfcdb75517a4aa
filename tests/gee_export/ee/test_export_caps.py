"""An export meets the project's compute caps and its own bound, as the service meters them.

The fake pixel server meters every request and task (:class:`testing.fake_quota.EecuAccount`):
a spent daily EECU-time quota refuses requests with the documented message, a spent monthly
allowance answers in restricted mode, and finished tasks report ``batchEecuUsageSeconds``.
"""

from __future__ import annotations

import logging

import pytest

from contract.dataset import read_index, read_manifest
from core.commands import run_command
from core.errors import ComputeBudgetError, QuotaError
from core.storage import open_store
from gee_export.ee.budget import ComputeBudget
from gee_export.ee.compute import assumed_rate
from gee_export.ee.export import export_pixels
from gee_export.ee.tasks import export_tasks, plan_tiles
from testing.fake_quota import EecuAccount
from testing.fake_server import StackTransport
from tests.support.export_dataset import check_dataset, expected_ids
from tests.support.killed_export import (
    MONTH,
    export_job,
    session_for,
)

# the synthetic stack and its recipe images are built once (conftest)
pytestmark = pytest.mark.xdist_group("ee_stack")


@pytest.mark.slow
@pytest.mark.parametrize(("cap", "account", "said"), [
    ("daily", EecuAccount(daily_quota_s=1.0), "daily Earth Engine quota is spent"),
])
def test_a_spent_cap_stops_the_export_in_one_line_and_the_same_command_resumes_after_it(
        tmp_path, local_stack, recipe_images, caplog, cap, account, said):
    """A spent daily cap was treated as congestion (66 refused requests in 24 s, then "lower
    --workers"): now the first refusal stops the run, saying when the cap resets."""
    image, fine = recipe_images
    root = str(tmp_path / cap)
    transport = StackTransport(local_stack, recipe=recipe_images, account=account)

    def export():
        return export_pixels(session_for(transport, attempts=5), image,
                             export_job(local_stack.grid), root, fine_label=fine, workers=2,
                             progress=False)

    with pytest.raises(QuotaError) as info:
        export()
    assert said in str(info.value) and "Run the same command again after the reset" in str(
        info.value)
    # at most one refusal per patch queued when the first came (2 x workers), none retried
    assert account.refused <= 4
    kept = read_index(open_store(root))
    assert kept and not read_manifest(open_store(root))["complete"][MONTH]
    assert run_command("isamap-export", export) == 1  # still spent: exit 1, one line
    assert "Traceback" not in caplog.text and "--workers" not in caplog.text
    account.new_day()
    account.daily_quota_s = account.monthly_allowance_s = None  # the reset (or a higher tier)
    served = len(transport.served)
    done = export()
    assert done.already_done == len(kept)
    assert len(transport.served) - served == 2 * done.written  # only the patches left
    check_dataset(root, local_stack, expect_ids=expected_ids(local_stack, {"r0_c0"}))


def test_task_reports_calibrate_the_price_of_the_tasks_left(gcs_emulator, gcs_bucket,
                                                            local_stack, recipe_images, caplog):
    """Tasks cost ten times the assumption: once they report it, the tasks left are priced at
    it, the run says so, and the bound stops the run where the measured price says."""
    image, fine = recipe_images
    account = EecuAccount(per_mpx_s=10 * assumed_rate().per_mpx)
    transport = StackTransport(local_stack, gcs_client=gcs_emulator.client(),
                               task_bands=(*recipe_images_bands(), "label"), account=account)
    tiles = plan_tiles(local_stack.grid, 2)
    mean_px = sum(t.window.width * t.window.height * 5 for t in tiles) / (2 * len(tiles))
    per_task = assumed_rate().cost_s(0, mean_px)  # the plan's price of a task (stack + x2 label)
    bound_h = 1.5 * 2 * len(tiles) * per_task / 3600.0  # the whole job fits at the assumption
    caplog.set_level(logging.INFO, logger="gee_export.ee.task_loop")
    with pytest.raises(ComputeBudgetError, match="2019-06 has 2 of 4 tiles left") as info:
        export_tasks(session_for(transport), image, export_job(local_stack.grid),
                     f"gs://{gcs_bucket}/calibrated", fine_label=fine, patches_per_tile=2,
                     max_pending=3, poll_seconds=0, progress=False,
                     budget=ComputeBudget(bound_h, per_task))
    assert "measured: 4 batch task(s) reported" in str(info.value)
    assert "ISAMAP_EECU_S_PER_MPX=40" in caplog.text
    assert len(transport.tasks) == 4


def recipe_images_bands() -> tuple[str, ...]:
    from contract.bands import DEFAULT_IMAGE_BANDS

    return DEFAULT_IMAGE_BANDS
