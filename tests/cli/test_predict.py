import importlib.util
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from cli.predict import predict_main
from cli.publish import publish_main
from contract.geotiff import write_geotiff
from inference.predict.change.arrays import DEFAULT_SPECTRAL_THRESHOLD
from tests.support.rasters import (
    BANDS,
    assert_valid_cog,
    scene_stack,
    smooth_stack,
    write_stack,
)
from training.modelfile import ModelMeta, load_model_file, save_model_file
from training.models import create_model

#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("cli.test_predict")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    kwargs = {"widths": [4, 8, 8, 16, 16]}
    model = create_model("unet", len(BANDS), 2, **kwargs)
    meta = ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                     model_kwargs=kwargs, metrics={"val_iou": 0.71, "note": "x"})
    return save_model_file(tmp_path_factory.mktemp("m") / "unet.pt", model, meta)


@pytest.fixture
def small_stack(tmp_path):
    data = smooth_stack(120, 150)
    data[0, :8, :8] = np.nan
    return write_stack(tmp_path / "stack.tif", data)


def _tagged(path: Path, **tags: str) -> Path:
    """``path`` with GeoTIFF tags, as the local backend tags its stacks (``MONTH=``...)."""
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(**tags)
    return path


def _edited_model(path: Path, name: str, kwargs: dict[str, Any],
                  recorded: dict[str, Any] | None = None,
                  calibration: object = None) -> Path:
    """A model file edited by hand: ``recorded`` network options this isamap does not take, or
    a ``calibration`` record (its weights digest does not cover the description)."""
    net = create_model(name, len(BANDS), 2, **kwargs)
    meta = ModelMeta(name, len(BANDS), 2, BANDS, (0.1,) * 6, (0.5,) * 6,
                     model_kwargs={**kwargs, **(recorded or {})}).to_dict()
    if calibration is not None:
        meta["calibration"] = calibration
    torch.save({"format": "isamap-model/1", "meta": meta, "state_dict": net.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def refusal_inputs(model_file, tmp_path_factory) -> dict[str, str]:
    """What the rows of :func:`test_refusals` name, built once: stacks, model files, and
    ``mapped``, the prefix of a map of ``first`` (a stack of 2021-06) by ``model_file``."""
    root = tmp_path_factory.mktemp("refusals")
    data = smooth_stack(120, 150)
    for folder in ("a", "b", "c"):
        (root / folder).mkdir()
    first = _tagged(write_stack(root / "a" / "stack.tif", data), MONTH="2021-06",
                    ISAMAP_FINGERPRINT="sha256:one")
    power = data.copy()
    power[4:6] = 10 ** (power[4:6] / 10)  # VV, VH as linear power where the input's are dB
    zones = root / "zones.geojson"

    def box(west: float, properties: dict) -> dict:  # a third of the stack (UTM 50N)
        ring = [[west, 3398800], [west + 500, 3398800], [west + 500, 3400000],
                [west, 3400000], [west, 3398800]]
        return {"type": "Feature", "properties": {"NAME_0": "China", "NAME_1": "Anhui",
                                                  **properties},
                "geometry": {"type": "Polygon", "coordinates": [ring]}}

    zones.write_text(json.dumps({  # a province's row beside its districts'
        "type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32650"}},
        "features": [box(500000, {"NAME_2": "Hefei"}), box(500500, {}),
                     box(501000, {"NAME_2": "Feidong"})]}))
    cut = root / "cut.tif"  # an interrupted copy
    cut.write_bytes(first.read_bytes()[: first.stat().st_size // 3])
    for name, text in (("z.txt", "not json"), ("list.json", "[1, 2]"), ("line.geojson", json.dumps(
            {"type": "LineString", "coordinates": [[117.0, 30.7], [117.1, 30.8]]})),
            ("far.geojson", json.dumps({"type": "Polygon", "coordinates": [[
                [10.0, 10.0], [10.1, 10.0], [10.1, 10.1], [10.0, 10.1], [10.0, 10.0]]]}))):
        (root / name).write_text(text)
    for driver in ("PNG", "GTiff"):  # rasters without georeferencing
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(root / f"plain.{driver.lower()}", "w", driver=driver, width=40,
                               height=30, count=3, dtype="uint8") as dst:
                dst.write(np.full((3, 30, 40), 7, np.uint8))
    (root / "garbage.pt").write_bytes(b"hello garbage" * 50)
    scene = scene_stack(96, 112)
    rng = np.random.default_rng(3)  # vegetation: red well below near infrared
    veg = rng.random((96, 112)) < 0.7
    red_nir = scene.copy()
    red_nir[2] = np.where(veg, 0.04, 0.2) + 0.01 * rng.random(veg.shape)
    red_nir[3] = np.where(veg, 0.4, 0.25) + 0.02 * rng.random(veg.shape)
    empty = scene.copy()
    empty[2] = np.nan  # one band the model reads is empty: no pixel has all its values
    grid: dict[str, Any] = {"transform": Affine(10, 0, 500000, 0, -10, 3400000),
                            "crs": "EPSG:32650"}
    codes = np.arange(120 * 150).reshape(1, 120, 150)
    nan_weights = torch.load(model_file, weights_only=True)
    nan_weights.pop("weights_sha256")  # as an isamap without digests wrote it
    for value in nan_weights["state_dict"].values():
        if value.is_floating_point():
            value.fill_(float("nan"))
    torch.save(nan_weights, root / "nan.pt")
    s2: dict[str, Any] = {"widths": [4, 8, 8, 16, 16], "bands": list(BANDS)}
    unet = {"widths": [2, 2, 2, 2, 2]}
    torch.manual_seed(3)
    paths = {
        "model": model_file, "stack": write_stack(root / "stack.tif", data), "first": first,
        "earlier": write_stack(root / "earlier.tif", data), "zones": zones,
        "absent": root / "absent.pt", "absent_tif": root / "x.tif", "cut": cut,
        "garbage": root / "garbage.pt", "nan_weights": root / "nan.pt",
        "swapped": write_geotiff(root / "swapped.tif", red_nir[[0, 1, 3, 2, 4, 5]],
                                 nodata=float("nan"), **grid),
        "empty": write_stack(root / "empty.tif", empty),
        **{name: write_geotiff(root / f"{name}.tif", (codes % n).astype("uint8"), nodata=255,
                               **grid) for name, n in (("land_cover_codes", 7),
                                                       ("probability_codes", 251))},
        "three_classes": save_model_file(
            root / "lc.pt", create_model("unet", len(BANDS), 3, widths=[4, 8, 8, 16, 16]),
            ModelMeta("unet", len(BANDS), 3, BANDS, (0.0,) * 6, (1.0,) * 6,
                      model_kwargs={"widths": [4, 8, 8, 16, 16]}, class_scheme="landcover",
                      class_names=("water", "impervious", "trees"))),
        "degrees": save_model_file(
            root / "deg.pt", create_model("unet", len(BANDS), 2, widths=[4, 8, 8, 16, 16]),
            ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                      model_kwargs={"widths": [4, 8, 8, 16, 16]}, pixel_size=8.983e-05,
                      extra={"dataset": {"grid": {"crs": "EPSG:4326",
                                                  "resolution": 8.983e-05}}})),
        "unnamed": write_geotiff(root / "unnamed.tif", data, Affine(10, 0, 5e5, 0, -10, 3.4e6),
                                 "EPSG:32650", float("nan")),
        **{name.replace(".", "_"): root / name for name in (
            "z.txt", "list.json", "line.geojson", "far.geojson", "plain.png", "plain.gtiff")},
        "four": write_stack(root / "four.tif", smooth_stack(40, 40, count=4), bands=BANDS[:4]),
        "twice": write_stack(root / "twice.tif", smooth_stack(60, 70, count=7),
                             bands=("B2", "B02", "B3", "B4", "B8", "VV", "VH")),
        "early": _tagged(write_stack(root / "early.tif", data), MONTH="2019-06"),
        "other": write_stack(root / "other.tif", smooth_stack(100, 130, seed=4)),
        "same_name_of_2019": _tagged(write_stack(root / "b" / "stack.tif", data * 1.1),
                                     MONTH="2019-06"),
        "same_name": write_stack(root / "c" / "stack.tif", smooth_stack(120, 150, seed=2)),
        "edited": _tagged(write_stack(root / "c" / "edited.tif", smooth_stack(120, 150, seed=2)),
                          ISAMAP_FINGERPRINT="sha256:one"),
        "linear": write_stack(root / "linear.tif", power),
        "l1c": _tagged(write_stack(root / "l1c.tif", data), PRODUCT_LEVEL="Level-1C"),
        "cropped": write_stack(root / "cropped.tif", data[:, :100]),
        "other_model": save_model_file(
            root / "other.pt", create_model("unet", len(BANDS), 2, widths=[4, 8, 8, 16, 16]),
            ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                      model_kwargs={"widths": [4, 8, 8, 16, 16]})),
        "window_model": save_model_file(
            root / "s2.pt", create_model("unet-s2", len(BANDS), 2, input_norm="patch", **s2),
            ModelMeta("unet-s2", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                      model_kwargs={**s2, "input_norm": "patch"}, window=128)),
        "local_norm": _edited_model(root / "local.pt", "unet-s2", s2,
                                    {"input_norm": "local", "norm_window": 31}),
        "indices": _edited_model(root / "indices.pt", "unet-s2", s2, {
            "indices": ["ndvi"], "input_mean": [0.1] * 6, "input_std": [0.5] * 6}),
        "calibration_list": _edited_model(root / "list.pt", "unet", unet, calibration=[1.0, 2.0]),
        "no_temperature": _edited_model(root / "no_t.pt", "unet", unet, calibration={
            "method": "temperature", "split": "val", "pixels": 500}),
        "huge_temperature": _edited_model(root / "huge_t.pt", "unet", unet, calibration={
            "method": "temperature", "temperature": 1e30}),
        "tied": _test_model_file(root / "tied.pt", "test-tied"),
        "mapped": root / "y" / "isa", "no_prob": root / "n" / "isa",
    }
    assert predict_main(["--model", str(model_file), "--input", str(first), "--tile", "64",
                         "--overlap", "16", "--quiet", "--precision", "fp32",
                         "--out", str(paths["mapped"])]) == 0
    (root / "n").mkdir()  # a map whose probabilities are gone
    shutil.copy(root / "y" / "isa_class.tif", root / "n" / "isa_class.tif")
    return {name: str(path) for name, path in paths.items()}


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and time of change."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


