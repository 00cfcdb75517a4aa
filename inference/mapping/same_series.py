"""What a series' ``--out`` already holds: dates of another lattice, grid or model are refused.

A series folder holds one map product: its dates cut on one tile lattice, on one grid (CRS,
pixel size, extent) by one model file, so that its change maps compare like with like and a
run of the same request keeps every finished date (``already mapped``). A run into that folder
whose dates would differ from the ones it holds is refused before its first date is read or
composited (exit 2, one line naming what the series was mapped on and what this run would map
on), rather than mapping some dates again beside others left as they were: a series of two
grids or two models, each run ending 0. The folder is left untouched, a date's kept stack
included; the remedy is the series' own request, or another ``--out``.

The series' identity is read from its ``map.json`` (``lattice``, ``grid``, ``model``) and from
each date's class COG (its lattice and model tags, and its georeferencing): a killed run may
have left dates before writing ``map.json``. Only a local ``--out``'s COGs are read; a
``gs://`` series is checked against its ``map.json`` (in the local product folder). A damaged
COG is mapped again, not refused. Other differences (the runtime, a post-processing, the
change rule) are not refused: the dates or series products they concern are mapped again, as
the log says (:mod:`inference.mapping.series_runtime`, :mod:`inference.mapping.series`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
import rasterio.errors
from rasterio.crs import CRS

from contract.grid import Grid
from core.errors import ConfigError
from core.storage import files
from inference.mapping.request import MapOutputs
from inference.predict.lattice import Lattice, check_same


@dataclass(frozen=True)
class Held:
    """What a series (its ``map.json``) or one of its dates (its class COG) records."""

    grid: Grid | None  # the input grid its dates were mapped on
    model_id: str = ""  # the model file's content id
    model: str = ""  # the model's name
    model_file: str = ""  # the model file's name (``map.json`` only)
    bbox: str = ""  # the area as ``--bbox`` takes it (``map.json`` only)


def check_series(outputs: MapOutputs, lattice: Lattice, grid: Grid, model_id: str,
                 model: str) -> None:
    """Refuse a run whose dates would differ from the series at ``--out`` (module docstring).

    Args:
        outputs: where the run writes (its ``--out`` and product folder).
        lattice: the run's tile lattice.
        grid: the grid this run maps on.
        model_id: the content id of this run's model file.
        model: the model's name (compared where a map records no id).

    Raises:
        ConfigError: the lattice, the grid or the model differs from what the series records.
    """
    origin = (grid.x0, grid.y0)
    where = f"the series in {outputs.out}"
    record = _map_record(outputs.product_dir() / "map.json")
    if record.get("lattice"):
        check_same(lattice, origin, record["lattice"], where)
    refuse_other(where, held_by_record(record), grid, model_id, model)
    if files.is_gcs(outputs.out):
        return
    for cog_path in sorted(Path(outputs.out).glob("*/isa_*_class.tif")):
        if cog_path.name != f"isa_{cog_path.parent.name}_class.tif":
            continue  # a series product (consistent/), made from the dates' maps
        try:
            with rasterio.open(cog_path) as ds:
                tags, crs, shape, transform = ds.tags(), ds.crs, ds.shape, ds.transform
        except rasterio.errors.RasterioError:
            continue  # a damaged date is mapped again
        at = f"date {cog_path.parent.name} of {where}"
        if "tile" in tags and "overlap" in tags:
            check_same(lattice, origin, tags, at)
        refuse_other(at, Held(_cog_grid(crs, shape, transform, tags), tags.get("model_id", ""),
                              tags.get("model", "")), grid, model_id, model)


def held_by_record(record: Mapping[str, Any]) -> Held:
    """What a series' ``map.json`` records of its grid, model and area."""
    model = record.get("model")
    model = model if isinstance(model, Mapping) else {}
    bbox = record.get("bbox")
    return Held(_recorded_grid(record.get("grid")), str(model.get("id") or ""),
                str(model.get("name") or ""), str(model.get("file") or ""),
                ",".join(f"{v!r}" for v in bbox) if isinstance(bbox, list) else "")


def _map_record(path: Path) -> dict[str, Any]:
    """The series' ``map.json`` (empty when there is none, or it cannot be read)."""
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _recorded_grid(record: Any) -> Grid | None:
    """The grid ``map.json`` records (None: none, or not one this isamap reads)."""
    if not isinstance(record, Mapping):
        return None
    try:
        return Grid.from_dict(dict(record))
    except (ValueError, TypeError, KeyError):
        return None


def _cog_grid(crs: CRS | None, shape: tuple[int, int], transform: Any,
              tags: Mapping[str, str]) -> Grid | None:
    """The input grid a date's COG was mapped on (its pixels divided by its output scale)."""
    scale = tags.get("output_scale", "1")
    if crs is None or not scale.isdigit() or int(scale) < 1:
        return None  # not a map this isamap wrote: its model and lattice still compared
    height, width = shape
    try:
        return Grid(crs.to_string(), transform.c, transform.f, max(width // int(scale), 1),
                    max(height // int(scale), 1), abs(transform.a) * int(scale))
    except ValueError:
        return None


def refuse_other(where: str, theirs: Held, grid: Grid, model_id: str, model: str) -> None:
    """Raise ConfigError naming the grid and model ``where`` has that this run would not.

    The message names each difference (theirs, then this run's) and the flags that map the
    series again as it was, where its record names them.
    """
    said, flags = [], []
    if theirs.grid is not None and not same_grid(theirs.grid, grid):
        said.append(f"on the grid {describe_grid(theirs.grid)}, where this run would map on "
                    f"{describe_grid(grid)}")
        flags.append(f"--bbox {theirs.bbox} --crs {theirs.grid.crs}" if theirs.bbox
                     else f"its area and --crs {theirs.grid.crs}")
    if (theirs.model_id and model_id and theirs.model_id != model_id) or (
            not theirs.model_id and theirs.model and theirs.model != model):
        said.append(f"by the model {theirs.model or 'unnamed'}"
                    f"{' (id ' + theirs.model_id + ')' if theirs.model_id else ''}, where this "
                    f"run's is {model}{' (id ' + model_id + ')' if model_id else ''}")
        flags.append(f"--model {theirs.model_file}" if theirs.model_file else "its model")
    if said:
        raise ConfigError(f"{where} was mapped {' and '.join(said)}; its dates are kept as "
                          f"they are: map it again with {' and '.join(flags)}, or into "
                          "another --out")


def same_grid(a: Grid, b: Grid) -> bool:
    """Whether two grids have the same pixels: CRS, pixel size, corner and size."""
    return (_same_crs(a.crs, b.crs) and (a.width, a.height) == (b.width, b.height)
            and all(math.isclose(x, y, rel_tol=0, abs_tol=1e-6 * max(a.resolution, 1.0))
                    for x, y in ((a.x0, b.x0), (a.y0, b.y0), (a.resolution, b.resolution))))


def _same_crs(a: str, b: str) -> bool:
    """Whether two CRS spellings name one CRS (unreadable ones: as spelt)."""
    if a == b:
        return True
    try:
        return bool(CRS.from_user_input(a) == CRS.from_user_input(b))
    except rasterio.errors.CRSError:
        return False


def describe_grid(grid: Grid) -> str:
    """A grid in words: CRS, size, pixel size and upper-left corner."""
    return (f"{grid.crs} {grid.width}x{grid.height} px of {grid.resolution:g} m from "
            f"({grid.x0:.10g}, {grid.y0:.10g})")
