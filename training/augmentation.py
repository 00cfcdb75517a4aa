"""Training augmentations: the geometric ones of the papers and a radiometric one.

Both are drawn per sample from a generator the dataset seeds with ``(seed, epoch, index)``
(:class:`training.data.PatchDataset`), so a run's augmentations do not depend on loader workers
or on where a run was resumed.

- :class:`Augment` (on by default, ``TrainConfig.augment``): vertical flips and rotations by
  multiples of 90° (exact for labels at any scale) and a Gaussian blur, on the normalised
  image. In the channels of a series stack's earlier months (``earlier``) the blur leaves a
  value that is exactly 0 as it is: an earlier month missing at a pixel is told from data by
  being 0 there (nodata, NaN before the normalisation, reads as the mean, 0;
  :mod:`training.models.encoders.series`), which a blur would undo next to valid pixels. The
  month's own channels are blurred as they always were, so a one-month run is unchanged.
- :class:`Radiometric` (off by default, ``TrainConfig.radiometric``): what another scene, date
  or atmosphere does to the same ground, applied to the optical bands in reflectance before
  normalisation: a gamma, a scene gain with a small per-band spread, a per-band offset, and an
  additive haze that falls with wavelength. A model trained with it has seen such shifts;
  one that standardises each window itself (``unet-s2-window``'s ``input_norm: patch``) or is
  normalised by each scene's statistics (``unet-s2``) is unmoved by the affine part anyway,
  and sees only the gamma.
- :func:`random_crop` (a recipe's ``crop``): a random square window of the image and the same
  ground of its targets, whatever their scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contract.bands import get_band
from core.errors import UnknownBandError


@dataclass(frozen=True)
class Augment:
    """The paper's training augmentations, each drawn per sample.

    Attributes:
        vflip: probability of a vertical flip.
        rotate: rotate by a random multiple of 90° (labels stay exact at every scale).
        blur: probability of a Gaussian blur of the image.
        blur_sigma: range of the blur's sigma in pixels.
    """

    vflip: float = 0.5
    rotate: bool = True
    blur: float = 0.3
    blur_sigma: tuple[float, float] = (0.1, 1.0)

    def __call__(self, image: np.ndarray, labels: list[np.ndarray],
                 rng: np.random.Generator, codes: Sequence[int] = (),
                 earlier: Sequence[int] = ()) -> tuple[np.ndarray, list[np.ndarray]]:
        """Augment ``image`` (C, H, W) and move ``labels`` with it.

        ``labels`` are targets on the same area at any scale, ``(H', W')`` label maps or
        ``(C', H', W')`` fine images: they are flipped and rotated, never blurred. The image
        channels ``codes`` hold class codes (the coarse product): moved, never blurred; in the
        channels ``earlier`` (a series stack's earlier months) a value exactly 0 (nodata, the
        mean) stays 0 (module docstring).
        """
        if rng.random() < self.vflip:
            image = image[:, ::-1]
            labels = [lab[..., ::-1, :] for lab in labels]
        if self.rotate:
            k = int(rng.integers(4))
            image = np.rot90(image, k, axes=(1, 2))
            labels = [np.rot90(lab, k, axes=(-2, -1)) for lab in labels]
        if rng.random() < self.blur:
            sigma = float(rng.uniform(*self.blur_sigma))
            from scipy.ndimage import gaussian_filter  # ~0.5 s to import: a recipe that blurs

            blurred = gaussian_filter(image, sigma=(0, sigma, sigma), mode="reflect")
            if codes:
                blurred[list(codes)] = image[list(codes)]
            if earlier:
                gaps = image[list(earlier)]
                blurred[list(earlier)] = np.where(gaps == 0, gaps, blurred[list(earlier)])
            image = blurred
        return np.ascontiguousarray(image), [np.ascontiguousarray(lab) for lab in labels]


#: Haze is referred to the blue band's wavelength: it adds ``haze`` there.
HAZE_REFERENCE_NM = 490.0


@dataclass(frozen=True)
class Radiometric:
    """Scene-to-scene radiometric shifts of the optical bands (reflectance, 0-1), per sample.

    In this order, on the bands that have a wavelength (Sentinel-2; radar and quality bands
    are left as they are), NaN (nodata) kept:

    1. with probability ``p_gamma``, ``x ** g`` (``x`` clipped at 0) with ``log g`` uniform in
       ``± log gamma``: a non-linear change of contrast (another sun angle, another
       processing baseline);
    2. a gain ``exp(u + e_b)``: ``u`` uniform in ``± log gain`` for the whole sample and
       ``e_b`` normal with deviation ``band_gain`` per band;
    3. an offset normal with deviation ``offset`` per band (reflectance units);
    4. with probability ``p_haze``, haze: ``h * (HAZE_REFERENCE_NM / wavelength) **
       angstrom`` added to every band, ``h`` uniform in ``0..haze`` (path radiance that
       brightens the blue most and the short-wave infrared least, as aerosols do).

    The defaults span what separates the shared hazy Ghana scenes from the clear Java one
    (visible-band medians 0.11-0.13 against 0.03-0.04).
    """

    gamma: float = 1.25
    p_gamma: float = 0.5
    gain: float = 1.25
    band_gain: float = 0.05
    offset: float = 0.01
    haze: float = 0.1
    p_haze: float = 0.5
    angstrom: float = 1.5

    def __call__(self, image: np.ndarray, bands: Sequence[str],
                 rng: np.random.Generator) -> np.ndarray:
        """``image`` (C, H, W) reflectance of ``bands`` with one draw of the shifts applied.

        Every draw is made whatever the bands, so the same generator state gives the same
        shifts to the same bands.
        """
        weights = haze_weights(bands, self.angstrom)
        optical = np.isfinite(weights)
        n = len(bands)
        use_gamma = rng.random() < self.p_gamma
        g = math.exp(rng.uniform(-math.log(self.gamma), math.log(self.gamma)))
        gain = np.exp(rng.uniform(-math.log(self.gain), math.log(self.gain))
                      + rng.normal(0.0, self.band_gain, n))
        offset = rng.normal(0.0, self.offset, n)
        use_haze = rng.random() < self.p_haze
        h = rng.uniform(0.0, self.haze)
        out = np.array(image, dtype=np.float32, copy=True)
        x = out[optical].astype(np.float64)
        if use_gamma:
            x = np.power(np.clip(x, 0.0, None), g)
        x = x * gain[optical, None, None] + offset[optical, None, None]
        if use_haze:
            x = x + h * weights[optical, None, None]
        out[optical] = x.astype(np.float32)
        return out


def haze_weights(bands: Sequence[str], angstrom: float) -> np.ndarray:
    """Per band ``(HAZE_REFERENCE_NM / wavelength) ** angstrom``; NaN for bands without one."""
    out = np.full(len(bands), np.nan)
    for i, band in enumerate(bands):
        try:
            nm = get_band(band).wavelength_nm
        except UnknownBandError:
            nm = None
        if nm:
            out[i] = (HAZE_REFERENCE_NM / nm) ** angstrom
    return out


def random_crop(image: np.ndarray, targets: list[np.ndarray], size: int,
                rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """A random ``size x size`` window of ``image`` (C, H, W) and the same area of ``targets``.

    A target (a label ``(H', W')`` or a fine image ``(C, H', W')``) may be ``k`` times finer
    than the image; its window is the image window's, scaled by ``k``, so all keep covering
    the same ground.
    """
    h, w = image.shape[1:]
    r0 = int(rng.integers(0, h - size + 1)) if h > size else 0
    c0 = int(rng.integers(0, w - size + 1)) if w > size else 0
    cut = []
    for t in targets:
        k = t.shape[-2] // h
        cut.append(t[..., r0 * k:(r0 + size) * k, c0 * k:(c0 + size) * k])
    return image[:, r0:r0 + size, c0:c0 + size], cut
