"""Sentinel-1 + Sentinel-2 fusion on real co-registered TerraMesh cells, through the product.

``python -m experiments.terramesh [--data DIR] --out DIR``

Four TerraMesh cells (``terramesh_s1s2`` in the sample data root; 224 x 224 px at 10 m,
local UTM, two of them south of the equator): ``<cell>_S1RTC.tif`` (VV, VH gamma0 in dB,
float64), ``<cell>_S2L2A.tif`` (12 bands **without names**, DN = reflectance x 10000, no date)
and ``<cell>_LULC.tif`` (the ESRI / Impact Observatory 10 m land-cover product, 5 = built
area, dated with the S2 acquisition). Each cell gets a scene folder in the local backend's
input layout (links; the land cover under ``labels/``), then the product runs as a user runs
it:

1. ``isamap-export --backend local --s2-band-names B1,...,B12`` (the names are checked
   against the pixels), ``--scene-date`` (the land cover's date, which is the S2 date),
   ``--boa-add-offset 0`` (TerraMesh's DNs are reflectance x 10000 whatever the date),
   ``--label-map 5=1,0=255,8=255,*=0`` (built 1; nodata and clouds ignored), bands B2, B3,
   B4, B8, VV, VH (the CroFuseNet inputs);
2. ``isamap-train`` trains unet-s2, unet-s1, unet and crofusenet (``--models``; one training
   each, ``--members 1``) on the training split of the one cell with built area
   (``--train-cell``, default the Chilean cell, 23 % built);
3. ``isamap-predict`` maps every cell with every model;
4. each map is scored against the product's built class: F1, IoU and ROC AUC on the test
   split of the training cell (patches no training patch overlaps), and the share of pixels
   mapped built on the other cells, which the product marks almost entirely not built.

The land-cover product is a model's output, not a reference: the scores say how well each
model reproduces that product from the same kind of imagery, not how accurate any map is.
What the experiment shows is that real S1 and S2 files (unnamed bands, dB, float64,
southern UTM) go through export, training and mapping end to end, and how the four models
compare on the same weak labels. ``DIR/metrics.json`` holds every score; its committed copy
(:data:`FIGURES_JSON`) rewrites docs/evidence/terramesh.md's table (:func:`update_page`).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from contract.bands import LABEL_NODATA
from core.commands import (
    add_logging_arguments,
    check_output_folder,
    configure_logging,
    run_command,
)
from core.errors import ConfigError, InputDataError
from core.jsonsafe import dumps
from core.parsers import CommandParser, seed
from core.storage import atomic_write
from experiments.data import add_data_root_argument, existing_folder, sample_folder
from experiments.realscenes import (
    Footprint,
    bbox_argument,
    format_table,
    link_into,
    map_scores,
    mapped_label,
    run_product,
    split_area,
)
from experiments.threads import add_threads_argument, use_threads
from gee_export.local.scenes import S2_L2A_ORDER, date_from_text

log = logging.getLogger(__name__)

TM_FOLDER = "terramesh_s1s2"
TM_LABEL_MAP = "5=1,0=255,8=255,*=0"  # 5 built area -> 1; 0 nodata, 8 clouds ignored
TM_S2_ORDER = S2_L2A_ORDER  # the sample's README: B01..B12 without B10
DEFAULT_TRAIN_CELL = "433D_629L_3_1"
#: Cells with no dark pixel (the Chile cell's darkest 0.1 %: 0.108-0.116 in B2, B3, B4, B8),
#: which the export's dark-object rule reads as a +0.1 offset left in; the cells' DNs are
#: reflectance x 10000 as published, so the experiment takes them as they are and the export
#: records why (--allow-implausible)
NO_DARK_PIXEL = frozenset({"433D_629L_3_1"})
DEFAULT_MODELS = ("unet-s2", "unet-s1", "unet", "crofusenet")
DEFAULT_BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")


@dataclass(frozen=True)
class Cell:
    """One TerraMesh cell's three files, its grid and its S2 date."""

    name: str
    s1: Path
    s2: Path
    land_cover: Path
    footprint: Footprint
    date: str

    @property
    def month(self) -> str:
        return self.date[:7]


