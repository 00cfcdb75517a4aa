"""The storage seam on a local folder and on the real GCS client against the emulator."""

from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from google.api_core import exceptions as gexc

from contract.geotiff import write_geotiff
from contract.grid import Grid
from core.errors import ChecksumMismatchError, ConfigError, StorageError
from core.storage import (
    TEMP_MARK,
    BucketInfo,
    GcsStore,
    LocalStore,
    atomic_write,
    file_md5_b64,
    md5_b64,
    open_store,
    with_retries,
)
from tests.support import REPO_ROOT
from tests.support.gcs_faults import FaultyGcs


@pytest.fixture(params=["local", "gcs"])
def store(request, tmp_path):
    if request.param == "local":
        return open_store(tmp_path / "root")
    bucket = request.getfixturevalue("gcs_bucket")
    return open_store(f"gs://{bucket}/some/prefix")



def test_open_store_picks_backend(tmp_path, gcs_bucket):
    assert isinstance(open_store(tmp_path), LocalStore)
    gcs = open_store(f"gs://{gcs_bucket}/a/b/")
    assert isinstance(gcs, GcsStore) and gcs.is_remote
    assert gcs.url("x/y.tif") == f"gs://{gcs_bucket}/a/b/x/y.tif"
    assert gcs.gdal_path("x/y.tif") == f"/vsigs/{gcs_bucket}/a/b/x/y.tif"
    assert open_store(gcs) is gcs
    with pytest.raises(StorageError, match="only local paths and gs://"):
        open_store("s3://bucket/key")
    with pytest.raises(StorageError, match="names no bucket"):
        open_store("gs:///prefix")


def test_round_trip_and_listing(store):
    assert not store.exists("a/b.txt")
    store.write_bytes("a/b.txt", b"hello")
    store.write_bytes("a/c/d.bin", bytes(range(256)))
    store.write_bytes("top.json", b"{}")
    assert store.exists("a/b.txt")
    assert store.read_bytes("a/c/d.bin") == bytes(range(256))
    assert store.list() == ["a/b.txt", "a/c/d.bin", "top.json"]
    assert store.list("a/") == ["a/b.txt", "a/c/d.bin"]
    assert store.list("a/c/") == ["a/c/d.bin"]
    assert store.list("nothing/") == []
    assert store.md5("a/b.txt") == md5_b64(b"hello")
    store.write_bytes("a/b.txt", b"replaced")  # overwrite is the default
    assert store.read_bytes("a/b.txt") == b"replaced"
    with pytest.raises(StorageError, match="overwrite=False"):
        store.write_bytes("a/b.txt", b"again", overwrite=False)
    assert store.read_bytes("a/b.txt") == b"replaced"
    store.delete("a/b.txt")
    store.delete("a/b.txt")  # deleting a missing file is not an error
    assert not store.exists("a/b.txt")
    with pytest.raises(StorageError):
        store.read_bytes("a/b.txt")
    with pytest.raises(StorageError, match="not a path inside"):
        store.write_bytes("../escape.txt", b"x")


