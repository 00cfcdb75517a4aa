"""One input check at every door: isamap-fit, -predict, -import-patches and -train judge a
stack by :func:`contract.input_check.judge_stack`, on the demo's SYNTHETIC scene.

Before, each door let a different set of faults through with exit 0: predict mapped B2/B4
swapped on this scene (ISA +17.6 %), top-of-atmosphere-like brightening and sigma0 raised
2.5-4 dB; import took B2/B4 or VV/VH swapped, the +0.1 offset and an untagged -9999 fill;
train trained on that fill (recorded band means of -2500); fit fitted a +0.1 offset stack; an
untagged fill, of every band or of the Sentinel-2 bands only, was mapped as ground. Each is
now refused in one line naming the likely cause (and ``--allow-implausible`` where the rule is
a judgement, ``--trust-band-names`` for the import's band order), and with that flag the
command runs and records why.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cli.fit import build_parser as fit_parser
from cli.fit import main as fit_main
from cli.import_patches import build_parser as import_parser
from cli.import_patches import main as import_main
from cli.predict import predict_main, predict_parser
from cli.train import train_main, train_parser
from inference.demo.steps import build_stack_for_demo
from tests.cli.test_fit import labelled_pixels, write_points
from tests.support.rasters import write_pair, write_patch_dataset
from tests.support.refusals import assert_refused
from training.modelfile import load_model_file

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cli.test_input_doors")]

OPTICAL = slice(0, 4)  # B2 B3 B4 B8, then VV VH (the demo's stack)


def _swap(a: int, b: int):
    def edit(data: np.ndarray) -> None:
        data[[a, b]] = data[[b, a]]
    return edit


def _add(rows: slice, values) -> object:
    def edit(data: np.ndarray) -> None:
        data[rows] += np.asarray(values, np.float32).reshape(-1, 1, 1)
    return edit


def _fill(rows: slice, value: float, share: float):
    def edit(data: np.ndarray) -> None:
        data[rows, : round(data.shape[1] * share)] = value
    return edit


#: fault: (edit of the stack, words of the refusal)
FAULTS = {
    "B2/B4 swapped": (_swap(0, 2), ("B2 and B4 are swapped", "--allow-implausible")),
    "VV/VH swapped": (_swap(4, 5), ("VV and VH are swapped", "--allow-implausible")),
    "+0.1 offset": (_add(OPTICAL, 0.1), ("offset", "--allow-implausible")),
    "L1C-like": (_add(OPTICAL, (0.06, 0.04, 0.025, 0.01)),
                 ("path radiance", "Level-2A", "--allow-implausible")),
    "S1 +2.5 dB": (_add(slice(4, 6), 2.5), ("sigma0 is shifted alike", "--allow-implausible")),
    "S1 +4 dB": (_add(slice(4, 6), 4.0), ("sigma0 is shifted alike", "--allow-implausible")),
    "-9999 fill": (_fill(slice(None), -9999.0, 1 / 6),
                   ("are -9999 in every band", "rio edit-info --nodata -9999")),
    "S2 zero strip": (_fill(OPTICAL, 0.0, 1 / 15),
                      ("are 0 in every S2 band", "rio edit-info --nodata 0")),
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's scene composited by the local backend, and a model isamap-fit made of it."""
    from gee_export.local.synthetic import generate_scene

    root = tmp_path_factory.mktemp("doors")
    scene = generate_scene(root / "scene", width=256, height=256, fine_scale=2, progress=False)
    stack = build_stack_for_demo(scene, root / "stack")
    lon, lat, codes, _ = labelled_pixels(stack.label, 300)
    points = write_points(root / "points.csv", lon, lat, codes)
    assert fit_main(["--points", str(points), "--input", stack.image, "--out",
                     str(root / "fit"), "-q"]) == 0
    return stack, points, root / "fit" / "model.pt"


