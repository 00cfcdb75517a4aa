"""The band registry: one place that says what every band of a stack is.

Band order in a stack is the order of the names the user asked for; everything downstream
(patch files, the model's input layer, normalisation statistics) reads the names from the
manifest, never from a hard-coded list.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, overload

from core.errors import ConfigError, UnknownBandError

Sensor = Literal["S2", "S1", "embedding", "label", "quality", "product"]
Resampling = Literal["bilinear", "nearest", "mode"]


@dataclass(frozen=True)
class BandSpec:
    """What one band is, in the stack and in its source.

    Attributes:
        name: name in stacks, patch files and manifests.
        sensor: which product it comes from.
        unit: physical unit of the value stored in the stack.
        dtype: dtype of the band in the stack.
        nodata: value that marks missing data in the stack.
        scale: multiply the source value (e.g. Sentinel-2 DN) by this to get ``unit``.
        native_resolution: metres per pixel of the source product.
        resampling: how the band is put onto the grid (continuous bilinear, categorical mode).
        source_name: band name in the source product (Earth Engine / file naming).
        description: human-readable text written to GeoTIFF band descriptions' metadata.
        wavelength_nm: centre wavelength of an optical band (None for the others); what a
            wavelength-dependent effect such as haze scales with.
        months_before: 0 for the stack's own month; ``k`` for the same band composited
            ``k`` months earlier (an earlier month of a series stack, named
            :func:`earlier_name`), on the same grid and by the same recipe.
    """

    name: str
    sensor: Sensor
    unit: str
    dtype: str
    nodata: float
    scale: float
    native_resolution: float
    resampling: Resampling
    source_name: str
    description: str
    wavelength_nm: float | None = None
    months_before: int = 0

    @property
    def base(self) -> str:
        """The band's name in its own month (``B4`` of ``B4_m2``)."""
        return self.source_name if self.months_before else self.name

    @property
    def is_codes(self) -> bool:
        """A band of class codes (:data:`PRODUCT`): fed to the network as it is.

        Never normalised (identity statistics), blurred or radiometrically augmented; a model
        that reads it expands the codes itself (``training.models.product``).
        """
        return self.sensor == "product"


LABEL = "label"
# The coarse product as an input band: the land-cover label source's own codes (NLCD 11..95,
# WorldCover 10..100...), put on the grid like the label (mode or nearest) but not mapped to
# the seven classes; only with ``--labels landcover:<source>``.
PRODUCT = "product"
# The label value that marks unlabelled pixels, in stacks, patches, training (ignored by losses
# and metrics) and the published class map. Every module that needs it imports it from here.
LABEL_NODATA = 255
# Integer factors of the fine grid (fine labels, super-resolution targets): 10 m / k for a
# 10 m grid gives 5, 2.5, 2, 1.25 and 1 m, the resolutions of the reference data the papers use.
FINE_SCALES: tuple[int, ...] = (2, 4, 5, 8, 10)


def _s2(name: str, res: float, wavelength: str) -> BandSpec:
    nm = float(wavelength.split()[-2])  # "red edge 705 nm" -> 705
    return BandSpec(name, "S2", "reflectance", "float32", math.nan, 1e-4, res, "bilinear", name,
                    f"Sentinel-2 L2A surface reflectance {name} ({wavelength}), 0-1", nm)


def _s1(name: str) -> BandSpec:
    return BandSpec(name, "S1", "dB", "float32", math.nan, 1.0, 10.0, "bilinear", name,
                    f"Sentinel-1 GRD sigma0 {name}, despeckled, monthly mean in linear power, dB")


_BANDS: tuple[BandSpec, ...] = (
    _s2("B2", 10.0, "blue 490 nm"),
    _s2("B3", 10.0, "green 560 nm"),
    _s2("B4", 10.0, "red 665 nm"),
    _s2("B8", 10.0, "NIR 842 nm"),
    _s2("B5", 20.0, "red edge 705 nm"),
    _s2("B6", 20.0, "red edge 740 nm"),
    _s2("B7", 20.0, "red edge 783 nm"),
    _s2("B8A", 20.0, "narrow NIR 865 nm"),
    _s2("B11", 20.0, "SWIR 1610 nm"),
    _s2("B12", 20.0, "SWIR 2190 nm"),
    _s1("VV"),
    _s1("VH"),
    BandSpec("s2_clear_count", "quality", "count", "float32", math.nan, 1.0, 10.0, "nearest",
             "clear_count", "number of cloud-free Sentinel-2 observations in the composite"),
    BandSpec("s1_scene_count", "quality", "count", "float32", math.nan, 1.0, 10.0, "nearest",
             "scene_count", "number of Sentinel-1 scenes averaged into the composite"),
    BandSpec(PRODUCT, "product", "code", "float32", math.nan, 1.0, 10.0, "mode", PRODUCT,
             "the land-cover label source's own class codes (e.g. NLCD 11..95), NaN nodata"),
    BandSpec(LABEL, "label", "class", "uint8", LABEL_NODATA, 1.0, 10.0, "mode", LABEL,
             "0 pervious, 1 impervious, 255 nodata (or the class scheme in the manifest)"),
)

