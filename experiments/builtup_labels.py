"""What the Dynamic World labels mean: a spectral check of each tile's labels, and its outlines.

The built-up judge (``python -m experiments.builtup --loto``) scores maps against hand-drawn
Dynamic World labels of "built area": polygons around settlements, not impervious ground.
:func:`label_check` says, per tile, how far the two part: the share of the pixels labelled
built whose spectra are vegetation (NDVI >= :data:`VEGETATION_NDVI` and the short-wave
infrared below the near infrared, NDBI < 0), and the share of the pixels labelled not built
that look impervious or bare (NDVI < :data:`OPEN_NDVI` and NDBI > 0), with the median NDVI
of each, and draws the tile's true colours beside its label (a PNG per tile).

:data:`COARSE_OUTLINES` are the labels drawn coarsely: the Java tile's eastern strip (from
column 434 of 510, the whole height) is one settlement polygon over a peri-urban mix of
houses, gardens and fields. The judge scores each tile whole and without them
(:func:`outline_mask`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from experiments.builtup_tiles import DWTile, built_label, reflectance
from experiments.scoring import ndbi, normalized_difference
from training.plots import new_figure, save_png

#: per tile, the first column of a strip labelled by one coarse outline (to the east edge)
COARSE_OUTLINES: dict[str, int] = {"java": 434}
#: NDVI from which a pixel whose SWIR is below its NIR is counted as vegetation
VEGETATION_NDVI = 0.5
#: NDVI below which a pixel whose SWIR is above its NIR is counted as impervious or bare
OPEN_NDVI = 0.2


def outline_mask(tile: DWTile) -> np.ndarray | None:
    """The tile's pixels (bool) inside its coarse outlines, or None where it has none."""
    first = COARSE_OUTLINES.get(tile.prefix)
    if first is None:
        return None
    mask = np.zeros((tile.footprint.height, tile.footprint.width), bool)
    mask[:, first:] = True
    return mask


def _part(truth: np.ndarray, ndvi: np.ndarray, swir_over_nir: np.ndarray,
          where: np.ndarray) -> dict:
    """The check's figures on the labelled pixels of ``where``."""
    valid = where & np.isfinite(ndvi) & np.isfinite(swir_over_nir)
    built, other = valid & (truth == 1), valid & (truth == 0)
    vegetated = (ndvi >= VEGETATION_NDVI) & (swir_over_nir < 0)
    open_ground = (ndvi < OPEN_NDVI) & (swir_over_nir > 0)

    def share(mask: np.ndarray, of: np.ndarray) -> float:
        return float(mask[of].mean()) if of.any() else float("nan")

    def median(of: np.ndarray) -> float:
        return float(np.median(ndvi[of])) if of.any() else float("nan")

    return {"built_pixels": int(built.sum()), "built_vegetated": share(vegetated, built),
            "built_ndvi_median": median(built), "other_pixels": int(other.sum()),
            "other_impervious_like": share(open_ground, other),
            "other_ndvi_median": median(other)}


def label_check(tile: DWTile, picture: Path | None = None) -> dict:
    """The tile's label check: whole, and inside and outside its coarse outlines.

    ``picture``: write the tile's true colours beside its label there (PNG).
    """
    bands = reflectance(tile, ("B2", "B3", "B4", "B8", "B11"))
    truth = built_label(tile)
    ndvi = normalized_difference(bands["B8"], bands["B4"])
    swir_over_nir = ndbi(bands["B11"], bands["B8"])
    everywhere = np.ones(truth.shape, bool)
    out: dict[str, Any] = {"whole": _part(truth, ndvi, swir_over_nir, everywhere)}
    strip = outline_mask(tile)
    if strip is not None:
        out["outlines"] = _part(truth, ndvi, swir_over_nir, strip)
        out["without_outlines"] = _part(truth, ndvi, swir_over_nir, ~strip)
        out["outline_first_column"] = COARSE_OUTLINES[tile.prefix]
    if picture is not None:
        draw_check(tile, bands, truth, picture)
        out["picture"] = picture.name
    return out


def draw_check(tile: DWTile, bands: dict[str, np.ndarray], truth: np.ndarray,
               path: Path) -> Path:
    """The tile's true colours beside its label, as a PNG at ``path``.

    True colours stretched from 2 to 98 %; the label built red, other labelled grey,
    unmarked or cloud black; the coarse outlines' edge dashed.
    """
    rgb = np.dstack([bands[b] for b in ("B4", "B3", "B2")])
    low, high = np.nanpercentile(rgb, 2), np.nanpercentile(rgb, 98)
    rgb = np.nan_to_num(np.clip((rgb - low) / max(high - low, 1e-6), 0, 1))
    colours = np.zeros((*truth.shape, 3))
    colours[truth == 0] = (0.75, 0.75, 0.75)
    colours[truth == 1] = (0.85, 0.1, 0.1)
    fig = new_figure(figsize=(11, 5.5 * truth.shape[0] / truth.shape[1] + 0.6))
    for i, (image, title) in enumerate(((rgb, f"{tile.prefix}: true colour (B4, B3, B2)"),
                                        (colours, "label: built red, other grey, unmarked "
                                                  "black"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.imshow(image, interpolation="nearest")
        first = COARSE_OUTLINES.get(tile.prefix)
        if first is not None:
            ax.axvline(first - 0.5, color="yellow", linestyle="--", linewidth=1)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_png(fig, path)


def check_table(checks: dict[str, dict]) -> str:
    """The label check as the judge prints it: one row per tile and part."""
    from experiments.realscenes import format_table

    def pct(value: float) -> str:
        return f"{100 * value:.1f}" if np.isfinite(value) else "n/a"

    rows = []
    for prefix, check in checks.items():
        for part in ("whole", "outlines", "without_outlines"):
            if part not in check:
                continue
            s = check[part]
            name = {"whole": "whole", "outlines": f"cols {check.get('outline_first_column')}-",
                    "without_outlines": "without outlines"}[part]
            rows.append((prefix, name, f"{s['built_pixels']:,}", pct(s["built_vegetated"]),
                         f"{s['built_ndvi_median']:.2f}", f"{s['other_pixels']:,}",
                         pct(s["other_impervious_like"]), f"{s['other_ndvi_median']:.2f}"))
    return format_table(rows, (
        "tile", "pixels", "built px", f"% built vegetated (NDVI >= {VEGETATION_NDVI}, "
        "SWIR < NIR)", "built NDVI median", "other px",
        f"% other impervious-like (NDVI < {OPEN_NDVI}, SWIR > NIR)", "other NDVI median"))