def _faulty(stack, tmp: Path, edit, name: str = "faulty.tif") -> Path:
    """The demo stack with ``edit`` applied, its nodata tag dropped (as fill arrives)."""
    with rasterio.open(stack.image) as src:
        data, profile, names = src.read(), src.profile, src.descriptions
    edit(data)
    path = tmp / name
    with rasterio.open(path, "w", **(profile | {"nodata": None})) as dst:
        dst.write(data)
        dst.descriptions = names
    return path


def test_fit_records_the_fingerprint_of_its_stack(demo):
    _, _, model = demo
    recorded = dict(load_model_file(model)[1].extra)["pixel_fingerprint"]
    assert recorded["bands"] == ["B2", "B3", "B4", "B8", "VV", "VH"]
    assert len(recorded["correlation"]) == 6 and len(recorded["quantiles"]["B2"]) == 7


#: what isamap-predict refused already (by the physical rules): judged at the other doors
PREDICT_REFUSED_BEFORE = ("VV/VH swapped", "+0.1 offset")


@pytest.mark.parametrize("fault", [f for f in FAULTS if f not in PREDICT_REFUSED_BEFORE])
def test_predict_refuses_each_fault_in_one_line(fault, demo, tmp_path, capsys):
    stack, _, model = demo
    edit, words = FAULTS[fault]
    path = _faulty(stack, tmp_path, edit)
    status = predict_main(["--model", str(model), "--input", str(path), "--out",
                           str(tmp_path / "o" / "isa"), "--precision", "fp32", "-q"])
    assert_refused(status, capsys.readouterr().err, predict_parser(), *words)
    assert not (tmp_path / "o").exists()


def test_predict_maps_a_doubted_stack_when_allowed_and_records_why(demo, tmp_path, capsys):
    stack, _, model = demo
    assert predict_main(["--model", str(model), "--input", stack.image, "--out",
                         str(tmp_path / "clean" / "isa"), "--precision", "fp32", "-q"]) == 0
    path = _faulty(stack, tmp_path, _swap(0, 2))
    assert predict_main(["--model", str(model), "--input", str(path), "--out",
                         str(tmp_path / "o" / "isa"), "--precision", "fp32", "-q",
                         "--allow-implausible"]) == 0
    with rasterio.open(tmp_path / "o" / "isa_class.tif") as src:
        notes = json.loads(src.tags()["input_notes"])
    assert any("mapped with --allow-implausible" in n and "B2 and B4 are swapped" in n
               for n in notes), notes


@pytest.mark.parametrize("fault", ["+0.1 offset", "-9999 fill", "S2 zero strip",
                                   "VV/VH swapped"])
def test_fit_refuses_each_fault_in_one_line(fault, demo, tmp_path, capsys):
    stack, points, _ = demo
    edit, words = FAULTS[fault]
    path = _faulty(stack, tmp_path, edit)
    status = fit_main(["--points", str(points), "--input", str(path), "--out",
                       str(tmp_path / "fit"), "-q"])
    assert_refused(status, capsys.readouterr().err, fit_parser(), *words)
    assert not (tmp_path / "fit" / "model.pt").exists()


def _pairs(stack, root: Path, edit) -> Path:
    """The demo stack cut into 64 px image/mask pairs, as another project tiles a scene."""
    with rasterio.open(stack.image) as src:
        data, profile, names = src.read(), src.profile, src.descriptions
    with rasterio.open(stack.label) as src:
        label = src.read(1)
    for r in range(0, data.shape[1] - 63, 64):
        for c in range(0, data.shape[2] - 63, 64):
            image = np.nan_to_num(data[:, r:r + 64, c:c + 64].copy(), nan=0.0)
            edit(image)
            transform = rasterio.windows.transform(
                rasterio.windows.Window(c, r, 64, 64), profile["transform"])
            write_pair(root, f"t_{r}_{c}", image, label[r:r + 64, c:c + 64], profile["crs"],
                       transform, names)
    return root


