"""The Galileo nano encoder (Tseng et al. 2025): a transformer over space-time patch tokens.

Written here from the paper and from reading the authors' public code (nasaharvest/galileo at
0f0b5b9); parameter names follow their ``encoder.pt``, which loads with ``strict=True``.

Inputs come in four kinds of band groups: space-time (S1, four S2 groups, S2 SWIR, NDVI: one
token per ``p x p`` pixel patch and timestep), space (SRTM, Dynamic World, WorldCereal: per
patch), time (ERA5, TerraClimate, VIIRS: per timestep) and static (LandScan, location,
static Dynamic World / WorldCereal). Each token is a linear projection of its group (a
``p x p`` convolution for the spatial groups, whose 8 px kernels are resized to ``p`` by the
pseudo-inverse of the bicubic resize, as FlexiViT does) plus codes: 32 values of group, 32 of
timestep position, 32 of month, 32 of spatial position (2-D sines and cosines scaled by the
patch's ground size). Absent groups are left out. isamap gives S1 and S2 (NDVI, like the
authors' input helper, stays masked) and the location; a pixel's features are the mean of the
normed outputs of its patch's tokens and the location token, up-sampled to the pixels.

Normalisation (:func:`normalise`): each S1 / S2 band ``(x - (mean - 2 std)) / (4 std)`` with
the pretraining statistics (S2 as digital numbers, reflectance x 10000; S1 in dB). Galileo
was pretrained on top-of-atmosphere S2 (``S2_HARMONIZED``, L1C); isamap's composites are L2A
and are fed as they are, without a shift (docs/encoders.md says what that costs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from training.models.encoders.presto import Mlp, month_table, sphere

#: Space-time bands in the authors' order, and the groups over them.
ST_BANDS = ("VV", "VH", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12", "NDVI")
ST_GROUPS: dict[str, tuple[int, ...]] = {
    "S1": (0, 1), "S2_RGB": (2, 3, 4), "S2_Red_Edge": (5, 6, 7), "S2_NIR_10m": (8,),
    "S2_NIR_20m": (9,), "S2_SWIR": (10, 11), "NDVI": (12,)}
SPACE_GROUPS = {"SRTM": 2, "DW": 9, "WC": 5}
TIME_GROUPS = {"ERA5": 2, "TC": 3, "VIIRS": 1}
STATIC_GROUPS = {"LS": 1, "location": 3, "DW_static": 9, "WC_static": 5}
#: Pretraining mean and standard deviation of the space-time bands (S2 in DN, S1 in dB).
MEAN = (-11.728724389184965, -18.85558188024017, 1395.3408730676722, 1338.4026921784578,
        1343.09883810357, 1543.8607982512297, 2186.2022069512263, 2525.0932853316694,
        2410.3377187373408, 2750.2854646886753, 2234.911100061487, 1474.5311266077113)
STD = (4.887145774840316, 5.730270320384293, 917.7041440370853, 913.2988423581528,
       1092.678723527555, 1047.2206083460424, 1048.0101611156767, 1143.6903026819996,
       1098.979177731649, 1204.472755085893, 1145.9774063078878, 980.2429840007796)
MAX_PATCH = 8
WINDOW = 64  # pixels per side the encoder sees at once (galileo_features)
BASE_GSD = 10.0


def normalise(values: torch.Tensor, bands: Sequence[str]) -> torch.Tensor:
    """Raw ``(..., len(bands))`` values (S2 reflectance 0-1, S1 dB) -> Galileo's scale."""
    idx = [ST_BANDS.index(b) for b in bands]
    mean = values.new_tensor([MEAN[i] for i in idx])
    std = values.new_tensor([STD[i] for i in idx])
    scale = values.new_tensor([1e4 if b.startswith("B") else 1.0 for b in bands])
    return (values * scale - (mean - 2 * std)) / (4 * std)