_INT8 = pytest.mark.skipif(
    not __import__("engine.quantize", fromlist=["x"]).cpu_has_int8()
    or importlib.util.find_spec("torchao") is None,
    reason="this CPU has no VNNI/AMX int8 instructions, or torchao is not installed")


#: rows of the slow tier: the tests they come from mapped first (one stack and map per row
#: here, but the default tier keeps its time)
_SLOW = {"band-twice", "month-contradicts-stack", "compare-with-later", "earlier-stack-later",
         "out-of-another-month", "margin-alone", "earlier-map-without-prob",
         "earlier-stack-alone", "spectral-and-margin", "earlier-stack-absent",
         "spectral-threshold-0", "spectral-threshold-alone", "earlier-stack-linear",
         "normalise-to-linear", "earlier-stack-l1c", "earlier-stack-off-grid",
         "spectral-without-prob", "cog-writer-misspelt"}


@pytest.mark.parametrize("argv, says", [
    pytest.param(argv, says, id=name, marks=[_INT8] if name == "int8-disagrees" else
                 [pytest.mark.slow] if name in _SLOW else [])
    for name, argv, says in [
        # the input stack: its file, its bands and its month
        ("input-absent", "--input {absent_tif}", "--input {absent_tif} does not exist"),
        ("input-truncated", "--input {cut}", "truncated or corrupt"),
        *[(f"no-georeferencing-{kind}", f"--input {{plain_{kind}}}", f"--input {{plain_{kind}}} "
           "has no georeferencing (no CRS and no geotransform), so its pixels cannot be placed "
           "on the map; give a georeferenced GeoTIFF stack, e.g. one written by isamap-export "
           "or isamap-map") for kind in ("png", "gtiff")],
        ("bands-unnamed", "--input {unnamed}", "have no names (band descriptions), so their "
         "order is unknown; if the file's order is the model's, say so with --bands "
         "B2,B3,B4,B8,VV,VH"),
        ("bands-contradict-names", "--bands VV,VH,B2,B3,B4,B8",
         "--bands VV,VH,B2,B3,B4,B8 contradicts the input's own band names"),
        ("lacks-bands", "--input {four}", "the input stack lacks band(s) ['VV', 'VH']"),
        ("band-twice", "--input {twice}", "the input names band B2 twice (B2 and B02)"),
        ("no-valid-pixel", "--input {empty}", "has no pixel with a value in every band"),
        ("red-and-near-infrared-swapped", "--input {swapped} --bands B2,B3,B4,B8,VV,VH",
         "B4 (red) is often twice as bright as B8"),
        ("month-contradicts-stack", "--input {first} --month 2019-06",
         "--month 2019-06, but the input stack is of 2021-06"),
        ("compare-with-later", "--input {early} --compare-with {mapped}_class.tif",
         "--compare-with is of 2021-06, later than this date (2019-06)"),
        ("earlier-stack-later", "--input {early} --compare-with {mapped}_class.tif "
         "--earlier-stack {first}", "--earlier-stack is of 2021-06, later than this date"),
        # an --out holding the map of another model or input: kept
        ("out-of-another-model", "--model {other_model} --input {first} --out {mapped}",
         "isa_class.tif is a map of another model"),
        ("out-of-another-input", "--input {other} --out {mapped}",
         "isa_class.tif is a map of another input: stack.tif, where this run's --input is "
         "other.tif; give another --out, or delete that map first"),
        ("out-of-another-month", "--input {same_name_of_2019} --out {mapped}",
         "another input: stack.tif of 2021-06, where this run's --input is stack.tif of "
         "2019-06"),
        ("out-of-other-pixels", "--input {same_name} --out {mapped}",
         "another input: a stack.tif of other pixels on the same grid, where this run's "
         "--input is stack.tif; give another --out"),
        ("out-of-edited-copy", "--input {edited} --out {mapped}",
         "another input: stack.tif, where this run's --input is edited.tif; give another"),
        # change maps: the rules of --compare-with, --earlier-stack and their company
        ("compare-with-a-probability-map", "--compare-with {mapped}_prob.tif",
         "is a probability map, not a class map"),
        ("compare-with-other-classes", "--model {three_classes} --compare-with {mapped}_class.tif",
         "holds the classes pervious, impervious, this model predicts water"),
        *[(f"compare-with-untagged-{name}", f"--compare-with {{{name}}} --change-margin 0",
           f"--compare-with {{{name}}} holds codes [2, 3, ... so it is not a class map of "
           "them; give the <out>_class.tif") for name in ("land_cover_codes", "probability_codes")],
        ("margin-alone", "--change-margin 0.1", "give --compare-with"),
        ("earlier-stack-alone", "--model {absent} --earlier-stack {earlier}",
         "give --compare-with"),
        ("spectral-and-margin", "--model {absent} --compare-with {mapped}_class.tif "
         "--earlier-stack {earlier} --change-margin 0.1", "choose one"),
        ("earlier-stack-absent", "--model {absent} --compare-with {mapped}_class.tif "
         "--earlier-stack {absent_tif}", "--earlier-stack {absent_tif} does not exist"),
        ("spectral-threshold-0", "--model {absent} --compare-with {mapped}_class.tif "
         "--earlier-stack {earlier} --spectral-threshold 0", "must be a number > 0"),
        ("spectral-threshold-alone", "--model {absent} --spectral-threshold 2",
         "give --earlier-stack"),
        ("earlier-stack-linear", "--compare-with {mapped}_class.tif --earlier-stack {linear}",
         "--earlier-stack {linear}"),
        ("normalise-to-linear", "--compare-with {mapped}_class.tif --normalise-to {linear} "
         "--change-margin 0.1", "--normalise-to {linear}"),
        ("earlier-stack-l1c", "--compare-with {mapped}_class.tif --earlier-stack {l1c}",
         "--earlier-stack {l1c}"),
        ("earlier-stack-off-grid", "--compare-with {mapped}_class.tif --earlier-stack {cropped}",
         "cropped.tif is not on the grid"),
        ("earlier-map-without-prob", "--compare-with {no_prob}_class.tif",
         "isa_prob.tif does not exist ... --change-margin 0"),
        ("spectral-without-prob", "--compare-with {no_prob}_class.tif --earlier-stack {earlier}",
         "drop --earlier-stack and pass --change-margin 0"),
        # the model file
        ("model-nan-weights", "--model {nan_weights}", "has weights that are not finite"),
        ("model-of-degree-pixels", "--model {degrees}", "trained on pixels of 8.98e-05 in "
         "EPSG:4326, which is not a projected CRS ... import them again ... !gdalwarp -tr"),
        ("model-garbage", "--model {garbage}", "--model {garbage} cannot be read as a model "
         "file (it is truncated, damaged or not a torch file); copy it again, or give the "
         "model.pt that isamap-train wrote in its --out folder"),
        ("window-model-tile", "--model {window_model}",
         "its maps are made on 128 px tiles; --tile 64 would make another map: omit --tile or "
         "pass 128 (lower --batch-size to save memory), or pass --any-tile to make that other "
         "map"),
        ("deleted-local-norm", "--model {local_norm}", "--model {local_norm} records settings "
         "this isamap's 'unet-s2' network does not take (model_kwargs: bands, "),
        ("deleted-indices", "--model {indices}", "--model {indices} records settings "
         "this isamap's 'unet-s2' network does not take (model_kwargs: bands, "),
        ("calibration-list", "--model {calibration_list}", "--model {calibration_list}: the "
         "model description does not hold together (the model's calibration is invalid: the "
         "calibration record is a list, not a mapping"),
        ("calibration-without-temperature", "--model {no_temperature}", "holds no temperature"),
        ("calibration-huge-temperature", "--model {huge_temperature}",
         "temperature 1e+30 lies outside 0.05 to 20, the range a fit can give ... copy it "
         "again"),
        ("isa-class-pervious", "--isa-class 0",
         "--isa-class 0 is the model's class 'pervious', which is not impervious (its classes: "
         "0 pervious, 1 impervious); give --isa-class 1, or leave it out"),
        # post-processing flags without their post-processing
        *[(f"postprocess{flags.replace(' ', '')}", flags,
           f"{flag} is for --postprocess {rule}, which this run does not apply: add "
           f"--postprocess {rule}, or drop it")
          for flags, flag, rule in [
              ("--clahe-clip 3", "--clahe-clip", "clahe"),
              ("--clahe-block 64", "--clahe-block", "clahe"),
              ("--clahe-threshold 100", "--clahe-threshold", "clahe"),
              ("--force-postprocess", "--force-postprocess", "clahe"),
              ("--keep-window 32", "--keep-window", "keep"),
              ("--postprocess keep --clahe-clip 3", "--clahe-clip", "clahe")]],
        # --out, --month and --zones
        ("out-a-folder", "--out {out}/", "is a prefix of file names ... --out {out}/isa"),
        ("month-not-yyyy-mm", "--month June", "is not YYYY-MM"),
        ("zones-not-json", "--zones {z_txt}", "--zones {z_txt} is not GeoJSON: Expecting value"),
        ("zones-a-list", "--zones {list_json}", "--zones {list_json} is not GeoJSON: its JSON is "
         "a list"),
        ("zones-a-line", "--zones {line_geojson}",
         "feature 0 of --zones {line_geojson} is not a (Multi)Polygon"),
        ("zones-off-the-map", "--zones {far_geojson}",
         "no zone of --zones {far_geojson} touches the map"),
        ("clahe-on-a-binary-model", "--postprocess clahe --clahe-block 32",
         "--postprocess clahe is made for land-cover models ... --force-postprocess"),
        ("zones-two-levels", "--zones {zones}",
         "the features of --zones {zones} are named at different levels: NAME_1 (feature 1) "
         "and NAME_2 (features 0, 2), and one table would mix them; give a file of one level, "
         "or --zones-name a property naming every feature at one level"),
        # the runtime
        ("cog-writer-misspelt", "ISAMAP_COG_WRITER=gdal-cog --model {absent}",
         "ISAMAP_COG_WRITER='gdal-cog' is not a COG writer; use one of stream, gdal"),
        ("int8-on-cuda", "--precision int8 --device cuda", "--precision int8 is for CPU"
         if torch.cuda.is_available() else "CUDA is not available; use --device cpu"),
        ("int8-disagrees", "--model {tied} --precision int8", "class agreement with fp32"),
    ]])
