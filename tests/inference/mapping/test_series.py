"""A two-date series with known built-up growth: change codes, areas, tables, plot, STAC,
the ImageCollection manifests and the Code Editor app (all offline)."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from PIL import Image
from pyproj import Transformer
from pystac.validation import validate_dict

from contract.publishing import PublishOptions
from contract.quicklook import title_note
from core.errors import ConfigError
from inference.mapping.region import map_region
from inference.mapping.request import (
    ChangeOptions,
    MapExtent,
    MapInputs,
    MapOutputs,
    MapPublication,
    MapRequest,
    map_window,
)
from inference.mapping.series_area import SeriesAreaRow, plot_area
from inference.predict.runtime import RuntimeOptions
from inference.publish.assets import EarthEngineAssets, Ingestion
from inference.publish.collection import SeriesRequest, image_name, publish_series
from inference.publish.image import PublishRequest, publish
from testing.fake_server import StackTransport
from tests.support.mapping import (
    SeriesTransport,
    inner_region,
    model_file,
    session_for,
    stack_paths,
    write_month_stack,
)
from training.modelfile import load_model

DATES = ("2019-06", "2021-06")
OLD = (slice(40, 80), slice(40, 100))  # impervious at both dates: 40 x 60 px
NEW = (slice(120, 150), slice(100, 160))  # built between the dates: 30 x 60 px
PX_KM2 = 100 / 1e6


_MAPPED: dict[str, tuple] = {}  # the series is mapped once per module (ee_offline is per test)

#: the series above is mapped once a module: its tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.mapping.test_series")


@pytest.fixture
def series(tmp_path_factory, ee_offline):
    if "series" not in _MAPPED:
        _MAPPED["series"] = _map_series(tmp_path_factory)
    return _MAPPED["series"]


def _map_series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    stacks = {}
    for month, blocks in zip(DATES, ((OLD,), (OLD, NEW)), strict=True):
        data = np.zeros((6, 200, 230), np.float32)
        for rows, cols in blocks:
            data[0, rows, cols] = 1.0  # the threshold model's band: impervious above 0.5
        stacks[month] = write_month_stack(folder / month, data, month)
    grid = stacks[DATES[0]].grid
    model = model_file(folder / "threshold.pt", grid, name="test-threshold",
                       module="tests.support.models")
    zones = folder / "zones.geojson"
    region = inner_region(grid, margin_px=5)
    west, south, east, north = region.bbox
    mid = (west + east) / 2
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": name}, "geometry": {
            "type": "Polygon", "coordinates": [[[a, south], [b, south], [b, north], [a, north],
                                                [a, south]]]}}
        for name, a, b in (("west", west, mid), ("east", mid, east))]}))
    request = MapRequest(MapExtent(region, DATES),
                         MapOutputs(str(folder / "out"), zones=str(zones)), MapInputs(workers=4),
                         map_window(tile=64, overlap=16, batch_size=4),
                         RuntimeOptions(precision="fp32", channels_last=False), progress=False)
    transport = SeriesTransport(stacks, info=lambda t: 5)
    result = map_region(request, load_model(model), session=session_for(transport),
                        echo=lambda _: None)
    return request, result, grid


def model_of(request: MapRequest):
    """The series' model file, read (it lies beside the series' --out)."""
    return load_model(Path(request.outputs.out).parent / "threshold.pt")


def published(request: MapRequest, dry_run: bool = False, **outputs) -> MapRequest:
    """``request`` published into projects/my-proj/assets/isamap; ``outputs`` replace."""
    return replace(request, outputs=replace(request.outputs, **outputs),
                   publication=MapPublication("projects/my-proj/assets/isamap",
                                              PublishOptions(gcs_prefix="gs://bucket/maps"),
                                              dry_run))


def test_two_dates_give_the_expected_change_classes_and_areas(series):
    _, result, stack_grid = series
    (change,) = result.series.changes
    with rasterio.open(change.cog) as ds:
        codes = ds.read(1)
        col0 = round((ds.transform.c - stack_grid.x0) / 10)
        row0 = round((stack_grid.y0 - ds.transform.f) / 10)
    expected = np.zeros((stack_grid.height, stack_grid.width), np.uint8)
    expected[OLD] = 1
    expected[NEW] = 2
    window = expected[row0:row0 + codes.shape[0], col0:col0 + codes.shape[1]]
    assert np.array_equal(codes, window)  # stable pervious, stable ISA, gain; no loss
    rows = {(r.zone, r.date_from): r for r in result.series.change_rows}
    total_gain = sum(r.gain_km2 for r in rows.values())
    assert total_gain == pytest.approx(30 * 60 * PX_KM2)
    assert sum(r.stable_isa_km2 for r in rows.values()) == pytest.approx(40 * 60 * PX_KM2)
    assert all(r.loss_km2 == 0 for r in rows.values())
    area = {(r.zone, r.date): r.isa_km2 for r in result.series.area_rows}
    for date, km2 in zip(DATES, (2400 * PX_KM2, 4200 * PX_KM2), strict=True):
        assert area[("west", date)] + area[("east", date)] == pytest.approx(km2)
    with open(result.series.area_csv) as fh:
        table = list(csv.DictReader(fh))
    assert {r["date"] for r in table} == set(DATES) and {r["zone"] for r in table} == {
        "west", "east"}
    assert result.series.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert change.png.exists()
    record = json.loads(result.series.json.read_text())
    assert record["dates"] == list(DATES) and len(record["change"]) == 2


def test_rerunning_a_finished_series_rewrites_nothing(series, ee_offline):
    """Nor does it draw again the pictures it finished: the dates' quick-looks and the
    series' area chart."""
    request, result, _ = series
    cogs = [result.series.changes[0].cog, result.series.plot] + [
        p for d in result.dates for p in (d.outputs.prediction.class_path,
                                          d.outputs.prediction.prob_path,
                                          d.outputs.class_png, d.outputs.prob_png)]
    before = [Path(p).stat().st_mtime_ns for p in cogs]

    class NoPixels(StackTransport):
        def compute_pixels(self, request):
            raise AssertionError("a finished date was fetched again")

    stack = stack_paths(Path(request.outputs.out).parent / DATES[0] / f"stack_{DATES[0]}.tif")
    again = map_region(request, model_of(request),
                       session=session_for(NoPixels(stack, info=lambda t: 5)), echo=lambda _: None)
    assert all(d.outputs.prediction.skipped for d in again.dates)
    assert [Path(p).stat().st_mtime_ns for p in cogs] == before