def _import(src: Path, out: Path, *extra: str) -> int:
    return import_main([str(src), "--out", str(out), "--month", "2019-06",
                        "--impervious-values", "1", "--pervious-values", "0",
                        "--ignore-values", "255", "--split-block", "1", "--quiet", *extra])


#: the import judges the band order by the export's rules, whose advice is --trust-band-names
IMPORT_WORDS = {"B2/B4 swapped": ("B2 and B4 are swapped", "--trust-band-names")}


@pytest.mark.parametrize("fault", ["B2/B4 swapped", "VV/VH swapped", "+0.1 offset",
                                   "-9999 fill"])
def test_import_refuses_each_fault_in_one_line(fault, demo, tmp_path, capsys):
    stack, _, _ = demo
    edit, words = FAULTS[fault]
    words = IMPORT_WORDS.get(fault, words)
    status = _import(_pairs(stack, tmp_path / "theirs", edit), tmp_path / "ds")
    assert_refused(status, capsys.readouterr().err, import_parser(), *words)
    assert not (tmp_path / "ds").exists()


def test_import_of_a_doubted_source_when_allowed_records_why(demo, tmp_path, capsys):
    stack, _, _ = demo
    src = _pairs(stack, tmp_path / "theirs", FAULTS["+0.1 offset"][0])
    assert _import(src, tmp_path / "ds", "--allow-implausible") == 0
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert "input_notes" not in manifest["recipe"]  # a month's, not the dataset's recipe
    (month,) = manifest["sources"].values()
    assert any("accepted with --allow-implausible" in n and "offset" in n
               for n in month["input_notes"]), month
    clean = _pairs(stack, tmp_path / "clean", lambda image: None)  # another month, no doubt
    assert _import(clean, tmp_path / "ds", "--month", "2019-07") == 0


def test_train_refuses_patches_holding_an_untagged_fill(tmp_path, capsys):
    """The import's -9999 kept as pixel values trained a model whose band means were -2500."""
    images = []
    rng = np.random.default_rng(0)
    for _ in range(10):
        image = np.empty((6, 32, 32), np.float32)
        image[:4] = 0.05 + rng.uniform(0, 0.2, (4, 32, 32))
        image[4] = -12 + rng.normal(0, 2, (32, 32))
        image[5] = image[4] - 6
        image[:, :6] = -9999.0  # a sixth of each patch
        images.append(image)
    data = write_patch_dataset(tmp_path / "ds", images=images)
    status = train_main(["--data", str(data), "--out", str(tmp_path / "run"), "--model", "unet",
                         "--model-kwargs", '{"widths": [4, 8, 8, 16, 16]}', "--epochs", "1",
                         "--batch-size", "2", "--workers", "0", "--precision", "fp32",
                         "--no-progress", "-q"])
    assert_refused(status, capsys.readouterr().err, train_parser(),
                   "are -9999 in every band", "rio edit-info --nodata -9999")
    assert not (tmp_path / "run" / "model.pt").exists()


def _export(scene_root: Path, out: Path, *extra: str) -> int:
    from pyproj import Transformer

    from cli.export import main as export_main
    from gee_export.local.synthetic import generate_scene

    scene = generate_scene(scene_root, width=256, height=256, fine_scale=2, progress=False)
    for edit in extra[:1]:  # the fault, applied to the scene files as a user would have them
        EXPORT_FAULTS[edit](scene_root)
    to_ll = Transformer.from_crs(scene.grid.crs, "EPSG:4326", always_xy=True)
    west, south, east, north = to_ll.transform_bounds(*scene.grid.bounds)
    return export_main(["--backend", "local", "--scenes", str(scene_root), "--bbox",
                        f"{west},{south},{east},{north}", "--out", str(out), "--speckle",
                        "boxcar", "--min-valid-fraction", "0.5", "--no-progress", "-q",
                        *extra[1:]])


