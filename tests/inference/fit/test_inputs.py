"""Training points read from several files: a point is its place, not its id."""

from __future__ import annotations

import pytest

from core.errors import InputDataError
from inference.fit.inputs import read_training_points


def _csv(path, rows):
    path.write_text("id,lon,lat,reference\n" + "".join(f"{i},{x},{y},{c}\n"
                                                        for i, x, y, c in rows))
    return str(path)


def test_two_labellers_numbering_alike_are_read_as_one_set(tmp_path):
    a = _csv(tmp_path / "a.csv", [(1, 114.1, 30.1, "impervious"), (2, 114.2, 30.2, "pervious")])
    b = _csv(tmp_path / "b.csv", [(1, 114.3, 30.3, "pervious"), (2, 114.2, 30.2, "pervious")])
    points = read_training_points([a, b], ["pervious", "impervious"])
    # b's point 2 is a's point 2 (same place, same class): kept once; b's 1 is named by file
    assert points.ids == ("1", "2", "b.csv:1")
    assert points.reference.tolist() == [1, 0, 0] and points.lon.tolist() == [114.1, 114.2,
                                                                              114.3]
    (tmp_path / "x").mkdir()
    again = _csv(tmp_path / "x" / "b.csv", [(1, 114.4, 30.4, "pervious")])
    ids = read_training_points([a, b, again], ["pervious", "impervious"]).ids
    assert ids == ("1", "2", "b.csv:1", "b.csv:1 (2)")  # two files named alike: still apart


def test_one_place_labelled_with_two_classes_is_refused(tmp_path):
    one = _csv(tmp_path / "one.csv", [("p0", 114.1, 30.1, "impervious"),
                                      ("q0", 114.1, 30.1, "pervious")])
    with pytest.raises(InputDataError, match=r"point q0 of .*one\.csv lies where point p0 of "
                                             r".*one\.csv lies, with another class"):
        read_training_points([one], ["pervious", "impervious"])
    twice = _csv(tmp_path / "twice.csv", [("p0", 114.1, 30.1, "impervious"),
                                          ("p0", 114.2, 30.2, "pervious")])
    with pytest.raises(InputDataError, match="point id p0 names more than one point"):
        read_training_points([twice], ["pervious", "impervious"])


def test_decimal_commas_of_a_semicolon_file_are_read_and_a_bad_number_named(tmp_path):
    """A spreadsheet of a decimal-comma country saves ``114,2892;30,5312``: refused before
    as "could not convert string to float", naming no point."""
    path = tmp_path / "eu.csv"
    path.write_text("id;lon;lat;reference\na;114,2892;30,5312;impervious\n"
                    "b;114,3;30,6;pervious\n")
    points = read_training_points([str(path)], ["pervious", "impervious"])
    assert points.lon.tolist() == [114.2892, 114.3] and points.lat.tolist() == [30.5312, 30.6]
    path.write_text("id;lon;lat;reference\na;114,2892;30,5312;impervious\n"
                    "b;east;30,6;pervious\n")
    with pytest.raises(InputDataError, match="the lon of point b is 'east', not a number"):
        read_training_points([str(path)], ["pervious", "impervious"])


def test_a_fits_messages_name_no_design_nor_strata(tmp_path, caplog):
    """The readers are the assessment's: a fit's points file was told it "is scored with
    --design" and that its unlabelled points' classes are "as those of their stratum"."""
    import logging

    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,lon,lat,label\na,114.1,30.1,impervious\n")
    with pytest.raises(InputDataError) as err:
        read_training_points([str(wrong)], ["pervious", "impervious"])
    assert "--reference-column" in str(err.value) and "--design" not in str(err.value)
    some = _csv(tmp_path / "some.csv", [("a", 114.1, 30.1, "impervious"),
                                        ("b", 114.2, 30.2, "nodata"),
                                        ("c", 114.3, 30.3, "pervious")])
    with caplog.at_level(logging.WARNING):
        points = read_training_points([some], ["pervious", "impervious"])
    assert points.ids == ("a", "c")
    assert "are left out of the fit" in caplog.text and "stratum" not in caplog.text


def test_a_fits_file_without_positions_is_refused_naming_them(tmp_path):
    ids_only = tmp_path / "ids.csv"
    ids_only.write_text("id,reference\na,impervious\nb,pervious\n")
    with pytest.raises(InputDataError, match=r"lacks the columns \['lon', 'lat'\]"):
        read_training_points([str(ids_only)], ["pervious", "impervious"])