def _check_projection(item: dict) -> None:
    """The projection extension's fields as its v2.0.0 schema types them (the schema itself
    cannot be fetched offline): ``proj:code`` an authority:code string, ``proj:shape`` two
    integers, ``proj:transform`` six numbers, ``proj:bbox`` four, and no ``isamap:crs``."""
    from pystac.extensions.projection import ProjectionExtension

    assert ProjectionExtension.get_schema_uri() in item["stac_extensions"]
    props = item["properties"]
    assert "isamap:crs" not in props and "isamap:shape" not in props
    authority, _, number = props["proj:code"].partition(":")
    assert authority == "EPSG" and number.isdigit()
    assert len(props["proj:shape"]) == 2 and all(isinstance(v, int) for v in props["proj:shape"])
    assert len(props["proj:transform"]) == 6 and len(props["proj:bbox"]) == 4
    height, width = props["proj:shape"]
    a, _, c, _, e, f = props["proj:transform"]
    assert props["proj:bbox"] == pytest.approx([c, f + e * height, c + a * width, f])


def test_stac_items_and_collection_validate(series):
    request, result, _ = series
    collection_path = f"{request.outputs.out}/collection.json"
    collection = json.loads(Path(collection_path).read_text())
    assert validate_dict(collection)  # the core schemas pystac ships: no network
    assert collection["isamap:months"] == list(DATES)
    assert collection["isamap:model"] == "test-threshold" and "s1" in collection["isamap:recipe"]
    items = [link for link in collection["links"] if link["rel"] == "item"]
    assert len(items) == 5  # class + probability per date, one change map
    for path in result.stac:
        if path.endswith(".stac.json"):
            item = json.loads(Path(path).read_text())
            validate_dict(item, extensions=[])  # the core; the extension's fields below
            _check_projection(item)
            assert item["assets"]["data"]["type"] == pystac.MediaType.COG
            assert item["assets"]["data"]["href"].startswith("./")  # beside its COG
    read = pystac.Collection.from_file(collection_path)
    kinds = sorted(i.properties["isamap:kind"] for i in read.get_items())
    assert kinds == ["change", "class", "class", "probability", "probability"]


