"""The records files the autotune cache and the int8 records are kept in."""

from __future__ import annotations

import json
import logging

from engine import records


def test_entries_round_trip_and_the_oldest_go_first(tmp_path):
    path = tmp_path / "sub" / "r.json"
    for i in range(5):
        records.write_entry(path, "fmt/1", "test records", f"k{i}", {"i": i}, limit=3)
    assert records.read_entries(path, "fmt/1", "test records") == {
        "k2": {"i": 2}, "k3": {"i": 3}, "k4": {"i": 4}}
    records.write_entry(path, "fmt/1", "test records", "k2", {"i": 20}, limit=3)  # now newest
    records.write_entry(path, "fmt/1", "test records", "k5", {"i": 5}, limit=3)
    assert list(records.read_entries(path, "fmt/1", "test records")) == ["k4", "k2", "k5"]
    assert not [p for p in path.parent.iterdir() if p.name != "r.json"]  # no temporaries


def test_another_format_or_a_broken_file_reads_as_empty_and_is_rewritten(tmp_path, caplog):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"format": "fmt/0", "entries": {"old": 1}}))
    assert records.read_entries(path, "fmt/1", "test records") == {}
    path.write_text("{half")
    with caplog.at_level(logging.WARNING, logger="engine"):
        assert records.read_entries(path, "fmt/1", "test records") == {}
    assert "unreadable test records" in caplog.text
    records.write_entry(path, "fmt/1", "test records", "k", 1, limit=2)
    assert json.loads(path.read_text()) == {"format": "fmt/1", "entries": {"k": 1}}


def test_a_home_that_cannot_be_written_is_a_warning(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger="engine"):
        records.write_entry(blocker / "r.json", "fmt/1", "test records", "k", 1, limit=2)
    assert "could not write the test records" in caplog.text
