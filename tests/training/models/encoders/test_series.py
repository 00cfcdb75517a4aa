"""A series stack's months read by Presto in the fused model (training.models.encoders.series)."""

from __future__ import annotations

import shutil

import pytest
import rasterio
import torch

from cli.predict import predict_main
from cli.train import train_main
from contract.bands import series_bands
from core.errors import InputDataError, ModelError
from inference.predict.change.encoder import change_encoder
from tests.support.rasters import write_patch_dataset
from training.modelfile import load_model_file
from training.models.encoders.fused import EncoderUNet
from training.models.encoders.presto import prepare, tokens_per_pixel
from training.models.encoders.registry import GALILEO_NANO, PRESTO, load_encoder
from training.models.encoders.series import pixels_per_call, series_columns, series_months

OWN = ("B2", "B3", "B4", "B8")
TINY = (4, 8, 8, 8, 8)
MONTH = 1  # February: the series wraps to the year before (December, January)


def _model(presto_file, bands, mean=None, std=None, month=MONTH) -> EncoderUNet:
    g = torch.Generator().manual_seed(1)
    mean = mean if mean is not None else (0.05 + 0.1 * torch.rand(len(bands), generator=g)).tolist()
    std = std if std is not None else (0.02 + 0.05 * torch.rand(len(bands), generator=g)).tolist()
    model = EncoderUNet(len(bands), 2, bands=list(bands), encoder="presto",
                        encoder_sha256=PRESTO.sha256, input_mean=mean, input_std=std,
                        latlon=(45.9, 14.6), month=month, widths=TINY)
    model.encoder.load_state_dict(load_encoder(PRESTO, presto_file).state_dict())
    return model.eval()


def _input(channels: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, channels, 5, 6, generator=torch.Generator().manual_seed(seed))


def test_one_month_features_are_the_one_month_paths_bit_for_bit(presto_file):
    """The oracle is the one-month code as it was: one timestep, ``(N,)`` months."""
    bands = (*OWN, "VV", "VH")
    model = _model(presto_file, bands, month=7)
    x = _input(len(bands))
    x[0, :, 1, 1] = 0.0  # a nodata pixel: read as the mean, as before
    with torch.no_grad():
        got = model.features(x).float()
        mean, std = model.get_buffer("mean"), model.get_buffer("std")
        raw = x[:, model.columns].float() * std[:, None, None] + mean[:, None, None]
        raw = torch.round(raw / 1e-4) * 1e-4
        pixels = raw.permute(0, 2, 3, 1).reshape(-1, 1, len(bands))
        values, mask = prepare(pixels, bands)
        m = pixels.shape[0]
        want = model.encoder(values, torch.full((m, 1), 9), torch.tensor([45.9, 14.6]).expand(
            m, 2), mask, torch.full((m,), 7))
    want = want.reshape(2, 5, 6, -1).permute(0, 3, 1, 2).to(torch.float16).float()
    assert model.timesteps == 1 and model.months == [7]
    assert torch.equal(got, want)


def test_a_series_is_one_timestep_per_month_oldest_first_each_with_its_month(presto_file):
    bands = series_bands(OWN, 3)
    model = _model(presto_file, bands, mean=[0.0] * 12, std=[1.0] * 12)  # x is reflectance
    x = (0.05 + 0.3 * torch.rand(1, 12, 3, 4, generator=torch.Generator().manual_seed(2)))
    x = torch.round(x / 1e-4) * 1e-4
    assert model.columns == [8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3]
    assert model.months == [11, 0, 1] == series_months(MONTH, 3)  # December, January, February
    with torch.no_grad():
        got = model.features(x).float()
        pixels = torch.stack([x[0, 8:12], x[0, 4:8], x[0, 0:4]]).permute(2, 3, 0, 1)
        values, mask = prepare(pixels.reshape(12, 3, 4), OWN)
        want = model.encoder(values, torch.full((12, 3), 9), torch.tensor([45.9, 14.6]).expand(
            12, 2), mask, torch.tensor([11, 0, 1]).expand(12, 3))
    want = want.reshape(1, 3, 4, -1).permute(0, 3, 1, 2).to(torch.float16).float()
    assert torch.equal(got, want)
    one = _model(presto_file, OWN, mean=[0.0] * 4, std=[1.0] * 4)
    with torch.no_grad():
        alone = one.features(x[:, :4]).float()
    assert (got - alone).abs().amax() > 0.05  # the earlier months change the features
    assert one.salt != model.salt  # and a feature cache keeps the two apart


