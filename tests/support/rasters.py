"""Small real rasters for tests: stacks, scenes, patch datasets, all written as real GeoTIFFs.

Every writer goes through the project's own writers where one exists (``write_geotiff``,
``PatchWriter`` + ``commit_month``), so tests read exactly what the exporters produce.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from scipy.ndimage import gaussian_filter

from contract.dataset import DatasetSpec, commit_month
from contract.geotiff import write_geotiff
from contract.grid import Grid
from contract.patch_writer import PatchWriter
from contract.stack import StackPaths
from core.storage import LocalStore

BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")
_SIGMA0_DB = {"VV": -15.0, "VH": -21.0}  # cross-polarised ~6 dB below co-polarised, as real


def make_stack(folder: Path, width: int = 448, height: int = 448, fine_scale: int | None = 2,
               seed: int = 0, month: str = "2019-06", image_fine: bool = False
               ) -> tuple[StackPaths, dict[str, np.ndarray]]:
    """Write an image stack, label and fine label with a NaN area and an unlabelled area."""
    rng = np.random.default_rng(seed)
    grid = Grid("EPSG:32650", 238000.0, 3385000.0, width, height)
    image = rng.normal(0.1, 0.02, (len(BANDS), height, width)).astype(np.float32)
    image[:, : height // 4, : width // 4] = np.nan  # a no-data corner
    image[2, height // 2, width // 2] = np.inf  # a single non-finite pixel
    cells = rng.integers(0, 2, (height // 16 + 1, width // 16 + 1), dtype=np.uint8)
    label = np.kron(cells, np.ones((16, 16), np.uint8))[:height, :width].copy()
    label[-height // 5:, -width // 5:] = 255  # an unlabelled corner
    folder.mkdir(parents=True, exist_ok=True)
    write_geotiff(folder / "image.tif", image, grid.transform, grid.crs, float("nan"),
                  descriptions=list(BANDS))
    write_geotiff(folder / "label.tif", label, grid.transform, grid.crs, 255,
                  descriptions=["label"])
    arrays = {"image": image, "label": label}
    label_fine_path = None
    if fine_scale:
        fine = np.kron(label, np.ones((fine_scale, fine_scale), np.uint8))
        label_fine_path = str(folder / f"label_x{fine_scale}.tif")
        write_geotiff(label_fine_path, fine, grid.scaled(fine_scale).transform, grid.crs, 255,
                      descriptions=["label"])
        arrays["label_fine"] = fine
    image_fine_path = None
    if fine_scale and image_fine:
        fine_image = rng.random((3, height * fine_scale, width * fine_scale), np.float32)
        image_fine_path = str(folder / f"image_x{fine_scale}.tif")
        write_geotiff(image_fine_path, fine_image, grid.scaled(fine_scale).transform, grid.crs,
                      float("nan"), descriptions=["R", "G", "B"])
        arrays["image_fine"] = fine_image
    stack = StackPaths(grid, BANDS, month, str(folder / "image.tif"), str(folder / "label.tif"),
                       label_fine=label_fine_path, fine_scale=fine_scale,
                       image_fine=image_fine_path)
    return stack, arrays


CRS = "EPSG:32633"
X0, Y0 = 500_000.0, 5_000_000.0


def write_band(path: Path, array: np.ndarray, *, res: float = 10.0, crs: str | None = CRS,
               nodata: float | None = 0, tags: dict[str, str] | None = None,
               descriptions: tuple[str, ...] | None = None) -> Path:
    data = array[np.newaxis] if array.ndim == 2 else array
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": data.dtype.name, "nodata": nodata,
               "transform": Affine(res, 0, X0, 0, -res, Y0)}
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
        if descriptions:
            dst.descriptions = descriptions
    return path


def write_patch_dataset(root: Path, n: int = 10, size: int = 32, bands=BANDS, seed: int = 0,
                        splits=None, fine_scale: int | None = None,
                        nan_patch: bool = False, image_fine: bool = False,
                        labels=None, images=None, resolution: float = 10.0,
                        classes=None, label_scheme: str = "isa") -> Path:
    """Write ``n`` patches (one grid row of ``size`` px patches) as a patch dataset at ``root``.

    ``splits`` gives each patch's split in column order (default: all but four train, then two
    val, two test); ``fine_scale`` adds the label at that factor (block-replicated);
    ``labels`` replaces the stored label of patch i by ``labels[i]`` when that is not None
    (the image still shows the drawn scene: a wrong label on purpose); ``images`` replaces
    the drawn image of patch i by ``images[i]`` when that is not None.
    ``image_fine`` adds a fine image of the same bands (block-replicated image plus noise).
    ``resolution`` is the pixel size in metres; ``classes`` and ``label_scheme`` are the
    manifest's label classes and scheme (default: the binary ISA ones).
    """
    rng = np.random.default_rng(seed)
    splits = splits or (["train"] * (n - 4) + ["val"] * 2 + ["test"] * 2)
    month = "2024-06"
    grid = Grid("EPSG:32650", 500000.0, 3400000.0, size * n, size, resolution, size, size)
    store = LocalStore(root)
    writer = PatchWriter(store, grid, bands, month, fine_scale=fine_scale,
                         splits={(0, i): split for i, split in enumerate(splits)})
    records = []
    for i in range(n):
        field = gaussian_filter(rng.normal(size=(size, size)), 3)
        label = (field > np.quantile(field, 0.6)).astype(np.uint8)
        isa = label.astype(np.float32)
        img = np.empty((len(bands), size, size), np.float32)
        for b, name in enumerate(bands):
            if name.startswith("V"):
                img[b] = _SIGMA0_DB.get(name, -15.0) + 8 * isa + rng.normal(0, 1.5, label.shape)
            else:
                img[b] = 0.05 + 0.1 * isa + 0.01 * b + rng.normal(0, 0.02, label.shape)
        if images is not None and images[i] is not None:
            img = np.asarray(images[i], dtype=np.float32)
        if nan_patch and i == 0:
            img[:, :4, :4] = np.nan
        if labels is not None and labels[i] is not None:
            label = np.asarray(labels[i], dtype=np.uint8)
        fine = np.kron(label, np.ones((fine_scale, fine_scale), np.uint8)) if fine_scale else None
        fine_img = None
        if fine_scale and image_fine:
            fine_img = (np.kron(img, np.ones((1, fine_scale, fine_scale), np.float32))
                        + rng.normal(0, 0.01, (len(bands), size * fine_scale,
                                                size * fine_scale))).astype(np.float32)
        records.append(writer.write(0, i, img, label, label_fine=fine, image_fine=fine_img))
    spec = DatasetSpec(grid, tuple(bands), fine_scale=fine_scale, backend="synthetic",
                       region="test", min_valid_fraction=0.5, label_scheme=label_scheme,
                       **({"classes": classes} if classes else {}))
    commit_month(store, spec, month, records, complete=True)
    return root


def write_stack(path: Path, data: np.ndarray, bands=BANDS, res: float = 10.0,
                nodata: float | None = float("nan")) -> Path:
    """A float32 stack GeoTIFF with band descriptions, as a backend writes it."""
    return write_geotiff(path, data.astype("float32"), Affine(res, 0, 500000, 0, -res, 3400000),
                         "EPSG:32650", nodata, descriptions=bands[: data.shape[0]])


def smooth_stack(height: int, width: int, count: int = len(BANDS), seed: int = 0) -> np.ndarray:
    """Spatially correlated values (a few sinusoids) so conv models see structure; VH stays
    below VV (``contract.band_values.sigma0_swapped`` refuses stacks where it is not)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((count, height, width), dtype=np.float32)
    for c in range(count):
        fy, fx = rng.uniform(0.01, 0.08, 2)
        phase = rng.uniform(0, 6.28)
        noise = 0.1 * rng.normal(size=(height, width))
        out[c] = np.sin(fy * yy + phase) * np.cos(fx * xx) + noise
    if count > BANDS.index("VH"):  # cross-polarised below co-polarised, as in every real scene
        out[BANDS.index("VH")] = out[BANDS.index("VV")] - 1.0 + 0.5 * out[BANDS.index("VH")]
    return out


