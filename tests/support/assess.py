"""A synthetic scene with known truth for accuracy assessment: class COGs as isamap writes them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from inference.cog.maps import NODATA, write_cog
from tests.support.rasters import write_band

CLASSES = ("pervious", "impervious")


def class_cog(path: Path, array: np.ndarray, classes=CLASSES, kind: str = "class") -> Path:
    """``array`` (uint8 codes, 255 nodata) as a COG with the tags isamap's maps carry."""
    raw = write_band(path.with_suffix(".raw.tif"), array.astype(np.uint8), nodata=NODATA)
    write_cog(raw, path, kind, {"classes": ",".join(classes), "model": "test"})  # type: ignore[arg-type]
    raw.unlink()
    return path


@dataclass(frozen=True)
class Scene:
    truth: np.ndarray
    map_path: Path
    worse_path: Path
    truth_path: Path


def synthetic_scene(folder: Path, size: int = 240, seed: int = 0) -> Scene:
    """Blobs of impervious surface (~20 %); the map errs on 5 % of pixels, a worse one on 20 %."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.random((size, size)), 6)
    truth = (field > np.quantile(field, 0.8)).astype(np.uint8)
    noise = rng.random(truth.shape)
    good = np.where(noise < 0.05, 1 - truth, truth).astype(np.uint8)
    worse = np.where(noise < 0.20, 1 - truth, truth).astype(np.uint8)
    good[:3, :3] = NODATA  # a corner without data is never sampled
    return Scene(truth, class_cog(folder / "map_class.tif", good),
                 class_cog(folder / "worse_class.tif", worse),
                 class_cog(folder / "truth_class.tif", truth))


def write_rows(path: Path, rows: list[dict], encoding: str = "utf-8",
               delimiter: str = ",") -> Path:
    """``rows`` as a CSV file with their keys as the header, as an interpreter saves one."""
    import csv

    with path.open("w", newline="", encoding=encoding) as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def labelled_as_the_map(design: Path, out: Path) -> Path:
    """The design's blind ``sample.csv`` labelled by an interpreter who agrees with the map."""
    import csv

    rows = list(csv.DictReader((design / "sample.csv").open()))
    mapped = {r["id"]: r["map_class"]
              for r in csv.DictReader((design / "design_points.csv").open())}
    for row in rows:
        row["reference"] = mapped[row["id"]]
    return write_rows(out, rows)
