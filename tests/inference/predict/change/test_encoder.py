"""The encoder change rule on real GeoTIFFs with Presto's published weights.

The bands decide how much changed (their share flagged at the spectral threshold on the
sample), the encoder which pixels, the model's probabilities which way.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine

from contract.geotiff import write_geotiff
from core.errors import InputDataError
from inference.cog import maps
from inference.cog.maps import NODATA, PROB_SCALE
from inference.predict import stats
from inference.predict.change import arrays as change
from inference.predict.change import encoder as encoder_change
from inference.predict.change.encoder import EncoderModel, encoder_stacks
from inference.predict.change.spectral import spectral_stacks
from tests.support.mapping import encoder_network
from tests.support.rasters import BANDS, smooth_stack, write_stack

H, W = 40, 56  # over 32 a side: the change map is written in 2 x 2 blocks of 32
BUILT = (slice(16, 28), slice(20, 36))  # a new roof between the dates: 12 x 16 px
HOLE = (3, slice(3, 6), slice(45, 52))  # a band missing in the later stack
TRANSFORM = Affine(10, 0, 500000, 0, -10, 3400000)
ROOF = (0.22, 0.24, 0.27, 0.30)  # B2, B3, B4, B8 of a bright roof


def _prob(path, values: np.ndarray) -> str:
    stored = np.round(values * PROB_SCALE).astype(np.uint8)
    return str(write_geotiff(path, stored[None], TRANSFORM, "EPSG:32650", NODATA))


@pytest.fixture(scope="module")
def network(shared_weights):
    return encoder_network(shared_weights / "presto" / "default_model.pt")


@pytest.fixture
def pair(tmp_path):
    """Vegetated ground whose later date is the earlier under a gain and offset, but for a
    block built in between; the model's probability rises a little everywhere, a lot there."""
    earlier = smooth_stack(H, W, seed=5)
    earlier[:4] = 0.08 + 0.03 * earlier[:4]
    earlier[3] += 0.2  # near infrared: green
    later = earlier.copy()
    later[:4] = earlier[:4] * 0.95 + 0.005
    for band, value in enumerate(ROOF):
        later[(band, *BUILT)] = value + 0.01 * earlier[(band, *BUILT)]
    later[(4, *BUILT)] += 0.8  # VV brightens on a roof
    later[HOLE] = np.nan
    p_from, p_to = np.full((H, W), 0.2), np.full((H, W), 0.3)
    p_to[BUILT] = 0.8
    return {"earlier": str(write_stack(tmp_path / "earlier.tif", earlier)),
            "later": str(write_stack(tmp_path / "later.tif", later)),
            "p_from": _prob(tmp_path / "a_prob.tif", p_from),
            "p_to": _prob(tmp_path / "b_prob.tif", p_to), "arrays": (earlier, later)}


def _rule(pair, network, threshold: float = change.DEFAULT_SPECTRAL_THRESHOLD):
    bands = spectral_stacks(pair["earlier"], pair["later"], BANDS, (H, W), TRANSFORM,
                            rasterio.crs.CRS.from_string("EPSG:32650"), threshold=threshold)
    model = EncoderModel(network, (0.0,) * 6, (1.0,) * 6)
    return encoder_stacks(bands, model, (pair["p_from"], pair["p_to"]))


