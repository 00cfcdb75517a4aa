"""A model file's description: everything needed to rebuild and feed a trained model.

:class:`ModelMeta` is what a model file (:mod:`training.modelfile`) records beside the weights,
checked when it is built and when it is read back (``from_dict``): a file written by a newer
isamap, or one whose description does not hold together, is refused in one line.

May import: ``core``, ``contract``, ``training.calibration``, ``training.config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields

from contract.backscatter import TrainedBackscatter, trained_backscatter
from contract.grid import metre_crs_problem
from core.errors import InputDataError, ModelError
from training.calibration.temperature import shift_of, temperature_of
from training.config import NORMS

#: relative difference of pixel sizes taken as the same grid: reprojected lon/lat stacks differ
#: by a few %; 30 m vs 10 m by 200 %
PIXEL_SIZE_TOLERANCE = 0.2


@dataclass(frozen=True)
class ModelMeta:
    """Everything needed to rebuild and feed a trained model.

    Attributes:
        name: registry name of the architecture (``create_model`` name). The network is
            rebuilt from that name's builder with ``model_kwargs``, and fed by ``norm``, as
            recorded, never from the name's recipe of today: a ``unet-s2`` file written
            when that name standardised each window records ``input_norm: patch``.
        in_channels / num_classes: constructor sizes.
        model_kwargs: other constructor arguments (JSON-like values only).
        bands: input band names, in the order the model expects (the manifest's order).
        norm_mean / norm_std: per-band normalisation computed on the training split;
            inputs are ``(x - mean) / std`` with NaN replaced by 0 afterwards.
        class_scheme / class_names: label scheme and names of output classes.
        output_scale: output pixels per input pixel (1; k for super-resolution models).
        metrics: validation/test metrics recorded at save time.
        code_version: isamap version + git commit that trained the model.
        module: the module whose ``MODELS`` table defines the model; loading imports it, so
            a model defined outside ``training.models`` is rebuilt from its own module.
        extra: free-form JSON-like information (training config, dataset manifest id ...).
        pixel_size: metres per input pixel of the training grid (None: not recorded; files
            of older isamap versions record it only in ``extra["dataset"]["grid"]``).
        band_ranges: band name -> ``(p1, p50, p99)``, percentiles of its raw values in the
            training split; inputs are compared with them before a map is made
            (``inference.predict.expected_inputs.check_input``). Empty: not recorded.
        calibration: how the probabilities are calibrated
        (:func:`training.calibration.temperature.fit_record`:
            the temperature fitted on the validation split after training, with the NLL and
            ECE before and after). Empty (files of older isamap versions, or a training
            without a validation split): temperature 1, uncalibrated.
        window: the prediction tile, in pixels, that every map of the model is made with,
            for a network whose output depends on the window it is shown (one that
            standardises its input by the window's own statistics, ``unet-s2-window``'s
            ``input_norm: patch``): its maps on another tile are other maps, so prediction
            refuses another ``--tile``
            (:func:`inference.predict.blending.check_window`). None: any tile.
        norm: what its inputs are normalised by (``isamap-train --norm``): ``training``,
            ``norm_mean`` / ``norm_std``; ``scene``, the statistics of the stack each map is
            made from (the training statistics are recorded all the same, for reference):
            every prediction path computes them before the first tile
            (:func:`inference.predict.scene.scene_statistics`).
        learnt_classes: the classes the training split's labels hold (at least one pixel),
            in ``class_names`` order; a class outside it was never shown to the network
            (``isamap-predict --postprocess keep`` takes such classes from the product).
            None: not recorded (files of older isamap versions).
    """

    name: str
    in_channels: int
    num_classes: int
    bands: tuple[str, ...]
    norm_mean: tuple[float, ...]
    norm_std: tuple[float, ...]
    class_scheme: str = "isa"
    class_names: tuple[str, ...] = ("pervious", "impervious")
    output_scale: int = 1
    model_kwargs: Mapping = field(default_factory=dict)
    metrics: Mapping = field(default_factory=dict)
    code_version: str = ""
    module: str = ""
    extra: Mapping = field(default_factory=dict)
    pixel_size: float | None = None
    band_ranges: Mapping = field(default_factory=dict)
    calibration: Mapping = field(default_factory=dict)
    window: int | None = None
    norm: str = "training"
    learnt_classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.bands)
        if self.norm not in NORMS:
            raise ModelError(f"norm must be {' or '.join(NORMS)}, got {self.norm!r}")
        if self.window is not None and (isinstance(self.window, bool)
                                        or not isinstance(self.window, int) or self.window < 16):
            raise ModelError(f"window must be a tile side in pixels (>= 16), got {self.window!r}")
        if n != self.in_channels or len(self.norm_mean) != n or len(self.norm_std) != n:
            raise ModelError(f"model meta is inconsistent: in_channels={self.in_channels}, "
                             f"{n} bands, {len(self.norm_mean)} means, {len(self.norm_std)} stds")
        if len(self.class_names) != self.num_classes:
            raise ModelError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if int(self.output_scale) < 1:
            raise ModelError(f"output_scale must be >= 1, got {self.output_scale}")
        if any(s <= 0 for s in self.norm_std):
            raise ModelError("normalisation std must be positive for every band")
        if self.learnt_classes is not None and not set(self.learnt_classes) <= set(
                self.class_names):
            raise ModelError("learnt_classes names classes the model does not map")
        if not set(self.band_ranges) <= set(self.bands):
            raise ModelError("band_ranges name bands the model does not take")
        try:
            shift = shift_of(self.calibration)
        except ValueError as exc:
            raise ModelError(f"the model's calibration is invalid: {exc}") from exc
        if shift is not None and len(shift) != self.num_classes:
            raise ModelError(f"the model's calibration shifts {len(shift)} logits, but it maps "
                             f"{self.num_classes} classes")

    @property
    def temperature(self) -> float:
        """The temperature every prediction divides the logits by (1: uncalibrated)."""
        return temperature_of(self.calibration)

    @property
    def logit_shift(self) -> tuple[float, ...] | None:
        """What every prediction adds to the logits after the temperature (None: nothing)."""
        return shift_of(self.calibration)

    @property
    def calibrated(self) -> bool:
        """Whether the file records a fitted calibration (older files and unfitted: no)."""
        return dict(self.calibration).get("method") == "temperature"

    def training_pixel_size(self) -> float | None:
        """Metres per pixel of the training grid: recorded, else the dataset's grid, else None."""
        if self.pixel_size:
            return float(self.pixel_size)
        grid = (dict(self.extra).get("dataset") or {}).get("grid") or {}
        resolution = grid.get("resolution") if isinstance(grid, Mapping) else None
        return float(resolution) if resolution else None

    def check_pixel_size(self, what: str, size: float | None, *, dataset: bool = False) -> None:
        """Refuse ``what`` of ``size`` m pixels where the model was trained on other ones.

        The one owner of that rule (``isamap-predict``/``isamap-map`` inputs, the dataset of
        ``isamap-evaluate``). Nothing is checked where either size is unknown.

        Args:
            what: the input or dataset, as the message names it.
            size: its metres per pixel, or None when unknown.
            dataset: ``what`` is a patch dataset: the advice is to export it at the model's
                pixel size, not to resample a stack.

        Raises:
            InputDataError: the sizes differ by more than :data:`PIXEL_SIZE_TOLERANCE`.
        """
        trained = self.training_pixel_size()
        if trained is None or size is None or abs(size / trained - 1.0) <= PIXEL_SIZE_TOLERANCE:
            return
        degrees = self._degree_grid()
        if degrees:
            raise InputDataError(
                f"the model was trained on pixels of {trained:.3g} in {degrees}, which is not "
                f"a projected CRS in metres (its patches were imported in degrees), so "
                f"{what} of {size:.3g} m pixels cannot fit it; reproject its patches to their "
                "UTM zone, import them again (isamap-import-patches names the zone) "
                "and train a new model")
        fix = (f"export it again with isamap-export --resolution {trained:g}" if dataset else
               f"resample it to the model's grid, e.g. gdalwarp -tr {trained:g} {trained:g} -r "
               f"{'average' if size < trained else 'bilinear'} IN OUT")
        raise InputDataError(
            f"{what} has pixels of {size:.3g} m, but the model was trained on {trained:g} m "
            f"pixels (objects would look {trained / size:.2g} times their size to it); {fix}, "
            f"or use a model trained on {size:.3g} m pixels")

    def _degree_grid(self) -> str | None:
        """The training grid's CRS where it is not in metres (degrees), else None.

        Read from the dataset grid the file records (:func:`contract.grid.metre_crs_problem`);
        a file without one whose pixel size is below a centimetre is taken as degrees.
        """
        grid = (dict(self.extra).get("dataset") or {}).get("grid") or {}
        crs = grid.get("crs") if isinstance(grid, Mapping) else None
        if crs:
            return str(crs) if metre_crs_problem(str(crs)) else None
        size = self.training_pixel_size()
        return "an unrecorded CRS (degrees?)" if size is not None and size < 0.01 else None

    def training_patch_size(self) -> int | None:
        """Side in pixels of the training patches (the dataset's grid), or None if unrecorded."""
        grid = (dict(self.extra).get("dataset") or {}).get("grid") or {}
        size = grid.get("patch_size") if isinstance(grid, Mapping) else None
        return int(size) if size else None

    def s1_backscatter(self) -> TrainedBackscatter:
        """The Sentinel-1 backscatter (sigma0 or gamma0) the model learned, from its recipe.

        Read from the dataset recipe the model file records (``extra["dataset"]["recipe"]``,
        files of every isamap version that record their dataset): the pixels cannot tell the
        two apart (:mod:`contract.backscatter`).
        """
        return trained_backscatter((dict(self.extra).get("dataset") or {}).get("recipe"))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model_kwargs"] = dict(self.model_kwargs)
        d["calibration"] = dict(self.calibration)
        d["band_ranges"] = {k: list(v) for k, v in dict(self.band_ranges).items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> ModelMeta:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ModelError(f"the model description has fields this isamap does not know "
                             f"({', '.join(sorted(unknown))}); it was written by a newer "
                             "isamap: upgrade isamap to read it")
        required = [f.name for f in fields(cls)
                    if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in d]
        if missing:
            raise ModelError(f"the model description lacks {', '.join(missing)}; the file is "
                             "damaged or was not written by isamap-train: copy it again or "
                             "train again")
        kw = dict(d)
        for key in ("bands", "norm_mean", "norm_std", "class_names"):
            if key in kw:
                kw[key] = tuple(kw[key])
        if kw.get("learnt_classes") is not None:
            kw["learnt_classes"] = tuple(kw["learnt_classes"])
        if "band_ranges" in kw:
            kw["band_ranges"] = {k: tuple(map(float, v)) for k, v in
                                 dict(kw["band_ranges"] or {}).items()}
        try:
            return cls(**kw)
        except (ModelError, TypeError, ValueError) as exc:
            raise ModelError(f"the model description does not hold together ({exc}); the "
                             "file is damaged or was edited: copy it again or train "
                             "again") from exc
