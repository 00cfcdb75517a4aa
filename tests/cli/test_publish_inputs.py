"""``isamap-publish``'s inputs and output folder, judged before anything is written or sent.

A wrong kind of file (a text file, a folder) as a COG or as ``--metrics`` is bad input naming
its flag (exit 2), not an environment failure in GDAL's words; a truncated COG is refused
before the manifest is saved; a folder the manifest cannot be saved in is named with
``--out-dir``; a ``--gcs-prefix`` whose bucket name Cloud Storage refuses is named before any
work.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from cli.publish import publish_main, publish_parser
from tests.support.faults import python, run_without_write_permission
from tests.support.refusals import case, named_options


def _untagged(src: str, dst: Path) -> str:
    """A copy of ``src``'s pixels and grid without isamap's tags (another tool's export)."""
    import rasterio

    with rasterio.open(src) as ds:
        profile = {k: ds.profile[k] for k in ("width", "height", "transform", "crs", "nodata")}
        data = ds.read(1)
    with rasterio.open(dst, "w", driver="GTiff", count=1, dtype="uint8", **profile) as out:
        out.write(data, 1)
    return str(dst)


#: the asset and project of a row that does not give them
ASSET = "--asset-id isamap/x --project my-project"


@pytest.fixture(scope="module")
def refusal_inputs(module_cogs, tmp_path_factory) -> dict[str, str]:
    """What the rows of :func:`test_refusals` name, built once: the COGs (``class_cog``,
    ``prob_cog``, their ``prefix``), copies without isamap's tags (``untagged_class``,
    ``untagged_prob``), a truncated class COG (``cut``), a text file and a folder."""
    root = tmp_path_factory.mktemp("refusals")
    (root / "notes.txt").write_text("hello\n")
    (root / "adir").mkdir()
    shutil.copy(module_cogs.class_path, root / "cut_class.tif")
    with open(root / "cut_class.tif", "r+b") as handle:  # its headers whole
        handle.truncate((root / "cut_class.tif").stat().st_size * 2 // 3)
    shutil.copy(module_cogs.prob_path, root / "cut_prob.tif")
    return {"class_cog": module_cogs.class_path, "prob_cog": module_cogs.prob_path,
            "prefix": module_cogs.class_path.removesuffix("_class.tif"),
            "untagged_class": _untagged(module_cogs.class_path, root / "c.tif"),
            "untagged_prob": _untagged(module_cogs.prob_path, root / "p.tif"),
            "notes": str(root / "notes.txt"), "adir": str(root / "adir"), "cut": str(root / "cut"),
            "absent": str(root / "isa")}


@pytest.mark.xdist_group("cli.test_publish_inputs.refusals")  # its inputs are built once
@pytest.mark.parametrize("argv, says", [
    # the maps: absent, unreadable, or of another kind
    case("prefix-absent", f"--prefix {{absent}} {ASSET}",
         "--prefix {absent}: {absent}_class.tif does not exist"),
    case("class-cog-absent", f"--class-cog {{absent}}_c.tif --prob-cog {{absent}}_p.tif {ASSET}",
         "--class-cog {absent}_c.tif does not exist"),
    case("class-cog-a-text-file", f"--class-cog {{notes}} --prob-cog {{prob_cog}} {ASSET}",
         "--class-cog {notes} ... it is not a raster ... _class.tif"),
    case("class-cog-a-folder", f"--class-cog {{adir}} --prob-cog {{prob_cog}} {ASSET}",
         "--class-cog {adir} ... is a folder, not a file"),
    case("class-cog-truncated", f"--prefix {{cut}} {ASSET}",  # passed with a manifest
         "--class-cog {cut}_class.tif cannot be read ... truncated"),
    case("untagged-probability-as-class", f"--class-cog {{untagged_prob}} --prob-cog "
         f"{{untagged_class}} {ASSET}", "--class-cog {untagged_prob} holds codes [ ... beyond "
         "the 2 classes ... so it is not a class map of them; give the map's _class.tif"),
    case("untagged-class-as-probability", f"--class-cog {{class_cog}} --prob-cog "
         f"{{untagged_class}} {ASSET}", "--prob-cog {untagged_class} holds only the values 0 "
         "and 1 ... where --class-cog {class_cog} maps impervious pixels ... give the map's "
         "_prob.tif"),
    case("metrics-absent", f"--prefix {{prefix}} --metrics {{absent}}.json {ASSET}",
         "--metrics {absent}.json does not exist"),
    case("metrics-a-folder", f"--prefix {{prefix}} --metrics {{adir}} {ASSET}",
         "--metrics {adir} is a folder ... give a JSON file"),
    # where the maps go
    case("no-project", "--prefix {prefix} --asset-id isamap/wuhan --gcs-prefix gs://maps/isa",
         "--project"),
    case("asset-id-with-a-space", "--prefix {prefix} --asset-id "
         "'projects/my-proj/assets/my maps/isa'", "isamap-publish: error: asset id "
         "'projects/my-proj/assets/my maps/isa' is not a valid Earth Engine asset name: the "
         "name 'my maps' holds a space; asset and folder names take only letters, digits, '_' "
         "and '-'"),
    case("bucket-name-of-one-character", f"--prefix {{prefix}} --gcs-prefix gs://b/isamap "
         f"{ASSET}", "--gcs-prefix gs://b/isamap ... bucket name 'b' is 1 character long ... "
         "3-63 characters"),  # it printed the whole plan first, naming no flag
])
def test_refusals(refusal_inputs, tmp_path, capsys, argv, says):
    """Each row: ``isamap-publish --dry-run`` with the row's words, refused with exit 2 in one
    line holding each part of ``says`` (parts joined by `` ... ``), in the tool's words (not
    rasterio's pointer to them) and naming options it has; no plan printed, nothing saved."""
    paths = {**refusal_inputs, "out": str(tmp_path / "pub")}
    words = [word.format(**paths) for word in shlex.split(argv)]
    status = publish_main([*words, "--dry-run", "--quiet", "--out-dir", paths["out"]])
    captured = capsys.readouterr()
    assert status == 2 and len(captured.err.strip().splitlines()) == 1, captured.err
    assert captured.err.startswith("isamap-publish: error: "), captured.err
    assert all(part.format(**paths) in captured.err for part in says.split(" ... ")), captured.err
    assert "previous exception" not in captured.err and captured.out == ""
    known = {o for action in publish_parser()._actions for o in action.option_strings}
    assert named_options(captured.err) <= known
    assert not (tmp_path / "pub").exists()


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


def test_untagged_cogs_in_their_places_are_published(module_cogs, tmp_path):
    """Without isamap's tags the pixels tell a class map from a probability (test_refusals:
    swapped, they are refused)."""
    cls = _untagged(module_cogs.class_path, tmp_path / "c.tif")
    prob = _untagged(module_cogs.prob_path, tmp_path / "p.tif")
    for class_cog in (cls, module_cogs.class_path):
        assert publish_main(["--class-cog", class_cog, "--prob-cog", prob, "--asset-id",
                             "isamap/x", "--project", "my-project", "--dry-run", "--quiet",
                             "--out-dir", str(tmp_path / "pub")]) == 0
