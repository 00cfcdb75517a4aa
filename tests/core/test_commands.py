"""How every command ends: one line and an exit code for the environment's failures too."""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import warnings

import pytest

from core.commands import (
    Stopped,
    add_logging_arguments,
    attach_values,
    check_output_folder,
    check_range,
    configure_logging,
    environment_message,
    run_command,
    stops_deferred,
)
from core.errors import ConfigError


class LibraryError(Exception):
    """Stands for a library's own exception type (GDAL's CPLE_*, torch's RuntimeError)."""


def _raise(exc: BaseException):
    def action():
        raise exc
    return action


def _wrapped(inner: BaseException, outer: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:
        return exc


@pytest.mark.parametrize("exc,needle", [
    (_wrapped(OSError(errno.ENOSPC, "No space left on device", "out/x.tif"),
              LibraryError("writing the tile failed")), "no space left on the device (out/x.tif)"),
    (LibraryError("TIFFAppendToStrip:Write error at scanline 0"), "writing or reading a file"),
    (LibraryError("_tiffWriteProc: No space left on device."), "no space left"),
    (RuntimeError("open: Read-only file system"), "read-only"),
    (OSError(errno.EFBIG, "File too large"), "file-size limit"),
])
def test_wrapped_environment_failures_become_one_line(exc, needle, capsys):
    configure_logging()
    assert run_command("isamap-x", _raise(exc)) == 1
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bugs_keep_their_traceback():
    assert environment_message(LibraryError("list index out of range")) is None
    with pytest.raises(LibraryError):
        run_command("isamap-x", _raise(LibraryError("list index out of range")))


def test_debug_lets_everything_through():
    with pytest.raises(OSError):
        run_command("isamap-x", _raise(OSError(errno.ENOSPC, "full")), debug=True)


def test_under_torchrun_a_quiet_rank_refused_on_bad_input_waits_to_be_stopped(
        tmp_path, monkeypatch, capsys):
    """torchrun stops the other ranks within 0.1 s of the first failure: a quiet rank that
    exited first could get local rank 0 stopped before its line (seen in CI). It writes its
    line to the launcher's error file and waits; local rank 0, and an environment failure of
    any rank, say their line and end at once."""
    import json
    import time

    from core import commands

    configure_logging()
    monkeypatch.setattr(commands, "OTHER_RANK_WAIT_S", 0.5)
    error_file = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "run")
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))

    def ended(rank: str, exc: Exception) -> tuple[int, float, str]:
        monkeypatch.setenv("LOCAL_RANK", rank)
        started = time.monotonic()
        status = run_command("isamap-x", _raise(exc))
        return status, time.monotonic() - started, capsys.readouterr().err

    status, took, err = ended("1", ConfigError("--data d does not exist"))
    assert status == 2 and took >= 0.5 and err == ""
    assert json.loads(error_file.read_text())["message"]["message"] == (
        "isamap-x: error: --data d does not exist")
    status, took, err = ended("0", ConfigError("--data d does not exist"))
    assert status == 2 and took < 0.5 and err.strip() == "isamap-x: error: --data d does not exist"
    status, took, err = ended("1", OSError(errno.ENOSPC, "full"))
    assert status == 1 and took < 0.5 and "isamap-x: error:" in err


def test_interrupt_says_how_to_resume(capsys):
    configure_logging()
    assert run_command("isamap-x", _raise(KeyboardInterrupt())) == 130
    assert "run the same command again to resume" in capsys.readouterr().err


@pytest.mark.parametrize("signum,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_a_library_turned_into_its_own_error_still_says_how_to_resume(capsys, signum,
                                                                            status):
    """Ctrl-C while torch.save wrote a checkpoint: its zip writer raised a RuntimeError of
    its own while the stop was handled, and the run ended with a traceback, exit 1 (a new
    user's walk)."""
    def save() -> None:
        try:
            raise Stopped(signum)
        except Stopped:
            raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos")  # noqa: B904 (as torch does)

    configure_logging()
    assert run_command("isamap-x", save) == status
    err = capsys.readouterr().err
    assert "run the same command again to resume" in err and "Traceback" not in err