def test_a_missing_earlier_month_is_masked_and_a_missing_own_month_reads_the_mean(presto_file):
    """Oracle: a pixel with a month masked among pixels without (attention masked) equals
    that pixel alone (its masked tokens dropped outright), and not the mean read as values."""
    bands = series_bands(OWN, 3)
    model = _model(presto_file, bands)
    model.set_cache_bytes(1 << 24)  # the cache keys a missing month apart from the mean
    x = _input(12, seed=3)
    x[0, 4:8, 2, 3] = 0.0  # one month back missing at one pixel
    with torch.no_grad():
        feats = model.features(x).float()
        alone = model.features(x[:1, :, 2:3, 3:4].clone()).float()
    assert torch.equal(feats[0, :, 2, 3], alone[0, :, 0, 0])
    fed = x[:1, :, 2:3, 3:4].clone()
    fed[0, 4:8] = 1e-6  # the mean to the encoder's 1e-4 step, but not nodata
    with torch.no_grad():
        as_mean = model.features(fed).float()
    assert (as_mean[0, :, 0, 0] - alone[0, :, 0, 0]).abs().amax() > 0.01
    own = x[:1, :, 2:3, 3:4].clone()
    own[0, :4] = 0.0  # the stack's own month missing: read as the mean, unmasked
    own_near = own.clone()
    own_near[0, :4] = 1e-6
    with torch.no_grad():
        assert torch.equal(model.features(own), model.features(own_near))


def test_a_tile_over_a_small_stack_runs_presto_once_per_distinct_pixel(presto_file):
    """``isamap-predict`` of a 96 px stack at the default 512 px tile ran Presto on every
    pixel of the tile, the nodata past the stack's edges included (one input over and over:
    every band the mean, the earlier months masked): 28 times the stack's work, and more than
    five minutes of CPU for a three-month model. Each distinct input is encoded once now, and
    the stack's pixels get the features (as every map keeps them) they get without padding."""
    bands = series_bands(OWN, 3)
    model = _model(presto_file, bands)
    x = torch.zeros(2, 12, 48, 48)  # two tiles hanging over a 12 x 20 px stack
    x[:, :, 4:16, 6:26] = torch.randn(2, 12, 12, 20, generator=torch.Generator().manual_seed(4))
    x[:, 4:8, 5:9, 10:14] = 0.0  # a month before missing on a block of the stack
    encoded: list[int] = []
    hook = model.encoder.register_forward_hook(lambda m, a, out: encoded.append(a[0].shape[0]))
    with torch.no_grad():
        feats = model.features(x)
        alone = model.features(x[:, :, 4:16, 6:26].contiguous())
    hook.remove()
    assert encoded == [2 * 12 * 20 + 1, 2 * 12 * 20]  # the stack's pixels, the nodata once
    assert torch.equal(feats[:, :, 4:16, 6:26], alone)
    nodata = feats[0, :, 30, 30]
    assert torch.equal(feats[:, :, 20:], nodata[None, :, None, None].expand(2, -1, 28, 48))


