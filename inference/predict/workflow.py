"""Model file + stack -> COGs, quick-looks and area statistics: the chain CLI and demo share.

:func:`predict` runs one :class:`inference.predict.job.PredictJob`. Everything cheap is checked
before the model is loaded and the first tile is predicted: the month, the COG writer named in
the environment, that the input exists and can be read to its last pixel (it is opened once,
:mod:`inference.predict.input_stack`, and every check and the sliding window read it), that the
zones file is valid polygons in a known CRS, the earlier date's maps and stacks of a change
map; a mistake in any of them costs a second, not a whole prediction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rasterio.transform import array_bounds

from contract.label_schemes import NOT_IMPERVIOUS
from core.errors import ModelError
from core.shareable import shareable_path
from core.storage import files
from core.storage.gdal_auth import gdal_env
from engine import choice as engine_choice
from inference.cog import maps
from inference.cog.maps import OutputInfo, numeric_metrics
from inference.cog.stream import cog_writer
from inference.predict import scene as scene_normalisation
from inference.predict import stats
from inference.predict.blending import check_model_tiles
from inference.predict.calibration import model_file_patches
from inference.predict.change.inputs import ChangeInputs, change_inputs, prediction_source
from inference.predict.change.spectral import SpectralStacks
from inference.predict.config import PredictConfig
from inference.predict.expected_inputs import check_input
from inference.predict.input_stack import open_input
from inference.predict.job import PredictChange, PredictJob, PredictOutputs
from inference.predict.keep.inputs import check_input_product, check_product, settle
from inference.predict.postprocess import check_postprocess
from inference.predict.raster import PredictionResult, predict_raster
from inference.predict.runtime import TilePredictor
from inference.predict.scene import scene_statistics
from inference.predict.sources import RasterSource
from inference.predict.vectors import write_vectors
from inference.predict.zone_cover import check_zones
from training.calibration.temperature import describe as describe_calibration
from training.modelfile import LoadedModel, load_model

if TYPE_CHECKING:
    from contract.input_facts import InputFacts
    from training.data import NormStats
    from training.modelfile import ModelMeta

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


def isa_class_index(class_names: tuple[str, ...], explicit: int | None = None) -> int:
    """Index of the impervious class: explicit, else by name, else 1 of a binary scheme.

    Raises:
        ModelError: ``explicit`` out of range, or naming a class whose recorded name says it
            is not impervious (``pervious``, ``water``...: its area would be reported as ISA).
    """
    if explicit is not None:
        if not 0 <= explicit < len(class_names):
            raise ModelError(f"--isa-class {explicit} is not one of the model's "
                             f"{len(class_names)} classes {class_names}")
        if class_names[explicit].lower() in NOT_IMPERVIOUS:
            named = ", ".join(f"{i} {name}" for i, name in enumerate(class_names))
            try:
                give = f"give --isa-class {isa_class_index(class_names)}, or leave it out"
            except ModelError:
                give = "give the index of its impervious class"
            raise ModelError(f"--isa-class {explicit} is the model's class "
                             f"{class_names[explicit]!r}, which is not impervious (its classes: "
                             f"{named}); {give}")
        return explicit
    for i, name in enumerate(class_names):
        if name.lower() in ISA_NAMES:
            return i
    if len(class_names) == 2:
        return 1
    raise ModelError(f"cannot tell which of {class_names} is impervious; pass --isa-class")


def predict(job: PredictJob) -> Outputs:
    """Predict ``job``'s input with its model file, then write quick-looks and area statistics.

    The input is opened once (:func:`inference.predict.input_stack.open_input`) and read by
    every check, the scene's statistics, the keep rule's cut and the sliding window.
    """
    cog_writer()  # a misspelt ISAMAP_COG_WRITER fails before the input is opened
    out = job.outputs
    with open_input(job.input.stack) as stack:
        job = replace(job, input=job.input.with_stack_month(stack))  # --month, else the stack's
        zones = stats.load_zones(out.zones, stack.crs, out.zones_name)  # a bad file: no tile
        if out.zones is not None:
            check_zones(zones, array_bounds(stack.height, stack.width, stack.transform),
                        stack.crs, "--zones" if isinstance(out.zones, dict)
                        else f"--zones {out.zones}", tell=out.warn_zones)
        if job.config.postprocess == "keep" and job.config.keep is not None:
            check_product(job.config.keep.product)  # before the model loads
        loaded = job.model if isinstance(job.model, LoadedModel) else load_model(job.model)
        check_model(job.config, loaded, job.options.precision if job.options else "auto")
        isa_class_index(tuple(loaded.meta.class_names), job.isa_class)  # before any input read
        return predict_checked(job, stack, loaded)


def predict_checked(job: PredictJob, stack: RasterSource, loaded: LoadedModel) -> Outputs:
    """:func:`predict` of the opened ``stack``, once the model and the outputs are checked.

    ``isamap-map`` checks them once for all its dates
    (:func:`inference.mapping.region.check_map`).
    """
    # pixel size and values, before the first tile
    facts = check_input(stack, loaded.meta, job.input.band_order,
                        allow_implausible=job.input.allow_implausible)
    change = change_inputs(job.change, job.input, stack, loaded.meta, facts.notes)
    facts = replace(facts, notes=(*facts.notes, *change.notes))  # in the tags and report
    with prediction_source(job.change, job.input, stack, loaded.meta) as (source, record):
        result, index, change = _predict_source(job, source, loaded, job.config, facts, change)
    outputs = finish_outputs(result, job.outputs, index, change=job.change, earlier=change,
                             record=record, notes=facts.notes)
    return replace(outputs, input_notes=facts.notes)


def check_model(config: PredictConfig, loaded: LoadedModel, precision: str = "auto",
                override: str | None = "--any-tile") -> None:
    """The tiling, post-processing and precision the model file allows (before any input read).

    ``override``: the flag that maps on another window than the model's, as a refusal names
    it (None: the command has none; ``isamap-map`` maps on the model's own).

    Raises:
        ConfigError: a post-processing the model was not made for, a keep rule reading a
            product band the model does not read, another tile than the model's window, a
            tile its forward cannot take, a batch too large for a scaled model
            (:func:`inference.predict.blending.check_model_tiles`), or ``precision`` int8 of
            a model that cannot be quantized (:func:`engine.choice.check_model`).
    """
    meta = loaded.meta
    engine_choice.check_model(loaded.module, precision)
    check_postprocess(config.postprocess, meta.class_scheme, tuple(meta.class_names),
                      config.force_postprocess, tuple(meta.bands))
    if config.postprocess == "keep" and config.keep is not None:
        check_input_product(config.keep, meta)
    check_model_tiles(loaded.module, meta, config.tile, config.batch_size, override,
                      any_tile=config.any_tile)


def _predict_source(job: PredictJob, source: RasterSource, loaded: LoadedModel,
                    config: PredictConfig, facts: InputFacts, change: ChangeInputs
                    ) -> tuple[PredictionResult, int, ChangeInputs]:
    """The sliding window over ``source`` (the checked input, or it normalised).

    Returns the result, the impervious class's index and the change inputs (the spectral
    rule fitted before the first tile: a scene with no common valid pixel fails at once).
    """
    meta, given = loaded.meta, job.input
    scene = None
    if meta.norm == "scene":
        scene = given.scene if given.scene is not None else scene_statistics(
            source, meta.bands, given.band_order)
    if config.postprocess == "keep" and config.keep is not None:  # the cut, before any tile
        config = replace(config, keep=settle(config.keep, meta, source, given.band_order))
    index = isa_class_index(tuple(meta.class_names), job.isa_class)
    if config.isa_class != index:
        config = replace(config, isa_class=index)
    # int8 that cannot run here is refused by the predictor, before any patch is read
    predictor = TilePredictor.for_model(loaded.module, meta, scene, options=job.options,
                                        int8_patches=lambda: model_file_patches(meta),
                                        isa_class=index)
    if change.spectral is not None:
        change = replace(change, spectral=change.spectral.fitted())
    info = model_output_info(meta, given.month, scene)
    shown = {k: v for k, v in facts.to_dict().items() if k != "notes"}
    info = replace(info, input_facts=json.dumps(shown) if shown else "",
                   # why a doubted input was mapped: in every COG's tags and the report
                   input_notes=json.dumps(list(facts.notes)) if facts.notes else "")
    result = predict_raster(source, job.outputs.prefix, predictor, info, config,
                            work_dir=job.run.work_dir, model_id=loaded.file_id,
                            restart=job.run.restart, progress=job.run.progress,
                            band_order=given.band_order)
    return result, index, change


def model_output_info(meta: ModelMeta, month: str | None,
                      scene: NormStats | None = None) -> OutputInfo:
    """What a map's outputs record about the model file ``meta`` describes.

    Its name, bands, classes, numeric metrics, how its probabilities are calibrated and,
    for a scene-normalised model, the input statistics the map was normalised by.
    """
    metrics = numeric_metrics(meta.metrics)
    return OutputInfo(meta.name, tuple(meta.bands), tuple(meta.class_names), month,
                      metrics=metrics, calibration=describe_calibration(meta.calibration),
                      normalisation=scene_normalisation.describe(scene) if scene else "")


def finish_outputs(result: PredictionResult, outputs: PredictOutputs, index: int, *,
                   change: PredictChange | None = None, earlier: ChangeInputs | None = None,
                   record: dict[str, Any] | None = None,
                   notes: tuple[str, ...] = ()) -> Outputs:
    """Quick-looks, area table, optional change map and polygons of a prediction's COGs.

    The change map (with ``change.compare_with``) is decided by the spectral rule with
    ``earlier.spectral`` (``earlier.earlier_prob`` and this prediction's probabilities), else
    with ``change.margin`` on ``earlier.earlier_prob`` and this prediction's probabilities,
    else by differencing the class maps. ``notes``: why a doubted input was mapped, in the
    change COG's tags as in the class and probability COGs' (``input_notes``), beside the
    earlier map's own, prefixed ``--compare-with: ``. ``outputs.warn_zones``: warn of each zone
    without a valid pixel (a series warns once for all its dates instead:
    :func:`warn_empty_zones`).

    Shared by the streaming prediction above and the tile-parallel Beam pipeline
    (:mod:`inference.mapping.beam_map`), whose COGs come from a mosaic of tiles.
    """
    zone_list = stats.load_zones(outputs.zones, result.crs, outputs.zones_name)
    name, local = outputs.name(), outputs.local_folder()
    compare_with = change.compare_with if change else None
    with gdal_env(result.class_path, result.prob_path):
        class_png = _quicklook(result.class_path, local / f"{name}_class.png", "class",
                               result.skipped)
        prob_png = _quicklook(result.prob_path, local / f"{name}_prob.png", "probability",
                              result.skipped)
    if not result.skipped:  # the map was (re)written: what described the old one goes
        _remove_stale(outputs.prefix, local, keep_change=bool(compare_with),
                      keep_vectors=outputs.vectors is not None)
    rows = stats.isa_area(result.class_path, zone_list, result.prob_path, isa_class=index)
    if outputs.warn_zones:
        warn_empty_zones({row.zone: () for row in rows if row.isa_fraction is None})
    area_json, area_csv = local / f"{name}_area.json", local / f"{name}_area.csv"
    table = stats.write_table(rows, area_json, area_csv)
    made: tuple[str | None, Path | None, dict[str, Any] | None] = (None, None, None)
    if change and compare_with:
        earlier = earlier or ChangeInputs()
        made, text = _change_outputs(result, outputs.prefix, index, zone_list, local,
                                     compare_with, change.margin, earlier.earlier_prob, record,
                                     earlier.spectral, notes)
        table += text
    written: tuple[Path, ...] = ()
    if outputs.vectors is not None:
        written = write_vectors(result.class_path, result.prob_path, index,
                                local / f"{name}_builtup", outputs.vectors).paths
    return Outputs(result, class_png, prob_png, area_json, area_csv, table, *made,
                   vectors=written)


def _quicklook(cog: str, png: Path, kind: maps.Kind, kept: bool) -> Path:
    """A COG's quick-look PNG, drawn unless the map was kept and the picture is current.

    Kept (``kept``): a finished map resumed, its COG untouched; current: the local picture is
    no older than the COG. A resumed run redraws none of the pictures it finished.
    """
    if (kept and not files.is_gcs(cog) and png.is_file()
            and png.stat().st_mtime_ns >= Path(cog).stat().st_mtime_ns):
        return png
    return maps.quicklook(files.gdal_path(cog), png, kind)


def warn_empty_zones(empty: Mapping[str, Sequence[str]]) -> None:
    """One warning per zone without a valid pixel of the map: zone -> its dates (() one map)."""
    for zone, dates in empty.items():
        log.warning("zone %r has no valid pixel of the map%s (outside it, or all nodata); its "
                    "row%s no data", zone, f" at {', '.join(dates)}" if dates else "",
                    "s say" if len(dates) > 1 else " says")


def _remove_stale(out_prefix: str, local: Path, keep_change: bool, keep_vectors: bool) -> None:
    """Remove the side outputs of the map at ``out_prefix`` that this run does not rewrite.

    A change map, its area tables and the built-up polygons describe the map beside them: once
    a run replaces that map, those an earlier run wrote (with ``--compare-with`` or
    ``--vectors``) and this run does not write again would disagree with it. Each one removed
    is said in the log. Those this run writes again are overwritten.
    """
    name = out_prefix.rstrip("/").rsplit("/", 1)[-1]
    stale: list[tuple[str, str]] = []  # (path, the flag that writes it)
    if not keep_change:
        stale += [(path, "--compare-with") for path in (
            f"{out_prefix}_change.tif", str(local / f"{name}_change_area.json"),
            str(local / f"{name}_change_area.csv"))]
    if not keep_vectors:
        stale += [(str(local / f"{name}_builtup{suffix}"), "--vectors")
                  for suffix in (".gpkg", ".parquet")]
    for path, flag in stale:
        if files.exists(path):
            store, rel = files.store_of(path)
            store.delete(rel)
            log.info("removed %s: it described the map this run replaced (%s writes it anew)",
                     path, flag)


def _change_outputs(result: PredictionResult, out_prefix: str, index: int,
                    zone_list: Any, local: Path, compare_with: str, change_margin: float,
                    earlier_prob: str | None, record: dict[str, Any] | None,
                    spectral: SpectralStacks | None, notes: tuple[str, ...] = ()
                    ) -> tuple[tuple[str, Path, dict[str, Any]], str]:
    """The change map since ``compare_with``, its area table, and how it was decided.

    Returns ``(change COG, area JSON, record)`` and the table's text.
    """
    change_cog = f"{out_prefix}_change.tif"
    here = out_prefix.rsplit("/", 1)[0] if "/" in out_prefix else "."
    record = {k: ({**v, "normalised_to": shareable_path(v["normalised_to"], here)}
                  if k == "normalisation" else v) for k, v in (record or {}).items()}
    change_record = {"change_margin": change_margin if earlier_prob else 0.0, **record}
    tags = {k: json.dumps(v) for k, v in record.items()}
    # this input's notes, as in the class and probability COGs, and the earlier map's own
    earlier = maps.recorded_notes(("--compare-with", compare_with))
    if notes or earlier:
        tags["input_notes"] = json.dumps([*notes, *earlier])
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
    if earlier:  # the summary's input_notes are this input's; the earlier map's are here
        change_record = {**change_record, "compare_with_notes": earlier}
    change_json = local / f"{out_prefix.rstrip('/').rsplit('/', 1)[-1]}_change_area.json"
    change_rows = stats.change_area(change_cog, zone_list, classes, index)
    text = "\n\nISA change since " + compare_with + "\n" + stats.write_table(
        change_rows, change_json, change_json.with_suffix(".csv"))
    return (change_cog, change_json, change_record), text


def describe(outputs: Outputs) -> dict[str, Any]:
    r = outputs.prediction
    return {"tiles": r.tiles, "seconds": round(r.seconds, 2), "skipped": r.skipped,
            "resumed_strips": r.resumed_strips, "area_km2": round(r.area_km2, 3),
            **outputs.paths(),
            **({"change": outputs.change_record} if outputs.change_record else {}),
            **({"input_notes": list(outputs.input_notes)} if outputs.input_notes else {})}
