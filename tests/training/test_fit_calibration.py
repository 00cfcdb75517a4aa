"""The split's outputs gathered for the temperature fit (training.fit_calibration)."""

from __future__ import annotations

import pytest
import torch

from training.fit_calibration import ThinnedPixels, _by_scene, labelled_logits


def _batches(count: int, size: int = 4, seed: int = 0):
    """``count`` batches of two-class logits with labels; a quarter of the pixels unlabelled."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(count):
        logits = torch.randn(2, 2, size, size, generator=g)
        labels = torch.randint(0, 2, (2, size, size), generator=g)
        labels[torch.rand(2, size, size, generator=g) < 0.25] = 255
        yield logits, labels


def _whole(batches, max_pixels: int):
    """The oracle: every labelled pixel in stream order, then an even pick of ``max_pixels``."""
    zs, ys = [], []
    for logits, labels in batches:
        z, y = logits.movedim(1, -1).reshape(-1, 2), labels.reshape(-1)
        zs.append(z[y != 255])
        ys.append(y[y != 255])
    z, y = torch.cat(zs), torch.cat(ys)
    if len(y) > max_pixels:
        pick = torch.linspace(0, len(y) - 1, max_pixels).long()
        z, y = z[pick], y[pick]
    return z, y


@pytest.mark.parametrize("max_pixels", [10_000, 300])
def test_a_stream_of_at_most_twice_the_cap_is_gathered_whole_then_picked_evenly(max_pixels):
    """Under twice the cap nothing is thinned: the fit sees what it saw when every pixel was
    held (the 300 case picks evenly from about 480 labelled pixels)."""
    z, y = labelled_logits(_batches(20), max_pixels)
    oz, oy = _whole(_batches(20), max_pixels)
    assert torch.equal(z, oz) and torch.equal(y, oy)


def test_a_long_stream_is_held_in_bounded_memory_evenly_spread_over_it():
    pixels = ThinnedPixels(max_pixels=100)
    peak = 0
    for logits, labels in _batches(400):  # about 9,600 labelled pixels, 32 a batch at most
        pixels.add("a", logits, labels)
        peak = max(peak, pixels.held)
        assert pixels.held <= 2 * 100
    assert pixels.stride == 64 and peak > 100
    numbers = torch.cat([n for _, _, n in pixels._parts["a"]])
    assert bool((numbers % pixels.stride == 0).all())
    assert numbers.min() == 0 and numbers.max() > pixels.seen - pixels.stride  # the whole stream
    z, y = pixels.result()["a"]
    assert len(y) == 100 and z.shape == (100, 2)
    oz, oy = _whole(_batches(400), 10**9)  # the same pixels as the stream numbered them
    held = numbers[torch.linspace(0, len(numbers) - 1, 100).long()]
    assert torch.equal(z, oz[held]) and torch.equal(y, oy[held])


def test_scenes_share_one_stream_thinned_alike():
    """One stride for every scene: each keeps its share of the stream, and the pixels held
    together stay under twice the cap."""
    def scened():
        for i, (logits, labels) in enumerate(_batches(200)):
            yield logits, labels, ["2021-01/a" if i % 4 else "2021-02/b", "2021-01/a"]

    parts = _by_scene(scened())
    assert set(parts) == {"2021-01/a", "2021-02/b"}
    assert all(len(y) <= 2_000_000 and z.shape[1] == 2 for z, y in parts.values())
    pixels = ThinnedPixels(max_pixels=50)
    for logits, labels, scenes in scened():
        for i, scene in enumerate(scenes):
            pixels.add(scene, logits[i:i + 1], labels[i:i + 1])
        assert pixels.held <= 100
    held = {k: sum(len(p[1]) for p in parts) for k, parts in pixels._parts.items()}
    assert sum(held.values()) == pixels.held
    assert 0.5 < held["2021-02/b"] / (pixels.held / 8) < 1.5  # b is an eighth of the samples
    counts = {k: len(v[1]) for k, v in pixels.result().items()}
    assert counts == {k: min(n, 50) for k, n in held.items()}


def test_labels_off_the_logits_grid_and_a_zero_cap_are_refused():
    with pytest.raises(ValueError, match="not on one grid"):
        ThinnedPixels().add("a", torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 5))
    with pytest.raises(ValueError, match="max_pixels must be >= 1"):
        ThinnedPixels(0)
