"""The GeoBench Chesapeake NAIP tiles as cross-resolution samples (1 m truth for 10 m inputs).

Five 256 x 256 tiles of 1 m NAIP RGB+NIR with the Chesapeake land cover, in hdf5. Adapted so
that the block mean of the 1 m bands over ``k x k`` pixels stands in for a Sentinel-2
observation and the 1 m impervious classes (5 other impervious, 6 roads) are the binary
target (:func:`naip_samples`), or read whole with their classes (:func:`read_naip_tile`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from contract.bands import LABEL_NODATA, check_fine_scale
from core.errors import ConfigError, ExtraNotInstalledError, InputDataError
from experiments.srseg_data import CrossResSample, Split, block_mean

NAIP_FOLDER = "geobench_chesapeake_naip"  # the sample set's folder under the data root
NAIP_BANDS = ("Red", "Green", "Blue", "NearInfrared")
NAIP_IMPERVIOUS = (5, 6)  # Chesapeake land cover: 5 impervious (other), 6 impervious (road)
NAIP_NODATA_CLASS = 0  # Chesapeake land cover: 0 = no data


def binary_isa_label(
    classes: np.ndarray,
    impervious: Sequence[int] = NAIP_IMPERVIOUS,
    nodata_class: int | None = NAIP_NODATA_CLASS,
) -> np.ndarray:
    """Map a land-cover class raster to 0 pervious / 1 impervious / 255 nodata (uint8)."""
    out = np.isin(classes, list(impervious)).astype(np.uint8)
    if nodata_class is not None:
        out[classes == nodata_class] = LABEL_NODATA
    return out


def read_naip_tile(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one GeoBench Chesapeake hdf5 tile: ``(bands (4, H, W) float32, classes (H, W))``.

    Only the named datasets are read; the file's ``pickle`` attribute is never touched, since
    unpickling data is code execution.
    """
    try:
        import h5py
    except ImportError:
        raise ExtraNotInstalledError(
            "reading the GeoBench NAIP tiles needs h5py, which is not installed; run "
            "`pip install 'isamap[experiments]'` (or `make setup`) and try again") from None

    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            missing = [name for name in (*NAIP_BANDS, "label") if name not in handle]
            if missing:
                raise InputDataError(f"{path} lacks datasets {missing}; is it a GeoBench tile?")
            bands = np.stack([np.asarray(handle[name][()], dtype=np.float32)
                              for name in NAIP_BANDS])
            classes = np.asarray(handle["label"][()])
    except OSError as exc:
        raise InputDataError(f"cannot read {path} as hdf5: {exc}") from exc
    if classes.shape != bands.shape[1:]:
        raise InputDataError(f"{path}: label {classes.shape} and bands {bands.shape} differ")
    return bands, classes


def naip_samples(
    folder: str | Path,
    scale: int = 8,
    test_quadrant: int = 3,
    val_quadrant: int | None = None,
) -> list[CrossResSample]:
    """Cross-resolution samples from the NAIP tiles in ``folder``: one per tile quadrant.

    Each tile is cropped to a multiple of ``scale`` (256 -> 250 at scale 10), its 1 m bands are
    block-averaged into the coarse input, its classes 5 and 6 become the binary fine label and
    the 1 m bands themselves are kept as the fine image (reconstruction target). The tile is cut
    into its four quadrants (0 NW, 1 NE, 2 SW, 3 SE); quadrant ``test_quadrant`` of every tile
    is the test split (and ``val_quadrant`` the validation split, if given), so each split
    sees every tile's landscape but no pixel is in two splits.
    """
    check_fine_scale(scale, required=True)
    paths = sorted(Path(folder).glob("id_*.hdf5"))
    if not paths:
        raise InputDataError(f"no id_*.hdf5 NAIP tiles in {folder}")
    bad_val = val_quadrant is not None and (not 0 <= val_quadrant <= 3
                                            or val_quadrant == test_quadrant)
    if not 0 <= test_quadrant <= 3 or bad_val:
        raise ConfigError("quadrants are 0..3 and the val quadrant must differ from the test one")
    samples = []
    for path in paths:
        bands, classes = read_naip_tile(path)
        coarse_h, coarse_w = bands.shape[1] // scale, bands.shape[2] // scale
        fine = bands[:, : coarse_h * scale, : coarse_w * scale]
        label = binary_isa_label(classes[: coarse_h * scale, : coarse_w * scale])
        coarse = block_mean(fine, scale)
        qh, qw = coarse_h // 2, coarse_w // 2
        for quadrant in range(4):
            r0, c0 = (quadrant // 2) * qh, (quadrant % 2) * qw
            split: Split = ("test" if quadrant == test_quadrant
                            else "val" if quadrant == val_quadrant else "train")
            fr, fc = r0 * scale, c0 * scale
            samples.append(CrossResSample(
                id=f"{path.stem}_q{quadrant}",
                image=coarse[:, r0:r0 + qh, c0:c0 + qw].copy(),
                label=label[fr:fr + qh * scale, fc:fc + qw * scale].copy(),
                scale=scale,
                image_fine=fine[:, fr:fr + qh * scale, fc:fc + qw * scale].copy(),
                split=split,
            ))
    return samples
