"""The TerraMesh cells as the fusion experiment reads them, on the real files."""

from __future__ import annotations

import numpy as np

from contract.dataset import write_index
from core.storage import open_store
from experiments.realscenes import Footprint
from experiments.terramesh import TM_FOLDER, built_label, find_cells, scene_folder, split_area
from gee_export.local.scenes import S2_L2A_ORDER, discover_scenes


def test_cells_are_found_with_their_s2_dates_and_local_utm(shared_data):
    cells = {c.name: c for c in find_cells(shared_data / TM_FOLDER)}
    assert set(cells) == {"282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0"}
    assert cells["433D_629L_3_1"].date == "2020-04-08"  # the land cover's (= S2) date
    assert {c.footprint.crs for c in cells.values()} == {
        "EPSG:32722", "EPSG:32736", "EPSG:32718", "EPSG:32616"}  # three southern zones
    assert (built_label(cells["433D_629L_3_1"]) == 1).sum() == 11_742
    assert (built_label(cells["609U_541L_3_0"]) == 1).sum() == 0  # snow


def test_scene_folder_needs_the_band_names_and_date_it_is_given(shared_data, tmp_path):
    cell = {c.name: c for c in find_cells(shared_data / TM_FOLDER)}["38D_378R_2_3"]
    folder = scene_folder(cell, tmp_path)
    import datetime as dt

    found = discover_scenes(folder, s2_band_names=S2_L2A_ORDER,
                            date=dt.date.fromisoformat(cell.date))
    (s1,), (s2,) = found.s1, found.s2
    assert s1.band_names == ("VV", "VH") and s2.band_names == S2_L2A_ORDER
    assert [p.parent.name for p in found.labels] == ["labels"]


def test_split_area_marks_the_pixels_of_one_split(tmp_path, shared_data):
    cell = find_cells(shared_data / TM_FOLDER)[0]
    fp: Footprint = cell.footprint
    west, _, _, north = fp.bounds()
    common = {"month": "2020-01", "valid_fraction": 1.0, "isa_fraction": 0.0}
    records = [{"split": "test", "bounds": [west + 100, north - 740, west + 740, north - 100]},
               {"split": "train", "bounds": [west, north - 640, west + 640, north]}]
    records = [{**common, **r, "id": f"p{i}", "row": i, "col": 0, "image": f"p{i}_image.tif",
                "label": f"p{i}_label.tif"} for i, r in enumerate(records)]
    write_index(open_store(tmp_path), records)
    area = split_area(tmp_path, fp, "test")
    assert area.sum() == 64 * 64 and area[10:74, 10:74].all()
    assert not np.any(area[:10]) and not np.any(area[:, :10])


def test_the_experiment_passes_trust_band_names_to_the_export(shared_data, tmp_path):
    """``--trust-band-names`` existed on the export, but the experiment could not pass it."""
    from experiments.terramesh import Budget, export_arguments, main

    cell = find_cells(shared_data / TM_FOLDER)[0]
    args = export_arguments(cell, tmp_path / "s", tmp_path / "o", ("B2", "B3"), Budget(),
                            trust_band_names=True)
    assert args[-1] == "--trust-band-names" and args.count("--s2-band-names") == 1
    assert "--trust-band-names" not in export_arguments(cell, tmp_path / "s", tmp_path / "o",
                                                        ("B2",), Budget())
    from cli.export import build_parser  # the flag is the export's own

    parsed = build_parser().parse_args(["--dry-run", *args])
    assert parsed.trust_band_names is True
    import pytest

    with pytest.raises(SystemExit) as stop:
        main(["--trust-band-names", "--help"])
    assert stop.value.code == 0
