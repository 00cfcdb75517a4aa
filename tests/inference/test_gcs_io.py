import numpy as np
import pytest
import rasterio

from core.errors import StorageCredentialsError
from inference.cog.maps import OutputInfo, cog_report
from inference.predict.raster import PredictConfig, predict_raster
from inference.predict.runtime import RuntimeOptions, TilePredictor
from tests.support.gcs_faults import FaultyGcs
from tests.support.models import conv1x1
from tests.support.rasters import BANDS, smooth_stack, write_stack


def test_predict_reads_and_writes_gs_paths(gcs_emulator, gcs_bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = smooth_stack(150, 170)
    data[4, 5:10, 5:10] = np.nan
    local = write_stack(tmp_path / "stack.tif", data)
    bucket = gcs_emulator.client().bucket(gcs_bucket)
    bucket.blob("stacks/stack.tif").upload_from_filename(str(local))
    p = TilePredictor(conv1x1(), np.zeros(6), np.ones(6),
                      options=RuntimeOptions(precision="fp32", channels_last="on"))
    config = PredictConfig(tile=64, overlap=16, strip_rows=64)
    result = predict_raster(f"gs://{gcs_bucket}/stacks/stack.tif", f"gs://{gcs_bucket}/out/isa",
                            p, OutputInfo("m", BANDS), config, progress=False)
    assert result.prob_path == f"gs://{gcs_bucket}/out/isa_prob.tif"
    names = sorted(b.name for b in gcs_emulator.client().list_blobs(gcs_bucket, prefix="out/"))
    assert names == ["out/isa_class.tif", "out/isa_prob.tif"]
    report = cog_report(f"/vsigs/{gcs_bucket}/out/isa_prob.tif")
    assert report["layout"] == "COG" and report["size"] == (150, 170)
    with rasterio.open(f"/vsigs/{gcs_bucket}/out/isa_class.tif") as ds:
        out = ds.read(1)
    assert (out[5:10, 5:10] == 255).all() and (out[20:] != 255).all()
    local_run = predict_raster(str(local), str(tmp_path / "isa"), p, OutputInfo("m", BANDS),
                               config, progress=False)
    with rasterio.open(local_run.class_path) as ds:
        np.testing.assert_array_equal(ds.read(1), out)
    again = predict_raster(f"gs://{gcs_bucket}/stacks/stack.tif", f"gs://{gcs_bucket}/out/isa",
                           p, OutputInfo("m", BANDS), config, progress=False)
    assert again.skipped


def test_a_refused_resume_read_stops_instead_of_predicting_again(gcs_emulator, gcs_bucket,
                                                                  tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = write_stack(tmp_path / "stack.tif", smooth_stack(96, 96))
    p = TilePredictor(conv1x1(), np.zeros(6), np.ones(6),
                      options=RuntimeOptions(precision="fp32", channels_last="on"))
    config = PredictConfig(tile=64, overlap=16, strip_rows=64)
    out = f"gs://{gcs_bucket}/refused/isa"
    predict_raster(str(local), out, p, OutputInfo("m", BANDS), config, progress=False)
    blob = gcs_emulator.client().bucket(gcs_bucket).get_blob("refused/isa_prob.tif")
    with FaultyGcs(gcs_emulator.host) as proxy:  # the bucket now refuses GDAL's reads
        proxy.fail("GET", f"/{gcs_bucket}/refused/", times=100, status=403)
        proxy.fail("HEAD", f"/{gcs_bucket}/refused/", times=100, status=403)
        monkeypatch.setenv("CPL_GS_ENDPOINT", proxy.url + "/")
        with pytest.raises(StorageCredentialsError, match="refused to let GDAL read"):
            predict_raster(str(local), out, p, OutputInfo("m", BANDS), config, progress=False)
    again = gcs_emulator.client().bucket(gcs_bucket).get_blob("refused/isa_prob.tif")
    assert again.generation == blob.generation  # nothing predicted or uploaded again
