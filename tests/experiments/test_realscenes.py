"""The experiments run the product's console commands as processes and stop on a failure."""

from __future__ import annotations

import pytest

from experiments.realscenes import (
    CommandFailed,
    Footprint,
    bbox_argument,
    command_line,
    format_table,
    run_product,
)


def test_a_failing_command_stops_the_experiment_with_its_command_line(capfd):
    with pytest.raises(CommandFailed, match=r"isamap-export exited 2.*--workers 0"):
        run_product("isamap-export", ["--bbox", "1,1,2,2", "--workers", "0", "--dry-run"])
    assert "--workers must be between 1 and" in capfd.readouterr().err
    assert command_line("isamap-train")  # the console script, or the entry function


def test_footprint_rows_and_degrees(shared_data):
    fp = Footprint.of(shared_data / "dynamicworld_s2" / "java_label.tif")
    assert fp.bounds() == (590130.0, 9100500.0, 595230.0, 9103900.0)
    assert fp.bounds(240) == (590130.0, 9100500.0, 595230.0, 9101500.0)
    west, south, east, north = fp.lonlat_bbox()
    assert 111.8 < west < east < 111.9 and -8.2 < south < north < -8.1  # south of the equator
    assert bbox_argument((1.5, -8.25, 2, -8)) == "--bbox=1.5000000,-8.2500000,2.0000000,-8.0000000"


def test_table_is_fixed_width():
    text = format_table([("unet-s2", 0.81234, 3), ("NDBI", "", 12)], ("map", "F1", "n"))
    lines = text.splitlines()
    assert lines[0].startswith("map") and "0.812" in lines[2] and len({len(lines[0]),
                                                                       len(lines[1])}) == 1


def test_calibration_scores_recover_the_networks_probabilities_from_a_calibrated_map():
    """Probabilities true at T = 1, mapped at T = 2.5: the map is off, its inverse is not."""
    import numpy as np

    from experiments.realscenes import binary_at_temperature, calibration_scores

    rng = np.random.default_rng(0)
    raw = rng.uniform(0.02, 0.98, 200_000)
    truth = (rng.uniform(size=raw.size) < raw).astype(np.int64)
    mapped = np.round(binary_at_temperature(raw, 1.0, to=2.5) * 250) / 250  # as a COG stores
    s = calibration_scores(mapped, truth, 2.5, 0.5 / 250)
    assert s["temperature"] == 2.5 and s["ece_built_uncalibrated"] < 0.01
    assert s["ece_built"] > 0.1
    assert sum(s["reliability"]["mapped"]["count"]) == raw.size
