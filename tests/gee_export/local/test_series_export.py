"""A series stack from local scenes, end to end: export, train, predict and map.

Two synthetic months of the same town (real GeoTIFF scenes) are exported with
``--series-months 2``: the June stack holds June's bands, then May's (``_m1``) composited by
the same recipe on the same grid. A plain U-Net trained on it predicts the series stack and
``isamap-map --backend local`` builds the same series bands from the scenes; a one-month
stack, a missing earlier month, explicit ``_m1`` bands and mixing series lengths are refused.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import rasterio

from contract.bands import stack_series_bands
from tests.support.scenes import june_and_may

SERIES = list(stack_series_bands(("B2", "B3", "B4", "B8", "VV", "VH"), 2))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """June and May scenes of one synthetic town in one folder (May's Sentinel-2 brighter)."""
    tmp = tmp_path_factory.mktemp("series")
    return tmp, june_and_may(tmp)


def _export(scenes, out, *extra):
    from cli.export import main

    return main(["--backend", "local", "--scenes", str(scenes), "--months", "2019-06",
                 "--patch-size", "32", "--stride", "32", "--split-block", "1",
                 "--min-valid-fraction", "0.5", "--no-progress", "-q", "--out", str(out),
                 *extra])


@pytest.fixture(scope="module")
def exported(scenes):
    tmp, june = scenes
    assert _export(june.root, tmp / "ds", "--series-months", "2") == 0
    assert _export(june.root, tmp / "plain") == 0
    return tmp, june


def test_the_june_stack_holds_may_composited_by_the_same_recipe(exported):
    from gee_export.local.stack import build_local_stack

    tmp, june = exported
    manifest = json.loads((tmp / "ds" / "manifest.json").read_text())
    assert manifest["bands"] == SERIES
    assert manifest["recipe"]["series_months"] == 2
    assert "series_months" not in json.loads((tmp / "plain" / "manifest.json").read_text())[
        "recipe"]
    (stack,) = (tmp / "ds" / "stacks").glob("stack_2019-06_image.tif")
    may = build_local_stack(june.root, _grid(tmp / "ds"), "2019-05", ("B2", "B3", "B4", "B8",
                            "VV", "VH"), out_dir=tmp / "may_stack", progress=False)
    (plain,) = (tmp / "plain" / "stacks").glob("stack_2019-06_image.tif")
    with rasterio.open(stack) as s, rasterio.open(may.image) as m, rasterio.open(plain) as p:
        assert list(s.descriptions) == SERIES
        np.testing.assert_array_equal(s.read(list(range(7, 13))), m.read())  # May, same recipe
        np.testing.assert_array_equal(s.read(list(range(1, 7))), p.read())  # June as ever
        assert np.isfinite(s.read(7)).mean() > 0.5
        assert not np.allclose(s.read(1), s.read(7), equal_nan=True)
    patch = next(p for p in sorted((tmp / "ds" / "patches" / "2019-06").glob("*.tif"))
                 if "_label" not in p.name)
    with rasterio.open(patch) as src:  # each earlier month's band carries its unit, as its own
        assert [src.tags(i).get("unit") for i in range(1, 13)] == ["reflectance"] * 4 + [
            "dB"] * 2 + ["reflectance"] * 4 + ["dB"] * 2


def _grid(root):
    from contract.grid import Grid

    return Grid.from_dict(json.loads((root / "manifest.json").read_text())["grid"])


def test_refusals_are_one_line_before_any_work(exported, capsys):
    tmp, june = exported
    capsys.readouterr()
    cases = [(("--series-months", "3"), "2019-04"),  # April has no scene
             (("--bands", "B2,B2_m1"), "--series-months"),
             (("--series-months", "0"), "--series-months")]
    for extra, said in cases:
        assert _export(june.root, tmp / "refused", *extra) == 2
        err = [line for line in capsys.readouterr().err.strip().splitlines()
               if not line.startswith("warning:")]  # the small area's split, said first
        assert len(err) == 1 and said in err[0], err
        assert not (tmp / "refused").exists()
    assert _export(june.root, tmp / "ds") == 2  # one month into a series dataset
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("warning:")]
    assert len(err) == 1 and "series_months" in err[0], err


