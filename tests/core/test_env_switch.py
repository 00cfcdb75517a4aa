"""The words that switch a feature off, the same for every variable."""

from __future__ import annotations

import pytest

from core.env_switch import is_off


@pytest.mark.parametrize("value", ["off", "OFF", " no ", "0", "false", "None"])
def test_off_words(value):
    assert is_off(value)


@pytest.mark.parametrize("value", [None, "", "on", "1", "/some/folder", "256", "offline"])
def test_anything_else_is_not_off(value):
    assert not is_off(value)
