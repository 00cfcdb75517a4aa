"""Which fusion of a frozen pretrained encoder with the U-Net maps built-up area on new ground.

``python -m experiments.builtup_encoders --encoder presto=PATH --out DIR [--seeds 0 1]
[--iterations 300]``: on the Dynamic World tiles (``dynamicworld_s2`` in the sample data
root), each tile held out in turn (leave-one-tile-out), three arms are trained on the other
two tiles from the same seeds, the same random 64 px crops and the same budget:

(``--encoder galileo-nano=PATH``: the Galileo nano encoder's features instead.)

* ``bands``: the optical U-Net (``unet-s2`` widths) on the ten S2 bands alone;
* ``concat``: the same U-Net with the encoder's 128 per-pixel features beside the bands
  (:class:`training.models.encoders.fused.EncoderUNet`, ``fusion="concat"``);
* ``head``: the encoder as the backbone, its features through a light decoder
  (``fusion="head"``).

The frozen features of each tile are computed once (the fused model's own feature function
on the tile's reflectance) and cached under ``DIR/features``. Every tile is encoded with one
location and month (``--location common``: the mean of the tiles' centres, January), as a
model file maps every region with the location and month it recorded: Presto's features move
more with the location and month tokens than from pixel to pixel within a tile, so a tile's
own location (``--location tile``) shifts a held-out tile's features away from the training
tiles' by where it is, not by what it shows.

Labels: built (class 7) against the other labelled classes; unmarked (0), cloud (10) and
Sen2Cor cloud / shadow pixels (SCL 3, 8, 9, 10) are not scored. Each map is scored on every
labelled pixel of the held-out tile: built F1 at probability 0.5 and ROC AUC, beside NDBI's
AUC and its oracle best-threshold F1 on the same pixels. ``DIR/results.json``
holds every figure, the table is printed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import torch
from torch import nn

from core.parsers import CommandParser
from experiments.data import add_data_root_argument, existing_folder, sample_folder
from experiments.scoring import best_threshold_f1, binary_scores, ndbi, roc_auc
from training.models.encoders.galileo import galileo_features
from training.models.encoders.registry import load_encoder, parse_encoder
from training.models.encoders.series import presto_series_features
from training.models.unet import S2_WIDTHS, UNet
from training.run.encoder import grid_centre

TILES = ("java", "ghana_a", "ghana_b")
BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
FILE_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
MONTHS = {"java": 6, "ghana_a": 11, "ghana_b": 11}  # 2019-07-13, 2018-12-26 (0-11)
CLOUDY_SCL = (3, 8, 9, 10)
ARMS = ("bands", "concat", "head")
CROP = 64


def presto_features(encoder: nn.Module, raw: torch.Tensor, bands: Sequence[str],
                    latlon: Sequence[float], month: int) -> torch.Tensor:
    """Presto's per-pixel features ``(N, 128, H, W)`` of raw bands ``(N, B, H, W)``, one month."""
    return presto_series_features(encoder, raw[:, None], bands, latlon, [int(month) % 12])


