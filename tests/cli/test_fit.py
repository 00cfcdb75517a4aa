"""``isamap-fit``: labelled points to a model file that ``isamap-predict`` maps with.

On the demo's SYNTHETIC scene (composited by the local backend, as ``isamap-demo`` does)
and on a real Dynamic World tile exported as a user exports it: points in the files people
label with (a CSV, a Collect Earth Online export, the labelling app's export), the fit, the
map, and the map scored on labelled pixels no point came from. Bad input is one line, exit 2:
points outside the stack, no point of a class, too few points, an accuracy assessment's
design (its folder, its record, its blind files), a wrong encoder file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform

from cli.fit import build_parser, main
from cli.predict import predict_main
from contract.bands import LABEL_NODATA, stack_series_bands
from inference.assess.point_files import write_design
from inference.demo.steps import build_stack_for_demo
from tests.support.lock_holder import files_under, held_elsewhere
from tests.support.refusals import assert_refused, case
from tests.support.scenes import undated_copy
from tests.support.shared_files import private_strings
from training.metrics import roc_auc

NAMES = ("pervious", "impervious")
SIX = "B2,B3,B4,B8,VV,VH"


#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("cli.test_fit")


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory):
    from gee_export.local.synthetic import generate_scene

    root = tmp_path_factory.mktemp("demo")
    scene = generate_scene(root / "scene", width=256, height=256, fine_scale=2, progress=False)
    return build_stack_for_demo(scene, root / "stack")


def labelled_pixels(label_path: str | Path, n: int, seed: int = 0, rows: slice = slice(None)):
    """``n`` random labelled pixels of a 0/1/255 label: lon, lat, class code, (row, col)."""
    with rasterio.open(label_path) as src:
        label, transform, crs = src.read(1), src.transform, src.crs
    mask = np.zeros(label.shape, bool)
    mask[rows] = True
    r, c = np.nonzero(mask & (label != LABEL_NODATA))
    pick = np.random.default_rng(seed).choice(r.size, n, replace=False)
    r, c = r[pick], c[pick]
    xs, ys = transform @ (c + 0.5, r + 0.5)
    lon, lat = warp_transform(crs, "EPSG:4326", list(xs), list(ys))
    return np.asarray(lon), np.asarray(lat), label[r, c].astype(int), (r, c)


def write_points(path: Path, lon, lat, codes, names: bool = True) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "lon", "lat", "reference"])
        for i, (x, y, k) in enumerate(zip(lon, lat, codes, strict=True)):
            w.writerow([f"t{i}", f"{x:.8f}", f"{y:.8f}", NAMES[k] if names else k])
    return path


def f1_of(predicted: np.ndarray, truth: np.ndarray) -> float:
    tp = int(((predicted == 1) & (truth == 1)).sum())
    return 2 * tp / max(1, int((predicted == 1).sum() + (truth == 1).sum()))


def _stack(path: Path, bands: list[str], month: str = "2019-06") -> Path:
    data = np.random.default_rng(0).uniform(0.01, 0.3, (len(bands), 32, 32)).astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=len(bands),
                       dtype="float32", crs="EPSG:32633", nodata=np.nan,
                       transform=from_origin(500000, 5100000, 10, 10)) as dst:
        dst.write(data)
        dst.descriptions = tuple(bands)
        dst.update_tags(MONTH=month)
    return path


def _points_on_stack(path: Path) -> Path:
    xs = 500000 + 10 * np.arange(2, 30, 3) + 5.0
    lon, lat = warp_transform("EPSG:32633", "EPSG:4326", list(xs), [5100000 - 155.0] * len(xs))
    return write_points(path, lon, lat, np.arange(len(xs)) % 2)


@pytest.fixture(scope="module")
def undated_scenes(demo_stack, tmp_path_factory) -> Path:
    """The demo's scenes with the dates taken out of their names and tags."""
    return undated_copy(Path(demo_stack.image).parents[1] / "scene",
                        tmp_path_factory.mktemp("undated") / "scene")


