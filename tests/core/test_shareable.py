"""Shared files name local paths relative to their output, or by file name; never absolutely."""

from __future__ import annotations

from pathlib import Path

from core.shareable import (
    portable_path,
    resolved_path,
    shareable,
    shareable_path,
    shareable_text,
)


def test_paths_become_relative_to_the_output_or_their_file_name(tmp_path, monkeypatch):
    out = tmp_path / "maps"
    assert shareable_path(out / "2019-06" / "isa_class.tif", out) == "2019-06/isa_class.tif"
    assert shareable_path(tmp_path / "scene", out) == "scene"  # outside: the name only
    assert shareable_path(Path.home() / "data" / "s.tif") == "s.tif"
    monkeypatch.chdir(tmp_path)  # a relative --out and paths made from it
    assert shareable_path("maps/2019-06/x.tif", "maps") == "2019-06/x.tif"
    assert shareable_path(str(out / "2019-06" / "x.tif"), "maps") == "2019-06/x.tif"
    assert shareable_path("/vsigs/b/maps/x.tif") == "gs://b/maps/x.tif"
    assert shareable_path("gs://b/maps/2019-06/x.tif", "gs://b/maps") == "2019-06/x.tif"
    assert shareable_path("gs://b/other/x.tif", "gs://b/maps") == "gs://b/other/x.tif"
    assert shareable_path("https://example.org/a/b.tif", out) == "https://example.org/a/b.tif"


def test_records_and_texts_keep_everything_but_private_paths(tmp_path):
    home = str(Path.home())
    record = {"recipe": {"scene": str(tmp_path / "scene"), "speckle": "boxcar",
                         "dates": ("2019-06-03",)},
              "source": f"{home}/maps/a.tif", "href": "./a.tif", "up": "../b/c.tif",
              "epsg": "EPSG:32650", "n": 3, "ratio": "3/4", "uri": "gs://b/k/a.tif"}
    assert shareable(record, tmp_path) == {
        "recipe": {"scene": "scene", "speckle": "boxcar", "dates": ["2019-06-03"]},
        "source": "a.tif", "href": "./a.tif", "up": "../b/c.tif", "epsg": "EPSG:32650",
        "n": 3, "ratio": "3/4", "uri": "gs://b/k/a.tif"}
    text = f"unet on {tmp_path}/patches [test]; label (`{home}/s/label.tif`), see https://x.org/a/b"
    assert shareable_text(text, tmp_path) == (
        "unet on patches [test]; label (`label.tif`), see https://x.org/a/b")


def test_a_file_that_finds_its_inputs_again_records_them_relative_to_its_folder(monkeypatch):
    """Moved together in the same layout they meet again; a way through the root or past
    the home folder would name the maker's folders, so only the name is kept."""
    monkeypatch.setenv("HOME", "/home/alice")
    runs = "/home/alice/work/runs/r1"
    assert portable_path("/home/alice/work/data/ds", runs) == "../../data/ds"
    assert portable_path("/home/alice/work/runs/r1", runs) == "."
    assert portable_path("/home/bob/ds", runs) == "ds"  # via /home: names the other user
    assert portable_path("/srv/ds", runs) == "ds"  # via the root
    assert portable_path("/scratch/a/ds", "/scratch/b") == "../a/ds"
    assert portable_path("gs://b/data/ds", runs) == "gs://b/data/ds"
    assert resolved_path("../../data/ds", "/elsewhere/runs/r1") == "/elsewhere/data/ds"
    assert resolved_path("/home/alice/ds", "/x") == "/home/alice/ds"  # older files: as is
    assert resolved_path("gs://b/data/ds", "/x") == "gs://b/data/ds"
    assert resolved_path("../data/ds", "gs://b/models") == "gs://b/data/ds"