def test_refusals(refusal_inputs, tmp_path, capsys, monkeypatch, argv, says):
    """Each row: ``isamap-predict`` with the row's words (``NAME=value`` words set the
    environment; ``--model``, ``--input``, ``--out`` default to ``model_file``, a 120 x 150
    stack and a fresh folder), refused with exit 2 in one line holding each part of ``says``
    (parts joined by `` ... ``; a part after ``!`` is absent), with no warning beside it,
    before writing anything under ``--out``'s folder."""
    paths = {**refusal_inputs, "out": str(tmp_path / "o" / "isa")}
    words = [word.format(**paths) for word in argv.split()]
    while "=" in words[0]:
        monkeypatch.setenv(*words.pop(0).split("=", 1))
    for flag, value in {"--model": "{model}", "--input": "{stack}", "--out": "{out}",
                        "--tile": "64", "--overlap": "16", "--precision": "fp32"}.items():
        words += [] if flag in words else [flag, value.format(**paths)]
    folder = Path(words[words.index("--out") + 1]).parent
    before = _files(folder) if folder.exists() else None
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:  # what a user's Python shows
        warnings.simplefilter("always")
        for quiet in (DeprecationWarning, PendingDeprecationWarning):
            warnings.simplefilter("ignore", quiet)
        status = predict_main([*words, "--quiet"])
    err = capsys.readouterr().err
    assert [str(w.message) for w in caught] == []
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("isamap-predict: error: "), err
    for part in says.format(**paths).split(" ... "):  # a part after '!': absent
        assert (part[1:] not in err) if part.startswith("!") else (part in err), (part, err)
    assert (_files(folder) if folder.exists() else None) == before


