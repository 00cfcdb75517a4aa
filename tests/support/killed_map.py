"""A map run that SIGKILLs its own process mid-way: the hard kill of test_mapping's resume test.

Run as ``python -m tests.support.killed_map SPEC.json`` from the repository root. SPEC names
the stack GeoTIFF, the model file, the output folder, the region box, the tiling and
``kill_after``: the fake pixel server sends SIGKILL to its own process when it is asked for the
``kill_after``-th request (once the writer thread has put at least one checkpoint strip on disk,
so the test does not race that thread), and no ``finally`` block or flush runs: what is on disk
is what a power cut or an OOM kill would leave.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from contract.regions import Region
from inference.mapping.region import map_region
from inference.mapping.request import MapExtent, MapInputs, MapOutputs, MapRequest, map_window
from inference.predict.runtime import RuntimeOptions
from testing.fake_server import StackTransport
from tests.support.mapping import MONTH, session_for, stack_paths
from training.modelfile import load_model


class KillingTransport(StackTransport):
    def __init__(self, stack: Any, kill_after: int, out: Path, **kw: Any) -> None:
        super().__init__(stack, **kw)
        self.kill_after = kill_after
        self.out = out

    def compute_pixels(self, request: dict[str, Any], profile: Any = None):
        if len(self.served) + 1 >= self.kill_after:
            deadline = time.monotonic() + 60
            while not any(self.out.rglob("strip_*.tif")) and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGKILL)
        return super().compute_pixels(request, profile)


def request_from(spec: dict[str, Any]) -> MapRequest:
    return MapRequest(MapExtent(Region("testarea", tuple(spec["bbox"])), (MONTH,)),
                      MapOutputs(spec["out"]), MapInputs(workers=1),
                      map_window(tile=spec["tile"], overlap=spec["overlap"], batch_size=4,
                                 strip_rows=spec["strip_rows"]),
                      RuntimeOptions(precision="fp32", channels_last=False), progress=False)


def main(argv: list[str]) -> int:
    import ee
    from ee import apitestcase

    with open(argv[0]) as fh:
        spec = json.load(fh)
    ee.data._install_cloud_api_resource = lambda: None
    ee.data.getAlgorithms = apitestcase.GetAlgorithms
    ee.Initialize(None, "", project="offline")
    transport = KillingTransport(stack_paths(Path(spec["stack"])), spec["kill_after"],
                                 Path(spec["out"]), info=lambda text: 5)
    map_region(request_from(spec), load_model(spec["model"]), session=session_for(transport),
               echo=lambda _: None)
    return 0  # not reached when the kill comes in time; the test checks the signal


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
