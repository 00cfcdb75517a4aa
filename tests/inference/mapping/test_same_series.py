"""``isamap-map --backend local`` run again into the same ``--out``: the series it holds.

Real synthetic scenes (GeoTIFFs on disk), real model files, the command's own ``main``. A
finished two-date series is mapped once per module and copied for each test; the test then
runs the command again and compares every file of the folder (bytes and modification times)
before and after:

- the identical request recomputes nothing and says so, date by date;
- a request that would map on another lattice, grid (``--crs``, the model's resolution, the
  scenes' area of other months) or model is refused in one line naming the series' and this
  run's, before any date is composited: no file changes, the dates' stacks included;
- other months of the same series are added beside the finished ones, which are kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import rasterio

from cli.map import main
from tests.support.mapping import model_file

#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("mapping.test_same_series")

FEW = {"s2_days": (3, 13), "cloudy": (13,), "s1_days": (5,)}  # tests/cli/test_map.py's
SIDE = 64
DATES = "2019-06,2021-06"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Scenes of four months (2022-06 shifted 200 m south-east), models, a finished series."""
    from gee_export.local.synthetic import generate_scene

    root = tmp_path_factory.mktemp("same_series")
    scenes = root / "scenes"
    first = generate_scene(scenes / "a", width=SIDE, height=SIDE, progress=False,
                           month="2019-06", **FEW)
    for month, growth in (("2020-06", 1), ("2021-06", 2)):
        generate_scene(scenes / month, width=SIDE, height=SIDE, progress=False, month=month,
                       growth=growth, **FEW)
    generate_scene(scenes / "2022-06", width=SIDE, height=SIDE, progress=False, month="2022-06",
                   origin=(first.grid.x0 + 200, first.grid.y0 - 200), **FEW)

    def model(name: str, grid, threshold: float = 0.12) -> Path:
        return model_file(root / name, grid, name="test-threshold", backend="local",
                          module="tests.support.models", threshold=threshold)

    coarse = dataclasses.replace(first.grid, resolution=20.0, width=SIDE // 2,
                                 height=SIDE // 2)
    made = {"root": root, "scenes": scenes, "model": model("a.pt", first.grid),
            "other": model("b.pt", first.grid, threshold=0.2),
            "coarse": model("c.pt", coarse)}
    made["series"] = root / "series"
    assert main(_args(made, made["series"], DATES)) == 0
    return made


def _args(made: dict, out: Path, months: str, *extra: str, model: str = "model") -> list[str]:
    return ["--backend", "local", "--scenes", str(made["scenes"]), "--months", months,
            "--model", str(made[model]), "--out", str(out), "--tile", "64", "--overlap", "16",
            "--no-progress", "--precision", "fp32", "--channels-last", "off", *extra]


@pytest.fixture
def series(made, tmp_path) -> Path:
    """A copy of the finished series (files and modification times as the run left them)."""
    out = tmp_path / "series"
    shutil.copytree(made["series"], out)
    return out


def _files(out: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``out``: its modification time and content digest."""
    return {str(p.relative_to(out)): (p.stat().st_mtime_ns,
                                      hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(out.rglob("*")) if p.is_file()}


def test_the_identical_request_again_recomputes_nothing_and_says_so(made, series, capsys):
    """Every date is 'already mapped'; no map, quick-look or stack is written again, and
    the tables and records written again hold the same bytes."""
    before = _files(series)
    capsys.readouterr()
    assert main(_args(made, series, DATES)) == 0
    err = capsys.readouterr().err
    assert "date 2019-06: already mapped" in err and "date 2021-06: already mapped" in err
    assert "tiles in" not in err and "change 2019-06 to 2021-06" not in err
    after = _files(series)
    assert after.keys() == before.keys()
    assert {k: v[1] for k, v in after.items()} == {k: v[1] for k, v in before.items()}
    untouched = [k for k in before if k.endswith((".tif", ".png"))]
    assert len(untouched) >= 10  # the dates', the change map's, the stacks'
    assert {k: after[k] for k in untouched} == {k: before[k] for k in untouched}


@pytest.mark.parametrize(("extra", "months", "told"), [
    (("--tile", "32", "--overlap", "8"), DATES,
     "was mapped on the tile lattice --tile 64 --overlap 16"),
    (("--crs", "EPSG:3857"), DATES, "EPSG:3857"),
    (("--crs", "EPSG:3857"), "2021-06", "EPSG:3857"),  # one date: the series mixed two grids
    ((), "2019-06,2022-06", "42x44 px of 10 m"),  # the common area of other scenes
    ((), "2022-06", "from (238200, 3384800)"),
], ids=["lattice", "crs", "crs-one-date", "area-of-months", "area-of-a-month"])
def test_another_lattice_or_grid_is_refused_in_one_line_and_changes_nothing(
        made, series, capsys, extra, months, told):
    """Each run mapped the asked dates again on its own grid, silently, beside the dates it
    did not ask left on the series' (exit 0); now refused before a date is composited, and
    its dry run says so."""
    before = _files(series)
    capsys.readouterr()
    assert main(_args(made, series, months, *extra, "-q")) == 2
    *warned, line = capsys.readouterr().err.strip().splitlines()
    assert all("not the model's training CRS" in w for w in warned)  # --crs EPSG:3857's
    assert line.startswith("isamap-map: error: ") and told in line and "another --out" in line
    if "lattice" not in told:
        record = json.loads((series / "map.json").read_text())
        bbox = ",".join(repr(v) for v in record["bbox"])
        assert "the grid EPSG:32650 64x64 px of 10 m from (238000, 3385000)" in line
        assert f"--bbox {bbox} --crs EPSG:32650" in line
    assert main(_args(made, series, months, *extra, "-q", "--dry-run")) == 2  # its plan too
    assert capsys.readouterr().err.strip().splitlines()[-1] == line
    assert _files(series) == before


@pytest.mark.parametrize("model", ["other", "coarse"])
def test_another_model_is_refused_before_a_stack_is_composited(made, series, capsys, model):
    """Another model's dates were refused only when the first date's stack had been made
    again (at the other model's 20 m grid: the series' stack overwritten, exit 2); now
    refused first, naming both models, and the grid where the model's resolution moves it."""
    before = _files(series)
    capsys.readouterr()
    assert main(_args(made, series, DATES, "-q", model=model)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "by the model test-threshold (id " in line and "--model a.pt" in line
    assert ("32x32 px of 20 m" in line) == (model == "coarse")
    assert _files(series) == before


def test_a_date_without_the_series_record_is_refused_by_its_own_grid(made, series, capsys):
    """A killed run leaves dates before map.json: each date's COG is read for its grid."""
    (series / "map.json").unlink()
    before = _files(series)
    capsys.readouterr()
    assert main(_args(made, series, "2021-06", "--crs", "EPSG:3857", "-q")) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "date 2019-06 of the series in" in line and "its area and --crs EPSG:32650" in line
    assert _files(series) == before


@pytest.mark.slow
def test_other_months_are_added_and_the_finished_ones_kept(made, series, capsys):
    """Overlapping --months on the series' area: 2021-06 is kept as it was, 2020-06 mapped;
    and a month of scenes elsewhere, mapped with the --bbox the refusal names, joins the
    series on its grid."""
    before = _files(series)
    capsys.readouterr()
    assert main(_args(made, series, "2020-06,2021-06")) == 0
    err = capsys.readouterr().err
    assert "date 2021-06: already mapped" in err and "date 2020-06: " in err
    after = _files(series)
    kept = [k for k in before if k.startswith(("2019-06/", "2021-06/")) and k.endswith(".tif")]
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}
    assert main(_args(made, series, "2022-06", "-q")) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    flags = line[line.index("--bbox "):line.index(", or into")].split()
    assert main(_args(made, series, "2021-06,2022-06", *flags)) == 0
    assert "date 2021-06: already mapped" in capsys.readouterr().err
    with rasterio.open(series / "2022-06" / "isa_2022-06_class.tif") as new, \
            rasterio.open(series / "2019-06" / "isa_2019-06_class.tif") as old:
        assert (new.crs, new.transform, new.shape) == (old.crs, old.transform, old.shape)
    assert {k: _files(series)[k] for k in kept} == {k: before[k] for k in kept}
