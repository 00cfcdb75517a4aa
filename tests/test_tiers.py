"""The tiers' rules hold in a real pytest run: ``-m "not slow"`` leaves a ``slow`` test out, and
an unmarked test whose call outlasts the limit fails, naming its time and the way out."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support import REPO_ROOT

TESTS = '''
import time
import pytest

def test_quick():
    pass

def test_long_unmarked():
    time.sleep(1.0)

@pytest.mark.slow
def test_long_marked():
    time.sleep(1.0)
'''


def test_the_default_tier_leaves_slow_tests_out_and_fails_a_long_unmarked_one(tmp_path):
    (tmp_path / "test_timed.py").write_text(TESTS)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "tests.support.tiers",
         "-o", "max_unmarked_seconds=0.5", "-o", "markers=slow: the slow tier", "-m", "not slow",
         str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": ""})
    assert run.returncode == 1 and "1 failed, 1 passed, 1 deselected" in run.stdout, run.stdout
    assert re.search(r"test_long_unmarked took [0-9.]+ s, over the default tier.s 0\.5 s "
                     r"\(setup\.cfg max_unmarked_seconds\): mark it @pytest\.mark\.slow",
                     run.stdout)
