"""The demo's accuracy assessment: blind samples of its maps labelled with the scene's truth.

The later date's map and the change map are each sampled (``isamap-assess design``), the
points labelled with the class under each on the scene's 1 m grid (the offline stand-in for a
person reading high-resolution imagery: :func:`label_with_scene_truth`) and scored
(``isamap-assess score``): accuracy and area, and gain, loss and net impervious change with
95 % intervals. The figures docs/accuracy.md quotes are written to ``assess/figures.json``.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.csv_text import csv_text
from core.errors import ConfigError
from gee_export.local.synthetic import ISA_CLASSES, SyntheticScene
from inference.assess.point_files import write_design
from inference.assess.report import score
from inference.demo.context import (
    DemoContext,
    atomic_write_text,
    file_hash,
    inputs_changed,
    record_inputs,
    state_file,
)
from inference.demo.figures import change_summary, demo_figures

DEMO_TARGET_SE = 0.02  # standard error of overall accuracy the demo's sample is sized for
DEMO_EXPECTED_UA = (0.95, 0.85)  # pervious, impervious
DEMO_GAIN_SE_KM2 = 0.05  # standard error of the gain's area the change sample is sized for
# expected user's accuracy of stable pervious, stable impervious, gain, loss: an unmapped gain
# is rare in a stable stratum (the sizing assumes a third of a stratum's errors are gain)
DEMO_CHANGE_UA = (0.999, 0.995, 0.7, 0.5)
DEMO_CHANGE_MINIMUM = 50


def step_assess(ctx: DemoContext) -> None:
    """Assess the later map and the change on blind samples labelled with the scene's truth."""
    scene, later = ctx.scene, ctx.later
    if ctx.map_class is None or ctx.change_map is None or scene is None or later is None:
        raise ConfigError("the 'scene' and 'map' steps must run before 'assess'")
    out = ctx.out / "assess"
    inputs = {"map": file_hash(ctx.map_class), "change": file_hash(ctx.change_map),
              "seed": ctx.seed, "sizing": [DEMO_TARGET_SE, DEMO_EXPECTED_UA, DEMO_GAIN_SE_KM2,
                                           DEMO_CHANGE_UA, DEMO_CHANGE_MINIMUM],
              "scenes": [json.loads((s.root / "scene.json").read_text()) for s in (scene, later)]}
    if inputs_changed(ctx, "assess", inputs):
        shutil.rmtree(out, ignore_errors=True)  # another map: the old sample is not its sample
    design = write_design(str(ctx.map_class), out / "design", target_se=DEMO_TARGET_SE,
                          expected_ua=DEMO_EXPECTED_UA, seed=ctx.seed)
    change_design = write_design(str(ctx.change_map), out / "change_design",
                                 target_se=DEMO_GAIN_SE_KM2, target_class="gain",
                                 expected_ua=DEMO_CHANGE_UA, seed=ctx.seed,
                                 minimum=DEMO_CHANGE_MINIMUM)
    labelled, change_labelled = out / "labelled.csv", out / "change_labelled.csv"
    truth: dict[Path, Any] = {}  # each scene's fine truth, drawn once for both samples
    if not labelled.exists():
        label_with_scene_truth(design.files["csv"], (later,), labelled, truth)
    if not change_labelled.exists():
        label_with_scene_truth(change_design.files["csv"], (scene, later), change_labelled,
                               truth)
    fresh = state_file(ctx, "assess").exists()
    reports = {}
    for name, map_path, points, folder, compare in (
            ("score", ctx.map_class, labelled, design, [f"10 m label={later.label}"]),
            ("change_score", ctx.change_map, change_labelled, change_design, [])):
        report = out / name / "report.md"
        if not (fresh and report.exists() and report.with_suffix(".png").exists()):
            score(str(map_path), str(points), out / name, compare=compare,
                  design=folder.files["json"].parent)
        reports[name] = json.loads(report.with_suffix(".json").read_text())
    record_inputs(ctx, "assess", inputs)
    figures = demo_figures(reports["score"], reports["change_score"],
                           json.loads(change_design.files["json"].read_text()))
    atomic_write_text(out / "figures.json", json.dumps(figures, indent=1) + "\n")
    ctx.outputs["reference sample (CSV, KML, CEO, app)"] = design.files["csv"].parent
    ctx.outputs["labelled points (scene truth)"] = labelled
    ctx.outputs["accuracy report"] = out / "score" / "report.md"
    ctx.outputs["accuracy plot"] = out / "score" / "report.png"
    ctx.outputs["change report"] = out / "change_score" / "report.md"
    ctx.outputs["figures of docs/accuracy.md"] = out / "figures.json"
    ctx.outputs["accuracy and area"] = "\n" + (out / "score" / "report.md").read_text()
    ctx.outputs["impervious change from the points"] = "\n" + change_summary(figures["change"])


def _fine_isa(scene: SyntheticScene, cache: dict[Path, Any]) -> Any:
    """The scene's impervious truth on its fine grid, drawn once per ``cache``."""
    if scene.root not in cache:
        cache[scene.root] = np.isin(scene.class_map_fine(), ISA_CLASSES)
    return cache[scene.root]


def label_with_scene_truth(sample_csv: Path, scenes: Sequence[SyntheticScene], out: Path,
                           cache: dict[Path, Any] | None = None) -> Path:
    """Fill the sample's ``reference`` with the truth under each point on the 1 m grid.

    One scene: its class (``pervious``/``impervious``). Two (earlier, later): the change
    class between them (``stable_pervious``, ``stable_isa``, ``gain``, ``loss``).
    """
    cache = {} if cache is None else cache
    fine = [_fine_isa(s, cache) for s in scenes]
    grid, step = scenes[0].grid, scenes[0].grid.resolution / scenes[0].fine_scale
    with sample_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        col = int((float(row["x"]) - grid.x0) // step)
        line = int((grid.y0 - float(row["y"])) // step)
        isa = [bool(f[line, col]) for f in fine]
        if len(isa) == 1:
            row["reference"] = "impervious" if isa[0] else "pervious"
        else:
            row["reference"] = {(False, False): "stable_pervious", (True, True): "stable_isa",
                                (False, True): "gain", (True, False): "loss"}[(isa[0], isa[1])]
    return atomic_write_text(out, csv_text(rows, list(rows[0]), lineterminator="\n"))
