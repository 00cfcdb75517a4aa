"""The inference end of the demo: model file + stack -> COGs, PNGs, areas, publish dry run."""

from __future__ import annotations

import os
from pathlib import Path

from inference.predict import PredictConfig
from inference.publish import PublishRequest, publish
from inference.workflow import predict_with_model_file


def run_demo_inference(
    model_file: str | os.PathLike, stack_path: str | os.PathLike, out_dir: str | os.PathLike,
    *, month: str | None = None, name: str = "isa", tile: int = 256, overlap: int = 32,
    zones: str | os.PathLike | dict | None = None, asset_id: str = "isamap/demo_isa",
    project: str = "isamap-demo", gcs_prefix: str | None = None, progress: bool = True,
) -> dict[str, str]:
    """Predict the demo stack and prepare (not perform) its Earth Engine publication.

    Returns the paths of every output: ``class_cog``, ``prob_cog``, ``class_png``,
    ``prob_png``, ``area_json``, ``area_csv``, ``manifest``, ``script``. The publication is a
    dry run: the demo has no Earth Engine account; the manifest it prints is the one
    ``isamap-publish`` would send.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs = predict_with_model_file(
        model_file, str(stack_path), str(out / name), month=month,
        config=PredictConfig(tile=tile, overlap=overlap, batch_size=4), zones=zones,
        local_dir=out, progress=progress)
    print(outputs.area_table)
    if month:
        asset_id = f"{asset_id}_{month}"
    request = PublishRequest(outputs.prediction.class_path, outputs.prediction.prob_path,
                             asset_id, project=project, gcs_prefix=gcs_prefix)
    published = publish(request, out, dry_run=True)
    return {**outputs.paths(), "manifest": str(published.manifest_path),
            "script": str(published.script_path)}
