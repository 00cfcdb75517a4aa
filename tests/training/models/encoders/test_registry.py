"""The encoder registry refuses every file but the published one, in one line."""

from __future__ import annotations

import shutil

import pytest

from core.errors import ModelError
from training.models.encoders.registry import (
    ENCODERS,
    GALILEO_NANO,
    PRESTO,
    load_encoder,
    load_weights,
    parse_encoder,
)


def test_every_entry_says_what_a_user_needs():
    for entry in ENCODERS.values():
        assert len(entry.sha256) == 64 and entry.licence == "MIT"
        assert entry.source.startswith("https://github.com/nasaharvest/")
        assert entry.level in ("L1C", "L2A") and entry.level_note and entry.normalisation
        assert set(entry.bands) >= {"B2", "B3", "B4", "B8", "B11", "B12"}


def test_names_and_malformed_arguments_are_refused():
    assert parse_encoder("presto=a/b.pt") == (PRESTO, "a/b.pt")
    with pytest.raises(ModelError, match="NAME=PATH"):
        parse_encoder("presto")
    with pytest.raises(ModelError, match="presto, galileo-nano"):
        parse_encoder("prithvi=x.pt")


def test_a_missing_file_names_where_to_get_it(tmp_path):
    with pytest.raises(ModelError) as err:
        load_encoder(PRESTO, tmp_path / "default_model.pt")
    text = str(err.value)
    assert "no such file" in text and PRESTO.sha256 in text and "nasaharvest/presto" in text
    assert "\n" not in text


def test_a_folder_names_the_file_to_give(presto_file, tmp_path):
    """The folder the file was downloaded into: the file in it, or where to get it."""
    with pytest.raises(ModelError) as err:
        load_encoder(PRESTO, presto_file.parent)
    assert str(err.value) == (f"--encoder presto={presto_file.parent} is a folder; give the "
                              f"file in it: --encoder presto={presto_file}")
    with pytest.raises(ModelError) as err:
        load_encoder(PRESTO, tmp_path)
    text = str(err.value)
    assert text.startswith(f"--encoder presto={tmp_path} is a folder, without "
                           "default_model.pt; give the file itself: download default_model.pt")
    assert PRESTO.sha256 in text and "\n" not in text


def test_a_file_of_other_bytes_is_refused_by_its_sha256(presto_file, tmp_path):
    copy = tmp_path / "default_model.pt"
    shutil.copyfile(presto_file, copy)
    with copy.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match=f"not the published presto file.*{PRESTO.sha256}"):
        load_encoder(PRESTO, copy)


def test_one_encoders_file_given_as_the_other_is_named(presto_file, galileo_file):
    with pytest.raises(ModelError, match="it is the published presto file: give --encoder "
                                         "presto=PATH"):
        load_encoder(GALILEO_NANO, presto_file)
    with pytest.raises(ModelError, match="it is the published galileo-nano file"):
        load_encoder(PRESTO, galileo_file)
    assert parse_encoder(" presto=w/x.pt")[0] is PRESTO


def test_the_wrong_architectures_file_does_not_load(presto_file, galileo_file):
    """Loaded strictly: Galileo's weights do not fit Presto, nor Presto's Galileo."""
    with pytest.raises(ModelError, match="do not fit the presto architecture"):
        load_weights(PRESTO, galileo_file)
    with pytest.raises(ModelError, match="do not fit the galileo-nano architecture"):
        load_weights(GALILEO_NANO, presto_file)


def test_an_input_completing_no_sentinel2_group_is_refused_and_a_partial_one_said():
    """Both encoders read a band group only whole; B2,B3 (no whole group) is refused in one
    line for each, not trained on a constant (Presto) or crashed on (Galileo); bands outside
    every whole group are named once in a warning."""
    from training.models.encoders.galileo import ST_BANDS, ST_GROUPS
    from training.models.encoders.presto import GROUPS
    from training.models.encoders.presto import INPUT_BANDS as PRESTO_BANDS
    from training.models.encoders.registry import S1_GROUP, S2_GROUPS, input_columns

    s2 = {tuple(ST_BANDS[i] for i in idx) for idx in ST_GROUPS.values()}
    assert set(S2_GROUPS) | {S1_GROUP} <= s2  # the groups the encoders embed
    assert set(S2_GROUPS) | {S1_GROUP} <= {tuple(PRESTO_BANDS[i] for i in idx)
                                           for idx in GROUPS.values()}
    for entry in (PRESTO, GALILEO_NANO):
        with pytest.raises(ModelError, match="do not give that: give --bands with a whole"):
            input_columns(entry, ["B2", "B3", "VV"], [0.0] * 3, [1.0] * 3)
    import logging

    from training.models.encoders import registry

    registry._say_unread.cache_clear()  # said once per process: this test's own first time
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    registry.log.addHandler(handler)
    try:
        columns, _, _ = input_columns(GALILEO_NANO, ["B2", "B8", "VV"], [0.0] * 3, [1.0] * 3)
        input_columns(GALILEO_NANO, ["B2", "B8", "VV"], [0.0] * 3, [1.0] * 3)
    finally:
        registry.log.removeHandler(handler)
    assert columns == [0, 1, 2]
    # Sentinel-1 whole with two bands of a Sentinel-2 group: read as before, the rest said
    assert input_columns(PRESTO, ["VV", "VH", "B2", "B3"], [0.0] * 4, [1.0] * 4)[0] == [0, 1, 2, 3]
    assert messages == ["the galileo-nano encoder does not read B2, VV: their groups are "
                        "incomplete (it reads B8); the U-Net beside it reads every band"]
