"""Presto (Tseng et al. 2023): a small transformer over one pixel's monthly band groups.

Written here from the paper and from reading the authors' public code (nasaharvest/presto at
13173d0): parameter names follow that code's state dict, so the published
``default_model.pt`` loads with ``strict=True``. Per pixel and timestep the inputs are 17
values in this order (:data:`INPUT_BANDS`), normalised as the authors do (:func:`normalise`):

* S1 ``VV, VH`` in dB, ``(dB + 25) / 25``;
* S2 ``B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12`` as reflectance (DN / 10000);
* ERA5 ``temperature_2m`` (K, ``(K - 272.15) / 35``), ``total_precipitation`` (m, ``/ 0.03``);
* SRTM ``elevation`` (m, ``/ 2000``), ``slope`` (degrees, ``/ 50``): one token, not per month;
* NDVI ``(B8 - B4) / (B8 + B4)`` (0 where the sum is not positive).

Each band group becomes one token per timestep (a linear embedding plus month, group and
position codes); a Dynamic World class token per timestep (class 9 = absent) and one
location token (lat/lon on the unit sphere) join them. Groups an input lacks are *masked*:
their tokens are left out of the attention. The encoder's output is the layer-normed mean of
the kept tokens, 128 values per pixel. The decoder (kept for the reconstruction check, never
used for maps) puts a learnt mask token where a token was left out and predicts every
group's values back.

Band groups and their channel-code order are those of the authors' ``BANDS_GROUPS_IDX``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

#: The 17 input values per timestep, in the authors' order.
INPUT_BANDS: tuple[str, ...] = (
    "VV", "VH", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12",
    "temperature_2m", "total_precipitation", "elevation", "slope", "NDVI")
#: Band groups, each one token per timestep (SRTM one token in all), in channel-code order.
GROUPS: dict[str, tuple[int, ...]] = {
    "S1": (0, 1), "S2_RGB": (2, 3, 4), "S2_Red_Edge": (5, 6, 7), "S2_NIR_10m": (8,),
    "S2_NIR_20m": (9,), "S2_SWIR": (10, 11), "ERA5": (12, 13), "SRTM": (14, 15), "NDVI": (16,)}
STATIC_GROUP = "SRTM"
DW_CLASSES = 9  # Dynamic World classes; index 9 means "no Dynamic World"
MAX_TIMESTEPS = 24
#: ``(shift, divisor)`` per input band: normalised = (raw + shift) / divisor.
SHIFT_DIV: tuple[tuple[float, float], ...] = (
    (25.0, 25.0), (25.0, 25.0), *((0.0, 1.0),) * 10,  # S2 is given as reflectance (DN / 1e4)
    (-272.15, 35.0), (0.0, 0.03), (0.0, 2000.0), (0.0, 50.0), (0.0, 1.0))


def tokens_per_pixel(timesteps: int) -> int:
    """Tokens of one pixel's series of ``timesteps`` (:meth:`Encoder.tokens`).

    Its location and SRTM once, every other group and Dynamic World once per timestep.
    """
    return 2 + timesteps * len(GROUPS)


def normalise(raw: torch.Tensor) -> torch.Tensor:
    """Presto's normalisation of ``(..., 17)`` raw values (S2 as reflectance), NDVI recomputed."""
    shift = raw.new_tensor([s for s, _ in SHIFT_DIV])
    div = raw.new_tensor([d for _, d in SHIFT_DIV])
    x = (raw + shift) / div
    red, nir = x[..., 4], x[..., 8]
    total = nir + red
    ndvi = torch.where(total > 0, (nir - red) / total.clamp_min(1e-12), torch.zeros_like(total))
    return torch.cat([x[..., :16], ndvi.unsqueeze(-1)], dim=-1)


