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


def test_a_client_that_waits_does_not_stall_the_emulator_for_the_others(gcs_emulator,
                                                                         gcs_bucket):
    # Cloud Storage serves connections independently; the emulator's own server took one at a
    # time, so a connection opened and left silent (here a raw socket) held every other client
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(gcs_emulator.host)
    silent = [socket.create_connection((parts.hostname, parts.port)) for _ in range(8)]
    try:
        blob = gcs_emulator.client().bucket(gcs_bucket).blob("while/waiting.txt")
        blob.upload_from_string(b"served", timeout=10, retry=None)
        assert blob.download_as_bytes(timeout=10, retry=None) == b"served"
    finally:
        for sock in silent:
            sock.close()