def test_file_upload_and_download(store, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(np.random.default_rng(0).bytes(300_000))
    store.upload_file(src, "files/src.bin")
    assert store.read_bytes("files/src.bin") == src.read_bytes()
    out = tmp_path / "down" / "copy.bin"
    store.download_file("files/src.bin", out)
    assert out.read_bytes() == src.read_bytes()
    assert not list(out.parent.glob(f"*{TEMP_MARK}*"))


def test_write_detects_bytes_changed_after_checksum(store):
    data = bytearray(b"patch bytes " * 1000)
    checksum = md5_b64(bytes(data))
    data[100] ^= 0xFF  # corrupted between computing the checksum and uploading
    with pytest.raises(ChecksumMismatchError, match="md5"):
        store.write_bytes("corrupt.bin", bytes(data), expected_md5=checksum)
    assert not store.exists("corrupt.bin"), "a corrupt object must not be left behind"
    store.write_bytes("ok.bin", bytes(data), expected_md5=md5_b64(bytes(data)))
    assert store.read_bytes("ok.bin") == bytes(data)


def test_local_write_is_atomic_and_leaves_no_temporaries(tmp_path):
    store = LocalStore(tmp_path)
    store.write_bytes("x/y.bin", b"1")

    class Boom(Exception):
        pass

    def fail(handle):
        handle.write(b"partial")
        raise Boom

    with pytest.raises(Boom):
        atomic_write(store.path("x/y.bin"), fail)
    assert store.read_bytes("x/y.bin") == b"1"
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["y.bin"]
    # a temporary left by a killed writer is invisible to list() and removable
    (tmp_path / "x" / f".z.bin{TEMP_MARK}123").write_bytes(b"half")
    assert store.list() == ["x/y.bin"]
    assert store.remove_temporaries("x") == 1
    # an earlier isamap's work folders (before their names carried TEMP_MARK) go too, whole;
    # a file of such a name is not one of them
    for name in (".isamap-change-k2j3", ".isamap-consistent-9x8y"):
        (tmp_path / "x" / name).mkdir()
        (tmp_path / "x" / name / "0.tif").write_bytes(b"half")
    (tmp_path / "x" / ".isamap-change-notes.txt").write_bytes(b"mine")
    assert store.remove_temporaries("x") == 2
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [".isamap-change-notes.txt",
                                                                  "y.bin"]


def test_an_atomic_write_onto_a_folder_names_the_folder_and_leaves_nothing(tmp_path):
    """The rename at the end failed with an OSError naming the temporary; the folder in the
    way is now named as bad input before anything is written."""
    (tmp_path / "out.json").mkdir()
    with pytest.raises(ConfigError, match=r"out\.json is a folder where isamap writes a file"):
        atomic_write(tmp_path / "out.json", lambda fh: fh.write(b"{}"))
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_writes_never_list_the_folder(tmp_path, monkeypatch):
    """A write costs the same beside any number of files: its temporary and the GDAL sidecars
    written beside it are removed by their own names, on success and on failure alike."""
    import os

    from core.storage import atomic_path

    folder = tmp_path / "patches" / "2019-06"
    grid = Grid("EPSG:32650", 238000.0, 3385000.0, 8, 8)

    def listed(*_args, **_kwargs):
        raise AssertionError("an atomic write listed a folder")

    monkeypatch.setattr(os, "scandir", listed)
    monkeypatch.setattr(os, "listdir", listed)
    with atomic_path(folder / "r0_c0.tif") as tmp:
        write_geotiff(tmp, np.ones((1, 8, 8), np.float32), grid.transform, grid.crs, None)
        sidecar = tmp.with_name(tmp.name + ".aux.xml")  # as GDAL writes its PAM metadata
        sidecar.write_text("<PAMDataset/>")
    with pytest.raises(RuntimeError), atomic_path(folder / "r0_c1.tif") as tmp:
        tmp.write_bytes(b"half")
        tmp.with_name(tmp.name + ".ovr").write_bytes(b"overviews")
        raise RuntimeError("the writer failed")
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == ["r0_c0.tif"]
    assert not tmp.exists() and not sidecar.exists()


def test_retries_transient_errors_then_gives_up():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise gexc.ServiceUnavailable("busy")
        return "ok"

    delays: list[float] = []
    assert with_retries(flaky, what="op", sleep=delays.append) == "ok"
    assert len(calls) == 3 and len(delays) == 2 and all(d >= 0 for d in delays)

    def always():
        raise gexc.TooManyRequests("slow down")

    with pytest.raises(StorageError, match="failed 4 times"):
        with_retries(always, what="uploading x", attempts=4, sleep=lambda _: None)


def test_gdal_reads_uploaded_geotiff_through_vsigs(gcs_bucket, tmp_path):
    grid = Grid("EPSG:32650", 238000.0, 3385000.0, 64, 48)
    data = np.arange(64 * 48, dtype=np.float32).reshape(1, 48, 64)
    local = write_geotiff(tmp_path / "r.tif", data, grid.transform, grid.crs, float("nan"),
                          descriptions=["B2"])
    store = open_store(f"gs://{gcs_bucket}/rasters")
    store.upload_file(local, "r.tif")
    assert file_md5_b64(local) == store.md5("r.tif")
    with rasterio.open(store.gdal_path("r.tif")) as src:
        assert src.crs.to_epsg() == 32650
        assert src.descriptions == ("B2",)
        np.testing.assert_array_equal(src.read(), data)


def test_bucket_info_reads_location_and_class_with_retries(gcs_emulator, gcs_bucket):
    # gcp-storage-emulator creates every bucket as location "US", locationType
    # "multi-region", storageClass "STANDARD", without dataLocations (its bucket
    # handlers); hard-coded so the expectation does not come from the same read
    store = GcsStore(f"gs://{gcs_bucket}/any/prefix", client=gcs_emulator.client())
    assert store.bucket_info() == BucketInfo(name=gcs_bucket, location="US",
                                             location_type="multi-region",
                                             storage_class="STANDARD", data_locations=())
    bucket = gcs_emulator.client().get_bucket(gcs_bucket)
    bucket.storage_class = "NEARLINE"
    bucket.patch()
    with FaultyGcs(gcs_emulator.host) as proxy:
        proxy.fail("GET", f"/b/{gcs_bucket}\\?", times=1)  # the bucket's metadata: one 503
        info = GcsStore(f"gs://{gcs_bucket}/any/prefix", client=proxy.client()).bucket_info()
    assert proxy.statuses("GET", f"/b/{gcs_bucket}\\?") == [503, 200]  # the 503 was retried
    assert info == BucketInfo(name=gcs_bucket, location="US", location_type="multi-region",
                              storage_class="NEARLINE", data_locations=())
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.location = "EU"  # type: ignore[misc]
    with pytest.raises(StorageError, match="not found"):
        GcsStore("gs://no-such-bucket-isamap", client=gcs_emulator.client()).bucket_info()


def test_one_retry_loop_per_request_the_service_sees(gcs_emulator, gcs_bucket):
    """Our loop is the only one: ``attempts`` is exactly the number of requests sent.

    Were the client's own retry (google.api_core's DEFAULT_RETRY, 120 s) left on inside our
    loop, it would absorb the injected 503s itself: the service would see more requests than
    ``attempts`` and a read meant to fail would succeed.
    """
    gcs_emulator.client().bucket(gcs_bucket).blob("p/x.bin").upload_from_string(b"payload")
    obj = r"/o/p%2Fx\.bin"
    with FaultyGcs(gcs_emulator.host) as proxy:
        store = GcsStore(f"gs://{gcs_bucket}/p", client=proxy.client(), attempts=3)
        proxy.fail("GET", obj, times=2)
        assert store.read_bytes("x.bin") == b"payload"
        assert proxy.statuses("GET", obj) == [503, 503, 200]
        proxy.fail("GET", obj, times=3)
        with pytest.raises(StorageError, match=r"reading .*x\.bin failed 3 times"):
            store.read_bytes("x.bin")
        assert proxy.statuses("GET", obj)[3:] == [503, 503, 503]  # three, not one more
        proxy.fail("POST", r"/upload/", times=1)  # a generation-conditional upload, too
        store.write_bytes("y.bin", b"second")
        assert proxy.statuses("POST", r"/upload/") == [503, 200]
    assert open_store(f"gs://{gcs_bucket}/p").read_bytes("y.bin") == b"second"


def test_every_client_call_runs_once_inside_our_loop():
    """Each google-cloud-storage call in the store passes retry=None and a timeout."""
    calls = {"exists", "download_as_bytes", "upload_from_string", "upload_from_filename",
             "download_to_filename", "reload", "delete", "get_blob", "get_bucket", "list_blobs"}
    source = (REPO_ROOT / "core/storage/gcs.py").read_text()
    unbounded = [f"gcs.py:{node.lineno} {node.func.attr}" for node in ast.walk(ast.parse(source))
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                 and node.func.attr in calls
                 and not any(k.arg is None and ast.unparse(k.value) == "self._once"
                             for k in node.keywords)]
    assert unbounded == []


def _sources_below_the_top(root):
    """``root.glob("*/**/*.py")`` outside any virtual environment (``.venv``, and the
    ``.venv-min`` of ``make test-min``), without walking one first (its thousands of files
    took ~6 s of the test, and its packages are not the project's)."""
    for top in sorted(root.iterdir()):
        if not top.is_dir() or top.name.startswith(".venv"):
            continue
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".venv"))
            yield from (Path(folder) / f for f in sorted(files) if f.endswith(".py"))


