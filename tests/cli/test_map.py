"""``isamap-map`` from the command line: the offline dry run and bad input, each one line."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from cli.map import main
from tests.support.mapping import model_file, write_month_stack
from tests.support.rasters import smooth_stack
from tests.support.refusals import case

#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("cli.test_map")

#: a month of a local series test: a clear Sentinel-2 date, a cloudy one (the cloud mask still
#: read) and one radar date; what these tests assert does not depend on more acquisitions, and
#: every run discovers (opens) each scene's files again
FEW = {"s2_days": (3, 13), "cloudy": (13,), "s1_days": (5,)}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    stack = write_month_stack(folder, smooth_stack(40, 40))
    return model_file(folder / "unet.pt", stack.grid)


@pytest.fixture(scope="module")
def refusal_inputs(model, tmp_path_factory) -> dict[str, str]:
    """What the rows of :func:`test_refusals` name, built once: GeoJSON files, a local scene
    and its model (``scene``, ``local_model``)."""
    from pyproj import Transformer

    from gee_export.local.synthetic import generate_scene

    root = tmp_path_factory.mktemp("refusals")
    box, local_model = _local_scene(root)
    grid = generate_scene(root / "scene", width=96, height=96, progress=False).grid
    west, south, east, north = Transformer.from_crs(
        grid.crs, "EPSG:4326", always_xy=True).transform_bounds(*grid.bounds)
    x0, y0, x1, y1 = grid.bounds  # the right coordinates, named in the other hemisphere
    hemisphere = "EPSG:327" + grid.crs[-2:] if grid.crs.startswith("EPSG:326") \
        else "EPSG:326" + grid.crs[-2:]

    def zones(name: str, a: float, b: float, s: float, n: float, **extra: object) -> Path:
        (root / name).write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"name": "z"}, "geometry": {
                "type": "Polygon", "coordinates": [[[a, s], [b, s], [b, n], [a, n], [a, s]]]}}],
            **extra}))
        return root / name

    (root / "districts.txt").write_text("not json")
    (root / "my area.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [
        [[117.0, 30.7], [117.01, 30.7], [117.01, 30.71], [117.0, 30.7]]]}))
    (root / "projected.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [
        [[500000, 3400000], [500100, 3400000], [500100, 3399900], [500000, 3400000]]]}))
    paths = {"model": model, "local_model": local_model, "box": box,
             "shifted": zones("shifted.geojson", west + 1, east + 1, south, north),
             "utm": zones("utm.geojson", x0, x1, y0, y1,
                          crs={"type": "name", "properties": {"name": hemisphere}}),
             "extent": f"lon {west:.4f} to {east:.4f}, lat {south:.4f} to {north:.4f}",
             **{name: root / name for name in ("scene", "nowhere")},
             **{name.split(".")[0].replace(" ", "_"): root / name for name in (
                 "districts.txt", "my area.geojson", "projected.geojson")}}
    return {name: str(value) for name, value in paths.items()}


@pytest.fixture(scope="module")
def slow_refusal_inputs(refusal_inputs) -> dict[str, str]:
    """What rows of the slow tier name besides: the scene beside a scene elsewhere
    (``apart``), a land-cover model (``landcover``) and the land cover it keeps (``product``)."""
    import shutil

    import numpy as np
    from affine import Affine
    from pyproj import Transformer

    from contract.geotiff import write_geotiff
    from gee_export.local.synthetic import generate_scene

    scene = Path(refusal_inputs["scene"])
    shutil.copytree(scene, scene.parent / "apart")
    generate_scene(scene.parent / "apart" / "elsewhere", width=96, height=96, seed=1,
                   origin=(700000.0, 3385000.0), progress=False)
    grid = generate_scene(scene, width=96, height=96, progress=False).grid
    west, _, east, north = Transformer.from_crs(
        grid.crs, "EPSG:4326", always_xy=True).transform_bounds(*grid.bounds)
    cell = (east - west) / 32
    product = write_geotiff(scene.parent / "nlcd.tif", np.full((1, 40, 40), 23, np.uint8),
                            Affine(cell, 0, west, 0, -cell, north), "EPSG:4326", None)
    landcover = _landcover_model(scene.parent / "lc.pt", grid)
    return {"apart": str(scene.parent / "apart"), "product": str(product),
            "landcover": str(landcover)}


#: a row of the slow tier: the test it comes from mapped (or planned) a local scene first
SLOW = pytest.mark.slow


@pytest.mark.parametrize("argv, says", [
    # the area, the dates, the workers
    case("workers-41", "--workers 41", "--workers must be between 1 and 40"),
    case("no-months", "--years 2019:2019 --months 2019-06", "give exactly one of --months"),
    case("month-june", "--months June", "is not YYYY-MM"),
    case("zones-projected", "--zones {projected}", "projected CRS without saying so"),
    case("before-sentinel-1", "--months 2013-06", "before the first Sentinel-1 scenes (2014-10)"),
    case("before-sentinel-2", "--months 2015-02", "before the first Sentinel-2 scenes (2015-06)"),
    case("future", "--months 2099-06", "2099-06 are in the future"),
    *[case(f"{flag[2:]}-not-geojson", f"{flag} {{districts}}", f"{flag} {{districts}} is not "
           "GeoJSON: Expecting value") for flag in ("--region-file", "--zones")],
    case("zones-not-geojson-says-what", "--zones {districts}",
         "give a GeoJSON FeatureCollection of polygons"),
    case("latency-negative", "--latency -0.4", "--latency must be >= 0.0, got -0.4"),
    case("backend-local-without-scenes", "--backend=local",  # so: no default --scenes
         "--backend local needs --scenes"),
    case("method-tasks", "--method tasks", "--method tasks exports"),
    # change and temporal consistency
    case("spectral-by-pixels", "--change-rule spectral", "--method pixels keeps none"),
    case("spectral-and-margin", "--change-rule spectral --method tasks --change-margin 0.1",
         "choose one"),
    case("spectral-and-monotone", "--change-rule spectral --temporal-consistency",
         "--temporal-consistency monotone relabels the class maps, and change is those "
         "consistent maps differenced; --change-rule spectral takes gain and loss from the "
         "probabilities"),
    case("encoder-and-stretches",
         "--change-rule encoder --method tasks --temporal-consistency stretches",
         "--temporal-consistency stretches already decides where each pixel changed, by its "
         "bands' spectral change at --spectral-threshold, and change is its consistent class "
         "maps differenced; --change-rule encoder would decide it again on the encoder's "
         "features"),
    case("spectral-and-stretches",
         "--change-rule spectral --method tasks --temporal-consistency stretches",
         "--change-rule spectral would decide it again on the same bands"),
    case("encoder-by-pixels", "--change-rule encoder",
         "--change-rule encoder reads each date's stack"),
    case("encoder-by-direct-runner", "--change-rule encoder --runner direct",
         "--method pixels keeps none"),
    case("encoder-and-margin", "--change-rule encoder --method tasks --change-margin 0.1",
         "--change-rule encoder decides change on both dates' stacks, --change-margin on both "
         "dates' probabilities: choose one"),
    case("stretches-by-pixels", "--temporal-consistency stretches", "--method pixels keeps none"),
    case("spectral-threshold-0", "--spectral-threshold 0",
         "--spectral-threshold must be a number > 0"),
    case("spectral-threshold-by-margin", "--spectral-threshold 3",
         "this run decides change by the margin rule"),
    # post-processing
    case("clahe-on-a-binary-model", "--postprocess clahe",
         "--postprocess clahe is made for land-cover models"),
    case("keep-on-fetched-tiles", "--model {landcover} --postprocess keep --keep-product "
         "{product} --keep-table nlcd", "--backend local or --method tasks", SLOW),
    case("keep-without-a-product", "--backend local --model {landcover} --postprocess keep",
         "--keep-product", SLOW),
    # publishing
    *[case(f"publish-{name}", f"--publish '{value}'", "--publish '' names no asset folder")
      for name, value in (("empty", ""), ("blank", " "))],  # was dropped: no publication
    case("publish-region-no-asset-id", "--region-file '{my_area}' --publish "
         "projects/my-proj/assets/isa", "asset id 'projects/my-proj/assets/isa/isa_my area' is "
         "not a valid Earth Engine asset name"),
    case("gcs-prefix-bucket-b", "--publish projects/my-proj/assets/isa --gcs-prefix gs://b/isa",
         "--gcs-prefix gs://b/isa: bucket name 'b' is 1 character long; bucket names are "
         "3-63 characters"),
    *[case(f"without-publish-{named}", extra, f"isamap-map: error: {named}: how the series is "
           "published, and this run publishes nothing; give --publish ASSET_PARENT too, or "
           f"leave {'it' if ',' not in named else 'them'} out")
      for extra, named in (
          ("--public", "--public"), ("--reader user:a@b.org --public", "--public, --reader"),
          ("--gcs-prefix gs://my-bucket/isa --overwrite --wait",
           "--gcs-prefix, --overwrite, --wait"))],
    case("publish-local-cogs-not-to-gcs", "--backend local --publish "
         "projects/city-agency/assets/isamap --project city-agency --gcs-prefix citybkt/pub",
         "--gcs-prefix citybkt/pub is not a Cloud Storage address"),
    case("publish-local-cogs-without-gcs", "--backend local --publish "
         "projects/city-agency/assets/isamap --project city-agency",
         "publishing local COGs needs --gcs-prefix gs://"),
    # local scenes
    case("scenes-nowhere", "--backend local --dry-run --scenes {nowhere} --bbox {box}",
         "--scenes {nowhere} does not exist", SLOW),
    case("scenes-apart", "--backend local --dry-run --scenes {apart}", "in {apart} do not "
         "overlap (no area is covered by every scene); give the area with --bbox", SLOW),
    case("dry-run-no-date", "--backend local --dry-run --months 2019-07",
         "the real run would stop: no date could be mapped: 2019-07: no Sentinel-2 scene on "
         "the grid (0 in the month); no Sentinel-1 scene on the grid (0 in the month); add "
         "scenes of those months to --scenes", SLOW),
    *[case(f"zones-off-the-map-{name}", f"--backend local --zones {{{name}}}",
           f"isamap-map: error: no zone of --zones {{{name}}} touches the map: the zones lie in "
           "lon ... the map in {extent}", SLOW) for name in ("shifted", "utm")],
])
def test_refusals(refusal_inputs, request, tmp_path, capsys, argv, says):
    """Each row: ``isamap-map`` with the row's words, refused with exit 2 in one line holding
    each part of ``says`` (parts joined by `` ... ``), printing nothing on stdout and writing
    nothing under ``--out``.

    What a row leaves out is the default: ``--model`` (the module's model, or the local
    scene's), ``--out``, ``--months 2019-06``, and for Earth Engine's tiles ``--bbox`` and
    ``--dry-run``; a ``--backend local`` row maps ``--scenes`` (the scene of its model) for
    real unless it says ``--dry-run``."""
    paths = {**refusal_inputs, "out": str(tmp_path / "o")}
    if re.search(r"\{(apart|landcover|product)\}", argv):
        paths.update(request.getfixturevalue("slow_refusal_inputs"))
    words = [word.format(**paths) for word in shlex.split(argv)]
    local = "local" in words
    defaults = {"--model": "{local_model}" if local else "{model}", "--out": "{out}",
                "--months": "2019-06"}
    if local:
        defaults.update({"--scenes": "{scene}", "--precision": "fp32", "--channels-last": "off",
                         "--tile": "64"})
    elif "--region-file" not in words:
        defaults["--bbox"] = "117.0,30.7,117.01,30.71"
    for flag, value in defaults.items():
        words += [] if flag in words else [flag, value.format(**paths)]
    status = main([*words, "-q", *([] if local else ["--dry-run"])])
    captured = capsys.readouterr()
    assert status == 2 and len(captured.err.strip().splitlines()) == 1, captured.err
    assert captured.err.startswith("isamap-map: error: "), captured.err
    assert all(part.format(**paths) in captured.err for part in says.split(" ... ")), captured.err
    assert captured.out == "" and not (tmp_path / "o").exists()


def test_dry_run_prints_plan_manifests_and_app_offline(model, tmp_path, capsys):
    # west of Greenwich: the plain --bbox form works; another UTM zone than the model's
    code = main(["--bbox", "-7.45,52.63,-7.43,52.65", "--years", "2017:2021:2", "--model",
                 str(model), "--out", str(tmp_path / "maps"), "--publish",
                 "projects/my-proj/assets/isa", "--dry-run", "--tile", "128", "--overlap",
                 "16", "--precision", "fp32", "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = captured.out
    assert "Map plan" in out and "EPSG:32629" in out
    assert "2017-06, 2019-06, 2021-06" in out  # the month of the model's dataset
    assert "not the model's training CRS" in out and "ui.Slider" in out
    assert "  change    margin 0.2 on both dates' probabilities\n" in out  # pixels keep no stack
    assert '"name": "projects/my-proj/assets/isa/isa_bbox/isa_2019_06"' in out
    plan = json.loads(out[out.rindex("\n{"):])
    assert 0 < plan["requests_per_date"] <= plan["tiles_per_date"]
    assert "EECU-hours: Community" in out and "EECU-s per request" in out
    assert plan["compute"]["requests"] == 3 * plan["requests_per_date"]  # three dates
    assert not (tmp_path / "maps" / "2017-06").exists()  # nothing mapped in a dry run


def test_clahe_on_a_binary_model_is_planned_when_forced(model, tmp_path):
    """CLAHE on the binary CroFuseNet added 59 % ISA: refused unless forced (test_refusals)."""
    assert main(["--bbox", "117.0,30.7,117.01,30.71", "--model", str(model), "--out",
                 str(tmp_path / "o"), "--months", "2019-06", "--dry-run", "--postprocess", "clahe",
                 "--force-postprocess", "--tile", "128", "--overlap", "16", "--precision",
                 "fp32", "-q"]) == 0


def test_postprocess_flags_reach_the_map_request():
    from cli.map import build_parser
    from inference.mapping.request import map_window
    from inference.predict.postprocess import ClaheParams, postprocess_options

    args = build_parser().parse_args(["--model", "m.pt", "--out", "o", "--postprocess",
                                      "clahe", "--clahe-block", "256", "--clahe-threshold",
                                      "90"])
    options = postprocess_options(args)
    assert options == {"postprocess": "clahe",
                       "clahe": ClaheParams(block=256, clip_limit=40.0, threshold=90),
                       "keep": None, "force_postprocess": False}
    config = map_window(**options)
    assert config.postprocess == "clahe" and config.clahe.block == 256 and config.blend == "core"


def test_without_credentials_the_advice_is_for_mapping_not_exporting(model, tmp_path, capsys,
                                                                     monkeypatch):
    """The no-account advice named the export (python export_patches.py) for isamap-map."""
    monkeypatch.delenv("EE_PROJECT", raising=False)
    code = main(["--bbox", "117.0,30.7,117.01,30.71", "--model", str(model), "--out",
                 str(tmp_path / "o"), "--months", "2019-06", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "no --project given" in err and "Traceback" not in err
    assert "isamap-map --backend local --scenes DIR" in err
    assert "export_patches" not in err and "isamap-export" not in err


def test_publishing_without_credentials_is_refused_before_the_first_date(tmp_path, capsys,
                                                                        monkeypatch):
    """Every date was mapped, then "Earth Engine is not authenticated" (a new user's walk):
    the publication's environment is now checked first, and a refused run maps nothing (its
    advice is several lines: the bad flags' one-line refusals are rows of test_refusals)."""
    _box, model = _local_scene(tmp_path)
    home = tmp_path / "home"  # no Earth Engine login, no service account
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "EE_PROJECT", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "o"
    args = ["--backend", "local", "--scenes", str(tmp_path / "scene"), "--months", "2019-06",
            "--model", str(model), "--out", str(out), "--no-progress", "--precision", "fp32",
            "--channels-last", "off", "-q", "--publish", "projects/city-agency/assets/isamap"]
    for extra, code, message in (
            (["--project", "city-agency", "--gcs-prefix", "gs://citybkt/pub"], 1,
             "Earth Engine is not authenticated"),
            (["--gcs-prefix", "gs://citybkt/pub"], 1, "no --project given")):
        assert main([*args, *extra]) == code, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert not (out / "2019-06").exists() and not (out / ".stacks").exists(), extra
        # the advice is publishing's: this map has no Earth Engine backend
        assert "To publish to Earth Engine, do ONE of:" in err
        assert "Earth Engine backend" not in err and "Publishing needs one" in err


@pytest.mark.slow
def test_a_misspelt_cog_writer_is_refused_before_the_first_date_is_composited(
        tmp_path, capsys, monkeypatch):
    """The streamed map checked ISAMAP_COG_WRITER when it predicted a date, after it had
    composited the date's stack (left in an existing --out); now before the first date."""
    _box, model = _local_scene(tmp_path)
    monkeypatch.setenv("ISAMAP_COG_WRITER", "gdal-cog")
    out = tmp_path / "o"
    out.mkdir()  # a run's existing --out: what a refused run leaves there stays
    code = main(["--backend", "local", "--scenes", str(tmp_path / "scene"), "--months",
                 "2019-06", "--model", str(model), "--out", str(out), "--no-progress", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "ISAMAP_COG_WRITER='gdal-cog' is not a COG writer; use one of stream, gdal" in err
    assert list(out.iterdir()) == []


def _local_scene(tmp_path):
    from pyproj import Transformer

    from gee_export.local.synthetic import generate_scene

    scene = generate_scene(tmp_path / "scene", width=96, height=96, progress=False)
    to_ll = Transformer.from_crs(scene.grid.crs, "EPSG:4326", always_xy=True)
    box = ",".join(f"{v:.6f}" for v in to_ll.transform_bounds(*scene.grid.bounds))
    model = model_file(tmp_path / "local.pt", scene.grid, backend="local")
    return box, model


@pytest.mark.slow
def test_a_local_dry_run_checks_the_scenes_of_every_date_and_times_no_request(tmp_path,
                                                                             capsys):
    box, model = _local_scene(tmp_path)
    common = ["--bbox", box, "--model", str(model), "--out", str(tmp_path / "o"), "--backend",
              "local", "--dry-run", "--precision", "fp32", "--channels-last", "off", "-q"]
    assert main([*common, "--scenes", str(tmp_path / "scene"), "--months", "2019-06"]) == 0
    out = capsys.readouterr().out
    assert "2019-06   Sentinel-2 4 on the grid" in out
    assert "requests at" not in out and "computePixels" not in out
    assert json.loads(out[out.rindex("\n{"):])["requests_per_date"] == 0
    # a date without scenes is skipped, as the real run skips it (a new user's walk: the dry
    # run refused a series the real run maps); with no date left it is refused (test_refusals)
    assert main([*common, "--scenes", str(tmp_path / "scene"), "--months",
                 "2019-06,2019-07"]) == 0
    assert "  2019-07   would be skipped: no Sentinel-2 scene on the grid (0 in the month); " \
        "no Sentinel-1 scene on the grid (0 in the month)\n" in capsys.readouterr().out


def test_runtime_flags_reach_the_map(model, tmp_path, monkeypatch):
    """--channels-last and --no-autotune-cache were parsed by isamap-map and then dropped."""
    import inference.mapping.region

    seen = []
    monkeypatch.setattr(inference.mapping.region, "measure_model",
                        lambda path, tile, options: seen.append(options) or 0.01)
    args = ["--bbox", "117.0,30.7,117.01,30.71", "--model", str(model), "--out",
            str(tmp_path / "o"), "--months", "2019-06", "--dry-run", "-q"]
    assert main([*args, "--channels-last", "off", "--no-autotune-cache"]) == 0
    assert (seen[0].channels_last, seen[0].autotune_cache) == ("off", False)


def test_a_run_reads_its_model_file_once(model, tmp_path, capsys, monkeypatch):
    """isamap-map and isamap-predict read the model file, then read it again to hash it: each
    now loads, checks and identifies it from one read of its bytes."""
    import builtins

    from cli.predict import predict_main

    reads, real_open = [], builtins.open
    monkeypatch.setattr(builtins, "open", lambda file, *a, **kw: (
        reads.append(file) if str(file) == str(model) else None, real_open(file, *a, **kw))[1])
    assert main(["--bbox", "117.0,30.7,117.01,30.71", "--model", str(model), "--out",
                 str(tmp_path / "o"), "--months", "2019-06", "--dry-run", "--precision", "fp32",
                 "--channels-last", "off", "-q"]) == 0
    assert len(reads) == 1
    assert predict_main(["--model", str(model), "--input", str(model.parent /
                         "stack_2019-06.tif"), "--out", str(tmp_path / "p" / "isa"), "--tile",
                         "64", "--overlap", "16", "--precision", "fp32", "--quiet"]) == 0
    assert len(reads) == 2, capsys.readouterr().err


def test_dry_run_states_the_quota_and_what_overwrite_does(model, tmp_path, capsys):
    args = ["--bbox", "117.0,30.7,117.01,30.71", "--model", str(model), "--out",
            str(tmp_path / "o"), "--months", "2019-06", "--dry-run", "--precision", "fp32",
            "--channels-last", "off", "--publish", "projects/my-proj/assets/isa", "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "the real run refuses to replace (add --overwrite to replace them) images" in out
    # local COGs and no --gcs-prefix: the real run stops there, and the plan says so
    assert "note      the real run stops here without --gcs-prefix: publishing local COGs " \
        "needs --gcs-prefix" in out
    assert main([*args, "--gcs-prefix", "gs://my-bucket/isa"]) == 0
    assert "stops here without --gcs-prefix" not in capsys.readouterr().out
    assert main([*args, "--overwrite", "--runner", "direct", "--max-workers", "2",
                 "--max-concurrent", "80"]) == 0
    out = capsys.readouterr().out
    assert "the real run replaces (--overwrite) images of these dates" in out
    assert "--max-concurrent 80 is above Earth Engine's quota of about 40" in out
    assert "# sharing: private" in out
    assert main([*args, "--public"]) == 0  # the dry run never said the series goes public
    assert "# sharing: PUBLIC: readable by everyone (allUsers)" in capsys.readouterr().out
    # the pipeline's workers fetch each tile on its own: it was priced as the streamed map's
    # joined requests (a new user's walk: 252 requests for 1,116 tiles)
    small = [*args, "--tile", "32", "--overlap", "8"]
    for runner, joined in (([], True), (["--runner", "direct"], False)):
        assert main([*small, *runner]) == 0
        out = capsys.readouterr().out
        plan = json.loads(out[out.rindex("\n{"):out.rindex("}") + 1])
        assert plan["tiles_per_date"] > 4
        assert (plan["requests_per_date"] < plan["tiles_per_date"]) is joined


@pytest.mark.slow
def test_a_local_map_without_an_area_plans_what_the_scenes_cover(tmp_path, capsys, caplog):
    """It needed --bbox; the export already took the scenes' common extent, the map now too."""
    import logging

    from gee_export.local.synthetic import generate_scene

    _box, model = _local_scene(tmp_path)
    common = ["--model", str(model), "--out", str(tmp_path / "o"), "--backend", "local",
              "--months", "2019-06", "--dry-run", "--precision", "fp32", "--channels-last",
              "off"]
    with caplog.at_level(logging.INFO):
        assert main([*common, "--scenes", str(tmp_path / "scene")]) == 0
    out = capsys.readouterr().out
    assert "the area is what the scenes in" in caplog.text  # the export's sentence
    assert "2019-06   Sentinel-2 4 on the grid" in out
    grid = json.loads(out[out.rindex("\n{"):])["grid"]
    scene = generate_scene(tmp_path / "scene", width=96, height=96, progress=False).grid
    assert grid["width"] <= scene.width and grid["height"] <= scene.height  # at most the scene
    assert grid["width"] * grid["height"] >= 0.8 * scene.width * scene.height


@pytest.mark.slow
def test_a_local_map_decides_change_by_the_spectral_rule_and_resumes_it(tmp_path, capsys,
                                                                       monkeypatch):
    """Each date's stack is kept by a local map: the default rule is spectral, recorded in the
    summary, series.json and the change COG; a second run redoes nothing, another rule redoes
    the change map only. The dates of a run plan their stacks from one reading of the scene
    folder's headers, not one reading per date."""
    from pathlib import Path

    import rasterio

    from gee_export.local import stack as local_stack
    from gee_export.local.scenes import discover_scenes
    from gee_export.local.synthetic import generate_scene
    from inference.mapping import dates as map_dates
    from inference.predict.change import stretches
    from inference.predict.change.arrays import DEFAULT_SPECTRAL_THRESHOLD, SPECTRAL_RULE

    scenes = tmp_path / "scenes"
    first = generate_scene(scenes / "a", width=96, height=96, progress=False, month="2019-06",
                           **FEW)
    generate_scene(scenes / "b", width=96, height=96, progress=False, month="2021-06", growth=2,
                   **FEW)
    model = model_file(tmp_path / "m.pt", first.grid, name="test-threshold", backend="local",
                       module="tests.support.models", threshold=0.12)
    out = tmp_path / "out"
    args = ["--backend", "local", "--scenes", str(scenes), "--months", "2019-06,2021-06",
            "--model", str(model), "--out", str(out), "--tile", "64", "--overlap", "16",
            "--no-progress", "--precision", "fp32", "--channels-last", "off", "-q"]
    cog = out / "change" / "isa_change_2019-06_2021-06.tif"

    def run(*extra: str) -> dict:
        assert main([*args, *extra]) == 0
        printed = capsys.readouterr().out
        return json.loads(printed[printed.rindex("\n{") + 1:])

    discovered = []  # the real discovery, counted where the dates' stacks are planned
    for module in (local_stack, map_dates):
        monkeypatch.setattr(module, "discover_scenes", raising=False,
                            value=lambda *a, **k: discovered.append(a) or discover_scenes(*a, **k))
    summary = run()
    assert len(discovered) == 1, "the scene folder was read once per date"
    assert summary["change_rule"] == "spectral"
    assert summary["spectral_threshold"] == DEFAULT_SPECTRAL_THRESHOLD
    assert "change_margin" not in summary
    fit = summary["spectral_fits"]["2019-06/2021-06"]
    assert fit["pixels"] == 96 * 96 and len(fit["spread"]) == 6
    record = json.loads((out / "series.json").read_text())
    assert record["change_rule"] == "spectral" and record["spectral_fits"] == {
        "2019-06/2021-06": fit}
    with rasterio.open(cog) as ds:
        tags = ds.tags()
    assert tags["change_rule"] == SPECTRAL_RULE and json.loads(tags["spectral_fit"]) == fit
    # the stack on the map's grid (a VRT of the wider stack file), named, not a path here
    assert tags["from_stack"] == "stack_2019-06_image.vrt"
    stamp = cog.stat().st_mtime_ns
    again = run()  # resumed: every date and the change map are up to date
    assert all(d["skipped"] for d in again["dates"].values())
    assert cog.stat().st_mtime_ns == stamp and again["spectral_fits"] == summary["spectral_fits"]
    margin = run("--change-rule", "margin")  # another rule: the change map alone is redone
    assert margin["change_rule"] == "margin" and margin["change_margin"] == 0.2
    assert cog.stat().st_mtime_ns != stamp and all(d["skipped"] for d in margin["dates"].values())
    with rasterio.open(cog) as ds:
        assert ds.tags()["change_margin"] == "0.2" and "spectral_fit" not in ds.tags()
    assert json.loads((out / "series.json").read_text())["change_rule"] == "margin"
    assert str(tmp_path) not in Path(out / "series.json").read_text()
    # the stretches rule reads the same stacks with the same fit; the dates are not redone
    kept = run("--temporal-consistency", "stretches")
    assert kept["temporal_consistency"] == "stretches" and kept["change_rule"] == "margin"
    assert all(d["skipped"] for d in kept["dates"].values())
    record = json.loads((out / "series.json").read_text())["temporal_consistency"]
    assert record["rule"] == stretches.RULE and record["spectral_fits"] == {
        "2019-06/2021-06": fit} and record["spectral_threshold"] == DEFAULT_SPECTRAL_THRESHOLD
    again = run("--temporal-consistency", "stretches")  # current: its record read back
    assert json.loads((out / "series.json").read_text())["temporal_consistency"] == record
    assert again["temporal_consistency"] == "stretches"
    run("--temporal-consistency", "stretches", "--spectral-threshold", "3")  # its own cut
    assert json.loads((out / "series.json").read_text())["temporal_consistency"][
        "spectral_threshold"] == 3
    for month in ("2019-06", "2021-06"):
        with rasterio.open(out / "consistent" / f"isa_{month}_class.tif") as ds:
            assert ds.tags()["temporal_consistency"] == stretches.RULE
    with rasterio.open(cog) as ds:
        assert ds.tags()["temporal_consistency"] == "applied"


def _landcover_model(path, grid):
    """A land-cover model of the local scene's six bands that maps woodland everywhere
    (grassland second), its training labels every class but water."""
    from contract.label_schemes import LANDCOVER_CLASSES, LANDCOVER_SCHEME
    from tests.support.mapping import dataset_record
    from tests.support.rasters import BANDS
    from training.modelfile import ModelMeta, save_model_file
    from training.models import create_model

    k = len(LANDCOVER_CLASSES)
    bias = [0.0] * k
    bias[LANDCOVER_CLASSES.index("woodland")], bias[LANDCOVER_CLASSES.index("grassland")] = 1, .5
    net = create_model("test-linear", len(BANDS), k, module="tests.support.models", bias=bias)
    meta = ModelMeta("test-linear", len(BANDS), k, BANDS, (0.0,) * 6, (1.0,) * 6,
                     class_scheme=LANDCOVER_SCHEME, class_names=LANDCOVER_CLASSES,
                     module="tests.support.models",
                     learnt_classes=tuple(c for c in LANDCOVER_CLASSES if c != "water"),
                     extra={"dataset": dataset_record(grid, backend="local")})
    return save_model_file(path, net, meta)


@pytest.mark.slow
def test_a_local_map_keeps_the_products_impervious_unless_green(tmp_path, capsys):
    """``--postprocess keep`` on --backend local: an NLCD-coded product in EPSG:4326 whose
    west half is forest, east half developed (elsewhere, fetched tiles, it is refused:
    test_refusals)."""
    import numpy as np
    import rasterio
    from affine import Affine
    from pyproj import Transformer

    from contract.geotiff import write_geotiff
    from contract.label_schemes import LANDCOVER_CLASSES
    from gee_export.local.synthetic import generate_scene
    from inference.cog.maps import PROB_SCALE

    scene = generate_scene(tmp_path / "scene", width=96, height=96, progress=False)
    model = _landcover_model(tmp_path / "lc.pt", scene.grid)
    west, _south, east, north = Transformer.from_crs(
        scene.grid.crs, "EPSG:4326", always_xy=True).transform_bounds(*scene.grid.bounds)
    cell = (east - west) / 32  # about 30 m cells over the 960 m scene
    codes = np.full((40, 40), 41, np.uint8)  # deciduous forest
    codes[:, 20:] = 23  # developed, medium intensity
    middle = (west + east) / 2
    product = write_geotiff(tmp_path / "nlcd.tif", codes[None],
                            Affine(cell, 0, middle - 20 * cell, 0, -cell, north + 4 * cell),
                            "EPSG:4326", None)
    keep = ["--postprocess", "keep", "--keep-product", str(product), "--keep-table", "nlcd"]
    out = tmp_path / "out"
    common = ["--model", str(model), "--months", "2019-06", "--out", str(out), "--tile", "64",
              "--overlap", "16", "--precision", "fp32", "--channels-last", "off", "-q"]
    assert main([*common, "--backend", "local", "--scenes", str(tmp_path / "scene"), *keep,
                 "--no-progress"]) == 0
    with rasterio.open(out / "2019-06" / "isa_2019-06_class.tif") as c, \
            rasterio.open(out / "2019-06" / "isa_2019-06_prob.tif") as p:
        classes, prob, tags, transform = c.read(1), p.read(1), c.tags(), c.transform
    rule = json.loads(tags["postprocess"])
    assert rule["green_cut"] is not None and rule["table"] == "nlcd"
    x = transform.c + transform.a * (np.arange(classes.shape[1]) + 0.5)
    lon = Transformer.from_crs(scene.grid.crs, "EPSG:4326", always_xy=True).transform(
        x, np.full(x.shape, transform.f))[0]
    wood, imp = (LANDCOVER_CLASSES.index(c) for c in ("woodland", "impervious"))
    forest, developed = classes[:, lon < middle - cell], classes[:, lon > middle + cell]
    assert (forest == wood).all()  # the model's map where the product is not impervious
    assert set(np.unique(developed)) == {wood, imp}  # kept unless green, green: woodland
    assert set(np.unique(prob[:, lon > middle + cell])) == {0, PROB_SCALE}
    record = json.loads((out / "map.json").read_text())
    assert record["postprocess"] == "keep" and record["keep"]["table"] == "nlcd"


@pytest.mark.slow
def test_a_finished_local_map_is_not_redone_under_another_spelling_or_a_copy(tmp_path, capsys,
                                                                           monkeypatch):
    """The run's fingerprint named its stack by the path as typed: ``--out maps``,
    ``--out ./maps`` and a copied output folder mapped every date again. A stack the backend
    wrote is now named by its content's fingerprint."""
    import shutil

    from gee_export.local.synthetic import generate_scene

    scenes = tmp_path / "scenes"
    first = generate_scene(scenes / "a", width=64, height=64, progress=False, month="2019-06",
                           **FEW)
    model = model_file(tmp_path / "m.pt", first.grid, name="test-threshold", backend="local",
                       module="tests.support.models", threshold=0.12)
    monkeypatch.chdir(tmp_path)

    def run(out: str) -> dict:
        assert main(["--backend", "local", "--scenes", "scenes", "--months", "2019-06",
                     "--model", str(model), "--out", out, "--tile", "64", "--overlap", "16",
                     "--no-progress", "--precision", "fp32", "--channels-last", "off",
                     "-q"]) == 0
        printed = capsys.readouterr().out
        return json.loads(printed[printed.rindex("\n{") + 1:])["dates"]["2019-06"]

    assert not run("maps")["skipped"]
    assert run("./maps")["skipped"] and run(str(tmp_path / "maps"))["skipped"]
    shutil.copytree(tmp_path / "maps", tmp_path / "copy")
    assert run("copy")["skipped"]
    # a month without scenes is skipped, and leaves no empty folder of its stack behind
    assert main(["--backend", "local", "--scenes", "scenes", "--months", "2019-06,2020-06",
                 "--model", str(model), "--out", "maps", "--tile", "64", "--overlap", "16",
                 "--no-progress", "--precision", "fp32", "--channels-last", "off", "-q"]) == 0
    capsys.readouterr()
    stacks = tmp_path / "maps" / ".stacks"
    assert (stacks / "2019-06").is_dir() and not (stacks / "2020-06").exists()


def test_a_local_map_without_radar_scenes_asks_for_them_and_leaves_no_stacks(tmp_path, capsys):
    """Scenes of Sentinel-2 only for a model of VV and VH: the map said "add scenes or drop
    VV/VH", which a map cannot (its bands are the model's), and left an empty OUT/.stacks.
    Not a row of test_refusals: the date's warning as it is skipped comes before the line."""
    import shutil

    box, model = _local_scene(tmp_path)
    shutil.rmtree(tmp_path / "scene" / "S1")
    out = tmp_path / "o"
    assert main(["--bbox", box, "--model", str(model), "--out", str(out), "--backend", "local",
                 "--scenes", str(tmp_path / "scene"), "--months", "2019-06", "--precision",
                 "fp32", "--channels-last", "off", "-q", "--tile", "64"]) == 2
    err = capsys.readouterr().err
    assert "no Sentinel-1 scene acquired in 2019-06" in err and "drop" not in err
    assert "add Sentinel-1 scenes of 2019-06 to --scenes: the model reads VV/VH" in err
    # one plain line (it showed a dict: {'2019-06': '...'}), and no empty --out left behind
    assert err.strip().splitlines()[-1].startswith(
        "isamap-map: error: no date could be mapped: 2019-06: no Sentinel-1 scene acquired")
    assert "{" not in err
    assert not out.exists()


@pytest.mark.slow
def test_a_series_summary_names_only_files_written_as_out_was_given(tmp_path, capsys,
                                                                    monkeypatch):
    """New users' walks: a one-date map's summary named a series_change.csv never written and
    printed "ISA change between consecutive dates" over "(no zones)"; its STAC paths were
    absolute beside relative tables; a zone outside the map was warned of once per date."""
    from pyproj import Transformer

    from gee_export.local.synthetic import generate_scene

    scenes = tmp_path / "scenes"
    first = generate_scene(scenes / "a", width=64, height=64, progress=False, month="2019-06",
                           **FEW)
    generate_scene(scenes / "b", width=64, height=64, progress=False, month="2021-06", growth=2,
                   **FEW)
    model = model_file(tmp_path / "m.pt", first.grid, name="test-threshold", backend="local",
                       module="tests.support.models", threshold=0.12)
    west, south, east, north = Transformer.from_crs(
        first.grid.crs, "EPSG:4326", always_xy=True).transform_bounds(*first.grid.bounds)

    def box(name, a, b):
        return {"type": "Feature", "properties": {"name": name}, "geometry": {
            "type": "Polygon", "coordinates": [[[a, south], [b, south], [b, north], [a, north],
                                                [a, south]]]}}

    (tmp_path / "zones.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        box("inside", west, east), box("outside", east + 0.1, east + 0.2)]}))
    monkeypatch.chdir(tmp_path)
    args = ["--backend", "local", "--scenes", "scenes", "--model", str(model), "--out", "maps",
            "--zones", "zones.geojson", "--tile", "64", "--overlap", "16", "--no-progress",
            "--precision", "fp32", "--channels-last", "off"]

    def run(months):
        assert main([*args, "--months", months]) == 0
        captured = capsys.readouterr()
        out = captured.out
        return out, json.loads(out[out.rindex("\n{") + 1:]), captured.err

    out, summary, err = run("2019-06,2021-06")
    assert err.count("zone 'outside' has no valid pixel") == 1
    assert "zone 'outside' has no valid pixel of the map at 2019-06, 2021-06" in err
    assert summary["stac"] and all(p.startswith("maps/") for p in summary["stac"])
    assert summary["area_csv"] == "maps/series_area.csv"
    assert summary["change_csv"] == "maps/series_change.csv"
    assert summary["change_maps"] == ["maps/change/isa_change_2019-06_2021-06.tif"]
    assert "ISA change between consecutive dates" in out
    out, summary, err = run("2019-06")  # one date: no pair, no change table
    assert "change_csv" not in summary and not (tmp_path / "maps" / "series_change.csv").exists()
    assert "removed maps/series_change.csv: an earlier run's change table" in err
    assert "no ISA change: the series has no pair of dates to compare (one mapped date, " \
           "2019-06)" in out
    assert "ISA change between consecutive dates" not in out and "(no zones)" not in out


@pytest.mark.slow
def test_zones_beside_the_map_are_refused_and_a_zone_without_data_has_no_change(
        tmp_path, capsys, monkeypatch):
    """A new user's walk: zones shifted a degree, or in the wrong hemisphere's UTM zone, mapped
    every date and rewrote good tables with zeros (one warning per zone, exit 0); a zone
    beside the map among zones on it got gain_km2 0.0 where its area rows said no data."""
    import csv

    from pyproj import Transformer

    from gee_export.local.synthetic import generate_scene

    scenes = tmp_path / "scenes"
    first = generate_scene(scenes / "a", width=64, height=64, progress=False, month="2019-06",
                           **FEW)
    generate_scene(scenes / "b", width=64, height=64, progress=False, month="2021-06", growth=2,
                   **FEW)
    model = model_file(tmp_path / "m.pt", first.grid, name="test-threshold", backend="local",
                       module="tests.support.models", threshold=0.12)
    to_lonlat = Transformer.from_crs(first.grid.crs, "EPSG:4326", always_xy=True)
    west, south, east, north = to_lonlat.transform_bounds(*first.grid.bounds)

    def box(name, a, b, s=south, n=north):
        return {"type": "Feature", "properties": {"name": name}, "geometry": {
            "type": "Polygon", "coordinates": [[[a, s], [b, s], [b, n], [a, n], [a, s]]]}}

    def write(name, features, **extra):
        (tmp_path / name).write_text(json.dumps({"type": "FeatureCollection",
                                                 "features": features, **extra}))

    write("zones.geojson", [box("inside", west, east), box("outside", east + 1, east + 1.1)])
    write("shifted.geojson", [box("west", west + 1, east + 1), box("east", east + 1, east + 2)])
    monkeypatch.chdir(tmp_path)
    args = ["--backend", "local", "--scenes", "scenes", "--model", str(model), "--out", "maps",
            "--months", "2019-06,2021-06", "--tile", "64", "--overlap", "16", "--no-progress",
            "--precision", "fp32", "--channels-last", "off", "-q"]
    assert main([*args, "--zones", "zones.geojson"]) == 0
    out = capsys.readouterr().out
    maps = tmp_path / "maps"
    area = {(r["zone"], r["date"]): r for r in csv.DictReader((maps / "series_area.csv").open())}
    change = {r["zone"]: r for r in csv.DictReader((maps / "series_change.csv").open())}
    assert area[("outside", "2019-06")]["isa_fraction"] == ""  # no data
    for key in ("stable_isa_km2", "gain_km2", "loss_km2", "net_change_km2"):
        assert change["outside"][key] == "", key  # no data, as its area rows; not 0.0
        assert float(change["inside"][key]) == float(change["inside"][key])
    assert float(change["inside"]["valid_km2"]) > 0
    record = json.loads((maps / "series.json").read_text())
    assert {r["zone"]: r["gain_km2"] for r in record["change"]}["outside"] is None
    table = out[out.index("ISA change between consecutive dates"):].splitlines()
    assert "no data" in next(line for line in table if line.lstrip().startswith("outside"))
    tables = {p: p.read_bytes() for p in maps.rglob("*") if p.is_file()}
    assert main([*args, "--zones", "shifted.geojson"]) == 2  # the line: test_refusals
    assert {p: p.read_bytes() for p in maps.rglob("*") if p.is_file()} == tables