def test_a_copied_catalogue_resolves_and_names_no_path_of_this_machine(series, tmp_path):
    """Links and hrefs are relative: the folder copied elsewhere (an upload, a colleague's
    disk) still opens, every Item and COG resolves inside the copy, and map.json names no path
    of the machine that made it."""
    import shutil

    request, _, _ = series
    copy = tmp_path / "copied"
    shutil.copytree(request.outputs.out, copy)
    origin = str(Path(request.outputs.out).resolve())
    for path in [*copy.rglob("*.json")]:
        text = path.read_text()
        assert origin not in text and str(Path(request.outputs.out).parent) not in text, path
    read = pystac.Collection.from_file(str(copy / "collection.json"))
    items = list(read.get_items())
    assert len(items) == 5
    for item in items:
        validate_dict(item.to_dict(), extensions=[])
        assert Path(item.get_self_href()).is_relative_to(copy)
        assert Path(item.assets["data"].get_absolute_href()).is_file()
        assert Path(item.assets["data"].get_absolute_href()).is_relative_to(copy)
    dated = [i for i in items if i.properties["isamap:kind"] == "class"]
    assert all(i.properties["isamap:inputs"]["backend"] == "ee" and
               i.properties["isamap:inputs"]["s1_window"] for i in dated)
    record = json.loads((copy / "map.json").read_text())
    assert record["dates"][DATES[0]]["class_cog"] == f"{DATES[0]}/isa_{DATES[0]}_class.tif"
    assert record["model"]["name"] == "test-threshold" and len(record["model"]["id"]) >= 16


def test_image_collection_manifests_and_app_are_checked_offline(series, tmp_path, capsys):
    request, _, _ = series
    dry = map_region(replace(published(request), dry_run=True, latency_s=0.4), model_of(request),
                     echo=print)
    printed = capsys.readouterr().out
    assert "Map plan" in printed and "computePixels" in printed and "ui.Slider" in printed
    assert dry.plan.tiles_per_date > 0 and dry.plan.seconds_estimate > 0
    publication = dry.publication
    collection = "projects/my-proj/assets/isamap/isa_testarea"
    assert publication.collection == collection
    for month, manifest in publication.manifests.items():
        assert manifest["name"] == image_name(collection, month)
        assert [b["id"] for b in manifest["bands"]] == ["isa_class", "isa_probability"]
        assert manifest["startTime"] == f"{month}-01T00:00:00Z"  # -> system:time_start
        assert manifest["properties"]["model"] == "test-threshold"
        assert manifest["properties"]["metric_test_miou"] == 0.75
        assert "speckle" in manifest["properties"]["recipe"]
        assert manifest["tilesets"][0]["sources"][0]["uris"][0].startswith(
            f"gs://bucket/maps/{month}/")
    script = publication.script
    assert "ui.Chart.image.series" not in script  # it cannot raise its 1e7-pixel limit
    for needle in ("ui.Slider", "legend", "maxPixels: 1e13", "tileScale: 4", "Map.onClick",
                   f'"{collection}"', "changeBetween", "isa_probability", "filterDate"):
        assert needle in script
    assert json.dumps(list(DATES)) in script and '"west"' in script  # zones for the chart