def test_no_module_imports_private_names_of_the_storage_seam():
    """Other packages use the seam's public API only (private helpers may change freely)."""
    root = REPO_ROOT
    offenders = []
    for path in _sources_below_the_top(root):
        if path.name == "storage.py":
            continue
        text = path.read_text()
        if "storage" not in text:  # both offences below spell it: nothing to parse
            continue
        for node in ast.walk(ast.parse(text)):
            if (isinstance(node, ast.ImportFrom) and node.module == "core.storage"
                    and any(alias.name.startswith("_") for alias in node.names)):
                offenders.append(str(path.relative_to(root)))
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id == "storage"):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


_SLOW_WRITER = """
import sys, time
from core.storage import atomic_write

def fill(handle):
    handle.write(b"x" * 65536)
    handle.flush()
    print("writing", flush=True)
    time.sleep(60)  # killed here, mid-write

atomic_write(sys.argv[1], fill)
"""


def test_a_writer_killed_mid_write_leaves_only_a_recognised_temporary(tmp_path):
    """SIGKILL (no finally, no atexit) in the middle of an atomic write, in a real process."""
    import os
    import signal
    import subprocess
    import sys

    target = tmp_path / "out" / "result.tif"
    target.parent.mkdir()
    target.write_bytes(b"previous version")
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"previous version"  # readers never saw half a file
    leftovers = [p.name for p in target.parent.iterdir() if p != target]
    assert len(leftovers) == 1 and TEMP_MARK in leftovers[0] and leftovers[0].endswith(".tif")
    assert LocalStore(tmp_path).remove_temporaries() == 1
    assert [p.name for p in target.parent.iterdir()] == ["result.tif"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_files_get_the_umask_mode_not_0600(tmp_path, umask):
    import os

    old = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "shared.bin", lambda handle: handle.write(b"data"))
        LocalStore(tmp_path).write_bytes("sub/other.bin", b"data")
    finally:
        os.umask(old)
    for item in (path, tmp_path / "sub" / "other.bin"):
        assert item.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_file_given_for_a_folder_is_bad_input_naming_the_folder(tmp_path):
    """isamap-evaluate --data dataset/index.jsonl exited 1 with 'a store needs a directory'
    (a new user's walk): a path the user typed wrong is exit 2, saying what to give."""
    (tmp_path / "index.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError, match=r"index.jsonl is a file where a folder is needed; "
                                          r"give a folder, such as the one holding it "):
        LocalStore(tmp_path / "index.jsonl")


