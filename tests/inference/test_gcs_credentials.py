"""Every command that reads ``gs://`` rasters does so with nothing but a user's gcloud login.

The fixture ``signed_gcs`` (tests/conftest.py) leaves GDAL one way to authenticate: the refresh
token in ``~/.config/gcloud/application_default_credentials.json`` of a temporary HOME,
exchanged at a local token endpoint; the emulator is read with signed requests. Each test
checks that the exchange happened, so a command that read nothing remote cannot pass.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from cli.assess import main as assess_main
from cli.predict import predict_main
from cli.publish import publish_main
from core.pipeline_options import RunnerConfig
from core.storage import files, open_store
from inference.mapping.region import map_region
from inference.mapping.request import MapExtent, MapInputs, MapOutputs, MapRequest, map_window
from inference.predict.runtime import RuntimeOptions
from testing.fake_server import StackSessions, StackTransport
from tests.support.assess import labelled_as_the_map, synthetic_scene
from tests.support.mapping import MONTH, inner_region, model_file, session_for, write_month_stack
from tests.support.rasters import BANDS, smooth_stack, write_stack
from training.modelfile import ModelMeta, load_model, save_model_file
from training.models import create_model


def _upload(signed_gcs, local, name: str) -> str:
    open_store(f"gs://{signed_gcs.bucket}").upload_file(local, name)
    return f"gs://{signed_gcs.bucket}/{name}"


def test_predict_reads_its_input_and_writes_its_maps_with_a_user_login(
        signed_gcs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the tables and pictures of a gs:// --out are written here
    kwargs = {"widths": [4, 8, 8, 16, 16]}
    meta = ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6, model_kwargs=kwargs)
    model = save_model_file(tmp_path / "unet.pt", create_model("unet", len(BANDS), 2, **kwargs),
                            meta)
    stack = _upload(signed_gcs, write_stack(tmp_path / "stack.tif", smooth_stack(96, 120)),
                    "stacks/stack.tif")
    out = f"gs://{signed_gcs.bucket}/maps/isa"
    assert predict_main(["--model", str(model), "--input", stack, "--out", out, "--tile", "64",
                         "--overlap", "16", "--precision", "fp32", "--quiet"]) == 0, \
        capsys.readouterr().err
    assert signed_gcs.refreshed()
    with files.open_raster(f"{out}_class.tif") as ds:
        assert ds.shape == (96, 120)


def test_assess_design_and_score_read_a_gs_map_with_a_user_login(signed_gcs, tmp_path, capsys):
    scene = synthetic_scene(tmp_path, size=120)
    remote = _upload(signed_gcs, scene.map_path, "maps/map_class.tif")
    design = tmp_path / "design"
    assert assess_main(["design", "--map", remote, "--n", "60", "--out", str(design),
                        "-q"]) == 0, capsys.readouterr().err
    assert signed_gcs.refreshed()
    labelled = labelled_as_the_map(design, tmp_path / "labelled.csv")
    capsys.readouterr()
    assert assess_main(["score", "--map", remote, "--reference", str(labelled), "--design",
                        str(design), "--out", str(tmp_path / "score"), "-q"]) == 0, \
        capsys.readouterr().err
    report = json.loads((tmp_path / "score" / "report.json").read_text())
    assert report["products"]["map"]["overall_accuracy"] == 1.0


def test_publish_reads_gs_cogs_with_a_user_login(signed_gcs, cogs, tmp_path, capsys):
    prefix = f"gs://{signed_gcs.bucket}/published/isa"
    for kind, path in (("class", cogs.class_path), ("prob", cogs.prob_path)):
        _upload(signed_gcs, path, f"published/isa_{kind}.tif")
    assert publish_main(["--prefix", prefix, "--asset-id", "isamap/wuhan", "--project",
                         "my-project", "--out-dir", str(tmp_path / "pub"), "--dry-run",
                         "-q"]) == 0, capsys.readouterr().err
    assert signed_gcs.refreshed()
    manifest = json.loads((tmp_path / "pub" / "wuhan.manifest.json").read_text())
    assert manifest["tilesets"][0]["sources"][0]["uris"][0].startswith(prefix)


@pytest.mark.slow
@pytest.mark.parametrize("runner", [None, "direct"])
def test_map_writes_and_reads_back_gs_outputs_with_a_user_login(signed_gcs, ee_offline,
                                                                 tmp_path, runner):
    """Streamed, and as a Beam pipeline whose workers read and write in their own threads."""
    stack = write_month_stack(tmp_path, smooth_stack(120, 140, seed=3))
    model = model_file(tmp_path / "unet.pt", stack.grid)
    out = f"gs://{signed_gcs.bucket}/series"
    request = MapRequest(MapExtent(inner_region(stack.grid), (MONTH,)),
                         MapOutputs(out, local_dir=str(tmp_path / "local")), MapInputs(workers=2),
                         map_window(tile=64, overlap=16, batch_size=4),
                         RuntimeOptions(precision="fp32", channels_last=False), progress=False,
                         runner=(RunnerConfig("direct", max_workers=2, max_concurrent=4)
                                 if runner else None))
    session = session_for(StackTransport(stack, info=lambda text: 5))
    map_region(request, load_model(model), session=session, echo=lambda _: None,
               worker_sessions=StackSessions(stack) if runner else None)
    assert signed_gcs.refreshed()  # the COGs are read back for the tables and the STAC items
    with rasterio.open(files.gdal_path(f"{out}/{MONTH}/isa_{MONTH}_class.tif")) as ds:
        assert np.isin(ds.read(1), (0, 1, 255)).all()