def test_the_app_charts_the_computed_areas_of_zones_given_in_any_crs(series, tmp_path,
                                                                     ee_offline):
    request, result, grid = series
    zones = json.loads(Path(request.outputs.zones).read_text())
    to_utm = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    projected = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {
        "name": grid.crs}}, "features": [
        {**f, "geometry": {"type": "Polygon", "coordinates": [
            [list(to_utm.transform(*p)) for p in f["geometry"]["coordinates"][0]]]}}
        for f in zones["features"]]}
    utm_file = tmp_path / "zones_utm.geojson"
    utm_file.write_text(json.dumps(projected))
    stack = stack_paths(Path(request.outputs.out).parent / DATES[0] / f"stack_{DATES[0]}.tif")
    done = map_region(published(request, True, zones=str(utm_file)), model_of(request),
                      echo=lambda _: None,
                      session=session_for(StackTransport(stack, info=lambda t: 5)))
    script = done.publication.script
    embedded = json.loads(script.split("var zones = ee.FeatureCollection(", 1)[1]
                          .split(");\n", 1)[0])
    assert embedded["type"] == "FeatureCollection"  # never a bare Feature
    for feature, original in zip(embedded["features"], zones["features"], strict=True):
        assert feature["properties"]["name"] == original["properties"]["name"]
        np.testing.assert_allclose(feature["geometry"]["coordinates"][0],
                                   original["geometry"]["coordinates"][0], atol=1e-6)  # lon/lat
    areas = json.loads(script.split("var zoneAreas = ", 1)[1].split(";\n", 1)[0])
    expected = {(r.zone, r.date): r.isa_km2 for r in result.series.area_rows}
    assert {(z, m): v for z, rows in areas.items() for m, v in rows} == pytest.approx(expected)
    assert set(areas) == {"west", "east"}


def test_a_map_has_the_same_asset_properties_from_either_command(series, tmp_path):
    """isamap-map --publish and isamap-publish of the same COGs describe the map alike."""
    request, _, _ = series
    month = DATES[-1]
    dry = map_region(replace(published(request), dry_run=True, latency_s=0.4), model_of(request),
                     echo=lambda _: None)
    in_series = dry.publication.manifests[month]["properties"]
    prefix = request.outputs.prefix(month)
    alone = publish(PublishRequest(f"{prefix}_class.tif", f"{prefix}_prob.tif",
                                   "projects/my-proj/assets/isa_one",
                                   PublishOptions(gcs_prefix="gs://bucket/one")),
                    tmp_path, dry_run=True, echo=lambda _: None).manifest["properties"]
    # the COGs' tags do not record the recipe, the model file does: only the series has it
    assert set(in_series) - {"recipe"} == set(alone)
    assert {k: in_series[k] for k in alone} == alone
    assert alone["month"] == month and alone["code_version"] and alone["probability_scale"]


class ExistingAssets(EarthEngineAssets):
    """An Earth Engine asset tree (names -> types) answering the calls publishing makes."""

    def __init__(self, existing, quota=None, uploaded=lambda: 0):
        self.existing, self.calls = dict(existing), []
        self.quota, self.uploaded = quota, uploaded

    def project_quota(self, name):
        self.calls.append(("quota", name, self.uploaded()))  # files uploaded by then
        return self.quota

    def asset_type(self, name):
        self.calls.append(("type", name, self.uploaded()))
        return self.existing.get(name)

    def ensure_parents(self, name, parent_type="FOLDER"):
        parent = name.rsplit("/", 1)[0]
        self.calls.append(("create", parent, parent_type))
        self.existing[parent] = parent_type
        return [parent]

    def start_ingestion(self, manifest, overwrite):
        self.calls.append(("ingest", manifest["name"], overwrite))
        task = f"T{len(self.calls)}"
        return Ingestion("req", task, f"projects/p/operations/{task}")


