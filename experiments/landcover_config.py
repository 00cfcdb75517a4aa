"""The land-cover experiment's configuration: everything that defines a run, checked and hashed.

Apart from :mod:`experiments.landcover` (the folds' runs, the report and the command) so that
each stays small. :class:`LandCoverConfig` holds the split, the settings, the seeds and every
budget; its :meth:`~LandCoverConfig.key` digests what one (setting, fold, seed) run depends
on, so a finished run is reused and a changed one redone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from core.digest import json_digest
from core.errors import ConfigError
from experiments.chesapeake_nlcd import CHESAPEAKE_FOLDER
from experiments.data import sample_folder
from experiments.landcover_arms import SETTINGS, Setting, with_windows
from experiments.naip import NAIP_FOLDER
from training.models import recipe_for
from training.noisy import DEFAULT_THRESHOLD


@dataclass(frozen=True)
class LandCoverConfig:
    """Everything that defines the experiment (hashed to reuse finished runs).

    Attributes:
        data_dir: the chesapeake_nlcd ``.npz`` patches.
        naip_dir: the GeoBench ``id_*.hdf5`` NAIP tiles.
        test_dir: held-out ``.npz`` patches (then every patch of ``data_dir`` trains).
        split: without ``test_dir``, what is held out: ``quadrants`` (four folds; fold
            ``f`` holds out quadrant ``(f + i) mod 4`` of patch ``i``, so every patch trains
            in every fold on the other three quadrants) or ``patches`` (``groups``).
        groups: with ``split="patches"``, the held-out groups of patches (positions, 0-based,
            sorted by name): each group is held out once while the other patches train.
        settings: which of :data:`SETTINGS` run.
        seeds: training seeds.
        model: ``hrnet`` keyword arguments (a narrow HRNet for CPU minutes).
        nlcd_crop / nlcd_batch / nlcd_iterations: training crops (also the inference
            window, so that instance norm sees one extent), batch and iterations of ``nlcd``.
        naip_crop / naip_batch / naip_iterations: the same for ``naip``.
        lr: initial SGD learning rate (poly decay to 0 at the budget).
        cell: the synthetic products' cell in 1 m pixels.
        product_oa / product_region / product_seed: the confusion product's calibrated OA,
            mean region spacing (px) and random draws.
        filter_threshold / filter_chip: the noisy-sample filter's agreement threshold and
            the side of the chips it scores (px).
        weight_cap: the largest class weight of the ``balanced`` arms.
        composition_block / composition_weight: label super-resolution's groups (px, NLCD's
            30 m cell) and the weight of its term.
        points_per_stratum / points_seed: the point sample's minimum per stratum (it draws
            that many times the strata in all) and its seed.
        windows: more shares windows (px) for the default arm's decision in ``nlcd``
            (:func:`experiments.landcover_arms.with_windows`: the same models, more arms).
    """

    data_dir: str = field(default_factory=lambda: str(sample_folder(CHESAPEAKE_FOLDER)))
    naip_dir: str = field(default_factory=lambda: str(sample_folder(NAIP_FOLDER)))
    test_dir: str | None = None
    split: str = "quadrants"
    groups: tuple[tuple[int, ...], ...] = ((0, 4), (1, 5), (2, 6), (3, 7))
    settings: tuple[str, ...] = ("nlcd",)
    seeds: tuple[int, ...] = (0, 1, 2)
    model: dict = field(default_factory=lambda: {"width": 8, "stem_width": 16,
                                                 "stage1_width": 16, "modules": [1, 1, 1],
                                                 "blocks": 2})
    nlcd_crop: int = 128
    nlcd_batch: int = 4
    nlcd_iterations: int = 200
    naip_crop: int = 64
    naip_batch: int = 8
    naip_iterations: int = 300
    lr: float = recipe_for("hrnet").lr
    cell: int = 10
    product_oa: float = 0.76
    product_region: float = 60.0
    product_seed: int = 0
    filter_threshold: float = DEFAULT_THRESHOLD
    filter_chip: int = 64
    weight_cap: float = 10.0
    composition_block: int = 30
    composition_weight: float = 1.0
    points_per_stratum: int = 50
    points_seed: int = 0
    windows: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if not self.seeds:
            problems.append("give at least one seed")
        if not self.settings or set(self.settings) - set(SETTINGS):
            problems.append(f"settings must be among {', '.join(SETTINGS)}")
        if not self.groups or any(not g for g in self.groups):
            problems.append("--groups takes one or more non-empty groups of patch positions")
        if self.split not in ("quadrants", "patches"):
            problems.append("--split must be quadrants or patches")
        if self.nlcd_crop < 64:
            problems.append("the nlcd crop must be >= 64 px (instance norm needs the context)")
        if min(self.nlcd_batch, self.nlcd_iterations, self.naip_batch, self.naip_iterations) < 1:
            problems.append("batches and iterations must be >= 1")
        if not 32 <= self.naip_crop <= 128:
            problems.append("the naip crop must be 32..128 px (it must fit beside the held-out "
                            "quadrant)")
        if not 0.3 <= self.product_oa <= 0.95:
            problems.append("--product-oa must be in 0.3..0.95")
        if not 0 < self.filter_threshold < 1 or self.filter_chip < 8:
            problems.append("the filter threshold must be in (0, 1) and its chip >= 8 px")
        if self.weight_cap < 1 or self.composition_block < 1 or self.composition_weight < 0:
            problems.append("--weight-cap must be >= 1, the composition block >= 1 px and its "
                            "weight >= 0")
        if any(w < 1 for w in self.windows):
            problems.append("--windows takes window sides of at least 1 px")
        if self.points_per_stratum < 2:
            problems.append("--points-per-stratum must be >= 2 (a variance per stratum)")
        if problems:
            raise ConfigError("; ".join(problems))

    def spec(self, setting: str) -> Setting:
        """The setting's products and arms, with :attr:`windows`'s arms.

        They are added where the default arm decides with a window (``nlcd``;
        :func:`experiments.landcover_arms.with_windows` leaves ``naip`` as it is).
        """
        return with_windows(SETTINGS[setting], self.windows)

    def key(self, setting: str, fold: int, seed: int) -> str:
        """The digest of what a (setting, fold, seed) run depends on, not the other setting's."""
        other = {"nlcd": ("naip_dir", "naip_crop", "naip_batch", "naip_iterations", "cell",
                          "product_oa", "product_region", "product_seed"),
                 "naip": ("data_dir", "test_dir", "split", "groups", "nlcd_crop", "nlcd_batch",
                          "nlcd_iterations", "composition_block", "composition_weight")}[setting]
        d = {k: v for k, v in asdict(self).items()
             if k not in ("seeds", "settings", "windows", *other)}
        d.update(setting=setting, fold=fold, seed=seed,
                 arms=[asdict(a) for a in self.spec(setting).arms],
                 stored="maps and impervious scores",  # run files without scores: redone
                 # the decision rules' version: maps of an older rule are redone
                 keep="impervious unless green, unlearnt classes, shares, impervious fixed")
        return json_digest(d, 16)