@pytest.fixture(scope="module")
def refusal_inputs(demo_stack, tmp_path_factory) -> dict[str, str]:
    """What the rows of :func:`test_refusals` name, built once: point files on the demo stack
    (``good``; ``far`` with one point off it, ``one_class``, ``few``; ``off_scenes``,
    ``on_scenes``), label rasters (``blank``, ``moved``), files that are no stack or no
    encoder, and stacks of their own (``series``, ``single``,
    ``july``) with points and polygons on them."""
    root = tmp_path_factory.mktemp("refusals")
    lon, lat, codes, _ = labelled_pixels(demo_stack.label, 60, seed=1)
    write_points(root / "good.csv", lon, lat, codes)
    write_points(root / "far.csv", [*lon, 10.0], [*lat, 50.0], [*codes, 0])
    write_points(root / "one_class.csv", lon, lat, np.zeros(60, int))
    write_points(root / "few.csv", lon[:12], lat[:12], codes[:12])
    lon, lat, codes, _ = labelled_pixels(demo_stack.label, 60, seed=3)
    write_points(root / "on_scenes.csv", lon, lat, codes)
    write_points(root / "off_scenes.csv", np.append(lon, lon[0] + 0.2), np.append(lat, lat[0]),
                 np.append(codes, codes[0]))
    _label_like(demo_stack.label, root / "blank.tif", lambda d: np.full_like(d, 255))
    _label_like(demo_stack.label, root / "moved.tif", shift_m=50_000.0)
    (root / "not-presto.pt").write_bytes(b"0" * 100)
    (root / "notes.txt").write_text("hello\n")
    (root / "text.tif").write_text("not a raster")
    (root / "adir").mkdir()
    scenes = Path(demo_stack.image).parents[1] / "scene"
    series = _stack(root / "series.tif", list(stack_series_bands(SIX.split(","), 2)))
    _stack(root / "single.tif", SIX.split(","))
    _stack(root / "july.tif", SIX.split(","), month="2019-07")
    _points_on_stack(root / "on_stack.csv")
    ring = [[14.55, 45.87], [14.56, 45.87], [14.56, 45.88], [14.55, 45.87]]
    (root / "polygons.geojson").write_text(json.dumps({
        "type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"reference": "pervious"},
             "geometry": {"type": "Point", "coordinates": [14.55, 45.87]}},
            {"type": "Feature", "properties": {"reference": "impervious", "id": "roofs"},
             "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    names = ("good.csv", "far.csv", "one_class.csv", "few.csv", "on_scenes.csv",
             "off_scenes.csv", "blank.tif", "moved.tif", "not-presto.pt", "notes.txt",
             "text.tif", "adir", "single.tif", "july.tif", "on_stack.csv",
             "polygons.geojson", "missing.tif")
    return {"stack": demo_stack.image, "label": demo_stack.label, "month": demo_stack.month,
            "scenes": str(scenes), "series": str(series),
            **{name.split(".")[0].replace("-", "_"): str(root / name) for name in names}}


@pytest.mark.parametrize("argv, says", [
    # the points
    case("a-point-off-the-input", "--points {far}",
         "1 of 61 points lie outside the input ... --input"),
    case("no-point-of-a-class", "--points {one_class}", "no point is labelled 'impervious'"),
    case("too-few-points", "--points {few}", "12 labelled points ... --min-points"),
    case("fewer-than-min-points", "--points {good} --backend local --scenes {scenes} --month "
         "{month} --bands B2,B3,B4,B8 --min-points 1000", "1000"),
    case("polygons", "--points {polygons} --input {july}", "feature 2 (id roofs) is a Polygon; "
         "only Point features are read ... Sample points inside the polygons ... !float()"),
    case("points-from-missing", "--points-from {missing}", "--points-from {missing} does not "
         "exist; give a label GeoTIFF"),
    case("points-from-not-a-raster", "--points-from {text}", "--points-from {text}"),
    case("points-from-no-labelled-pixel", "--points-from {blank}",
         "no pixel of the classes ['pervious', 'impervious']"),
    case("points-from-off-the-stack", "--points-from {moved}", "does not overlap the --input"),
    case("points-from-n-below-1", "--points-from {label} --n 0",
         "argument --n: must be a whole number >= 1, got 0"),
    case("n-without-points-from", "--points {good} --n 50",
         "--n is the number of points drawn"),
    case("points-and-points-from", "--points {good} --points-from {label}", "not both"),
    case("no-points", "", "give the labelled points: --points FILE ... or --points-from"),
    # the stack
    case("input-a-text-file", "--points {good} --input {notes}", "--input {notes} ... it is "
         "not a raster ... give the stack isamap-export wrote"),
    case("input-a-folder", "--points {good} --input {adir}",
         "--input {adir} ... is a folder, not a file"),
    case("bands-the-input-lacks", "--points {good} --bands B2,B3,B11",
         "lacks band(s) ['B11'] ... Give --bands naming bands every --input has"),
    case("inputs-of-other-series-lengths", "--points {on_stack} --input {series} {single}",
         "--input {single} lacks band(s) ['B2_m1' ... that --input {series} has ... export "
         "every --input with the same isamap-export --series-months 2 ... !isamap-map"),
    case("month-contradicts-the-stack", "--points {on_stack} --input {july} --month 2019-03",
         "--month 2019-03, but --input {july} is of 2019-07 (its MONTH tag)"),
    case("encoder-file-not-presto", "--points {good} --features presto --encoder "
         "presto={not_presto}", "sha256 ... github.com/nasaharvest/presto"),
    # the local backend
    case("points-off-the-scenes", "--points {off_scenes} --backend local --scenes {scenes} "
         "--month {month} --bands B2,B3,B4,B8", "1 of 61 points lie outside the area the "
         "scenes of ... check their coordinates"),
    case("a-month-without-scenes", "--points {on_scenes} --backend local --scenes {scenes} "
         "--month 2020-06 --bands B2,B3,B4,B8",
         "no Sentinel-2 scene acquired in 2020-06 for grid ... add scenes or pick another month"),
    case("scenes-without-dates", "--points {on_scenes} --backend local --scenes {undated} "
         "--month {month} --bands B2,B3,B4,B8", "--scene-date YYYY-MM-DD"),
    case("scene-date-not-a-date", "--points {on_scenes} --backend local --scenes {undated} "
         "--month {month} --bands B2,B3,B4,B8 --scene-date 10/06/2019",
         "--scene-date must be YYYY-MM-DD"),
])
def test_refusals(refusal_inputs, request, tmp_path, capsys, argv, says):
    """Each row: ``isamap-fit`` with the row's words (``--input`` defaults to the demo stack
    unless a backend makes one; ``--out`` to a fresh folder), refused with exit 2 in one line
    holding each part of ``says`` (parts joined by `` ... ``; a part after ``!`` is absent)
    and naming options the command has, leaving no ``--out`` (nor the folders above it)."""
    paths = {**refusal_inputs, "out": str(tmp_path / "new" / "fit")}
    if "{undated}" in argv:
        paths["undated"] = str(request.getfixturevalue("undated_scenes"))
    words = [word.format(**paths) for word in argv.split()]
    if not {"--input", "--backend"} & set(words):
        words += ["--input", paths["stack"]]
    try:
        status = main([*words, "--out", paths["out"], "-q"])
    except SystemExit as stop:  # argparse's own refusals exit while parsing
        status = stop.code
    err = "\n".join(line for line in capsys.readouterr().err.splitlines()
                    if line != "  (isamap-fit --help lists every option, with examples)")
    parts = says.format(**paths).split(" ... ")  # a part after '!': absent
    line = assert_refused(status, err, build_parser(), *[p for p in parts if p[0] != "!"])
    assert not [p for p in parts if p[0] == "!" and p[1:] in line], line
    assert not (tmp_path / "new").exists()


def test_points_to_map_on_the_demo_scene(demo_stack, tmp_path, capsys):
    lon, lat, codes, (r, c) = labelled_pixels(demo_stack.label, 300)
    half = len(lon) // 2
    ceo = tmp_path / "ceo-export.csv"  # Collect Earth Online's sample export, one per plot
    with open(ceo, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["plotid", "sampleid", "lon", "lat", "email", "land cover"])
        for i in range(half):
            w.writerow([i + 1, 1, f"{lon[i]:.8f}", f"{lat[i]:.8f}", "a@b.c", NAMES[codes[i]]])
    app = tmp_path / "app-export.csv"  # the labelling app's export: codes beside names
    with open(app, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "lon", "lat", "land cover", "reference_code"])
        for i in range(half, len(lon)):
            w.writerow([f"p{i + 1:05d}", f"{lon[i]:.8f}", f"{lat[i]:.8f}", codes[i], codes[i]])
    out = tmp_path / "fit"
    assert main(["--points", str(ceo), str(app), "--reference-column", "land cover",
                 "--input", demo_stack.image, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "block CV" in printed and "model:" in printed
    report = json.loads((out / "fit.json").read_text())
    assert report["points"]["points"] == 300 and report["norm"] == "scene"
    assert report["cross_validation"]["auc"] > 0.95
    assert predict_main(["--model", str(out / "model.pt"), "--input", demo_stack.image,
                         "--out", str(tmp_path / "map" / "isa"), "--precision", "fp32",
                         "-q"]) == 0
    with rasterio.open(tmp_path / "map" / "isa_class.tif") as src:
        mapped = src.read(1)
    with rasterio.open(demo_stack.label) as src:
        truth = src.read(1)
    unseen = truth != LABEL_NODATA
    unseen[r, c] = False  # scored where no point was
    assert f1_of(mapped[unseen], truth[unseen]) > 0.85


@pytest.mark.slow
def test_points_to_map_on_a_real_tile(shared_data, tmp_path):
    from experiments.builtup_commands import Budget, export
    from experiments.builtup_tiles import built_label, find_tile, scene_folder

    tile = find_tile(shared_data / "dynamicworld_s2", "java")
    stack = export(tile, scene_folder(tile, tmp_path / "scenes"), tmp_path / "export",
                   ("B2", "B3", "B4", "B8", "B11", "B12"), Budget())
    label = tmp_path / "built.tif"  # the tile's classes as built (1) against the rest (0)
    truth = built_label(tile)
    with rasterio.open(tile.label) as src:
        profile = src.profile | {"dtype": "uint8", "nodata": LABEL_NODATA}
    with rasterio.open(label, "w", **profile) as dst:
        dst.write(truth, 1)
    lon, lat, codes, _ = labelled_pixels(label, 300, rows=slice(0, 220))  # the north
    points = write_points(tmp_path / "points.csv", lon, lat, codes, names=False)
    out = tmp_path / "fit"
    assert main(["--points", str(points), "--input", str(stack), "--out", str(out), "-q"]) == 0
    assert predict_main(["--model", str(out / "model.pt"), "--input", str(stack), "--out",
                         str(tmp_path / "map" / "java"), "--precision", "fp32", "-q"]) == 0
    # the map on the tile's southern rows, which no point came from
    with rasterio.open(tmp_path / "map" / "java_prob.tif") as src:
        window = src.window(*tile.footprint.bounds()).round_offsets().round_lengths()
        prob = src.read(1, window=window, boundless=True, fill_value=255).astype(float)
        scale = float(src.tags()["probability_scale"])
    south = (np.arange(truth.shape[0]) >= 240)[:, None] & (truth != LABEL_NODATA) \
        & (prob != 255)
    assert roc_auc(prob[south] / scale, truth[south]) > 0.85
    model_record = json.loads((out / "fit.json").read_text())
    assert model_record["cross_validation"]["auc"] > 0.85


def test_a_second_fit_into_a_held_folder_is_refused_and_writes_nothing(demo_stack, tmp_path,
                                                                       capsys):
    """Two fits with one --out both wrote model.pt and fit.json there, each over the other's.
    Now the second is refused in one line naming the first, and the folder is left as it is."""
    lon, lat, codes, _ = labelled_pixels(demo_stack.label, 60, seed=1)
    argv = ["--points", str(write_points(tmp_path / "good.csv", lon, lat, codes)),
            "--input", demo_stack.image, "--out", str(tmp_path / "out"), "--folds", "2"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "fit.json").write_text("the other run's report")
    with held_elsewhere(out) as holder:
        before = files_under(out)  # the other run's file and its lock
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert files_under(out) == before
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"pid {holder.pid}" in lines[0], err
    assert "in use by another isamap run" in lines[0]
    assert main(argv) == 0  # the holder gone, the same command runs
    assert (out / "model.pt").is_file() and not (out / ".isamap.lock").exists()
    assert json.loads((out / "fit.json").read_text())["points"]["points"] == 60


def test_a_fit_into_another_fits_folder_is_refused_and_the_same_one_runs(demo_stack, tmp_path,
                                                                         capsys):
    """A fit of other points into the --out of a finished fit replaced its model.pt without a
    word (exit 0). Now one line says another fit's model is there; the same command runs."""
    lon, lat, codes, _ = labelled_pixels(demo_stack.label, 60, seed=1)
    out = tmp_path / "out"
    common = ["--input", demo_stack.image, "--out", str(out), "--folds", "2", "-q"]
    first = ["--points", str(write_points(tmp_path / "a.csv", lon, lat, codes)), *common]
    assert main(first) == 0
    model = (out / "model.pt").read_bytes()
    capsys.readouterr()
    other = write_points(tmp_path / "b.csv", lon[::-1], lat[::-1], codes[::-1])
    for argv in (["--points", str(other), *common], [*first, "--hidden", "4"]):
        line = assert_refused(main(argv), capsys.readouterr().err, build_parser(),
                              f"--out {out} holds another fit's model",
                              "give another --out, or delete that folder first")
        assert (out / "model.pt").read_bytes() == model, line
    assert main(first) == 0  # the identical command fits again, as it did


@pytest.mark.slow
def test_an_assessment_design_is_refused_and_a_training_design_read(demo_stack, tmp_path,
                                                                      capsys):
    parser = build_parser()
    model = tmp_path / "fit"
    lon, lat, codes, _ = labelled_pixels(demo_stack.label, 200, seed=2)
    points = write_points(tmp_path / "points.csv", lon, lat, codes)
    assert main(["--points", str(points), "--input", demo_stack.image, "--out", str(model),
                 "-q"]) == 0
    assert predict_main(["--model", str(model / "model.pt"), "--input", demo_stack.image,
                         "--out", str(tmp_path / "map" / "isa"), "-q"]) == 0
    cog = str(tmp_path / "map" / "isa_class.tif")
    blind = tmp_path / "design"
    write_design(cog, blind, n=100, seed=0)
    capsys.readouterr()
    common = ["--input", demo_stack.image, "--out", str(tmp_path / "again")]
    for given in (blind, blind / "sample.json", blind / "design_points.csv",
                  blind / "sample.csv", blind / "sample.geojson"):
        status = main(["--points", str(given), *common])
        line = assert_refused(status, capsys.readouterr().err, parser, "kept apart")
        assert "isamap-assess" in line
    moved = tmp_path / "moved.csv"  # the blind file away from its design keeps its strata_id
    moved.write_text((blind / "sample.csv").read_text())
    status = main(["--points", str(moved), *common])
    assert_refused(status, capsys.readouterr().err, parser, "strata_id")
    # a design drawn with the map class shown is labelled for training: read
    shown = tmp_path / "shown"
    written = write_design(cog, shown, n=100, seed=1, show_map_class=True)
    with rasterio.open(demo_stack.label) as src:
        truth, transform, crs = src.read(1), src.transform, src.crs
    with open(written.files["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        x, y = warp_transform("EPSG:4326", crs, [float(row["lon"])], [float(row["lat"])])
        r, c = rasterio.transform.rowcol(transform, x[0], y[0])
        row["reference"] = str(int(truth[r, c])) if truth[r, c] != LABEL_NODATA else ""
    with open(written.files["csv"], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["--points", str(written.files["csv"]), *common, "-q"]) == 0


def _ceo_export(plots: Path, truth_of, out: Path) -> Path:
    """A Collect Earth Online sample export of a plot file, labelled: one sample per plot, the
    plot file's extra columns back as ``pl_<name>``."""
    with open(plots) as fh:
        rows = list(csv.DictReader(fh))
    extra = [k for k in rows[0] if k not in ("PLOTID", "LON", "LAT")]
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["plotid", "sampleid", "lon", "lat", "email",
                    *(f"pl_{k.lower()}" for k in extra), "land cover"])
        for row in rows:
            w.writerow([row["PLOTID"], 1, row["LON"], row["LAT"], "a@b.c",
                        *(row[k] for k in extra), truth_of(float(row["LON"]), float(row["LAT"]))])
    return out


@pytest.mark.slow
def test_the_ceo_export_of_a_blind_design_is_refused_as_its_sample_csv_is(demo_stack, tmp_path,
                                                                          capsys):
    """A blind design's sample.csv was refused while its Collect Earth Online export (rows
    carrying pl_strata_id) was fitted on, exit 0: one rule now judges both; the export of a
    design drawn with the map class shown is read for training."""
    with rasterio.open(demo_stack.label) as src:
        truth, transform, crs = src.read(1), src.transform, src.crs

    def truth_of(lon: float, lat: float) -> str:
        x, y = warp_transform("EPSG:4326", crs, [lon], [lat])
        code = truth[rasterio.transform.rowcol(transform, x[0], y[0])]
        return NAMES[code] if code != LABEL_NODATA else ""

    common = ["--input", demo_stack.image, "--out", str(tmp_path / "fit"),
              "--reference-column", "land cover", "--folds", "2", "-q"]
    blind = write_design(demo_stack.label, tmp_path / "blind", n=100, seed=0)
    export = _ceo_export(blind.files["ceo"], truth_of, tmp_path / "ceo-export.csv")
    assert_refused(main(["--points", str(export), *common]), capsys.readouterr().err,
                   build_parser(), f"--points {export} carries the strata_id of a blind "
                   "sample design", "kept apart")
    assert not (tmp_path / "fit").exists()
    shown = write_design(demo_stack.label, tmp_path / "shown", n=100, seed=1,
                         show_map_class=True)
    export = _ceo_export(shown.files["ceo"], truth_of, tmp_path / "ceo-shown.csv")
    assert main(["--points", str(export), *common]) == 0


@pytest.mark.slow
def test_backend_local_makes_the_stack_over_the_points(demo_stack, tmp_path):
    scenes = Path(demo_stack.image).parents[1] / "scene"  # the scene folder the stack came from
    lon, lat, codes, _ = labelled_pixels(demo_stack.label, 150, seed=3)
    inner = (lon > np.quantile(lon, 0.2)) & (lat > np.quantile(lat, 0.2))  # a part of the scene
    points = write_points(tmp_path / "points.csv", lon[inner], lat[inner], codes[inner])
    out = tmp_path / "fit"
    assert main(["--points", str(points), "--backend", "local", "--scenes", str(scenes),
                 "--month", demo_stack.month, "--bands", "B2,B3,B4,B8", "--out", str(out),
                 "-q"]) == 0
    (stack,) = (out / "stack").glob("stack_*_image.tif")
    with rasterio.open(stack) as src, rasterio.open(demo_stack.image) as whole:
        assert src.descriptions == ("B2", "B3", "B4", "B8") and src.crs == whole.crs
        assert src.width < whole.width + 64  # the points' box and its margin, not more
    record = json.loads((out / "fit.json").read_text())
    assert record["stacks"] == [f"stack/{stack.name}"]  # shared: no folder of this machine
    home = str(Path.home())
    assert private_strings(out, [str(tmp_path), str(scenes), *([home] if len(home) > 1
                                                                else [])]) == []
    from training.modelfile import read_model_file

    meta, _ = read_model_file(out / "model.pt")
    dataset = meta.extra["dataset"]
    assert dataset["backend"] == "local" and dataset["months"] == [demo_stack.month]
    assert predict_main(["--model", str(out / "model.pt"), "--input", str(stack), "--out",
                         str(tmp_path / "map" / "isa"), "-q"]) == 0


def test_backend_local_reads_the_scenes_with_the_exports_scene_date(demo_stack, undated_scenes,
                                                                     tmp_path):
    """Scenes whose files carry no date are exported with --scene-date, which isamap-fit
    --backend local did not take: such a folder could not be fitted on (test_refusals). Both
    its extent check and its stack now read the scenes with the date given, and the model
    records it."""
    scenes = undated_scenes
    lon, lat, codes, _ = labelled_pixels(demo_stack.label, 60, seed=3)
    points = write_points(tmp_path / "points.csv", lon, lat, codes)
    common = ["--points", str(points), "--backend", "local", "--scenes", str(scenes),
              "--month", demo_stack.month, "--bands", "B2,B3,B4,B8", "--folds", "2", "-q"]
    date = f"{demo_stack.month}-10"
    assert main([*common, "--scene-date", date, "--out", str(tmp_path / "fit")]) == 0
    from training.modelfile import read_model_file

    meta, _ = read_model_file(tmp_path / "fit" / "model.pt")
    assert meta.extra["dataset"]["recipe"]["scene_date"] == date  # isamap-map reads it alike


def _ee_job(argv: list[str]):
    from cli.fit import job_of

    return job_of(build_parser().parse_args(argv))


@pytest.mark.slow
def test_backend_ee_fetches_the_stack_and_records_the_recipe(demo_stack, tmp_path, ee_offline):
    from gee_export.ee.prediction_stack import recipe_for_month
    from inference.fit.job import run_fit
    from testing.fake_server import StackTransport
    from tests.support.killed_export import session_for
    from training.modelfile import read_model_file

    lon, lat, codes, _ = labelled_pixels(demo_stack.label, 150, seed=4)
    points = write_points(tmp_path / "points.csv", lon, lat, codes)
    out = tmp_path / "fit"
    job = _ee_job(["--points", str(points), "--backend", "ee", "--month", demo_stack.month,
                   "--bands", "B2,B3,B4,B8,VV,VH", "--out", str(out)])
    transport = StackTransport(demo_stack, info=lambda text: 5)
    result = run_fit(job, session=session_for(transport))
    assert transport.served  # computePixels answered from the stack
    meta, _ = read_model_file(result.model)
    dataset = meta.extra["dataset"]
    assert dataset["backend"] == "ee" and dataset["sources"][demo_stack.month]["s2_window"]
    date = recipe_for_month(dataset["recipe"], meta.bands, demo_stack.month,
                            dataset["sources"])  # what isamap-map rebuilds a date from
    assert date.recipe.bands == meta.bands
    assert result.report["cross_validation"]["auc"] > 0.9


@pytest.mark.slow
def test_backend_ee_fits_on_the_satellite_embedding(tmp_path, ee_offline):
    from contract.grid import Grid
    from inference.fit.job import run_fit
    from testing.fake_server import StackTransport
    from tests.support.embedding import embedding_stack
    from tests.support.killed_export import session_for

    grid = Grid(crs="EPSG:32650", x0=400000.0, y0=3380000.0, width=96, height=96,
                resolution=10.0, patch_size=32, stride=32)
    stack, native = embedding_stack(tmp_path, grid, "2021-06")
    lon, lat, codes, _ = labelled_pixels(stack.label, 120, seed=5)
    points = write_points(tmp_path / "points.csv", lon, lat, codes)
    job = _ee_job(["--points", str(points), "--backend", "ee", "--month", "2021-06",
                   "--bands", "aef", "--block", "200", "--out", str(tmp_path / "fit")])
    transport = StackTransport(stack, info=lambda text: 1)  # one image of the year
    result = run_fit(job, session=session_for(transport))
    assert all(len(bands) == 64 for _, bands in transport.served)
    assert result.report["bands"][0] == "A00" and len(result.report["bands"]) == 64
    assert result.report["cross_validation"]["auc"] > 0.9  # the label is A00's sign
    (written,) = (tmp_path / "fit" / "stack").glob("*.tif")
    with rasterio.open(written) as src:  # the embedding's values, as published, not integers
        a00 = src.read(1)
    from gee_export.ee.embedding import dequantise
    from testing.fake_server import quantise

    expected = dequantise(quantise(native[0]))
    r0 = round((src.transform.f - grid.y0) / 10)
    c0 = round((grid.x0 - src.transform.c) / 10)
    inside = a00[r0:r0 + 96, c0:c0 + 96]
    np.testing.assert_allclose(inside[10:, 10:], expected[10:, 10:])
    # the stack maps with the model at once, as the command's output says
    assert predict_main(["--model", str(result.model), "--input", str(written), "--out",
                         str(tmp_path / "map" / "aef"), "--precision", "fp32", "-q"]) == 0
    with rasterio.open(tmp_path / "map" / "aef_class.tif") as src:
        mapped = src.read(1)[r0:r0 + 96, c0:c0 + 96]
    truth = (native[0] > 0).astype(np.uint8)
    assert (mapped[10:, 10:] == truth[10:, 10:]).mean() > 0.75  # 120 points, 64 dimensions


def test_backend_ee_without_credentials_advises_fitting_not_exporting(tmp_path, capsys,
                                                                     monkeypatch):
    """The authentication advice of isamap-fit --backend ee was the export's ('To use the
    Earth Engine backend ... isamap-export --backend local'): it now names fitting's ways."""
    home = tmp_path / "home"  # no Earth Engine login, no service account
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "EE_PROJECT", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    spread = np.arange(40)  # enough points in enough blocks: the counts pass before any login
    points = write_points(tmp_path / "points.csv", 117.0 + 0.02 * spread,
                          np.full(40, 30.7), spread % 2)
    code = main(["--points", str(points), "--backend", "ee", "--month", "2021-06", "--bands",
                 "B2,B3,B4,B8", "--out", str(tmp_path / "fit"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert "To make the stack over the points with Earth Engine (--backend ee), do ONE of:" in err
    assert "isamap-fit --backend local --scenes DIR" in err and "isamap-fit --input" in err
    assert "isamap-export" not in err and "Earth Engine backend," not in err


def _label_like(label: str | Path, path: Path, change=None, shift_m: float = 0.0) -> Path:
    """A copy of ``label`` with its pixels changed by ``change`` and its grid moved east."""
    with rasterio.open(label) as src:
        profile, data = src.profile, src.read(1)
    profile["transform"] = rasterio.Affine.translation(shift_m, 0) * profile["transform"]
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(change(data) if change else data, 1)
    return path


@pytest.mark.slow
def test_points_drawn_from_a_label_raster_are_recorded_and_drawn_again_alike(demo_stack,
                                                                             tmp_path):
    """``--points-from LABEL.tif --n N`` fits on N points drawn from the label, by --seed."""
    from training.modelfile import read_model_file

    records = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["--points-from", demo_stack.label, "--n", "200", "--input",
                     demo_stack.image, "--out", str(out), "-q"]) == 0
        meta, _ = read_model_file(out / "model.pt")
        records.append(json.dumps(meta.extra["points"], sort_keys=True))
    assert records[0] == records[1]  # the same seed draws the same points
    record = json.loads(records[0])
    assert record["drawn"] == {"raster": Path(demo_stack.label).name, "n": 200, "seed": 0,
                               "rule": "equal",
                               "per_class": {"pervious": 100, "impervious": 100}}
    assert record["used"] == 200 and "files" not in record
    assert str(tmp_path) not in records[0]  # the raster's name, not its path


def test_points_drawn_from_a_label_are_stratified_by_class(demo_stack, tmp_path, caplog):
    """An equal share per class, each point its pixel's class; a rare class gives all it has."""
    from inference.assess.strata import values_at as label_at
    from inference.fit.drawn import draw_points

    drawn = draw_points(demo_stack.label, 200, 0, NAMES, (demo_stack.image,))
    assert np.bincount(drawn.points.reference).tolist() == [100, 100]
    assert (label_at(demo_stack.label, drawn.points.lon, drawn.points.lat)
            == drawn.points.reference).all()
    again = draw_points(demo_stack.label, 200, 0, NAMES, (demo_stack.image,))
    other = draw_points(demo_stack.label, 200, 1, NAMES, (demo_stack.image,))
    assert np.array_equal(again.points.lon, drawn.points.lon)
    assert not np.array_equal(other.points.lon, drawn.points.lon)

    def rare(data: np.ndarray) -> np.ndarray:  # 30 impervious pixels left, and a value 7
        data = data.copy()
        data.flat[np.flatnonzero(data == 1)[30:]] = LABEL_NODATA
        data[:8, :8] = 7  # no class the fit knows: never drawn
        return data

    path = _label_like(demo_stack.label, tmp_path / "rare.tif", rare)
    with caplog.at_level("INFO", logger="inference.fit.drawn"):
        drawn = draw_points(str(path), 200, 0, NAMES)
    assert drawn.record["per_class"] == {"pervious": 170, "impervious": 30}
    assert drawn.record["rule"] == "proportional" and "in proportion" in caplog.text
    assert (label_at(str(path), drawn.points.lon, drawn.points.lat)
            == drawn.points.reference).all()
