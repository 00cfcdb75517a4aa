"""Small real rasters and plain-torch models for the inference tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine

from gee_export.geotiff import write_geotiff

BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")


def write_stack(path: Path, data: np.ndarray, bands=BANDS, res: float = 10.0,
                nodata: float | None = float("nan")) -> Path:
    """A float32 stack GeoTIFF with band descriptions, as a backend writes it."""
    return write_geotiff(path, data.astype("float32"), Affine(res, 0, 500000, 0, -res, 3400000),
                         "EPSG:32650", nodata, descriptions=bands[: data.shape[0]])


def smooth_stack(height: int, width: int, count: int = len(BANDS), seed: int = 0) -> np.ndarray:
    """Spatially correlated values (a few sinusoids) so conv models see structure."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((count, height, width), dtype=np.float32)
    for c in range(count):
        fy, fx = rng.uniform(0.01, 0.08, 2)
        phase = rng.uniform(0, 6.28)
        noise = 0.1 * rng.normal(size=(height, width))
        out[c] = np.sin(fy * yy + phase) * np.cos(fx * xx) + noise
    return out


class ConstantModel(torch.nn.Module):
    """Logits independent of the input: any seam or gap in the blend shows directly."""

    def __init__(self, logits=(0.3, -0.4)) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        n, _, h, w = x.shape
        return self.logits.view(1, -1, 1, 1).expand(n, -1, h, w) + 0 * self.dummy


def conv1x1(channels: int = len(BANDS), classes: int = 2, seed: int = 0) -> torch.nn.Module:
    """Per-pixel model: tiling cannot change its output at all."""
    torch.manual_seed(seed)
    return torch.nn.Conv2d(channels, classes, 1)


def padded_convnet(channels: int = len(BANDS), classes: int = 2, seed: int = 0):
    """Zero-padded 3x3 convolutions: tile edges see padding, so unblended tiles leave seams."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, classes, 3, padding=1),
    )


class SuperRes(torch.nn.Module):
    """A 1x1 conv followed by nearest upsampling by s, returning the contract's dict form."""

    def __init__(self, channels: int = len(BANDS), scale: int = 2) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.head = torch.nn.Conv2d(channels, 2, 1)
        self.scale = scale

    def forward(self, x):
        out = torch.nn.functional.interpolate(self.head(x), scale_factor=self.scale)
        return {"out": out, "aux": out.detach()}


@pytest.fixture
def stack(tmp_path) -> Path:
    """A 300 x 410 six-band stack with a NaN hole in one band."""
    data = smooth_stack(300, 410)
    data[2, 40:60, 100:130] = np.nan
    return write_stack(tmp_path / "stack.tif", data)


@pytest.fixture
def cogs(tmp_path):
    """A real class/probability COG pair from a tiny prediction."""
    from inference.predict import OutputInfo, PredictConfig, predict_raster
    from inference.runtime import RuntimeOptions, TilePredictor

    src = write_stack(tmp_path / "small.tif", smooth_stack(90, 110))
    p = TilePredictor(conv1x1(), np.zeros(6), np.ones(6), options=RuntimeOptions(precision="fp32"))
    info = OutputInfo("unet", BANDS, month="2023-06", metrics={"iou": 0.8})
    return predict_raster(str(src), str(tmp_path / "maps" / "wuhan_2023-06"), p, info,
                          PredictConfig(tile=64, overlap=16), progress=False)
