"""isamap-import-patches on real GeoTIFF pairs: the contract's dataset, refusals before writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from cli.import_patches import main
from contract.dataset import read_index, read_manifest
from core.errors import InputDataError
from tests.support.refusals import case

SIZE, RES, X0, Y0 = 32, 10.0, 500000.0, 3400000.0
BANDS = ("B2", "B3", "B4", "B8")


def _tif(path: Path, data: np.ndarray, left: float, top: float, nodata=None,
         descriptions: bool = False, crs: str = "EPSG:32650", res: float = RES) -> None:
    data = data if data.ndim == 3 else data[None]
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": data.dtype.name, "crs": crs,
               "transform": Affine(res, 0, left, 0, -res, top), "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = BANDS


def _source(root: Path, layout: str = "folders", cells=((0, 0), (0, 1), (1, 0), (2, 3)),
            float_images: bool = False, crs: str = "EPSG:32650",
            origin: tuple[float, float, float] = (X0, Y0, RES), size: int = SIZE) -> Path:
    """A scene's tiles as another project cuts them: reflectance x 10000 (uint16), 0/255 masks.

    ``float_images``: float32 reflectance 0-1 instead; ``crs`` and ``origin`` (left, top,
    pixel size) place them; ``size`` is the patches' side.
    """
    x0, y0, res = origin
    rng = np.random.default_rng(1)
    images = root / "images" if layout == "folders" else root
    masks = root / "masks" if layout == "folders" else root
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for r, c in cells:
        built = np.zeros((size, size), np.uint8)
        built[4:20, 6 + r:22 + c] = 255
        refl = np.stack([np.where(built, 0.15, 0.05), np.where(built, 0.16, 0.08),
                         np.where(built, 0.17, 0.05), np.where(built, 0.22, 0.35)])
        refl = refl + rng.uniform(0, 0.01, refl.shape)
        dn = refl.astype(np.float32) if float_images else \
            np.round(refl * 10000).astype(np.uint16)
        left, top = x0 + c * size * res, y0 - r * size * res
        name = f"tile_{r}_{c}"
        _tif(images / f"{name}.tif", dn, left, top, crs=crs, res=res)
        _tif(masks / (f"{name}.tif" if layout == "folders" else f"{name}_mask.tif"), built,
             left, top, crs=crs, res=res)
    return root


def _run(src: Path, out: Path, *extra: str) -> int:
    return main([str(src), "--out", str(out), "--month", "2021-06", "--bands",
                 ",".join(BANDS), "--impervious-values", "255", "--quiet", *extra])


@pytest.fixture(scope="module")
def refusal_inputs(tmp_path_factory) -> dict[str, str]:
    """What the rows of :func:`test_refusals` name, built once: pairs of uint16 reflectance x
    10000 (``dn``; with a mask holding a 7, ``odd``; one off the lattice, ``shifted``; one
    without its mask, ``lonely``; in degrees, ``degrees``), sixteen 64 px pairs (``big``; their
    bands reversed, ``reversed``), float reflectance (``floats``), a series of two months
    (``series``), an empty folder."""
    root = tmp_path_factory.mktemp("refusals")
    _source(root / "dn")
    _source(root / "odd")
    with rasterio.open(root / "odd" / "masks" / "tile_0_0.tif", "r+") as ds:
        mask = ds.read(1)
        mask[0, 0] = 7
        ds.write(mask, 1)
    _source(root / "shifted", cells=((0, 0),))
    _tif(root / "shifted" / "images" / "tile_x.tif", np.ones((4, SIZE, SIZE), np.uint16) * 900,
         X0 + 5 * RES, Y0)
    _tif(root / "shifted" / "masks" / "tile_x.tif", np.zeros((SIZE, SIZE), np.uint8),
         X0 + 5 * RES, Y0)
    _source(root / "lonely", cells=((0, 0),))
    (root / "lonely" / "masks" / "tile_0_0.tif").unlink()
    _source(root / "degrees", crs="EPSG:4326", origin=(-0.78, 38.13, 8.983e-05))
    sixteen = [(r, c) for r in range(4) for c in range(4)]  # enough pixels for the pairs' r
    _source(root / "big", cells=sixteen, size=64)
    _source(root / "reversed", cells=sixteen, size=64)
    for path in (root / "reversed" / "images").glob("*.tif"):
        with rasterio.open(path, "r+") as ds:
            ds.write(ds.read()[::-1])
    _source(root / "floats", float_images=True)
    (root / "empty").mkdir()
    names = ("dn", "odd", "shifted", "lonely", "degrees", "big", "reversed", "floats", "empty")
    return {"series": str(_series_source(root / "series", cloudy=False)),
            **{name: str(root / name) for name in names}}


@pytest.mark.xdist_group("gee_export.imported.test_patches.refusals")  # its inputs are built once
@pytest.mark.parametrize("argv, says", [
    # values, masks and the lattice
    case("no-scale-for-dn", "{dn}", "x 10000"),
    case("mask-of-another-value", "{odd} --scale 0.0001 --trust-band-names",  # no warning
         "holds [7]"),  # that 4 patches are too few to check the band order
    case("off-the-lattice", "{shifted} --scale 0.0001", "not on the lattice"),
    case("image-without-mask", "{lonely} --scale 0.0001", "have no mask"),
    case("degrees", "{degrees} --scale 0.0001",  # was 0, a model of 8.98e-05 m pixels
         "is in EPSG:4326, which is not a projected CRS in metres ... gdalwarp -t_srs "
         "EPSG:32630"),
    case("float-scaled-again", "{floats} --scale 0.0001",  # medians of ~1e-5 were imported
         "scaled down a second time ... already: drop --scale"),
    case("float-scaled-again-by-0.001", "{floats} --scale 0.001", "already: drop --scale"),
    case("dn-scaled-twice", "{dn} --scale 0.00000001", "give --scale 0.0001"),
    case("min-valid-fraction-2", "{empty} --min-valid-fraction 2",  # the export's words
         "--min-valid-fraction must be between 0.0 and 1.0, got 2.0; it is the share of valid "
         "pixels a patch needs"),
    case("split-block-0", "{dn} --split-block 0", "--split-block must be >= 1"),
    # the band order, by the export's rules (B2..B8 as B8,B4,B3,B2 exited 0)
    case("bands-reversed", "{big} --scale 0.0001 --bands B8,B4,B3,B2",
         "the bands named B2 and B3 correlate at r = ... give the images' bands in file order "
         "(gdalinfo lists them): --bands B8,B4,B3,B2 does not match their values, or pass "
         "--trust-band-names if they are right"),
    case("bands-given-not-repeated-as-advice", "{reversed} --scale 0.0001",
         "give the images' bands in file order (gdalinfo lists them): --bands B2,B3,B4,B8 does "
         "not match their values ... !e.g. --bands B2,B3,B4,B8"),
    case("red-and-nir-swapped", "{dn} --scale 0.0001 --bands B2,B3,B8,B4",
         "B4 (red) is often twice as bright as B8 ... give the images' bands in file order ... "
         "!--scale"),  # was: give --scale 0.0001
    # series of months
    case("series-swapped", "{series} --bands B2,B3,B4,B8,B8_m1,B4_m1,B3_m1,B2_m1", "_m1"),
    case("earlier-months-only", "{floats} --bands B2_m1,B3_m1,B4_m1,B8_m1",
         "only earlier months' bands ... add them (e.g. B2,B3,B4,B8)"),
    *[case(name, f"{{series}} --bands B2,B3,B4,B8,{names}", says) for name, names, says in (
        ("month-24", "B2_m24,B3_m24,B4_m24,B8_m24", "band B2_m24 names B2 of an earlier "
         "month, but a series reaches 1 to 23 months back (B2_m1 to B2_m23; B2 itself is the "
         "stack's own month)"),
        ("month-0", "B2_m0,B3_m0,B4_m0,B8_m0", "band B2_m0 names B2 of an earlier month, but "
         "a series reaches 1 to 23 months back"),
        ("month-skipped", "B2_m2,B3_m2,B4_m2,B8_m2", "hold B2_m2, B3_m2, B4_m2, B8_m2 without "
         "B2_m1, B3_m1, B4_m1, B8_m1: a series cannot skip a month; import the month before "
         "(B2_m1, B3_m1, B4_m1, B8_m1) too, or leave out B2_m2, B3_m2, B4_m2, B8_m2"))],
])
def test_refusals(refusal_inputs, tmp_path, capsys, argv, says):
    """Each row: ``isamap-import-patches`` with the row's words (the month 2021-06, bands
    B2,B3,B4,B8 and impervious 255 unless it gives them), refused with exit 2 in one line
    holding each part of ``says`` (parts joined by `` ... ``; a part after ``!`` is absent),
    before anything is written under ``--out``."""
    out = tmp_path / "dataset"
    words = [word.format(**refusal_inputs) for word in argv.split()]
    status = main([*words, "--out", str(out), "--quiet", *[
        word for flag, value in (("--month", "2021-06"), ("--bands", ",".join(BANDS)),
                                 ("--impervious-values", "255"))
        if flag not in words for word in (flag, value)]])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("isamap-import-patches: error: ") and "Traceback" not in err, err
    for part in says.split(" ... "):
        assert (part[1:] not in err) if part.startswith("!") else (part in err), (part, err)
    assert not out.exists()


@pytest.mark.parametrize("layout", ["folders", "suffixes"])
def test_pairs_become_the_contracts_dataset(tmp_path, layout, capsys):
    src = _source(tmp_path / "theirs", layout)
    out = tmp_path / "dataset"
    assert _run(src, out, "--scale", "0.0001") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["patches"] == summary["written"] == 4
    manifest = read_manifest(out)
    assert manifest["backend"] == "imported" and manifest["bands"] == list(BANDS)
    assert manifest["grid"]["patch_size"] == SIZE and manifest["grid"]["x0"] == X0
    assert manifest["recipe"]["imported"]["impervious"] == [255]
    records = {(r["row"], r["col"]): r for r in read_index(out)}
    assert set(records) == {(0, 0), (0, 1), (1, 0), (2, 3)}
    assert {r["split"] for r in records.values()} <= {"train", "val", "test"}
    record = records[(2, 3)]
    with rasterio.open(out / record["image"]) as img, rasterio.open(out / record["label"]) as lab:
        image, label = img.read(), lab.read(1)
        assert img.transform == Affine(RES, 0, X0 + 3 * SIZE * RES, 0, -RES, Y0 - 2 * SIZE * RES)
        assert img.descriptions == BANDS and image.dtype == np.float32
    src_image = "images/tile_2_3.tif" if layout == "folders" else "tile_2_3.tif"
    with rasterio.open(src / src_image) as ds:
        np.testing.assert_allclose(image, ds.read().astype(np.float32) * np.float32(1e-4),
                                   rtol=1e-6)
    assert set(np.unique(label)) == {0, 1} and record["isa_fraction"] == pytest.approx(
        (label == 1).mean())
    # what isamap-train reads: every patch, in the contract's units
    from training.data import PatchDataset

    patches = PatchDataset(out, split=None)
    assert len(patches) == 4
    item = patches[0]
    assert tuple(item["image"].shape) == (4, SIZE, SIZE)
    # the same command again writes nothing
    assert _run(src, out, "--scale", "0.0001") == 0
    assert json.loads(capsys.readouterr().out)["written"] == 0


def test_a_band_order_the_pairs_doubt_is_imported_with_trust_band_names(tmp_path):
    """The override the export has (refused without it: test_refusals' bands-reversed)."""
    src = _source(tmp_path / "theirs", cells=[(r, c) for r in range(4) for c in range(4)],
                  size=64)
    out = tmp_path / "dataset"
    assert _run(src, out, "--scale", "0.0001", "--bands", "B8,B4,B3,B2",
                "--trust-band-names") == 0  # the override the export has
    assert read_manifest(out)["bands"] == ["B8", "B4", "B3", "B2"]


def test_a_correctly_named_real_patch_is_not_judged_by_band_pairs_on_too_few_pixels(
        shared_data, tmp_path, capsys):
    """One 64 px window of a real L2A tile, named right, was refused (B7 and B8A correlate at
    0.92 there; the threshold is a whole scene's) with no override."""
    with rasterio.open(shared_data / "terramesh_s1s2" / "433D_629L_3_1_S2L2A.tif") as ds:
        window = Window(0, 128, 64, 64)
        image, transform, crs = ds.read(window=window), ds.window_transform(window), ds.crs
    src = tmp_path / "theirs"
    for folder, data in (("images", image), ("masks", np.zeros((1, 64, 64), np.uint8))):
        (src / folder).mkdir(parents=True)
        _tif(src / folder / "w.tif", data, transform.c, transform.f, crs=crs.to_string())
    names = "B1,B2,B3,B4,B5,B6,B7,B8,B8A,B9,B11,B12"  # the tile's order (shared data README)
    out = tmp_path / "dataset"
    # the cell has no dark pixel, as a +0.1 offset left in shows: doubted, allowed here
    assert _run(src, out, "--scale", "0.0001", "--bands", names, "--allow-implausible") == 0
    err = capsys.readouterr().err
    assert "the band order was not checked by the correlation of bands B7/B8A" in err
    assert "4096 valid pixels, too few (65536 needed" in err
    assert read_manifest(out)["counts"]["patches"] == 1


def test_float_reflectance_imports_as_it_is(tmp_path, capsys):
    """Without --scale (scaled again it is refused: test_refusals)."""
    src = _source(tmp_path / "theirs", float_images=True)
    out = tmp_path / "dataset"
    assert _run(src, out) == 0  # the same images as they are: reflectance 0-1
    assert json.loads(capsys.readouterr().out)["written"] == 4


def test_an_empty_split_is_warned_with_the_split_block_that_fills_every_split(tmp_path, capsys):
    src = _source(tmp_path / "theirs", cells=[(r, c) for r in range(4) for c in range(4)])
    assert _run(src, tmp_path / "one_block", "--scale", "0.0001") == 0  # 4 x 4: one block
    printed = capsys.readouterr()
    summary, err = json.loads(printed.out), printed.err
    assert summary["per_split"] == {"train": 16, "val": 0, "test": 0}
    advised = re.search(r"no val and no test patches .*: use --split-block (\d+) \(gives "
                        r"train (\d+), val (\d+), test (\d+) patches\)", err)
    assert advised, err
    block, *counts = (int(v) for v in advised.groups())
    from training.data import PatchDataset  # isamap-evaluate's reader says the same

    with pytest.raises(InputDataError, match=rf"no 'test' patches .*--split-block {block} "
                       r".*make the dataset again into another --out"):
        PatchDataset(tmp_path / "one_block", "test")
    out = tmp_path / "dataset"
    assert _run(src, out, "--scale", "0.0001", "--split-block", str(block)) == 0
    per_split = json.loads(capsys.readouterr().out)["per_split"]
    assert list(per_split.values()) == counts and min(counts) > 0
    assert read_manifest(out)["split"]["block"] == block
    assert "no val" not in capsys.readouterr().err


def _series_source(root: Path, cloudy: bool = True) -> Path:
    """Sixteen 64 px float patches of two months: B2..B8 of June, then of May (``_m1``)."""
    _source(root / "june", cells=[(r, c) for r in range(4) for c in range(4)], size=64,
            float_images=True)
    images = root / "june" / "images"
    for i, path in enumerate(sorted(images.glob("*.tif"))):
        with rasterio.open(path) as src:
            june, profile = src.read(), src.profile
        may = june * np.float32(0.9)
        if i == 0 and cloudy:
            may[:] = np.nan  # a May patch all cloud: the patch is June's, and kept
        profile.update(count=8, nodata=None)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.concatenate([june, may]))
    return root / "june"


def test_series_patches_are_judged_by_their_base_bands_and_their_own_month(tmp_path):
    """Earlier-month bands (B2_m1) import; their order is checked as their base bands'
    (test_refusals: series-swapped)."""
    src = _series_source(tmp_path / "theirs")
    series = "B2,B3,B4,B8,B2_m1,B3_m1,B4_m1,B8_m1"
    out = tmp_path / "dataset"
    assert _run(src, out, "--bands", series) == 0
    assert read_manifest(out)["bands"] == series.split(",")
    assert len(read_index(out)) == 16  # the all-cloud May patch too: June decides
