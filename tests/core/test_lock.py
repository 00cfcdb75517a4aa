"""One run per output root: two real processes, a killed holder, a stale lock on Cloud Storage."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from core.errors import OutputLockedError
from core.lock import LOCK_NAME, hold_output
from core.storage import open_store
from tests.support import REPO_ROOT

_HOLDER = """
import sys, time
from core.lock import hold_output
with hold_output(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""

_CONTENDER = """
import sys
from core.errors import OutputLockedError
from core.lock import hold_output
try:
    with hold_output(sys.argv[1]):
        print("acquired")
except OutputLockedError as exc:
    print(f"refused: {exc}")
"""


def _start_holder(root) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(root)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


def _contend(root) -> str:
    return subprocess.run([sys.executable, "-c", _CONTENDER, str(root)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60).stdout.strip()


def test_a_second_process_is_refused_while_the_first_holds_the_output(tmp_path):
    root = tmp_path / "dataset"
    holder = _start_holder(root)
    try:
        answer = _contend(root)
        assert answer.startswith("refused: ") and "\n" not in answer
        assert f"pid {holder.pid} on {socket.gethostname()}" in answer
        assert str(root) in answer and "wait for it to finish" in answer
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"), hold_output(root):
            pass  # in-process too
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # the holder died without cleaning up: its lock file is left, naming a dead pid
    assert json.loads((root / LOCK_NAME).read_text())["pid"] == holder.pid
    assert _contend(root) == "acquired"  # the stale lock is taken over
    assert not (root / LOCK_NAME).exists()  # and released at the end


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with hold_output(tmp_path), hold_output(str(tmp_path)):
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()


def test_cloud_storage_lock_refuses_a_live_holder_and_replaces_a_stale_one(gcs_bucket):
    root = f"gs://{gcs_bucket}/locked"
    store = open_store(root)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    store.write_bytes(LOCK_NAME, json.dumps({"pid": int(dead), "host": socket.gethostname(),
                                             "started": "then", "token": "x"}).encode())
    with hold_output(root):  # a dead process of this host: stale, replaced
        mine = json.loads(store.read_bytes(LOCK_NAME))
        assert mine["pid"] == os.getpid()
    assert not store.exists(LOCK_NAME)
    store.write_bytes(LOCK_NAME, json.dumps({"pid": 1, "host": "elsewhere",
                                             "started": "now", "token": "y"}).encode())
    expected = f"pid 1 on elsewhere.*delete {root}/{LOCK_NAME}"
    with pytest.raises(OutputLockedError, match=expected), hold_output(root):
        pass
    assert json.loads(store.read_bytes(LOCK_NAME))["host"] == "elsewhere"  # left alone
