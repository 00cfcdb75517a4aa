"""The autotune cache's file: format tag, bounded, atomic, a failed write a warning."""

from __future__ import annotations

import json
import logging

from engine import autotune_cache as cache
from engine.choice_value import Choice
from engine.setting import Setting

CHOICE = Choice(Setting("bf16", True))


def test_entries_round_trip_and_the_oldest_go_first(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CACHE_ENTRIES", 3)
    path = tmp_path / "sub" / "r.json"
    for i in range(5):
        cache.write_cache(path, f"k{i}", CHOICE)
    assert list(cache.read_cache(path)) == ["k2", "k3", "k4"]
    assert Choice.from_dict(cache.read_cache(path)["k4"]) == CHOICE
    cache.write_cache(path, "k2", CHOICE)  # now newest
    cache.write_cache(path, "k5", CHOICE)
    assert list(cache.read_cache(path)) == ["k4", "k2", "k5"]
    assert not [p for p in path.parent.iterdir() if p.name != "r.json"]  # no temporaries


def test_another_format_or_a_broken_file_reads_as_empty_and_is_rewritten(tmp_path, caplog):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"format": "isamap-autotune/0", "entries": {"old": 1}}))
    assert cache.read_cache(path) == {}
    path.write_text("{half")
    with caplog.at_level(logging.WARNING, logger="engine"):
        assert cache.read_cache(path) == {}
    assert "unreadable autotune cache" in caplog.text
    cache.write_cache(path, "k", CHOICE)
    assert json.loads(path.read_text()) == {"format": cache.CACHE_FORMAT,
                                            "entries": {"k": CHOICE.to_dict()}}


def test_a_home_that_cannot_be_written_is_a_warning(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger="engine"):
        cache.write_cache(blocker / "r.json", "k", CHOICE)
    assert "could not write the autotune cache" in caplog.text
