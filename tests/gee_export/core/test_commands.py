"""How every command ends: one line and an exit code for the environment's failures too."""

from __future__ import annotations

import argparse
import errno
import logging
import warnings

import pytest

from gee_export.core.commands import (
    add_logging_arguments,
    attach_values,
    check_output_folder,
    check_range,
    configure_logging,
    environment_message,
    run_command,
)
from gee_export.core.errors import ConfigError


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


def test_interrupt_says_how_to_resume(capsys):
    configure_logging()
    assert run_command("isamap-x", _raise(KeyboardInterrupt())) == 130
    assert "run the same command again to resume" in capsys.readouterr().err


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
    check_output_folder("--out", "gs://bucket/prefix")
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


def test_a_bad_allocator_setting_is_refused_before_any_work(monkeypatch, capsys):
    configure_logging()
    monkeypatch.setenv("ISAMAP_KEEP_FREED_MEMORY", "plenty")
    ran = []
    assert run_command("isamap-x", lambda: ran.append(1)) == 2
    err = capsys.readouterr().err
    assert not ran  # refused before the command's work started
    assert "ISAMAP_KEEP_FREED_MEMORY='plenty'" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("ISAMAP_KEEP_FREED_MEMORY", "512")
    assert run_command("isamap-x", lambda: ran.append(1)) == 0 and ran == [1]