@pytest.mark.slow
def test_a_series_call_holds_the_tokens_of_a_months_call(presto_file):
    """Presto was called on 32,768 pixels whatever their months: a three-month map's call held
    29 tokens a pixel against a month's 11, and its hidden layers (pixels x tokens x 512) took
    a map of a 256 px stack to 6.9 GB against 2.8 GB for one month. The pixels of a call now
    shrink with the months; each pixel's features are those of any other call."""
    bands = series_bands(OWN, 3)
    model = _model(presto_file, bands)
    x = torch.randn(1, 12, 120, 110, generator=torch.Generator().manual_seed(5))
    calls: list[tuple[int, int]] = []
    hook = model.encoder.register_forward_hook(
        lambda m, a, out: calls.append((a[0].shape[0], a[0].shape[1])))
    with torch.no_grad():
        feats = model.features(x)
        rows = model.features(x[:, :, :4].contiguous())  # a call of 440 pixels alone
    hook.remove()
    assert [t for _, t in calls] == [3, 3, 3] and pixels_per_call(1) == 32768
    assert [m for m, _ in calls] == [pixels_per_call(3), 120 * 110 - pixels_per_call(3), 440]
    assert pixels_per_call(3) * tokens_per_pixel(3) <= pixels_per_call(1) * tokens_per_pixel(1)
    assert torch.equal(feats[:, :, :4], rows)


def test_a_cloudy_earlier_month_beside_its_radar_masks_the_optical_groups_alone(presto_file):
    """The default bands (S2 and S1): an earlier month whose S2 is missing and whose S1 is
    there. Oracle: Presto called by hand on the pixel, that timestep's S2 groups and NDVI
    masked in its 17-channel mask, its S1 kept; not the mean read as reflectance, and not
    the whole month left out."""
    own = (*OWN, "VV", "VH")
    bands = series_bands(own, 2)  # the month's B2 B3 B4 B8 VV VH, then their _m1
    model = _model(presto_file, bands)
    model.set_cache_bytes(1 << 24)  # the cache keys missing bands apart from the mean
    x = _input(12, seed=4)
    x[0, 6:10, 2, 3] = 0.0  # the month before: S2 missing (cloud) at one pixel, S1 there
    pixel = x[:1, :, 2:3, 3:4].clone()
    with torch.no_grad():
        feats = model.features(x).float()
        alone = model.features(pixel.clone()).float()
        mean, std = model.get_buffer("mean"), model.get_buffer("std")
        raw = pixel[:, model.columns].float() * std[:, None, None] + mean[:, None, None]
        raw = (torch.round(raw / 1e-4) * 1e-4).reshape(1, 2, 6)  # (_m1, own) x bands
        values, mask = prepare(raw, own)
        mask = mask.clone()  # an expanded view of one row
        optical = [2, 3, 4, 8, 16]  # B2 B3 B4 B8 and NDVI among Presto's 17 inputs
        mask[0, 0, optical] = 1.0
        values[0, 0, optical] = 0.0
        want = model.encoder(values, torch.full((1, 2), 9), torch.tensor([[45.9, 14.6]]),
                             mask, torch.tensor([[0, 1]]))
    assert torch.equal(alone[0, :, 0, 0], want[0].to(torch.float16).float())
    assert torch.equal(feats[0, :, 2, 3], alone[0, :, 0, 0])  # among pixels that are whole
    near, whole, radar = pixel.clone(), pixel.clone(), pixel.clone()
    near[0, 6:10] = 1e-6  # the mean to the encoder's 1e-4 step, but not nodata
    whole[0, 6:12] = 0.0  # the whole month missing: S1 too
    radar[0, 10:12] = 0.0  # S1 missing, S2 there
    radar_near = radar.clone()
    radar_near[0, 10:12] = 1e-6
    with torch.no_grad():
        as_mean = model.features(near).float()
        gone = model.features(whole).float()
        no_radar = model.features(radar).float()
        radar_as_mean = model.features(radar_near).float()
    assert (as_mean - alone).abs().amax() > 0.01
    assert (gone - alone).abs().amax() > 0.01  # the month's radar is read
    assert (no_radar - radar_as_mean).abs().amax() > 0.01


