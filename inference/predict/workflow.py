"""Model file + stack -> COGs, quick-looks and area statistics: the chain CLI and demo share.

Everything cheap is checked before the model is loaded and the first tile is predicted: the
month, the COG writer named in the environment, that the input exists and can be read to its
last pixel, that the zones file is valid polygons in a known CRS; a mistake in any of them
costs a second, not a whole prediction.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.bands import is_code_band
from core.errors import InputDataError, ModelError
from core.months import check_month
from core.shareable import shareable_path
from core.storage import files
from core.storage.gdal_auth import gdal_env
from inference.cog import maps
from inference.cog.maps import OutputInfo
from inference.cog.stream import cog_writer
from inference.predict import scene as scene_normalisation
from inference.predict import stats
from inference.predict.blending import check_window
from inference.predict.change import DEFAULT_CHANGE_MARGIN, DEFAULT_SPECTRAL_THRESHOLD
from inference.predict.expected_inputs import check_input
from inference.predict.keep_inputs import check_input_product, check_product, settle
from inference.predict.postprocess import check_postprocess
from inference.predict.raster import PredictConfig, PredictionResult, predict_raster
from inference.predict.runtime import RuntimeOptions, TilePredictor
from inference.predict.scene import scene_statistics
from inference.predict.sources import RasterSource, probe_input
from inference.predict.spectral_stacks import SpectralStacks, spectral_stacks
from inference.predict.vectors import VectorOptions, check_vector_extra, write_vectors

if TYPE_CHECKING:
    from training.data import NormStats
    from training.modelfile import LoadedModel, ModelMeta

log = logging.getLogger(__name__)

ISA_NAMES = ("impervious", "isa", "built", "built-up", "urban")


@dataclass(frozen=True)
class Outputs:
    """Every file one prediction produced (local paths or gs:// URIs)."""

    prediction: PredictionResult
    class_png: Path
    prob_png: Path
    area_json: Path
    area_csv: Path
    area_table: str
    change_cog: str | None = None
    change_json: Path | None = None
    #: how the change map was decided: margin, rule, the later date's normalisation
    change_record: dict[str, Any] | None = None
    #: why an input the value rules doubted was mapped (also in the COGs' ``input_notes`` tag)
    input_notes: tuple[str, ...] = ()
    #: the built-up polygons (GeoPackage, GeoParquet) with ``--vectors``
    vectors: tuple[Path, ...] = ()

    def paths(self) -> dict[str, str]:
        out = {"class_cog": self.prediction.class_path, "prob_cog": self.prediction.prob_path,
               "class_png": str(self.class_png), "prob_png": str(self.prob_png),
               "area_json": str(self.area_json), "area_csv": str(self.area_csv)}
        if self.change_cog:
            out["change_cog"] = self.change_cog
            out["change_json"] = str(self.change_json)
        for path in self.vectors:
            out[f"vectors_{path.suffix.lstrip('.')}"] = str(path)
        return out


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


def normalised_source(stack: str, reference: str, bands: Sequence[str],
                      band_order: Sequence[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """``stack`` read normalised onto ``reference`` per band (the model's ``bands``), and the fit.

    The fit (:func:`inference.predict.change.fit_relative_normalisation`) uses a decimated
    sample of both stacks, which must be on one grid with the same band names. Code bands
    (the coarse product's ``product``) are class codes, not radiances: read as they are.

    Raises:
        InputDataError: the stacks are not on one grid or ``reference`` lacks a band.
    """
    from inference.predict.change import fit_relative_normalisation
    from inference.predict.sources import SAMPLE_SIDE, LinearSource, decimated_read, select_bands

    with files.open_raster(stack) as a, files.open_raster(reference) as b:
        if (a.shape, a.transform, a.crs) != (b.shape, b.transform, b.crs):
            raise InputDataError(f"--normalise-to {reference} is not on the grid of --input "
                                 f"{stack} (size, origin or CRS); give the earlier date's "
                                 "stack on the same grid")
        bands = [name for name in bands if not is_code_band(name)]  # codes are not radiances
        mine = select_bands(a.descriptions, bands, band_order)
        theirs = select_bands(b.descriptions, bands, band_order)
        fit = fit_relative_normalisation(decimated_read(a, mine, SAMPLE_SIDE),
                                         decimated_read(b, theirs, SAMPLE_SIDE))
    per_band = {index: (g, o) for index, g, o in zip(mine, fit.gain, fit.offset, strict=True)}
    record = {"normalised_to": reference, "bands": list(bands), **fit.to_dict()}
    return LinearSource(stack, per_band, identity=f"{stack}#normalised:{fit.to_dict()}"), record


def isa_class_index(class_names: tuple[str, ...], explicit: int | None = None) -> int:
    """Index of the impervious class: explicit, else by name, else 1 of a binary scheme."""
    if explicit is not None:
        if not 0 <= explicit < len(class_names):
            raise ModelError(f"--isa-class {explicit} is not one of the model's "
                             f"{len(class_names)} classes {class_names}")
        return explicit
    for i, name in enumerate(class_names):
        if name.lower() in ISA_NAMES:
            return i
    if len(class_names) == 2:
        return 1
    raise ModelError(f"cannot tell which of {class_names} is impervious; pass --isa-class")


def predict_with_model_file(
    model_file: str | os.PathLike | LoadedModel, stack: str | RasterSource, out_prefix: str, *,
    month: str | None = None,
    config: PredictConfig | None = None, options: RuntimeOptions | None = None,
    isa_class: int | None = None, zones: str | os.PathLike | dict | None = None,
    compare_with: str | None = None, local_dir: str | os.PathLike | None = None,
    work_dir: str | None = None, restart: bool = False, progress: bool = True,
    band_order: Sequence[str] | None = None, allow_implausible: bool = False,
    change_margin: float = DEFAULT_CHANGE_MARGIN, normalise_to: str | None = None,
    earlier_stack: str | None = None,
    spectral_threshold: float = DEFAULT_SPECTRAL_THRESHOLD,
    scene: NormStats | None = None,
    vectors: VectorOptions | None = None,
    zones_name: str | None = None,
) -> Outputs:
    """Predict ``stack`` with a model file, then write quick-looks and area statistics.

    Args:
        model_file: a file written by ``training.modelfile.save_model_file``, or one already
            read (:func:`training.modelfile.load_model`: a run of many dates reads it once).
        stack: the input stack (GeoTIFF/VRT, local or gs://) with named bands, or an open
            :class:`inference.predict.sources.RasterSource` (tiles fetched on demand).
        out_prefix: COG prefix (``<prefix>_class.tif``, ``<prefix>_prob.tif``).
        month: ``YYYY-MM`` recorded in the COGs and used for the asset's time range.
        config: tiling and output options.
        options: device, precision, memory format, compilation.
        isa_class: index of the impervious class (default: found by class name).
        zones: GeoJSON of polygons for the area table (default: the whole raster).
        compare_with: class COG of an earlier date on the same grid: adds a change map.
        local_dir: where PNGs and tables go (default: beside a local prefix, else ``.``).
        work_dir: checkpoint folder (see :func:`inference.predict.raster.predict_raster`).
        restart: discard strips of a different earlier run.
        progress: show tqdm bars.
        band_order: the stack's band names in file order when it has no band descriptions.
        allow_implausible: map an input the heuristic value rules doubt, with a warning
            (:func:`inference.predict.expected_inputs.check_physics`).
        change_margin: with ``compare_with``, change is decided on both dates' probabilities
            with this margin (:func:`inference.predict.change.margin_change`; the earlier
            ``<prefix>_prob.tif`` must lie beside its class COG); 0: the class maps differenced.
        normalise_to: the earlier date's stack (same grid): ``stack`` is normalised onto it
            per band before predicting (:func:`normalised_source`); the fit is recorded.
        earlier_stack: with ``compare_with``, the earlier date's stack (on the output grid,
            as ``stack``): change is decided by the spectral rule instead of ``change_margin``
            (:mod:`inference.predict.spectral_stacks`); its fit is recorded.
        spectral_threshold: the spectral rule's threshold (robust z-score, > 0).
        scene: the input's band statistics a scene-normalised model maps with, computed
            elsewhere (tiles fetched from Earth Engine: :mod:`inference.mapping.ee_statistics`);
            None: from a decimated sample of ``stack`` (:func:`scene_statistics`). Any other
            model ignores them.
        vectors: also write the built-up polygons (:mod:`inference.predict.vectors`).
        zones_name: the zones' property that names them (default: :func:`stats.zone_name`).
    """
    from training.modelfile import LoadedModel, load_model

    if month is not None:
        check_month(month)
    cog_writer()  # a misspelt ISAMAP_COG_WRITER fails before the model loads
    check_vector_extra(vectors)  # a missing extra fails before the model loads
    crs = probe_input(stack) if isinstance(stack, str) else stack.crs  # a source is open
    stats.load_zones(zones, crs, zones_name)  # a bad zones file fails before any tile
    if config is not None and config.postprocess == "keep" and config.keep is not None:
        check_product(config.keep.product)  # before the model loads
    loaded = model_file if isinstance(model_file, LoadedModel) else load_model(model_file)
    model, meta = loaded.module, loaded.meta
    config = config or PredictConfig()
    check_postprocess(config.postprocess, meta.class_scheme, tuple(meta.class_names),
                      config.force_postprocess, tuple(meta.bands))
    if config.postprocess == "keep" and config.keep is not None:
        check_input_product(config.keep, meta)
    if not config.any_tile:
        check_window(meta.window, config.tile, meta.name)
    # pixel size and values, before the first tile
    facts = check_input(stack, meta, band_order, allow_implausible=allow_implausible)
    if not 0 <= change_margin < 0.5:
        raise InputDataError(f"--change-margin must be in [0, 0.5), got {change_margin}")
    earlier_prob = spectral = None
    if earlier_stack and not compare_with:
        raise InputDataError("--earlier-stack decides a change map: give --compare-with "
                             "EARLIER_class.tif too")
    if compare_with:
        grid = _check_compare_with(compare_with, stack, meta)
        if earlier_stack:
            if not isinstance(stack, str):
                raise InputDataError("--earlier-stack needs the input as a stack file")
            spectral = spectral_stacks(earlier_stack, stack, meta.bands, *grid,
                                       band_order=band_order, threshold=spectral_threshold)
            earlier_prob = earlier_probability(compare_with, spectral=True)
        elif change_margin > 0:
            earlier_prob = earlier_probability(compare_with)
    record: dict[str, Any] = {}
    if normalise_to:
        if not isinstance(stack, str):
            raise InputDataError("--normalise-to needs the input as a stack file")
        stack, record["normalisation"] = normalised_source(stack, normalise_to, meta.bands,
                                                           band_order)
    if meta.norm != "scene":
        scene = None
    elif scene is None:
        scene = scene_statistics(stack, meta.bands, band_order)
    if config.postprocess == "keep" and config.keep is not None:  # the cut, before any tile
        config = replace(config, keep=settle(config.keep, meta, stack, band_order))
    index = isa_class_index(tuple(meta.class_names), isa_class)
    if config.isa_class != index:
        config = PredictConfig(**{**config.__dict__, "isa_class": index})
    from inference.predict.calibration import model_file_patches

    # int8 that cannot run here is refused by the predictor, before any patch is read
    predictor = TilePredictor.for_model(model, meta, scene, options=options,
                                        int8_patches=lambda: model_file_patches(meta),
                                        isa_class=index)
    if spectral is not None:  # a scene with no common valid pixel fails before any tile
        spectral = spectral.fitted()
    info = model_output_info(meta, month, scene)
    shown = {k: v for k, v in facts.to_dict().items() if k != "notes"}
    info = replace(info, input_facts=json.dumps(shown) if shown else "",
                   # why a doubted input was mapped: in every COG's tags and the report
                   input_notes=json.dumps(list(facts.notes)) if facts.notes else "")
    result = predict_raster(stack, out_prefix, predictor, info, config, work_dir=work_dir,
                            model_id=loaded.file_id, restart=restart, progress=progress,
                            band_order=band_order)
    try:
        outputs = finish_outputs(result, out_prefix, index, zones=zones,
                                 compare_with=compare_with, local_dir=local_dir,
                                 change_margin=change_margin, earlier_prob=earlier_prob,
                                 record=record, spectral=spectral, vectors=vectors,
                                 zones_name=zones_name)
        return replace(outputs, input_notes=facts.notes)
    finally:
        close = getattr(stack, "close", None)
        if normalise_to and callable(close):
            close()


def model_output_info(meta: ModelMeta, month: str | None,
                      scene: NormStats | None = None) -> OutputInfo:
    """What a map's outputs record about the model file ``meta`` describes.

    Its name, bands, classes, numeric metrics, how its probabilities are calibrated and,
    for a scene-normalised model, the input statistics the map was normalised by.
    """
    from training.calibration import describe

    metrics = {k: float(v) for k, v in dict(meta.metrics).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return OutputInfo(meta.name, tuple(meta.bands), tuple(meta.class_names), month,
                      metrics=metrics, calibration=describe(meta.calibration),
                      normalisation=scene_normalisation.describe(scene) if scene else "")


def _check_compare_with(compare_with: str, stack: str | RasterSource,
                        meta: ModelMeta) -> tuple[tuple[int, int], Any, Any]:
    """The earlier class map must hold this model's classes on the output grid.

    Returns the output grid: ``(rows, cols)``, geotransform, CRS.
    """
    from affine import Affine

    from inference.predict.sources import open_source

    scale = int(meta.output_scale)
    with open_source(stack) as src:
        size = (src.height * scale, src.width * scale)
        transform, crs = src.transform * Affine.scale(1.0 / scale), src.crs
    stats.check_class_map(compare_with, tuple(meta.class_names), size, transform, crs)
    return size, transform, crs


def finish_outputs(result: PredictionResult, out_prefix: str, index: int, *,
                   zones: str | os.PathLike | dict | None = None,
                   compare_with: str | None = None,
                   local_dir: str | os.PathLike | None = None,
                   change_margin: float = 0.0, earlier_prob: str | None = None,
                   record: dict[str, Any] | None = None,
                   spectral: SpectralStacks | None = None,
                   vectors: VectorOptions | None = None,
                   zones_name: str | None = None) -> Outputs:
    """Quick-looks, area table, optional change map and polygons of a prediction's COGs.

    The change map (with ``compare_with``) is decided by the spectral rule with ``spectral``
    (``earlier_prob`` and this prediction's probabilities), else with ``change_margin`` on
    ``earlier_prob`` and this prediction's probabilities, else by differencing the class maps.

    Shared by the streaming prediction above and the tile-parallel Beam pipeline
    (:mod:`inference.mapping.beam_map`), whose COGs come from a mosaic of tiles.
    """
    zone_list = stats.load_zones(zones, result.crs, zones_name)
    name = out_prefix.rstrip("/").rsplit("/", 1)[-1]
    local = Path(local_dir) if local_dir else (
        Path.cwd() if files.is_gcs(out_prefix) else Path(out_prefix).parent)
    with gdal_env(result.class_path, result.prob_path):
        class_png = maps.quicklook(files.gdal_path(result.class_path),
                                  local / f"{name}_class.png", "class")
        prob_png = maps.quicklook(files.gdal_path(result.prob_path),
                                 local / f"{name}_prob.png", "probability")
    rows = stats.isa_area(result.class_path, zone_list, result.prob_path, isa_class=index)
    for row in rows:
        if row.isa_fraction is None:
            log.warning("zone %r has no valid pixel of the map (outside it, or all nodata); "
                        "its row says no data", row.zone)
    area_json, area_csv = local / f"{name}_area.json", local / f"{name}_area.csv"
    table = stats.write_table(rows, area_json, area_csv)
    change_cog = change_json = change_record = None
    if compare_with:
        change_cog = f"{out_prefix}_change.tif"
        here = out_prefix.rsplit("/", 1)[0] if "/" in out_prefix else "."
        record = {k: ({**v, "normalised_to": shareable_path(v["normalised_to"], here)}
                      if k == "normalisation" else v) for k, v in (record or {}).items()}
        change_record = {"change_margin": change_margin if earlier_prob else 0.0, **record}
        tags = {k: json.dumps(v) for k, v in record.items()}
        classes = (compare_with, result.class_path)  # what both tables call impervious
        if spectral is not None and earlier_prob:  # the stacks decide whether, p which way
            spectral = spectral.fitted()
            change_record = {**spectral.record(here), **record}
            stats.change_map(earlier_prob, result.prob_path, change_cog, isa_class=index,
                             spectral=spectral, tags=tags, classes=classes)
        elif earlier_prob:  # both dates' probabilities with the margin
            stats.change_map(earlier_prob, result.prob_path, change_cog, isa_class=index,
                             margin=change_margin, tags=tags, classes=classes)
        else:
            stats.change_map(compare_with, result.class_path, change_cog, isa_class=index,
                             tags=tags)
        change_json = local / f"{name}_change_area.json"
        change_rows = stats.change_area(change_cog, zone_list, classes, index)
        table += "\n\nISA change since " + compare_with + "\n" + stats.write_table(
            change_rows, change_json, change_json.with_suffix(".csv"))
    written: tuple[Path, ...] = ()
    if vectors is not None:
        written = write_vectors(result.class_path, result.prob_path, index,
                                local / f"{name}_builtup", vectors).paths
    return Outputs(result, class_png, prob_png, area_json, area_csv, table, change_cog,
                   change_json, change_record, vectors=written)


def describe(outputs: Outputs) -> dict[str, Any]:
    r = outputs.prediction
    return {"tiles": r.tiles, "seconds": round(r.seconds, 2), "skipped": r.skipped,
            "resumed_strips": r.resumed_strips, "area_km2": round(r.area_km2, 3),
            **outputs.paths(),
            **({"change": outputs.change_record} if outputs.change_record else {}),
            **({"input_notes": list(outputs.input_notes)} if outputs.input_notes else {})}
