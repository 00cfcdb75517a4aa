"""The fixtures themselves work: a real GCS round trip and an offline ee graph."""


def test_gcs_emulator_round_trip(gcs_emulator, gcs_bucket):
    bucket = gcs_emulator.client().bucket(gcs_bucket)
    bucket.blob("a/b.txt").upload_from_string(b"hello")
    assert bucket.blob("a/b.txt").download_as_bytes() == b"hello"
    assert [b.name for b in gcs_emulator.client().list_blobs(gcs_bucket)] == ["a/b.txt"]


def test_ee_offline_serializes_and_refuses_server_calls(ee_offline):
    import pytest

    ee = ee_offline
    col = ee.ImageCollection("COPERNICUS/S1_GRD_FLOAT")
    img = col.filterDate("2019-06-01", "2019-07-01").mean()
    assert "COPERNICUS/S1_GRD_FLOAT" in img.serialize()
    with pytest.raises(ee.EEException):
        img.getInfo()
