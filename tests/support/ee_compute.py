"""The Earth Engine REST service's computations at the HTTP layer: pixels, profiles, their cost.

``projects.image.computePixels`` (POST ``v1/projects/{p}/image:computePixels``) is answered with
the bytes of the format the request's ``fileFormat`` names, as the REST reference's
``ImageFileFormat`` describes it: ``NPY`` a NumPy ``.npy`` file (a structured array of
``height x width`` with one field per band, what earthengine-api's ``NUMPY_NDARRAY`` converter
loads), ``GEO_TIFF`` a GeoTIFF on the request's grid (``crsCode``, ``affineTransform``,
``dimensions``). The client asks for both as raw bytes (its second, ``raw`` API resource).
Display formats (PNG, JPEG) and ``TF_RECORD_IMAGE`` (exports only) are refused with HTTP 400.

A stand-in evaluates no expression, so the request must name its bands (``bandIds``) and its
``grid``; band ``k`` of a request holds ``1000 * k + i``, ``i`` the pixel's row-major index in
the request window (:func:`band_values`), as float32.

Every answered request is metered (:class:`testing.fake_quota.EecuAccount`: its cost depends on
the output pixels; a daily quota refuses with HTTP 429). A request that carries the header
``X-Earth-Engine-Computation-Profiling`` is answered with the header
``X-Earth-Engine-Computation-Profile: <id>``, and ``value:compute`` of ``Profile.getProfiles``
(those ids) is answered with the profiler's text table of what they were metered
(:class:`testing.fake_profiles.ProfileBook`, the same table the fake pixel server answers).
Not documented, chosen here: the answers' content types (``application/octet-stream`` for NPY,
``image/tiff`` for GeoTIFF), the GeoTIFF's band descriptions (the band ids), and that an
answer carries a profile id only when it succeeded.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from testing.fake_profiles import ProfileBook, is_profiles_request
from testing.fake_quota import EecuAccount, HttpError

PROFILING_HEADER = "x-earth-engine-computation-profiling"  # the request's, compared lower-case
PROFILE_HEADER = "X-Earth-Engine-Computation-Profile"  # the answer's
CONTENT_TYPES = {"NPY": "application/octet-stream", "GEO_TIFF": "image/tiff"}


@dataclass(frozen=True)
class PixelAnswer:
    """An answer that is not JSON: its bytes, content type and extra headers."""

    data: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Metered:
    """One answered computePixels request: what it cost, its pixels, its profile id."""

    eecu_s: float
    pixels: int
    profile_id: str | None


def band_values(bands: int, height: int, width: int) -> np.ndarray:
    """``(bands, height, width)`` float32: band ``k`` is ``1000 * k`` plus the pixel index."""
    index = np.arange(height * width, dtype=np.float32).reshape(height, width)
    return np.stack([index + 1000.0 * k for k in range(bands)]).astype(np.float32)


def _npy(bands: list[str], values: np.ndarray) -> bytes:
    out = np.zeros(values.shape[1:], dtype=[(b, "<f4") for b in bands])
    for k, b in enumerate(bands):
        out[b] = values[k]
    buffer = io.BytesIO()
    np.save(buffer, out, allow_pickle=False)
    return buffer.getvalue()


def _geotiff(bands: list[str], values: np.ndarray, grid: dict[str, Any]) -> bytes:
    a = grid["affineTransform"]
    transform = Affine(a["scaleX"], a.get("shearX", 0.0), a["translateX"],
                       a.get("shearY", 0.0), a["scaleY"], a["translateY"])
    with MemoryFile() as memory:
        with memory.open(driver="GTiff", width=values.shape[2], height=values.shape[1],
                         count=len(bands), dtype="float32", crs=grid["crsCode"],
                         transform=transform) as dst:
            dst.write(values)
            dst.descriptions = tuple(bands)
        return bytes(memory.read())


@dataclass
class ComputeService:
    """The computations of one test: pixels answered, what they cost, their profiles.

    Attributes:
        account: the project's metered compute (per request and per output Mpx).
        profiles: profile ids given out, what each cost, ``getProfiles`` reads.
        metered: every answered computePixels request, in order.
    """

    account: EecuAccount = field(default_factory=EecuAccount)
    profiles: ProfileBook = field(default_factory=ProfileBook)
    metered: list[Metered] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def compute_pixels(self, body: dict[str, Any], headers: dict[str, str]) -> PixelAnswer:
        """The answer to a computePixels request (``headers`` with lower-case names).

        Raises:
            HttpError: 400 for a request the stand-in cannot answer (its message says
                why), 429 past the account's daily quota.
        """
        file_format = body.get("fileFormat", "")
        if file_format not in CONTENT_TYPES:
            raise HttpError(400, f"Unsupported file format {file_format!r} for computePixels "
                            f"(the stand-in answers {', '.join(CONTENT_TYPES)}).")
        bands, grid = body.get("bandIds"), body.get("grid")
        if not bands or not grid or "dimensions" not in grid:
            raise HttpError(400, "The stand-in needs bandIds and a grid with dimensions: it "
                            "evaluates no expression.")
        if "expression" not in body:
            raise HttpError(400, "Missing expression.")
        width, height = int(grid["dimensions"]["width"]), int(grid["dimensions"]["height"])
        eecu_s = self.account.compute(width * height)
        values = band_values(len(bands), height, width)
        data = _npy(bands, values) if file_format == "NPY" else _geotiff(bands, values, grid)
        answer_headers: dict[str, str] = {}
        profile_id = None
        if headers.get(PROFILING_HEADER):
            profile_id = self.profiles.add(eecu_s, width * height)
            answer_headers[PROFILE_HEADER] = profile_id
        with self._lock:
            self.metered.append(Metered(eecu_s, width * height, profile_id))
        return PixelAnswer(data, CONTENT_TYPES[file_format], answer_headers)

    def profile_text(self, expression: dict[str, Any]) -> str | None:
        """The table a ``Profile.getProfiles`` expression is answered with (None: not one).

        Raises:
            HttpError: 400 for an id never given out.
        """
        if not is_profiles_request(expression):
            return None
        return self.profiles.read(expression)