def test_a_month_lacking_a_band_or_skipped_is_one_line():
    bands = [*series_bands(OWN, 2), "B2_m2", "B3_m2", "B4_m2"]
    own = [0, 1, 2, 3]
    with pytest.raises(ModelError, match="B8_m2 are not among the bands: give --bands with them "
                       r"too, or without B2_m2, B3_m2, B4_m2$"):
        series_columns(bands, own)
    with pytest.raises(ModelError, match="without B2_m1, B3_m1, B4_m1, B8_m1: a series cannot "
                       "skip a month; add the month before"):
        series_columns([*OWN, "B2_m2", "B3_m2", "B4_m2", "B8_m2"], own)
    # no earlier month: the month's own bands
    assert series_columns([*OWN, "band_7", "s2_clear_count"], own) == own


def test_galileo_on_a_series_and_encoder_change_of_a_series_are_refused(presto_file):
    bands = series_bands(OWN, 2)
    with pytest.raises(ModelError, match=r"galileo-nano encoder reads one month.*presto"):
        EncoderUNet(8, 2, bands=list(bands), encoder="galileo-nano",
                    encoder_sha256=GALILEO_NANO.sha256, input_mean=[0.0] * 8,
                    input_std=[1.0] * 8)
    with pytest.raises(InputDataError, match=r"series of 2 months.*spectral"):
        change_encoder(_model(presto_file, bands))
    assert change_encoder(_model(presto_file, OWN)).timesteps == 1


@pytest.fixture(scope="module")
def series_root(tmp_path_factory):
    """Six 32 px patches of a 3-month series stack (B2 B3 B4 B8 and their _m1, _m2), real
    GeoTIFFs: 2 train, 2 val, 2 test."""
    return write_patch_dataset(tmp_path_factory.mktemp("series") / "ds", n=6,
                               bands=series_bands(OWN, 3))


def _train(root, out, encoder: str) -> int:
    return train_main(["--data", str(root), "--model", "unet-s2", "--encoder", encoder,
                       "--freeze-encoder", "--out", str(out), "--epochs", "1",
                       "--batch-size", "2", "--model-kwargs", '{"widths": [4, 8, 8, 8, 8]}',
                       "--precision", "fp32", "--channels-last", "off", "--device", "cpu",
                       "--workers", "0", "--no-progress", "--members", "1"])


@pytest.mark.slow
def test_a_series_dataset_trains_presto_and_its_model_file_alone_maps_a_series_stack(
        series_root, presto_file, tmp_path):
    out = tmp_path / "run"
    assert _train(series_root, out, f"presto={presto_file}") == 0
    model, meta = load_model_file(out / "model.pt")
    assert tuple(meta.bands) == series_bands(OWN, 3)  # the _m1, _m2 bands recorded
    assert isinstance(model, EncoderUNet) and model.timesteps == 3
    assert model.months == series_months(5, 3) == [3, 4, 5]  # the dataset's 2024-06
    stack = sorted((series_root / "patches").rglob("r0_c5.tif"))[0]
    prob = tmp_path / "map" / "isa_prob.tif"
    assert predict_main(["--model", str(out / "model.pt"), "--input", str(stack), "--out",
                         str(tmp_path / "map" / "isa"), "--tile", "32", "--overlap", "0",
                         "--device", "cpu", "--precision", "fp32"]) == 0
    with rasterio.open(prob) as src:
        assert src.count >= 1 and (src.width, src.height) == (32, 32)


def test_a_series_dataset_with_galileo_is_one_line_before_any_work(series_root, galileo_file,
                                                                   tmp_path, capsys):
    """Before any pixel: a patch file removed would be the refusal otherwise."""
    root = tmp_path / "ds"
    shutil.copytree(series_root, root)
    for image in (root / "patches").rglob("*.tif"):
        image.unlink()
    out = tmp_path / "run"
    assert _train(root, out, f"galileo-nano={galileo_file}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "reads one month" in err and "presto" in err
    assert not out.exists()