def test_the_block_is_flagged_at_the_bands_share_and_blocks_equal_the_whole(
        pair, network, tmp_path, monkeypatch):
    monkeypatch.setattr(maps, "BLOCK", 32)  # the map is written in 2 x 2 blocks
    rule = _rule(pair, network).fitted()
    out = tmp_path / "maps" / "isa_change.tif"
    stats.change_map(pair["p_from"], pair["p_to"], str(out), spectral=rule)
    with rasterio.open(out) as ds:
        codes, tags = ds.read(1), ds.tags()
    assert (codes[BUILT] == change.GAIN).all()  # the roof is gain
    assert (codes[HOLE[1:]] == NODATA).all()
    # the sample is the whole scene here (under 1024 px a side): the encoder flags exactly as
    # many of its valid pixels as the bands do at threshold 4
    earlier, later = (a.astype(np.float32) for a in pair["arrays"])
    by_bands = change.spectral_magnitude(later, earlier, change.fit_spectral_change(later,
                                                                                   earlier))
    feats = [encoder_change.encoder_features(network, a, ((0.0,) * 6, (1.0,) * 6))
             for a in (later, earlier)]
    by_encoder = change.spectral_magnitude(*feats, rule.fit.fit)
    valid = np.isfinite(by_bands)
    flagged = int((by_bands[valid] > 4).sum())
    assert flagged > BUILT[0].stop - BUILT[0].start  # the bands flag more than a roof's row
    assert int((by_encoder[valid] > rule.fit.threshold).sum()) == flagged
    assert rule.fit.share == flagged / valid.sum() and rule.fit.pixels == valid.sum()
    # block by block equals the rule on the whole scene at once, with the one cut
    with rasterio.open(pair["p_from"]) as a, rasterio.open(pair["p_to"]) as b:
        p_from, p_to = a.read(1) / PROB_SCALE, b.read(1) / PROB_SCALE
    whole = change.spectral_change(p_from, p_to, by_encoder, rule.fit.threshold)
    assert np.array_equal(codes, whole)
    assert tags["change_rule"] == encoder_change.RULE
    recorded = json.loads(tags["change_fit"])
    assert recorded == json.loads(json.dumps(rule.fit.to_dict()))
    assert recorded["spectral_threshold"] == 4 and recorded["encoder_threshold"] > 0
    # a rerun writes the same bytes
    again = tmp_path / "again" / "isa_change.tif"
    stats.change_map(pair["p_from"], pair["p_to"], str(again), spectral=_rule(pair, network))
    assert again.read_bytes() == out.read_bytes()


def test_a_model_without_an_encoder_or_with_galileo_is_refused(shared_weights):
    from training.models import create_model
    from training.models.encoders.registry import GALILEO_NANO
    from training.models.members import MemberMean

    plain = create_model("unet", len(BANDS), 2, widths=[4, 8, 8, 16, 16])
    with pytest.raises(InputDataError, match="has none: choose --change-rule spectral"):
        encoder_change.change_encoder(plain)
    galileo = encoder_network(shared_weights / "galileo_nano" / "encoder.pt", GALILEO_NANO)
    with pytest.raises(InputDataError, match="depend on the window around it"):
        encoder_change.change_encoder(galileo)
    presto = encoder_network(shared_weights / "presto" / "default_model.pt")
    joined = MemberMean([presto, encoder_network(shared_weights / "presto"
                                                 / "default_model.pt")])
    assert encoder_change.change_encoder(joined) is joined.members[0]  # one frozen encoder
    tuned = encoder_network(shared_weights / "presto" / "default_model.pt")
    with __import__("torch").no_grad():
        next(tuned.encoder.parameters()).add_(1.0)  # a member whose encoder was fine-tuned
    with pytest.raises(InputDataError, match="encoders of their own"):
        encoder_change.change_encoder(MemberMean([presto, tuned]))


def test_the_cut_flags_the_count_asked():
    values = np.array([0.5, 3.0, 1.0, 2.0, 2.0, 0.1])
    assert (values > encoder_change.cut_flagging(values, 1)).sum() == 1
    assert (values > encoder_change.cut_flagging(values, 2)).sum() == 3  # a tie: both
    assert (values > encoder_change.cut_flagging(values, 0)).sum() == 0
    assert (values > encoder_change.cut_flagging(values, 6)).sum() == 6
    assert encoder_change.cut_flagging(np.zeros(4), 0) > 0  # a cut the rule accepts


@pytest.fixture(scope="module")
def series_scenes(tmp_path_factory):
    """Two generated dates, a built-up block growing between them (the maps only read them:
    made once for the module's three ``isamap-map`` tests): their folder and first grid."""
    from gee_export.local.synthetic import generate_scene

    scenes = tmp_path_factory.mktemp("change_scenes") / "scenes"
    first = generate_scene(scenes / "a", width=48, height=48, progress=False, month="2019-06")
    generate_scene(scenes / "b", width=48, height=48, progress=False, month="2021-06", growth=2)
    return scenes, first.grid


def _local_series(tmp_path, model_of, series_scenes):
    """The two dates of ``series_scenes`` and a model file on their grid."""
    scenes, grid = series_scenes
    model = model_of(tmp_path / "m.pt", grid)
    return ["--backend", "local", "--scenes", str(scenes), "--months", "2019-06,2021-06",
            "--model", str(model), "--tile", "32", "--overlap", "8", "--no-progress",
            "--precision", "fp32", "--channels-last", "off", "-q", "--allow-recipe-mismatch"]


