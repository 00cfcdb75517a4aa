"""A series stack read by Presto: the stack's months, oldest first, and each pixel's missing ones.

A series stack (``isamap-export --series-months N``; :func:`contract.bands.series_bands`)
carries, after the bands of its own month, the same bands of each earlier month: ``B4_m2`` is
B4 two months before the stack's month (:func:`contract.bands.get_band`'s
``months_before``). The fused model (:mod:`training.models.encoders.fused`) groups the bands
the encoder reads by that month and gives Presto one timestep per month, **oldest first**
(Presto's position codes count forward in time), each with its own calendar month:
``(month - k) % 12`` for the month ``k`` months before the stack's (``month``, recorded in
the model file, is the stack's own) (:func:`series_months`). Every timestep has the pixel's
same location. A model's ``bands`` alone say the months and the grouping, so a model file
needs nothing more.

Nodata reaches a model as the training mean: its input is ``(x - mean) / std`` with NaN
replaced by 0 afterwards (:class:`training.model_meta.ModelMeta`). So the rule here is
exact on the input the model is given, and judged per **sensor**: a sensor's bands of an
**earlier** month are *missing* at a pixel when every band the encoder reads of that sensor
and month is exactly 0 there (nodata: a cloudy Sentinel-2 month beside its Sentinel-1 one,
say; a pixel of real values equal to the mean in every band to the last bit is not
expected). Presto then leaves those bands' group tokens of that timestep out of its
attention and its mean (its mask; NDVI with B4 or B8), instead of reading the mean as
reflectance, and reads the sensor that is there. The stack's own month is never masked: a
pixel whose own month is missing is read as it always was (the mean), so a one-month
model's features, and any pixel's own timestep, are those of the one-month path bit for
bit. The values the encoder is given carry missing bands as NaN (:func:`mark_missing`), so
the frozen-feature cache, which keys a patch by that tensor's bytes, tells them from real
ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from contract.bands import earlier_name, find_band, months_of, series_gap
from core.errors import ModelError
from training.models.encoders.presto import MAX_TIMESTEPS, prepare, tokens_per_pixel

#: tokens per encoder call, 32,768 pixels of one month (Presto's tokens grow with the months:
#: :func:`pixels_per_call`); bounds the memory of the attention and the MLP's hidden layer
TOKENS_PER_CALL = 32768 * tokens_per_pixel(1)


def pixels_per_call(timesteps: int) -> int:
    """Pixels per encoder call for a series of ``timesteps``: ``TOKENS_PER_CALL`` tokens.

    One month's 32,768 pixels, fewer with each month (three months: 12,429), so a series'
    call holds about the memory of one month's (its hidden layers are pixels x tokens x 512).
    """
    return max(1, TOKENS_PER_CALL // tokens_per_pixel(timesteps))


def series_columns(bands: Sequence[str], own: Sequence[int]) -> list[int]:
    """Positions in ``bands`` of the encoder's bands of every month, oldest month first.

    ``own`` are the positions of the bands the encoder reads of the stack's own month; each
    earlier month ``k`` (``B4_mk``) must carry the same bands, and every month from 1 to the
    oldest must be there. With no earlier month, ``own`` itself.

    Raises:
        ModelError: an earlier month lacks a band, a month is skipped, or too many months.
    """
    gap = series_gap(bands, drop="give --bands without {}")
    if gap:
        raise ModelError(f"the bands hold {gap}")
    names = [bands[i] for i in own]
    earlier = {k: {base: bands.index(name) for base, name in month.items() if base in names}
               for k, month in months_of(bands).items() if k}
    earlier = {k: month for k, month in earlier.items() if month}
    oldest = max(earlier, default=0)
    if oldest + 1 > MAX_TIMESTEPS:
        raise ModelError(f"Presto reads at most {MAX_TIMESTEPS} months; the bands reach "
                         f"{oldest} months back: give --bands of fewer months")
    for k in range(1, oldest + 1):
        lack = [earlier_name(b, k) for b in names if b not in earlier.get(k, {})]
        if lack:
            drop = [bands[i] for j in range(k, oldest + 1) for i in earlier.get(j, {}).values()]
            raise ModelError(f"a series stack carries every band the encoder reads for each "
                             f"earlier month, and {', '.join(lack)} are not among the bands: "
                             f"give --bands with them too, or without {', '.join(drop)}")
    columns = [earlier[k][b] for k in range(oldest, 0, -1) for b in names]
    return columns + list(own)


def encoder_series(encoder: str, bands: Sequence[str], own: Sequence[int]
                   ) -> tuple[list[int], int]:
    """:func:`series_columns` of ``encoder`` and the months they hold; only Presto reads several.

    Raises:
        ModelError: as :func:`series_columns`, or a series for another encoder than Presto
            (Galileo nano is given one month: its tokens are 4 px squares, so a month missing
            at one pixel cannot be masked there).
    """
    columns = series_columns(bands, own)
    months = len(columns) // len(own) if own else 1
    if months > 1 and encoder != "presto":
        raise ModelError(f"the {encoder} encoder reads one month, and the bands hold {months} "
                         "(B4_m1-style bands of earlier months): give --encoder presto=PATH "
                         "for a series, or --bands of the stack's own month")
    return columns, months


def series_months(month: int, count: int) -> list[int]:
    """Presto's month codes (0-11) of ``count`` timesteps, oldest first, ending at ``month``."""
    return [(int(month) - k) % 12 for k in range(count - 1, -1, -1)]