def sincos(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``(M, dim)`` codes of positions: sines then cosines at frequencies 10000^(-k/2dim)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / dim / 2.0)
    angle = positions.reshape(-1, 1).double() * omega.to(positions.device)[None]
    return torch.cat([angle.sin(), angle.cos()], dim=1).float()


def spatial_codes(dim: int, h: int, w: int, ground: float) -> torch.Tensor:
    """``(h, w, dim)``: codes of each token's column, then of its row, in ground units."""
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    col = sincos(dim // 2, cols.reshape(-1) * ground)
    row = sincos(dim // 2, rows.reshape(-1) * ground)
    return torch.cat([col, row], dim=1).reshape(h, w, dim)


class PatchEmbed(nn.Module):
    """A ``p x p`` patch projection whose 8 px kernel is resized for smaller patches."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, MAX_PATCH, stride=MAX_PATCH)
        self._resize: dict[int, torch.Tensor] = {}

    def _pinv(self, size: int) -> torch.Tensor:
        if size not in self._resize:
            basis = torch.eye(MAX_PATCH * MAX_PATCH).reshape(-1, 1, MAX_PATCH, MAX_PATCH)
            resized = F.interpolate(basis, (size, size), mode="bicubic", antialias=True)
            self._resize[size] = torch.linalg.pinv(resized.reshape(MAX_PATCH * MAX_PATCH, -1))
        return self._resize[size]

    def forward(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, H/size, W/size, dim)``."""
        weight = self.proj.weight
        if size != MAX_PATCH:
            out, cin = weight.shape[:2]
            flat = weight.reshape(out, cin, -1) @ self._pinv(size).T.to(weight)
            weight = flat.reshape(out, cin, size, size)
        y = F.conv2d(x, weight, self.proj.bias, stride=size)
        return y.permute(0, 2, 3, 1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, length, self.heads, dim // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)))
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GalileoEncoder(nn.Module):
    """Galileo's encoder with the nano sizes (128 wide, 4 blocks, 8 heads)."""

    #: why ``--precision int8`` refuses it (:func:`engine.quantize.check_quantizable`)
    int8_cannot_export = (f"its Galileo encoder cuts a tile into {WINDOW} px windows, a count "
                          "the export fixes at the calibration patches' size")

    def __init__(self, dim: int = 128, depth: int = 4, heads: int = 8, mlp_ratio: float = 4.0,
                 max_timesteps: int = 24) -> None:
        super().__init__()
        code = dim // 4
        self.dim = dim
        self.pos_embed = nn.Parameter(sincos(code, torch.arange(max_timesteps)),
                                      requires_grad=False)
        self.month_embed = nn.Embedding.from_pretrained(month_table(code), freeze=True)
        self.s_t_channel_embed = nn.Parameter(torch.zeros(len(ST_GROUPS), code))
        self.sp_channel_embed = nn.Parameter(torch.zeros(len(SPACE_GROUPS), code))
        self.t_channel_embed = nn.Parameter(torch.zeros(len(TIME_GROUPS), code))
        self.st_channel_embed = nn.Parameter(torch.zeros(len(STATIC_GROUPS), code))
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.space_time_embed = nn.ModuleDict({g: PatchEmbed(len(i), dim)
                                               for g, i in ST_GROUPS.items()})
        self.space_embed = nn.ModuleDict({g: PatchEmbed(c, dim) for g, c in SPACE_GROUPS.items()})
        self.time_embed = nn.ModuleDict({g: nn.Linear(c, dim) for g, c in TIME_GROUPS.items()})
        self.static_embed = nn.ModuleDict({g: nn.Linear(c, dim)
                                           for g, c in STATIC_GROUPS.items()})
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, bands: Sequence[str], months: torch.Tensor,
                latlon: torch.Tensor | None = None, patch: int = MAX_PATCH) -> torch.Tensor:
        """Per-patch features ``(N, dim, H/patch, W/patch)``.

        Args:
            x: ``(N, T, C, H, W)`` normalised values (:func:`normalise`) of ``bands``.
            bands: the names of ``x``'s channels; a group is used when all its bands are.
            months: ``(N, T)`` month (0-11) of each timestep.
            latlon: ``(N, 2)`` degrees, the location token; None leaves it out.
            patch: the token's side in pixels (1-8).
        """
        n, t, _, h, w = x.shape
        gh, gw = h // patch, w // patch
        code = self.dim // 4
        space = spatial_codes(code, gh, gw, patch * BASE_GSD / BASE_GSD).to(x)
        tokens = []
        for g, (name, idx) in enumerate(ST_GROUPS.items()):
            if name == "NDVI" or not all(ST_BANDS[i] in bands for i in idx):
                continue
            cols = [list(bands).index(ST_BANDS[i]) for i in idx]
            part = x[:, :, cols].reshape(n * t, len(cols), h, w)
            emb = self.space_time_embed[name](part, patch).reshape(n, t, gh, gw, self.dim)
            codes = torch.cat([
                self.s_t_channel_embed[g].expand(n, t, gh, gw, code),
                self.pos_embed[:t][None, :, None, None].expand(n, t, gh, gw, code),
                self.month_embed(months)[:, :, None, None].expand(n, t, gh, gw, code),
                space[None, None].expand(n, t, gh, gw, code)], dim=-1)
            tokens.append((emb + codes).permute(0, 2, 3, 1, 4).reshape(n, gh * gw, t, self.dim))
        seq = torch.cat(tokens, dim=2)  # (N, patches, tokens per patch, dim)
        per_patch = seq.shape[2]
        flat = seq.reshape(n, gh * gw * per_patch, self.dim)
        if latlon is not None:
            where = self.static_embed["location"](sphere(latlon))
            loc = self.st_channel_embed[1].expand(n, code)
            flat = torch.cat([flat, (where + F.pad(loc, (0, 3 * code)))[:, None]], dim=1)
        for block in self.blocks:
            flat = block(flat)
        flat = self.norm(flat)
        patches = flat[:, :gh * gw * per_patch].reshape(n, gh * gw, per_patch, self.dim)
        total = patches.sum(dim=2)
        count = per_patch
        if latlon is not None:
            total = total + flat[:, -1:]
            count += 1
        return (total / count).reshape(n, gh, gw, self.dim).permute(0, 3, 1, 2)


def galileo_features(encoder: nn.Module, raw: torch.Tensor, bands: Sequence[str], month: int,
                     patch: int, latlon: Sequence[float] | None = None) -> torch.Tensor:
    """Per-pixel features ``(N, 128, H, W)`` of raw bands ``(N, B, H, W)`` (one month).

    The encoder sees :data:`WINDOW` px squares (its attention grows with the square of its
    tokens, so a whole map tile is never one sequence): the image is padded (edge values
    repeated) to whole windows, each window encoded alone, and the patch features
    up-sampled bilinearly to the pixels.
    """
    n, c, h, w = raw.shape
    win = max(patch, WINDOW // patch * patch)
    ph, pw = (-h) % win, (-w) % win
    x = normalise(raw.permute(0, 2, 3, 1), bands).permute(0, 3, 1, 2)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    rows, cols = x.shape[-2] // win, x.shape[-1] // win
    tiles = x.reshape(n, c, rows, win, cols, win).permute(0, 2, 4, 1, 3, 5)
    tiles = tiles.reshape(n * rows * cols, 1, c, win, win)
    months = torch.full((tiles.shape[0], 1), month, dtype=torch.long, device=raw.device)
    where = None if latlon is None else raw.new_tensor(latlon).expand(tiles.shape[0], 2)
    feats = encoder(tiles, bands, months, where, patch)  # (n*rows*cols, D, win/p, win/p)
    side = win // patch
    feats = feats.reshape(n, rows, cols, -1, side, side).permute(0, 3, 1, 4, 2, 5)
    feats = feats.reshape(n, -1, rows * side, cols * side)
    up = F.interpolate(feats, scale_factor=patch, mode="bilinear", align_corners=False)
    return up[..., :h, :w]
