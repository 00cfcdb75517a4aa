"""Run Python scripts each in its own process, forked from one that imported the libraries.

tests/test_notebooks.py runs the three notebooks as scripts twice: six processes, each of
which spent ~5 s (more on a loaded 2-core host) importing torch, Earth Engine's client,
matplotlib and IPython before its first line of isamap ran. Here a server process imports those
third-party libraries once and forks a child per script: every script still runs in a process
of its own (its own ``__main__``, working folder, stdout and stderr, exit status; nothing of
another script's run survives), started from the state a fresh interpreter has after those
imports. isamap's own modules are not preloaded: each script imports them as a fresh process
would.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

#: whether this system can run the fork server (os.fork, and /proc to count its threads)
FORKS = hasattr(os, "fork") and os.path.isdir("/proc/self/task")

#: third-party libraries the notebooks import (the bulk of a notebook process's start-up)
PRELOAD = ("numpy", "torch", "ee", "matplotlib.pyplot", "IPython.display", "rasterio",
           "pyproj", "scipy.ndimage", "scipy.optimize")

SERVER = r"""
import atexit, importlib, json, os, runpy, sys, threading, traceback

for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
# forking is only safe while the server is single-threaded (no library started a thread)
assert threading.active_count() == 1 and len(os.listdir("/proc/self/task")) == 1, \
    "a preloaded library started a thread: the server cannot fork"
reply = sys.stdout
print("ready", file=reply, flush=True)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:  # the script's process
        code = 1
        try:
            os.chdir(job["cwd"])
            with open(job["stdout"], "wb") as out, open(job["stderr"], "wb") as err:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            sys.stdin = open(0, closefd=False)
            sys.argv = [job["script"]]
            sys.path[0] = os.path.dirname(os.path.abspath(job["script"]))
            try:
                runpy.run_path(job["script"], run_name="__main__")
                code = 0
            except SystemExit as stop:  # as the interpreter treats sys.exit(...)
                if isinstance(stop.code, int) or stop.code is None:
                    code = stop.code or 0
                else:
                    print(stop.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            atexit._run_exitfuncs()  # what interpreter shutdown runs
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), file=reply,
          flush=True)
"""


class WarmPython:
    """A fork server of the venv's Python with :data:`PRELOAD` imported; use as a context."""

    def __init__(self, env: dict[str, str], preload: tuple[str, ...] = PRELOAD):
        self.env, self.preload = env, preload
        self.server: subprocess.Popen | None = None

    def __enter__(self) -> WarmPython:
        self.server = subprocess.Popen(
            [sys.executable, "-c", SERVER, json.dumps(self.preload)], env=self.env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        self._reply(300)  # "ready"
        return self

    def __exit__(self, *exc) -> None:
        assert self.server is not None
        self.server.stdin.close()  # the server's loop ends
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._kill()

    def run(self, script: Path, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
        """``python script`` in ``cwd``: its exit status and what it printed."""
        assert self.server is not None
        out, err = script.with_suffix(".stdout"), script.with_suffix(".stderr")
        job = {"script": str(script), "cwd": str(cwd), "stdout": str(out), "stderr": str(err)}
        self.server.stdin.write(json.dumps(job) + "\n")
        self.server.stdin.flush()
        returncode = json.loads(self._reply(timeout))["returncode"]
        return subprocess.CompletedProcess(
            [sys.executable, str(script)], returncode,
            out.read_text(errors="replace"), err.read_text(errors="replace"))

    def _reply(self, timeout: float) -> str:
        assert self.server is not None and self.server.stdout is not None
        ready, _, _ = select.select([self.server.stdout], [], [], timeout)
        line = self.server.stdout.readline() if ready else ""
        if not line:
            self._kill()
            raise subprocess.TimeoutExpired(self.server.args, timeout) if not ready else \
                RuntimeError(f"the fork server exited with status {self.server.wait()}")
        return line

    def _kill(self) -> None:
        assert self.server is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.server.pid, signal.SIGKILL)  # the server and a running script
        self.server.wait()
