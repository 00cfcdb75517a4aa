"""The per-project asset caps, checked against the job and what the project holds."""

from __future__ import annotations

import pytest

from core.errors import AuthenticationError, ConfigError
from inference.publish.assets import connect
from inference.publish.quota import MAX_ASSETS, Footprint, check_caps, footprint


def test_the_job_alone_is_checked_when_the_project_cannot_be_read():
    assert "adds 3 assets" in check_caps(Footprint(3, 10**9))
    with pytest.raises(ConfigError, match="10,001 assets"):
        check_caps(Footprint(MAX_ASSETS + 1, 0))
    with pytest.raises(ConfigError, match=r"251\.0 GB"):
        check_caps(Footprint(1, 251 * 10**9))


def test_what_the_project_holds_counts_and_its_own_limits_win():
    quota = {"asset_count": {"usage": 500, "limit": 600},
             "asset_size": {"usage": 100 * 10**9, "limit": 0}}  # 0: not reported
    line = check_caps(Footprint(100, 10**9), quota)
    assert "holds 500 assets" in line and "caps 600 assets and 250 GB" in line
    with pytest.raises(ConfigError, match="601 assets"):
        check_caps(Footprint(101, 0), quota)
    with pytest.raises(ConfigError, match=r"250\.1 GB"):
        check_caps(Footprint(1, 150_100_000_000), quota)


def test_local_cogs_are_measured_remote_and_future_ones_counted(tmp_path):
    cog = tmp_path / "a.tif"
    cog.write_bytes(b"x" * 1234)
    adds = footprint(2, [str(cog), "gs://b/c.tif", str(tmp_path / "not_yet.tif")])
    assert adds == Footprint(2, 1234, 2)
    assert "+2 COGs on Cloud Storage or not yet written" in check_caps(adds)


def test_a_legacy_root_quota_is_read_a_cloud_project_has_none(ee_http, ee_offline):
    assets = connect("offline", ee_offline)
    assert assets.project_quota("projects/offline/assets/isa/x") is None
    assert ee_http.requests == []  # a project root cannot be read: no call made
    # a legacy root the fake does not hold: the read is made, unreadable is None
    assert assets.project_quota("projects/earthengine-legacy/assets/users/me/isa/x") is None
    assert [r.path for r in ee_http.requests] == [
        "projects/earthengine-legacy/assets/users/me"]


def test_an_unauthenticated_quota_read_stops_the_publication(ee_offline):
    with pytest.raises(AuthenticationError):
        connect("offline", ee_offline).project_quota(
            "projects/earthengine-legacy/assets/users/me/isa/x")


def test_cog_backed_assets_count_no_bytes_against_the_250_gb(tmp_path):
    """--mode external keeps the pixels in Cloud Storage: only the asset count grows."""
    cog = tmp_path / "big.tif"
    with cog.open("wb") as fh:  # a sparse 300 GB file: larger than the whole cap
        fh.truncate(300 * 10**9)
    with pytest.raises(ConfigError, match="GB"):
        check_caps(footprint(1, [str(cog)]))
    adds = footprint(1, [str(cog)], "external")
    assert adds.nbytes == 0 and adds.assets == 1
    assert "adds 1 assets and 0.00 GB (COG-backed: the pixels stay in Cloud Storage)" in \
        check_caps(adds, {"asset_size": {"usage": str(249 * 10**9)}})