def test_an_existing_image_is_refused_unless_overwrite(series, tmp_path, gcs_emulator,
                                                      gcs_bucket):
    _, result, _ = series
    cogs = {d.month: (d.outputs.prediction.class_path, d.outputs.prediction.prob_path)
            for d in result.dates}
    name = "projects/my-proj/assets/isamap/isa_x"
    request = SeriesRequest(name, cogs, {}, PublishOptions(gcs_prefix=f"gs://{gcs_bucket}/maps"))
    taken = ExistingAssets({name: "IMAGE_COLLECTION", image_name(name, DATES[0]): "IMAGE"})
    with pytest.raises(ConfigError, match="--overwrite"):
        publish_series(request, tmp_path, assets=taken, echo=lambda _: None)
    assert not any(c[0] == "ingest" for c in taken.calls)
    def uploaded():
        return len(list(gcs_emulator.client().list_blobs(gcs_bucket)))

    name_legacy = "projects/earthengine-legacy/assets/users/me/isa_x"
    full = ExistingAssets({}, quota={"asset_count": {"usage": 9_999, "limit": 10_000},
                                     "asset_size": {"usage": 10**9, "limit": 250 * 10**9}},
                          uploaded=uploaded)
    with pytest.raises(ConfigError, match="10,002 assets"):
        publish_series(SeriesRequest(name_legacy, cogs, {},
                                     PublishOptions(gcs_prefix=f"gs://{gcs_bucket}/m")),
                       tmp_path, assets=full, echo=lambda _: None)
    assert full.calls == [("quota", name_legacy, 0)] and uploaded() == 0  # before uploads
    fresh = ExistingAssets({}, uploaded=uploaded)
    done = publish_series(request, tmp_path, assets=fresh, echo=lambda _: None)
    assert fresh.calls[:2] == [("quota", name, 0), ("type", name, 0)]  # EE before uploads
    made = [c for c in fresh.calls if c[0] in ("create", "ingest")]
    assert made[0] == ("create", name, "IMAGE_COLLECTION")
    assert [c[1] for c in made[1:]] == [image_name(name, d) for d in DATES]
    assert set(done.task_ids) == set(DATES)
    blobs = {b.name for b in gcs_emulator.client().list_blobs(gcs_bucket)}
    assert f"maps/{DATES[1]}/isa_{DATES[1]}_class.tif" in blobs  # uploaded, MD5-verified


def test_temporal_consistency_is_applied_on_request_and_recorded(series, tmp_path):
    from inference.mapping.series import series_products

    request, result, grid = series
    mapped = [(d.month, d.outputs) for d in result.dates]
    plain = series_products(mapped, {}, str(tmp_path / "plain"), tmp_path / "plain",
                            request.outputs.zones, crs=grid.crs)
    kept = series_products(mapped, {}, str(tmp_path / "tc"), tmp_path / "tc", request.outputs.zones,
                           crs=grid.crs, temporal_consistency="monotone")
    record = json.loads(kept.json.read_text())["temporal_consistency"]
    assert record["applied"] is True and "loss" in record["assumption"]
    assert json.loads(plain.json.read_text())["temporal_consistency"] == {"applied": False}
    assert all((tmp_path / "tc" / p).exists() for p in record["class_maps"].values())
    with rasterio.open(kept.changes[0].cog) as ds:
        assert ds.tags()["temporal_consistency"] == "applied"
    with rasterio.open(plain.changes[0].cog) as ds:
        assert ds.tags()["temporal_consistency"] == "not applied"
    assert all(r.temporal_consistency for r in kept.change_rows)
    assert "temporal_consistency" in kept.change_csv.read_text().splitlines()[0]
    # this series has no flicker: the rule changes nothing, areas and gain agree
    assert sum(record["pixels_relabelled"].values()) == 0
    assert [r.gain_km2 for r in kept.change_rows] == pytest.approx(
        [r.gain_km2 for r in plain.change_rows])
    assert [r.isa_km2 for r in kept.area_rows] == pytest.approx(
        [r.isa_km2 for r in plain.area_rows])