def test_predict_cli_writes_cogs_pngs_tables_and_change(model_file, small_stack, tmp_path,
                                                        capsys):
    zones = tmp_path / "z.geojson"
    zones.write_text(json.dumps({"type": "Polygon", "coordinates": [[
        [117.0, 30.7], [117.1, 30.7], [117.1, 30.8], [117.0, 30.8], [117.0, 30.7]]]}))
    common = ["--model", str(model_file), "--input", str(small_stack), "--tile", "64",
              "--overlap", "16", "--quiet", "--precision", "fp32"]
    assert predict_main([*common, "--out", str(tmp_path / "y1" / "isa"), "--month",
                         "2021-06"]) == 0
    first = capsys.readouterr().out
    assert "isa_km2" in first
    assert predict_main([*common, "--out", str(tmp_path / "y2" / "isa"), "--month", "2023-06",
                         "--compare-with", str(tmp_path / "y1" / "isa_class.tif")]) == 0
    second = capsys.readouterr().out
    assert "ISA change since" in second and "gain_km2" in second
    out = tmp_path / "y2"
    for name in ("isa_class.tif", "isa_prob.tif", "isa_change.tif", "isa_class.png",
                 "isa_prob.png", "isa_area.json", "isa_area.csv", "isa_change_area.json"):
        assert (out / name).exists(), name
    with rasterio.open(out / "isa_prob.tif") as ds:
        assert ds.tags()["month"] == "2023-06" and ds.tags()["metric_val_iou"] == "0.71"
        assert (ds.read(1)[:8, :8] == 255).all()
    # the same command again: nothing recomputed, the quick-looks not redrawn; one removed
    # is drawn again
    pictures = {p: p.stat().st_mtime_ns for p in (tmp_path / "y1").glob("isa_*.png")}
    assert len(pictures) == 2
    assert predict_main([*common, "--out", str(tmp_path / "y1" / "isa"), "--month",
                         "2021-06"]) == 0
    assert '"skipped": true' in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in pictures} == pictures
    (tmp_path / "y1" / "isa_prob.png").unlink()
    assert predict_main([*common, "--out", str(tmp_path / "y1" / "isa"), "--month",
                         "2021-06"]) == 0
    assert (tmp_path / "y1" / "isa_prob.png").stat().st_size > 0


def test_predict_applies_the_model_files_temperature(small_stack, tmp_path):
    """Same weights, calibrated at T = 3: the probability COG moves, the class COG stays."""
    kwargs = {"widths": [4, 8, 8, 16, 16]}
    torch.manual_seed(0)
    model = create_model("unet", len(BANDS), 2, **kwargs)
    common = ["--input", str(small_stack), "--tile", "64", "--overlap", "16", "--quiet",
              "--precision", "fp32"]
    read = {}
    for t in (1.0, 3.0):
        calibration = {"method": "temperature", "temperature": t} if t != 1 else {}
        meta = ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                         model_kwargs=kwargs, calibration=calibration)
        path = save_model_file(tmp_path / f"t{t}.pt", model, meta)
        assert predict_main(["--model", str(path), *common,
                             "--out", str(tmp_path / f"t{t}" / "isa")]) == 0
        with rasterio.open(tmp_path / f"t{t}" / "isa_class.tif") as c, \
                rasterio.open(tmp_path / f"t{t}" / "isa_prob.tif") as p:
            read[t] = (c.read(1), p.read(1).astype(float), p.tags()["calibration"])
    (c1, p1, tag1), (c3, p3, tag3) = read[1.0], read[3.0]
    # each tile's class is its arg-max, the same at any T; where overlapping tiles blend, the
    # blend of calibrated probabilities may fall on the other side of 1/2 (a few seam pixels)
    assert (c1 != c3).mean() < 0.002
    valid = p1 != 255
    assert tag1.startswith("uncalibrated") and tag3.startswith("temperature 3.000")
    # P at T = 3 is sigmoid(logit / 3): nearer one half wherever the logit is not zero
    far = valid & (np.abs(p1 - 125) > 10)
    assert far.any() and (np.abs(p3[far] - 125) < np.abs(p1[far] - 125)).all()
    logit = lambda p: np.log(p / (250 - p))  # noqa: E731
    inner = valid & (p1 > 25) & (p1 < 225)  # where a step of 1/250 moves the logit little
    gap = np.abs(logit(p3[inner]) - logit(p1[inner]) / 3)  # exact but for seams and rounding
    assert np.quantile(gap, 0.99) < 0.05


