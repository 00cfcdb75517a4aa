"""What -q, the default, -v, -vv and --debug show: isamap's detail, never a library's flood."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from core.commands import DETAIL, ISAMAP_LOGGERS, configure_logging, log_levels
from core.progress import LoggedBar, progress_bar

WATCHED = (*ISAMAP_LOGGERS, "inference.predict.raster", "rasterio", "rasterio._env",
           "urllib3", "matplotlib")


@pytest.fixture
def restore_levels():
    """configure_logging sets process-wide levels: put them back for the next test."""
    names = [*WATCHED, ""]
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("flags,isamap,rasterio,others", [
    ({"quiet": True}, logging.WARNING, logging.CRITICAL, logging.WARNING),
    ({}, logging.INFO, logging.CRITICAL, logging.WARNING),
    ({"verbose": 1}, DETAIL, logging.WARNING, logging.WARNING),
    ({"verbose": 2}, logging.DEBUG, logging.WARNING, logging.WARNING),
    ({"verbose": 5}, logging.DEBUG, logging.WARNING, logging.WARNING),
    ({"debug": True}, logging.DEBUG, logging.DEBUG, logging.DEBUG),
    ({"debug": True, "quiet": True}, logging.DEBUG, logging.DEBUG, logging.DEBUG),
])
def test_each_flag_sets_isamap_and_library_loggers(flags, isamap, rasterio, others,
                                                    restore_levels):
    assert configure_logging(**flags) == isamap
    for name in (*ISAMAP_LOGGERS, "inference.predict.raster"):
        assert logging.getLogger(name).getEffectiveLevel() == isamap, name
    for name in ("rasterio", "rasterio._env"):
        assert logging.getLogger(name).getEffectiveLevel() == rasterio, name
    for name in ("urllib3", "matplotlib", "google.auth"):
        assert logging.getLogger(name).getEffectiveLevel() == others, name
    assert log_levels(**flags)[""] == others


def test_timings_need_v_and_library_debug_needs_debug(restore_levels, capsys):
    own, library = logging.getLogger("inference.predict.raster"), logging.getLogger("urllib3")

    def emitted(**flags) -> str:
        configure_logging(**flags)
        own.info("step done")
        own.log(DETAIL, "stages wall {'read': 1.0}")
        own.debug("strip 3 of 9")
        library.debug("Starting new HTTPS connection")
        return capsys.readouterr().err

    assert emitted(quiet=True) == ""
    assert emitted() == "step done\n"
    assert emitted(verbose=1) == "step done\nstages wall {'read': 1.0}\n"
    vv = emitted(verbose=2)
    assert "strip 3 of 9" in vv and "HTTPS" not in vv
    assert "HTTPS" in emitted(debug=True)


def test_a_bar_off_a_terminal_logs_lines_without_carriage_returns(restore_levels, capsys):
    configure_logging()
    bar = progress_bar(total=4, desc="patches", unit="patch")  # stderr is captured: no tty
    assert isinstance(bar, LoggedBar)
    bar.close()
    bar = LoggedBar(total=4, desc="tiles", unit="tile", every_s=0.0)
    for _ in range(4):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err and "tiles: " in err and "4/4" in err.splitlines()[-1]
    assert err.count("4/4") == 1  # a walk: "predict: 100% 4/4" was logged, then again on close
    assert "patches" not in err  # a bar that closes before the interval logs nothing
    with progress_bar(range(3), desc="x", disable=True) as quiet:
        assert list(quiet) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_every_progress_bar_is_made_by_progress_bar():
    """One owner: a module importing tqdm itself would write carriage returns into logs."""
    repo = Path(__file__).resolve().parents[2]
    found = []
    for package in ("core", "contract", "gee_export", "engine", "training", "inference"):
        for path in sorted((repo / package).rglob("*.py")):
            if path.name == "progress.py" and path.parent.name == "core":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(n.split(".")[0] == "tqdm" for n in names):
                    found.append(f"{path.relative_to(repo)}:{node.lineno}")
    assert found == []


def test_every_package_that_logs_is_one_of_isamaps_loggers():
    """A package whose modules log under their own names (``getLogger(__name__)``) and is left
    out of ISAMAP_LOGGERS logs at the root's level: its -v detail (autotune's tables, for
    the engine room) would never show."""
    root = Path(__file__).resolve().parents[2]
    logging_packages = {
        path.parent.name for path in root.glob("*/__init__.py")
        if path.parent.name != "tests"
        and any("getLogger(__name__)" in module.read_text()
                for module in path.parent.rglob("*.py"))}
    assert logging_packages and logging_packages <= set(ISAMAP_LOGGERS)