@pytest.mark.slow
@pytest.mark.xdist_group("change_scenes")
def test_isamap_map_decides_change_by_the_encoder_and_records_it(shared_weights, tmp_path,
                                                                  capsys, series_scenes):
    from cli.map import main
    from tests.support.mapping import encoder_model_file

    weights = shared_weights / "presto" / "default_model.pt"
    args = _local_series(tmp_path, lambda path, grid: encoder_model_file(path, grid, weights,
                                                                           "local"),
                         series_scenes)
    out = tmp_path / "out"
    assert main([*args, "--out", str(out), "--change-rule", "encoder"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.rindex("\n{") + 1:])
    assert summary["change_rule"] == "encoder" and summary["spectral_threshold"] == 4
    shown = summary["encoder_fits"]["2019-06/2021-06"]  # the pair's numbers, not its fits
    assert set(shown) == {"matched_share", "encoder_threshold", "spectral_threshold",
                          "sample_pixels"}
    assert shown["sample_pixels"] > 0 and shown["encoder_threshold"] > 0
    assert 0 <= shown["matched_share"] < 1 and shown["spectral_threshold"] == 4
    assert len(printed.splitlines()) < 120  # 128 features' centre and spread were 280 lines
    record = json.loads((out / "series.json").read_text())
    fit = record["encoder_fits"]["2019-06/2021-06"]
    assert record["change_rule"] == "encoder" and len(fit["encoder_fit"]["centre"]) == 128
    assert {k: fit[k] for k in shown} == shown
    cog = out / "change" / "isa_change_2019-06_2021-06.tif"
    with rasterio.open(cog) as ds:
        assert ds.tags()["change_rule"] == encoder_change.RULE
        assert json.loads(ds.tags()["change_fit"]) == fit
    stamp = cog.stat().st_mtime_ns
    assert main([*args, "--out", str(out), "--change-rule", "encoder"]) == 0  # resumed
    capsys.readouterr()
    assert cog.stat().st_mtime_ns == stamp  # up to date: not redone


@pytest.mark.xdist_group("change_scenes")
def test_isamap_map_refuses_the_encoder_rule_for_a_model_without_one(tmp_path, capsys,
                                                                     series_scenes):
    from cli.map import main
    from tests.support.mapping import model_file

    args = _local_series(tmp_path, lambda path, grid: model_file(path, grid, backend="local"),
                         series_scenes)
    code = main([*args, "--out", str(tmp_path / "out"), "--change-rule", "encoder"])
    err = capsys.readouterr().err
    assert code == 2 and "has none: choose --change-rule spectral" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # refused before any date was mapped


@pytest.mark.xdist_group("change_scenes")
def test_the_dry_run_names_the_encoder_rule_and_its_features_cost(shared_weights, tmp_path,
                                                                   capsys, series_scenes):
    """The plan named neither the change rule nor the encoder features' hours."""
    from cli.map import main
    from tests.support.mapping import encoder_model_file

    weights = shared_weights / "presto" / "default_model.pt"
    args = _local_series(tmp_path, lambda path, grid: encoder_model_file(path, grid, weights,
                                                                           "local"),
                         series_scenes)
    assert main([*args, "--out", str(tmp_path / "out"), "--change-rule", "encoder",
                 "--dry-run"]) == 0
    printed = capsys.readouterr().out
    plan = json.loads(printed[printed.rindex("\n{") + 1:])
    px = plan["grid"]["width"] * plan["grid"]["height"]
    (line,) = [x for x in printed.splitlines() if x.startswith("  change    ")]
    assert line.startswith("  change    encoder, --spectral-threshold 4: each date's stack")
    assert f"features of both dates of 1 pair(s) of {px:,} px on the CPU: about" in line
    per_100 = float(line.rsplit("(", 1)[1].split(" ms per 100 px")[0])
    assert per_100 > 0 and plan["change"] == line.removeprefix("  change    ")
    # the plan rounds seconds to 0.1 (0.049 s is written 0.0), the line its ms per 100 px
    assert plan["change_seconds"] == pytest.approx(2 * px * per_100 / 1e5, rel=0.06, abs=0.06)
    assert not (tmp_path / "out").exists()