@pytest.mark.slow
def test_sentinel2_zero_padded_band_names_map_as_isamaps_own(model_file, tmp_path, capsys):
    """A stack whose bands are named as ESA and most archives name them (B02, B03, B04, B08)
    maps as the same stack named B2..B8 does, bit for bit."""
    data = smooth_stack(60, 70)
    ours = write_stack(tmp_path / "ours.tif", data)
    theirs = write_stack(tmp_path / "theirs.tif", data,
                         bands=("B02", "B03", "B04", "B08", "VV", "VH"))
    maps = []
    for stack in (ours, theirs):
        out = tmp_path / stack.stem / "isa"
        assert predict_main(["--model", str(model_file), "--input", str(stack), "--out",
                             str(out), "--no-progress", "--precision", "fp32"]) == 0
        with rasterio.open(f"{out}_prob.tif") as ds:
            maps.append(ds.read(1))
    assert np.array_equal(maps[0], maps[1])


@pytest.mark.slow
def test_the_month_is_the_stacks_own_and_dates_run_forward(model_file, tmp_path):
    """A stack recording its month gives it to the maps (no --month needed); a change map runs
    from the earlier date to the later one (test_refusals: the other way round)."""
    data = smooth_stack(60, 70)
    early = _tagged(write_stack(tmp_path / "s2019.tif", data), MONTH="2019-06")
    late = _tagged(write_stack(tmp_path / "s2021.tif", data * 1.1), MONTH="2021-06")
    common = ["--model", str(model_file), "--quiet", "--precision", "fp32"]
    assert predict_main([*common, "--input", str(late), "--out", str(tmp_path / "b" / "isa")]) \
        == 0
    with rasterio.open(tmp_path / "b" / "isa_class.tif") as ds:
        assert ds.tags()["month"] == "2021-06"
    assert predict_main([*common, "--input", str(early), "--out", str(tmp_path / "a" / "isa")]) \
        == 0
    assert predict_main([*common, "--input", str(late), "--compare-with",
                         str(tmp_path / "a" / "isa_class.tif"), "--earlier-stack", str(early),
                         "--out", str(tmp_path / "d" / "isa")]) == 0


