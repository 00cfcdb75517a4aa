"""Real scene files through the product's commands: export, train, predict, as a user runs them.

The real-data experiments (:mod:`experiments.builtup` and the TerraMesh fusion experiment)
run the console commands ``isamap-export``, ``isamap-train`` and ``isamap-predict`` as
processes, with the argument lists a user would type, and log each command line so that it
can be run by hand. A command that exits non-zero stops the experiment. What the commands
cannot do (put a map back on a label's own pixels, find a raster's footprint in degrees) is
here.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import Resampling, reproject, transform_bounds

from contract.bands import LABEL_NODATA
from contract.dataset import read_index
from core.errors import ConfigError, InputDataError
from experiments.scoring import best_threshold_f1, binary_scores, roc_auc
from gee_export.local.labels import MAP_PREFIX, get_scheme
from inference.cog.maps import PROB_SCALE
from training.calibration.temperature import Reliability

log = logging.getLogger(__name__)


class CommandFailed(ConfigError):
    """A product command the experiment ran exited non-zero (its message was logged)."""


ENTRY_POINTS = {"isamap-export": "cli.export:main", "isamap-train": "cli.train:train_main",
                "isamap-predict": "cli.predict:predict_main", "isamap-fit": "cli.fit:main"}


def command_line(prog: str) -> list[str]:
    """How to start ``prog``: its console script beside this Python, else the entry function."""
    script = Path(sys.executable).parent / prog
    if script.is_file():
        return [str(script)]
    module, function = ENTRY_POINTS[prog].split(":")
    return [sys.executable, "-c", f"import sys; from {module} import {function}; "
                                  f"sys.exit({function}())"]


def run_product(prog: str, argv: Sequence[str]) -> None:
    """Run ``prog`` (``isamap-export``, ``-train``, ``-predict``, ``-fit``) with ``argv``."""
    if prog not in ENTRY_POINTS:
        raise ConfigError(f"unknown product command {prog!r}")
    log.info("$ %s %s", prog, shlex.join(argv))
    status = subprocess.run([*command_line(prog), *argv], check=False).returncode
    if status:
        raise CommandFailed(f"{prog} exited {status} (its message is above); the command was: "
                            f"{prog} {shlex.join(argv)}")


@dataclass(frozen=True)
class Footprint:
    """A raster's grid: CRS, affine transform and size (rows = height)."""

    crs: str
    transform: rasterio.Affine
    width: int
    height: int

    @classmethod
    def of(cls, path: str | Path) -> Footprint:
        try:
            with rasterio.open(path) as src:
                if src.crs is None:
                    raise InputDataError(f"{path} has no CRS")
                return cls(src.crs.to_string(), src.transform, src.width, src.height)
        except rasterio.errors.RasterioIOError as exc:
            raise InputDataError(f"cannot read {path}: {exc}") from None

    def bounds(self, row0: int = 0, row1: int | None = None) -> tuple[float, float, float, float]:
        """Projected (west, south, east, north) of rows ``row0:row1`` (north-up rasters)."""
        row1 = self.height if row1 is None else row1
        west, north = self.transform @ (0, row0)
        east, south = self.transform @ (self.width, row1)
        return west, south, east, north

    def lonlat_bbox(self, row0: int = 0, row1: int | None = None,
                    inset: float = 0.0) -> tuple[float, float, float, float]:
        """Degrees (west, south, east, north) of rows ``row0:row1``, ``inset`` metres inside."""
        west, south, east, north = self.bounds(row0, row1)
        return transform_bounds(self.crs, "EPSG:4326", west + inset, south + inset,
                                east - inset, north - inset, densify_pts=21)


def mapped_label(path: Path, label_map: str) -> np.ndarray:
    """The label raster ``path`` through ``--label-map label_map``, as the export maps it."""
    with rasterio.open(path) as src:
        codes = src.read(1)
    return get_scheme(MAP_PREFIX + label_map).apply(codes).astype(np.uint8)


def link_into(path: Path, folder: Path) -> Path:
    """``folder/<name>`` pointing at ``path`` (a copy where links are refused).

    Scene folders are built from links so the sample files are never copied or changed; a
    link left by an earlier run to another file is replaced.
    """
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / path.name
    if link.is_symlink() or link.exists():
        if link.resolve() == path.resolve():
            return link
        link.unlink()
    try:
        link.symlink_to(path.resolve())
    except OSError:  # a file system without links: copy
        link.write_bytes(path.read_bytes())
    return link


def bbox_argument(bbox: Sequence[float]) -> str:
    """``--bbox=W,S,E,N`` (one token: a negative latitude is not taken for an option)."""
    return "--bbox=" + ",".join(f"{v:.7f}" for v in bbox)


def read_on(path: str | Path, like: Footprint, band: int = 1,
            nodata: float | None = None) -> np.ndarray:
    """Band ``band`` of ``path`` on ``like``'s pixels (nearest neighbour), float64, NaN outside.

    Maps and labels share a CRS and a pixel lattice up to whole-pixel shifts here, so nearest
    neighbour moves values without changing them.
    """
    out = np.full((like.height, like.width), np.nan, dtype=np.float64)
    with rasterio.open(path) as src:
        source = src.read(band).astype(np.float64)
        nodata = src.nodatavals[band - 1] if nodata is None else nodata
        if nodata is not None and not np.isnan(nodata):
            source[source == nodata] = np.nan
        reproject(source, out, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=like.transform, dst_crs=like.crs,
                  resampling=Resampling.nearest, src_nodata=np.nan, dst_nodata=np.nan)
    return out


