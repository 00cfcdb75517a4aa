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
    # time from a queue of five, so connections opened and left silent (here raw sockets) held
    # every other client, and connects past the queue hung (hence their timeout)
    import socket
    from contextlib import ExitStack
    from urllib.parse import urlsplit

    parts = urlsplit(gcs_emulator.host)
    with ExitStack() as silent:
        for _ in range(8):
            silent.enter_context(socket.create_connection((parts.hostname, parts.port),
                                                          timeout=5))
        blob = gcs_emulator.client().bucket(gcs_bucket).blob("while/waiting.txt")
        blob.upload_from_string(b"served", timeout=10, retry=None)
        assert blob.download_as_bytes(timeout=10, retry=None) == b"served"


def test_modules_with_a_slow_test_are_collected_first_and_kept_whole(request):
    """This session's own order (tests/conftest.py): every module holding a ``slow`` test
    comes before the others, and no module's tests are split apart by another's."""
    modules = [item.module.__name__ for item in request.session.items if hasattr(item, "module")]
    slow = {item.module.__name__ for item in request.session.items
            if item.get_closest_marker("slow") and hasattr(item, "module")}
    runs = [m for i, m in enumerate(modules) if i == 0 or modules[i - 1] != m]
    assert len(runs) == len(set(runs)), "a module's tests were split apart"
    if slow and len(set(modules)) > len(slow):  # the whole suite, not a file run alone
        assert set(runs[:len(slow)]) == slow