def test_negative_bbox_needs_no_equals_sign():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bbox")
    parser.add_argument("--n", type=int)
    argv = attach_values(["--bbox", "-7.45,52.63,-7.43,52.65", "--n", "-3"], ["--bbox"])
    args = parser.parse_args(argv)
    assert args.bbox == "-7.45,52.63,-7.43,52.65" and args.n == -3
    assert attach_values(["--bbox", "-.5,1,2,3"], ["--bbox"]) == ["--bbox=-.5,1,2,3"]
    assert attach_values(["--bbox", "--dry-run"], ["--bbox"]) == ["--bbox", "--dry-run"]


def test_check_range_names_the_flag_and_its_bounds():
    assert check_range("--workers", 4, 1, 40) == 4
    assert check_range("--tile", None, 1) is None
    with pytest.raises(ConfigError, match=r"--workers must be between 1 and 40, got 0; why"):
        check_range("--workers", 0, 1, 40, "why")
    with pytest.raises(ConfigError, match=r"--epochs must be >= 1, got -1"):
        check_range("--epochs", -1, 1)


def test_library_warnings_are_one_prefixed_line(capsys):
    configure_logging()
    warnings.warn("the label is all nodata", UserWarning, stacklevel=1)
    logging.getLogger("gee_export.x").warning("tag contradicted")
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: the label is all nodata", "warning: tag contradicted"]


def test_output_folder_flags_refuse_files_and_name_the_flag(tmp_path):
    taken = tmp_path / "taken.txt"
    taken.write_text("x")
    with pytest.raises(ConfigError, match=r"^--local-dir .*taken.txt is a file, not a folder"):
        check_output_folder("--local-dir", taken)
    with pytest.raises(ConfigError, match=r"^--out .*sub lies under .*taken.txt, which is a"):
        check_output_folder("--out", taken / "sub")
    check_output_folder("--out", tmp_path / "new" / "deeper")  # created later: fine
    check_output_folder("--out", "gs://bucket/prefix", remote=True)  # the storage seam's
    with pytest.raises(ConfigError, match=r"^--out gs://b/p: this command writes local files"):
        check_output_folder("--out", "gs://b/p")  # pathlib would make ./gs:/b/p
    with pytest.raises(ConfigError, match=r"^--out s3://b/p: give a local folder or gs://"):
        check_output_folder("--out", "s3://b/p", remote=True)
    check_output_folder("--out", None)
    assert sorted(tmp_path.iterdir()) == [taken]  # the check creates nothing


@pytest.mark.parametrize("flag", [
    {"dest": "progress", "action": "store_false"},            # isamap-evaluate
    {"dest": "progress", "action": "store_const", "const": False},  # train, prune (None: unset)
    {"action": "store_true"},                                  # export, map: no_progress
])
def test_quiet_hides_progress_whatever_the_command_calls_its_flag(flag):
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-progress", **flag)
    add_logging_arguments(parser)
    shown = vars(parser.parse_args([]))
    for argv in (["-q"], ["--quiet", "--no-progress"], ["--no-progress", "-q"]):
        args = vars(parser.parse_args(argv))
        assert args["quiet"] is True
        assert args.get("progress", True) is False or args.get("no_progress") is True
    assert shown["quiet"] is False and shown == vars(parser.parse_args([]))
    assert shown.get("progress") is not False and not shown.get("no_progress")


def test_a_bad_setting_is_refused_before_any_work(capsys):
    configure_logging()
    ran = []

    def refuse():
        raise ConfigError("ISAMAP_X='plenty' is not a size; unset it")

    assert run_command("isamap-x", lambda: ran.append(1), checks=(refuse,)) == 2
    err = capsys.readouterr().err
    assert not ran  # refused before the command's work started
    assert "ISAMAP_X='plenty'" in err and len(err.strip().splitlines()) == 1
    assert run_command("isamap-x", lambda: ran.append(1), checks=(lambda: None,)) == 0
    assert ran == [1]