#: Google's annual Satellite Embedding (AlphaEarth Foundations) on Earth Engine: 64 axes of a
#: unit vector per 10 m pixel, -1 to 1, fetched as the published 8-bit integers and stored as
#: their native values (gee_export/ee/embedding.py states the sources).
EMBEDDING: tuple[str, ...] = tuple(f"A{i:02d}" for i in range(64))
#: What ``--bands`` expands to the 64 embedding bands (``--bands aef`` or ``B2,B3,aef``).
EMBEDDING_ALIAS = "aef"
_EMBEDDING = tuple(
    BandSpec(name, "embedding", "unitless", "float32", math.nan, 1.0, 10.0, "nearest", name,
             f"Satellite Embedding V1 axis {name} (annual, AlphaEarth Foundations), -1 to 1")
    for name in EMBEDDING)

REGISTRY: dict[str, BandSpec] = {b.name: b for b in (*_BANDS, *_EMBEDDING)}

DEFAULT_S2: tuple[str, ...] = ("B2", "B3", "B4", "B8")
DEFAULT_S1: tuple[str, ...] = ("VV", "VH")
QUALITY: tuple[str, ...] = ("s2_clear_count", "s1_scene_count")
# The model input of the CroFuseNet paper: S2 B2, B3, B4, B8 then S1 VV, VH.
DEFAULT_IMAGE_BANDS: tuple[str, ...] = DEFAULT_S2 + DEFAULT_S1

_ALIASES = {"B02": "B2", "B03": "B3", "B04": "B4", "B05": "B5", "B06": "B6", "B07": "B7",
            "B08": "B8", "B8a": "B8A"}


_FOLDED = {n.casefold(): _ALIASES.get(n, n) for n in (*REGISTRY, *_ALIASES)}  # any case


def canonical_band(name: str) -> str:
    """The name isamap gives a band named in any case (``B02``, ``b2``: ``B2``); others stay."""
    return _FOLDED.get(name.casefold(), name)


#: The most months a series stack reaches back (Presto reads up to 24 timesteps).
MAX_MONTHS_BEFORE = 23
#: Sensors whose bands a series stack may hold for earlier months.
SERIES_SENSORS: tuple[Sensor, ...] = ("S2", "S1")


def earlier_name(band: str, months_before: int) -> str:
    """The name of ``band`` composited ``months_before`` months earlier: ``B4_m2``."""
    return canonical_band(band) if months_before == 0 else \
        f"{canonical_band(band)}_m{months_before}"


def series_bands(bands: Sequence[str], months: int) -> tuple[str, ...]:
    """A series stack's bands: ``bands`` of the month, then of each earlier month in turn.

    ``series_bands(["B4", "B8"], 3)`` is ``B4, B8, B4_m1, B8_m1, B4_m2, B8_m2``: the month's
    own bands come first, so the stack's first bands are those of a one-month stack.
    """
    if not 1 <= months <= MAX_MONTHS_BEFORE + 1:
        raise ConfigError(f"a series holds 1 to {MAX_MONTHS_BEFORE + 1} months, not {months}")
    return tuple(earlier_name(b, k) for k in range(months) for b in bands)


def stack_series_bands(bands: Sequence[str], months: int) -> tuple[str, ...]:
    """The bands of a series stack that an export of ``bands`` with ``months`` months writes.

    The month's own ``bands`` first, in their order, then the Sentinel-1/2 bands among them
    of each earlier month (:func:`series_bands` when every band is a Sentinel band): quality,
    embedding and product bands are the month's own only.
    """
    own = tuple(canonical_band(b) for b in bands)
    sentinel = [b for b in own if get_band(b).sensor in SERIES_SENSORS]
    series = series_bands(sentinel, months)  # refuses a months count out of range
    if months > 1 and not sentinel:
        raise ConfigError(f"a series of {months} months repeats Sentinel-1/2 bands, and "
                          f"{', '.join(own)} holds none; add one or export one month")
    return own + series[len(sentinel):]


def series_months(bands: Iterable[str]) -> int:
    """How many months a stack of ``bands`` holds: 1 + the most ``months_before`` of a band."""
    return 1 + max((get_band(b).months_before for b in bands), default=0)


