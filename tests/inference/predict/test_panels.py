"""A wide map made in panels has every bit of the map made at the whole width.

The oracle is exact: the whole-width path (one panel: the accumulator, the checkpoint strips and
the COG encoders span the raster's width, as before panels) and the panel path run on the same
stack with the same model and precision give equal classes and probabilities at every COG
level, the streamed COGs byte for byte, both valid COGs. The stack takes several panels whose
edges fall inside COG tiles, has a nodata hole across a panel edge, and the model's output
depends on its whole tile (a pixel's contributions must be summed in the same order).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import rasterio

from inference.cog.maps import NODATA, OutputInfo
from inference.predict import blending, sliding_window
from inference.predict import writer as writer_module
from inference.predict.lattice import Lattice
from inference.predict.panels import column_blocks, panels
from inference.predict.raster import PredictConfig, predict_raster
from inference.predict.runtime import RuntimeOptions, TilePredictor
from inference.predict.sources import WindowSource
from tests.support.models import SuperRes, TileContext
from tests.support.rasters import (
    BANDS,
    assert_same_bytes,
    assert_valid_cog,
    cog_levels,
    smooth_stack,
    write_stack,
)

FP32 = RuntimeOptions(precision="fp32", channels_last="on")
INFO = OutputInfo("tile-context", BANDS)
#: input pixels per panel in these tests: a 1,536 px wide stack takes six
PANEL_PX = 300


class Crash(RuntimeError):
    pass


#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.predict.test_panels")


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    data = smooth_stack(320, 1536, seed=7)  # the width takes the panels
    data[1, 200:260, 270:330] = np.nan  # a hole across the first panels' edge
    return write_stack(tmp_path_factory.mktemp("wide") / "wide.tif", data)


def _run(monkeypatch, src, out, *, whole: bool, model=None, scale=1, writer="stream",
         blend="cosine", crash_after: int | None = None, blended: list | None = None,
         **options):
    """A map of ``src`` in panels of :data:`PANEL_PX` (``whole``: one panel, the oracle).

    ``blended``: receives every strip's blended probabilities (float32), in the order taken.
    """
    monkeypatch.setattr(sliding_window, "COLUMN_BLOCK_PX", PANEL_PX)
    if blended is not None:
        def encode(probs, *args, **kwargs):
            blended.append(probs.copy())
            return blending.encode(probs, *args, **kwargs)

        monkeypatch.setattr(writer_module, "encode", encode)
    monkeypatch.setattr(sliding_window, "_whole_rows", lambda source, config: whole)
    model = model or TileContext()
    if crash_after is not None:
        calls = [crash_after]

        def hook(module, args, output):
            calls[0] -= 1
            if calls[0] < 0:
                raise Crash("simulated failure")

        model.register_forward_hook(hook)
    predictor = TilePredictor(model, np.zeros(len(BANDS)), np.ones(len(BANDS)), scale=scale,
                              options=FP32)
    config = PredictConfig(tile=64, overlap=16, batch_size=3, strip_rows=64, blend=blend,
                           **options)
    return predict_raster(str(src) if not isinstance(src, WindowSource) else src, str(out),
                          predictor, INFO, config, progress=False, writer=writer)


@pytest.mark.slow
@pytest.mark.parametrize(("blend", "writer", "scale"), [
    ("cosine", "stream", 1), ("core", "stream", 1), ("uniform", "gdal", 1),
    ("cosine", "stream", 2)])
def test_panels_give_the_whole_width_map_bit_for_bit(monkeypatch, tmp_path, wide, blend,
                                                     writer, scale):
    model = (lambda: SuperRes(scale=2)) if scale == 2 else TileContext
    seams, write_seam = [], writer_module.write_seam
    monkeypatch.setattr(writer_module, "write_seam",
                        lambda path, part: (seams.append(path), write_seam(path, part)))
    floats: dict[bool, list[np.ndarray]] = {True: [], False: []}
    whole = _run(monkeypatch, wide, tmp_path / "whole" / "isa", whole=True, model=model(),
                 scale=scale, writer=writer, blend=blend, blended=floats[True])
    cut = _run(monkeypatch, wide, tmp_path / "cut" / "isa", whole=False, model=model(),
               scale=scale, writer=writer, blend=blend, keep_work=True, blended=floats[False])
    # the blended probabilities themselves, before they are rounded to bytes
    strips = len(floats[True])
    panel_maps = [np.concatenate(floats[False][i:i + strips], axis=1)
                  for i in range(0, len(floats[False]), strips)]
    assert np.array_equal(np.concatenate(panel_maps, axis=2),
                          np.concatenate(floats[True], axis=1))
    work = tmp_path / "cut" / ".isa.partial"
    edges = {int(p.stem.split("_")[2]) for p in work.glob("strip_*.tif")}
    assert len(edges) >= 5 and any(e % 512 for e in edges)  # several panels, edges in tiles
    assert seams and not list(work.glob("seam_*.npy"))  # written, and spent once used
    assert cut.tiles == whole.tiles
    for kind in ("class_path", "prob_path"):
        ours, theirs = cog_levels(getattr(cut, kind)), cog_levels(getattr(whole, kind))
        assert len(ours) == len(theirs) >= 3
        for level, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert np.array_equal(a, b), (kind, level)
        assert_valid_cog(getattr(cut, kind))
        if writer == "stream":
            assert_same_bytes(getattr(cut, kind), getattr(whole, kind))
    classes = cog_levels(cut.class_path)[0]
    assert (classes[200 * scale:260 * scale, 270 * scale:330 * scale] == NODATA).all()
    assert (classes != NODATA).sum() > 0.99 * classes.size - 60 * 60 * scale * scale


@pytest.mark.slow
def test_a_run_killed_inside_a_panel_resumes_to_the_same_map(monkeypatch, tmp_path, wide):
    reference = _run(monkeypatch, wide, tmp_path / "ref" / "isa", whole=True)
    with pytest.raises(Crash):  # in the third panel: two panels and their seams are done
        _run(monkeypatch, wide, tmp_path / "o" / "isa", whole=False, crash_after=50)
    work = tmp_path / "o" / ".isa.partial"
    strips = list(work.glob("strip_*.tif"))
    assert len({p.stem.split("_")[2] for p in strips}) >= 3
    resumed = _run(monkeypatch, wide, tmp_path / "o" / "isa", whole=False)
    assert resumed.resumed_strips == len(strips) and resumed.tiles < reference.tiles
    for kind in ("class_path", "prob_path"):
        assert_same_bytes(getattr(resumed, kind), getattr(reference, kind))
    assert not work.exists()


@pytest.mark.slow
def test_windows_mapped_in_panels_agree_on_their_common_pixels(monkeypatch, tmp_path, wide):
    """The lattice is the grid's: a window's panels start elsewhere, its pixels do not move."""
    with rasterio.open(wide) as src:
        whole = _run(monkeypatch, wide, tmp_path / "all" / "isa", whole=False)
        window = WindowSource(src, 37, 211, 250, 1100)
        part = _run(monkeypatch, window, tmp_path / "part" / "isa", whole=False)
    for kind in ("class_path", "prob_path"):
        a, b = cog_levels(getattr(whole, kind))[0], cog_levels(getattr(part, kind))[0]
        assert np.array_equal(a[37:287, 211:1311], b), kind


def test_panels_partition_the_width_in_whole_batches_that_do_not_grow_with_it():
    lattice = Lattice(512, 32)
    for width in (4096, 65536, 100_000):
        _, cols = lattice.axes(512, width, (0, 123))
        blocks = column_blocks(cols, 4, lattice.stride, 4096)
        cut = panels(blocks, width, 2, whole=False)
        assert cut[0].cols[0] == 0 and cut[-1].cols[1] == 2 * width
        assert all(a.cols[1] == b.cols[0] for a, b in itertools.pairwise(cut))
        assert max(p.width for p in cut) <= 2 * 4096
        assert all(len(blocks[c]) % 4 == 0 for p in cut[:-1] for c in p.blocks)
        assert all(p.cols[0] == 2 * blocks[p.blocks[0]][0].start for p in cut[1:])
        assert len(panels(blocks, width, 2, whole=True)) == 1
