"""What ``isamap-fit`` was asked (:class:`FitJob`): read by the fit, the fine-tune, ``--out``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from core.errors import ConfigError
from inference.fit.drawn import DEFAULT_N
from training.models.points import uses_encoder
from training.points.fit import FitOptions
from training.points.tune import DEFAULT_LR, DEFAULT_STEPS

Norm = Literal["scene", "training"]
ISA_CLASSES = ("pervious", "impervious")


@dataclass(frozen=True)
class FitJob:
    """Everything ``isamap-fit`` was asked (checked by the command).

    Attributes:
        points: labelled files (CSV, GeoJSON, Collect Earth Online export).
        inputs: the stacks the points lie in (``stacks/stack_<month>_image.tif``).
        out: the output folder (``model.pt``, ``fit.json``, ``fit.txt``).
        features: ``bands``, ``presto`` or ``presto+bands``.
        encoder: Presto's published file (``presto`` features).
        norm: ``scene`` or ``training``; None: ``scene`` for bands, ``training`` with Presto.
        bands: the bands the model reads; None: the first input's image bands. With
            ``backend``, the bands of the stack it makes (a series stack's, ``B4_m1``-style,
            for ``isamap-fit --series-months N``: :func:`contract.export_options.
            series_stack_bands`; None: the export's default bands).
        classes: class names in code order (the labels are names or codes).
        column: the labels' column.
        month: ``YYYY-MM`` of the stacks for Presto; None: the first input's ``MONTH`` tag;
            with ``backend``, the month the stack is made of.
        options: how the head is fitted (:class:`training.points.fit.FitOptions`).
        backend: make the stack over the points (:mod:`inference.fit.sources`) with the
            local backend (``scenes``) or Earth Engine (``project``) instead of ``inputs``.
        scenes: the local scenes' folder (``backend="local"``).
        project: the Earth Engine project (``backend="ee"``).
        crs: the made stack's CRS (None: the UTM zone of the points' centre).
        progress: progress bars.
        allow_l1c: composite Level-1C scenes (``backend="local"``) with a warning instead
            of refusing them, as ``isamap-export --allow-l1c`` does; the record says so.
        allow_implausible: fit on stacks the input check doubts (noted in the model).
        scene_reading: how the local scenes are read where their files cannot tell
            (``backend="local"``): the :class:`gee_export.local.compositing.LocalRecipe`
            fields of ``--scene-date``, ``--s2-band-names``... that were given, as
            ``isamap-export --backend local`` takes them.
        points_from: instead of ``points``, a label raster to draw ``n`` points from,
            stratified by class with ``options.seed`` (:mod:`inference.fit.drawn`).
        n: the points drawn from ``points_from``.
        base: a model file whose network is fine-tuned on the points instead
            (``--from``; its bands, classes and normalisation are the model's).
        steps / lr: the fine-tune's Adam steps and learning rate (``base``).
    """

    points: tuple[str, ...]
    inputs: tuple[str, ...]
    out: str
    features: str = "bands"
    encoder: str | None = None
    norm: Norm | None = None
    bands: tuple[str, ...] | None = None
    classes: tuple[str, ...] = ISA_CLASSES
    column: str = "reference"
    month: str | None = None
    options: FitOptions = field(default_factory=FitOptions)
    backend: Literal["ee", "local"] | None = None
    scenes: str | None = None
    project: str | None = None
    crs: str | None = None
    progress: bool = True
    allow_l1c: bool = False
    allow_implausible: bool = False
    scene_reading: tuple[tuple[str, Any], ...] = ()
    points_from: str | None = None
    n: int = DEFAULT_N
    base: str | None = None
    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR

    def __post_init__(self) -> None:
        if self.backend and not self.month:
            raise ConfigError(f"--backend {self.backend} makes the stack of a month: give "
                              "--month YYYY-MM")
        if self.backend == "local" and not self.scenes:
            raise ConfigError("--backend local reads local scenes: give --scenes DIR")

    @property
    def normalised_by(self) -> Norm:
        if self.norm is not None:
            return self.norm
        return "training" if uses_encoder(self.features) else "scene"