def read_tile(folder: Path, tile: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Reflectance ``(10, H, W)``, target (1 built, 0 other, 255 unscored), grid centre."""
    with rasterio.open(folder / f"{tile}_s2l2a.tif") as src:
        names = list(src.descriptions)
        image = src.read([names.index(b) + 1 for b in FILE_BANDS]).astype(np.float32) / 1e4
        west, _, _, north = src.bounds
        grid = {"crs": str(src.crs), "x0": west, "y0": north, "width": src.width,
                "height": src.height, "resolution": src.res[0], "patch_size": 128,
                "stride": 128}
    with rasterio.open(folder / f"{tile}_label.tif") as src:
        label = src.read(1)
    with rasterio.open(folder / f"{tile}_scl.tif") as src:
        scl = src.read(1)
    target = np.where(label == 7, 1, 0).astype(np.uint8)
    target[(label == 0) | (label == 10) | np.isin(scl, CLOUDY_SCL)] = 255
    return image, target, grid_centre({"grid": grid})


def tile_features(name: str, encoder: nn.Module, image: np.ndarray, latlon, month: int,
                  path: Path) -> np.ndarray:
    """The frozen encoder's ``(128, H, W)`` features of a tile, computed once (cached).

    Presto per pixel; Galileo nano on 4 px patches in 64 px windows, as the fused model does.
    """
    if path.exists():
        return np.load(path)
    raw = torch.from_numpy(image)[None]
    with torch.no_grad():
        if name == "presto":
            rows = [presto_features(encoder, raw[..., r:r + 64, :], BANDS, latlon, month)
                    for r in range(0, raw.shape[-2], 64)]
        else:
            rows = [galileo_features(encoder, raw[..., r:r + 64, :], BANDS, month, 4, latlon)
                    for r in range(0, raw.shape[-2], 64)]
    feats = torch.cat(rows, dim=-2)[0].numpy().astype(np.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, feats)
    return feats


def make_net(arm: str, in_bands: int, dim: int) -> nn.Module:
    if arm == "bands":
        return UNet(in_bands, 2, widths=S2_WIDTHS)
    if arm == "concat":
        return UNet(in_bands + dim, 2, widths=S2_WIDTHS)
    from training.models.blocks import ConvBNReLU, init_weights

    head = nn.Sequential(ConvBNReLU(dim, 64, 3), ConvBNReLU(64, 64, 3), nn.Conv2d(64, 2, 1))
    init_weights(head)
    return head


def net_input(arm: str, bands: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    return bands if arm == "bands" else feats if arm == "head" else torch.cat([bands, feats], 1)


def crops(tiles: list[dict], rng: np.random.Generator, batch: int):
    """A batch of random ``CROP`` px crops (with flips and turns) holding scored pixels."""
    xs: list[np.ndarray] = []
    fs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    while len(xs) < batch:
        t = tiles[rng.integers(len(tiles))]
        h, w = t["target"].shape
        r, c = rng.integers(h - CROP + 1), rng.integers(w - CROP + 1)
        y = t["target"][r:r + CROP, c:c + CROP]
        if (y != 255).mean() < 0.05:
            continue
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        parts = [t["bands"][:, r:r + CROP, c:c + CROP], t["feats"][:, r:r + CROP, c:c + CROP],
                 y[None]]
        parts = [np.rot90(p, k, axes=(1, 2)) for p in parts]
        if flip:
            parts = [p[..., ::-1] for p in parts]
        xs.append(parts[0])
        fs.append(parts[1])
        ys.append(parts[2][0])
    return (torch.from_numpy(np.stack(xs).copy()), torch.from_numpy(np.stack(fs).astype(
        np.float32)), torch.from_numpy(np.stack(ys).astype(np.int64)))


def train_arm(arm: str, train: list[dict], seed: int, iterations: int) -> nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = make_net(arm, len(BANDS), train[0]["feats"].shape[0])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss(ignore_index=255)
    net.train()
    for _ in range(iterations):
        x, f, y = crops(train, rng, 8)
        loss = loss_fn(net(net_input(arm, x, f)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def predict(net: nn.Module, arm: str, tile: dict) -> np.ndarray:
    """Built probability over the whole held-out tile (padded to the U-Net's stride)."""
    x = torch.from_numpy(tile["bands"])[None]
    f = torch.from_numpy(tile["feats"].astype(np.float32))[None]
    h, w = x.shape[-2:]
    ph, pw = (-h) % 16, (-w) % 16
    inp = nn.functional.pad(net_input(arm, x, f), (0, pw, 0, ph), mode="reflect")
    with torch.no_grad():
        prob = net(inp).softmax(1)[0, 1, :h, :w]
    return prob.numpy()


def score(prob: np.ndarray, tile: dict) -> dict:
    keep = tile["target"] != 255
    truth = tile["target"][keep]
    return {"f1": binary_scores((prob[keep] >= 0.5).astype(np.uint8), truth).f1,
            "auc": roc_auc(prob[keep], truth)}


def main(argv: list[str] | None = None) -> int:
    p = CommandParser(  # exact option names only
        allow_abbrev=False, prog="python -m experiments.builtup_encoders",
        description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", required=True,
                   help="presto=PATH or galileo-nano=PATH (the published file)")
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--held-out", nargs="+", default=list(TILES), choices=TILES,
                   help="the tiles held out in turn (default: every tile)")
    p.add_argument("--location", choices=["common", "tile"], default="common", help=(
        "the location and month every tile is encoded with: one for all (the mean of the "
        "tiles' centres, January), as a model maps with those it recorded; or each tile's own"))
    add_data_root_argument(p)
    a = p.parse_args(argv)
    folder = existing_folder(sample_folder("dynamicworld_s2", a.data_root), "Dynamic World",
                             "--data-root")
    entry, path = parse_encoder(a.encoder)
    encoder = load_encoder(entry, path)
    out = Path(a.out)
    read = {name: read_tile(folder, name) for name in TILES}
    common = tuple(np.mean([latlon for _, _, latlon in read.values()], axis=0).tolist())
    tiles = {}
    for name, (image, target, latlon) in read.items():
        where, month = (latlon, MONTHS[name]) if a.location == "tile" else (common, 0)
        feats = tile_features(entry.name, encoder, image, where, month,
                              out / "features" / f"{name}_{entry.name}_{a.location}.npy")
        tiles[name] = {"image": image, "target": target, "feats": feats}
    results = run(tiles, a.arms, a.seeds, a.iterations, a.held_out)
    for row in results:
        row["encoder"] = entry.name
    (out / "results.json").write_text(json.dumps({"encoder": entry.name, "sha256": entry.sha256,
                                                   "location": a.location,
                                                   "iterations": a.iterations, "seeds": a.seeds,
                                                   "results": results}, indent=1))
    print(table(results))
    print(markdown_table(results))
    return 0


def run(tiles: dict, arms, seeds, iterations: int, held_out=TILES) -> list[dict]:
    results = []
    for held in held_out:
        train = [t for n, t in tiles.items() if n != held]
        stack = np.concatenate([t["image"].reshape(len(BANDS), -1) for t in train], axis=1)
        mean, std = stack.mean(1), stack.std(1) + 1e-6
        for t in tiles.values():
            t["bands"] = ((t["image"] - mean[:, None, None]) / std[:, None, None]).astype(
                np.float32)
        test = tiles[held]
        keep = test["target"] != 255
        index = ndbi(test["image"][8], test["image"][6])[keep]
        truth = test["target"][keep]
        base = {"tile": held, "ndbi_auc": roc_auc(index, truth),
                "ndbi_best_f1": best_threshold_f1(index, truth)[1]}
        for arm in arms:
            for seed in seeds:
                started = time.time()
                net = train_arm(arm, [{**t} for t in train], seed, iterations)
                row = {**base, "arm": arm, "seed": seed, **score(predict(net, arm, test), test),
                       "seconds": round(time.time() - started, 1)}
                print(json.dumps(row), flush=True)
                results.append(row)
    return results


def table(results: list[dict]) -> str:
    lines = ["tile      arm     F1 per seed          AUC per seed         NDBI AUC  NDBI best F1"]
    for held in TILES:
        for arm in ARMS:
            rows = [r for r in results if r["tile"] == held and r["arm"] == arm]
            if not rows:
                continue
            f1 = " ".join(f"{r['f1']:.3f}" for r in rows)
            auc = " ".join(f"{r['auc']:.3f}" for r in rows)
            lines.append(f"{held:9s} {arm:7s} {f1:20s} {auc:20s} {rows[0]['ndbi_auc']:.3f}"
                         f"     {rows[0]['ndbi_best_f1']:.3f}")
    return "\n".join(lines)


def arm_label(row: dict) -> str:
    """``bands``, or ``ENCODER FUSION`` (the column a result goes in)."""
    return "bands" if row["arm"] == "bands" else f"{row['encoder']} {row['arm']}"


def markdown_table(results: list[dict]) -> str:
    """The docs table: per held-out tile, each arm's AUC / F1 (seed 0), NDBI beside them."""
    order = ["bands", "presto concat", "presto head", "galileo-nano concat",
             "galileo-nano head"]
    arms = [a for a in order if any(arm_label(r) == a for r in results)]
    lines = ["| held-out tile | " + " | ".join(arms)
             + " | NDBI AUC | NDBI best-threshold F1 |", "|---" * (len(arms) + 3) + "|"]
    for tile in TILES:
        rows = {arm_label(r): r for r in results if r["tile"] == tile and r["seed"] == 0}
        if not rows:
            continue
        cells = [f"{rows[a]['auc']:.3f} / {rows[a]['f1']:.3f}" if a in rows else "n/a"
                 for a in arms]
        first = next(iter(rows.values()))
        lines.append(f"| {tile} | " + " | ".join(cells)
                     + f" | {first['ndbi_auc']:.3f} | {first['ndbi_best_f1']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