def _swap_vv_vh(root: Path) -> None:
    for folder in (root / "S1").iterdir():
        vv, vh = sorted(folder.glob("*_VV.tif"))[0], sorted(folder.glob("*_VH.tif"))[0]
        tmp = vv.with_suffix(".swap")
        vv.rename(tmp)
        vh.rename(vv)
        tmp.rename(vh)


def _offset_in_dn(root: Path) -> None:
    """The +0.1 BOA offset (1000 DN) left in products of a baseline that has none."""
    for band in (root / "S2").glob("*/*_B*.tif"):
        with rasterio.open(band, "r+") as dst:
            dn = dst.read()
            dst.write(np.where(dn > 0, dn + 1000, 0).astype(dn.dtype))


EXPORT_FAULTS = {"VV/VH swapped": _swap_vv_vh, "+0.1 offset": _offset_in_dn}


@pytest.mark.parametrize("fault, words", [
    ("VV/VH swapped", ("Sentinel-1", "VV and VH are swapped", "--allow-implausible")),
    ("+0.1 offset", ("Sentinel-2", "the +0.1 BOA offset", "--allow-implausible"))])
def test_the_local_export_refuses_each_fault_in_one_line(fault, words, tmp_path, capsys):
    from cli.export import build_parser as export_parser

    status = _export(tmp_path / "scene", tmp_path / "ds", fault)
    err = capsys.readouterr().err.strip().splitlines()  # after the small area's split warning
    assert_refused(status, err[-1], export_parser(), *words)
    assert "Traceback" not in "".join(err)
    assert not (tmp_path / "ds").exists()
    assert _export(tmp_path / "scene2", tmp_path / "ok", fault, "--allow-implausible") == 0
    assert json.loads((tmp_path / "ok" / "manifest.json").read_text()
                      )["recipe"]["allow_implausible"] is True


# ------------------------------------------------- a dataset's fingerprint, several stacks
def _fingerprint_in(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())["pixel_fingerprint"]


def test_import_and_the_local_export_record_the_fingerprint_of_their_patches(demo, tmp_path):
    """A dataset's manifest recorded nothing of its pixels: a root unlike another, or patches
    replaced since, were trained on unseen."""
    from contract.input_check import Fingerprint

    stack, _, _ = demo
    assert _import(_pairs(stack, tmp_path / "theirs", lambda data: None), tmp_path / "ds") == 0
    assert _export(tmp_path / "scene", tmp_path / "exported") == 0
    for root in (tmp_path / "ds", tmp_path / "exported"):
        recorded = Fingerprint.from_dict(_fingerprint_in(root))
        assert recorded is not None and recorded.bands == ("B2", "B3", "B4", "B8", "VV", "VH")
        assert 0 < recorded.quantiles["B2"][3] < 0.3 and recorded.quantiles["VV"][3] < 0


def test_a_later_month_unlike_the_datasets_fingerprint_is_refused_at_import(demo, tmp_path,
                                                                            capsys):
    """sigma0 raised 2.5 dB breaks no physical rule: a second month imported so joined the
    dataset without a word, though its manifest records what the first month's pixels are."""
    stack, _, _ = demo
    assert _import(_pairs(stack, tmp_path / "june", lambda data: None), tmp_path / "ds") == 0
    before = (tmp_path / "ds" / "manifest.json").read_text()
    raised = _pairs(stack, tmp_path / "july", FAULTS["S1 +2.5 dB"][0])
    status = _import(raised, tmp_path / "ds", "--month", "2019-07")
    assert_refused(status, capsys.readouterr().err, import_parser(), "against the fingerprint",
                   "sigma0 is shifted alike", "--allow-implausible")
    assert (tmp_path / "ds" / "manifest.json").read_text() == before