def mark_missing(raw: torch.Tensor, x: torch.Tensor, bands: Sequence[str]) -> torch.Tensor:
    """``raw`` ``(N, T*B, H, W)`` with each pixel's missing bands of earlier months set to NaN.

    ``x`` is the normalised input of the same columns, ``bands`` the ``B`` bands of each
    month; a sensor's bands of a month are missing where all of them are exactly 0 there
    (module docstring). The last month (the stack's own) is kept.
    """
    n, c, h, w = x.shape
    count = c // len(bands)
    if count == 1:
        return raw
    zero = x.reshape(n, count, len(bands), h, w) == 0
    missing = torch.zeros_like(zero)
    sensors = [spec.sensor if (spec := find_band(b)) is not None else b for b in bands]
    for sensor in dict.fromkeys(sensors):
        cols = [i for i, s in enumerate(sensors) if s == sensor]
        missing[:, :, cols] = zero[:, :, cols].all(dim=2, keepdim=True)
    missing[:, -1] = False
    return torch.where(missing.reshape(n, c, h, w), torch.full_like(raw, float("nan")), raw)


def presto_series_features(encoder: nn.Module, raw: torch.Tensor, bands: Sequence[str],
                           latlon: Sequence[float], months: Sequence[int]) -> torch.Tensor:
    """Presto's per-pixel features ``(N, 128, H, W)`` of a series ``(N, T, B, H, W)``.

    ``bands`` name the ``B`` bands of each timestep, ``months`` the ``T`` timesteps' months
    (oldest first); a value that is NaN at a pixel is masked there (its group's token of
    that timestep; :func:`training.models.encoders.presto.prepare`).
    """
    n, t, b, h, w = raw.shape
    pixels, inverse = distinct_pixels(raw.permute(0, 3, 4, 1, 2).reshape(-1, t, b))
    month = torch.tensor([int(m) for m in months], dtype=torch.long, device=raw.device)
    out, step = [], pixels_per_call(t)
    for start in range(0, pixels.shape[0], step):
        part = pixels[start:start + step]
        x, mask = prepare(part, bands)
        m = part.shape[0]
        dw = torch.full((m, t), 9, dtype=torch.long, device=raw.device)
        where = part.new_tensor(latlon).expand(m, 2)
        out.append(encoder(x, dw, where, mask, month.expand(m, t)))
    feats = torch.cat(out)
    if inverse is not None:
        feats = feats[inverse]
    return feats.reshape(n, h, w, -1).permute(0, 3, 1, 2).contiguous()


def distinct_pixels(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``pixels`` ``(P, T, B)`` with bit-identical rows taken once, and where each row went.

    Presto reads each pixel alone (its location is the model's, not the pixel's), so equal
    inputs give equal features: a tile hanging over a small stack's edges is mostly nodata
    (every band the mean, the earlier months masked: one input), and its features were
    computed once per pixel before (a 96 px stack in a 512 px tile: 28 times the work).
    Rows are compared by their bits (a masked value is NaN, equal to itself here). Returns
    ``(distinct rows in first-seen order, index of each input row among them)``, or
    ``(pixels, None)`` where every row is distinct.
    """
    p = pixels.shape[0]
    bits = pixels.detach().reshape(p, -1).contiguous().view(torch.int32)
    _, inverse = torch.unique(bits, dim=0, return_inverse=True)
    count = int(inverse.max()) + 1 if p else 0
    if count == p:
        return pixels, None
    first = torch.full((count,), p, dtype=torch.long, device=pixels.device)
    first.scatter_reduce_(0, inverse, torch.arange(p, device=pixels.device), "amin")
    order = torch.argsort(first)  # the distinct rows in the order they first come
    rank = torch.empty_like(order)
    rank[order] = torch.arange(count, device=pixels.device)
    return pixels[first[order]], rank[inverse]


def presto_stack_features(encoder: nn.Module, raw: torch.Tensor, bands: Sequence[str],
                          latlon: Sequence[float], month: int) -> torch.Tensor:
    """:func:`presto_series_features` of ``raw`` ``(N, T*B, H, W)``, a stack's months side by side.

    ``raw`` holds the columns of :func:`series_columns` (oldest month first, a missing month
    missing bands NaN: :func:`mark_missing`); ``bands`` are the ``B`` bands of each month, ``month``
    (0-11) the stack's own; ``T`` is ``raw``'s channels over ``B``. One month is
    :func:`presto_series_features` of one timestep.
    """
    n, c, h, w = raw.shape
    count = c // len(bands)
    return presto_series_features(encoder, raw.reshape(n, count, len(bands), h, w), bands,
                                  latlon, series_months(month, count))