def own_month(bands: Sequence[str]) -> tuple[int, ...]:
    """Indices of the bands of the stack's own month (``months_before == 0``), in order.

    A name no band has (an imported patch's ``B1``) counts as the month's own.
    """
    return tuple(i for i, b in enumerate(bands)
                 if (spec := find_band(b)) is None or spec.months_before == 0)


def check_own_month(bands: Sequence[str], given: str = "the bands") -> None:
    """Refuse a band list of earlier months only (``B4_m1`` without ``B4``), in one line.

    Its :func:`own_month` is empty, so nothing would judge a pixel nodata (the valid
    fraction, the label mask and every map's nodata read the month's own bands).

    Raises:
        ConfigError: ``bands`` is not empty and holds no band of the month's own.
    """
    if bands and not own_month(bands):
        bases = ",".join(dict.fromkeys(s.base for b in bands if (s := find_band(b))))
        raise ConfigError(f"{given} {','.join(bands)} hold only earlier months' bands (_mK); "
                          f"a series stack is judged by its month's own bands: add them "
                          f"(e.g. {bases})")


def bad_earlier_name(name: str) -> str | None:
    """Why ``name`` looks like a band of an earlier month but is none, else None.

    A ``<registered band>_m<digits>`` name :func:`get_band` does not know (``B2_m24``,
    ``B2_m0``, ``B2_m01``, ``s2_clear_count_m1``) would be read as a channel of its own, and
    a series model would silently get one month fewer.
    """
    key = canonical_band(name)
    base, sep, k = key.rpartition("_m")
    spec = REGISTRY.get(canonical_band(base)) if sep and k.isdigit() else None
    if spec is None or key in REGISTRY or _earlier_band(key) is not None:
        return None
    b = spec.name
    return f"band {name} names {b} of an earlier month, " + (
        f"but a series reaches 1 to {MAX_MONTHS_BEFORE} months back ({b}_m1 to "
        f"{b}_m{MAX_MONTHS_BEFORE}; {b} itself is the stack's own month)"
        if spec.sensor in SERIES_SENSORS else "which only Sentinel-1/2 bands have")


def series_gap(bands: Sequence[str], add: str = "add the month before ({}) too",
               drop: str = "leave out {}") -> str | None:
    """Why ``bands`` skip a month (``B2_m2`` without ``B2_m1``), naming what to add or drop.

    A band ``k`` months before needs the same band ``k - 1`` months before, down to ``_m1``
    (a series's timesteps are consecutive months); ``add`` and ``drop`` word the fix.
    """
    months: dict[str, set[int]] = {}
    for spec in (s for b in bands if (s := find_band(b)) is not None and s.months_before):
        months.setdefault(spec.base, set()).add(spec.months_before)
    lacking: list[str] = []
    after: list[str] = []
    for base, ks in months.items():
        if skipped := [k for k in range(1, max(ks)) if k not in ks]:
            lacking += [earlier_name(base, k) for k in skipped]
            after += [earlier_name(base, k) for k in sorted(ks) if k > skipped[0]]
    return (f"{', '.join(after)} without {', '.join(lacking)}: a series cannot skip a month; "
            f"{add.format(', '.join(lacking))}, or {drop.format(', '.join(after))}"
            if lacking else None)


def check_series_bands(bands: Sequence[str], given: str = "the bands",
                       add: str = "add the month before ({}) too",
                       drop: str = "leave out {}") -> None:
    """Refuse a band list no series stack has, in one line.

    A name like an earlier month's that is none (:func:`bad_earlier_name`), earlier months'
    bands only (:func:`check_own_month`), or a skipped month (:func:`series_gap`, its fix
    worded by ``add`` and ``drop``); raises :class:`ConfigError` on the first.
    """
    if bad := next((why for b in bands if (why := bad_earlier_name(b))), None):
        raise ConfigError(f"{given}: {bad}; name each band of an earlier month <band>_m<k>, "
                          f"k from 1 to {MAX_MONTHS_BEFORE}")
    check_own_month(bands, given)
    if gap := series_gap(bands, add, drop):
        raise ConfigError(f"{given} hold {gap}")


def series_record(bands: Iterable[str]) -> dict[str, int]:
    """What a dataset's recipe records of its series: ``series_months`` when above 1.

    A one-month dataset records nothing, so its recipe is as it was before series stacks.
    """
    n = series_months(bands)
    return {"series_months": n} if n > 1 else {}