def probability_scale(path: str | Path) -> float:
    """The probability COG's scale: its ``probability_scale`` tag, else the writer's."""
    with rasterio.open(path) as src:
        return float(src.tags().get("probability_scale", PROB_SCALE))


def map_scores(truth: np.ndarray, footprint: Footprint, class_path: str | Path,
               prob_path: str | Path, area: np.ndarray,
               temperature: float | None = None) -> dict:
    """Scores of an ``isamap-predict`` map on the labelled pixels of ``area``.

    Args:
        truth: 0/1 label on ``footprint`` (255 = not labelled).
        footprint: the label's grid; the map is put on it by nearest neighbour.
        class_path: the class COG (0/1, 255 nodata).
        prob_path: the probability COG (scaled by its ``probability_scale`` tag).
        area: bool mask of the pixels to score (the test area).
        temperature: the model file's calibration temperature; given, the expected
            calibration error of the probabilities as the network gave them (re-expressed at
            temperature 1, :func:`binary_at_temperature`) is reported beside the mapped
            ones' (``ece_built``), with both reliability records.

    Pixels the map leaves nodata (clouds masked in the composite) are counted, not scored.
    ``best_f1_built`` at ``best_threshold_built`` is the probability map's F1 at the
    threshold that maximises it on these pixels: an oracle, as NDBI's best threshold is,
    which tells a miss in ranking the likeliest pixels from a miss in where the map is cut.
    """
    mapped = read_on(class_path, footprint)
    prob = read_on(prob_path, footprint) / probability_scale(prob_path)
    labelled = area & (truth != LABEL_NODATA)
    scored = labelled & np.isfinite(mapped)
    scores = binary_scores(mapped[scored].astype(np.int64), truth[scored])
    best_threshold, best_f1 = best_threshold_f1(prob[scored], truth[scored])
    return {"f1_built": scores.f1, "iou_built": scores.iou, "precision_built": scores.precision,
            "recall_built": scores.recall, "auc_built": roc_auc(prob[scored], truth[scored]),
            "pixels": scores.pixels, "built_pixels": scores.built,
            "mapped_built_share": float(mapped[scored].mean()) if scores.pixels else
            float("nan"),
            "unmapped_pixels": int((labelled & ~np.isfinite(mapped)).sum()),
            "best_f1_built": best_f1, "best_threshold_built": best_threshold,
            **calibration_scores(prob[scored], truth[scored], temperature,
                                 0.5 / probability_scale(prob_path))}


def binary_at_temperature(p: np.ndarray, temperature: float, to: float = 1.0,
                          resolution: float = 1e-6) -> np.ndarray:
    """Two-class probabilities ``P(class 1)`` predicted at ``temperature``, as at ``to``.

    Two-class (and one-logit) probabilities keep their logit: ``logit(p) * temperature`` is
    the model's, so a published map's probabilities are re-expressed at another temperature
    exactly (``to = 1``: as the network gave them, uncalibrated). Values are first kept
    ``resolution`` away from 0 and 1 (a stored map's quantisation step).
    """
    q = np.clip(np.asarray(p, dtype=np.float64), resolution, 1.0 - resolution)
    z = (np.log(q) - np.log1p(-q)) * temperature / to
    return 1.0 / (1.0 + np.exp(-z))


def binary_reliability(p: np.ndarray, truth: np.ndarray, name: str = "") -> Reliability:
    """The reliability bins of ``P(class 1)`` against 0/1 labels (flat arrays)."""
    rel = Reliability(positive=1, name=name)
    rel.update(np.asarray(p, dtype=np.float32).reshape(1, 1, -1),
               np.asarray(truth).reshape(1, -1).astype(np.int64))
    return rel


def calibration_scores(prob: np.ndarray, truth: np.ndarray, temperature: float | None,
                       resolution: float) -> dict:
    """ECE of mapped probabilities (and, with ``temperature``, of the uncalibrated ones)."""
    mapped = binary_reliability(prob, truth, "built")
    out = {"ece_built": mapped.ece, "reliability": {"mapped": mapped.to_dict()}}
    if temperature is not None:
        raw = binary_reliability(binary_at_temperature(prob, temperature,
                                                       resolution=resolution), truth, "built")
        out.update(temperature=float(temperature), ece_built_uncalibrated=raw.ece)
        out["reliability"]["uncalibrated"] = raw.to_dict()
    return out


def split_area(dataset: Path, footprint: Footprint, split: str) -> np.ndarray:
    """Pixels of ``footprint`` inside the patch dataset's patches of ``split`` (bool)."""
    area = np.zeros((footprint.height, footprint.width), bool)
    inverse = ~footprint.transform
    for record in read_index(dataset):
        if record.get("split") != split:
            continue
        west, south, east, north = record["bounds"]
        c0, r0 = inverse * (west, north)
        c1, r1 = inverse * (east, south)
        rows = slice(max(0, round(r0)), max(0, round(r1)))
        cols = slice(max(0, round(c0)), max(0, round(c1)))
        area[rows, cols] = True
    return area


def format_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """A fixed-width text table (floats to 3 decimals) for the log and the docs."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, "-" * len(line), *body])