@pytest.mark.slow
def test_a_unet_trained_on_the_series_predicts_and_maps_it(exported, capsys):
    from cli.map import main as map_main
    from cli.predict import predict_main as predict
    from cli.train import train_main as train

    tmp, _ = exported
    run = tmp / "run"
    # a narrow U-Net: what is checked is the series bands' path, not the model's width
    assert train(["--data", str(tmp / "ds"), "--out", str(run), "--model", "unet",
                  "--model-kwargs", json.dumps({"widths": [4, 8, 16, 32, 64]}),
                  "--max-iterations", "1", "--batch-size", "2", "--workers", "0",
                  "--no-progress", "--device", "cpu", "-q"]) == 0
    (stack,) = (tmp / "ds" / "stacks").glob("stack_2019-06_image.tif")
    assert predict(["--model", str(run / "model.pt"), "--input", str(stack), "--out",
                    str(tmp / "pred" / "map"), "--device", "cpu", "-q"]) == 0
    with rasterio.open(tmp / "pred" / "map_class.tif") as src:
        assert src.shape == (64, 64)
    capsys.readouterr()
    (plain,) = (tmp / "plain" / "stacks").glob("stack_2019-06_image.tif")
    assert predict(["--model", str(run / "model.pt"), "--input", str(plain), "--out",
                    str(tmp / "refused" / "map"), "--device", "cpu", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--series-months 2" in err[0], err
    assert map_main(["--model", str(run / "model.pt"), "--backend", "local", "--scenes",
                     str(tmp / "scenes"), "--months", "2019-06", "--bbox", _bbox(tmp / "ds"),
                     "--out", str(tmp / "maps"), "-q"]) == 0
    (made,) = (tmp / "maps").rglob("stack_2019-06_image.tif")
    with rasterio.open(made) as src:
        assert list(src.descriptions) == SERIES  # the map's stack: the same series bands
    assert list((tmp / "maps").rglob("isa_2019-06_class.tif"))
    # without May's scenes: the months come from the model, which isamap-map has no flag for
    june_only = tmp / "june_only"
    shutil.copytree(tmp / "scenes", june_only)
    for sensor in ("S2", "S1"):
        for product in (tmp / "may" / sensor).iterdir():
            shutil.rmtree(june_only / sensor / product.name)
    capsys.readouterr()
    rc = map_main(["--model", str(run / "model.pt"), "--backend", "local", "--scenes",
              str(june_only), "--months", "2019-06", "--bbox", _bbox(tmp / "ds"),
              "--out", str(tmp / "maps_june"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and not (tmp / "maps_june" / "2019-06").exists()
    assert "add the scenes of 2019-05 to --scenes; the model reads 2 months" in err, err
    assert "--series-months" not in err


def _bbox(root) -> str:
    from pyproj import Transformer

    grid = _grid(root)
    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    return ",".join(f"{v:.6f}" for v in to_ll.transform_bounds(*grid.bounds))


def test_training_on_earlier_months_alone_is_refused(exported, capsys):
    """isamap-train --bands of earlier months only: nothing would judge a pixel nodata."""
    from cli.train import train_main as train

    tmp, _ = exported
    capsys.readouterr()
    assert train(["--data", str(tmp / "ds"), "--out", str(tmp / "run_m1"), "--model", "unet",
                  "--bands", "B2_m1,B3_m1,B4_m1", "--max-iterations", "1", "--workers", "0",
                  "--no-progress", "--device", "cpu", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bands B2_m1,B3_m1,B4_m1 hold only earlier months'" in err[0]


def test_a_dry_run_refuses_a_missing_earlier_month_as_the_real_run(exported, capsys):
    tmp, june = exported
    capsys.readouterr()
    assert _export(june.root, tmp / "dry", "--series-months", "2", "--dry-run") == 0
    assert _export(june.root, tmp / "dry", "--series-months", "3", "--dry-run") == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("warning:")]
    assert len(err) == 1 and "2019-04" in err[0] and "--series-months" in err[0], err
    assert not (tmp / "dry").exists()
