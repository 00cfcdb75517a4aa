import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from cli.predict import predict_main
from cli.publish import publish_main
from inference.predict.change.arrays import DEFAULT_SPECTRAL_THRESHOLD
from tests.support.rasters import BANDS, assert_valid_cog, smooth_stack, write_stack
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
    maps as the same stack named B2..B8 does, bit for bit; a stack naming one band twice is
    refused in one line."""
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
    twice = write_stack(tmp_path / "twice.tif", smooth_stack(60, 70, count=7),
                        bands=("B2", "B02", "B3", "B4", "B8", "VV", "VH"))
    assert predict_main(["--model", str(model_file), "--input", str(twice), "--out",
                         str(tmp_path / "t" / "isa"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "names band B2 twice (B2 and B02)" in err and "Traceback" not in err


def _of_month(path, month: str):
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(MONTH=month)
    return path


@pytest.mark.slow
def test_the_month_is_the_stacks_own_and_dates_run_forward(model_file, tmp_path, capsys):
    """A stack recording its month gives it to the maps (no --month needed); a --month that
    contradicts it is refused, and so is a change map whose earlier date is the later one
    (its gain would be reported as loss)."""
    data = smooth_stack(60, 70)
    early = _of_month(write_stack(tmp_path / "s2019.tif", data), "2019-06")
    late = _of_month(write_stack(tmp_path / "s2021.tif", data * 1.1), "2021-06")
    common = ["--model", str(model_file), "--quiet", "--precision", "fp32"]
    assert predict_main([*common, "--input", str(late), "--out", str(tmp_path / "b" / "isa")]) \
        == 0
    with rasterio.open(tmp_path / "b" / "isa_class.tif") as ds:
        assert ds.tags()["month"] == "2021-06"
    assert predict_main([*common, "--input", str(late), "--month", "2019-06", "--out",
                         str(tmp_path / "x" / "isa")]) == 2
    err = capsys.readouterr().err
    assert "--month 2019-06, but the input stack is of 2021-06" in err and not (
        tmp_path / "x").exists()
    later_map = str(tmp_path / "b" / "isa_class.tif")
    for extra in ([], ["--earlier-stack", str(late)]):
        assert predict_main([*common, "--input", str(early), "--compare-with", later_map,
                             *extra, "--out", str(tmp_path / "c" / "isa")]) == 2
        err = capsys.readouterr().err
        assert "of 2021-06, later than this date (2019-06)" in err and "Traceback" not in err
    assert predict_main([*common, "--input", str(early), "--out", str(tmp_path / "a" / "isa")]) \
        == 0
    assert predict_main([*common, "--input", str(late), "--compare-with",
                         str(tmp_path / "a" / "isa_class.tif"), "--earlier-stack", str(early),
                         "--out", str(tmp_path / "d" / "isa")]) == 0


def test_predict_cli_reports_bad_input_without_a_traceback(model_file, tmp_path, capsys):
    stack = write_stack(tmp_path / "s.tif", smooth_stack(40, 40, count=4), bands=BANDS[:4])
    code = predict_main(["--model", str(model_file), "--input", str(stack), "--out",
                         str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "lacks band(s) ['VV', 'VH']" in err


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
    assert publish_main(["--prefix", str(tmp_path / "isa"), "--asset-id", "isamap/wuhan",
                         "--dry-run"]) == 2
    assert "--project" in capsys.readouterr().err


def test_publish_names_the_flag_of_a_missing_cog_or_metrics_file(tmp_path, capsys):
    """Both were Python's "No such file or directory" with exit 1, as if the disk had failed."""
    assert publish_main(["--prefix", str(tmp_path / "isa"), "--asset-id", "isamap/x",
                         "--project", "p", "--dry-run", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--prefix {tmp_path / 'isa'}: {tmp_path / 'isa'}_class.tif does not exist" in err
    assert publish_main(["--class-cog", str(tmp_path / "c.tif"), "--prob-cog",
                         str(tmp_path / "p.tif"), "--asset-id", "isamap/x", "--project", "p",
                         "--dry-run", "--quiet"]) == 2
    assert f"--class-cog {tmp_path / 'c.tif'} does not exist" in capsys.readouterr().err
    for name in ("c.tif", "p.tif"):
        write_stack(tmp_path / name, smooth_stack(20, 20, count=1), bands=("class",))
    assert publish_main(["--class-cog", str(tmp_path / "c.tif"), "--prob-cog",
                         str(tmp_path / "p.tif"), "--asset-id", "isamap/x", "--project", "p",
                         "--metrics", str(tmp_path / "m.json"), "--dry-run", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--metrics {tmp_path / 'm.json'} does not exist" in err
    assert len(err.strip().splitlines()) == 1


def test_publish_names_the_asset_id_rule_before_anything_is_written(cogs, tmp_path, capsys):
    prefix = cogs.class_path.removesuffix("_class.tif")
    assert publish_main(["--prefix", prefix, "--asset-id", "projects/my-proj/assets/my maps/isa",
                         "--dry-run", "--quiet", "--out-dir", str(tmp_path / "pub")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("isamap-publish: error: asset id 'projects/my-proj/assets/my maps/isa' is not "
                   "a valid Earth Engine asset name: the name 'my maps' holds a space; asset and "
                   "folder names take only letters, digits, '_' and '-'")
    assert not (tmp_path / "pub").exists()


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


def test_an_out_reused_with_another_model_is_refused_not_replaced(model_file, small_stack,
                                                                   tmp_path, capsys):
    torch = pytest.importorskip("torch")
    kwargs = {"widths": [4, 8, 8, 16, 16]}
    torch.manual_seed(3)
    other = save_model_file(tmp_path / "other.pt", create_model("unet", len(BANDS), 2, **kwargs),
                            ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                                      model_kwargs=kwargs))
    common = ["--input", str(small_stack), "--tile", "64", "--overlap", "16", "--quiet",
              "--precision", "fp32", "--out", str(tmp_path / "y" / "isa")]
    assert predict_main(["--model", str(model_file), *common]) == 0
    cog = tmp_path / "y" / "isa_class.tif"
    before = cog.read_bytes()
    capsys.readouterr()
    assert predict_main(["--model", str(other), *common]) == 2
    err = capsys.readouterr().err
    assert "is a map of another model" in err and "give another --out" in err
    assert cog.read_bytes() == before
    # the same model with another tiling maps again, as asked
    assert predict_main(["--model", str(model_file), *common[:2], "--tile", "32", "--overlap",
                         "8", *common[6:]]) == 0


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
    mean, std = (0.0,) * 6, (1.0,) * 6
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


@pytest.mark.skipif(not __import__("engine.quantize", fromlist=["x"]).cpu_has_int8(),
                    reason="this CPU has no VNNI/AMX int8 instructions")
def test_predict_int8_refused_in_one_line_when_it_disagrees_with_fp32(small_stack, tmp_path,
                                                                       capsys):
    pytest.importorskip("torchao")
    model = _test_model_file(tmp_path / "tied.pt", "test-tied")
    code = predict_main(["--model", str(model), "--input", str(small_stack), "--tile", "64",
                         "--overlap", "16", "--out", str(tmp_path / "o" / "isa"),
                         "--precision", "int8", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "class agreement with fp32" in err and "use --precision bf16 or fp32" in err
    assert not (tmp_path / "o" / "isa_class.tif").exists()


def test_predict_int8_refused_on_cuda(model_file, small_stack, tmp_path, capsys):
    code = predict_main(["--model", str(model_file), "--input", str(small_stack),
                         "--out", str(tmp_path / "o"), "--precision", "int8", "--device",
                         "cuda", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1


@pytest.mark.slow
def test_a_misspelt_cog_writer_is_refused_in_one_line_before_the_model_loads(
        small_stack, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ISAMAP_COG_WRITER", "gdal-cog")
    code = predict_main(["--model", str(tmp_path / "absent.pt"), "--input", str(small_stack),
                         "--out", str(tmp_path / "o" / "isa"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "ISAMAP_COG_WRITER='gdal-cog' is not a COG writer; use one of stream, gdal" in err
    assert not (tmp_path / "o").exists()


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
    # refused before any tile: a margin without an earlier date, an earlier date without prob
    assert predict_main([*common, "--input", str(later), "--out", str(tmp_path / "c" / "isa"),
                         "--change-margin", "0.1"]) == 2
    assert "give --compare-with" in capsys.readouterr().err
    (tmp_path / "a" / "isa_prob.tif").unlink()
    assert predict_main([*common, "--input", str(later), "--out", str(tmp_path / "d" / "isa"),
                         "--compare-with", earlier]) == 2
    err = capsys.readouterr().err
    assert "isa_prob.tif does not exist" in err and "--change-margin 0" in err
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


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
    # refused in one line before the model loads (a model file that does not exist)
    bad = ["--model", str(tmp_path / "none.pt"), "--input", str(later), "--out",
           str(tmp_path / "c" / "isa")]
    for extra, says in (
            (["--earlier-stack", str(small_stack)], "give --compare-with"),
            (["--compare-with", earlier, "--earlier-stack", str(small_stack),
              "--change-margin", "0.1"], "choose one"),
            (["--compare-with", earlier, "--earlier-stack", str(tmp_path / "x.tif")],
             "x.tif does not exist"),
            (["--compare-with", earlier, "--earlier-stack", str(small_stack),
              "--spectral-threshold", "0"], "must be a number > 0"),
            (["--spectral-threshold", "2"], "give --earlier-stack")):
        assert predict_main([*bad, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1, err
    # refused before any tile: an earlier stack whose backscatter is linear power where the
    # input's is dB (checked as the input is), for the spectral rule and --normalise-to alike
    with rasterio.open(small_stack) as ds:
        data = ds.read()
    power = data.copy()
    power[4:6] = 10 ** (power[4:6] / 10)  # VV, VH
    linear = write_stack(tmp_path / "linear.tif", power)
    for extra in (["--earlier-stack", str(linear)],
                  ["--normalise-to", str(linear), "--change-margin", "0.1"]):
        assert predict_main([*common, "--input", str(later), "--out", str(tmp_path / "c" / "isa"),
                             "--compare-with", earlier, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert f"{extra[0]} {linear}" in err and len(err.splitlines()) == 1, err
    # an earlier stack that says Level-1C: refused as the input would be, mapped with
    # --allow-implausible, and the reason recorded in the maps' tags and the summary
    named = write_stack(tmp_path / "named.tif", data)
    with rasterio.open(named, "r+") as ds:
        ds.update_tags(PRODUCT_LEVEL="Level-1C")
    given = [*common, "--input", str(later), "--compare-with", earlier, "--earlier-stack",
             str(named)]
    assert predict_main([*given, "--out", str(tmp_path / "c" / "isa")]) == 2
    assert "--earlier-stack" in capsys.readouterr().err
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
    # refused before any tile: a stack off the map's grid, an earlier date without its prob
    cropped = write_stack(tmp_path / "cropped.tif", data[:, :100])
    (tmp_path / "a" / "isa_prob.tif").unlink()
    for stack, says in ((cropped, "cropped.tif is not on the grid"),
                        (small_stack, "drop --earlier-stack and pass --change-margin 0")):
        assert predict_main([*common, "--input", str(later), "--out", str(tmp_path / "c" / "isa"),
                             "--compare-with", earlier, "--earlier-stack", str(stack)]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "c").exists()


def test_a_window_standardising_model_maps_only_on_its_recorded_tile(small_stack, tmp_path,
                                                                    capsys):
    kwargs = {"widths": [4, 8, 8, 16, 16], "input_norm": "patch", "bands": list(BANDS)}
    model = create_model("unet-s2", len(BANDS), 2, **kwargs)
    meta = ModelMeta("unet-s2", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                     model_kwargs=kwargs, window=128)
    path = save_model_file(tmp_path / "s2.pt", model, meta)
    common = ["--model", str(path), "--input", str(small_stack), "--overlap", "16", "--quiet",
              "--precision", "fp32"]
    out = tmp_path / "maps" / "isa"
    assert predict_main([*common, "--out", str(out), "--tile", "64"]) == 2
    err = capsys.readouterr().err
    assert "its maps are made on 128 px tiles; --tile 64 would make another map" in err
    assert "pass --any-tile to make that other map" in err
    assert "Traceback" not in err and not out.parent.exists()  # refused before any output
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


@pytest.mark.parametrize("recorded", [
    {"input_norm": "local", "norm_window": 31},
    {"indices": ["ndvi"], "input_mean": [0.1] * 6, "input_std": [0.5] * 6},
])
def test_a_model_file_recording_a_deleted_network_option_is_refused_in_one_line(
        small_stack, tmp_path, capsys, recorded):
    """A ``unet-s2`` file that records an option this isamap no longer has (the local box
    standardisation, index channels) is refused, naming what it records, never mapped as the
    network without it."""
    kwargs = {"widths": [4, 8, 8, 16, 16], "bands": list(BANDS)}
    net = create_model("unet-s2", len(BANDS), 2, **kwargs)
    meta = ModelMeta("unet-s2", len(BANDS), 2, BANDS, (0.1,) * 6, (0.5,) * 6,
                     model_kwargs={**kwargs, **recorded})
    path = tmp_path / "old.pt"
    torch.save({"format": "isamap-model/1", "meta": meta.to_dict(),
                "state_dict": net.state_dict()}, path)
    out = tmp_path / "o" / "isa"
    code = predict_main(["--model", str(path), "--input", str(small_stack), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"isamap-predict: error: --model {path} records settings this "
                          "isamap's 'unet-s2' network does not take (model_kwargs: bands, ")
    assert not out.parent.exists()


@pytest.mark.parametrize("calibration,says", [
    ([1.0, 2.0], "the calibration record is a list, not a mapping"),
    ({"method": "temperature", "split": "val", "pixels": 500}, "holds no temperature"),
    ({"method": "temperature", "temperature": 1e30}, "temperature 1e+30 lies outside 0.05 to "
                                                      "20, the range a fit can give"),
])
def test_a_model_files_broken_calibration_record_is_one_line(small_stack, tmp_path, capsys,
                                                             calibration, says):
    """A list was an AttributeError, a record without temperature a KeyError (tracebacks), and
    1e30 mapped every probability to 0.5, exit 0: the weights digest misses the description."""
    kwargs = {"widths": [2, 2, 2, 2, 2]}
    model = create_model("unet", len(BANDS), 2, **kwargs)
    meta = ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6, model_kwargs=kwargs)
    path = tmp_path / "edited.pt"
    torch.save({"format": "isamap-model/1", "meta": {**meta.to_dict(), "calibration": calibration},
                "state_dict": model.state_dict()}, path)
    code = predict_main(["--model", str(path), "--input", str(small_stack), "--out",
                         str(tmp_path / "o" / "isa")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"isamap-predict: error: --model {path}: the model description does "
                          "not hold together (the model's calibration is invalid: ")
    assert says in err and "copy it again" in err, err
    assert not (tmp_path / "o").exists()


def test_an_out_reused_with_another_input_is_refused_not_replaced(model_file, small_stack,
                                                                  tmp_path, capsys):
    """Another --input into the same --out replaced the earlier map without a word."""
    other = write_stack(tmp_path / "other.tif", smooth_stack(100, 130, seed=4))
    common = ["--model", str(model_file), "--tile", "64", "--overlap", "16", "--quiet",
              "--precision", "fp32", "--out", str(tmp_path / "y" / "isa")]
    assert predict_main([*common, "--input", str(small_stack)]) == 0
    cog = tmp_path / "y" / "isa_class.tif"
    before = cog.read_bytes()
    with rasterio.open(cog) as ds:
        assert ds.tags()["input"] == "stack.tif"  # the file's name, never its folder
    capsys.readouterr()
    assert predict_main([*common, "--input", str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(
        "isa_class.tif is a map of another input: stack.tif, where this run's --input is "
        "other.tif; give another --out, or delete that map first"), err
    assert cog.read_bytes() == before
    # the same input with another tiling maps again, as asked
    assert predict_main([*common[:2], "--tile", "32", "--overlap", "8", *common[6:],
                         "--input", str(small_stack)]) == 0


@pytest.mark.slow
def test_another_stack_of_the_same_name_and_grid_is_another_input(model_file, tmp_path,
                                                                   capsys):
    """A stack of 2021-06 copied under the 2019-06 stack's name replaced its map without a word
    (name and grid agreed); a copy of the 2019-06 stack under another name is the same input,
    and so is the 2019-06 stack exported again (same name, grid and month) whose fingerprint
    differs (it covers the labels and the recipe too): it was refused."""
    def stack(path: Path, month: str, seed: int) -> Path:
        write_stack(path, smooth_stack(100, 130, seed=seed))
        with rasterio.open(path, "r+") as ds:  # as the local backend tags its stacks
            ds.update_tags(MONTH=month, ISAMAP_FINGERPRINT=f"sha256:{month}{seed}")
        return path

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = stack(tmp_path / "a" / "stack_2019-06_image.tif", "2019-06", 1)
    common = ["--model", str(model_file), "--tile", "64", "--overlap", "16", "--quiet",
              "--precision", "fp32", "--out", str(tmp_path / "y" / "isa")]
    assert predict_main([*common, "--input", str(first)]) == 0
    cog = tmp_path / "y" / "isa_class.tif"
    before = cog.read_bytes()
    capsys.readouterr()
    other = stack(tmp_path / "b" / "stack_2019-06_image.tif", "2021-06", 2)
    assert predict_main([*common, "--input", str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "isa_class.tif is a map of another input: " in err[0], err
    assert ("of 2019-06, where this run's --input is stack_2019-06_image.tif of 2021-06"
            in err[0])
    assert cog.read_bytes() == before
    copy = tmp_path / "b" / "copy.tif"
    copy.write_bytes(first.read_bytes())
    assert predict_main([*common, "--input", str(copy)]) == 0  # the same stack: kept
    assert cog.read_bytes() == before
    again = stack(tmp_path / "b" / "stack_2019-06_image.tif", "2019-06", 1)
    with rasterio.open(again, "r+") as ds:  # exported again: another label digest
        ds.update_tags(ISAMAP_FINGERPRINT="sha256:relabelled")
    assert predict_main([*common, "--input", str(again)]) == 0  # was 2: content differs
    with rasterio.open(cog) as ds:
        assert ds.tags()["input"] == "stack_2019-06_image.tif"


@pytest.mark.parametrize("flags, rule", [
    (["--clahe-clip", "3"], "clahe"), (["--clahe-block", "64"], "clahe"),
    (["--clahe-threshold", "100"], "clahe"), (["--force-postprocess"], "clahe"),
    (["--keep-window", "32"], "keep"), (["--postprocess", "keep", "--clahe-clip", "3"], "clahe"),
])
def test_a_post_processings_flags_without_it_are_refused(model_file, small_stack, tmp_path,
                                                         capsys, flags, rule):
    """A new user's walk: --clahe-clip 3 without --postprocess mapped the plain map, exit 0."""
    code = predict_main(["--model", str(model_file), "--input", str(small_stack),
                         "--out", str(tmp_path / "o" / "isa"), "--quiet", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{flags[-2] if flags[-1].isdigit() else flags[-1]} is for --postprocess {rule}" in err
    assert f"add --postprocess {rule}, or drop it" in err
    assert not (tmp_path / "o").exists()


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


def test_an_isa_class_naming_a_pervious_class_is_refused(model_file, small_stack, tmp_path,
                                                         capsys):
    """--isa-class 0 of a model whose class 0 is named pervious reported the pervious area as
    ISA (exit 0); the class's recorded name says it is not impervious: one line, the index."""
    out = tmp_path / "o"
    code = predict_main(["--model", str(model_file), "--input", str(small_stack), "--quiet",
                         "--isa-class", "0", "--out", str(out / "isa")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].endswith("--isa-class 0 is the model's class 'pervious', which is not "
                           "impervious (its classes: 0 pervious, 1 impervious); give "
                           "--isa-class 1, or leave it out"), err
    assert not out.exists() or not any(out.iterdir())


def test_zones_named_at_two_gadm_levels_are_refused_naming_the_mix(model_file, small_stack,
                                                                   tmp_path, capsys):
    """A zones file of a province's row (NAME_1) beside its districts' (NAME_2) was tabled as
    one row named after the province among the districts (exit 0); now refused, one line."""
    gadm = {"NAME_0": "China", "NAME_1": "Anhui"}

    def box(west: float, properties: dict) -> dict:  # a third of the stack (UTM 50N)
        ring = [[west, 3398800], [west + 500, 3398800], [west + 500, 3400000],
                [west, 3400000], [west, 3398800]]
        return {"type": "Feature", "properties": properties,
                "geometry": {"type": "Polygon", "coordinates": [ring]}}

    zones = tmp_path / "zones.geojson"
    zones.write_text(json.dumps({
        "type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32650"}},
        "features": [box(500000, {**gadm, "NAME_2": "Hefei"}), box(500500, gadm),
                     box(501000, {**gadm, "NAME_2": "Feidong"})]}))
    code = predict_main(["--model", str(model_file), "--input", str(small_stack), "--quiet",
                         "--zones", str(zones), "--out", str(tmp_path / "o" / "isa")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].endswith(
        f"the features of --zones {zones} are named at different levels: NAME_1 (feature 1) "
        "and NAME_2 (features 0, 2), and one table would mix them; give a file of one level, "
        "or --zones-name a property naming every feature at one level"), err
    assert not (tmp_path / "o").exists()


def test_a_stack_of_the_same_name_and_grid_with_other_pixels_is_another_input(
        model_file, tmp_path, capsys):
    """2021/stack.tif after 2019/stack.tif (same name and grid, no tags) replaced the earlier
    map without a word, and a copy edited with its fingerprint tag kept was "skipped" as the
    finished map of the stack it was copied from (exit 0). Pixels tell them apart now."""
    def stack(path: Path, seed: int, fingerprint: str | None = None) -> Path:
        path.parent.mkdir(exist_ok=True)
        write_stack(path, smooth_stack(100, 130, seed=seed))
        if fingerprint:
            with rasterio.open(path, "r+") as ds:
                ds.update_tags(ISAMAP_FINGERPRINT=fingerprint)
        return path

    common = ["--model", str(model_file), "--tile", "64", "--overlap", "16", "--quiet",
              "--precision", "fp32", "--out", str(tmp_path / "y" / "isa")]
    first = stack(tmp_path / "2019" / "stack.tif", 1, "sha256:one")
    assert predict_main([*common, "--input", str(first)]) == 0
    cog = tmp_path / "y" / "isa_class.tif"
    before = cog.read_bytes()
    capsys.readouterr()
    for other, theirs in ((stack(tmp_path / "2021" / "stack.tif", 2), "a stack.tif of other "
                           "pixels on the same grid"),
                          (stack(tmp_path / "2021" / "edited.tif", 2, "sha256:one"),
                           "stack.tif")):
        assert predict_main([*common, "--input", str(other)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].endswith(
            f"isa_class.tif is a map of another input: {theirs}, where this run's --input is "
            f"{other.name}; give another --out, or delete that map first"), err
        assert cog.read_bytes() == before
    assert predict_main([*common, "--input", str(first)]) == 0  # the identical request
    assert '"skipped": true' in capsys.readouterr().out
    copy = tmp_path / "2021" / "copy.tif"  # the same stack under another name: kept
    copy.write_bytes(first.read_bytes())
    assert predict_main([*common, "--input", str(copy)]) == 0
    assert cog.read_bytes() == before