def test_publish_cli_dry_run_prints_manifest_and_script(model_file, small_stack, tmp_path,
                                                        capsys):
    assert predict_main(["--model", str(model_file), "--input", str(small_stack), "--out",
                         str(tmp_path / "isa"), "--tile", "64", "--overlap", "16", "--quiet",
                         "--month", "2023-06"]) == 0
    capsys.readouterr()
    assert publish_main(["--prefix", str(tmp_path / "isa"), "--asset-id", "isamap/wuhan",
                         "--project", "my-project", "--gcs-prefix", "gs://maps/isa",
                         "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert '"name": "projects/my-project/assets/isamap/wuhan"' in out
    assert '"pyramidingPolicy": "MODE"' in out and "Map.addLayer(" in out
    assert (tmp_path / "wuhan.manifest.json").exists() and (tmp_path / "wuhan.js").exists()
    assert "# sharing: private: readable by the project's members only" in out
    # --public: the dry run says the asset will be public (it never did)
    assert publish_main(["--prefix", str(tmp_path / "isa"), "--asset-id", "isamap/wuhan",
                         "--project", "my-project", "--gcs-prefix", "gs://maps/isa",
                         "--public", "--reader", "user:a@b.org", "--dry-run"]) == 0
    assert ("# sharing: PUBLIC: readable by everyone (allUsers), its properties (model, bands, "
            "metrics, month) too; also shared with user:a@b.org") in capsys.readouterr().out


def test_publish_without_credentials_says_what_works_without_an_account(cogs, tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.delenv("EE_PROJECT", raising=False)
    prefix = cogs.class_path.removesuffix("_class.tif")
    assert publish_main(["--prefix", prefix, "--asset-id", "projects/my-proj/assets/isa",
                         "--gcs-prefix", "gs://bucket1/isa", "--out-dir",
                         str(tmp_path / "pub"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "no --project given" in err and "--dry-run writes the\nimage manifest" in err
    assert "export_patches" not in err and "isamap-export" not in err and "Traceback" not in err


def test_two_predictions_into_one_out_the_second_is_refused_by_the_lock(model_file, small_stack,
                                                                        tmp_path, capsys):
    """The second run waited on nothing and both wrote the same strips; they died with a
    misleading "check free space". Now the output is held like the export's: one clear line."""
    import subprocess
    import sys

    from tests.support import REPO_ROOT

    work = tmp_path / "out" / ".isa.partial"  # where a prediction of --out out/isa works
    work.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom core.lock import hold_output\n"
         "with hold_output(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n",
         str(work)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code = predict_main(["--model", str(model_file), "--input", str(small_stack), "--tile",
                             "64", "--overlap", "16", "--quiet", "--precision", "fp32",
                             "--out", str(tmp_path / "out" / "isa")])
        err = capsys.readouterr().err
        assert code == 1 and f"pid {holder.pid}" in err and "free space" not in err
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".isa.partial"]
    finally:
        holder.kill()
        holder.wait()


def test_an_out_holding_a_map_maps_again_the_same_input(model_file, tmp_path, capsys):
    """An --out holding a map takes what test_refusals' out-of-another-* rows do not refuse:
    the identical request is skipped; the same stack under another name, or exported again
    (same name, grid and month, another fingerprint: it covers the labels and the recipe too)
    keeps the map; the same model and input at another tiling maps again, as asked."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    data = smooth_stack(100, 130, seed=1)
    first = _tagged(write_stack(tmp_path / "a" / "stack_2019-06_image.tif", data),
                    MONTH="2019-06", ISAMAP_FINGERPRINT="sha256:one")
    common = ["--model", str(model_file), "--overlap", "16", "--quiet", "--precision", "fp32",
              "--out", str(tmp_path / "y" / "isa")]
    assert predict_main([*common, "--tile", "64", "--input", str(first)]) == 0
    cog = tmp_path / "y" / "isa_class.tif"
    before = cog.read_bytes()
    with rasterio.open(cog) as ds:
        assert ds.tags()["input"] == "stack_2019-06_image.tif"  # the file's name, not its folder
    capsys.readouterr()
    assert predict_main([*common, "--tile", "64", "--input", str(first)]) == 0
    assert '"skipped": true' in capsys.readouterr().out
    copy = tmp_path / "b" / "copy.tif"
    copy.write_bytes(first.read_bytes())
    assert predict_main([*common, "--tile", "64", "--input", str(copy)]) == 0
    assert cog.read_bytes() == before
    again = _tagged(write_stack(tmp_path / "b" / first.name, data), MONTH="2019-06",
                    ISAMAP_FINGERPRINT="sha256:relabelled")
    assert predict_main([*common, "--tile", "64", "--input", str(again)]) == 0
    assert predict_main([*common, "--tile", "32", "--input", str(first)]) == 0
    with rasterio.open(cog) as ds:
        assert ds.tags()["tile"] == "32"


def test_blend_core_is_recorded_with_the_lattice_in_the_cogs(model_file, small_stack, tmp_path):
    """--blend core: the map isamap-map makes of the same pixels, with its lattice in the tags."""
    assert predict_main(["--model", str(model_file), "--input", str(small_stack), "--tile", "64",
                         "--overlap", "16", "--quiet", "--precision", "fp32", "--blend", "core",
                         "--out", str(tmp_path / "c" / "isa")]) == 0
    with rasterio.open(tmp_path / "c" / "isa_class.tif") as ds, rasterio.open(small_stack) as src:
        tags = ds.tags()
        assert (tags["tile"], tags["overlap"], tags["blend"]) == ("64", "16", "core")
        assert tags["lattice_origin"] == f"{src.transform.c!r},{src.transform.f!r}"


def _test_model_file(path: Path, name: str, dataset: Path | None = None) -> Path:
    """A test model; with ``dataset``, normalised by its training split and recording it."""
    mean: tuple[float, ...] = (0.0,) * 6
    std: tuple[float, ...] = (1.0,) * 6
    if dataset:
        from training.data import PatchDataset, compute_norm_stats

        norm = compute_norm_stats(PatchDataset(dataset, "train", BANDS, None))
        mean, std = norm.mean, norm.std
    model = create_model(name, len(BANDS), 2, module="tests.support.models")
    meta = ModelMeta(name, len(BANDS), 2, BANDS, mean, std, module="tests.support.models",
                     extra={"dataset": {"root": str(dataset)}} if dataset else {})
    return save_model_file(path, model, meta)


@pytest.mark.skipif(not __import__("engine.quantize", fromlist=["x"]).cpu_has_int8(),
                    reason="this CPU has no VNNI/AMX int8 instructions")
def test_predict_int8_maps_like_fp32_and_records_its_agreement(tmp_path):
    pytest.importorskip("torchao")
    model = _test_model_file(tmp_path / "conv.pt", "test-band-conv")
    data = smooth_stack(120, 150)
    # band 0 off its class boundary: int8 cannot hold a pixel a few thousandths from it
    data[0] = np.sign(data[0]) * (np.abs(data[0]) + 0.2)
    data[0, :8, :8] = np.nan
    stack = write_stack(tmp_path / "stack.tif", data)
    common = ["--model", str(model), "--input", str(stack), "--tile", "64",
              "--overlap", "16", "--batch-size", "4", "--quiet"]
    assert predict_main([*common, "--out", str(tmp_path / "f" / "isa"),
                         "--precision", "fp32"]) == 0
    assert predict_main([*common, "--out", str(tmp_path / "q" / "isa"),
                         "--precision", "int8"]) == 0
    with rasterio.open(tmp_path / "f" / "isa_class.tif") as f, \
            rasterio.open(tmp_path / "q" / "isa_class.tif") as q:
        agree = float((f.read(1) == q.read(1)).mean())
        tags = q.tags()
    assert agree >= 0.99
    assert tags["runtime"] == "int8/nchw"
    assert float(tags["runtime_int8_class_agreement"]) >= 0.99
    # the model file records no dataset: calibrated and checked on windows of the input,
    # as many as its patches would give, against the fp32 map's classes
    # (a small input holds fewer distinct windows than 32 + 64: all of them)
    assert tags["runtime_int8_calibration"].endswith(
        " windows of 128 px spread over the input (120 x 150 px)")
    assert "no labels" in tags["runtime_int8_check"]
    assert tags["runtime_int8_check_reference"] == "fp32 map's classes (no labels)"
    # how long quantizing took is this machine's, not the map's: never in its bytes
    assert not any(k.endswith("_seconds") or k == "runtime_int8_reused" for k in tags)


@pytest.mark.skipif(not __import__("engine.quantize", fromlist=["x"]).cpu_has_int8(),
                    reason="this CPU has no VNNI/AMX int8 instructions")
def test_predict_int8_calibrates_on_the_model_files_training_patches(small_stack, tmp_path):
    pytest.importorskip("torchao")
    from tests.support.rasters import write_patch_dataset

    dataset = write_patch_dataset(tmp_path / "patches", n=12, size=32)
    model = _test_model_file(tmp_path / "conv.pt", "test-band-conv", dataset)
    assert predict_main(["--model", str(model), "--input", str(small_stack), "--tile", "64",
                         "--overlap", "16", "--out", str(tmp_path / "q" / "isa"),
                         "--precision", "int8", "--quiet"]) == 0
    with rasterio.open(tmp_path / "q" / "isa_class.tif") as q:
        tags = q.tags()
    # the dataset by its name: a map's tags never hold a local absolute path
    assert tags["runtime_int8_calibration"] == \
        f"8 patches of the training split of {dataset.name}"
    assert "validation split" in tags["runtime_int8_check"]
    fp32_f1, int8_f1 = json.loads(tags["runtime_int8_isa_f1_labels"])
    assert abs(int8_f1 - fp32_f1) <= 0.005


@pytest.mark.slow
def test_the_same_command_writes_the_same_cog_bytes_whatever_the_cache(model_file,
                                                                      small_stack, tmp_path):
    """Two runs of one ``isamap-predict --precision bf16 --channels-last on``, each a fresh
    process with a fresh cache folder (``XDG_CACHE_HOME``), one on one thread with the
    default allocator, one on two threads with freed memory given back
    (``ISAMAP_KEEP_FREED_MEMORY=off``, the plain allocator): the COGs are the same bytes. A map
    is a function of its inputs, model, precision and layout. (Both factors differ between the
    two runs: either one changing a byte fails the test.)"""
    import os
    import subprocess
    import sys

    import matplotlib

    args = ["--model", str(model_file), "--input", str(small_stack), "--tile", "64",
            "--overlap", "16", "--quiet", "--precision", "bf16", "--channels-last", "on"]
    script = "import sys; from cli.predict import predict_main; sys.exit(predict_main())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISAMAP_")}
    # matplotlib's font list (its cache is no isamap cache): built once, not in every process
    env["MPLCONFIGDIR"] = matplotlib.get_cachedir()
    runs = []
    for i, (threads, allocator) in enumerate((("1", ""), ("2", "off"))):
        out = tmp_path / f"run{i}"
        runs.append((out, subprocess.Popen(
            [sys.executable, "-c", script, *args, "--out", str(out / "isa")],
            env={**env, "XDG_CACHE_HOME": str(tmp_path / f"cache{i}"),
                 "OMP_NUM_THREADS": threads, "ISAMAP_KEEP_FREED_MEMORY": allocator},
            stdout=subprocess.DEVNULL)))
    for _, process in runs:
        assert process.wait(timeout=240) == 0
    for name in ("isa_class.tif", "isa_prob.tif"):
        first = (runs[0][0] / name).read_bytes()
        assert all((out / name).read_bytes() == first for out, _ in runs[1:]), name
        assert_valid_cog(runs[0][0] / name)


def _earlier_date_mapped(model_file: Path, small_stack: Path, tmp_path: Path,
                         capsys) -> tuple[Path, list[str], str]:
    """A later stack (the earlier under a shared gain and offset), the predict options both
    dates use, and the earlier date's class COG, mapped from ``small_stack``."""
    with rasterio.open(small_stack) as ds:
        data = ds.read()
    later = write_stack(tmp_path / "later.tif", data * 1.3 + 0.2)
    common = ["--model", str(model_file), "--tile", "64", "--overlap", "16", "--quiet",
              "--precision", "fp32"]
    assert predict_main([*common, "--input", str(small_stack),
                         "--out", str(tmp_path / "a" / "isa")]) == 0
    capsys.readouterr()
    return later, common, str(tmp_path / "a" / "isa_class.tif")


@pytest.mark.slow
def test_change_is_decided_with_a_margin_on_a_normalised_later_date(small_stack, tmp_path,
                                                                   capsys):
    """The later date is the earlier one under another gain and offset: no change at all."""
    kwargs = {"widths": [4, 8, 8, 16, 16]}
    torch.manual_seed(0)  # weights whose map the shift moves by a known amount
    model = create_model("unet", len(BANDS), 2, **kwargs)
    model_file = save_model_file(tmp_path / "m.pt", model, ModelMeta(
        "unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6, model_kwargs=kwargs))
    later, common, earlier = _earlier_date_mapped(model_file, small_stack, tmp_path, capsys)
    assert predict_main([*common, "--input", str(later), "--out", str(tmp_path / "b" / "isa"),
                         "--compare-with", earlier, "--change-margin", "0.1",
                         "--normalise-to", str(small_stack)]) == 0
    out = capsys.readouterr().out
    record = json.loads(out[out.index("\n{") + 1:])["change"]
    assert record["change_margin"] == 0.1
    assert record["normalisation"]["gain"] == pytest.approx([1 / 1.3] * 6, rel=1e-3)
    with rasterio.open(tmp_path / "b" / "isa_change.tif") as ds:
        tags, codes = ds.tags(), ds.read(1)
    assert tags["change_margin"] == "0.1" and "0.5 - margin" in tags["change_rule"]
    assert json.loads(tags["normalisation"])["normalised_to"] == "stack.tif"  # no local path
    assert not np.isin(codes, (2, 3)).any()  # the same ground: neither gain nor loss
    # normalised, the later date's probabilities are the earlier's; unnormalised they are not
    assert predict_main([*common, "--input", str(later), "--out", str(tmp_path / "e" / "isa"),
                         "--compare-with", earlier, "--change-margin", "0"]) == 0
    with rasterio.open(tmp_path / "e" / "isa_change.tif") as ds:
        assert ds.tags()["change_rule"] == "class maps differenced"

    def prob(name: str) -> np.ndarray:
        with rasterio.open(tmp_path / name / "isa_prob.tif") as ds:
            return ds.read(1).astype(float)

    assert np.abs(prob("b") - prob("a")).max() <= 2  # 2 steps of 1/250
    assert np.abs(prob("e") - prob("a")).mean() > 5


@pytest.mark.slow
def test_change_by_the_spectral_rule_is_recorded_and_its_misuse_refused(model_file, small_stack,
                                                                        tmp_path, capsys):
    """The later stack is the earlier under a shared gain and offset: the bands say nothing
    changed, so the spectral rule finds no change whatever the model's maps do."""
    later, common, earlier = _earlier_date_mapped(model_file, small_stack, tmp_path, capsys)
    assert predict_main([*common, "--input", str(later), "--out", str(tmp_path / "b" / "isa"),
                         "--compare-with", earlier, "--earlier-stack", str(small_stack)]) == 0
    out = capsys.readouterr().out
    record = json.loads(out[out.index("\n{") + 1:])["change"]
    assert record["change_rule"] == "spectral"
    assert record["spectral_threshold"] == DEFAULT_SPECTRAL_THRESHOLD
    assert record["spectral_fit"]["pixels"] == 120 * 150 - 64  # the NaN corner left out
    assert record["earlier_stack"] == "stack.tif"  # no local path
    with rasterio.open(tmp_path / "b" / "isa_change.tif") as ds:
        tags, codes = ds.tags(), ds.read(1)
    assert tags["change_rule"].startswith("gain where the bands changed")
    assert json.loads(tags["spectral_fit"]) == record["spectral_fit"]
    assert not np.isin(codes, (2, 3)).any() and (codes[:8, :8] == 255).all()
    # an earlier stack that says Level-1C, mapped with --allow-implausible (test_refusals:
    # refused without it), and the reason recorded in the maps' tags and the summary
    with rasterio.open(small_stack) as ds:
        data = ds.read()
    named = write_stack(tmp_path / "named.tif", data)
    with rasterio.open(named, "r+") as ds:
        ds.update_tags(PRODUCT_LEVEL="Level-1C")
    given = [*common, "--input", str(later), "--compare-with", earlier, "--earlier-stack",
             str(named)]
    assert predict_main([*given, "--out", str(tmp_path / "n" / "isa"),
                         "--allow-implausible"]) == 0
    out = capsys.readouterr().out
    notes = json.loads(out[out.index("\n{") + 1:])["input_notes"]
    assert [n for n in notes if n.startswith("--earlier-stack: mapped with --allow-implausible")]
    for made in ("isa_class.tif", "isa_change.tif"):  # the change map says so too
        with rasterio.open(tmp_path / "n" / made) as ds:
            assert json.loads(ds.tags()["input_notes"]) == notes, made
    # a later date compared with that map: its change map carries the earlier map's notes
    assert predict_main([*common, "--input", str(later), "--out", str(tmp_path / "m" / "isa"),
                         "--compare-with", str(tmp_path / "n" / "isa_class.tif")]) == 0
    out = capsys.readouterr().out
    earlier_notes = [f"--compare-with: {n}" for n in notes]
    with rasterio.open(tmp_path / "m" / "isa_change.tif") as ds:
        assert json.loads(ds.tags()["input_notes"]) == earlier_notes
    summary = json.loads(out[out.index("\n{") + 1:])
    assert summary["change"]["compare_with_notes"] == earlier_notes
    assert "input_notes" not in summary  # the later input itself was not doubted


def test_a_window_standardising_model_maps_only_on_its_recorded_tile(small_stack, tmp_path):
    kwargs = {"widths": [4, 8, 8, 16, 16], "input_norm": "patch", "bands": list(BANDS)}
    model = create_model("unet-s2", len(BANDS), 2, **kwargs)
    meta = ModelMeta("unet-s2", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                     model_kwargs=kwargs, window=128)
    path = save_model_file(tmp_path / "s2.pt", model, meta)
    common = ["--model", str(path), "--input", str(small_stack), "--overlap", "16", "--quiet",
              "--precision", "fp32"]
    out = tmp_path / "maps" / "isa"
    assert predict_main([*common, "--out", str(out), "--tile", "128"]) == 0
    with rasterio.open(f"{out}_class.tif") as ds:
        assert ds.shape == (120, 150) and ds.tags()["tile"] == "128"
    # asked for, the other tile makes another map, which says which tile it was made on
    other = tmp_path / "other" / "isa"
    assert predict_main([*common, "--out", str(other), "--tile", "64", "--any-tile"]) == 0
    with rasterio.open(f"{other}_prob.tif") as a, rasterio.open(f"{out}_prob.tif") as b:
        assert a.tags()["tile"] == "64" and (a.read(1) != b.read(1)).any()



def test_a_unet_s2_file_written_before_scene_statistics_maps_as_it_did(small_stack, tmp_path):
    """Model files rebuild their recorded network and normalisation, not their name's recipe.

    ``unet-s2`` now trains on each scene's statistics; a file written before records
    ``unet-s2`` with ``input_norm: patch`` and no ``norm`` (read as ``training``). It must
    rebuild the per-window network and map exactly as the same weights do under the name of
    that recipe today (``unet-s2-window``).
    """
    from training.models.unet import PatchStandardise, UNet

    kwargs = {"widths": [4, 8, 8, 16, 16], "input_norm": "patch", "bands": list(BANDS)}
    torch.manual_seed(3)
    old_net = UNet(len(BANDS), 2, sensor="S2", **kwargs).eval()  # built as the old recipe did
    paths = {}
    for name in ("unet-s2", "unet-s2-window"):
        meta = ModelMeta(name, len(BANDS), 2, BANDS, (0.1,) * 6, (0.5,) * 6,
                         model_kwargs=kwargs, window=128)
        paths[name] = save_model_file(tmp_path / f"{name}.pt", old_net, meta)
    payload = torch.load(paths["unet-s2"], weights_only=True)
    payload["meta"].pop("norm")  # written before norm was recorded
    payload["meta"]["extra"] = {"config": {"model": "unet-s2", "epochs": 5}}
    payload.pop("description_sha256")  # nor a description digest
    torch.save(payload, paths["unet-s2"])
    loaded, meta = load_model_file(paths["unet-s2"])
    assert meta.norm == "training" and meta.window == 128
    assert isinstance(loaded.standardise, PatchStandardise)
    x = torch.randn(2, len(BANDS), 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), old_net(x))
    probs = {}
    for name, path in paths.items():
        out = tmp_path / name / "isa"
        assert predict_main(["--model", str(path), "--input", str(small_stack), "--out", str(out),
                             "--overlap", "16", "--tile", "128", "--precision", "fp32",
                             "--quiet"]) == 0
        with rasterio.open(f"{out}_prob.tif") as ds:
            probs[name] = ds.read(1)
            assert "normalisation" not in ds.tags()  # the training statistics, not the scene's
    assert np.array_equal(probs["unet-s2"], probs["unet-s2-window"], equal_nan=True)



@pytest.mark.slow
def test_a_rerun_that_replaces_the_map_removes_the_old_maps_side_outputs(
        model_file, small_stack, tmp_path, capsys, caplog):
    """A new user's walk: a run without --vectors (other tiling) left the earlier map's
    polygons, and a run without --compare-with its change map, beside the new map."""
    common = ["--model", str(model_file), "--input", str(small_stack), "--overlap", "16",
              "--quiet", "--precision", "fp32"]
    assert predict_main([*common, "--tile", "64", "--out", str(tmp_path / "a" / "isa")]) == 0
    side = ("isa_change.tif", "isa_change_area.json", "isa_change_area.csv", "isa_builtup.gpkg")
    later = [*common, "--out", str(tmp_path / "b" / "isa")]
    assert predict_main([*later, "--tile", "64", "--vectors", "--vector-min-area", "0",
                         "--compare-with", str(tmp_path / "a" / "isa_class.tif")]) == 0
    assert all((tmp_path / "b" / name).exists() for name in side)
    # the overlap check (cli.predict, check_apart) knows every file such a run writes
    from inference.predict.job import PredictOutputs

    made = {p.name for p in (tmp_path / "b").iterdir() if not p.name.startswith(".")}
    written = PredictOutputs(str(tmp_path / "b" / "isa")).written_paths()
    assert made <= {Path(p).name for p in written}, made
    assert predict_main([*later, "--tile", "64"]) == 0  # the same map: its outputs stay
    assert all((tmp_path / "b" / name).exists() for name in side)
    with caplog.at_level("INFO", logger="inference.predict.workflow"):
        assert predict_main([*later, "--tile", "96"]) == 0  # another map
    assert not any((tmp_path / "b" / name).exists() for name in side)
    assert (tmp_path / "b" / "isa_class.tif").exists()
    removed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("removed")]
    assert len(removed) >= len(side) and all("described the map this run replaced" in m
                                             for m in removed)
    capsys.readouterr()