def find_cells(folder: str | Path) -> list[Cell]:
    """Every ``<cell>_S2L2A.tif`` in ``folder`` with its S1 and land-cover files."""
    folder = Path(folder)
    cells = []
    for s2 in sorted(folder.glob("*_S2L2A.tif")):
        name = s2.name[: -len("_S2L2A.tif")]
        s1, lc = folder / f"{name}_S1RTC.tif", folder / f"{name}_LULC.tif"
        missing = [p.name for p in (s1, lc) if not p.is_file()]
        if missing:
            raise InputDataError(f"cell {name} lacks {', '.join(missing)} in {folder}")
        grids = {Footprint.of(p) for p in (s1, s2, lc)}
        if len(grids) != 1:
            raise InputDataError(f"cell {name}: S1, S2 and land cover are not on one grid")
        with rasterio.open(lc) as src:
            stamp = src.tags().get("datetime", "")
        date = date_from_text(stamp)
        if date is None:
            raise InputDataError(f"{lc} has no datetime tag: the S2 date is unknown")
        cells.append(Cell(name, s1, s2, lc, grids.pop(), date.isoformat()))
    if not cells:
        raise InputDataError(f"no <cell>_S2L2A.tif in {folder}")
    return cells


def built_label(cell: Cell) -> np.ndarray:
    """The product's built class as 0/1/255, through the export's own mapping."""
    return mapped_label(cell.land_cover, TM_LABEL_MAP)


def scene_folder(cell: Cell, root: Path) -> Path:
    """``root/<cell>/`` with links to S1 and S2 and ``labels/<cell>_LULC.tif``."""
    folder = root / cell.name
    for path, where in ((cell.s2, folder), (cell.s1, folder),
                        (cell.land_cover, folder / "labels")):
        link_into(path, where)
    return folder


@dataclass(frozen=True)
class Budget:
    """Training budget and patch layout; the defaults take a few minutes on 2 cores."""

    epochs: int = 6
    batch_size: int = 8
    lr: float = 1e-3
    patch: int = 32
    stride: int = 32
    split_block: int = 2
    seed: int = 0


def export(cell: Cell, scenes: Path, out: Path, bands: Sequence[str], budget: Budget,
           trust_band_names: bool = False) -> Path:
    """``isamap-export --backend local`` of one cell; returns its stack."""
    run_product("isamap-export", export_arguments(cell, scenes, out, bands, budget,
                                                  trust_band_names))
    return out / "stacks" / f"stack_{cell.month}_image.tif"


def export_arguments(cell: Cell, scenes: Path, out: Path, bands: Sequence[str], budget: Budget,
                     trust_band_names: bool = False) -> list[str]:
    """The export's command line; ``trust_band_names`` passes ``--trust-band-names``."""
    return [
        "--backend", "local", "--scenes", str(scenes),
        bbox_argument(cell.footprint.lonlat_bbox(inset=0.5)), "--crs", cell.footprint.crs,
        "--month", cell.month, "--bands", ",".join(bands),
        "--s2-band-names", ",".join(TM_S2_ORDER), "--scene-date", cell.date,
        "--boa-add-offset", "0",
        "--label-map", TM_LABEL_MAP, "--patch-size", str(budget.patch),
        "--stride", str(budget.stride), "--split-block", str(budget.split_block),
        "--seed", str(budget.seed), "--out", str(out), "--no-progress",
        *(["--allow-implausible"] if cell.name in NO_DARK_PIXEL else []),
        *(["--trust-band-names"] if trust_band_names else [])]


