"""The Sentinel archive's months: before the first scenes or in the future is refused."""

from __future__ import annotations

import datetime as dt

import pytest

from contract.archive import check_months
from core.errors import ConfigError

TODAY = dt.date(2026, 11, 23)
BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")


@pytest.mark.parametrize(("months", "bands", "match"), [
    (("2014-09",), ("VV", "VH"), "before the first Sentinel-1 scenes \\(2014-10\\)"),
    (("2015-05", "2019-06"), BANDS, "2015-05 are before the first Sentinel-2 scenes"),
    (("2015-05",), ("B2", "B8"), "Sentinel-2 scenes \\(2015-06\\)"),
    (("2026-12",), BANDS, "2026-12 are in the future"),
    (("2031-01",), ("VV",), "in the future"),
])
def test_months_without_scenes_are_refused(months, bands, match):
    with pytest.raises(ConfigError, match=match):
        check_months(months, bands, today=TODAY)


def test_each_sensor_has_its_own_first_month_and_the_current_month_is_a_warning():
    assert check_months(("2014-10", "2015-01"), ("VV", "VH"), today=TODAY) == []
    assert check_months(("2015-06", "2019-06"), BANDS, today=TODAY) == []
    (warning,) = check_months(("2026-10", "2026-11"), BANDS, today=TODAY)
    assert warning.startswith("month 2026-11 is not over")


def test_earth_engine_sentinel2_months_before_2019_are_said_to_be_partial():
    """The README's `--years 2017:...` met the catalogue's warning unsaid (issue 69)."""
    (warning,) = check_months(("2017-06", "2018-06", "2019-06"), BANDS, today=TODAY,
                              earth_engine=True)
    assert warning.startswith("month(s) 2017-06, 2018-06: Earth Engine's Sentinel-2 L2A")
    assert "global only from 2019" in warning
    assert check_months(("2017-06",), BANDS, today=TODAY) == []  # the user's own scenes
    assert check_months(("2017-06",), ("VV", "VH"), today=TODAY, earth_engine=True) == []
    assert check_months(("2019-01",), BANDS, today=TODAY, earth_engine=True) == []


def test_a_series_is_judged_by_the_earlier_months_it_reaches():
    from contract.bands import stack_series_bands

    series = stack_series_bands(BANDS, 3)  # each month reads the two before it
    (warning,) = check_months(("2019-02",), series, today=TODAY, earth_engine=True)
    assert warning.startswith("month(s) 2018-12 (the series reaches back to 2018-12): "), warning
    assert check_months(("2019-03",), series, today=TODAY, earth_engine=True) == []
    with pytest.raises(ConfigError, match=r"2015-04, 2015-05 are before the first Sentinel-2 "
                       r"scenes .* \(the series reaches back to 2015-04\)"):
        check_months(("2015-06",), series, today=TODAY)
    assert check_months(("2015-08",), series, today=TODAY) == []
