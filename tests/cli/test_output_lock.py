"""One run per output folder, for every command that writes one (``claim_output_folder``).

Two ``isamap-evaluate`` runs into one ``--out`` at once: one printed the other's figures for
its own model; two ``isamap-assess score`` runs left one run's report.json beside the other's
report.png. Every command that writes a folder claims it at one place
(``core.commands.claim_output_folder``, released when ``run_command`` ends): a second run into
a folder another run holds is refused in one line naming the holder (exit 1) and writes
nothing there. ``isamap-fit`` (tests/cli/test_fit.py), ``-train``, ``-map`` and ``-export``
have their own tests of the same lock.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cli import assess, demo, evaluate, prune, publish
from tests.support.assess import labelled_as_the_map
from tests.support.lock_holder import files_under, held_elsewhere


def _design_argv(places: Path, out: Path) -> list[str]:
    return ["design", "--map", str(places / "map_class.tif"), "--n", "20", "--out", str(out),
            "-q"]


def _score_argv(places: Path, out: Path) -> list[str]:
    return ["score", "--map", str(places / "map_class.tif"), "--reference",
            str(places / "labelled.csv"), "--out", str(out), "-q"]


#: each command with arguments it would run with (the model and dataset of evaluate and prune
#: are never read: the folder is claimed first)
CASES: dict[str, tuple[Callable[[list[str]], int], Callable[[Path, Path], list[str]]]] = {
    "evaluate": (evaluate.evaluate_main, lambda places, out: [
        "--model", str(places / "m.pt"), "--data", str(places / "data"), "--out", str(out)]),
    "assess design": (assess.main, _design_argv),
    "assess score": (assess.main, _score_argv),
    "prune": (prune.prune_main, lambda places, out: [
        "--model", str(places / "m.pt"), "--data", str(places / "data"), "--out", str(out)]),
    "demo": (demo.main, lambda places, out: ["--out", str(out), "--until", "scene"]),
    "publish": (publish.publish_main, lambda places, out: [
        "--class-cog", str(places / "map_class.tif"), "--prob-cog", str(places / "map_class.tif"),
        "--asset-id", "users/someone/isa", "--dry-run", "--out-dir", str(out)]),
}


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> Path:
    """A class map, a design of it labelled as the map: what design and score run on."""
    from tests.support.assess import synthetic_scene

    root = tmp_path_factory.mktemp("places")
    scene = synthetic_scene(root, size=120)
    assert assess.main(_design_argv(root, root / "design")) == 0
    labelled_as_the_map(root / "design", root / "labelled.csv")
    (root / "m.pt").write_bytes(b"")
    (root / "data").mkdir()
    assert scene.map_path == root / "map_class.tif"
    return root


@pytest.mark.parametrize("case", list(CASES))
def test_a_second_run_into_a_held_folder_is_refused_and_writes_nothing(case, places, tmp_path,
                                                                       capsys):
    main, argv = CASES[case]
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("the other run's file")
    capsys.readouterr()
    with held_elsewhere(out) as holder:
        before = files_under(out)  # the other run's file and its lock
        assert main(argv(places, out)) == 1
        err = capsys.readouterr().err
        assert files_under(out) == before
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"isamap-{case}: error: {out} is in use by another isamap run "
                               f"(pid {holder.pid} "), lines[0]
    if case.startswith("assess"):  # the holder gone, the same command runs and lets go
        assert main(argv(places, out)) == 0
        assert not (out / ".isamap.lock").exists()

