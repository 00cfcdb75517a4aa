"""The experiments' thread count: one per process by default, passed to the commands they run."""

from __future__ import annotations

import argparse
import os

import pytest
import torch

from experiments.threads import THREAD_VARIABLES, add_threads_argument, use_threads


def test_one_thread_per_process_by_default_and_the_commands_started_inherit_it(monkeypatch):
    parser = argparse.ArgumentParser()
    add_threads_argument(parser)
    assert parser.parse_args([]).threads == 1
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    saved = torch.get_num_threads()
    try:
        use_threads(1)
        assert torch.get_num_threads() == 1
        assert all(os.environ[name] == "1" for name in THREAD_VARIABLES)
        use_threads(0)  # torch's default: nothing changed
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="--threads must be >= 0"):
            use_threads(-1)
    finally:
        torch.set_num_threads(saved)
