"""A series mapped into a relative --out names no absolute path in what it shares."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inference.mapping.region import map_region
from inference.mapping.request import MapExtent, MapInputs, MapOutputs, MapRequest, map_window
from inference.predict.runtime import RuntimeOptions
from testing.fake_server import StackTransport
from tests.support.mapping import MONTH, inner_region, model_file, session_for, write_month_stack
from tests.support.rasters import smooth_stack
from tests.support.shared_files import private_strings
from training.modelfile import load_model


def test_a_relative_out_puts_no_absolute_path_in_map_json_or_stac(tmp_path, ee_offline,
                                                                  monkeypatch):
    data = smooth_stack(110, 120, seed=4)
    data[1, 40:50, 30:45] = np.nan
    stack = write_month_stack(tmp_path / "inputs", data)
    model = model_file(tmp_path / "inputs" / "unet.pt", stack.grid)
    monkeypatch.chdir(tmp_path)
    request = MapRequest(MapExtent(inner_region(stack.grid), (MONTH,)), MapOutputs("series"),
                         MapInputs(workers=2), map_window(tile=64, overlap=16, batch_size=4),
                         RuntimeOptions(precision="fp32", channels_last=False), progress=False)
    map_region(request, load_model(model),
               session=session_for(StackTransport(stack, info=lambda text: 5)),
               echo=lambda _: None)
    record = json.loads((tmp_path / "series" / "map.json").read_text())
    assert record["dates"][MONTH]["class_cog"] == f"{MONTH}/isa_{MONTH}_class.tif"
    assert record["model"]["file"] == "unet.pt"
    home = str(Path.home())
    assert private_strings(tmp_path / "series",
                           [str(tmp_path), *([home] if len(home) > 1 else [])]) == []