def run_terramesh(data: Path, out: Path, *, train_cell: str = DEFAULT_TRAIN_CELL,
                  models: Sequence[str] = DEFAULT_MODELS,
                  bands: Sequence[str] = DEFAULT_BANDS, budget: Budget = Budget(),
                  trust_band_names: bool = False) -> dict:
    """The whole experiment; returns (and writes) ``metrics.json``."""
    start = time.perf_counter()
    cells = {c.name: c for c in find_cells(data)}
    if not models:
        raise ConfigError("--models names no model")
    if train_cell not in cells:
        raise ConfigError(f"--train-cell {train_cell} is not among {', '.join(cells)}")
    scenes = out / "scenes"
    datasets = {name: out / f"data_{name}" for name in cells}
    stacks = {name: export(cell, scene_folder(cell, scenes), datasets[name], bands, budget,
                           trust_band_names) for name, cell in cells.items()}
    trained = cells[train_cell]
    test_area = split_area(datasets[train_cell], trained.footprint, "test")
    if not test_area.any():
        raise ConfigError(f"the export of {train_cell} has no test patches; choose a larger "
                          "--train-cell")
    product = {name: _product_share(cell) for name, cell in cells.items()}
    runs: dict[str, dict] = {}
    for model in models:
        run = out / "runs" / model
        run_product("isamap-train", [
            "--model", model, "--data", str(datasets[train_cell]), "--out", str(run),
            "--epochs", str(budget.epochs), "--batch-size", str(budget.batch_size),
            "--lr", str(budget.lr), "--seed", str(budget.seed), "--workers", "0", "--cache",
            "--precision", "fp32", "--channels-last", "off", "--no-progress",
            "--members", "1"])  # one training of each model: architectures, not their means
        runs[model] = {}
        for name, cell in cells.items():
            prefix = out / "maps" / model / name
            run_product("isamap-predict", [  # the cells as shipped: the Chilean one has no
                "--model", str(run / "model.pt"), "--input", str(stacks[name]),  # dark pixel
                "--out", str(prefix), "--month", cell.month, "--precision", "fp32",
                "--channels-last", "off", "--allow-implausible"])
            area = (test_area if name == train_cell else
                    np.ones((cell.footprint.height, cell.footprint.width), bool))
            runs[model][name] = map_scores(built_label(cell), cell.footprint,
                                           Path(f"{prefix}_class.tif"),
                                           Path(f"{prefix}_prob.tif"), area)
        metrics = {  # written after each model: an interrupted run keeps what it finished
            "test": {m: runs[m][train_cell] for m in runs}, "models": runs,
            "product_built_share": product, "train_cell": train_cell,
            "test_area": f"test-split patches of {train_cell} ({int(test_area.sum())} px)",
            "bands": list(bands), "label_map": TM_LABEL_MAP, "budget": budget.__dict__,
            "label_is_reference": False, "seconds": round(time.perf_counter() - start, 1)}
        text = dumps(metrics, indent=2)
        atomic_write(out / "metrics.json", lambda handle, text=text: handle.write(text.encode()))
    table = results_table(metrics)
    atomic_write(out / "results.txt", lambda handle: handle.write(table.encode() + b"\n"))
    print(table)
    print(f"{metrics['seconds']:.0f} s; metrics: {out / 'metrics.json'}")
    return metrics


def _product_share(cell: Cell) -> float:
    label = built_label(cell)
    labelled = label != LABEL_NODATA
    return float((label[labelled] == 1).mean()) if labelled.any() else float("nan")


def results_table(metrics: dict) -> str:
    """One row per model: scores on the training cell's test split, built share elsewhere."""
    train = metrics["train_cell"]
    others = [c for c in metrics["product_built_share"] if c != train]
    rows = []
    for model, cells in metrics["models"].items():
        s = cells[train]
        rows.append((model, s["f1_built"], s["iou_built"], s["auc_built"],
                     *(cells[c]["mapped_built_share"] for c in others)))
    rows.append(("land-cover product", "", "", "",
                 *(metrics["product_built_share"][c] for c in others)))
    return format_table(rows, ("model", f"F1 {train}", "IoU", "ROC AUC",
                               *(f"built share {c}" for c in others)))


FIGURES_JSON = "docs/figures/terramesh.json"


def figures_markdown(metrics: dict) -> str:
    """The docs' block: the table the command printed, from its ``metrics.json``."""
    return f"\n```text\n{results_table(metrics)}\n```\n"


def update_page(source: str = FIGURES_JSON, page: str = "docs/evidence/terramesh.md",
                root: str = ".") -> bool:
    """Rewrite the page's block of ``source``'s figures; True when it changed."""
    from inference.assess.figures import rewrite_block

    return rewrite_block(source, page, figures_markdown, root)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments.terramesh``; returns the exit status."""
    p = CommandParser(  # exact option names only
        allow_abbrev=False, prog="python -m experiments.terramesh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = Budget()
    p.add_argument("--data", help=f"folder of the cells (default: {TM_FOLDER} in the "
                   "--data-root)")
    add_data_root_argument(p)
    p.add_argument("--train-cell", default=DEFAULT_TRAIN_CELL)
    p.add_argument("--models", default=",".join(DEFAULT_MODELS))
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=seed, default=d.seed)
    p.add_argument("--out", default="terramesh_output")
    p.add_argument("--trust-band-names", action="store_true", help=(
        "passed to isamap-export: use the S2 band names as given when the band-relation "
        "check doubts them (a scene unlike most)"))
    add_threads_argument(p)
    add_logging_arguments(p)
    a = p.parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)
    return run_command("python -m experiments.terramesh", lambda: _run(a), debug=a.debug,
                       writes_to=[a.out])


def _run(a: argparse.Namespace) -> int:
    data = existing_folder(a.data or sample_folder(TM_FOLDER, a.data_root), "TerraMesh",
                           "--data")
    check_output_folder("--out", a.out)
    use_threads(a.threads)
    run_terramesh(data, Path(os.path.abspath(a.out)), train_cell=a.train_cell,
                  models=[m for m in a.models.split(",") if m],
                  budget=Budget(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                                seed=a.seed), trust_band_names=a.trust_band_names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