def crop_raster(source: Path, target: Path, row: int, col: int, height: int, width: int,
                *, descriptions: bool = True, tags: bool = True) -> Path:
    """A window of a real raster written as its own GeoTIFF (same dtype, CRS, pixel lattice).

    ``descriptions``/``tags`` False drops the band names / metadata tags, as files without
    them arrive.
    """
    import rasterio
    from rasterio.windows import Window

    window = Window(col, row, width, height)
    with rasterio.open(source) as src:
        data = src.read(window=window)
        profile = {"driver": "GTiff", "height": height, "width": width, "count": src.count,
                   "dtype": src.dtypes[0], "crs": src.crs,
                   "transform": src.window_transform(window), "nodata": src.nodata}
        names, meta = src.descriptions, src.tags()
    target.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            for i, name in enumerate(names, 1):
                if name:
                    dst.set_band_description(i, name)
        if tags:
            dst.update_tags(**{k: v for k, v in meta.items() if k != "AREA_OR_POINT"})
    return target


def scene_stack(height: int, width: int, bands=BANDS, seed: int = 0) -> np.ndarray:
    """A stack with the values of :func:`write_patch_dataset`'s scenes (reflectance 0-1 and
    sigma0 in dB around impervious blobs), so a model trained there sees familiar values."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(height, width)), 3)
    isa = (field > np.quantile(field, 0.6)).astype(np.float32)
    img = np.empty((len(bands), height, width), np.float32)
    for b, name in enumerate(bands):
        if name.startswith("V"):
            img[b] = _SIGMA0_DB.get(name, -15.0) + 8 * isa + rng.normal(0, 1.5, isa.shape)
        else:
            img[b] = 0.05 + 0.1 * isa + 0.01 * b + rng.normal(0, 0.02, isa.shape)
    return img


def assert_valid_cog(path: str | Path) -> None:
    """``path`` passes rio-cogeo's COG validator, warnings counted as errors."""
    from rio_cogeo.cogeo import cog_validate

    valid, errors, warnings = cog_validate(str(path), strict=True, quiet=True)
    assert valid, f"{path} is not a valid COG: {errors + warnings}"