def sinusoid_table(positions: int, dim: int, period: float = 1000.0) -> torch.Tensor:
    """``(positions, dim)`` sine (even columns) / cosine (odd columns) position codes."""
    pos = torch.arange(positions, dtype=torch.float64)[:, None]
    pair = torch.arange(dim, dtype=torch.float64)[None, :] // 2
    angle = pos / period ** (2 * pair / dim)
    table = torch.empty_like(angle)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.float()


def month_table(dim: int) -> torch.Tensor:
    """``(12, dim)`` codes of the months 0-11: sines in the first half, cosines in the second."""
    angle = torch.arange(12, dtype=torch.float64) * (2 * math.pi / 12)
    half = dim // 2
    return torch.cat([torch.sin(angle)[:, None].expand(12, half),
                      torch.cos(angle)[:, None].expand(12, half)], dim=1).float()


class Attention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, dim // self.heads).permute(
            2, 0, 3, 1, 4)
        mask = None if keep is None else keep[:, None, None, :]
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class Mlp(nn.Module):
    """Two linear layers with a GELU between."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: attention, then MLP, each added to the stream."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), keep)
        return x + self.mlp(self.norm2(x))


def _months(month: torch.Tensor, timesteps: int) -> torch.Tensor:
    """``(N, T)`` month indices: ``month`` as given ``(N, T)``, or consecutive from ``(N,)``."""
    if month.dim() == 2:
        return month.long()
    return (month.long()[:, None] + torch.arange(timesteps, device=month.device)) % 12


def group_absent(mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per group, ``(N, T)`` True where any of its bands is masked (SRTM: ``(N, 1)``)."""
    out = {}
    for name, idx in GROUPS.items():
        part = mask[:, :1] if name == STATIC_GROUP else mask
        out[name] = part[..., list(idx)].amax(dim=-1).bool()
    return out


