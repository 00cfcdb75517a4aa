"""The check that tells a user when Sen2Cor's cloud flags hide ground no brighter than clear."""

from __future__ import annotations

import numpy as np

from gee_export.local.cloud_flags import MIN_SHARE, CloudFlagCheck, visible_band


def _window(hidden_value: float, *, second_scene_clear: bool = False, hidden_px: int = 20):
    """Two scenes of a 10 x 10 window: ``hidden_px`` pixels flagged as cloud in both scenes
    (clear in the second one when asked), every other pixel clear at reflectance 0.05-0.14."""
    visible = np.tile(np.linspace(0.05, 0.14, 100, dtype=np.float32).reshape(10, 10), (2, 1, 1))
    flagged = np.zeros((2, 10, 10), bool)
    flagged.reshape(2, -1)[:, :hidden_px] = True
    visible[flagged] = hidden_value
    clear = ~flagged
    if second_scene_clear:
        flagged[1] = False
        clear[1] = True
    return visible, clear, flagged, np.ones_like(clear)


def test_flags_on_ground_no_brighter_than_clear_ground_are_reported_with_counts():
    check = CloudFlagCheck(scenes=2)
    check.add(*_window(0.10))
    message = check.warning("2018-12")
    assert message is not None
    assert message.startswith("2018-12: 20 pixels (20.0 % of the grid)")
    assert "observation in any of its 2 scenes" in message and "--scl-mask 3,11" in message
    assert "median 0.10, clear ground's 90th percentile 0.13" in message


def test_flags_on_pixels_brighter_than_clear_ground_are_cloud_and_pass_silently():
    check = CloudFlagCheck(scenes=2)
    check.add(*_window(0.35))
    assert check.hidden == 20 and check.warning("2018-12") is None


def test_a_pixel_clear_in_another_scene_is_not_hidden():
    check = CloudFlagCheck(scenes=2)
    check.add(*_window(0.10, second_scene_clear=True))
    assert check.hidden == 0 and check.warning("2018-12") is None


def test_too_few_hidden_pixels_or_no_visible_band_say_nothing():
    few = CloudFlagCheck(scenes=1)
    for _ in range(int(1 / MIN_SHARE)):  # 1000 windows of 100 pixels, one of them hidden
        few.add(*_window(0.10, hidden_px=0))
    few.add(*_window(0.10, hidden_px=1))
    assert few.hidden == 1 and few.warning("2018-12") is None
    blind = CloudFlagCheck(scenes=2)
    _, *masks = _window(0.10)
    blind.add(None, *masks)
    assert blind.hidden == 20 and blind.warning("2018-12") is None
    assert visible_band(["B8", "B4", "B2"]) == 2 and visible_band(["B8", "B11"]) is None


def test_windows_added_one_by_one_count_as_the_whole():
    whole, halves = CloudFlagCheck(scenes=2), CloudFlagCheck(scenes=2)
    visible, clear, flagged, data = _window(0.10)
    whole.add(visible, clear, flagged, data)
    for rows in (slice(0, 5), slice(5, 10)):
        halves.add(visible[:, rows], clear[:, rows], flagged[:, rows], data[:, rows])
    assert whole.warning("m") == halves.warning("m")
    assert (whole.hidden_values == halves.hidden_values).all()
