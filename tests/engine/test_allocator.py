"""Freed memory is reused without page faults once kept, and given back on request.

The cases that count page faults run in a child interpreter: the allocator's settings are
process-wide and the comparison needs a process that has not been tuned yet.
"""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from engine import allocator
from tests.support.page_faults import pages, run_fault_child

pytestmark = pytest.mark.skipif(allocator._glibc() is None, reason="mallopt is glibc's")

CHILD = """
    from engine import allocator

    mib = int(sys.argv[1])
    out = {"default": faults(mib)}
    out["kept"] = allocator.keep_freed_memory()
    out["kept_again"] = allocator.keep_freed_memory()
    out["after_keep"] = faults(mib)
    out["given_back"] = allocator.give_back_freed_memory()
    out["after_give_back"] = faults(mib)
    print(json.dumps(out))
"""
PAGES = pages(64)


def run_child(mib: int = 64, **env: str) -> dict:
    return run_fault_child(CHILD, mib, **env)


def test_kept_memory_is_reused_without_faults_and_given_back_on_request():
    out = run_child(ISAMAP_KEEP_FREED_MEMORY="")
    assert out["default"] > PAGES // 2  # glibc maps a 64 MiB block afresh every time
    assert out["kept"] is True and out["kept_again"] is True
    assert out["after_keep"] < PAGES // 20  # the freed block came back from the heap
    assert out["given_back"] is True
    assert out["after_give_back"] > PAGES // 2


@pytest.mark.parametrize("value", ["off", "0", "False"])
def test_the_environment_switch_keeps_the_defaults(value):
    out = run_child(ISAMAP_KEEP_FREED_MEMORY=value)
    assert out["kept"] is False
    assert out["after_keep"] > PAGES // 2


@pytest.mark.slow
def test_a_size_in_mib_keeps_blocks_the_default_would_give_back():
    big = allocator.DEFAULT_MIB + 64  # MiB: above the default thresholds
    assert run_child(big, ISAMAP_KEEP_FREED_MEMORY="")["after_keep"] > pages(big) // 2
    out = run_child(big, ISAMAP_KEEP_FREED_MEMORY=str(2 * big))
    assert out["kept"] is True and out["after_keep"] < pages(big) // 20


@pytest.mark.parametrize("value", ["lots", "-5", "1.5", str(allocator.MAX_MIB + 1)])
def test_a_bad_setting_is_one_clear_error_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(allocator.ENV, value)
    with pytest.raises(ConfigError, match=f"{allocator.ENV}=.*neither 'off' nor a size in MiB"):
        allocator.threshold_mib()


@pytest.mark.parametrize(("value", "expected"),
                         [("", allocator.DEFAULT_MIB), ("OFF", None), ("1024", 1024)])
def test_the_default_off_and_a_size(monkeypatch, value, expected):
    monkeypatch.setenv(allocator.ENV, value)
    assert allocator.threshold_mib() == expected


def test_a_bad_setting_stops_a_model_command_before_any_work(monkeypatch, capsys):
    """The commands that run a model check ``ISAMAP_KEEP_FREED_MEMORY`` before their work."""
    from core.commands import configure_logging, run_command

    configure_logging()
    monkeypatch.setenv(allocator.ENV, "plenty")
    ran = []
    assert run_command("isamap-x", lambda: ran.append(1), checks=allocator.CHECKS) == 2
    err = capsys.readouterr().err
    assert not ran and "ISAMAP_KEEP_FREED_MEMORY='plenty'" in err
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setenv(allocator.ENV, "512")
    assert run_command("isamap-x", lambda: ran.append(1), checks=allocator.CHECKS) == 0
    assert ran == [1]