class Encoder(nn.Module):
    """Presto's encoder: band-group tokens of one pixel's series -> 128 values."""

    #: why ``--precision int8`` refuses it (:func:`engine.quantize.check_quantizable`)
    int8_cannot_export = ("its Presto encoder branches on its input's values (whether every "
                          "pixel lacks the same bands)")

    def __init__(self, dim: int = 128, depth: int = 2, heads: int = 8, mlp_ratio: float = 4.0,
                 max_timesteps: int = MAX_TIMESTEPS) -> None:
        super().__init__()
        self.dim = dim
        channel_dim = month_dim = dim // 4
        self.eo_patch_embed = nn.ModuleDict({g: nn.Linear(len(i), dim) for g, i in GROUPS.items()})
        self.dw_embed = nn.Embedding(DW_CLASSES + 1, dim)
        self.latlon_embed = nn.Linear(3, dim)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        pos = sinusoid_table(max_timesteps, dim - channel_dim - month_dim)[None]
        self.pos_embed = nn.Parameter(pos, requires_grad=False)
        self.month_embed = nn.Embedding.from_pretrained(month_table(month_dim), freeze=True)
        self.channel_embed = nn.Embedding(len(GROUPS) + 1, channel_dim)

    def tokens(self, x: torch.Tensor, dw: torch.Tensor, latlon: torch.Tensor,
               mask: torch.Tensor, month: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every token in the authors' order and ``(N, L)`` True where it is masked.

        Order: the location token, then each group's tokens in :data:`GROUPS` order (SRTM one
        token), then the Dynamic World tokens.
        """
        n, t, _ = x.shape
        months = self.month_embed(_months(month, t))
        pos = self.pos_embed[:, :t].expand(n, t, -1)
        absent = group_absent(mask)
        tokens, masked = [], []
        for code, (name, idx) in enumerate(GROUPS.items()):
            emb = self.eo_patch_embed[name](x[..., list(idx)])
            channel = self.channel_embed.weight[code].expand(n, t, -1)
            codes = torch.cat([months, channel, pos], dim=-1)
            if name == STATIC_GROUP:
                codes = torch.cat([torch.zeros_like(months[:, :1]), channel[:, :1],
                                   torch.zeros_like(pos[:, :1])], dim=-1)
                emb = emb[:, :1]
            tokens.append(emb + codes)
            masked.append(absent[name])
        channel = self.channel_embed.weight[len(GROUPS)].expand(n, t, -1)
        tokens.append(self.dw_embed(dw) + torch.cat([months, channel, pos], dim=-1))
        masked.append(dw == DW_CLASSES)
        tokens.insert(0, self.latlon_embed(sphere(latlon))[:, None])
        masked.insert(0, torch.zeros(n, 1, dtype=torch.bool, device=x.device))
        return torch.cat(tokens, dim=1), torch.cat(masked, dim=1)

    def encode(self, x: torch.Tensor, dw: torch.Tensor, latlon: torch.Tensor,
               mask: torch.Tensor, month: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normed outputs ``(N, L, D)`` of every token (masked ones: zeros) and the mask ``(N, L)``.

        A batch whose pixels all lack the same groups (every map: the absent groups are the
        bands the stack lacks) runs the kept tokens alone; otherwise the masked tokens are
        kept out of every attention.
        """
        tokens, masked = self.tokens(x, dw, latlon, mask, month)
        if bool(masked.any(dim=0).eq(masked.all(dim=0)).all()):
            keep = ~masked[0]
            kept = tokens[:, keep]
            for block in self.blocks:
                kept = block(kept)
            out = tokens.new_zeros(tokens.shape)
            out[:, keep] = self.norm(kept)
            return out, masked
        out = tokens
        for block in self.blocks:
            out = block(out, ~masked)
        return self.norm(out) * (~masked)[..., None], masked

    def forward(self, x: torch.Tensor, dw: torch.Tensor, latlon: torch.Tensor,
                mask: torch.Tensor, month: torch.Tensor) -> torch.Tensor:
        """``(N, D)``: the layer-normed mean of the kept tokens' outputs (before the norm).

        Args:
            x: ``(N, T, 17)`` normalised inputs (:func:`normalise`).
            dw: ``(N, T)`` Dynamic World classes, 9 where absent.
            latlon: ``(N, 2)`` latitude, longitude in degrees.
            mask: ``(N, T, 17)`` 1 where a value is absent.
            month: ``(N,)`` month (0-11) of the first timestep, or ``(N, T)`` per timestep.
        """
        tokens, masked = self.tokens(x, dw, latlon, mask, month)
        if bool(masked.any(dim=0).eq(masked.all(dim=0)).all()):
            out = tokens[:, ~masked[0]]
            for block in self.blocks:
                out = block(out)
            return self.norm(out.mean(dim=1))
        out = tokens
        for block in self.blocks:
            out = block(out, ~masked)
        weight = (~masked).to(out.dtype)[..., None]
        return self.norm((out * weight).sum(1) / weight.sum(1))


