"""A stack's month (contract.stack): the one rule of every command that reads it."""

from __future__ import annotations

import pytest

from contract.stack import stack_month
from core.errors import InputDataError


def test_a_month_is_given_or_recorded_and_never_both_differently():
    assert stack_month(None, "2021-06") == "2021-06"
    assert stack_month("2019-06", None) == stack_month("2019-06", "2019-06") == "2019-06"
    with pytest.raises(InputDataError) as error:
        stack_month("2019-06", "2021-06")
    assert str(error.value) == ("--month 2019-06, but the input stack is of 2021-06 (its MONTH "
                                "tag); give the stack of 2019-06, or leave --month out")
