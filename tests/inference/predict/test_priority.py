"""Helper threads give way to the model's: their nice level rises, the caller's never does."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from inference.predict.sliding_window import HELPER_NICENESS, lower_thread_priority

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="per-thread nice levels are a Linux feature")


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_pool_thread_runs_lower_and_the_main_thread_keeps_its_priority():
    main = _nice()
    with ThreadPoolExecutor(1, initializer=lower_thread_priority) as pool:
        helper = pool.submit(_nice).result()
    assert helper == min(19, main + HELPER_NICENESS)
    assert _nice() == main


def test_the_level_never_goes_past_the_lowest_priority():
    with ThreadPoolExecutor(1, initializer=lambda: (lower_thread_priority(15),
                                                    lower_thread_priority(15))) as pool:
        assert pool.submit(_nice).result() == 19