def _raised_s1(root: Path, db: float = 2.5) -> None:
    """Every Sentinel-1 file's linear sigma0 raised by ``db`` (another calibration)."""
    for band in (root / "S1").glob("*/*_V[VH].tif"):
        with rasterio.open(band, "r+") as dst:
            dst.write(dst.read() * np.float32(10 ** (db / 10)))


def test_a_later_month_unlike_the_datasets_fingerprint_is_refused_at_export(tmp_path, capsys):
    """The local export judged each scene by the physical rules only: a month whose sigma0
    is 2.5 dB higher than the dataset's earlier month joined it without a word."""
    from pyproj import Transformer

    from cli.export import build_parser as export_parser
    from cli.export import main as export_main
    from gee_export.local.synthetic import generate_scene

    for month in ("2019-06", "2019-07"):
        scene = generate_scene(tmp_path / month, width=256, height=256, fine_scale=2,
                               month=month, progress=False)
    bbox = ",".join(map(str, Transformer.from_crs(scene.grid.crs, "EPSG:4326", always_xy=True)
                        .transform_bounds(*scene.grid.bounds)))

    def export(month: str) -> int:
        return export_main(["--backend", "local", "--scenes", str(tmp_path / month), "--bbox",
                            bbox, "--months", month, "--out", str(tmp_path / "ds"),
                            "--speckle", "boxcar", "--min-valid-fraction", "0.5",
                            "--no-progress", "-q"])

    assert export("2019-06") == 0
    before = (tmp_path / "ds" / "manifest.json").read_text()
    _raised_s1(tmp_path / "2019-07")
    status = export("2019-07")
    err = capsys.readouterr().err.strip().splitlines()  # after the small area's warnings
    assert_refused(status, err[-1], export_parser(), "against the fingerprint",
                   "sigma0 is shifted alike", "--allow-implausible")
    assert (tmp_path / "ds" / "manifest.json").read_text() == before


def _scaled_to_dn(root: Path) -> None:
    """The dataset's reflectance patches rewritten as DN (x 10000), as another tool holds them."""
    for path in (root / "patches").glob("*/r*_c*[0-9].tif"):
        with rasterio.open(path, "r+") as dst:
            data = dst.read()
            data[OPTICAL] *= 10000
            dst.write(data)


def _swapped_b2_b4(root: Path) -> None:
    """The dataset's patches rewritten with B2 and B4 swapped (replaced after the import)."""
    for path in (root / "patches").glob("*/r*_c*[0-9].tif"):
        with rasterio.open(path, "r+") as dst:
            data = dst.read()
            _swap(0, 2)(data)
            dst.write(data)


def _train(out: Path, *data: Path, extra: tuple[str, ...] = ()) -> int:
    return train_main(["--data", *map(str, data), "--out", str(out), "--model", "unet",
                       "--model-kwargs", '{"widths": [4, 8, 8, 16, 16]}', "--epochs", "1",
                       "--batch-size", "2", "--workers", "0", "--precision", "fp32",
                       "--members", "1", "--no-progress", "-q", *extra])


@pytest.mark.parametrize("fault, words", [
    ("B2/B4 swapped", ("B2 and B4 are swapped",)),
    ("DN scale", ("every reflectance band spreads", "on another scale"))])
def test_train_refuses_a_root_unlike_the_first_naming_it(fault, words, demo, tmp_path, capsys):
    """isamap-train --data A B trained on B2/B4 swapped or DN patches beside reflectance (the
    swap imported as the user insisted, --trust-band-names: the import refuses it otherwise;
    that flag alone vouches for the names, where the import's second judge of the band order
    asked for --allow-implausible as well)."""
    stack, _, _ = demo
    first, other = tmp_path / "first", tmp_path / "other"
    assert _import(_pairs(stack, tmp_path / "a", lambda data: None), first) == 0
    edit = FAULTS[fault][0] if fault in FAULTS else lambda data: None
    assert _import(_pairs(stack, tmp_path / "b", edit), other, "--trust-band-names") == 0
    if fault == "DN scale":
        _scaled_to_dn(other)
    capsys.readouterr()
    status = _train(tmp_path / "run", first, other)
    line = assert_refused(status, capsys.readouterr().err, train_parser(), *words,
                          "--allow-implausible")
    assert f"--data {other}" in line and "the model file" in line
    assert not (tmp_path / "run" / "model.pt").exists()
    assert _train(tmp_path / "run", first, other, extra=("--allow-implausible",)) == 0
    notes = dict(load_model_file(tmp_path / "run" / "model.pt")[1].extra)["input_notes"]
    assert any("--allow-implausible" in n and words[0] in n for n in notes), notes


