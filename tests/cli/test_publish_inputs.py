"""``isamap-publish``'s inputs and output folder, judged before anything is written or sent.

A wrong kind of file (a text file, a folder) as a COG or as ``--metrics`` is bad input naming
its flag (exit 2), not an environment failure in GDAL's words; a truncated COG is refused
before the manifest is saved; a folder the manifest cannot be saved in is named with
``--out-dir``; a ``--gcs-prefix`` whose bucket name Cloud Storage refuses is named before any
work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cli.publish import publish_main, publish_parser
from tests.support.faults import python, run_without_write_permission
from tests.support.refusals import assert_refused


def _publish(*argv: str) -> int:
    return publish_main([*argv, "--asset-id", "isamap/x", "--project", "my-project",
                         "--dry-run", "--quiet"])


def test_a_wrong_kind_of_input_names_its_flag(cogs, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    folder = tmp_path / "adir"
    folder.mkdir()
    for given, words in ((text, ("it is not a raster", "_class.tif")),
                         (folder, ("is a folder, not a file",))):
        status = _publish("--class-cog", str(given), "--prob-cog", cogs.prob_path)
        assert_refused(status, capsys.readouterr().err, publish_parser(),
                       f"--class-cog {given}", *words)
    prefix = cogs.class_path.removesuffix("_class.tif")
    status = _publish("--prefix", prefix, "--metrics", str(folder), "--out-dir",
                      str(tmp_path / "pub"))
    assert_refused(status, capsys.readouterr().err, publish_parser(),
                   f"--metrics {folder} is a folder", "give a JSON file")
    assert not (tmp_path / "pub").exists()


def test_a_truncated_cog_is_refused_before_anything_is_saved(cogs, tmp_path, capsys):
    """A class COG cut short (its headers whole) passed the dry run with a manifest."""
    here = tmp_path / "cut"
    here.mkdir()
    cut = here / "cut_class.tif"
    shutil.copy(cogs.class_path, cut)
    with open(cut, "r+b") as handle:
        handle.truncate(cut.stat().st_size * 2 // 3)
    shutil.copy(cogs.prob_path, here / "cut_prob.tif")
    status = _publish("--prefix", str(here / "cut"))
    line = assert_refused(status, capsys.readouterr().err, publish_parser(),
                          f"--class-cog {cut} cannot be read", "truncated")
    assert "previous exception" not in line  # GDAL's words, not rasterio's pointer to them
    assert sorted(p.name for p in here.iterdir()) == ["cut_class.tif", "cut_prob.tif"]


def test_a_folder_the_manifest_cannot_be_saved_in_names_out_dir(cogs, tmp_path):
    """Beside read-only COGs the dry run failed with 'permission denied' and no way out."""
    folder = tmp_path / "ro"
    folder.mkdir()
    for path in (cogs.class_path, cogs.prob_path):
        shutil.copy(path, folder / Path(path).name)
    prefix = str(folder / Path(cogs.class_path).name.removesuffix("_class.tif"))
    done = run_without_write_permission(
        python("-c", "import sys; from cli.publish import publish_main; "
               "sys.exit(publish_main(sys.argv[1:]))", "--prefix", prefix, "--asset-id", "isamap/x",
               "--project", "my-project", "--dry-run"), folder)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "give --out-dir DIR" in lines[0] and str(folder) in lines[0]


def test_a_bucket_name_cloud_storage_refuses_names_gcs_prefix_before_any_work(cogs, tmp_path,
                                                                             capsys):
    """gs://b/isamap printed the whole plan, then 'invalid Earth Engine image manifest: ...
    uri ... is not gs://bucket/object', naming neither --gcs-prefix nor the rule."""
    prefix = cogs.class_path.removesuffix("_class.tif")
    status = _publish("--prefix", prefix, "--gcs-prefix", "gs://b/isamap", "--out-dir",
                      str(tmp_path / "pub"))
    captured = capsys.readouterr()
    assert_refused(status, captured.err, publish_parser(), "--gcs-prefix gs://b/isamap",
                   "bucket name 'b' is 1 character long", "3-63 characters")
    assert captured.out == "" and not (tmp_path / "pub").exists()  # no plan, nothing saved


def _untagged(src: str, dst: Path) -> str:
    """A copy of ``src``'s pixels and grid without isamap's tags (another tool's export)."""
    import rasterio

    with rasterio.open(src) as ds:
        profile = {k: ds.profile[k] for k in ("width", "height", "transform", "crs", "nodata")}
        data = ds.read(1)
    with rasterio.open(dst, "w", driver="GTiff", count=1, dtype="uint8", **profile) as out:
        out.write(data, 1)
    return str(dst)


def test_an_untagged_probability_as_the_class_cog_is_refused_by_its_pixels(cogs, tmp_path,
                                                                           capsys):
    """The two COGs swapped, their tags gone: the dry run wrote a manifest publishing the
    probability as the class band (exit 0); its codes above 1 tell it is no class map."""
    cls = _untagged(cogs.class_path, tmp_path / "c.tif")
    prob = _untagged(cogs.prob_path, tmp_path / "p.tif")
    out = tmp_path / "pub"
    status = _publish("--class-cog", prob, "--prob-cog", cls, "--out-dir", str(out))
    assert_refused(status, capsys.readouterr().err, publish_parser(),
                   f"--class-cog {prob} holds codes [", "beyond the 2 classes",
                   "so it is not a class map of them; give the map's _class.tif")
    assert not out.exists()
    assert _publish("--class-cog", cls, "--prob-cog", prob, "--out-dir", str(out)) == 0


def test_an_untagged_class_map_as_the_prob_cog_is_refused_by_its_pixels(cogs, tmp_path,
                                                                        capsys):
    """The class COG's copy without tags given as --prob-cog: the dry run published a
    probability of 0.4 % at most beside impervious pixels (exit 0)."""
    copy = _untagged(cogs.class_path, tmp_path / "c.tif")
    out = tmp_path / "pub"
    status = _publish("--class-cog", cogs.class_path, "--prob-cog", copy, "--out-dir", str(out))
    assert_refused(status, capsys.readouterr().err, publish_parser(),
                   f"--prob-cog {copy} holds only the values 0 and 1",
                   f"where --class-cog {cogs.class_path} maps impervious pixels",
                   "give the map's _prob.tif")
    assert not out.exists()
    prob = _untagged(cogs.prob_path, tmp_path / "p.tif")
    assert _publish("--class-cog", cogs.class_path, "--prob-cog", prob, "--out-dir",
                    str(out)) == 0