#: a command that holds its output, writes a file atomically and cleans up slowly when stopped;
#: after run_command returns it lingers (argv[3] s) as an interpreter's shutdown may
_STOPPABLE = """
import sys, time
from pathlib import Path
from core.commands import run_command
from core.lock import hold_output
from core.storage import atomic_path

out = Path(sys.argv[1])

def action():
    with hold_output(out), atomic_path(out / "result.bin") as tmp:
        tmp.write_bytes(b"partial")
        try:
            print("working", flush=True)
            time.sleep(60)
        finally:
            print("cleaning", flush=True)
            time.sleep(float(sys.argv[2]))
            (out / "cleaned").write_text("yes")

code = run_command("isamap-test", action)
print("returned", flush=True)
time.sleep(float(sys.argv[3]))
sys.exit(code)
"""


def _stoppable(tmp_path, cleanup_s: float, linger_s: float):
    import subprocess
    import sys

    from tests.support import REPO_ROOT

    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _STOPPABLE, str(out), str(cleanup_s),
                             str(linger_s)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "working"
    return proc, out


def _left_clean(out) -> None:
    from core.lock import hold_output

    assert (out / "cleaned").read_text() == "yes", "the clean-up ran to its end"
    assert [p.name for p in out.iterdir() if p.name != ".isamap.lock"] == ["cleaned"], \
        "the half-written file was removed"
    with hold_output(out):  # the lock went with the process
        pass


def test_sigterm_ends_a_command_with_a_message_and_a_clean_state(tmp_path):
    import signal

    proc, out = _stoppable(tmp_path, 0.2, 0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "isamap-test: terminated (SIGTERM)" in err and "run the same command again" in err
    assert "Traceback" not in err
    _left_clean(out)


def test_a_second_ctrl_c_cannot_cut_the_clean_up_or_the_exit_short(tmp_path):
    """Ctrl-C again while the command cleans up, and once more after run_command returned (as
    a signal may land while the interpreter shuts down): the clean-up finishes and the exit
    status stays 130, never a death by SIGINT (-2)."""
    import signal

    proc, out = _stoppable(tmp_path, 1.0, 1.0)
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline().strip() == "cleaning"
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline().strip() == "returned"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.count("interrupted; run the same command again") == 1 and "Traceback" not in err
    _left_clean(out)


def test_without_a_signal_the_previous_handlers_are_back():
    import signal

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert run_command("isamap-test", lambda: 0) == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.fixture
def handlers_kept():
    """The test process's SIGINT and SIGTERM handlers, put back after a command was stopped."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in before.items():
        signal.signal(s, h)


def test_a_stop_the_work_swallowed_still_ends_the_command_as_stopped(handlers_kept, caplog):
    """The one Stopped the handler raised was lost where the work swallowed it (numpy's string
    scalars clear it in C; a loop's ``except BaseException`` would too), both signals were then
    ignored, and the command ran to its end: exit 0 after a SIGTERM. The stop now stands."""
    import os
    import time

    def work() -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
        except KeyboardInterrupt:
            pass  # swallowed
        return 0

    started = time.monotonic()
    assert run_command("isamap-test", work) == 143
    assert time.monotonic() - started < 4
    assert "isamap-test: terminated (SIGTERM)" in caplog.text


def test_a_stop_inside_stops_deferred_waits_for_the_block_to_end(handlers_kept):
    import os

    steps: list[str] = []

    def work() -> int:
        with stops_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs here and holds the stop back
                steps.append("written")
        steps.append("after the block")  # never reached: the stop is raised as it ends
        return 0

    assert run_command("isamap-test", work) == 130
    assert steps == ["written"] * 1000