def test_a_change_map_carries_why_a_doubted_date_was_mapped(series, tmp_path):
    """A date mapped with ``--allow-implausible`` records why in its COGs' ``input_notes``
    tag; the change map made from it says so too (labelled by the date), and a change map
    made before its date was noted is made again."""
    import shutil

    from inference.mapping.series import change_product

    _, result, _ = series
    copies = {}
    for d in result.dates:
        for kind in ("class", "prob"):
            copies[d.month, kind] = shutil.copy(getattr(d.outputs.prediction, f"{kind}_path"),
                                                tmp_path / f"{d.month}_{kind}.tif")
    a, b = DATES

    def change():
        return change_product(copies[a, "class"], copies[b, "class"], str(tmp_path / "c.tif"),
                              tmp_path / "c.png", isa_class=1, date_from=a, date_to=b,
                              probs=(copies[a, "prob"], copies[b, "prob"]))

    change()
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert "input_notes" not in ds.tags()
    note = "VV and VH look swapped; mapped with --allow-implausible"
    with rasterio.open(copies[b, "prob"], "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.update_tags(input_notes=json.dumps([note]))
    change()
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert json.loads(ds.tags()["input_notes"]) == [f"{b}: {note}"]
    with rasterio.open(copies[b, "prob"], "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.update_tags(input_notes="")  # the date mapped again without a doubt
    change()
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert "input_notes" not in ds.tags()


def test_a_change_margin_decides_on_probabilities_and_is_recorded(series, tmp_path):
    from inference.mapping.series import series_products

    request, result, grid = series
    mapped = [(d.month, d.outputs) for d in result.dates]
    plain = series_products(mapped, {}, str(tmp_path / "p"), tmp_path / "p", request.outputs.zones,
                            crs=grid.crs)
    margin = series_products(mapped, {}, str(tmp_path / "m"), tmp_path / "m", request.outputs.zones,
                             crs=grid.crs, change_margin=0.2)
    assert json.loads(margin.json.read_text())["change_margin"] == 0.2
    with rasterio.open(margin.changes[0].cog) as ds:
        assert ds.tags()["change_margin"] == "0.2" and "0.5 + margin" in ds.tags()["change_rule"]
    # the threshold model's probabilities are far from 0.5: the same gain either way
    assert [r.gain_km2 for r in margin.change_rows] == pytest.approx(
        [r.gain_km2 for r in plain.change_rows])
    assert sum(r.gain_km2 for r in margin.change_rows) > 0
    with pytest.raises(ConfigError, match="choose one"):
        ChangeOptions(margin=0.2, temporal_consistency="monotone")


@pytest.mark.parametrize(("zones", "months"), [(1, ["2019-06"]), (3, ["2017-06", "2019-06"]),
                                               (20, ["2017-06", "2019-06", "2021-06"])])
def test_area_plot_is_written_for_one_date_few_zones_and_many(tmp_path, zones, months):
    rows = [SeriesAreaRow(f"zone {z}", m, 1.0 + z + i, None, 50.0, 0.0, 0.1)
            for z in range(zones) for i, m in enumerate(months)]
    png = plot_area(rows, tmp_path / "area.png")
    with Image.open(png) as image:
        assert image.size[0] >= 700 and image.size[1] >= 400


def _saved_figures(monkeypatch) -> list:
    """The figures plot_area saves, in order (it draws on a Figure, without pyplot)."""
    from matplotlib.figure import Figure

    figures, savefig = [], Figure.savefig

    def keep(fig, *args, **kwargs):
        figures.append(fig)
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def test_area_plot_starts_at_zero_and_marks_a_synthetic_scene(tmp_path, monkeypatch):
    """A 20.94-21.06 km² axis drew a 0.5 % change as a steep rise; the demo's made-up scene
    must not pass for a map of a real place."""
    figures = _saved_figures(monkeypatch)
    rows = [SeriesAreaRow("all", m, km2, None, 50.0, 0.0, 0.4)
            for m, km2 in (("2019-06", 20.95), ("2021-06", 21.05))]
    with title_note("SYNTHETIC"):
        plot_area(rows, tmp_path / "area.png")
    plot_area(rows, tmp_path / "plain.png")
    marked, plain = (fig.axes[0] for fig in figures)
    assert marked.get_ylim()[0] == 0 and marked.get_ylim()[1] > 21.05
    assert marked.get_title() == "SYNTHETIC · Impervious surface area per zone, 2019-06 to 2021-06"
    assert plain.get_title() == "Impervious surface area per zone, 2019-06 to 2021-06"


def test_area_plot_shades_the_span_to_the_probability_weighted_area(tmp_path, monkeypatch):
    from matplotlib.collections import PolyCollection

    figures = _saved_figures(monkeypatch)
    rows = [SeriesAreaRow("all", m, km2, weighted, 50.0, 0.0, 0.4)
            for m, km2, weighted in (("2019-06", 20.0, 22.5), ("2021-06", 21.0, 19.0))]
    plot_area(rows, tmp_path / "area.png")
    (ax,) = figures[0].axes
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(19.0) and ys.max() == pytest.approx(22.5)
    assert ax.get_ylim()[1] > 22.5
    caption = " ".join(t.get_text() for t in figures[0].texts)
    assert "probability-weighted" in caption and "not a sampling interval" in caption


def test_a_zone_without_valid_pixels_is_not_drawn_as_zero_km2(tmp_path, monkeypatch):
    """A zone outside the map: the date's table row says no data (isa_fraction empty), and
    the area plot drew it as a line at 0.00 km²; its dates without data are left out."""
    figures = _saved_figures(monkeypatch)
    months = ("2019-06", "2020-06", "2021-06")
    rows = [SeriesAreaRow("inside", m, 2.0, None, 0.0 if m == "2020-06" else 50.0, 0.0, 0.04)
            for m in months]
    rows += [SeriesAreaRow("outside", m, 0.0, None, 0.0, 0.0, None) for m in months]
    plot_area(rows, tmp_path / "area.png")
    (axes,) = figures[0].axes
    (line,) = axes.get_lines()  # the zone outside the map has none
    assert line.get_label() == "inside"
    assert np.isnan(line.get_ydata()[1])  # a gap at the date without data, not a value


def test_a_failed_publication_leaves_the_maps_summary(series, tmp_path):
    """map.json was written after publishing: a publication refused after every date was
    mapped (an image already there, Earth Engine failing) left the output without it."""
    import shutil

    request, _, _ = series
    out = tmp_path / "out"
    shutil.copytree(request.outputs.out, out)
    (out / "map.json").unlink()
    name = f"projects/my-proj/assets/isamap/isa_{request.extent.region.name}"
    taken = ExistingAssets({name: "IMAGE_COLLECTION", image_name(name, DATES[0]): "IMAGE"})
    stack = stack_paths(Path(request.outputs.out).parent / DATES[0] / f"stack_{DATES[0]}.tif")
    with pytest.raises(ConfigError, match="--overwrite"):
        map_region(published(request, out=str(out)), model_of(request),
                   session=session_for(StackTransport(stack, info=lambda t: 5)),
                   echo=lambda _: None, assets=taken)
    record = json.loads((out / "map.json").read_text())
    assert set(record["dates"]) == set(DATES)
    assert not any(c[0] == "ingest" for c in taken.calls)


def test_each_area_table_names_the_class_map_it_counts(series, tmp_path):
    """With --temporal-consistency, DATE/isa_DATE_area.csv counted the date's own map and
    series_area.csv the consistent one, and neither said so (a new user's walk)."""
    from inference.mapping.series import series_products

    request, result, grid = series
    mapped = [(d.month, d.outputs) for d in result.dates]
    kept = series_products(mapped, {}, str(tmp_path / "tc"), tmp_path / "tc", request.outputs.zones,
                           crs=grid.crs, temporal_consistency="monotone")
    plain = series_products(mapped, {}, request.outputs.out, tmp_path / "plain",
                            request.outputs.zones, crs=grid.crs)
    for month, outputs in mapped:
        with open(outputs.area_csv, newline="") as fh:
            own = list(csv.DictReader(fh))
        assert {r["class_map"] for r in own} == {f"isa_{month}_class.tif"}
    with open(kept.area_csv, newline="") as fh:
        counted = {(r["date"], r["class_map"]) for r in csv.DictReader(fh)}
    assert counted == {(m, f"consistent/isa_{m}_class.tif") for m in DATES}
    assert {(r.date, r.class_map) for r in plain.area_rows} == {
        (m, f"{m}/isa_{m}_class.tif") for m in DATES}
    assert "class_map" in kept.table().splitlines()[0]


@pytest.mark.slow
def test_a_rerun_removes_the_consistent_maps_and_killed_writes_it_does_not_make_again(
        series, tmp_path, caplog):
    """A rerun without --temporal-consistency left the earlier run's consistent maps (tags
    naming the rule), and a killed run's temporaries stayed in the date folders after a
    successful rerun (new users' walks)."""
    import shutil

    from inference.mapping.series import series_products

    request, result, grid = series
    mapped = [(d.month, d.outputs) for d in result.dates]
    out = tmp_path / "tc"
    series_products(mapped, {}, str(out), out, request.outputs.zones, crs=grid.crs,
                    temporal_consistency="monotone")
    series_products(mapped[1:], {}, str(out), out, request.outputs.zones, crs=grid.crs,
                    temporal_consistency="monotone")  # over other dates: the first's goes
    assert sorted(p.name for p in (out / "consistent").iterdir()) == [
        f"isa_{DATES[1]}_class.tif"]
    with caplog.at_level(logging.INFO):
        series_products(mapped, {}, str(out), out, request.outputs.zones, crs=grid.crs)
    assert not (out / "consistent").exists()
    assert f"removed {out}/consistent/isa_{DATES[1]}_class.tif: a consistent map of an " \
           "earlier run (this run writes none: no --temporal-consistency)" in caplog.text
    copy = tmp_path / "copy"
    shutil.copytree(request.outputs.out, copy)
    left = [copy / m / f".isa_{m}_prob.isamap-tmp-k1ll.png" for m in DATES]
    for path in left:
        path.write_bytes(b"half a png")
    stack = stack_paths(Path(request.outputs.out).parent / DATES[0] / f"stack_{DATES[0]}.tif")
    with caplog.at_level(logging.INFO):
        map_region(replace(request, outputs=replace(request.outputs, out=str(copy))),
                   model_of(request), echo=lambda _: None,
                   session=session_for(StackTransport(stack, info=lambda t: 5)))
    assert not any(path.exists() for path in left)
    assert f"removed 1 temporary file(s) left in {copy / DATES[0]} by a killed run" in caplog.text


def test_a_redone_change_map_says_why_and_an_up_to_date_one_says_nothing(series, tmp_path,
                                                                        caplog):
    """Redoing change maps was silent: a rerun with another margin said every date was
    already mapped, then wrote for minutes without a word."""
    from inference.mapping.series import series_products

    request, result, grid = series
    mapped = [(d.month, d.outputs) for d in result.dates]
    pair = f"change {DATES[0]} to {DATES[1]}"

    def run(margin: float) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="inference.mapping.series"):
            series_products(mapped, {}, str(tmp_path), tmp_path, request.outputs.zones,
                            crs=grid.crs, change_margin=margin)
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith(pair)]

    assert run(0.2) == [f"{pair}: mapping"]
    assert run(0.2) == []  # up to date
    assert run(0.1) == [f"{pair}: redone (--change-margin 0.1, was 0.2)"]