class Decoder(nn.Module):
    """Presto's decoder: every token back, a learnt mask token where one was left out."""

    def __init__(self, channel_embed: nn.Embedding, encoder_dim: int = 128, dim: int = 128,
                 depth: int = 2, heads: int = 8, mlp_ratio: float = 4.0,
                 max_timesteps: int = MAX_TIMESTEPS) -> None:
        super().__init__()
        code_dim = (dim - channel_embed.weight.shape[1]) // 2
        self.decoder_embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(dim))
        self.decoder_blocks = nn.ModuleList([Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.decoder_norm = nn.LayerNorm(dim)
        self.eo_decoder_pred = nn.ModuleDict({g: nn.Linear(dim, len(i))
                                              for g, i in GROUPS.items()})
        self.dw_decoder_pred = nn.Linear(dim, DW_CLASSES)
        self.channel_embeddings = channel_embed  # shared with the encoder
        self.pos_embed = nn.Parameter(sinusoid_table(max_timesteps, code_dim)[None],
                                      requires_grad=False)
        self.month_embed = nn.Embedding.from_pretrained(month_table(code_dim), freeze=True)

    def codes(self, n: int, t: int, month: torch.Tensor) -> torch.Tensor:
        """``(N, L, dim)`` month/group/position codes in :meth:`Encoder.tokens`' order."""
        months = self.month_embed(_months(month, t))
        pos = self.pos_embed[:, :t].expand(n, t, -1)
        weight = self.channel_embeddings.weight
        parts = [months.new_zeros(n, 1, self.mask_token.shape[0])]
        for code, name in enumerate([*GROUPS, "DW"]):
            channel = weight[code].expand(n, t, -1)
            if name == STATIC_GROUP:
                parts.append(torch.cat([torch.zeros_like(months[:, :1]), channel[:, :1],
                                        torch.zeros_like(pos[:, :1])], dim=-1))
            else:
                parts.append(torch.cat([months, channel, pos], dim=-1))
        return torch.cat(parts, dim=1)

    def forward(self, encoded: torch.Tensor, masked: torch.Tensor,
                month: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstructed ``(N, T, 17)`` normalised values and ``(N, T, 9)`` class logits."""
        n, length, _ = encoded.shape
        t = (length - 2) // (len(GROUPS))
        x = torch.where(masked[..., None], self.mask_token, self.decoder_embed(encoded))
        x = x + self.codes(n, t, month)
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_norm(x)[:, 1:]
        values, start = [], 0
        for name in GROUPS:
            size = 1 if name == STATIC_GROUP else t
            pred = self.eo_decoder_pred[name](x[:, start:start + size])
            values.append(pred.expand(n, t, -1) if name == STATIC_GROUP else pred)
            start += size
        return torch.cat(values, dim=-1), self.dw_decoder_pred(x[:, start:start + t])


class Presto(nn.Module):
    """The whole published model (encoder and decoder), as ``default_model.pt`` holds it."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder(self.encoder.channel_embed)

    def forward(self, x: torch.Tensor, dw: torch.Tensor, latlon: torch.Tensor,
                mask: torch.Tensor, month: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's reconstruction of every input from the encoder's kept tokens."""
        encoded, masked = self.encoder.encode(x, dw, latlon, mask, month)
        return self.decoder(encoded, masked, month)


def prepare(values: torch.Tensor, bands: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw ``(N, T, len(bands))`` values -> Presto's ``(N, T, 17)`` normalised input and mask.

    ``bands`` name the columns of ``values`` (S2 as reflectance 0-1, S1 in dB, any subset of
    :data:`INPUT_BANDS` but NDVI, which is computed when B4 and B8 are given); every other
    input is zero and masked, so a group with any band missing is left out whole. A value
    that is NaN is missing at that pixel and timestep alone: zero and masked there (NDVI too
    where B4 or B8 is), so its group's token is left out there.
    """
    n, t, _ = values.shape
    raw = values.new_zeros(n, t, len(INPUT_BANDS))
    given = torch.ones(len(INPUT_BANDS), dtype=torch.bool)
    for column, band in enumerate(bands):
        raw[..., INPUT_BANDS.index(band)] = values[..., column]
        given[INPUT_BANDS.index(band)] = False
    given = ~given
    given[16] = bool(given[4] and given[8])
    given = given.to(values.device)  # decided on the CPU (no device sync), used beside values
    lost = torch.isnan(raw)
    absent = bool(lost.any())
    if absent:
        raw = torch.nan_to_num(raw, nan=0.0)
        lost[..., 16] = lost[..., 4] | lost[..., 8]
    x = normalise(raw)
    mask = (~given).to(values.dtype).expand(n, t, -1)
    x = x * given.to(values.dtype)
    if absent:
        x = x.masked_fill(lost, 0.0)
        mask = torch.maximum(mask, lost.to(mask.dtype))
    return x, mask


def sphere(latlon: torch.Tensor) -> torch.Tensor:
    """Degrees ``(N, 2)`` lat/lon -> ``(N, 3)`` points on the unit sphere."""
    lat, lon = torch.deg2rad(latlon[:, 0]), torch.deg2rad(latlon[:, 1])
    return torch.stack([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()], dim=-1)
