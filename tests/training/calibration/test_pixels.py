"""The validation split's labelled pixels gathered for the temperature fit."""

from __future__ import annotations

import pytest
import torch

from training.calibration.pixels import ScenePixels, gather, keys


def _batches(count: int, size: int = 8, seed: int = 0, classes: int = 2, scenes=("a",),
             unlabelled: float = 0.25):
    """``count`` batches of two samples, a share ``unlabelled`` of the pixels unlabelled;
    sample i of batch b is of scene ``scenes[(2b + i) % len(scenes)]``."""
    g = torch.Generator().manual_seed(seed)
    for b in range(count):
        logits = torch.randn(2, classes, size, size, generator=g)
        labels = torch.randint(0, max(classes, 2), (2, size, size), generator=g)
        labels[torch.rand(2, size, size, generator=g) < unlabelled] = 255
        yield logits, labels, [scenes[(2 * b + i) % len(scenes)] for i in range(2)]


def _old(batches, max_pixels: int):
    """The oracle, the gathering before this module: every sample's labelled pixels grouped
    by scene in stream order, then an even pick of at most ``max_pixels`` per scene."""
    grouped: dict[str, list] = {}
    for logits, labels, scenes in batches:
        k = logits.shape[1]
        for i, scene in enumerate(scenes):
            z, y = logits[i:i + 1].movedim(1, -1).reshape(-1, k), labels[i:i + 1].reshape(-1)
            ok = (y != 255) & (y < max(k, 2))
            grouped.setdefault(scene, []).append((z[ok], y[ok]))
    out = {}
    for scene, parts in grouped.items():
        z, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        if len(y) > max_pixels:
            pick = torch.linspace(0, len(y) - 1, max_pixels).long()
            z, y = z[pick], y[pick]
        out[scene] = (z, y)
    return out


def _same(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k][0], b[k][0]) and
                                      torch.equal(a[k][1], b[k][1]) for k in a)


@pytest.mark.parametrize("count, max_pixels, scenes", [
    (20, 10_000, ("a",)), (20, 1_000, ("a", "a", "a", "b")), (40, 2_000, ("a", "b"))])
def test_a_split_of_at_most_twice_the_cap_is_gathered_as_before_to_the_bit(count, max_pixels,
                                                                          scenes):
    """Nothing is thinned: each scene's pixels in stream order, then the even pick of the
    gathering it replaced (the (20, 1000) case picks 1,000 of scene a's ~1,440; the
    (40, 2000) one is just under twice the cap in all)."""
    got = gather(_batches(count, scenes=scenes), max_pixels)
    assert got.held <= 2 * max_pixels and {s.stride for s in got.scenes.values()} == {1}
    assert _same(got.result(), _old(_batches(count, scenes=scenes), max_pixels))


def test_a_long_split_holds_at_most_twice_the_cap_spread_over_every_column():
    """Patches labelled whole, 256 pixels each: a stride of 256 on the pixels' numbers
    would keep one column and row of every patch; the keys keep every one."""
    pixels = ScenePixels(max_pixels=200)
    for logits, labels, scenes in _batches(300, size=16, unlabelled=0.0):  # 153,600 pixels
        pixels.add_batch(logits, labels, scenes)
        assert pixels.held <= 400
    scene = pixels.scenes["a"]
    assert scene.stride >= 256 and len(scene.parts) <= 12  # parts halve in size, at least
    key = torch.cat([p[2] for p in scene.parts])
    assert bool((key < 1.0 / scene.stride).all())
    # the kept pixels are spread over the patch: every column and row of the 16 x 16 patches
    assert len(pixels.result()["a"][1]) == 200
    number = torch.nonzero(keys(0, scene.seen) < 1.0 / scene.stride).flatten()
    old = _old(_batches(300, size=16, unlabelled=0.0), 10**9)["a"]
    assert torch.equal(torch.cat([p[1] for p in scene.parts]), old[1][number])
    position = number % 256  # every pixel labelled: its number's place in its patch
    assert len(set((position % 16).tolist())) == 16 and len(set((position // 16).tolist())) == 16


def test_the_scene_holding_most_is_thinned_so_a_small_scene_stays_whole():
    """One scene is a thirtieth of the split: it is never thinned while the other is."""
    scenes = ("big",) * 29 + ("small",)
    pixels = gather(_batches(300, scenes=scenes), max_pixels=1_000)
    assert pixels.held <= 2_000
    assert pixels.scenes["big"].stride > 1 and pixels.scenes["small"].stride == 1
    small = _old(_batches(300, scenes=scenes), 10**9)["small"]
    got = pixels.result()["small"]
    assert torch.equal(got[0], small[0]) and torch.equal(got[1], small[1])


def test_a_scene_without_labelled_pixels_and_a_one_logit_model_are_gathered():
    logits = torch.randn(2, 1, 4, 4)
    labels = torch.randint(0, 2, (2, 4, 4))
    labels[1] = 255  # the second sample's scene has no labelled pixel
    pixels = gather([(logits, labels, ["a", "b"])], max_pixels=10)
    result = pixels.result()
    assert result["b"][0].shape == (0, 1) and result["a"][0].shape == (10, 1)


def test_labels_off_the_outputs_grid_stop_the_gathering_and_say_why():
    def batches():
        yield torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 5), ["a"]
        raise AssertionError("the pass goes on after labels off the grid")

    pixels = gather(batches())
    assert pixels.error is not None and "not on one grid" in pixels.error
    assert pixels.result() == {} and pixels.held == 0
    with pytest.raises(ValueError, match="max_pixels must be >= 1"):
        ScenePixels(0)