def cog_levels(path: str | Path) -> list[np.ndarray]:
    """Band 1 of every level of a COG as stored: full resolution, then each overview's IFD."""
    with rasterio.open(path) as ds:
        levels, count = [ds.read(1)], len(ds.overviews(1))
    for i in range(count):
        with rasterio.open(path, overview_level=i) as ov:
            levels.append(ov.read(1))
    return levels


def assert_same_bytes(path_a: str | Path, path_b: str | Path) -> None:
    """The two files hold the same bytes; if not, say where the first difference lies.

    Compares the bytes themselves and, where they differ, raises its own short message
    instead of letting pytest diff two multi-megabyte byte strings (which takes minutes): the
    first differing offset with the TIFF part holding it (header, an IFD's tag, a tile array
    or a tile of a level), each side's 16 bytes there, and how many bytes differ.
    """
    a, b = Path(path_a).read_bytes(), Path(path_b).read_bytes()
    if a == b:
        return
    n = min(len(a), len(b))
    diff = np.flatnonzero(np.frombuffer(a, np.uint8, n) != np.frombuffer(b, np.uint8, n))
    at = int(diff[0]) if diff.size else n
    raise AssertionError(
        f"{path_a} ({len(a)} bytes) and {path_b} ({len(b)} bytes) first differ at byte {at}, "
        f"{tiff_part(a, at)}: {a[at:at + 16].hex()} vs {b[at:at + 16].hex()}; "
        f"{diff.size} of the first {n} bytes differ")


def tiff_part(data: bytes, offset: int) -> str:
    """Which part of the little-endian (Big)TIFF ``data`` the byte at ``offset`` belongs to."""
    import struct

    if data[:2] != b"II":
        return "not a little-endian TIFF"
    big = struct.unpack_from("<H", data, 2)[0] == 43
    word, n_fmt, size = ("Q", "<Q", 20) if big else ("I", "<H", 12)
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8}
    at, level = struct.unpack_from("<" + word, data, 8 if big else 4)[0], 0
    if offset < (16 if big else 8):
        return "the TIFF header"
    if offset < at:
        return "GDAL's structural metadata, before the first IFD"
    while at and at < len(data):
        count = struct.unpack_from(n_fmt, data, at)[0]
        start = at + struct.calcsize(n_fmt)
        if at <= offset < start + count * size + struct.calcsize(word):
            tag = struct.unpack_from("<H", data, start + max(0, offset - start) // size * size)
            return f"IFD {level}, entry of tag {tag[0]}"
        arrays: dict[int, list[int]] = {}
        for i in range(count):
            tag, typ = struct.unpack_from("<HH", data, start + i * size)
            n = struct.unpack_from("<" + word, data, start + i * size + 4)[0]
            value_at = start + i * size + 4 + struct.calcsize(word)
            nbytes = sizes.get(typ, 1) * n
            if nbytes > struct.calcsize(word):
                value_at = struct.unpack_from("<" + word, data, value_at)[0]
                if value_at <= offset < value_at + nbytes:
                    return f"IFD {level}, value of tag {tag}"
            if tag in (324, 325):
                fmt = {3: "H", 4: "I", 16: "Q"}[typ]
                arrays[tag] = list(struct.unpack_from(f"<{n}{fmt}", data, value_at))
        for k, (o, c) in enumerate(zip(arrays.get(324, []), arrays.get(325, []), strict=True)):
            if o - 4 <= offset < o + c + 4:
                return f"level {level}, tile {k} (at {o}, {c} bytes)"
        at = struct.unpack_from("<" + word, data, start + count * size)[0]
        level += 1
    return "no IFD, tag value or tile (padding, or past the end)"


def write_pair(root: Path, name: str, image: np.ndarray, mask: np.ndarray, crs, transform,
               names: Sequence[str | None]) -> None:
    """One image/mask pair as another project tiles a scene: ``root/images/NAME.tif`` (float32,
    the bands described) and ``root/masks/NAME.tif`` (uint8), on one grid."""
    common = {"driver": "GTiff", "height": image.shape[1], "width": image.shape[2],
              "crs": crs, "transform": transform}
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    with rasterio.open(root / "images" / f"{name}.tif", "w", count=len(image),
                       dtype="float32", **common) as dst:
        dst.write(image.astype("float32"))
        dst.descriptions = tuple(names)
    with rasterio.open(root / "masks" / f"{name}.tif", "w", count=1, dtype="uint8",
                       **common) as dst:
        dst.write(mask.astype("uint8")[None])