def test_train_refuses_patches_replaced_since_the_manifest_recorded_them(demo, tmp_path,
                                                                          capsys):
    stack, _, _ = demo
    assert _import(_pairs(stack, tmp_path / "a", lambda data: None), tmp_path / "ds") == 0
    _swapped_b2_b4(tmp_path / "ds")
    capsys.readouterr()
    status = _train(tmp_path / "run", tmp_path / "ds")
    line = assert_refused(status, capsys.readouterr().err, train_parser(),
                          "B2 and B4 are swapped", "--allow-implausible")
    assert f"--data {tmp_path / 'ds'} (against the fingerprint" in line


@pytest.mark.parametrize("fault, words", [
    ("B2/B4 swapped", ("B2 and B4 are swapped",)),
    ("DN scale", ("every reflectance band spreads", "on another scale"))])
def test_fit_refuses_a_later_stack_unlike_the_first_naming_it(fault, words, demo, tmp_path,
                                                              capsys):
    """isamap-fit --input S1 S2 judged the stacks pooled by the physical rules alone."""
    stack, points, _ = demo
    edit = FAULTS[fault][0] if fault in FAULTS else _add(OPTICAL, 0)
    path = _faulty(stack, tmp_path, edit)
    if fault == "DN scale":
        with rasterio.open(path, "r+") as dst:
            data = dst.read()
            data[OPTICAL] *= 10000
            dst.write(data)
    status = fit_main(["--points", str(points), "--input", stack.image, str(path), "--out",
                       str(tmp_path / "fit"), "-q"])
    line = assert_refused(status, capsys.readouterr().err, fit_parser(), *words,
                          "--allow-implausible")
    assert line.startswith(f"isamap-fit: error: --input {path} (against --input {stack.image})")
    assert not (tmp_path / "fit" / "model.pt").exists()


def test_fit_backend_local_composites_doubted_scenes_when_allowed_and_says_why(demo, tmp_path):
    """isamap-fit --backend local --allow-implausible refused the scenes its export judged:
    the flag did not reach the export (whose recipe then recorded no reason either)."""
    import shutil

    stack, points, _ = demo
    scenes = tmp_path / "scene"
    shutil.copytree(Path(stack.image).parents[1] / "scene", scenes)
    _swap_vv_vh(scenes)
    out = tmp_path / "fit"
    assert fit_main(["--points", str(points), "--backend", "local", "--scenes", str(scenes),
                     "--month", stack.month, "--out", str(out), "-q",
                     "--allow-implausible"]) == 0
    dataset = dict(load_model_file(out / "model.pt")[1].extra)["dataset"]
    assert dataset["recipe"]["allow_implausible"] is True
    notes = dataset["sources"][stack.month]["input_notes"]
    assert any("VV and VH are swapped" in n for n in notes), notes


def test_the_local_export_records_why_it_composited_doubted_scenes(tmp_path):
    assert _export(tmp_path / "scene", tmp_path / "ok", "VV/VH swapped",
                   "--allow-implausible") == 0
    manifest = json.loads((tmp_path / "ok" / "manifest.json").read_text())
    (notes,) = [s["input_notes"] for s in manifest["sources"].values()]
    assert any("--allow-implausible" in n and "VV and VH are swapped" in n for n in notes), notes
