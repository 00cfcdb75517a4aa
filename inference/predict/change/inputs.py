"""What a prediction with a change map needs of the earlier date, checked before the model runs.

The earlier class map must hold the model's classes on the output grid
(:func:`check_compare_with`); a margin or the spectral rule reads the earlier date's
probability COG beside it (:func:`earlier_probability`); the spectral rule reads both dates'
stacks (:mod:`inference.predict.change.spectral`); ``--normalise-to`` reads the input
normalised onto the earlier date's stack (:func:`normalised_source`, read through
:class:`LinearSource`). Either earlier stack is checked as the input is
(:func:`inference.predict.expected_inputs.check_input`).
:func:`change_inputs` gathers them for a :class:`inference.predict.job.PredictChange`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine

from contract.bands import is_code_band
from contract.stack import recorded_month
from core.errors import InputDataError
from core.storage import files
from inference.cog import maps
from inference.predict.change.arrays import fit_relative_normalisation
from inference.predict.change.spectral import SpectralStacks, spectral_stacks
from inference.predict.expected_inputs import check_input
from inference.predict.job import PredictChange, PredictInput
from inference.predict.sources import (
    SAMPLE_SIDE,
    MaskedFileSource,
    RasterSource,
    decimated_read,
    input_path,
    open_source,
    select_bands,
)

if TYPE_CHECKING:
    from training.modelfile import ModelMeta


@dataclass(frozen=True)
class ChangeInputs:
    """How a job's change map is decided: the earlier probability COG and the spectral rule.

    Both None: the class maps are differenced (or no change map is made). ``notes``: what
    the check of an earlier stack records (its level, its backscatter, why a doubted one
    was read), for the maps' tags and report.
    """

    earlier_prob: str | None = None
    spectral: SpectralStacks | None = None
    notes: tuple[str, ...] = ()


def change_inputs(change: PredictChange, given: PredictInput, stack: RasterSource,
                  meta: ModelMeta, known: Sequence[str] = ()) -> ChangeInputs:
    """The inputs of the change map ``change`` asks for, checked against the opened input.

    ``given``: the input (its month, band order, and whether a doubted stack is mapped);
    ``stack``: it opened. ``known``: the notes the input's own check recorded; an earlier
    stack's note that says the same is not recorded twice.

    Raises:
        InputDataError: the earlier map is not on the output grid or lacks the model's
            classes, or a file the rule reads is missing.
    """
    notes = _checked(change.normalise_to, "--normalise-to", given, meta, known) \
        if change.normalise_to else ()
    if not change.compare_with:
        return ChangeInputs(notes=notes)
    grid = check_compare_with(change.compare_with, stack, meta)
    check_date_order(change, given.month)
    if change.earlier_stack:
        path = input_path(stack)
        if path is None:
            raise InputDataError("--earlier-stack needs the input as a stack file")
        spectral = spectral_stacks(change.earlier_stack, path, meta.bands, *grid,
                                   band_order=given.band_order,
                                   threshold=change.spectral_threshold)
        if not change.normalise_to or _local(change.earlier_stack) != _local(
                change.normalise_to):
            notes += _checked(change.earlier_stack, "--earlier-stack", given, meta, known)
        return ChangeInputs(earlier_probability(change.compare_with, spectral=True), spectral,
                            notes)
    if change.margin > 0:
        return ChangeInputs(earlier_probability(change.compare_with), notes=notes)
    return ChangeInputs(notes=notes)


def check_date_order(change: PredictChange, month: str | None) -> None:
    """Refuse an earlier date recorded as later than this one: gain and loss would swap.

    This date's ``month`` is the input's (``--month``, else its stack's); the earlier one is
    what ``--earlier-stack`` records, else the ``--compare-with`` map's. Either unknown: no
    check.

    Raises:
        InputDataError: the earlier date is later than this one.
    """
    if not month:
        return
    earlier, flag = None, "--compare-with"
    if change.earlier_stack:
        with files.open_raster(change.earlier_stack) as ds:
            earlier, flag = recorded_month(ds.tags()), "--earlier-stack"
    if earlier is None and change.compare_with:
        with files.open_raster(change.compare_with) as ds:
            earlier = recorded_month(ds.tags(), "month")  # a map's tag; not YYYY-MM: unknown
    if earlier is not None and earlier > month:
        raise InputDataError(f"{flag} is of {earlier}, later than this date ({month}): a "
                             "change map runs from the earlier date to the later one, so "
                             "predict the later stack and compare it with the earlier map")


def _local(path: str) -> str:
    """``path`` as one file is named once: absolute where it is local."""
    return path if files.is_gcs(path) else os.path.abspath(path)


def _checked(path: str, flag: str, given: PredictInput, meta: ModelMeta,
             known: Sequence[str] = ()) -> tuple[str, ...]:
    """An earlier date's stack checked as the input is (units, level, backscatter); its notes.

    Each note is prefixed with ``flag``; one ``known`` holds already (the input's) is left out.

    The spectral rule differences its bands from the input's pixel by pixel, and
    ``--normalise-to`` maps the input onto its radiometry: a stack in other units or of
    another level would change every pixel, or hand the model values it never saw.
    """
    facts = check_input(path, meta, given.band_order, flag=flag,
                        allow_implausible=given.allow_implausible)
    return tuple(f"{flag}: {note}" for note in facts.notes if note not in known)


def earlier_probability(compare_with: str, spectral: bool = False) -> str:
    """The probability COG isamap-predict wrote beside the earlier class COG ``compare_with``.

    ``spectral``: the spectral rule needs it (else a change margin); the messages say so.

    Raises:
        InputDataError: ``compare_with`` is not named ``<prefix>_class.tif``, or the
            ``<prefix>_prob.tif`` beside it does not exist.
    """
    rule = "the spectral change rule" if spectral else "a change margin"
    instead = ("drop --earlier-stack and pass --change-margin 0" if spectral
               else "pass --change-margin 0")
    if not compare_with.endswith("_class.tif"):
        raise InputDataError(f"--compare-with {compare_with} is not named <prefix>_class.tif; "
                             f"{rule} needs the earlier date's <prefix>_prob.tif beside it (or "
                             f"{instead} to difference the class maps)")
    prob = compare_with[:-len("_class.tif")] + "_prob.tif"
    if not files.exists(prob):
        raise InputDataError(f"{prob} does not exist: {rule} decides change on both dates' "
                             "probabilities, so the earlier date's probability COG must be "
                             f"beside --compare-with (or {instead} to difference the class "
                             "maps)")
    return prob


def check_compare_with(compare_with: str, stack: str | RasterSource,
                       meta: ModelMeta) -> tuple[tuple[int, int], Any, Any]:
    """The earlier class map must hold this model's classes on the output grid.

    Returns the output grid: ``(rows, cols)``, geotransform, CRS.
    """
    scale = int(meta.output_scale)
    with open_source(stack) as src:
        size = (src.height * scale, src.width * scale)
        transform, crs = src.transform @ Affine.scale(1.0 / scale), src.crs
    check_class_map(compare_with, tuple(meta.class_names), size, transform, crs)
    return size, transform, crs


class LinearSource(MaskedFileSource):
    """A raster read with a per-band linear map applied: ``value * gain + offset``.

    What predicts a later date normalised onto an earlier one
    (:func:`inference.predict.change.arrays.fit_relative_normalisation`). ``maps`` holds
    ``{band index (1-based): (gain, offset)}``; bands not named are read as they are. NaN
    (nodata) stays NaN. Its content is keyed by ``identity`` (the stack and the fit), never
    by the stack's own fingerprint: the normalised bands are other values.
    """

    def __init__(self, path: str, maps: dict[int, tuple[float, float]], identity: str) -> None:
        super().__init__(path, identity=identity)
        self.content, self.maps = identity, dict(maps)

    def read(self, indexes: Sequence[int], window: Any = None, out_dtype: str = "float32",
             out: np.ndarray | None = None,
             out_shape: tuple[int, ...] | None = None) -> np.ndarray:
        return self._mapped(super().read(indexes, window, out_dtype, out, out_shape), indexes)

    def sample(self, indexes: Sequence[int], max_side: int) -> np.ndarray:
        return self._mapped(super().sample(indexes, max_side), indexes)

    def _mapped(self, data: np.ndarray, indexes: Sequence[int]) -> np.ndarray:
        """``data`` (bands ``indexes``, float32) with the mapped bands' gain and offset applied.

        In place, as two rounded float32 operations (``data * gain + offset``).
        """
        for k, index in enumerate(indexes):
            if index in self.maps:
                gain, offset = self.maps[index]
                data[k] *= np.float32(gain)
                data[k] += np.float32(offset)
        return data


def normalised_source(stack: str | RasterSource, reference: str, bands: Sequence[str],
                      band_order: Sequence[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """``stack`` read normalised onto ``reference`` per band (the model's ``bands``), and the fit.

    ``stack``: a stack file, or the same opened once for the run
    (:class:`inference.predict.input_stack.InputStack`). The fit
    (:func:`inference.predict.change.arrays.fit_relative_normalisation`) uses a decimated sample of
    both stacks, which must be on one grid with the same band names. Code bands (the coarse
    product's ``product``) are class codes, not radiances: read as they are.

    Raises:
        InputDataError: the stacks are not on one grid or ``reference`` lacks a band.
    """
    path = input_path(stack)
    if path is None:
        raise InputDataError("--normalise-to needs the input as a stack file")
    with open_source(stack) as a, files.open_raster(reference) as b:
        if ((a.height, a.width), a.transform, a.crs) != (b.shape, b.transform, b.crs):
            raise InputDataError(f"--normalise-to {reference} is not on the grid of --input "
                                 f"{path} (size, origin or CRS); give the earlier date's "
                                 "stack on the same grid")
        bands = [name for name in bands if not is_code_band(name)]  # codes are not radiances
        mine = select_bands(a.descriptions, bands, band_order)
        theirs = select_bands(b.descriptions, bands, band_order)
        # an input opened for the run has its sample read once (a dataset's own ``sample``
        # is rasterio's point sampling)
        sample = None if isinstance(stack, str) else getattr(stack, "sample", None)
        fit = fit_relative_normalisation(
            sample(mine, SAMPLE_SIDE) if callable(sample) else decimated_read(a, mine,
                                                                              SAMPLE_SIDE),
            decimated_read(b, theirs, SAMPLE_SIDE))
    per_band = {index: (g, o) for index, g, o in zip(mine, fit.gain, fit.offset, strict=True)}
    record = {"normalised_to": reference, "bands": list(bands), **fit.to_dict()}
    return LinearSource(path, per_band, identity=f"{path}#normalised:{fit.to_dict()}"), record


@contextlib.contextmanager
def prediction_source(change: PredictChange, given: PredictInput, stack: RasterSource,
                      meta: ModelMeta) -> Iterator[tuple[RasterSource, dict[str, Any]]]:
    """What the model reads: ``stack`` (``given`` opened), or it normalised onto the earlier date.

    The earlier date's stack is ``change.normalise_to``. Yields the source and the record the
    change map keeps (``normalisation``: the fit).
    """
    if not change.normalise_to:
        yield stack, {}
        return
    source, record = normalised_source(stack, change.normalise_to, meta.bands,
                                       given.band_order)
    try:
        yield source, {"normalisation": record}
    finally:
        source.close()


def check_class_map(path: str, classes: Sequence[str], size: tuple[int, int],
                    transform: Any, crs: Any, flag: str = "--compare-with") -> None:
    """Refuse a map that cannot be compared with a class map of ``classes`` on this grid.

    A change map counts the pixels whose class is impervious in one map and not in the other:
    a probability COG (values 0-10000) or another model's classes would be read as classes and
    give gains and losses that never happened. Checked before the prediction, not after it.

    Args:
        path: the earlier map (a class COG isamap wrote).
        classes: the class names of the model about to predict.
        size: ``(height, width)`` of the map about to be written.
        transform: its geotransform.
        crs: its CRS.
        flag: how messages name the file.
    """
    given, give = f"{flag} {path}", "the class COG (<out>_class.tif) of an earlier date"
    files.require(flag, path, give)
    try:
        with rasterio.open(files.gdal_path(path)) as src:
            tags, count, dtype = src.tags(), src.count, src.dtypes[0]
            grid = (src.height, src.width), src.transform, src.crs
    except rasterio.errors.RasterioError as exc:
        raise InputDataError(files.raster_refusal(flag, path, exc, give)) from None
    band_id = tags.get("band_id")
    if band_id != maps.BAND_IDS["class"] and (band_id or count != 1 or dtype != "uint8"):
        kind = next((k for k, v in maps.BAND_IDS.items() if v == band_id),
                    f"a {count}-band {dtype} raster")
        raise InputDataError(f"{given} is {'a ' + kind + ' map' if band_id else kind}, not a "
                             "class map; give the <out>_class.tif of the earlier date, not its "
                             "_prob.tif or _change.tif")
    theirs = tags.get("classes")
    if theirs is not None and theirs.split(",") != list(classes):
        raise InputDataError(f"{given} holds the classes {theirs.replace(',', ', ')}, this "
                             f"model predicts {', '.join(classes)}; compare maps of the same "
                             "classes (the same kind of model)")
    if grid[0] != tuple(size) or not grid[1].almost_equals(transform) or grid[2] != crs:
        raise InputDataError(f"{given} is not on the grid of the map about to be made "
                             f"({grid[0][1]} x {grid[0][0]} px there, {size[1]} x {size[0]} "
                             "here, or another origin or CRS); predict both dates from stacks "
                             "on one grid")
    if theirs is None:  # a map without isamap's tags: its pixels tell what it holds
        problem = maps.extra_codes_problem(given, _code_counts(path), classes,
                                           "the <out>_class.tif of the earlier date")
        if problem:
            raise InputDataError(problem)


def _code_counts(path: str) -> np.ndarray:
    """Pixels per code 0-255 of a one-band uint8 raster, read block by block."""
    counts = np.zeros(256, dtype=np.int64)
    with rasterio.open(files.gdal_path(path)) as src:
        for _, window in src.block_windows(1):
            counts += np.bincount(src.read(1, window=window).ravel(), minlength=256)
    return counts