def _earlier_band(key: str) -> BandSpec | None:
    """The spec of ``B4_m2``-style names (an earlier month of a registry band), else None."""
    base, sep, k = key.rpartition("_m")
    if not sep or not k.isdigit() or str(int(k)) != k:
        return None
    spec = REGISTRY.get(canonical_band(base))
    if spec is None or spec.sensor not in SERIES_SENSORS \
            or not 1 <= int(k) <= MAX_MONTHS_BEFORE:
        return None
    return replace(spec, name=f"{spec.name}_m{k}", months_before=int(k),
                   description=f"{spec.description}; {k} month(s) before the stack's month")


def get_band(name: str) -> BandSpec:
    """Look up a band by name (Sentinel-2 zero-padded names such as ``B02`` are accepted).

    ``B4_m2`` is band B4 of the month two months before the stack's own (a series stack,
    :func:`series_bands`), for Sentinel-2 and Sentinel-1 bands, 1 to
    :data:`MAX_MONTHS_BEFORE` months back.
    """
    key = canonical_band(name)
    try:
        return REGISTRY[key]
    except KeyError:
        earlier = _earlier_band(key)
        if earlier is not None:
            return earlier
        known = [b for b in REGISTRY if b not in EMBEDDING]
        raise UnknownBandError(
            f"unknown band {name!r}; known bands: {', '.join(known)}, "
            f"{EMBEDDING[0]}..{EMBEDDING[-1]} ({EMBEDDING_ALIAS}), and B4_m1-style names "
            f"for a Sentinel band 1 to {MAX_MONTHS_BEFORE} months earlier"
        ) from None


def find_band(name: str) -> BandSpec | None:
    """:func:`get_band`, or None for a name no band has (``B4_m2`` is B4 two months before)."""
    try:
        return get_band(name)
    except UnknownBandError:
        return None


def months_of(names: Iterable[str]) -> dict[int, dict[str, str]]:
    """A series stack's band names by month: ``months_before`` -> {base name: name}.

    Rules that relate bands (red against NIR, band order) judge the bands of one month
    together, by their base names; unknown names are left out.
    """
    months: dict[int, dict[str, str]] = {}
    for name in names:
        spec = find_band(name)
        if spec is not None:
            months.setdefault(spec.months_before, {})[spec.base] = name
    return months


def is_code_band(name: str) -> bool:
    """Whether band ``name`` holds class codes (:attr:`BandSpec.is_codes`); False if unknown."""
    return (spec := find_band(name)) is not None and spec.is_codes


def _repeated(names: Sequence[str]) -> str | None:
    """The first name given twice in ``names``, else None."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def resolve(names: Iterable[str]) -> tuple[BandSpec, ...]:
    """Specs for a list of names, in order, rejecting duplicates (``aef`` and ``A00`` too)."""
    specs = tuple(get_band(n) for n in names)
    twice = _repeated([spec.name for spec in specs])
    if twice is not None:
        raise UnknownBandError(f"band {twice!r} is listed twice")
    return specs


def band_list(value: str | Iterable[str], flag: str = "--bands") -> tuple[str, ...]:
    """The one reader of a band list as given (``B2,B3,B4`` or its names), order kept.

    Names are stripped and empty ones dropped; they are not looked up (a file's own band names
    may be any), :func:`parse_band_list` does that for the registry's bands.

    Raises:
        ConfigError: a band named twice (a model would read one band as two inputs).
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(n).strip() for n in items if str(n).strip())
    twice = _repeated(names)
    if twice is not None:
        raise ConfigError(f"{flag} {','.join(names)} names {twice} twice; give each band once")
    return names


def parse_band_list(text: str) -> tuple[str, ...]:
    """Parse a comma-separated CLI value such as ``B2,B3,B4,B8,VV,VH`` (``aef``: A00 .. A63)."""
    names: list[str] = []
    for name in band_list(text):
        names.extend(EMBEDDING if name.lower() == EMBEDDING_ALIAS else (name,))
    return tuple(s.name for s in resolve(names))


@overload
def check_fine_scale(scale: int | None, *, required: Literal[True]) -> int: ...


@overload
def check_fine_scale(scale: int | None, *, required: bool = False) -> int | None: ...


def check_fine_scale(scale: int | None, *, required: bool = False) -> int | None:
    """Return ``scale`` if it is one of :data:`FINE_SCALES` (or None when not ``required``).

    The one validator of fine-grid factors (dataset, local stack, super-resolution data and
    models): the same values are refused everywhere with the same error and message.

    Raises:
        ConfigError: an unsupported factor, or None where a factor is required.
    """
    if scale is None and not required:
        return None
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in FINE_SCALES:
        raise ConfigError(f"fine scale {scale!r} is not supported; use one of "
                          f"{', '.join(map(str, FINE_SCALES))} (e.g. --fine-scale 10)")
    return scale