@pytest.mark.parametrize(("name", "problem"), [
    ("my-bucket", None), ("a_b.c-1", None), ("abc", None), ("a" * 63, None),
    ("a." + "b" * 60 + ".c", None),
    ("b", "is 1 character long; bucket names are 3-63 characters"),
    ("a" * 64, "is 64 characters long"),
    ("a." + "b" * 64, "at most 63 between two dots"),
    ("My-Bucket", "holds 'MB'; bucket names hold only lower-case letters"),
    ("-abc", "must begin and end with a letter or digit"),
    ("192.168.5.4", "is an IP address"),
    ("goog-maps", "may not begin with 'goog'"), ("my-google-maps", "nor hold 'google'"),
])
def test_bucket_names_follow_cloud_storages_rules(name, problem):
    """The one owner of the rule: ``--gcs-prefix gs://b/...`` was taken until the manifest."""
    from core.storage.files import bucket_name_problem

    found = bucket_name_problem(name)
    assert (found is None) if problem is None else (problem in (found or "")), found


def test_a_folder_named_tilde_is_one_folder_for_the_store_the_lock_and_the_names(
        tmp_path, monkeypatch):
    """``--out=~/runs`` (the shell leaves it) is ``./~/runs`` for every part of a command.

    The store expanded ``~`` while the commands' own paths did not: a run's lock (and what it
    wrote through the store) went under the home folder, the rest under ``./~``.
    """
    from core.lock import hold_output
    from core.shareable import portable_path, shareable_path

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    store = open_store("~/runs")
    store.write_bytes("a.txt", b"x")
    with hold_output("~/runs"):
        assert (work / "~" / "runs" / ".isamap.lock").is_file()
    assert (work / "~" / "runs" / "a.txt").read_bytes() == b"x"
    assert not any(home.iterdir())  # nothing under the home folder
    assert shareable_path("~/runs/a.txt", "~/runs") == "a.txt"
    assert portable_path("~/runs/a.txt", "~/runs") == "a.txt"
